//! What the two notification servers share (`notify` on tidings' own server, `axum-notify`
//! inside an axum application): who holds which token, the user's channel, the router that
//! keeps each connection in it, and the delivery behind `POST /api/notify`. Generic over
//! the runtime, so the same code runs on smol and on tokio.
//!
//! The token proves who a connection is, as a real app's session or signed token would. The
//! users and their tokens come from `--user ID:TOKEN` (repeatable); without any, two demo
//! users are made with random tokens, printed at startup. Each connection is put in its
//! user's channel (`user:ID`, pinned: the client cannot leave it), and a `subscribe` to
//! anyone else's is refused. The channel keeps its recent notifications: a page that comes
//! back with `since` and `epoch` in its query (where it stood) gets what it missed first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tidings_smol::reexports::http::StatusCode;
use tidings_smol::tidings_core::Position;
use tidings_smol::tidings_net::{Ctx, Handle, Router, Runtime};
use tidings_smol::{Accept, Config, ConnectRequest, History, Message, Refusal, Target};

/// Tokens to user ids: who holds which token.
pub type Users = Arc<HashMap<String, String>>;

/// The room of one user's connections (a user may have many tabs open).
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// The users from `--user ID:TOKEN` flags, or two demo users with random tokens (printed,
/// after `name: `).
pub fn users(name: &str) -> Users {
    let mut users = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let spec = match arg.strip_prefix("--user=") {
            Some(spec) => Some(spec.to_owned()),
            None if arg == "--user" => args.next(),
            None => None,
        };
        if let Some((user, token)) = spec.as_deref().and_then(|s| s.split_once(':')) {
            users.insert(token.to_owned(), user.to_owned());
        }
    }
    if users.is_empty() {
        for user in ["alice", "bob"] {
            let token: String = (0..20).map(|_| fastrand::alphanumeric()).collect();
            println!("{name}: user {user} has token {token}");
            users.insert(token, user.to_owned());
        }
    }
    Arc::new(users)
}

/// The hub's settings: each user's channel keeps its last 100 notifications for ten
/// minutes, so that a tab that comes back gets what was sent while it was away.
pub fn config() -> Config {
    let history = History::new(100, Duration::from_secs(600));
    Config::default().history("user:*", history)
}

/// The connect hook's decision: a known token admits its user (kept in the connection's
/// metadata, with the position it comes back from, if its query has `since` and `epoch`),
/// anything else is a 401.
pub fn admit(users: &Users, req: &ConnectRequest) -> Result<Accept, Refusal> {
    let Some(user) = req
        .query_param("token")
        .and_then(|token| users.get(&token).cloned())
    else {
        return Err(Refusal::unauthorized("a valid token is required"));
    };
    let number = |name| req.query_param(name).and_then(|v| v.parse::<u64>().ok());
    let accept = Accept::new().meta("user_id", user);
    Ok(match (number("since"), number("epoch")) {
        (Some(since), Some(epoch)) => accept.meta("from", json!({"since": since, "epoch": epoch})),
        _ => accept,
    })
}

/// Where a connection comes back from, if it said.
async fn from_of<R: Runtime>(ctx: &Ctx<R>) -> Option<Position> {
    let from = ctx.meta("from").await.ok().flatten()?;
    Some(Position {
        since: from["since"].as_u64()?,
        epoch: from["epoch"].as_u64()?,
    })
}

/// The user a connection was admitted as.
async fn user_of<R: Runtime>(ctx: &Ctx<R>) -> Option<String> {
    match ctx.meta("user_id").await {
        Ok(Some(Value::String(user))) => Some(user),
        _ => None,
    }
}

/// Puts each connection in its user's channel as it opens, and keeps it there; one that
/// comes back with a position first gets what was sent to its user since. A client may
/// subscribe to its own channel only (it is in it already).
pub fn router<R: Runtime>() -> Router<R> {
    Router::new()
        .on_connect(|ctx| async move {
            if let Some(user) = user_of(&ctx).await {
                let room = user_room(&user);
                let _ = match from_of(&ctx).await {
                    Some(from) => ctx.join_pinned_from(&room, from).await.map(|_| true),
                    None => ctx.join_pinned(&room).await,
                };
            }
        })
        .authorize_subscribe(|ctx, channel| async move {
            match user_of(&ctx).await {
                Some(user) if channel == user_room(&user) => Ok(()),
                _ => Err("you may subscribe to your own notifications only".to_owned()),
            }
        })
}

/// `POST /api/notify` with `{"user_id": optional, "title": ..., "body": ...}` (or why the
/// body could not be read): delivers to that user's connections, or to everyone, and
/// answers how many connections got it.
pub async fn deliver<R: Runtime>(
    handle: &Handle<R>,
    body: Result<Value, String>,
) -> (StatusCode, Value) {
    let body = match body {
        Ok(body) => body,
        Err(why) => return (StatusCode::BAD_REQUEST, json!({ "error": why })),
    };
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
    let (Some(title), Some(text_body)) = (text("title"), text("body")) else {
        let error = json!({ "error": "\"title\" and \"body\" are required strings" });
        return (StatusCode::BAD_REQUEST, error);
    };
    let user = match body.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            let error = json!({ "error": "\"user_id\" must be a string or a number" });
            return (StatusCode::BAD_REQUEST, error);
        }
    };
    let target = match &user {
        Some(user) => Target::room("/", user_room(user)),
        None => Target::all(),
    };
    let message = Message::json("notification", json!({ "title": title, "body": text_body }));
    match handle.publish(target, message).await {
        Ok(report) => (StatusCode::OK, json!({ "delivered": report.queued })),
        Err(e) => (StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
    }
}
