//! A game lobby on the router: `join_game`, `leave_game`, `game_action` and `chat`, each
//! with typed data; anything else is answered with an `error` event.
//!
//! `cargo run -p tidings-examples --bin lobby [-- --listen 127.0.0.1:8083]`; clients
//! connect to `/ws?name=...` and speak PROTOCOL.md events, e.g.
//! `{"type":"event","event":"join_game","data":{"game":"g1"},"ack":1}`.

use serde::Deserialize;
use serde_json::{json, Value};
use tidings_examples::Entry;
use tidings_smol::{Accept, Ctx, Message, Router, Target};

#[derive(Deserialize)]
struct Game {
    game: String,
}

#[derive(Deserialize)]
struct Action {
    game: String,
    action: Value,
}

#[derive(Deserialize)]
struct Chat {
    game: String,
    text: String,
}

/// Every game is a room named `game:<id>`.
fn room(game: &str) -> String {
    format!("game:{game}")
}

/// The player's name, as the connect hook stored it.
async fn player(ctx: &Ctx) -> String {
    match ctx.meta("name").await {
        Ok(Some(Value::String(name))) => name,
        _ => ctx.conn().to_string(),
    }
}

/// Sends `event` with `data` to everyone in `game`.
async fn tell(ctx: &Ctx, game: &str, event: &str, data: Value) {
    let target = Target::room("/", room(game));
    let _ = ctx
        .handle()
        .publish(target, Message::json(event, data))
        .await;
}

/// Whether the player is in `game`; if not, tells them so.
async fn playing(ctx: &Ctx, game: &str) -> bool {
    let rooms = ctx.handle().rooms_of(ctx.conn()).await.unwrap_or_default();
    let playing = rooms.contains(&room(game));
    if !playing {
        let _ = ctx.error(&format!("you are not in game {game:?}")).await;
    }
    playing
}

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    smol::block_on(async {
        let router = Router::new()
            .on("join_game", |ctx: Ctx, g: Game| async move {
                // Pinned: a player leaves with `leave_game`, which tells the others.
                if let Err(e) = ctx.join_pinned(&room(&g.game)).await {
                    let _ = ctx.error(&e.to_string()).await;
                    return;
                }
                let name = player(&ctx).await;
                let players = ctx
                    .handle()
                    .members(&room(&g.game))
                    .await
                    .map_or(0, |m| m.len());
                tell(
                    &ctx,
                    &g.game,
                    "player_joined",
                    json!({"game": g.game, "player": name}),
                )
                .await;
                let _ = ctx.reply(json!({"game": g.game, "players": players})).await;
            })
            .on("leave_game", |ctx: Ctx, g: Game| async move {
                if playing(&ctx, &g.game).await {
                    let _ = ctx.leave(&room(&g.game)).await;
                    let name = player(&ctx).await;
                    tell(
                        &ctx,
                        &g.game,
                        "player_left",
                        json!({"game": g.game, "player": name}),
                    )
                    .await;
                    let _ = ctx.reply(json!({"left": g.game})).await;
                }
            })
            .on("game_action", |ctx: Ctx, a: Action| async move {
                if playing(&ctx, &a.game).await {
                    let name = player(&ctx).await;
                    let data = json!({"game": a.game, "player": name, "action": a.action});
                    tell(&ctx, &a.game, "game_action", data).await;
                }
            })
            .on("chat", |ctx: Ctx, c: Chat| async move {
                if playing(&ctx, &c.game).await {
                    let name = player(&ctx).await;
                    tell(
                        &ctx,
                        &c.game,
                        "chat",
                        json!({"game": c.game, "player": name, "text": c.text}),
                    )
                    .await;
                }
            })
            .fallback(|ctx: Ctx, event, _| async move {
                let _ = ctx.error(&format!("unknown command {event:?}")).await;
            });
        let listen = tidings_examples::listen_addr("127.0.0.1:8083");
        let server = tidings_smol::builder()
            .on_connect(|req| async move {
                let name = req
                    .query_param("name")
                    .filter(|n| !n.is_empty() && n.len() <= 32);
                Ok(Accept::new().meta("name", name.unwrap_or_else(|| "anonymous".into())))
            })
            .router(router)
            .http(|_, _| async { tidings_examples::not_found() })
            .bind(&listen)
            .await?;
        tidings_examples::serve("lobby", &server, Entry::Socket("/ws?name=you")).await?;
        Ok(())
    })
}
