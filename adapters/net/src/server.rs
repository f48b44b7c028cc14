//! The server: a [`Builder`] for the hub and its HTTP front, and the accept loop.
//!
//! Every TCP connection is served by hyper (HTTP/1.1). Requests for a WebSocket path are
//! checked (RFC 6455 handshake, origin, subprotocol, the application's connect hook), the
//! connection is opened in the hub, and the 101 answer hands the socket to a connection
//! task. Every other request goes to the application's HTTP handler, so a page and a REST
//! endpoint live on the same port as the WebSocket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use smol_hyper::rt::{FuturesIo, SmolTimer};
use tidings_core::{Config, ConnectionInfo, SubscribePolicy};
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::conn::{ConnOptions, TaskCount};
use crate::driver::{self, Driver, RouterLink};
use crate::handle::Inner;
use crate::{Error, Handle, OriginPolicy, Router, Runtime};

/// A response with the whole body in memory, as the HTTP handler returns it.
pub type HttpResponse = Response<Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type HttpHandler<R> =
    Arc<dyn Fn(Handle<R>, Request<Incoming>) -> BoxFuture<HttpResponse> + Send + Sync>;
type ConnectHook = Arc<dyn Fn(ConnectRequest) -> BoxFuture<Result<Accept, Refusal>> + Send + Sync>;

/// The subprotocol of PROTOCOL.md version 1.
pub const SUBPROTOCOL_V1: &str = "tidings.v1";

/// What the connect hook sees of an upgrade request.
#[derive(Clone, Debug)]
pub struct ConnectRequest {
    /// The path, e.g. `/ws/notifications`.
    pub path: String,
    /// The raw query string, e.g. `user_id=42`.
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The peer's address.
    pub remote: SocketAddr,
}

impl ConnectRequest {
    /// The first query parameter called `key`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        ConnectionInfo::new("")
            .query(self.query.clone())
            .query_param(key)
            .map(|v| v.into_owned())
    }

    /// The header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The connect hook's yes: how to open the connection.
#[derive(Clone, Debug, Default)]
pub struct Accept {
    name: Option<String>,
    namespace: Option<String>,
    meta: Vec<(String, Value)>,
    authenticated: bool,
}

impl Accept {
    /// Open it with defaults (no name, namespace `/`, no metadata).
    pub fn new() -> Self {
        Self::default()
    }

    /// A unique name to find the connection by (e.g. a user id).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The namespace to open it in.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Counts the connection as authenticated from the start (its credentials came with the
    /// upgrade), so `Config::auth_timeout` does not close it.
    #[must_use]
    pub fn authenticated(mut self) -> Self {
        self.authenticated = true;
        self
    }

    /// Attaches metadata (identity, roles) that handlers read with `Ctx::meta`.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta.push((key.into(), value.into()));
        self
    }
}

/// The connect hook's no: the HTTP status and body the client gets instead of an upgrade.
#[derive(Clone, Debug)]
pub struct Refusal {
    status: StatusCode,
    body: String,
}

impl Refusal {
    /// Any status (4xx or 5xx) with a body.
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Refusal {
            status,
            body: body.into(),
        }
    }

    /// 401 Unauthorized: who are you?
    pub fn unauthorized(body: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, body)
    }

    /// 403 Forbidden: you may not.
    pub fn forbidden(body: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, body)
    }
}

/// Configures and starts a tidings hub, with or without its own server.
pub struct Builder<R: Runtime> {
    rt: R,
    config: Config,
    paths: Vec<String>,
    origin: OriginPolicy,
    subprotocols: Vec<String>,
    connect: Option<ConnectHook>,
    http: Option<HttpHandler<R>>,
    router: Option<Router<R>>,
    options: ConnOptions,
    handshake_timeout: Duration,
    inbox_limit: usize,
    keep_headers: Vec<String>,
    per_address: usize,
    pending_handshakes: usize,
    #[cfg(feature = "tls")]
    tls: Option<futures_rustls::TlsAcceptor>,
}

