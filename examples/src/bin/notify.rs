//! Notifications: browsers (or services) connect to `/ws/notifications?user_id=...`;
//! `POST /api/notify` with `{"user_id": optional, "title": ..., "body": ...}` delivers to
//! that user's connections, or to everyone, and answers how many connections got it.
//!
//! `cargo run -p tidings-examples --bin notify [-- --listen 127.0.0.1:8082]`, then open
//! the printed URL in two tabs and send from one.

use serde_json::{json, Value};
use tidings_examples::{html, json as json_reply, json_body, not_found};
use tidings_smol::reexports::http::{Method, StatusCode};
use tidings_smol::{Accept, Handle, HttpResponse, Message, Refusal, Router, Target};

/// The room of one user's connections (a user may have many tabs open).
fn user_room(user: &str) -> String {
    format!("user:{user}")
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
    smol::block_on(async {
        // Each connection joins its user's room as it opens.
        let router = Router::new().on_connect(|ctx| async move {
            if let Ok(Some(Value::String(user))) = ctx.meta("user_id").await {
                let _ = ctx.join(&user_room(&user)).await;
            }
        });
        let builder = tidings_smol::builder()
            .paths(["/ws/notifications"])
            .on_connect(|req| async move {
                match req.query_param("user_id") {
                    Some(user) if !user.is_empty() && user.len() <= 64 => {
                        Ok(Accept::new().meta("user_id", user))
                    }
                    _ => Err(Refusal::new(StatusCode::BAD_REQUEST, "user_id required")),
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
        tidings_examples::announce("notify", &server);
        server.stopped().await;
        Ok(())
    })
}
