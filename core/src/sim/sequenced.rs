//! Deterministic simulation of a cluster whose channel streams a sequencer numbers and keeps
//! (`Config::sequenced`, what tidings-redis does with its scripts), with clients that move
//! from node to node and recover.
//!
//! Each node's publishes go to the sequencer after a random latency (first in, first out per
//! node, as one connection to Redis is); the sequencer numbers each in its channel's stream,
//! keeps the last `max_len`, and sends it to every node, the publisher included, first in
//! first out per node (as one Redis channel is). A node's question about a stream
//! ([`Output::Fetch`]) reaches the sequencer and its answer comes back each after a random
//! latency of its own, so answers race the publications on their way. Nodes keep little
//! themselves (a small `max_history_bytes`), so they ask often. Now and then a node loses
//! its link for a while (what is sent to it is lost; [`Hub::backplane_lost`], then
//! [`Hub::backplane_restored`]): its members must still get every publication, in order.
//!
//! Clients subscribe with `subscribe` frames, or the application joins them (`join`, or
//! `join_pinned_from` where they stood), and read at once; now and then one leaves its node
//! and comes back on another from where it stood. Invariants, checked as it runs
//! and when it settles: every `subscribed` carries the sequencer's epoch; after it, a client
//! gets its channel's offsets one after the other from where it stood (if recovered) or from
//! the offset the `subscribed` gave, with no duplicate and no gap, across its node's outages
//! too (only what the sequencer no longer keeps may be skipped); each offset carries the
//! publication the sequencer gave it; a recovery refused says `too_old`; and in the end every
//! client has its channels' streams up to their last offset. A client that subscribed while
//! its node had no link, or whose node lost it again before it had caught up, may miss some.
//!
//! ```
//! use std::time::Instant;
//! use tidings_core::sim::{SequencedConfig, SequencedSim};
//!
//! let mut sim = SequencedSim::new(3, SequencedConfig::default(), Instant::now());
//! let report = sim.run(500).expect("invariants hold");
//! assert!(report.delivered > 0);
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Violation;
use crate::{
    ClusterMessage, Config, ConnId, ConnectionInfo, Fetch, Frame, History, Hub, Input, Message,
    Output, Position, Stream, Target,
};

/// The sequencer's epoch: no hub's own epochs come near it.
const EPOCH: u64 = 7_000_000_000;

/// The shape of a simulated sequenced cluster.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SequencedConfig {
    /// Nodes, each with its own hub.
    pub nodes: usize,
    /// Clients; each starts on a node and subscribes to some rooms.
    pub clients: usize,
    /// The rooms (namespace `/`); each keeps history.
    pub rooms: Vec<String>,
    /// One-way latency of every message, chosen uniformly in this range.
    pub latency: (Duration, Duration),
    /// Publications the sequencer keeps per channel.
    pub max_len: usize,
    /// Bytes each node keeps of every channel's history together.
    pub node_history_bytes: usize,
    /// In a thousand, per step: the chance that a node loses its link to the sequencer for
    /// 20 to 200 ms. Meanwhile what the sequencer sends it is lost, its questions are
    /// answered `None` at once, and its publishes wait for the link.
    pub outage_permille: u32,
}

impl Default for SequencedConfig {
    fn default() -> Self {
        SequencedConfig {
            nodes: 3,
            clients: 8,
            rooms: vec!["a".into(), "b".into()],
            latency: (Duration::from_millis(1), Duration::from_millis(30)),
            max_len: 16,
            node_history_bytes: 1024,
            outage_permille: 5,
        }
    }
}

/// What a finished sequenced run did.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct SequencedReport {
    /// Publications numbered.
    pub published: u64,
    /// Deliveries to clients, checked.
    pub delivered: u64,
    /// Subscriptions from a position that recovered.
    pub recovered: u64,
    /// Subscriptions from a position too old to recover.
    pub too_old: u64,
    /// Questions the nodes asked the sequencer.
    pub fetches: u64,
    /// Times a node lost its link.
    pub outages: u64,
}

/// One client: where it is, and where it stands in each channel.
struct Client {
    node: usize,
    conn: ConnId,
    rooms: BTreeSet<String>,
    /// The next offset it expects per channel, once known.
    next: BTreeMap<String, u64>,
    /// Per channel with a subscribe unanswered: the offset it asked to recover from.
    asked: BTreeMap<String, Option<u64>>,
    /// It may miss publications (never get one twice or out of order), until it moves: it
    /// subscribed while its node had no link, or its node lost the link again before it had
    /// caught up after the last time.
    lossy: bool,
}

