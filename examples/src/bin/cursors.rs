//! Live cursors: every tab on the same document sees every other tab's pointer. Moves are
//! batched per document every 50 ms, so a hundred pointers cost twenty frames a second per
//! tab, not thousands.
//!
//! `cargo run --release -p tidings-examples --bin cursors [-- --listen 127.0.0.1:8084]`,
//! then open the printed URL in several tabs (add `?doc=name` for another document).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tidings_examples::{html, not_found, Entry};
use tidings_smol::reexports::http::Method;
use tidings_smol::{Ctx, Message, Router, Target};

#[derive(Deserialize)]
struct Move {
    doc: String,
    x: f64,
    y: f64,
}

/// A document is a room named `doc:<name>`; tabs join it with the protocol's `subscribe`.
fn room(doc: &str) -> String {
    format!("doc:{doc}")
}

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let router = Router::new()
            .on("move", |ctx: Ctx, m: Move| async move {
                if !(m.x.is_finite() && m.y.is_finite()) {
                    return;
                }
                // Only a tab on the document moves a cursor in it.
                let rooms = ctx.handle().rooms_of(ctx.conn()).await.unwrap_or_default();
                if !rooms.contains(&room(&m.doc)) {
                    let why = format!("subscribe to {:?} first", room(&m.doc));
                    let _ = ctx.error_code("not_a_member", &why).await;
                    return;
                }
                let target = Target::room("/", room(&m.doc));
                let cursor = json!({"id": ctx.conn().to_string(), "x": m.x, "y": m.y});
                let ttl = Duration::from_millis(50);
                let _ = ctx
                    .handle()
                    .publish_batched(target, "cursors", "cursors", cursor, ttl)
                    .await;
            })
            // A tab that leaves (or closes) takes its cursor with it.
            .on_leave(|ctx: Ctx, room: String| async move {
                let gone = Message::json("gone", json!({"id": ctx.conn().to_string()}));
                let _ = ctx.handle().to_room(&room, gone).await;
            });
        let listen = tidings_examples::listen_addr("127.0.0.1:8084");
        let server = tidings_smol::builder()
            .router(router)
            .http(|_, req| async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/") => html(include_str!("../../pages/cursors.html")),
                    _ => not_found(),
                }
            })
            .bind(&listen)
            .await?;
        tidings_examples::serve("cursors", &server, Entry::Page).await?;
        Ok(())
    })
}
