//! A live dashboard of the server it runs in: the chat rooms (at `/chat`) and, at `/`, a page
//! that plots connections, deliveries per second, drops and cuts, and queue depth over the
//! last five minutes, fed once a second over a tidings room by the server itself. The same
//! counters are at `/metrics` for Prometheus.
//!
//! `cargo run --release -p tidings-examples --bin dashboard`, open the printed URL, then the
//! chat (the page links to it) in a few tabs, or put it under load: the lines move.

use std::time::Duration;

use tidings_examples::{chat, dashboard, html, not_found, Entry};
use tidings_smol::reexports::http::Method;

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let listen = tidings_examples::listen_addr("127.0.0.1:8080");
        let server = chat::rooms(tidings_smol::builder().metrics("/metrics"))
            .http(|_, req| async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/") => html(dashboard::PAGE),
                    (&Method::GET, "/chat") => html(chat::PAGE),
                    _ => not_found(),
                }
            })
            .bind(&listen)
            .await?;
        smol::spawn(dashboard::feed(server.handle(), Duration::from_secs(1))).detach();
        tidings_examples::serve("dashboard", &server, Entry::Page).await?;
        Ok(())
    })
}
