//! What the example programs share: the `--listen` flag, the line that tells a person (and
//! the tests) where to go, serving until a signal with a graceful shutdown, and small HTTP
//! answers. Each program is one file in `src/bin/`.

pub mod chat;
pub mod dashboard;
pub mod notify;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use serde_json::Value;
use tidings_smol::reexports::bytes::Bytes;
use tidings_smol::reexports::http::{header, Response, StatusCode};
use tidings_smol::reexports::http_body_util::{BodyExt, Full, Limited};
use tidings_smol::reexports::hyper::body::Incoming;
use tidings_smol::reexports::hyper::Request;
use tidings_smol::{HttpResponse, Server};

/// Prints tidings' logs (and the program's own) to standard error, filtered by `RUST_LOG`
/// (`info` when unset: connections opening and closing, refusals, cuts; `RUST_LOG=warn` for
/// problems only). Each program calls it first.
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

/// The address from `--listen ADDR` (or `--listen=ADDR`), else `default`.
pub fn listen_addr(default: &str) -> String {
    flag("listen").unwrap_or_else(|| default.to_owned())
}

/// The value of `--NAME VALUE` (or `--NAME=VALUE`), if given.
pub fn flag(name: &str) -> Option<String> {
    let long = format!("--{name}");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == long {
            return args.next();
        }
        if let Some(value) = arg.strip_prefix(&long).and_then(|v| v.strip_prefix('=')) {
            return Some(value.to_owned());
        }
    }
    None
}

/// What a person opens first: the program's page, or (for programs without one) its
/// WebSocket endpoint.
pub enum Entry<'a> {
    /// A page at `/` that connects by itself.
    Page,
    /// Only a WebSocket, at this path (with any query it needs).
    Socket(&'a str),
}

/// Announces where the program listens, then serves until SIGINT or SIGTERM (or until
/// something calls [`Handle::shutdown`](tidings_smol::Handle::shutdown)), then shuts down
/// gracefully: what is queued is delivered, every client gets 1001, and the program can
/// exit with 0.
///
/// The line is `NAME: open http://ADDR/` for a page, `NAME: WebSocket at ws://ADDR/PATH`
/// otherwise: each names what answers there. The signals are caught before it is printed,
/// so a signal sent as soon as the line appears is handled.
pub async fn serve(name: &str, server: &Server, entry: Entry<'_>) -> std::io::Result<()> {
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    // With a backplane, ready means subscribed: what is published from then on reaches the
    // other nodes. A backplane that is not up within 10 s keeps trying in the background.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.handle().backplane().is_some_and(|b| !b.up) {
        if std::time::Instant::now() > until {
            println!("{name}: the backplane is not up yet; it keeps trying");
            break;
        }
        smol::Timer::after(std::time::Duration::from_millis(10)).await;
    }
    match entry {
        Entry::Page => println!("{name}: open {}", server.http_url("/")),
        Entry::Socket(path) => println!("{name}: WebSocket at {}", server.ws_url(path)),
    }
    let signalled = async {
        signals.next().await;
        true
    };
    let stopped = async {
        server.stopped().await;
        false
    };
    if futures_lite::future::or(signalled, stopped).await {
        println!("{name}: shutting down");
        // Already stopping if it fails: either way every connection is closed.
        let _ = server.handle().shutdown().await;
    }
    Ok(())
}

/// A page of HTML.
pub fn html(page: &'static str) -> HttpResponse {
    respond(StatusCode::OK, "text/html; charset=utf-8", page)
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &Value) -> HttpResponse {
    respond(status, "application/json", value.to_string())
}

/// 404.
pub fn not_found() -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found\n",
    )
}

/// A response with a status, a content type and a body.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// The request body as JSON, at most `limit` bytes; the error says why in a few words.
pub async fn json_body(req: Request<Incoming>, limit: usize) -> Result<Value, String> {
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("invalid JSON: {e}"))
}