/// What travels, and to where.
enum Carry {
    /// A node's publish, to the sequencer.
    Publish(ClusterMessage),
    /// A numbered publication, to a node.
    Numbered(usize, ClusterMessage),
    /// A node's question, to the sequencer.
    Ask(usize, Fetch),
    /// The sequencer's answer, to a node.
    Answer(usize, u64, Stream),
    /// A node's link is back.
    Up(usize),
}

/// One channel's stream at the sequencer.
#[derive(Default)]
struct Channel {
    next: u64,
    kept: VecDeque<(u64, Message)>,
}

/// A seeded sequenced-cluster run.
pub struct SequencedSim {
    seed: u64,
    cfg: SequencedConfig,
    rng: fastrand::Rng,
    start: Instant,
    now: Instant,
    step: u64,
    hubs: Vec<Hub>,
    clients: Vec<Client>,
    owner: BTreeMap<(usize, ConnId), usize>,
    /// Everything on its way, by arrival time, then sequence.
    link: BTreeMap<(Instant, u64), Carry>,
    /// Per first-in-first-out lane, when its last message arrives.
    free: BTreeMap<(usize, usize), Instant>,
    sequence: u64,
    channels: BTreeMap<String, Channel>,
    /// The publication (its `seq`) the sequencer gave each `(channel, offset)`.
    numbered: BTreeMap<(String, u64), u64>,
    /// Nodes without their link, until when.
    down: BTreeMap<usize, Instant>,
    /// When each node's link last came back.
    back: BTreeMap<usize, Instant>,
    next_seq: u64,
    report: SequencedReport,
}

/// The lane of the sequencer in `free`.
const SEQUENCER: usize = usize::MAX;

