//! The smallest raw server, as wsm and goWs users know one: every text or binary frame comes
//! back to its sender as it came. No envelope, so any WebSocket client talks to it; it is
//! the server the Autobahn|Testsuite runs against (README, "Conformance").
//!
//! `cargo run -p tidings-examples --bin echo-raw [-- --listen 127.0.0.1:8082]`

use tidings_examples::Entry;
use tidings_smol::{Config, OriginPolicy, PathRule, Payload, Protocol, Router, RAW_EVENT};

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let router = Router::new().on_raw(RAW_EVENT, |ctx, data: Payload| async move {
            let _ = ctx.send(data).await;
        });
        // Every path speaks raw; an echo takes what a client sends as fast as it sends it,
        // up to 16 MiB a message, and holds a few such messages on their way back.
        let config = Config::default()
            .path(PathRule::new("/", Protocol::Raw))
            .path(PathRule::new("/*", Protocol::Raw))
            .max_inbound_rate(None)
            .max_message_size(16 << 20)
            .max_queue_bytes(64 << 20);
        let listen = tidings_examples::listen_addr("127.0.0.1:8082");
        let server = tidings_smol::builder()
            .config(config)
            .paths(["/"])
            // Any page may echo: nothing here acts on a user's behalf.
            .origin(OriginPolicy::AllowAll)
            .router(router)
            .bind(&listen)
            .await?;
        tidings_examples::serve("echo-raw", &server, Entry::Socket("/")).await?;
        Ok(())
    })
}
