//! Deterministic simulation of a cluster: several hubs joined by a backplane link that
//! delays, loses and partitions what one node forwards to the others.
//!
//! Each node's hub forwards its room publishes ([`Output::Cluster`]); the link carries each to
//! every other node after a random latency, first in first out between two nodes (as one
//! Redis channel does), unless the pair is partitioned or the message is lost on the way; the
//! receiving node delivers it with [`Hub::handle_remote`]. Clients, subscribed to rooms on
//! their own nodes, read everything at once. Invariants, checked as it runs and when it
//! settles: no client gets a message twice; each client gets a publisher node's messages for a
//! room in the order they were published; and every message reaches every member of its
//! room on every node except where the link lost it (at most once between nodes, exactly
//! once within a node).
//!
//! ```
//! use std::time::Instant;
//! use tidings_core::sim::{ClusterConfig, ClusterSim};
//!
//! let mut sim = ClusterSim::new(3, ClusterConfig::default(), Instant::now());
//! let report = sim.run(500).expect("invariants hold");
//! assert!(report.delivered > 0);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Violation;
use crate::{
    ClusterMessage, Config, ConnId, ConnectionInfo, Frame, Hub, Input, Message, Output, Target,
};

/// The shape of a simulated cluster.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Nodes, each with its own hub.
    pub nodes: usize,
    /// Clients per node; each subscribes to some rooms at the start.
    pub clients_per_node: usize,
    /// The rooms (namespace `/`).
    pub rooms: Vec<String>,
    /// One-way latency of the link, chosen uniformly in this range per message.
    pub latency: (Duration, Duration),
    /// In a hundred: the chance that the link loses one message to one node.
    pub loss_percent: u32,
    /// In a hundred, per step: the chance that a pair of nodes is cut off from each other,
    /// or healed.
    pub partition_percent: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            clients_per_node: 4,
            rooms: vec!["a".into(), "b".into(), "c".into()],
            latency: (Duration::from_millis(1), Duration::from_millis(30)),
            loss_percent: 2,
            partition_percent: 3,
        }
    }
}

/// What a finished cluster run did.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct ClusterReport {
    /// Messages published.
    pub published: u64,
    /// Deliveries to clients, checked.
    pub delivered: u64,
    /// Deliveries the link lost (to a node, counted per member there).
    pub lost: u64,
}

/// One simulated client: its node, connection, rooms and what it has seen.
struct Member {
    node: usize,
    conn: ConnId,
    rooms: BTreeSet<String>,
    /// `(publisher node, seq)` seen, for the exactly-once check.
    seen: BTreeSet<(usize, u64)>,
    /// The last seq seen per `(publisher node, room)`, for the order check.
    last: BTreeMap<(usize, String), u64>,
}

/// A message on the link: where it goes, and what it is.
struct InFlight {
    to: usize,
    message: ClusterMessage,
}

/// A seeded cluster run.
pub struct ClusterSim {
    seed: u64,
    cfg: ClusterConfig,
    rng: fastrand::Rng,
    start: Instant,
    now: Instant,
    step: u64,
    hubs: Vec<Hub>,
    members: Vec<Member>,
    owner: BTreeMap<(usize, ConnId), usize>,
    /// The link: messages by arrival time, then sequence (FIFO per pair: see `free`).
    link: BTreeMap<(Instant, u64), InFlight>,
    /// Per `(from, to)`: nothing on that pair arrives before this (first in, first out).
    free: BTreeMap<(usize, usize), Instant>,
    cut: BTreeSet<(usize, usize)>,
    sequence: u64,
    /// Published: `(node, seq)` → room; and where each did not reach: `(node, seq, to)`.
    published: BTreeMap<(usize, u64), String>,
    lost: BTreeSet<(usize, u64, usize)>,
    next_seq: u64,
    delivered: u64,
}

