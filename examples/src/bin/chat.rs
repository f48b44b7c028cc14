//! Chat rooms for the browser: pick a name, join and leave rooms, see who joined and left,
//! send messages, and see who is typing (sent through batching, so a room of busy typists
//! costs one frame per 400 ms, not one per keystroke).
//!
//! `cargo run --release -p tidings-examples --bin chat [-- --listen 127.0.0.1:8080]`, then
//! open the printed URL in two tabs. With `--redis redis://127.0.0.1/`, several chat
//! processes share their rooms through Redis: messages reach the members on every node (the
//! member list a newcomer is shown is still the local node's).

use tidings_examples::{chat, html, not_found, Entry};
use tidings_smol::reexports::http::Method;

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let listen = tidings_examples::listen_addr("127.0.0.1:8080");
        let mut builder = tidings_smol::builder();
        if let Some(url) = tidings_examples::flag("redis") {
            builder = builder.backplane(tidings_redis::Redis::new(url));
        }
        let server = chat::rooms(builder)
            .http(|_, req| async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/") => html(chat::PAGE),
                    _ => not_found(),
                }
            })
            .bind(&listen)
            .await?;
        tidings_examples::serve("chat", &server, Entry::Page).await?;
        Ok(())
    })
}
