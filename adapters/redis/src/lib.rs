//! A Redis backplane for tidings: several nodes behind a load balancer serve one set of
//! rooms. A publish to a room, a namespace or everyone on any node reaches the members on
//! every node, once, never echoed back to the node that published it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_net::Error> {
//! let server = tidings_smol::builder()
//!     .backplane(tidings_redis::Redis::new("redis://127.0.0.1:6379/"))
//!     .bind("0.0.0.0:8080")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! Each node publishes what its hub forwards (`Output::Cluster`: publishes and batched items,
//! never what targets one connection) to one Redis channel, `tidings` by default
//! ([`Redis::channel`] separates clusters that share a Redis), as JSON of the core's
//! `ClusterMessage` with the sending node's id. Each node subscribes to that channel and hands
//! every other node's message to its hub, which delivers it to its own members. One channel
//! keeps every publisher's messages in the order it sent them (Redis delivers a channel's
//! messages in order), at the price of every node reading every message, including those for
//! rooms it has no member of.
//!
//! # Faults
//!
//! When Redis goes away, the node keeps serving its own clients; the backplane reconnects with
//! exponential backoff (100 ms to 5 s, with jitter) and subscribes again. What the node
//! publishes meanwhile waits for the link (up to 65,536 messages, then each further one is
//! counted lost) and goes out when it is back. Between nodes delivery is at most once, as with
//! Socket.IO's Redis adapter: what reaches Redis while another node is not subscribed does
//! not reach that node, and a publish that Redis refused is not retried. Both are counted:
//! [`BackplaneStats`](tidings_net::BackplaneStats) (`Handle::backplane`) has the messages
//! sent, received and lost, the outages, and whether the link is up.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_lite::future::or;
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use tidings_core::ClusterMessage;
use tidings_net::{Backplane, Link};

pub mod testing;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A backplane over one Redis server. See the crate's documentation.
#[derive(Clone, Debug)]
pub struct Redis {
    url: String,
    channel: String,
}

impl Redis {
    /// A backplane over the Redis server at `url` (`redis://host:port/`, `rediss://` for TLS
    /// is not enabled in this build).
    pub fn new(url: impl Into<String>) -> Self {
        Redis {
            url: url.into(),
            channel: "tidings".into(),
        }
    }

    /// The Redis channel the nodes share (default `tidings`): clusters that share a Redis
    /// server use one each.
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }
}

impl Backplane for Redis {
    fn run(self: Box<Self>, link: Link) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, link))
    }
}

/// What travels between nodes: the core's message and the node that sent it.
#[derive(Serialize, Deserialize)]
struct Envelope<N, M> {
    node: N,
    message: M,
}

/// Why a session with Redis ended.
enum Ended {
    /// The hub stopped: the backplane is done.
    Stopped,
    /// The link to Redis failed: reconnect.
    Failed,
}

async fn run(redis: Redis, link: Link) {
    let node = format!("{:016x}", fastrand::u64(..));
    let mut backoff = MIN_BACKOFF;
    loop {
        if let Ended::Stopped = session(&redis, &node, &link, &mut backoff).await {
            return;
        }
        link.set_up(false);
        // Up to half again, so nodes that lost Redis together do not come back in step.
        let wait = backoff + backoff.mul_f64(fastrand::f64() / 2.0);
        async_io::Timer::after(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection to Redis: subscribes, then forwards both ways until the hub stops or the
/// link fails.
async fn session(redis: &Redis, node: &str, link: &Link, backoff: &mut Duration) -> Ended {
    enum Next {
        Out(Option<ClusterMessage>),
        In(Option<redis::Msg>),
    }
    let connected = async {
        let client = redis::Client::open(redis.url.as_str())?;
        let publisher = client.get_multiplexed_async_connection().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&redis.channel).await?;
        Ok::<_, redis::RedisError>((publisher, pubsub.into_on_message()))
    };
    let Ok((mut publisher, mut messages)) = connected.await else {
        return Ended::Failed;
    };
    link.set_up(true);
    *backoff = MIN_BACKOFF;
    loop {
        let out = async { Next::Out(link.outgoing().await) };
        let incoming = async { Next::In(messages.next().await) };
        match or(out, incoming).await {
            Next::Out(None) => return Ended::Stopped,
            Next::Out(Some(message)) => {
                let envelope = Envelope { node, message };
                let Ok(bytes) = serde_json::to_vec(&envelope) else {
                    link.lost(1); // not JSON-representable: cannot happen for core messages
                    continue;
                };
                let published = redis::cmd("PUBLISH")
                    .arg(&redis.channel)
                    .arg(bytes)
                    .query_async::<()>(&mut publisher)
                    .await;
                if published.is_err() {
                    link.lost(1);
                    return Ended::Failed;
                }
                link.sent();
            }
            Next::In(None) => return Ended::Failed,
            Next::In(Some(msg)) => {
                // Not ours, and readable: a message another node of this cluster sent.
                let Ok(envelope) = serde_json::from_slice::<Envelope<String, ClusterMessage>>(
                    msg.get_payload_bytes(),
                ) else {
                    continue;
                };
                if envelope.node != node && !link.deliver(envelope.message).await {
                    return Ended::Stopped;
                }
            }
        }
    }
}
