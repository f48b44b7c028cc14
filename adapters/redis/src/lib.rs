//! A Redis backplane for tidings: several nodes behind a load balancer serve one set of
//! rooms. A publish to a room, a namespace or everyone on any node reaches the members on
//! every node, once, never echoed back to the node that published it; channels that keep
//! history are numbered and kept in Redis, so a client recovers on any node.
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
//! rooms it has no member of. That price was measured (BENCHMARKS.md, "Two nodes over
//! Redis"): about 15 µs a message on a node that needs none of them, a tenth of what the
//! publishing node spends to send one; a channel per room would save that and add a
//! `SUBSCRIBE` per node and room and a gap while a node's subscription takes effect.
//!
//! # Questions about the whole cluster
//!
//! `Handle::cluster_members`, `cluster_count` and `cluster_names` ask every live node: the
//! asking node publishes the question on the shared channel and each other node answers from
//! its own hub on the asker's own channel (`tidings:to:<node>`). A node is live while its
//! presence key (`tidings:node:<node>`) exists: it renews it every 2 s for 6 s
//! ([`Redis::presence_ttl`]). An answer missing after 1 s fails the question with the nodes
//! that did not answer; a node that died is no longer asked once its key expires, so its
//! connections and memberships leave the answers within the presence TTL, without a goodbye.
//!
//! `Handle::emit_to(member, ..)` sends to a member from those answers on its node's own
//! channel; a node that is not live is an error, and delivery after that is at most once.
//! `emit_with_ack_to` asks the same way, and that node sends the outcome (the answer, a
//! timeout, a close) back on the asker's channel; the asker gives up 1 s after the ack's
//! own timeout if nothing comes back.
//! Each node also publishes its connections' joins and leaves on the shared channel, which
//! the others hand to `Handle::cluster_events` listeners.
//!
//! # History and recovery across nodes
//!
//! Channels that keep history (`Config::history`) get one stream for the whole cluster:
//! this backplane numbers their publications ([`Backplane::numbers_history`] turns on the
//! core's `Config::sequenced`). A publish to such a channel goes to Redis as a Lua script
//! that gives it the channel's next offset, appends it to the channel's Redis stream (trimmed
//! to the history rule's `max_len`, and by its `ttl`) and publishes it on the shared channel,
//! in one step; every node, the publisher included, delivers it at that offset when it comes
//! back, so all nodes hand out the same offsets and a channel's publications arrive in offset
//! order. A node that must answer a subscribe, a recovery or a `history` request it did not
//! see all of asks Redis with a second script (`streams.rs` has both, and the keys). The
//! epoch and next offset stay in Redis for [`Redis::position_ttl`] after a channel's last use;
//! when Redis loses them, the next use starts a new epoch and clients are told
//! `epoch_changed`.
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

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use futures_lite::StreamExt;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tidings_core::ClusterMessage;
use tidings_core::Message;
use tidings_core::Payload;
use tidings_net::{
    AckFailure, Answer, Backplane, Emit, EmitAck, Link, Presence, Query, Question, Request,
};

mod streams;
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
    presence_ttl: Duration,
    position_ttl: Duration,
}

impl Redis {
    /// A backplane over the Redis server at `url` (`redis://host:port/`, `rediss://` for TLS
    /// is not enabled in this build).
    pub fn new(url: impl Into<String>) -> Self {
        Redis {
            url: url.into(),
            channel: "tidings".into(),
            presence_ttl: PRESENCE_TTL,
            position_ttl: POSITION_TTL,
        }
    }

    /// The Redis channel the nodes share (default `tidings`): clusters that share a Redis
    /// server use one each.
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How long a node that stopped renewing its presence (it died, or lost Redis) is still
    /// asked cluster-wide questions, which fail meanwhile for want of its answer. Default
    /// 6 s; renewed every third of it. At least 300 ms.
    #[must_use]
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// How long a channel that keeps history keeps its epoch and offset in Redis after its
    /// last publication (or the last time a node asked about it): a client that comes back
    /// within it to a channel where nothing was published meanwhile recovers; after it, it is
    /// told `epoch_changed`. Default 24 h; never shorter than the channel's history `ttl`.
    #[must_use]
    pub fn position_ttl(mut self, ttl: Duration) -> Self {
        self.position_ttl = ttl;
        self
    }
}