impl SequencedSim {
    /// A run for `seed`, starting at `start` on the virtual clock.
    pub fn new(seed: u64, cfg: SequencedConfig, start: Instant) -> Self {
        let config = Config::default()
            .cluster(true)
            .sequenced(true)
            .history("*", History::new(cfg.max_len, Duration::from_secs(3600)))
            .max_history_bytes(cfg.node_history_bytes)
            .welcome(false)
            .ping_period(None)
            .max_inbound_rate(None);
        let hubs = (0..cfg.nodes.max(1))
            .map(|_| Hub::new(config.clone()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        SequencedSim {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            cfg,
            start,
            now: start,
            step: 0,
            hubs,
            clients: Vec::new(),
            owner: BTreeMap::new(),
            link: BTreeMap::new(),
            free: BTreeMap::new(),
            sequence: 0,
            channels: BTreeMap::new(),
            numbered: BTreeMap::new(),
            down: BTreeMap::new(),
            back: BTreeMap::new(),
            next_seq: 0,
            report: SequencedReport {
                published: 0,
                delivered: 0,
                recovered: 0,
                too_old: 0,
                fetches: 0,
                outages: 0,
            },
        }
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            seed: self.seed,
            step: self.step,
            at: self.now - self.start,
            message,
        }
    }

    /// Opens the clients, runs `steps` steps, then lets everything arrive, checking the
    /// invariants throughout.
    pub fn run(&mut self, steps: u64) -> Result<SequencedReport, Violation> {
        for _ in 0..self.cfg.clients {
            let node = self.rng.usize(0..self.hubs.len());
            let rooms: BTreeSet<String> = self
                .cfg
                .rooms
                .iter()
                .filter(|_| self.rng.bool())
                .cloned()
                .collect();
            self.clients.push(Client {
                node,
                conn: ConnId::new(0, 0),
                rooms,
                next: BTreeMap::new(),
                asked: BTreeMap::new(),
                lossy: false,
            });
            self.connect(self.clients.len() - 1)?;
        }
        for step in 0..steps {
            self.step = step;
            self.act()?;
        }
        self.advance(None)?;
        self.check_complete()?;
        Ok(self.report.clone())
    }

    /// Opens client `c` on its node and subscribes it to its rooms, from where it stands.
    fn connect(&mut self, c: usize) -> Result<(), Violation> {
        let node = self.clients[c].node;
        let conn = self.hubs[node]
            .open(self.now, ConnectionInfo::new("/"))
            .map_err(|e| self.violation(e.to_string()))?;
        self.owner.insert((node, conn), c);
        let client = &mut self.clients[c];
        client.conn = conn;
        client.asked.clear();
        client.lossy = false;
        // Each room asked for by the client itself, or joined for it by the application
        // (with where it stood, if it knew: `join_pinned_from`).
        let mut asks = Vec::new();
        for room in &client.rooms {
            // Where it stood, if it knew; it waits for the `subscribed` to know again.
            let since = client.next.remove(room);
            client.asked.insert(room.clone(), since);
            asks.push((room.clone(), since));
        }
        for (room, since) in asks {
            let by_application = self.rng.u32(0..3) == 0;
            let hub = &mut self.hubs[node];
            let joined = match (since, by_application) {
                (None, true) => hub.join(conn, &room).map(|_| ()),
                (Some(since), true) => {
                    let from = Position {
                        since,
                        epoch: EPOCH,
                    };
                    hub.join_pinned_from(conn, &room, from).map(|_| ())
                }
                (since, false) => {
                    let frame = match since {
                        Some(since) => {
                            json!({"type": "subscribe", "channel": room, "since": since, "epoch": EPOCH})
                        }
                        None => json!({"type": "subscribe", "channel": room}),
                    };
                    let frame = Frame::text(frame.to_string());
                    hub.handle(self.now, Input::Frame { conn, frame });
                    Ok(())
                }
            };
            joined.map_err(|e| self.violation(e.to_string()))?;
        }
        self.drain(node)
    }

    fn act(&mut self) -> Result<(), Violation> {
        let roll = self.rng.u32(0..100);
        if roll < 50 {
            let node = self.rng.usize(0..self.hubs.len());
            let room = self.cfg.rooms[self.rng.usize(0..self.cfg.rooms.len())].clone();
            self.next_seq += 1;
            let message = Message::json("m", json!({ "seq": self.next_seq }));
            let _ = self.hubs[node]
                .publish(self.now, Target::room("/", room), message)
                .map_err(|e| self.violation(e.to_string()))?;
            return self.drain(node);
        }
        if roll < 58 && !self.clients.is_empty() {
            // A client drops off its node and comes back on one (maybe the same).
            let c = self.rng.usize(0..self.clients.len());
            let (node, conn) = (self.clients[c].node, self.clients[c].conn);
            self.owner.remove(&(node, conn));
            let gone = Input::TransportError {
                conn,
                error: "moved".into(),
            };
            self.hubs[node].handle(self.now, gone);
            self.drain(node)?;
            self.clients[c].node = self.rng.usize(0..self.hubs.len());
            return self.connect(c);
        }
        if self.rng.u32(0..1000) < self.cfg.outage_permille {
            let node = self.rng.usize(0..self.hubs.len());
            let until = self.now + Duration::from_millis(self.rng.u64(20..=200));
            if !self.is_down(node) {
                self.down.insert(node, until);
                self.report.outages += 1;
                self.hubs[node].backplane_lost();
                self.put(until, Carry::Up(node));
                // Its members get what they miss when the link is back, unless it breaks again
                // before the node had its answer: then they may miss some.
                let (_, hi) = self.cfg.latency;
                let settling = self
                    .back
                    .get(&node)
                    .is_some_and(|&at| self.now < at + hi * 3);
                for client in self
                    .clients
                    .iter_mut()
                    .filter(|c| c.node == node && settling)
                {
                    client.lossy = true;
                }
            }
        }
        let until = self.now + Duration::from_millis(self.rng.u64(1..=20));
        self.advance(Some(until))
    }

    /// Whether `node` is without its link now.
    fn is_down(&mut self, node: usize) -> bool {
        match self.down.get(&node) {
            Some(&until) if until > self.now => true,
            Some(_) => {
                self.down.remove(&node);
                false
            }
            None => false,
        }
    }

    /// Carries everything due by `until` (everything, if `None`), in order.
    fn advance(&mut self, until: Option<Instant>) -> Result<(), Violation> {
        while let Some(entry) = self.link.first_entry() {
            if until.is_some_and(|until| entry.key().0 > until) {
                break;
            }
            let at = entry.key().0;
            let carry = entry.remove();
            self.now = self.now.max(at);
            match carry {
                Carry::Publish(message) => self.number(message),
                Carry::Numbered(node, _) if self.is_down(node) => {}
                Carry::Numbered(node, message) => {
                    self.hubs[node]
                        .handle_remote(self.now, message)
                        .map_err(|e| self.violation(format!("node {node} refused: {e}")))?;
                    self.drain(node)?;
                }
                Carry::Ask(node, fetch) => {
                    let channel = self.channels.entry(fetch.room.clone()).or_default();
                    let entries = match fetch.from {
                        Some(from) => channel
                            .kept
                            .iter()
                            .filter(|(o, _)| *o >= from)
                            .cloned()
                            .collect(),
                        None => Vec::new(),
                    };
                    let stream = Stream {
                        epoch: EPOCH,
                        next: channel.next,
                        entries,
                    };
                    let at = self.arrival(None);
                    self.put(at, Carry::Answer(node, fetch.id, stream));
                }
                Carry::Answer(node, id, _) if self.is_down(node) => {
                    // The link broke under the question: it fails.
                    self.hubs[node].fetched(self.now, id, None);
                    self.drain(node)?;
                }
                Carry::Up(node) => {
                    self.down.remove(&node);
                    self.back.insert(node, self.now);
                    self.hubs[node].backplane_restored();
                    self.drain(node)?;
                }
                Carry::Answer(node, id, stream) => {
                    self.hubs[node].fetched(self.now, id, Some(stream));
                    self.drain(node)?;
                }
            }
        }
        if let Some(until) = until {
            self.now = self.now.max(until);
        }
        Ok(())
    }

    /// The sequencer numbers a publication, keeps it and sends it to every node.
    fn number(&mut self, message: ClusterMessage) {
        let ClusterMessage::Sequence {
            target,
            message,
            max_len,
            ..
        } = message
        else {
            return;
        };
        let Some(room) = target.channel().map(str::to_owned) else {
            return;
        };
        let channel = self.channels.entry(room.clone()).or_default();
        let offset = channel.next;
        channel.next += 1;
        channel.kept.push_back((offset, message.clone()));
        while channel.kept.len() > max_len {
            channel.kept.pop_front();
        }
        if let Some(seq) = message.payload.as_json().and_then(|v| v["seq"].as_u64()) {
            self.numbered.insert((room, offset), seq);
        }
        self.report.published += 1;
        for node in 0..self.hubs.len() {
            let numbered = ClusterMessage::Sequenced {
                target: target.clone(),
                message: message.clone(),
                offset,
                epoch: EPOCH,
            };
            let at = self.arrival(Some((SEQUENCER, node)));
            self.put(at, Carry::Numbered(node, numbered));
        }
    }

    /// When something sent now arrives: after a random latency, and not before what went
    /// ahead of it on its `lane`, if it has one.
    fn arrival(&mut self, lane: Option<(usize, usize)>) -> Instant {
        let (lo, hi) = self.cfg.latency;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let at = self.now + lo + Duration::from_micros(self.rng.u64(0..=span));
        match lane {
            Some(lane) => {
                let free = self.free.entry(lane).or_insert(at);
                *free = at.max(*free);
                *free
            }
            None => at,
        }
    }

    fn put(&mut self, at: Instant, carry: Carry) {
        self.sequence += 1;
        self.link.insert((at, self.sequence), carry);
    }

    /// Routes node `node`'s outputs: frames to its clients (read at once), publishes and
    /// questions to the sequencer.
    fn drain(&mut self, node: usize) -> Result<(), Violation> {
        while let Some(out) = self.hubs[node].poll_output() {
            match out {
                Output::Transmit { conn, frame } => {
                    self.hubs[node].handle(self.now, Input::Written { conn, frames: 1 });
                    self.read(node, conn, &frame)?;
                }
                Output::Cluster(message) => {
                    let at = self.arrival(Some((node, SEQUENCER)));
                    // A publish made without the link waits for it.
                    let at = at.max(self.down.get(&node).copied().unwrap_or(at));
                    self.put(at, Carry::Publish(*message));
                }
                Output::Fetch(fetch) if self.is_down(node) => {
                    self.hubs[node].fetched(self.now, fetch.id, None);
                }
                Output::Fetch(fetch) => {
                    self.report.fetches += 1;
                    let at = self.arrival(None);
                    self.put(at, Carry::Ask(node, *fetch));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Client of `(node, conn)` reads `frame` and checks it.
    fn read(&mut self, node: usize, conn: ConnId, frame: &Frame) -> Result<(), Violation> {
        let Some(&c) = self.owner.get(&(node, conn)) else {
            return Ok(());
        };
        let Some(text) = frame.as_text() else {
            return Ok(());
        };
        let v: Value =
            serde_json::from_str(text).map_err(|e| self.violation(format!("not JSON: {e}")))?;
        let Some(room) = v["channel"].as_str().map(str::to_owned) else {
            return Ok(());
        };
        let who = format!("client {c} on node {node} in {room}");
        match v["type"].as_str() {
            Some("subscribed") if self.is_down(node) => {
                // Answered without the sequencer, from what the node has: any position, any
                // outcome; what follows may have gaps.
                let client = &mut self.clients[c];
                client.lossy = true;
                let asked = client.asked.remove(&room).flatten();
                let from = match (asked, v["recovered"].as_bool()) {
                    (Some(since), Some(true)) => since,
                    _ => v["offset"].as_u64().unwrap_or(0),
                };
                client.next.insert(room, from);
                Ok(())
            }
            Some("subscribed") => self.subscribed(c, &room, &v, &who),
            Some("event") => self.event(c, &room, &v, &who),
            _ => Ok(()),
        }
    }

    fn subscribed(&mut self, c: usize, room: &str, v: &Value, who: &str) -> Result<(), Violation> {
        if v["epoch"].as_u64() != Some(EPOCH) {
            return Err(self.violation(format!("{who}: subscribed in epoch {}", v["epoch"])));
        }
        let Some(offset) = v["offset"].as_u64() else {
            return Err(self.violation(format!("{who}: subscribed without an offset")));
        };
        let asked = self.clients[c].asked.remove(room).flatten();
        let from = match (asked, v["recovered"].as_bool()) {
            (Some(since), Some(true)) => {
                self.report.recovered += 1;
                since
            }
            (Some(_), Some(false)) => {
                if v["reason"] != "too_old" {
                    let why = format!("{who}: not recovered because {}", v["reason"]);
                    return Err(self.violation(why));
                }
                self.report.too_old += 1;
                offset
            }
            (None, None) => offset,
            (asked, recovered) => {
                let why = format!("{who}: asked from {asked:?}, answered recovered {recovered:?}");
                return Err(self.violation(why));
            }
        };
        self.clients[c].next.insert(room.to_owned(), from);
        Ok(())
    }

    fn event(&mut self, c: usize, room: &str, v: &Value, who: &str) -> Result<(), Violation> {
        let (Some(offset), Some(epoch), Some(seq)) = (
            v["offset"].as_u64(),
            v["epoch"].as_u64(),
            v["data"]["seq"].as_u64(),
        ) else {
            return Err(self.violation(format!("{who}: a publication without its position")));
        };
        let Some(&next) = self.clients[c].next.get(room) else {
            return Err(self.violation(format!("{who}: offset {offset} before subscribed")));
        };
        // Skipped offsets are allowed only where the sequencer no longer keeps them (the node
        // was cut off for longer than the history holds), or for a client marked lossy.
        let trimmed = self
            .channels
            .get(room)
            .and_then(|ch| ch.kept.front())
            .is_some_and(|&(first, _)| offset <= first);
        let missed = offset > next && (self.clients[c].lossy || trimmed);
        if epoch != EPOCH || (offset != next && !missed) {
            let why = format!("{who}: offset {offset} in epoch {epoch}, expected {next}");
            return Err(self.violation(why));
        }
        if self.numbered.get(&(room.to_owned(), offset)) != Some(&seq) {
            let why = format!("{who}: offset {offset} carries publication {seq}");
            return Err(self.violation(why));
        }
        self.clients[c].next.insert(room.to_owned(), offset + 1);
        self.report.delivered += 1;
        Ok(())
    }

    /// After settling: every client has each of its channels up to the last offset.
    fn check_complete(&self) -> Result<(), Violation> {
        for (c, client) in self.clients.iter().enumerate().filter(|(_, c)| !c.lossy) {
            for room in &client.rooms {
                let last = self.channels.get(room).map_or(0, |ch| ch.next);
                let at = client.next.get(room).copied();
                if at.is_some_and(|at| at != last) || at.is_none() {
                    return Err(self.violation(format!(
                        "client {c} on node {} stands at {at:?} in {room}, the stream at {last}",
                        client.node
                    )));
                }
            }
        }
        Ok(())
    }
}
