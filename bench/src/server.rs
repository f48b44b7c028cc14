//! The servers under test, each run in a child process of its own so that its CPU time and
//! memory can be read from `/proc` apart from the load generator's: tidings on smol, tidings
//! on async-std, and two bare baselines.
//!
//! The baselines are what a broadcast server looks like with tungstenite and nothing else:
//! no rooms, no acks, no bounds, no heartbeats. Their writers flush once per burst, as
//! tidings' does, so the comparison is not won by a naive flush per message.
//! - `bare`: async-tungstenite on smol; every text message goes to every other socket
//!   through an unbounded channel per connection.
//! - `tokio`: tokio-tungstenite on tokio's multi-threaded runtime (a worker per core); one
//!   `tokio::sync::broadcast` channel, each connection's writer reading it with its own
//!   cursor, and a 4 KiB read buffer. This is the one to beat: it uses every core and its
//!   fan-out is a shared log, not a push per recipient.

use std::fmt;
use std::io::{self, BufRead};
use std::net::{TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use futures_lite::{future, StreamExt};
use futures_util::SinkExt;
use smol::Async;
use tungstenite::Message;

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// async-tungstenite on smol, nothing more.
    Bare,
    /// tokio-tungstenite on tokio's multi-threaded runtime, one broadcast channel.
    Tokio,
    /// tidings on smol.
    Smol,
    /// tidings on async-std.
    AsyncStd,
    /// tidings on tokio's multi-threaded runtime (a worker per core).
    TidingsTokio,
    /// Two tidings nodes on smol over a Redis backplane (a `redis-server` of the benchmark's
    /// own), in one process: subscribers are split between them.
    SmolRedis,
    /// The same two nodes with every client on the first: the second reads every message
    /// from Redis and has no member to give it to (what the shared channel costs a node).
    SmolRedisIdle,
    /// One node with the Redis backplane and no other node: what publishing through Redis
    /// costs the publishing node alone.
    SmolRedisSolo,
    /// `SmolRedis` with history on the fan-out's channel: Redis numbers and keeps every
    /// publication (one script per publish) and both nodes deliver it when it comes back.
    SmolRedisHistory,
}

impl Kind {
    /// Whether the server speaks the tidings protocol (subscribe, publish envelopes).
    pub fn is_tidings(self) -> bool {
        matches!(
            self,
            Kind::Smol
                | Kind::AsyncStd
                | Kind::TidingsTokio
                | Kind::SmolRedis
                | Kind::SmolRedisIdle
                | Kind::SmolRedisSolo
                | Kind::SmolRedisHistory
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bare => "bare",
            Kind::Tokio => "tokio",
            Kind::Smol => "smol",
            Kind::AsyncStd => "async-std",
            Kind::TidingsTokio => "tidings-tokio",
            Kind::SmolRedis => "smol-redis",
            Kind::SmolRedisIdle => "smol-redis-idle",
            Kind::SmolRedisSolo => "smol-redis-solo",
            Kind::SmolRedisHistory => "smol-redis-history",
        })
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bare" => Ok(Kind::Bare),
            "tokio" => Ok(Kind::Tokio),
            "smol" => Ok(Kind::Smol),
            "async-std" => Ok(Kind::AsyncStd),
            "tidings-tokio" => Ok(Kind::TidingsTokio),
            "smol-redis" => Ok(Kind::SmolRedis),
            "smol-redis-idle" => Ok(Kind::SmolRedisIdle),
            "smol-redis-solo" => Ok(Kind::SmolRedisSolo),
            "smol-redis-history" => Ok(Kind::SmolRedisHistory),
            other => Err(format!(
                "unknown server {other:?} (bare, tokio, smol, async-std, tidings-tokio, smol-redis, smol-redis-idle, smol-redis-solo, smol-redis-history)"
            )),
        }
    }
}

/// The channel the fan-out scenario publishes on.
pub const CHANNEL: &str = "bench";

/// The hub settings of the benchmark: clients may publish (the publisher is a client, as in
/// the baseline), and the inbound rate limit, made for untrusted browsers, is off for it.
/// The recovery scenario's rooms (`storm:*`) keep history; the fan-out's room does not.
fn config() -> tidings_smol::Config {
    let storm = tidings_smol::History::new(128, std::time::Duration::from_secs(600));
    tidings_smol::Config::default()
        .client_publish(true)
        .max_inbound_rate(None)
        .history("storm:*", storm)
}

/// Runs `kind` on `listen`, prints `ready ws://ADDR/ws` on stdout, and serves until standard
/// input closes (the load generator holds it open while it needs the server).
pub fn run(kind: Kind, listen: &str) -> io::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match kind {
        Kind::Smol => smol::block_on(serve_tidings(tidings_smol::builder(), listen)),
        Kind::AsyncStd => {
            async_std::task::block_on(serve_tidings(tidings_async_std::builder(), listen))
        }
        Kind::Bare => smol::block_on(async {
            let listener = Async::<TcpListener>::bind(
                listen
                    .parse::<std::net::SocketAddr>()
                    .map_err(io::Error::other)?,
            )?;
            announce(&format!("ws://{}/ws", listener.get_ref().local_addr()?));
            future::or(bare(listener), async {
                wait_for_stdin_close().await;
                Ok(())
            })
            .await
        }),
        Kind::Tokio => tokio_baseline::run(listen),
        Kind::TidingsTokio => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .enable_all()
            .build()?
            .block_on(serve_tidings(tidings_tokio::builder(), listen)),
        Kind::SmolRedis | Kind::SmolRedisIdle => smol::block_on(nodes(2, config(), listen)),
        Kind::SmolRedisSolo => smol::block_on(nodes(1, config(), listen)),
        Kind::SmolRedisHistory => {
            let kept = tidings_smol::History::new(1000, std::time::Duration::from_secs(60));
            smol::block_on(nodes(2, config().history(CHANNEL, kept), listen))
        }
    }
}

