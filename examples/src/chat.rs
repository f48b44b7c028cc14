//! The chat rooms behind the `chat` page (and the `dashboard` example's load): names from
//! the connect hook, rooms joined with the protocol's `subscribe`, joins and leaves announced,
//! `say` relayed to a room its sender is in, and `typing` notices sent through batching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use tidings_smol::reexports::http::StatusCode;
use tidings_smol::{
    Accept, Builder, Config, ConnId, Ctx, History, Message, Refusal, Router, Target,
};

/// Who is who: names by connection (the connect hook checked them).
type Names = Arc<Mutex<HashMap<ConnId, String>>>;

#[derive(Deserialize)]
struct Say {
    room: String,
    text: String,
}

#[derive(Deserialize)]
struct Typing {
    room: String,
}

fn name_of(names: &Names, conn: ConnId) -> String {
    let names = names.lock().unwrap_or_else(|e| e.into_inner());
    names
        .get(&conn)
        .cloned()
        .unwrap_or_else(|| conn.to_string())
}

async fn in_room(ctx: &Ctx, room: &str) -> bool {
    let rooms = ctx.handle().rooms_of(ctx.conn()).await.unwrap_or_default();
    rooms.iter().any(|r| r == room)
}

/// The chat's router: member lists, joins and leaves, `say` and `typing`.
fn router(names: Names) -> Router {
    let (on_connect, on_join, on_leave, on_say, on_typing, on_disconnect) = (
        names.clone(),
        names.clone(),
        names.clone(),
        names.clone(),
        names.clone(),
        names,
    );
    Router::new()
        .on_connect(move |ctx| {
            let names = on_connect.clone();
            async move {
                if let Ok(Some(Value::String(name))) = ctx.meta("name").await {
                    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
                    names.insert(ctx.conn(), name);
                }
            }
        })
        // Clients join rooms with the protocol's `subscribe`; the server announces them.
        .on_join(move |ctx, room| {
            let names = on_join.clone();
            async move {
                let name = name_of(&names, ctx.conn());
                let members = ctx.handle().members(&room).await.unwrap_or_default();
                let present: Vec<String> = members.iter().map(|c| name_of(&names, *c)).collect();
                let _ = ctx
                    .emit("members", json!({"room": room, "names": present}))
                    .await;
                let joined = Message::json("joined", json!({"room": room, "name": name}));
                let target = Target::room("/", room.as_str()).except(ctx.conn());
                let _ = ctx.handle().publish(target, joined).await;
            }
        })
        .on_leave(move |ctx, room| {
            let names = on_leave.clone();
            async move {
                let name = name_of(&names, ctx.conn());
                let left = Message::json("left", json!({"room": room, "name": name}));
                let _ = ctx.handle().to_room(&room, left).await;
            }
        })
        .on("say", move |ctx: Ctx, say: Say| {
            let names = on_say.clone();
            async move {
                let text = say.text.trim();
                if text.is_empty() || text.len() > 2000 {
                    let _ = ctx.error("a message is 1 to 2000 bytes").await;
                    return;
                }
                if !in_room(&ctx, &say.room).await {
                    let _ = ctx.error(&format!("join {:?} first", say.room)).await;
                    return;
                }
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let data =
                    json!({"room": say.room, "name": name_of(&names, ctx.conn()), "text": text});
                let message = Message::json("message", data).timestamp(ts);
                let _ = ctx.handle().to_room(&say.room, message).await;
            }
        })
        // Typing notices are batched per room: one frame every 400 ms at most.
        .on("typing", move |ctx: Ctx, typing: Typing| {
            let names = on_typing.clone();
            async move {
                if in_room(&ctx, &typing.room).await {
                    let target = Target::room("/", typing.room.as_str());
                    let name = name_of(&names, ctx.conn());
                    let ttl = Duration::from_millis(400);
                    let _ = ctx
                        .handle()
                        .publish_batched(target, "typing", "typing", name, ttl)
                        .await;
                }
            }
        })
        .on_disconnect(move |d| {
            let names = on_disconnect.clone();
            async move {
                names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&d.conn);
            }
        })
        .fallback(|ctx: Ctx, event, _| async move {
            let _ = ctx.error(&format!("unknown event {event:?}")).await;
        })
}

/// The chat page: pick a name, then rooms, messages and typing notices over `/ws`.
pub const PAGE: &str = include_str!("../pages/chat.html");

/// `builder` with the chat's connect hook (a `name` of 1 to 32 characters in the query), its
/// router, and two minutes of history in every room (the last 200 messages), so that a page
/// that lost its connection or was reloaded recovers what was said meanwhile.
pub fn rooms(builder: Builder) -> Builder {
    let history = History::new(200, Duration::from_secs(120));
    builder
        .config(Config::default().history("*", history))
        .on_connect(|req| async move {
            let name = req.query_param("name").unwrap_or_default();
            let name = name.trim();
            if name.is_empty() || name.len() > 32 || name.chars().any(char::is_control) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "pick a name of 1 to 32 characters",
                ));
            }
            Ok(Accept::new().meta("name", name))
        })
        .router(router(Names::default()))
}
