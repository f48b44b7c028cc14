//! The smallest tidings server: every event comes back to its sender, and an event that
//! asks for an ack is answered with its own data.
//!
//! `cargo run -p tidings-examples --bin echo [-- --listen 127.0.0.1:8081]`

use tidings_examples::Entry;
use tidings_smol::{Message, Payload, Router};

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let router = Router::new().fallback(|ctx, event, data: Payload| async move {
            if ctx.wants_ack() {
                let _ = ctx.reply(data.as_json()).await;
            } else {
                let _ = ctx
                    .handle()
                    .emit(ctx.conn(), Message::new(event, data))
                    .await;
            }
        });
        let listen = tidings_examples::listen_addr("127.0.0.1:8081");
        let server = tidings_smol::builder().router(router).bind(&listen).await?;
        tidings_examples::serve("echo", &server, Entry::Socket("/ws")).await?;
        Ok(())
    })
}
