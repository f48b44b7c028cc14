//! The only thing a runtime provides: spawning a task, sleeping until an instant, and TCP.
//!
//! Everything else (the hub task, connection tasks, the HTTP server, the client) is written
//! once over this trait. `tidings-smol` and `tidings-async-std` each implement it in a few
//! lines; a new runtime (tokio, glommio) implements it and gets the whole adapter.
//!
//! The public types are generic over it (`Handle<R>`), not over an `Arc<dyn Runtime>` as
//! quinn's are: the trait hands out its own stream types and unboxed futures, which a trait
//! object cannot, and the adapters name the generic types once (`runtime_api!`) so users
//! never write the parameter. Going `dyn` would box every socket and every sleep to remove
//! a parameter users do not see; it was considered and left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite};

/// Any byte stream a connection can run over (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An async runtime, as the adapters need it.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type TcpStream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening TCP socket.
    type TcpListener: Send + Sync + 'static;

    /// Runs `task` in the background until it finishes (detached: nobody awaits it).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Completes at `deadline` (at once if it has passed). `Sync` as hyper's timer wants it
    /// (smol's, async-std's and tokio's sleeps are).
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + Sync + 'static;

    /// Binds a listener to `addr` (`"127.0.0.1:8080"`, `"[::1]:0"`, `"localhost:80"`).
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::TcpListener>> + Send;

    /// Accepts the next connection.
    fn accept(
        &self,
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<(Self::TcpStream, SocketAddr)>> + Send;

    /// The address `listener` is bound to.
    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// `stream`'s socket, for the options the server sets on the connections it accepts
    /// (`Builder::send_buffer`, `Builder::unsent_limit`): `SockRef::from` borrows the
    /// descriptor of any stream type that lends it.
    fn socket<'a>(&self, stream: &'a Self::TcpStream) -> socket2::SockRef<'a>;

    /// Connects to `addr` (`"host:port"`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::TcpStream>> + Send;
}
