//! The upgrade: the RFC 6455 server handshake over hyper (checking the request, choosing a
//! subprotocol, the answers: 101, or a refusal with a status that says why), then the
//! origin policy, the per-address cap and the connect hook, the connection's opening in the
//! hub, and the hand-over of the upgraded socket to a connection task.
//!
//! A refusal is the `Err` of these checks: it is the response itself, built once per
//! refused request, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncWrite};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use smol_hyper::rt::FuturesIo;
use tidings_core::{Config, ConnectionInfo, Protocol};
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::front::{AddressClaim, Shared};
use crate::handle::Admitted;
use crate::hooks::{Accept, ConnectRequest, HttpResponse};
use crate::{Error, Handle, Runtime};

/// The header that says who refused an upgrade, so that a client can tell the application's
/// 400 or 403 from the server's own: `server` or `application`.
pub(crate) const REFUSED_BY: &str = "tidings-refused-by";

/// A refusal by the server itself (the handshake, the origin, a limit): status and reason.
fn refuse(status: StatusCode, reason: &str) -> HttpResponse {
    refusal_by("server", status, format!("{reason}\n"))
}

/// Who refused an upgrade and why, kept in the response's extensions (never sent) for the
/// log line [`admit`] writes.
#[derive(Clone)]
struct Why {
    by: &'static str,
    reason: String,
}

/// A refusal with a plain-text body, marked with who refused.
fn refusal_by(who: &'static str, status: StatusCode, body: String) -> HttpResponse {
    let why = Why {
        by: who,
        reason: body.trim_end().to_owned(),
    };
    let mut response = Response::new(Full::from(body));
    response.extensions_mut().insert(why);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(REFUSED_BY, HeaderValue::from_static(who));
    response
}

/// Whether a comma-separated header holds `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value to answer with.
pub(crate) fn check_request<B>(req: &Request<B>) -> Result<String, HttpResponse> {
    let headers = req.headers();
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        let mut response = refuse(StatusCode::UPGRADE_REQUIRED, "this is a WebSocket endpoint");
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    if req.method() != http::Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_key(key.as_bytes()) => {
            Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}

/// A key is 16 bytes in base64: 22 alphabet characters, then `==`.
fn is_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first subprotocol the client lists that the server speaks; `None` if the client
/// lists none; a 400 if it lists some and none is spoken here.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    supported: &[String],
) -> Result<Option<String>, HttpResponse> {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    if offered.peek().is_none() {
        return Ok(None);
    }
    match offered.find(|p| supported.iter().any(|s| s == p)) {
        Some(p) => Ok(Some(p.to_owned())),
        None => Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "no supported subprotocol (this server speaks {})",
                supported.join(", ")
            ),
        )),
    }
}

/// The answer when the hub will not open the connection.
pub(crate) fn refusal(error: Error) -> HttpResponse {
    use tidings_core::Error as Hub;
    match error {
        Error::Hub(Hub::TooManyConnections { .. }) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at its connection limit",
        ),
        Error::Hub(Hub::ShuttingDown) | Error::Stopped => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ),
        Error::Hub(Hub::NameTaken(_)) => refuse(StatusCode::CONFLICT, "that name is connected"),
        Error::Hub(e @ Hub::InvalidName { .. }) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
        e => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// 101 Switching Protocols.
pub(crate) fn switching(accept_key: &str, protocol: Option<String>) -> HttpResponse {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    response
}

/// A request that passed every check and whose connection the hub has opened: what the
/// 101 answers with, and what the connection needs once the socket is upgraded.
struct Admission<R: Runtime> {
    accept_key: String,
    protocol: Option<String>,
    admitted: Admitted,
    claim: AddressClaim<R>,
}

/// The checks of an upgrade request, in order: RFC 6455, the origin policy, the
/// subprotocol, the per-address cap, the connect hook, the hub's own limits. A refusal is
/// counted by its status for the metrics, and logged.
async fn admit<R: Runtime, B>(
    shared: &Arc<Shared<R>>,
    remote: SocketAddr,
    req: &Request<B>,
) -> Result<Admission<R>, HttpResponse> {
    let admission = checks(shared, remote, req).await;
    if let Err(refusal) = &admission {
        let status = refusal.status().as_u16();
        shared.handle.count_refusal(status);
        let (by, reason) = match refusal.extensions().get::<Why>() {
            Some(why) => (why.by, why.reason.as_str()),
            None => ("server", ""),
        };
        crate::logs::refused(remote, req.uri().path(), status, by, reason);
    }
    admission
}