impl Backplane for Redis {
    fn run(self: Box<Self>, link: Link) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, link))
    }

    fn numbers_history(&self) -> bool {
        true
    }
}

/// How long a node's presence key outlives its last renewal, by default: a node that died
/// stops being asked after at most this long. It is renewed three times as often.
const PRESENCE_TTL: Duration = Duration::from_secs(6);
/// How long a channel's position stays in Redis after its last use, by default.
const POSITION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Why a request fails when the link to Redis broke while it was served.
const LOST_REDIS: &str = "the backplane lost Redis";

/// The most of this node's publishes sent in one round trip to Redis.
const OUT_BATCH: usize = 256;

/// How long a question waits for the other live nodes' answers.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// What travels between nodes, with the node that sent it.
#[derive(Serialize, Deserialize)]
struct Envelope<N, W> {
    node: N,
    wire: W,
}

/// The three kinds of message between nodes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Wire {
    /// A publish for every other node's members.
    Publish(ClusterMessage),
    /// A question every other node answers to the asker's reply channel.
    Ask { id: u64, query: Query },
    /// One node's answer to question `id`.
    Reply { id: u64, answer: Answer },
    /// A message for one connection of the node this is sent to.
    Emit { conn: String, message: Message },
    /// A connection of the sending node joined or left a room.
    Presence(Presence),
    /// Emit to one connection of the node this is sent to, asking for an ack, and send the
    /// outcome back as `AckDone` with the same `id`.
    AckAsk {
        id: u64,
        conn: String,
        message: Message,
        timeout_ms: Option<u64>,
    },
    /// The outcome of `AckAsk` number `id`.
    AckDone {
        id: u64,
        result: Result<Payload, AckFailure>,
    },
    /// A publication to a channel that keeps history, numbered by the SEQUENCE script
    /// (`streams.rs`), for every node, the sender included.
    Numbered {
        offset: u64,
        epoch: u64,
        entry: streams::Entry,
    },
}

/// How long an ack asked of another node may take beyond its own timeout before the asker
/// gives up on the answer crossing back.
const ACK_MARGIN: Duration = Duration::from_secs(1);
/// The ack timeout assumed for a remote ack asked without one (the core's default).
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// An ack this node waits for from a connection of its own, for itself or another node.
struct AckRun {
    outcome: Pin<Box<dyn Future<Output = Result<Payload, AckFailure>> + Send>>,
    to: AckTo,
}

