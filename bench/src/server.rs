//! The servers under test, each run in a child process of its own so that its CPU time and
//! memory can be read from `/proc` apart from the load generator's: tidings on smol, tidings
//! on async-std, and the bare baseline.
//!
//! The baseline is what a broadcast server looks like with async-tungstenite and nothing
//! else: every text message goes to every other socket through an unbounded channel per
//! connection; no rooms, no acks, no bounds, no heartbeats. Its writer flushes once per
//! burst, as tidings' does, so the comparison is not won by a naive flush per message.

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
    /// tidings on smol.
    Smol,
    /// tidings on async-std.
    AsyncStd,
}

impl Kind {
    /// Whether the server speaks the tidings protocol (subscribe, publish envelopes).
    pub fn is_tidings(self) -> bool {
        self != Kind::Bare
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Bare => "bare",
            Kind::Smol => "smol",
            Kind::AsyncStd => "async-std",
        })
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bare" => Ok(Kind::Bare),
            "smol" => Ok(Kind::Smol),
            "async-std" => Ok(Kind::AsyncStd),
            other => Err(format!("unknown server {other:?} (bare, smol, async-std)")),
        }
    }
}

/// The channel the fan-out scenario publishes on.
pub const CHANNEL: &str = "bench";

/// The hub settings of the benchmark: clients may publish (the publisher is a client, as in
/// the baseline), and the inbound rate limit, made for untrusted browsers, is off for it.
fn config() -> tidings_smol::Config {
    tidings_smol::Config::default()
        .client_publish(true)
        .max_inbound_rate(None)
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
    }
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
