//! Notifications inside an axum application: the app's own router serves the page and a JSON
//! endpoint, and one of its routes, `/ws/notifications?token=...`, is tidings. There is one
//! listener, axum's; tidings answers that route's upgrade requests with its origin policy and
//! connect hook (`tidings_tokio::upgrade`), as its own server would.
//!
//! The same application as `notify` (tokens, one pinned channel per user, `POST /api/notify`
//! with `{"user_id": optional, "title": ..., "body": ...}` answering `{"delivered": n}`),
//! on tokio: the shared parts are in `tidings_examples::notify`.
//!
//! `cargo run -p tidings-examples --bin axum-notify [-- --listen 127.0.0.1:8085]`, then open
//! the printed URL in two tabs, connect with a printed token, and send from one.

use std::net::SocketAddr;

use async_signal::{Signal, Signals};
use axum::extract::{ConnectInfo, Request, State};
use axum::routing::get;
use futures_lite::StreamExt;
use tidings_examples::notify::{self, admit, deliver, router, users};
use tidings_examples::{html, json};
use tidings_tokio::{HttpResponse, Upgrader};

/// The largest `/api/notify` body read.
const BODY_LIMIT: usize = 64 * 1024;

/// The WebSocket route: the request goes to tidings as it came.
async fn notifications(
    State(tidings): State<Upgrader>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> HttpResponse {
    tidings_tokio::upgrade(&tidings, req, remote).await
}

/// `POST /api/notify`: the app publishes through tidings' handle.
async fn notify(State(tidings): State<Upgrader>, req: Request) -> HttpResponse {
    let body = match axum::body::to_bytes(req.into_body(), BODY_LIMIT).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}")),
        Err(e) => Err(format!("cannot read the body: {e}")),
    };
    let (status, answer) = deliver(tidings.handle(), body).await;
    json(status, &answer)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tidings_examples::logs();
    let users = users("axum-notify");
    // Caught before the address is printed, so a signal sent as soon as it appears counts.
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    let tidings = tidings_tokio::builder()
        .config(notify::config())
        .on_connect(move |req| {
            let decision = admit(&users, &req);
            async move { decision }
        })
        .router(router())
        .upgrader()
        .map_err(std::io::Error::other)?;
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { html(include_str!("../../pages/notify.html")) }),
        )
        .route("/api/notify", axum::routing::post(notify))
        .route("/ws/notifications", get(notifications))
        .with_state(tidings.clone());
    let listen = tidings_examples::listen_addr("127.0.0.1:8085");
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("axum-notify: open http://{}/", listener.local_addr()?);
    let handle = tidings.handle().clone();
    let shutdown = async move {
        signals.next().await;
        println!("axum-notify: shutting down");
        // Every WebSocket client gets what is queued, then 1001; then axum stops.
        let _ = handle.shutdown().await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
