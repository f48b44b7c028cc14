//! # tidings-smol
//!
//! tidings on [smol](https://docs.rs/smol): a WebSocket messaging server (rooms, fan-out,
//! acks, batching, heartbeats, backpressure) with an application handle, a router and a
//! client. The work is done by `tidings-core` (the state machine) and `tidings-net` (the
//! runtime-neutral driver); this crate is the [`Runtime`] for smol and names for its types.
//!
//! ```no_run
//! use tidings_smol::{Message, Router};
//!
//! smol::block_on(async {
//!     let router = Router::new().on("say", |ctx, text: String| async move {
//!         let _ = ctx.handle().to_room("lobby", Message::text("said", text)).await;
//!     });
//!     let server = tidings_smol::builder()
//!         .router(router)
//!         .bind("127.0.0.1:8080")
//!         .await
//!         .expect("bind");
//!     println!("listening on {}", server.ws_url("/ws"));
//!     server.stopped().await;
//! });
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// The smol runtime: tasks on smol's global executor, async-io timers and sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    type TcpStream = smol::net::TcpStream;
    type TcpListener = smol::net::TcpListener;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    // Not an `async fn`: that would borrow `self`, and the trait wants a `'static` future.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        async move {
            smol::Timer::at(deadline).await;
        }
    }

    async fn bind(&self, addr: &str) -> io::Result<Self::TcpListener> {
        smol::net::TcpListener::bind(addr).await
    }

    async fn accept(
        &self,
        listener: &Self::TcpListener,
    ) -> io::Result<(Self::TcpStream, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        stream.set_nodelay(true)?; // frames are small and latency matters
        Ok((stream, addr))
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::TcpStream> {
        let stream = smol::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

tidings_net::runtime_api!(Smol, "smol");

/// The README's code blocks compile (and those not marked `no_run` run) as doctests here,
/// where both the core and this adapter are in reach.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