async fn checks<R: Runtime, B>(
    shared: &Arc<Shared<R>>,
    remote: SocketAddr,
    req: &Request<B>,
) -> Result<Admission<R>, HttpResponse> {
    let front = &shared.front;
    let accept_key = check_request(req)?;
    if !front.origin.permits(req.headers()) {
        return Err(refuse(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    let protocol = negotiate(req.headers(), &front.subprotocols)?;
    let Some(claim) = shared.claim_address(remote.ip()) else {
        let body = "too many connections from your address";
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, body));
    };
    let request = ConnectRequest {
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        headers: req.headers().clone(),
        remote,
    };
    let accept = match &front.connect {
        Some(hook) => hook(request.clone())
            .await
            .map_err(|r| refusal_by("application", r.status, r.body))?,
        None => Accept::new(),
    };
    let mut info = ConnectionInfo::new(request.path)
        .query(request.query)
        .remote(remote);
    for name in &front.keep_headers {
        if let Some(value) = request.headers.get(name).and_then(|v| v.to_str().ok()) {
            info = info.header(name.clone(), value);
        }
    }
    if let Some(name) = accept.name {
        info = info.name(name);
    }
    if let Some(ns) = accept.namespace {
        info = info.namespace(ns);
    }
    // A subprotocol that names a wire protocol chooses it; else the hub goes by the path.
    info.protocol = protocol.as_deref().and_then(Protocol::from_subprotocol);
    let admitted = shared
        .handle
        .admit(info, accept.meta, accept.authenticated)
        .await
        .map_err(refusal)?;
    Ok(Admission {
        accept_key,
        protocol,
        admitted,
        claim,
    })
}

/// Answers 101 for an admitted request, and runs its connection once hyper has upgraded the
/// socket and `socket` has made a stream of it (with the bytes the client sent after its
/// request, if hyper read any).
fn open<R, S, F>(
    shared: &Arc<Shared<R>>,
    mut req: Request<impl Sized>,
    admission: Admission<R>,
    socket: F,
) -> HttpResponse
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(Upgraded) -> Result<(S, Vec<u8>), String> + Send + 'static,
{
    let Admission {
        accept_key,
        protocol,
        admitted,
        claim,
    } = admission;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let handle = shared.handle.clone();
    let rt = handle.runtime().clone();
    rt.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return handle.abandon(admitted, e.to_string()).await,
        };
        let (stream, pre_read) = match socket(upgraded) {
            Ok(parts) => parts,
            Err(e) => return handle.abandon(admitted, e).await,
        };
        let options = handle.options();
        let ws =
            WebSocketStream::from_partially_read(stream, pre_read, Role::Server, Some(options.ws))
                .await;
        // The connection's own task keeps the claim: the address's share is given back
        // when the connection ends. This one ends here, and with it the upgrade's state.
        handle.attach(admitted, ws, options, claim);
    });
    switching(&accept_key, protocol)
}

/// Checks and answers a request for a WebSocket path of the built-in server; on 101, runs
/// the connection.
pub(crate) async fn upgrade<R, S>(
    shared: &Arc<Shared<R>>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<HttpResponse, HttpResponse>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admission = admit(shared, remote, &req).await?;
    Ok(open(shared, req, admission, |upgraded| {
        let parts = upgraded
            .downcast::<FuturesIo<S>>()
            .map_err(|_| "unexpected upgraded stream".to_owned())?;
        // The bytes the client sent after its request, copied out: `read_buf` shares hyper's
        // whole read buffer (8 KiB), which would otherwise live as long as the connection.
        Ok((parts.io.into_inner(), parts.read_buf.to_vec()))
    }))
}

/// tidings on a route of another HTTP server (axum, a hyper service of the application's):
/// the same checks and answers as the built-in server's WebSocket paths (RFC 6455, origin
/// policy, subprotocols, per-address cap, connect hook), without a listener of its own.
/// Made by [`Builder::upgrader`](crate::Builder::upgrader); cheap to clone.
///
/// The HTTP server must be hyper's (axum's is), whose upgrade [`Upgrader::upgrade`] takes
/// over; a runtime adapter supplies how hyper's upgraded socket becomes a stream
/// (`tidings_tokio::upgrade` for tokio).
pub struct Upgrader<R: Runtime> {
    shared: Arc<Shared<R>>,
}