/// `count` tidings nodes with `config` over a Redis of their own; announces their URLs and
/// Redis's pid.
async fn nodes(count: usize, config: tidings_smol::Config, listen: &str) -> io::Result<()> {
    let redis = tidings_redis::testing::RedisServer::start();
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..count {
        let server = tidings_smol::builder()
            .config(config.clone())
            .max_connections_per_address(usize::MAX)
            .backplane(tidings_redis::Redis::new(redis.url()))
            .bind(listen)
            .await
            .map_err(io::Error::other)?;
        while !server.handle().backplane().is_some_and(|b| b.up) {
            smol::Timer::after(std::time::Duration::from_millis(10)).await;
        }
        urls.push(server.ws_url("/ws"));
        servers.push(server);
    }
    announce(&format!("{} redis={}", urls.join(" "), redis.pid()));
    wait_for_stdin_close().await;
    Ok(())
}

/// tidings with the benchmark's config, on whichever runtime `builder` is for.
async fn serve_tidings<R: tidings_smol::Runtime>(
    builder: tidings_smol::tidings_net::Builder<R>,
    listen: &str,
) -> io::Result<()> {
    let server = builder
        .config(config())
        .max_connections_per_address(usize::MAX)
        .bind(listen)
        .await
        .map_err(io::Error::other)?;
    announce(&server.ws_url("/ws"));
    wait_for_stdin_close().await;
    Ok(())
}

fn announce(url: &str) {
    println!("ready {url}");
}

async fn wait_for_stdin_close() {
    smol::unblock(|| {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await;
}

type Peers = Arc<Mutex<slab::Slab<Sender<Message>>>>;

async fn bare(listener: Async<TcpListener>) -> io::Result<()> {
    let peers: Peers = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        smol::spawn(bare_connection(stream, peers.clone())).detach();
    }
}

async fn bare_connection(stream: Async<TcpStream>, peers: Peers) {
    let Ok(ws) = async_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sender, mut receiver) = ws.split();
    let (tx, rx): (Sender<Message>, Receiver<Message>) = async_channel::unbounded();
    let id = lock(&peers).insert(tx);
    let writer = async move {
        while let Ok(first) = rx.recv().await {
            let mut burst = Some(first);
            while let Some(message) = burst.take().or_else(|| rx.try_recv().ok()) {
                if sender.feed(message).await.is_err() {
                    return;
                }
            }
            if sender.flush().await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        while let Some(Ok(message)) = receiver.next().await {
            if message.is_text() {
                for (peer, tx) in lock(&peers).iter() {
                    if peer != id {
                        let _ = tx.try_send(message.clone());
                    }
                }
            }
        }
    };
    future::or(reader, writer).await;
    lock(&peers).remove(id);
}

/// The peers table; a panic while it was held (none is possible) would not poison the others.
fn lock(peers: &Peers) -> std::sync::MutexGuard<'_, slab::Slab<Sender<Message>>> {
    peers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The multi-threaded baseline.
mod tokio_baseline {
    use std::io;

    use futures_util::{SinkExt, StreamExt};
    use tokio::sync::broadcast::{self, error::RecvError};
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;

    /// Messages the broadcast channel holds: a reader further behind loses messages (the
    /// load generator then counts them missing), so it is deeper than any burst measured.
    const CAPACITY: usize = 1 << 16;

    pub fn run(listen: &str) -> io::Result<()> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            super::announce(&format!("ws://{}/ws", listener.local_addr()?));
            let (tx, _) = broadcast::channel::<Message>(CAPACITY);
            let accept = async {
                loop {
                    let (stream, _) = listener.accept().await?;
                    stream.set_nodelay(true)?;
                    tokio::spawn(connection(stream, tx.clone()));
                }
            };
            futures_lite::future::or(accept, async {
                super::wait_for_stdin_close().await;
                Ok(())
            })
            .await
        })
    }

    async fn connection(stream: tokio::net::TcpStream, tx: broadcast::Sender<Message>) {
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
            return;
        };
        let (mut sender, mut receiver) = ws.split();
        let mut rx = tx.subscribe();
        let writer = tokio::spawn(async move {
            loop {
                let first = match rx.recv().await {
                    Ok(message) => message,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    if sender.feed(message).await.is_err() {
                        return;
                    }
                    next = rx.try_recv().ok();
                }
                if sender.flush().await.is_err() {
                    return;
                }
            }
        });
        while let Some(Ok(message)) = receiver.next().await {
            if message.is_text() {
                let _ = tx.send(message);
            }
        }
        writer.abort();
    }
}