/// Who an ack's outcome goes to.
enum AckTo {
    /// A handle of this node.
    Here(EmitAck),
    /// The node that asked, under its id for the question.
    Node { node: String, id: u64 },
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
        tracing::info!(retry_in = ?wait, "redis backplane: reconnecting");
        let until = Instant::now() + wait;
        // Requests made meanwhile are answered at once: the cluster cannot be reached.
        loop {
            let timer = async {
                async_io::Timer::at(until).await;
                None
            };
            let down = "the backplane cannot reach Redis".to_owned();
            let fetch = async { link.fetch().await.map(Err) };
            match or(timer, or(fetch, async { link.request().await.map(Ok) })).await {
                Some(Ok(Request::Ask(question))) => question.reply(Err(down)),
                Some(Ok(Request::Emit(emit))) => emit.reply(Err(down)),
                Some(Ok(Request::EmitAck(ask))) => ask.reply(Err(AckFailure::Cluster(down))),
                Some(Err(fetch)) => {
                    // Served from what the node has.
                    let _ = link.fetched(fetch.id, None).await;
                }
                _ => break,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A question this node asked, waiting for the other nodes' answers.
struct Pending {
    question: Question,
    answers: Vec<Answer>,
    waiting: BTreeSet<String>,
    deadline: Instant,
}

/// The Redis side of one node: its channels, keys and connection.
struct Node<'a> {
    redis: &'a Redis,
    id: &'a str,
    publisher: MultiplexedConnection,
    scripts: streams::Scripts,
}

impl Node<'_> {
    /// The channel of messages for one node: answers to its questions, emits to its
    /// connections.
    fn node_channel(&self, node: &str) -> String {
        format!("{}:to:{node}", self.redis.channel)
    }

    fn presence_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.redis.channel)
    }

    async fn publish(&mut self, channel: &str, wire: Wire) -> redis::RedisResult<()> {
        match self.publish_cmd(channel, wire) {
            Some(cmd) => cmd.query_async::<()>(&mut self.publisher).await,
            None => Ok(()),
        }
    }

    /// The `PUBLISH` of `wire` from this node on `channel` (`None` if it is not JSON, which
    /// core messages always are).
    fn publish_cmd(&self, channel: &str, wire: Wire) -> Option<redis::Cmd> {
        let envelope = Envelope {
            node: self.id,
            wire,
        };
        let bytes = serde_json::to_vec(&envelope).ok()?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(bytes);
        Some(cmd)
    }

    /// Sends this node's publishes for the others, `batch` taken together from the hub's
    /// queue, in one round trip (a pipeline: Redis runs them in order, so a channel's
    /// numbering follows the order they were made in).
    async fn send_out(&mut self, batch: Vec<ClusterMessage>) -> redis::RedisResult<()> {
        let r = self.redis;
        let mut pipe = redis::pipe();
        for message in batch {
            let cmd = match message {
                ClusterMessage::Sequence {
                    target,
                    message,
                    max_len,
                    ttl_ms,
                } => {
                    let entry = streams::Entry { target, message };
                    let (scripts, id) = (&self.scripts, self.id);
                    streams::sequence(
                        scripts,
                        &r.channel,
                        id,
                        &entry,
                        max_len,
                        ttl_ms,
                        r.position_ttl,
                    )
                }
                message => self.publish_cmd(&r.channel, Wire::Publish(message)),
            };
            if let Some(cmd) = cmd {
                pipe.add_command(cmd).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.publisher).await
    }

    /// Publishes on the channel every node of the cluster reads.
    async fn publish_shared(&mut self, wire: Wire) -> redis::RedisResult<()> {
        let channel = self.redis.channel.clone();
        self.publish(&channel, wire).await
    }

    async fn heartbeat(&mut self) -> redis::RedisResult<()> {
        let ttl = u64::try_from(self.redis.presence_ttl.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("SET")
            .arg(self.presence_key(self.id))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut self.publisher)
            .await
    }

    /// Sends an emit to the node that holds its member (or delivers it here). `false` if the
    /// link to Redis failed.
    async fn emit(&mut self, link: &Link, emit: Emit) -> bool {
        let Emit {
            member, message, ..
        } = &emit;
        if member.node == self.id {
            let sent = link.emit(&member.conn, message.clone()).await;
            emit.reply(sent);
            return true;
        }
        let Ok(live) = self.live_others().await else {
            emit.reply(Err(LOST_REDIS.into()));
            return false;
        };
        if !live.contains(&member.node) {
            let why = format!("node {} is not in the cluster", member.node);
            emit.reply(Err(why));
            return true;
        }
        let to = self.node_channel(&member.node);
        let wire = Wire::Emit {
            conn: member.conn.clone(),
            message: message.clone(),
        };
        let sent = self.publish(&to, wire).await;
        let ok = sent.is_ok();
        emit.reply(sent.map_err(|_| LOST_REDIS.to_owned()));
        ok
    }

    /// Reads a channel's stream for the hub.
    async fn fetch(
        &mut self,
        fetch: &tidings_core::Fetch,
    ) -> redis::RedisResult<Option<tidings_core::Stream>> {
        let r = self.redis;
        streams::fetch(
            &mut self.publisher,
            &self.scripts,
            &r.channel,
            fetch,
            r.position_ttl,
        )
        .await
    }

    /// The other nodes whose presence has not expired.
    async fn live_others(&mut self) -> redis::RedisResult<BTreeSet<String>> {
        let prefix = self.presence_key("");
        let pattern = format!("{prefix}*");
        let mut nodes = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.publisher)
                .await?;
            nodes.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .map(str::to_owned),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        nodes.remove(self.id);
        Ok(nodes)
    }
}

