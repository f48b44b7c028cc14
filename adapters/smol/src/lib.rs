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

use tidings_net::reexports::socket2::SockRef;

/// The smol runtime: tasks on an executor with a thread per core (see [`threads`]),
/// async-io timers and sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

/// The executor tidings' tasks run on: smol's own executor type, with [`threads`] threads.
/// Not `smol::spawn`: smol's global executor runs one thread unless `SMOL_THREADS` says more,
/// which would leave every other core idle.
static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

/// How many threads run tidings' tasks: `TIDINGS_THREADS` if set, else one per core. Measured
/// on 2 cores (BENCHMARKS.md): at saturation the same deliveries per second as one thread,
/// with less server CPU per delivery; paced, a p99 closer to a multi-threaded tokio server's,
/// because 1,000 writers' syscalls for one message no longer queue behind one thread.
pub fn threads() -> usize {
    std::env::var("TIDINGS_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Starts the executor's threads, once; `None` if not one could be started (then tasks go
/// to smol's global executor).
fn executor() -> Option<&'static smol::Executor<'static>> {
    static RUNNING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let running = RUNNING.get_or_init(|| {
        let started = (0..threads()).filter(|n| {
            std::thread::Builder::new()
                .name(format!("tidings-smol-{n}"))
                .spawn(|| loop {
                    // A task that panics is that task's end, not the thread's.
                    let run = || smol::block_on(EXECUTOR.run(std::future::pending::<()>()));
                    let _ = std::panic::catch_unwind(run);
                })
                .is_ok()
        });
        started.count() > 0
    });
    running.then_some(&EXECUTOR)
}

impl Runtime for Smol {
    type TcpStream = smol::net::TcpStream;
    type TcpListener = smol::net::TcpListener;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match executor() {
            Some(executor) => executor.spawn(task).detach(),
            None => smol::spawn(task).detach(),
        }
    }

    // Not an `async fn`: that would borrow `self`, and the trait wants a `'static` future.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + Sync + 'static {
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

    fn socket<'a>(&self, stream: &'a Self::TcpStream) -> SockRef<'a> {
        SockRef::from(stream)
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