impl ClusterSim {
    /// A cluster run for `seed`, starting at `start` on the virtual clock.
    pub fn new(seed: u64, cfg: ClusterConfig, start: Instant) -> Self {
        let config = Config::default()
            .cluster(true)
            .welcome(false)
            .ping_period(None)
            .max_inbound_rate(None);
        let hubs = (0..cfg.nodes.max(1))
            .map(|_| Hub::new(config.clone()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        ClusterSim {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            cfg,
            start,
            now: start,
            step: 0,
            hubs,
            members: Vec::new(),
            owner: BTreeMap::new(),
            link: BTreeMap::new(),
            free: BTreeMap::new(),
            cut: BTreeSet::new(),
            sequence: 0,
            published: BTreeMap::new(),
            lost: BTreeSet::new(),
            next_seq: 0,
            delivered: 0,
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

    /// Opens the clients and subscribes them, runs `steps` steps, then heals the link and
    /// lets everything arrive, checking the invariants throughout.
    pub fn run(&mut self, steps: u64) -> Result<ClusterReport, Violation> {
        self.open_members()?;
        for step in 0..steps {
            self.step = step;
            self.act()?;
        }
        self.cut.clear();
        let settle = self.cfg.latency.1 * 2 + Duration::from_millis(1);
        self.advance(self.now + settle)?;
        self.check_complete()?;
        Ok(ClusterReport {
            published: self.published.len() as u64,
            delivered: self.delivered,
            lost: self.lost.len() as u64,
        })
    }

    fn open_members(&mut self) -> Result<(), Violation> {
        for node in 0..self.hubs.len() {
            for _ in 0..self.cfg.clients_per_node {
                let conn = self.hubs[node]
                    .open(self.now, ConnectionInfo::new("/"))
                    .map_err(|e| self.violation(e.to_string()))?;
                let mut rooms = BTreeSet::new();
                for room in self.cfg.rooms.clone() {
                    if self.rng.bool() {
                        self.hubs[node]
                            .join(conn, &room)
                            .map_err(|e| self.violation(e.to_string()))?;
                        rooms.insert(room);
                    }
                }
                self.owner.insert((node, conn), self.members.len());
                self.members.push(Member {
                    node,
                    conn,
                    rooms,
                    seen: BTreeSet::new(),
                    last: BTreeMap::new(),
                });
            }
            self.drain(node)?;
        }
        Ok(())
    }

    fn act(&mut self) -> Result<(), Violation> {
        let nodes = self.hubs.len();
        let roll = self.rng.u32(0..100);
        if roll < self.cfg.partition_percent && nodes > 1 {
            let (a, b) = (self.rng.usize(0..nodes), self.rng.usize(0..nodes));
            if a != b && !self.cut.remove(&(a, b)) {
                self.cut.insert((a, b));
            }
            return Ok(());
        }
        if roll < 60 {
            let node = self.rng.usize(0..nodes);
            let room = self.cfg.rooms[self.rng.usize(0..self.cfg.rooms.len())].clone();
            self.next_seq += 1;
            let seq = self.next_seq;
            self.published.insert((node, seq), room.clone());
            let message = Message::json("m", json!({ "node": node, "seq": seq }));
            let _ = self.hubs[node]
                .publish(self.now, Target::room("/", room), message)
                .map_err(|e| self.violation(e.to_string()))?;
            return self.drain(node);
        }
        let step = Duration::from_millis(self.rng.u64(1..=20));
        self.advance(self.now + step)
    }

    /// Delivers every message on the link due by `until`, in order.
    fn advance(&mut self, until: Instant) -> Result<(), Violation> {
        while let Some(entry) = self.link.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let at = entry.key().0;
            let flight = entry.remove();
            self.now = self.now.max(at);
            self.hubs[flight.to]
                .handle_remote(self.now, flight.message)
                .map_err(|e| self.violation(format!("node {} refused: {e}", flight.to)))?;
            self.drain(flight.to)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Routes node `node`'s outputs: frames to its clients (read at once), cluster messages
    /// onto the link.
    fn drain(&mut self, node: usize) -> Result<(), Violation> {
        while let Some(out) = self.hubs[node].poll_output() {
            match out {
                Output::Transmit { conn, frame } => {
                    self.hubs[node].handle(self.now, Input::Written { conn, frames: 1 });
                    self.read(node, conn, &frame)?;
                }
                Output::Cluster(message) => self.send(node, *message),
                _ => {}
            }
        }
        Ok(())
    }

    /// Puts `message` on the link to every other node, unless cut off or lost.
    fn send(&mut self, from: usize, message: ClusterMessage) {
        let seq = match &message {
            ClusterMessage::Publish { message, .. } => {
                message.payload.as_json().and_then(|v| v["seq"].as_u64())
            }
            _ => None,
        };
        for to in (0..self.hubs.len()).filter(|&to| to != from) {
            let lost = self.cut.contains(&(from, to))
                || self.cut.contains(&(to, from))
                || self.rng.u32(0..100) < self.cfg.loss_percent;
            if lost {
                if let Some(seq) = seq {
                    self.lost.insert((from, seq, to));
                }
                continue;
            }
            let (lo, hi) = self.cfg.latency;
            let span = hi.saturating_sub(lo).as_micros() as u64;
            let at = self.now + lo + Duration::from_micros(self.rng.u64(0..=span));
            // First in, first out between two nodes.
            let free = self.free.entry((from, to)).or_insert(at);
            let at = at.max(*free);
            *free = at;
            self.sequence += 1;
            self.link.insert(
                (at, self.sequence),
                InFlight {
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    /// Client of `(node, conn)` reads `frame`: checks exactly-once and per-publisher order.
    fn read(&mut self, node: usize, conn: ConnId, frame: &Frame) -> Result<(), Violation> {
        let Some(&m) = self.owner.get(&(node, conn)) else {
            return Ok(());
        };
        let Some(text) = frame.as_text() else {
            return Ok(());
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| self.violation(format!("not JSON: {e}")))?;
        if value["type"] != "event" {
            return Ok(());
        }
        let (Some(from), Some(seq), Some(room)) = (
            value["data"]["node"].as_u64(),
            value["data"]["seq"].as_u64(),
            value["channel"].as_str(),
        ) else {
            return Ok(());
        };
        let member = &mut self.members[m];
        let from = from as usize;
        if !member.seen.insert((from, seq)) {
            let why = format!("{conn:?} on node {node} got message {seq} of node {from} twice");
            return Err(self.violation(why));
        }
        let last = member.last.entry((from, room.to_owned())).or_insert(0);
        if seq < *last {
            let why = format!(
                "{conn:?} on node {node} got message {seq} of node {from} in {room} after {last}"
            );
            return Err(self.violation(why));
        }
        *last = seq;
        self.delivered += 1;
        Ok(())
    }

    /// After settling: every message reached every member of its room, except on a node
    /// the link lost it to.
    fn check_complete(&self) -> Result<(), Violation> {
        for (&(from, seq), room) in &self.published {
            for member in &self.members {
                let owed = member.rooms.contains(room)
                    && (member.node == from || !self.lost.contains(&(from, seq, member.node)));
                if owed && !member.seen.contains(&(from, seq)) {
                    return Err(self.violation(format!(
                        "{:?} on node {} never got message {seq} of node {from} in {room}",
                        member.conn, member.node
                    )));
                }
            }
        }
        Ok(())
    }
}
