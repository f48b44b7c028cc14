//! # tidings-tokio
//!
//! tidings on [tokio](https://docs.rs/tokio): a WebSocket messaging server (rooms, fan-out,
//! acks, batching, heartbeats, backpressure) with an application handle, a router and a
//! client. The work is done by `tidings-core` (the state machine) and `tidings-net` (the
//! runtime-neutral driver); this crate is the [`Runtime`] for tokio and names for its types.
//!
//! Every call that starts tasks (`builder().bind`, `start`, `upgrader`, `connect`) must be
//! made inside a tokio runtime, multi-threaded or current-thread; tidings' tasks run on that
//! runtime.
//!
//! ## Inside axum
//!
//! An axum application serves tidings on one of its own routes, without a second listener:
//! [`Builder::upgrader`](tidings_net::Builder::upgrader) starts the hub with the builder's
//! origin policy, subprotocols, per-address cap and connect hook, and [`upgrade`] answers
//! each request of the route with them, as the built-in server does on its WebSocket paths.
//! The route needs the client's address, which axum gives when served with
//! `into_make_service_with_connect_info::<SocketAddr>()`:
//!
//! ```ignore
//! let tidings = tidings_tokio::builder().upgrader()?;
//! let app = axum::Router::new()
//!     .route("/ws", axum::routing::get(ws))
//!     .with_state(tidings);
//!
//! async fn ws(
//!     State(tidings): State<tidings_tokio::Upgrader>,
//!     ConnectInfo(remote): ConnectInfo<SocketAddr>,
//!     req: axum::extract::Request,
//! ) -> tidings_tokio::HttpResponse {
//!     tidings_tokio::upgrade(&tidings, req, remote).await
//! }
//! ```
//!
//! The `axum-notify` example is a whole application (a JSON endpoint that publishes, and
//! the WebSocket route).
//!
//! ```no_run
//! use tidings_tokio::{Message, Router};
//!
//! #[tokio::main]
//! async fn main() {
//!     let router = Router::new().on("say", |ctx, text: String| async move {
//!         let _ = ctx.handle().to_room("lobby", Message::text("said", text)).await;
//!     });
//!     let server = tidings_tokio::builder()
//!         .router(router)
//!         .bind("127.0.0.1:8080")
//!         .await
//!         .expect("bind");
//!     println!("listening on {}", server.ws_url("/ws"));
//!     server.stopped().await;
//! }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use hyper_util::rt::TokioIo;
use tidings_net::reexports::http::Request;
use tidings_net::reexports::socket2::SockRef;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// The tokio runtime: tasks spawned on the runtime the call is made in (`tokio::spawn`),
/// tokio's timers and sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type TcpStream = Compat<tokio::net::TcpStream>;
    type TcpListener = tokio::net::TcpListener;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // Detached: dropping the `JoinHandle` does not cancel the task.
        drop(tokio::spawn(task));
    }

    // Not an `async fn`: that would borrow `self`, and the trait wants a `'static` future.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + Sync + 'static {
        async move {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    async fn bind(&self, addr: &str) -> io::Result<Self::TcpListener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(
        &self,
        listener: &Self::TcpListener,
    ) -> io::Result<(Self::TcpStream, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        stream.set_nodelay(true)?; // frames are small and latency matters
        Ok((stream.compat(), addr))
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn socket<'a>(&self, stream: &'a Self::TcpStream) -> SockRef<'a> {
        SockRef::from(stream.get_ref())
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::TcpStream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.compat())
    }
}

tidings_net::runtime_api!(Tokio, "tokio");

/// Answers `req`, an upgrade request from `remote` on a route of the application's own
/// hyper or axum server, as the built-in server answers on its WebSocket paths: a refusal,
/// or 101 and the connection in the hub (see [`Upgrader::upgrade`]). An axum handler
/// returns the response as it is.
pub async fn upgrade<B>(upgrader: &Upgrader, req: Request<B>, remote: SocketAddr) -> HttpResponse {
    upgrader
        .upgrade(req, remote, |upgraded| TokioIo::new(upgraded).compat())
        .await
}