impl<R: Runtime> Builder<R> {
    /// A builder with the defaults: the hub's [`Config::default`], WebSocket at `/ws`,
    /// same-origin policy, subprotocol `tidings.v1` offered, a 10 s write timeout and
    /// handshake timeout, a 1 s close delay, 1 KiB read buffers.
    pub fn new(rt: R) -> Self {
        let config = Config::default();
        Builder {
            rt,
            paths: vec!["/ws".into()],
            origin: OriginPolicy::default(),
            subprotocols: vec![SUBPROTOCOL_V1.into()],
            connect: None,
            http: None,
            router: None,
            options: ConnOptions {
                ws: ws_config(&config),
                write_timeout: Duration::from_secs(10),
                close_delay: Duration::from_secs(1),
            },
            config,
            handshake_timeout: Duration::from_secs(10),
            inbox_limit: 1024,
            keep_headers: Vec::new(),
            per_address: 1000,
            pending_handshakes: 1024,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// WebSocket connections one remote IP address may hold; more are refused with 503.
    /// Default 1,000 (offices and carriers put many users behind one address).
    #[must_use]
    pub fn max_connections_per_address(mut self, limit: usize) -> Self {
        self.per_address = limit;
        self
    }

    /// TCP connections still in their HTTP phase (not yet upgraded, or plain HTTP); beyond
    /// it new ones are dropped at accept, so slow handshakes cannot exhaust the server.
    /// Default 1,024.
    #[must_use]
    pub fn max_pending_handshakes(mut self, limit: usize) -> Self {
        self.pending_handshakes = limit;
        self
    }

    /// Serves TLS (`https://`, `wss://`) with this rustls config (see [`crate::tls`]).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: Arc<futures_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(futures_rustls::TlsAcceptor::from(config));
        self
    }

    /// The hub's configuration (limits, heartbeats, policies), and tungstenite's limits
    /// that follow from it (call [`Builder::websocket_config`] after this to change those).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.options.ws = ws_config(&config);
        self.config = config;
        self
    }

    /// The paths that upgrade to WebSocket, replacing `/ws`. A path ending in `/*` takes
    /// every path under it (`/ws/*` takes `/ws/user123/notification`).
    #[must_use]
    pub fn paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Which origins may upgrade. Default [`OriginPolicy::SameOrigin`].
    #[must_use]
    pub fn origin(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// The subprotocols the server speaks; the first one the client lists that is here
    /// wins. A client that offers some but none of these is refused with 400. Default
    /// `["tidings.v1"]`.
    #[must_use]
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Decides each upgrade after the origin check: `Ok(Accept)` opens the connection
    /// (with a name, namespace and metadata), `Err(Refusal)` answers with its status.
    #[must_use]
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Accept, Refusal>> + Send + 'static,
    {
        self.connect = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Serves every request that is not a WebSocket upgrade (a page, a REST endpoint that
    /// publishes through the handle it is given). Without it they get 404.
    #[must_use]
    pub fn http<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Handle<R>, Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        self.http = Some(Arc::new(move |handle, req| Box::pin(handler(handle, req))));
        self
    }

    /// The event handlers and hooks.
    #[must_use]
    pub fn router(mut self, router: Router<R>) -> Self {
        self.router = Some(router);
        self
    }

    /// A burst of writes that takes longer fails the connection. Default 10 s.
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = timeout;
        self
    }

    /// After sending a close frame, how long to wait for the peer's before dropping the
    /// socket. Default 1 s.
    #[must_use]
    pub fn close_delay(mut self, delay: Duration) -> Self {
        self.options.close_delay = delay;
        self
    }

    /// How long a client may take to send its request headers. Default 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Unrouted messages a connection may have waiting for [`Handle::receive`]; beyond it
    /// the connection is closed with 1008. Default 1,024.
    #[must_use]
    pub fn inbox_limit(mut self, limit: usize) -> Self {
        self.inbox_limit = limit;
        self
    }

    /// Request headers to keep in the connection's info (default none: they cost memory
    /// per connection).
    #[must_use]
    pub fn keep_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keep_headers = names.into_iter().map(Into::into).collect();
        self
    }

    /// Tunes tungstenite's buffers and limits (default: a 1 KiB read buffer, messages up
    /// to the hub's `max_message_size`).
    #[must_use]
    pub fn websocket_config(mut self, config: WebSocketConfig) -> Self {
        self.options.ws = config;
        self
    }

    /// Starts the hub without a server of its own: connections come through
    /// [`Handle::open`] from the application's HTTP server.
    pub fn start(self) -> Result<Handle<R>, Error> {
        Ok(self.launch()?.0)
    }

