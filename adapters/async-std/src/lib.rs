//! # tidings-async-std
//!
//! tidings on [async-std](https://docs.rs/async-std). **async-std is deprecated upstream in
//! favour of smol**: new applications should use `tidings-smol`. This crate is a thin shim
//! kept for applications already on async-std: the [`Runtime`] for async-std and names for
//! its types, over the same driver (`tidings-net`) and state machine (`tidings-core`).
//!
//! ```no_run
//! async_std::task::block_on(async {
//!     let server = tidings_async_std::builder().bind("127.0.0.1:8080").await.expect("bind");
//!     println!("listening on {}", server.ws_url("/ws"));
//!     server.stopped().await;
//! });
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tidings_net::reexports::socket2::SockRef;

/// The async-std runtime: its tasks, timers and sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type TcpStream = async_std::net::TcpStream;
    type TcpListener = async_std::net::TcpListener;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(task);
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + Sync + 'static {
        async_std::task::sleep(deadline.saturating_duration_since(Instant::now()))
    }

    async fn bind(&self, addr: &str) -> io::Result<Self::TcpListener> {
        async_std::net::TcpListener::bind(addr).await
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

    fn socket<'a>(&self, stream: &'a Self::TcpStream) -> SockRef<'a> {
        SockRef::from(stream)
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::TcpStream> {
        let stream = async_std::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

tidings_net::runtime_api!(AsyncStd, "async-std");
