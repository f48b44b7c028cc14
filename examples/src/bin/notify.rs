//! Notifications: each user's browsers (or services) connect to
//! `/ws/notifications?token=...` and get that user's notifications, and only theirs;
//! `POST /api/notify` with `{"user_id": optional, "title": ..., "body": ...}` delivers to that
//! user's connections, or to everyone, and answers how many connections got it.
//!
//! The token proves who a connection is, as a real app's session or signed token would. Here
//! the users and their tokens come from `--user ID:TOKEN` (repeatable); without any, two demo
//! users are made with random tokens, printed at startup. The server puts each connection in
//! its user's channel (`user:ID`, pinned: the client cannot leave it) and refuses a
//! `subscribe` to anyone else's. `/api/notify` stands for the app's own backend: keep it
//! internal in a real deployment.
//!
//! `cargo run -p tidings-examples --bin notify [-- --listen 127.0.0.1:8082]`, then open
//! the printed URL in two tabs, connect with a printed token, and send from one.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tidings_examples::{html, json as json_reply, json_body, not_found, Entry};
use tidings_smol::reexports::http::{Method, StatusCode};
use tidings_smol::{Accept, Ctx, Handle, HttpResponse, Message, Refusal, Router, Target};

/// Tokens to user ids: who holds which token.
type Users = Arc<HashMap<String, String>>;

/// The room of one user's connections (a user may have many tabs open).
fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// The users from `--user ID:TOKEN` flags, or two demo users with random tokens.
fn users() -> Users {
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
            println!("notify: user {user} has token {token}");
            users.insert(token, user.to_owned());
        }
    }
    Arc::new(users)
}

/// The user a connection was admitted as.
async fn user_of(ctx: &Ctx) -> Option<String> {
    match ctx.meta("user_id").await {
        Ok(Some(Value::String(user))) => Some(user),
        _ => None,
    }
}

/// `POST /api/notify`.
async fn notify(handle: Handle, body: Result<Value, String>) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(why) => return json_reply(StatusCode::BAD_REQUEST, &json!({ "error": why })),
    };
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
    let (Some(title), Some(text_body)) = (text("title"), text("body")) else {
        let error = json!({ "error": "\"title\" and \"body\" are required strings" });
        return json_reply(StatusCode::BAD_REQUEST, &error);
    };
    let user = match body.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            let error = json!({ "error": "\"user_id\" must be a string or a number" });
            return json_reply(StatusCode::BAD_REQUEST, &error);
        }
    };
    let target = match &user {
        Some(user) => Target::room("/", user_room(user)),
        None => Target::all(),
    };
    let message = Message::json("notification", json!({ "title": title, "body": text_body }));
    match handle.publish(target, message).await {
        Ok(report) => json_reply(StatusCode::OK, &json!({ "delivered": report.queued })),
        Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() })),
    }
}

fn main() -> Result<(), tidings_smol::Error> {
    let users = users();
    smol::block_on(async {
        let router = Router::new()
            // Each connection is put in its user's channel as it opens, and kept there.
            .on_connect(|ctx| async move {
                if let Some(user) = user_of(&ctx).await {
                    let _ = ctx.join_pinned(&user_room(&user)).await;
                }
            })
            // A client may subscribe to its own channel only (it is in it already).
            .authorize_subscribe(|ctx, channel| async move {
                match user_of(&ctx).await {
                    Some(user) if channel == user_room(&user) => Ok(()),
                    _ => Err("you may subscribe to your own notifications only".to_owned()),
                }
            });
        let builder = tidings_smol::builder()
            .paths(["/ws/notifications"])
            .on_connect(move |req| {
                let user = req
                    .query_param("token")
                    .and_then(|token| users.get(&token).cloned());
                async move {
                    match user {
                        Some(user) => Ok(Accept::new().meta("user_id", user)),
                        None => Err(Refusal::unauthorized("a valid token is required")),
                    }
                }
            })
            .router(router)
            .http(|handle, req| async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/") => html(include_str!("../../pages/notify.html")),
                    (&Method::POST, "/api/notify") => {
                        notify(handle, json_body(req, 64 * 1024).await).await
                    }
                    (_, "/api/notify") => {
                        let error = json!({ "error": "use POST" });
                        json_reply(StatusCode::METHOD_NOT_ALLOWED, &error)
                    }
                    _ => not_found(),
                }
            });
        let listen = tidings_examples::listen_addr("127.0.0.1:8082");
        let server = builder.bind(&listen).await?;
        tidings_examples::serve("notify", &server, Entry::Page).await?;
        Ok(())
    })
}