    fn launch(mut self) -> Result<(Handle<R>, Front<R>), Error> {
        if self.router.as_ref().is_some_and(|r| r.routes().authorize) {
            self.config.subscribe_policy = SubscribePolicy::Approve;
        }
        let close_grace = self.config.close_grace;
        let hub = tidings_core::Hub::new(self.config)?;
        // What connection tasks have read and the hub has not handled: a client paused by
        // flow control may still have this much on its way, so it stays small (one burst).
        let (inbound_tx, inbound_rx) = async_channel::bounded(driver::BURST);
        let (control_tx, control_rx) = async_channel::unbounded();
        let handle = Handle::new(Inner {
            rt: self.rt.clone(),
            control: control_tx,
            inbound: inbound_tx,
            options: self.options,
            close_grace,
            tasks: Arc::new(TaskCount::default()),
            stopping: AtomicBool::new(false),
            stop: event_listener::Event::new(),
        });
        let link = self.router.map(|router| {
            let (tx, rx) = async_channel::unbounded();
            let room = Arc::new(event_listener::Event::new());
            let link = RouterLink {
                routes: Arc::new(router.routes()),
                tx,
                room: room.clone(),
            };
            self.rt.spawn(router.run(handle.clone(), rx, room));
            link
        });
        let driver = Driver::new(hub, self.inbox_limit, link);
        self.rt
            .spawn(driver::run(self.rt.clone(), driver, inbound_rx, control_rx));
        let front = Front {
            paths: self.paths,
            origin: self.origin,
            subprotocols: self.subprotocols,
            connect: self.connect,
            http: self.http,
            handshake_timeout: self.handshake_timeout,
            keep_headers: self.keep_headers,
            per_address: self.per_address,
            pending_handshakes: self.pending_handshakes,
            #[cfg(feature = "tls")]
            tls: self.tls,
        };
        Ok((handle, front))
    }

    /// Starts the hub and a server listening on `addr` (`"127.0.0.1:8080"`, port 0 for any).
    pub async fn bind(self, addr: &str) -> Result<Server<R>, Error> {
        let rt = self.rt.clone();
        let listener = rt.bind(addr).await?;
        let local_addr = rt.local_addr(&listener)?;
        let (handle, front) = self.launch()?;
        #[cfg(feature = "tls")]
        let secure = front.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let secure = false;
        let shared = Arc::new(Shared {
            handle: handle.clone(),
            front,
            pending: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        });
        rt.spawn(accept_loop(rt.clone(), listener, shared));
        Ok(Server {
            handle,
            local_addr,
            secure,
        })
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server<R: Runtime> {
    handle: Handle<R>,
    local_addr: SocketAddr,
    secure: bool,
}

impl<R: Runtime> Server<R> {
    /// A handle to its hub.
    pub fn handle(&self) -> Handle<R> {
        self.handle.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://addr{path}` (`wss://` with TLS).
    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.local_addr)
    }

    /// `http://addr{path}` (`https://` with TLS).
    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.local_addr)
    }

    /// Completes once [`Handle::shutdown`] has been called.
    pub async fn stopped(&self) {
        self.handle.stopping().await;
    }
}

/// The HTTP side of the server: what an upgrade is checked against.
struct Front<R: Runtime> {
    paths: Vec<String>,
    origin: OriginPolicy,
    subprotocols: Vec<String>,
    connect: Option<ConnectHook>,
    http: Option<HttpHandler<R>>,
    handshake_timeout: Duration,
    keep_headers: Vec<String>,
    per_address: usize,
    pending_handshakes: usize,
    #[cfg(feature = "tls")]
    tls: Option<futures_rustls::TlsAcceptor>,
}