impl<R: Runtime> Clone for Upgrader<R> {
    fn clone(&self) -> Self {
        Upgrader {
            shared: self.shared.clone(),
        }
    }
}

impl<R: Runtime> Upgrader<R> {
    pub(crate) fn new(shared: Arc<Shared<R>>) -> Self {
        Upgrader { shared }
    }

    /// The hub's handle: publish, emit, close, shut down.
    pub fn handle(&self) -> &Handle<R> {
        &self.shared.handle
    }

    /// Answers `req`, a request on the application's WebSocket route from `remote`: a
    /// refusal (426, 400, 403, 405, 409, 503, or the connect hook's answer, marked with
    /// `tidings-refused-by`), or 101, after which the connection runs in the hub once hyper
    /// has upgraded the socket and `socket` has made a stream of it.
    pub async fn upgrade<B, S, F>(
        &self,
        req: Request<B>,
        remote: SocketAddr,
        socket: F,
    ) -> HttpResponse
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnOnce(Upgraded) -> S + Send + 'static,
    {
        // The checks see the head only: a body need not be `Sync` (axum's is not) to be
        // held across the connect hook.
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        match admit(&self.shared, remote, &head).await {
            Ok(admission) => {
                let req = Request::from_parts(head.into_parts().0, body);
                open(&self.shared, req, admission, |upgraded| {
                    Ok((socket(upgraded), Vec::new()))
                })
            }
            Err(refusal) => refusal,
        }
    }
}

/// tungstenite's limits for a hub config: messages up to the hub's limit (a larger one
/// closes with 1009 before it is buffered whole), a 1 KiB read buffer (tungstenite
/// allocates and zeroes the whole buffer per connection: its 128 KiB default costs 135 KiB
/// per idle connection, 4 KiB about 4 KiB; a message larger than the buffer is still read
/// whole, in reads of this size). The frames the hub hands out do not pass through
/// tungstenite's write buffer (the connection task encodes and writes them itself, see
/// conn.rs); what does (pongs, the close frame) is written out at 16 KiB, and never more
/// is buffered than one burst the hub can hand out.
pub(crate) fn ws_config(config: &Config) -> WebSocketConfig {
    const WRITE_BUFFER: usize = 16 * 1024;
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + config.max_queue_bytes + 1024)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_good_request_gets_the_rfc_accept_key() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            check_request(&request(&GOOD)).ok().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn an_upgrade_needs_both_upgrade_and_connection_headers() {
        for missing in [0, 1] {
            let h: Vec<_> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, h)| *h)
                .collect();
            let r = check_request(&request(&h)).expect_err("not an upgrade");
            assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
            assert_eq!(r.headers()[header::UPGRADE], "websocket");
            // RFC 6455 4.4: the version this server speaks, on every 426.
            assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
            assert_eq!(r.headers()[REFUSED_BY], "server");
        }
        let mut h = GOOD.to_vec();
        h[0] = ("upgrade", "h2c");
        assert!(check_request(&request(&h)).is_err());
    }

    #[test]
    fn keys_use_the_whole_base64_alphabet() {
        let mut h = GOOD.to_vec();
        h[3] = ("sec-websocket-key", "abcdefghijklmnopqrst+/==");
        assert!(check_request(&request(&h)).is_ok());
    }

    #[test]
    fn bad_version_gets_426_with_the_version_we_speak() {
        let mut h = GOOD.to_vec();
        h[2] = ("sec-websocket-version", "8");
        let r = check_request(&request(&h)).expect_err("refused");
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn bad_key_gets_400() {
        for key in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            let mut h = GOOD.to_vec();
            h[3] = ("sec-websocket-key", key);
            let r = check_request(&request(&h)).expect_err("refused");
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "key {key:?}");
        }
    }

    #[test]
    fn subprotocols_first_supported_in_client_order_wins() {
        let supported = vec!["tidings.v1".to_owned(), "tidings.v2".to_owned()];
        let h = |v: &str| request(&[("sec-websocket-protocol", v)]).headers().clone();
        assert_eq!(
            negotiate(&h("x, tidings.v2, tidings.v1"), &supported).ok(),
            Some(Some("tidings.v2".into()))
        );
        assert_eq!(negotiate(&HeaderMap::new(), &supported).ok(), Some(None));
        let refused = negotiate(&h("mqtt"), &supported).expect_err("none spoken");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
