//! The server's configuration and start: a [`Builder`] for the hub and its HTTP front,
//! [`Builder::launch`](Builder) (the hub task and the router task), and the running
//! [`Server`]. The hooks' types are in `hooks.rs`, the front's shared state in `front.rs`,
//! the accept loop and HTTP serving in `http.rs`, the upgrade in `upgrade.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tidings_core::{Config, Protocol, SubscribePolicy};
use tungstenite::protocol::WebSocketConfig;

use crate::backplane::{Backplane, Link, FETCHES, OUTGOING_LIMIT};
use crate::conn::{ConnOptions, TaskCount};
use crate::driver::{self, Driver, RouterLink};
use crate::front::{Front, Shared, SocketOptions};
use crate::handle::Inner;
use crate::hooks::{
    Accept, ConnectHook, ConnectRequest, HttpHandler, HttpResponse, Refusal, SUBPROTOCOL_V1,
};
use crate::http::accept_loop;
use crate::upgrade::{ws_config, Upgrader};
use crate::{Error, Handle, OriginPolicy, Router, Runtime};

/// [`Builder::send_buffer`]'s default: a burst waits in the hub's shared queues rather than
/// in every member's socket. In the open-loop burst of BENCHMARKS.md ("Socket memory in a
/// burst"), the kernel's socket memory peaked at 245-257 MiB with it against 296-387 MiB
/// with the kernel's autotuning, and the burst went at 0.78-0.83× the tokio relay's rate
/// against 0.64-0.73×. Half of it held 179-189 MiB at about the same rate, for more of the
/// server's CPU per delivery (1.15-1.41× the relay's against 1.00-1.32×), more writer
/// buffers in memory, and half the throughput per connection.
const DEFAULT_SEND_BUFFER: usize = 64 * 1024;

/// [`Builder::unsent_limit`]'s default: one of the writer's 16 KiB writes. In the open-loop
/// burst of BENCHMARKS.md ("Unsent bytes in the kernel"), six sets in alternation with the
/// build without it went at 0.78-0.97× the tokio relay's rate (medians of sets) against
/// 0.73-0.86×, with 1.04-1.46× its server CPU per delivery against 0.88-1.31×; a 4 KiB
/// limit went at 0.77-0.88×.
const DEFAULT_UNSENT_LIMIT: usize = 16 * 1024;

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
    backplane: Option<Box<dyn Backplane>>,
    options: ConnOptions,
    handshake_timeout: Duration,
    inbox_limit: usize,
    backplane_backlog: usize,
    keep_headers: Vec<String>,
    metrics: Option<String>,
    per_address: usize,
    pending_handshakes: usize,
    send_buffer: Option<usize>,
    unsent_limit: Option<usize>,
    #[cfg(feature = "tls")]
    tls: Option<futures_rustls::TlsAcceptor>,
}