/// One connection to Redis: subscribes, then forwards publishes both ways and asks and
/// answers questions, until the hub stops or the link fails.
async fn session(redis: &Redis, id: &str, link: &Link, backoff: &mut Duration) -> Ended {
    enum Next {
        Out(Option<ClusterMessage>),
        In(Option<redis::Msg>),
        Request(Option<Request>),
        Presence(Option<Presence>),
        Fetch(Option<tidings_core::Fetch>),
        AckDone(usize, Result<Payload, AckFailure>),
        Tick,
    }
    let connected = async {
        let client = redis::Client::open(redis.url.as_str())?;
        let publisher = client.get_multiplexed_async_connection().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&redis.channel).await?;
        pubsub
            .subscribe(format!("{}:to:{id}", redis.channel))
            .await?;
        Ok::<_, redis::RedisError>((publisher, pubsub.into_on_message()))
    };
    let (publisher, mut messages) = match connected.await {
        Ok(connected) => connected,
        Err(error) => {
            tracing::warn!(%error, "redis backplane: cannot connect");
            return Ended::Failed;
        }
    };
    let mut publisher = publisher;
    let scripts = match streams::Scripts::load(&mut publisher).await {
        Ok(scripts) => scripts,
        Err(error) => {
            tracing::warn!(%error, "redis backplane: cannot connect");
            return Ended::Failed;
        }
    };
    let mut node = Node {
        redis,
        id,
        publisher,
        scripts,
    };
    if node.heartbeat().await.is_err() {
        return Ended::Failed;
    }
    link.set_up(true);
    *backoff = MIN_BACKOFF;
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    // Acks this node asked of other nodes' connections, with when to give up; and acks its
    // own connections owe (to a handle here, or to another node).
    let mut acks_asked: BTreeMap<u64, (EmitAck, Instant, String)> = BTreeMap::new();
    let mut acks_running: Vec<AckRun> = Vec::new();
    let mut next_id = 0u64;
    let beat = redis.presence_ttl / 3;
    let mut next_beat = Instant::now() + beat;
    let ended = loop {
        let wake = pending
            .values()
            .map(|p| p.deadline)
            .chain(acks_asked.values().map(|a| a.1))
            .fold(next_beat, Instant::min);
        let out = async { Next::Out(link.outgoing().await) };
        let incoming = async { Next::In(messages.next().await) };
        let request = async { Next::Request(link.request().await) };
        let presence = async { Next::Presence(link.presence().await) };
        let fetch = async { Next::Fetch(link.fetch().await) };
        let tick = async {
            async_io::Timer::at(wake).await;
            Next::Tick
        };
        let done = futures_lite::future::poll_fn(|cx| {
            for (i, run) in acks_running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(result) = run.outcome.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Next::AckDone(i, result));
                }
            }
            std::task::Poll::Pending
        });
        let next = or(
            out,
            or(
                incoming,
                or(request, or(presence, or(fetch, or(done, tick)))),
            ),
        )
        .await;
        match next {
            Next::Out(None) => break Ended::Stopped,
            Next::Out(Some(first)) => {
                // What queued up behind it goes in the same round trip.
                let mut batch = vec![first];
                while batch.len() < OUT_BATCH {
                    match link.try_outgoing() {
                        Some(message) => batch.push(message),
                        None => break,
                    }
                }
                let n = batch.len() as u64;
                if node.send_out(batch).await.is_err() {
                    link.lost(n);
                    break Ended::Failed;
                }
                for _ in 0..n {
                    link.sent();
                }
            }
            Next::In(None) => break Ended::Failed,
            Next::In(Some(msg)) => {
                let Ok(envelope) =
                    serde_json::from_slice::<Envelope<String, Wire>>(msg.get_payload_bytes())
                else {
                    continue; // not a message of this cluster's nodes
                };
                if let Wire::Numbered {
                    offset,
                    epoch,
                    entry,
                } = envelope.wire
                {
                    // Every node's, this one's too: a channel's offsets are delivered in
                    // order here only as Redis numbered them.
                    let message = ClusterMessage::Sequenced {
                        target: entry.target,
                        message: entry.message,
                        offset,
                        epoch,
                    };
                    if !link.deliver(message).await {
                        break Ended::Stopped;
                    }
                    continue;
                }
                if envelope.node == id {
                    continue;
                }
                match envelope.wire {
                    Wire::Numbered { .. } => {}
                    Wire::Publish(message) => {
                        if !link.deliver(message).await {
                            break Ended::Stopped;
                        }
                    }
                    Wire::Ask { id: ask, query } => {
                        let Some(answer) = link.answer(id, &query).await else {
                            break Ended::Stopped;
                        };
                        let to = node.node_channel(&envelope.node);
                        if node
                            .publish(&to, Wire::Reply { id: ask, answer })
                            .await
                            .is_err()
                        {
                            break Ended::Failed;
                        }
                    }
                    Wire::AckAsk {
                        id: ask,
                        conn,
                        message,
                        timeout_ms,
                    } => {
                        let timeout = timeout_ms.map(Duration::from_millis);
                        acks_running.push(AckRun {
                            outcome: link.emit_with_ack(&conn, message, timeout),
                            to: AckTo::Node {
                                node: envelope.node,
                                id: ask,
                            },
                        });
                    }
                    Wire::AckDone { id: ask, result } => {
                        if let Some((asked, _, _)) = acks_asked.remove(&ask) {
                            asked.reply(result);
                        }
                    }
                    Wire::Presence(change) => {
                        if !link.presence_arrived(change).await {
                            break Ended::Stopped;
                        }
                    }
                    Wire::Emit { conn, message } => {
                        // At most once: the connection may have closed since it was listed.
                        let _ = link.emit(&conn, message).await;
                    }
                    Wire::Reply { id: ask, answer } => {
                        let done = pending.get_mut(&ask).is_some_and(|p| {
                            if p.waiting.remove(&envelope.node) {
                                p.answers.push(answer);
                            }
                            p.waiting.is_empty()
                        });
                        if let Some(p) = done.then(|| pending.remove(&ask)).flatten() {
                            p.question.reply(Ok(p.answers));
                        }
                    }
                }
            }
            Next::AckDone(i, result) => match acks_running.swap_remove(i).to {
                AckTo::Here(ask) => ask.reply(result),
                AckTo::Node {
                    node: asker,
                    id: ask,
                } => {
                    let to = node.node_channel(&asker);
                    let done = Wire::AckDone { id: ask, result };
                    if node.publish(&to, done).await.is_err() {
                        break Ended::Failed;
                    }
                }
            },
            Next::Request(Some(Request::EmitAck(ask))) => {
                let (member, message) = (ask.member.clone(), ask.message.clone());
                if member.node == id {
                    let outcome = link.emit_with_ack(&member.conn, message, ask.timeout);
                    acks_running.push(AckRun {
                        outcome,
                        to: AckTo::Here(ask),
                    });
                    continue;
                }
                let Ok(live) = node.live_others().await else {
                    ask.reply(Err(AckFailure::Cluster(LOST_REDIS.into())));
                    break Ended::Failed;
                };
                if !live.contains(&member.node) {
                    let why = format!("node {} is not in the cluster", member.node);
                    ask.reply(Err(AckFailure::Cluster(why)));
                    continue;
                }
                next_id += 1;
                let timeout_ms = ask
                    .timeout
                    .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                let wire = Wire::AckAsk {
                    id: next_id,
                    conn: member.conn.clone(),
                    message,
                    timeout_ms,
                };
                let to = node.node_channel(&member.node);
                if node.publish(&to, wire).await.is_err() {
                    ask.reply(Err(AckFailure::Cluster(LOST_REDIS.into())));
                    break Ended::Failed;
                }
                let give_up =
                    Instant::now() + ask.timeout.unwrap_or(DEFAULT_ACK_TIMEOUT) + ACK_MARGIN;
                acks_asked.insert(next_id, (ask, give_up, member.node));
            }
            Next::Request(Some(Request::Emit(emit))) => {
                if !node.emit(link, emit).await {
                    break Ended::Failed;
                }
            }
            Next::Request(Some(Request::Ask(question))) => {
                let Some(local) = link.answer(id, &question.query).await else {
                    break Ended::Stopped;
                };
                let others = match node.live_others().await {
                    Ok(others) => others,
                    Err(_) => {
                        question.reply(Err(LOST_REDIS.into()));
                        break Ended::Failed;
                    }
                };
                if others.is_empty() {
                    question.reply(Ok(vec![local]));
                    continue;
                }
                next_id += 1;
                let ask = Wire::Ask {
                    id: next_id,
                    query: question.query.clone(),
                };
                if node.publish_shared(ask).await.is_err() {
                    question.reply(Err(LOST_REDIS.into()));
                    break Ended::Failed;
                }
                let deadline = Instant::now() + ANSWER_WITHIN;
                pending.insert(
                    next_id,
                    Pending {
                        question,
                        answers: vec![local],
                        waiting: others,
                        deadline,
                    },
                );
            }
            // Every handle is gone (the hub's stop ends the session), or a request of a kind
            // this backplane does not serve.
            Next::Request(_) => {}
            Next::Fetch(None) => break Ended::Stopped,
            Next::Fetch(Some(fetch)) => {
                let read = node.fetch(&fetch).await;
                let failed = read.is_err();
                if !link.fetched(fetch.id, read.ok().flatten()).await {
                    break Ended::Stopped;
                }
                if failed {
                    break Ended::Failed;
                }
            }
            Next::Presence(None) => break Ended::Stopped,
            Next::Presence(Some(mut change)) => {
                change.member.node = id.to_owned();
                if node.publish_shared(Wire::Presence(change)).await.is_err() {
                    break Ended::Failed;
                }
            }
            Next::Tick => {
                let now = Instant::now();
                if now >= next_beat {
                    if node.heartbeat().await.is_err() {
                        break Ended::Failed;
                    }
                    next_beat = now + beat;
                }
                let late: Vec<u64> = pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(&id, _)| id)
                    .collect();
                let late_acks: Vec<u64> = acks_asked
                    .iter()
                    .filter(|(_, a)| a.1 <= now)
                    .map(|(&id, _)| id)
                    .collect();
                for ask in late_acks {
                    if let Some((asked, _, from)) = acks_asked.remove(&ask) {
                        let why = format!("no ack outcome came back from node {from}");
                        asked.reply(Err(AckFailure::Cluster(why)));
                    }
                }
                for ask in late {
                    if let Some(p) = pending.remove(&ask) {
                        let missing: Vec<&str> = p.waiting.iter().map(String::as_str).collect();
                        p.question.reply(Err(format!(
                            "no answer within {} ms from node(s) {}",
                            ANSWER_WITHIN.as_millis(),
                            missing.join(", ")
                        )));
                    }
                }
            }
        }
    };
    for (_, p) in pending {
        p.question.reply(Err(LOST_REDIS.into()));
    }
    let lost = || AckFailure::Cluster(LOST_REDIS.into());
    for (_, (asked, _, _)) in acks_asked {
        asked.reply(Err(lost()));
    }
    for run in acks_running {
        if let AckTo::Here(ask) = run.to {
            ask.reply(Err(lost()));
        }
    }
    ended
}
