//! Notifications: each user's browsers (or services) connect to
//! `/ws/notifications?token=...` and get that user's notifications, and only theirs;
//! `POST /api/notify` with `{"user_id": optional, "title": ..., "body": ...}` delivers to that
//! user's connections, or to everyone, and answers how many connections got it.
//!
//! Who may connect, and the channel each user is kept in, are in `tidings_examples::notify`
//! (shared with `axum-notify`, the same server inside an axum application). `/api/notify`
//! stands for the app's own backend: keep it internal in a real deployment.
//!
//! `cargo run -p tidings-examples --bin notify [-- --listen 127.0.0.1:8082]`, then open
//! the printed URL in two tabs, connect with a printed token, and send from one.

use serde_json::json;
use tidings_examples::notify::{self, admit, deliver, router, users};
use tidings_examples::{html, json as json_reply, json_body, not_found, Entry};
use tidings_smol::reexports::http::{Method, StatusCode};

fn main() -> Result<(), tidings_smol::Error> {
    tidings_examples::logs();
    let users = users("notify");
    smol::block_on(async {
        let builder = tidings_smol::builder()
            .config(notify::config())
            .paths(["/ws/notifications"])
            .on_connect(move |req| {
                let decision = admit(&users, &req);
                async move { decision }
            })
            .router(router())
            .http(|handle, req| async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/") => html(include_str!("../../pages/notify.html")),
                    (&Method::POST, "/api/notify") => {
                        let (status, answer) =
                            deliver(&handle, json_body(req, 64 * 1024).await).await;
                        json_reply(status, &answer)
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