impl<R: Runtime> Builder<R> {
    /// A builder with the defaults: the hub's [`Config::default`], WebSocket at `/ws`,
    /// same-origin policy, subprotocols `tidings.v1` and `tidings.raw` offered, a 10 s write
    /// timeout and handshake timeout, a 1 s close delay, 1 KiB read buffers, and accepted
    /// sockets with a 64 KiB send buffer and a 16 KiB unsent limit.
    pub fn new(rt: R) -> Self {
        let config = Config::default();
        Builder {
            rt,
            paths: vec!["/ws".into()],
            origin: OriginPolicy::default(),
            subprotocols: vec![SUBPROTOCOL_V1.into(), Protocol::Raw.subprotocol().into()],
            connect: None,
            http: None,
            router: None,
            backplane: None,
            options: ConnOptions {
                ws: ws_config(&config),
                write_timeout: Duration::from_secs(10),
                close_delay: Duration::from_secs(1),
            },
            config,
            handshake_timeout: Duration::from_secs(10),
            inbox_limit: 1024,
            backplane_backlog: OUTGOING_LIMIT,
            keep_headers: Vec::new(),
            metrics: None,
            per_address: 1000,
            pending_handshakes: 1024,
            send_buffer: Some(DEFAULT_SEND_BUFFER),
            unsent_limit: Some(DEFAULT_UNSENT_LIMIT),
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

    /// The kernel's send buffer (`SO_SNDBUF`) of each connection the server accepts, in
    /// bytes as the kernel is asked (Linux doubles it for its own bookkeeping), or `None` to
    /// leave it to the kernel's autotuning (up to `net.ipv4.tcp_wmem`'s largest, 4 MiB by
    /// default). Default 64 KiB (128 KiB on Linux).
    ///
    /// A burst then waits in the hub's queues, where a room's publications are shared and
    /// counted against the queue bounds, rather than as each member's own copy in the
    /// kernel: 1,000 members behind a 2,000-message burst could otherwise hold up to 4 MiB
    /// each there, and a stalled reader would fill its 4 MiB before its queue grew at all.
    /// The cost: a connection carries at most about its send buffer per round trip
    /// (128 KiB at 100 ms is 1.28 MB/s). Raise it, or pass `None`, for large payloads to
    /// distant clients. It applies to the connections this server accepts, not to those an
    /// [`Upgrader`](crate::Upgrader) takes from another server.
    #[must_use]
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer = bytes;
        self
    }

    /// How many bytes a connection's socket holds that the kernel has not yet sent
    /// (`TCP_NOTSENT_LOWAT`, Linux and Android; not set elsewhere), or `None` for no limit
    /// but the send buffer. Default 16 KiB.
    ///
    /// A client whose window is full (it reads slower than the server writes) then leaves
    /// what it has not taken in the hub's queue, not in its socket: a write takes no more
    /// once this much is unsent, and the writer is woken again when less than half of it
    /// is left (Linux's `tcp_poll`). Bytes already sent and not yet acknowledged do not
    /// count, so unlike a smaller send buffer this does not slow a connection to a distant
    /// client. In an open-loop burst on one machine it also moves the work of sending from
    /// the reader's side to the server's: with a full send queue, the reader's
    /// acknowledgement sends the server's queued bytes in the reader's own system call. It
    /// applies to the connections this server accepts, not to those an
    /// [`Upgrader`](crate::Upgrader) takes from another server.
    #[must_use]
    pub fn unsent_limit(mut self, bytes: Option<usize>) -> Self {
        self.unsent_limit = bytes;
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

    /// Serves the hub's counters in the Prometheus text format at `path` (`/metrics`), on
    /// the same port, before the WebSocket paths and the HTTP handler. Off by default:
    /// counts of connections and traffic are for operators, not for every visitor. The
    /// metrics are listed in README.md ("Metrics").
    #[must_use]
    pub fn metrics(mut self, path: impl Into<String>) -> Self {
        self.metrics = Some(path.into());
        self
    }

    /// The paths that upgrade to WebSocket, replacing `/ws`. A path ending in `/*` takes
    /// every path under it (`/ws/*` takes `/ws/user123/notification`). The paths of
    /// `Config::paths` rules upgrade too (`PathRule::new("/raw/*", Protocol::Raw)`).
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
    /// wins. A client that offers some but none of these is refused with 400. A name of a
    /// [`Protocol`](tidings_core::Protocol) (`tidings.v1`, `tidings.raw`) makes the
    /// connection speak it, whatever its path; any other name, or none offered, leaves the
    /// choice to the path (`Config::paths`). Default `["tidings.v1", "tidings.raw"]`.
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

    /// Makes this node one of a cluster: publishes to a room, a namespace or everyone also
    /// reach the members on the other nodes of the backplane, and theirs reach this node's
    /// (e.g. `tidings_redis::Redis::new("redis://127.0.0.1/")`). Turns on `Config::cluster`.
    #[must_use]
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Box::new(backplane));
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

    /// Publishes for the other nodes that may wait for the backplane (while Redis is down or
    /// slower than this node publishes). With the backlog full, a publish that would reach
    /// other nodes fails with [`Error::Cluster`] before it reaches anyone, and the
    /// backplane's `lost` counts a message it could not take. Default 65,536.
    #[must_use]
    pub fn backplane_backlog(mut self, messages: usize) -> Self {
        self.backplane_backlog = messages.max(1);
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
    /// to the hub's `max_message_size`). Its write buffer carries only what tungstenite
    /// writes itself (pongs, the close frame): the hub's frames are encoded and written by
    /// the connection task.
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

    /// Starts the hub for another HTTP server's WebSocket route (axum's, say): the
    /// [`Upgrader`] answers its upgrade requests with this builder's origin policy,
    /// subprotocols, per-address cap and connect hook. The settings of the built-in server's
    /// listener (paths, plain-HTTP handler, handshake timeout, TLS) are the other server's
    /// business and are not used.
    pub fn upgrader(self) -> Result<Upgrader<R>, Error> {
        let (handle, front) = self.launch()?;
        Ok(Upgrader::new(Arc::new(Shared::new(handle, front))))
    }

    fn launch(mut self) -> Result<(Handle<R>, Front<R>), Error> {
        if self.router.as_ref().is_some_and(|r| r.routes().authorize) {
            self.config.subscribe_policy = SubscribePolicy::Approve;
        }
        let close_grace = self.config.close_grace;
        self.config.cluster |= self.backplane.is_some();
        // Only a backplane that numbers streams may take publishes to be numbered: without
        // one they would reach no one.
        self.config.sequenced = self.backplane.as_ref().is_some_and(|b| b.numbers_history());
        self.config.seed = self.config.seed.or_else(|| Some(fresh_seed()));
        // A path the hub has a rule for upgrades, whether or not it was listed here.
        for rule in &self.config.paths {
            if !self.paths.contains(&rule.path) {
                self.paths.push(rule.path.clone());
            }
        }
        let hub = tidings_core::Hub::new(self.config)?;
        // What connection tasks have read and the hub has not handled: a client paused by
        // flow control may still have this much on its way, so it stays small (one burst).
        let (inbound_tx, inbound_rx) = async_channel::bounded(driver::BURST);
        let (control_tx, control_rx) = async_channel::unbounded();
        // A handle's requests for the cluster wait here for the backplane (a few at most:
        // each caller waits for its answer).
        let (requests_tx, requests_rx) = match self.backplane {
            Some(_) => {
                let (tx, rx) = async_channel::bounded(64);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let handle = Handle::new(Inner {
            rt: self.rt.clone(),
            control: control_tx.clone(),
            inbound: inbound_tx,
            options: self.options,
            close_grace,
            tasks: Arc::new(TaskCount::default()),
            stopping: AtomicBool::new(false),
            stop: event_listener::Event::new(),
            backplane: self.backplane.as_ref().map(|_| Arc::default()),
            requests: requests_tx,
            refusals: Default::default(),
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
        let mut driver = Driver::new(hub, self.inbox_limit, link);
        if let (Some(backplane), Some(stats), Some(requests)) =
            (self.backplane, handle.backplane_stats(), requests_rx)
        {
            let (outgoing_tx, outgoing_rx) = async_channel::bounded(self.backplane_backlog);
            let (presence_tx, presence_rx) = async_channel::bounded(self.backplane_backlog);
            let (fetches_tx, fetches_rx) = async_channel::bounded(FETCHES);
            driver = driver.with_backplane(outgoing_tx, presence_tx, fetches_tx, stats.clone());
            let link = Link {
                outgoing: outgoing_rx,
                presence: presence_rx,
                requests,
                fetches: fetches_rx,
                control: control_tx.downgrade(),
                stats,
            };
            self.rt.spawn(backplane.run(link));
        }
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
            metrics: self.metrics,
            per_address: self.per_address,
            pending_handshakes: self.pending_handshakes,
            socket: SocketOptions {
                send_buffer: self.send_buffer,
                unsent_limit: self.unsent_limit,
            },
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
        let shared = Arc::new(Shared::new(handle.clone(), front));
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

/// A seed for a hub's room epochs, new at every start, so that a client coming back after a
/// restart is told `epoch_changed` rather than given another stream's offsets: 21 random
/// bits above the 32 a hub counts its rooms in, so every epoch stays below 2^53 and a
/// JavaScript client holds it exactly.
fn fresh_seed() -> u64 {
    fastrand::u64(1..1 << 21) << 32
}

#[cfg(test)]
mod tests {
    use super::fresh_seed;

    #[test]
    fn fresh_seeds_leave_room_for_the_room_count_below_2_to_the_53() {
        let seeds: Vec<u64> = (0..64).map(|_| fresh_seed()).collect();
        for &seed in &seeds {
            assert_eq!(seed & 0xFFFF_FFFF, 0, "{seed:x}");
            assert!(seed > 0 && seed + u64::from(u32::MAX) < 1 << 53, "{seed:x}");
        }
        let distinct: std::collections::BTreeSet<u64> = seeds.iter().copied().collect();
        assert!(distinct.len() > 60, "{} distinct of 64", distinct.len());
    }
}