struct Shared<R: Runtime> {
    handle: Handle<R>,
    front: Front<R>,
    /// Connections in their HTTP phase.
    pending: AtomicUsize,
    /// WebSocket connections per remote address.
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl<R: Runtime> Shared<R> {
    /// Counts one more connection from `ip`, unless it is at its limit.
    fn claim_address(self: &Arc<Self>, ip: IpAddr) -> Option<AddressClaim<R>> {
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.front.per_address {
            return None;
        }
        *count += 1;
        Some(AddressClaim(self.clone(), ip))
    }
}

/// One connection's share of its address's limit, given back when dropped.
struct AddressClaim<R: Runtime>(Arc<Shared<R>>, IpAddr);

impl<R: Runtime> Drop for AddressClaim<R> {
    fn drop(&mut self) {
        let mut counts = self.0.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// A connection in its HTTP phase, counted until dropped.
struct Pending<R: Runtime>(Arc<Shared<R>>);

impl<R: Runtime> Drop for Pending<R> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop<R: Runtime>(rt: R, listener: R::TcpListener, shared: Arc<Shared<R>>) {
    loop {
        let stop = async {
            shared.handle.stopping().await;
            None
        };
        let Some(accepted) = or(async { Some(rt.accept(&listener).await) }, stop).await else {
            return; // shutting down: the listener closes with this task
        };
        match accepted {
            Ok((tcp, remote)) => {
                if shared.pending.fetch_add(1, Ordering::SeqCst) >= shared.front.pending_handshakes
                {
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                    drop(tcp); // over the limit: the cheapest answer is none
                    continue;
                }
                spawn_serve(&rt, Pending(shared.clone()), tcp, remote);
            }
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => {
                rt.sleep_until(std::time::Instant::now() + Duration::from_millis(5))
                    .await
            }
        }
    }
}

/// Serves an accepted connection, after the TLS handshake if the server has TLS.
fn spawn_serve<R: Runtime>(rt: &R, pending: Pending<R>, tcp: R::TcpStream, remote: SocketAddr) {
    let shared = pending.0.clone();
    #[cfg(feature = "tls")]
    if let Some(acceptor) = shared.front.tls.clone() {
        let rt2 = rt.clone();
        rt.spawn(async move {
            let until = std::time::Instant::now() + shared.front.handshake_timeout;
            let handshake = async { acceptor.accept(tcp).await.ok() };
            let timeout = async {
                rt2.sleep_until(until).await;
                None
            };
            if let Some(tls) = or(handshake, timeout).await {
                serve(shared, tls, remote).await;
            }
            drop(pending);
        });
        return;
    }
    rt.spawn(async move {
        serve(shared, tcp, remote).await;
        drop(pending); // upgraded (the connection task owns the socket now) or closed
    });
}

/// Serves one connection: HTTP requests until it upgrades or closes.
async fn serve<R, S>(shared: Arc<Shared<R>>, io: S, remote: SocketAddr)
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.front.handshake_timeout;
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond::<R, S>(shared, remote, req).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(FuturesIo::new(io), service)
        .with_upgrades();
    let _ = connection.await;
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond<R, S>(
    shared: Arc<Shared<R>>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> HttpResponse
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let front = &shared.front;
    let path = req.uri().path();
    if !front.paths.iter().any(|p| path_matches(p, path)) {
        return match &front.http {
            Some(handler) => handler(shared.handle.clone(), req).await,
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match upgrade::<R, S>(&shared, remote, req).await {
        Ok(response) | Err(response) => response,
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => pattern == path,
    }
}

async fn upgrade<R, S>(
    shared: &Arc<Shared<R>>,
    remote: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<HttpResponse, HttpResponse>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let front = &shared.front;
    let accept_key = crate::upgrade::check_request(&req)?;
    if !front.origin.permits(req.headers()) {
        return Err(plain(StatusCode::FORBIDDEN, "origin not allowed\n"));
    }
    let protocol = crate::upgrade::negotiate(req.headers(), &front.subprotocols)?;
    let Some(claim) = shared.claim_address(remote.ip()) else {
        let body = "too many connections from your address";
        return Err(plain(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n")));
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
            .map_err(|r| plain(r.status, r.body))?,
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
    let handle = shared.handle.clone();
    let admitted = handle
        .admit(info, accept.meta, accept.authenticated)
        .await
        .map_err(crate::upgrade::refusal)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let rt = handle.runtime().clone();
    rt.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return handle.abandon(admitted, e.to_string()).await,
        };
        let parts = match upgraded.downcast::<FuturesIo<S>>() {
            Ok(parts) => parts,
            Err(_) => {
                return handle
                    .abandon(admitted, "unexpected upgraded stream".into())
                    .await
            }
        };
        let options = handle.options();
        // The bytes the client sent after its request, copied out: `read_buf` shares hyper's
        // whole read buffer (8 KiB), which would otherwise live as long as the connection.
        let pre_read = parts.read_buf.to_vec();
        drop(parts.read_buf);
        let ws = WebSocketStream::from_partially_read(
            parts.io.into_inner(),
            pre_read,
            Role::Server,
            Some(options.ws),
        )
        .await;
        handle.run_connection(admitted, ws, options).await;
        drop(claim); // the address's share is given back when the connection ends
    });
    Ok(crate::upgrade::switching(&accept_key, protocol))
}

/// tungstenite's limits for a hub config: messages up to the hub's limit (a larger one
/// closes with 1009 before it is buffered whole), a 1 KiB read buffer (tungstenite
/// allocates and zeroes the whole buffer per connection: its 128 KiB default costs 135 KiB
/// per idle connection, 4 KiB about 4 KiB; a message larger than the buffer is still read
/// whole, in reads of this size), writes gathered up to 16 KiB per syscall, and never more
/// buffered than one burst the hub can hand out.
fn ws_config(config: &Config) -> WebSocketConfig {
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
    use super::path_matches;

    #[test]
    fn paths_match_exactly_or_under_a_prefix() {
        assert!(path_matches("/ws", "/ws"));
        assert!(!path_matches("/ws", "/ws/x"));
        assert!(path_matches("/ws/*", "/ws/user123/notification"));
        assert!(!path_matches("/ws/*", "/ws"));
        assert!(!path_matches("/ws/*", "/ws/"));
        assert!(!path_matches("/ws/*", "/wsx/a"));
    }
}
