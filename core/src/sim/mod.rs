//! Deterministic simulation of a hub, many clients and a faulty network (feature `sim`).
//!
//! One thread, a virtual clock that jumps to the next thing due, and one seeded RNG that
//! decides every client action, server action and network fault. Invariants are checked as
//! the simulation runs; a failure is a [`Violation`] naming its seed, and a [`Sim`] built with
//! that seed replays the same run exactly.
//!
//! ```
//! use std::time::Instant;
//! use tidings_core::sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(7, SimConfig::default(), Instant::now());
//! let report = sim.run(500).expect("invariants hold");
//! assert!(report.steps > 0);
//! ```
//!
//! The network delivers each connection's packets in order (as TCP does) after a random
//! latency, and a write completes only when the client reads it: a client that stops reading
//! makes its queue in the hub grow, as a real socket's would.
//!
//! Clients reconnect as real ones do: each keeps, across its connections, where it stood in
//! each channel's stream, and often subscribes again from there. A recovered subscription
//! must then carry every offset from that position on, once and in order, into the live
//! stream; each `(channel, epoch, offset)` must always carry the same publication; and a
//! subscription that cannot be recovered must say so (`recovered: false`).
//!
//! [`ClusterSim`] does the same for several hubs joined by a lossy, partitionable backplane
//! link (`cluster.rs`), and [`SequencedSim`] for several hubs whose channel streams a
//! sequencer numbers and keeps, with clients recovering on whichever node they land
//! (`sequenced.rs`).

mod cluster;
mod model;
mod sequenced;

pub use cluster::{ClusterConfig, ClusterReport, ClusterSim};
pub use sequenced::{SequencedConfig, SequencedReport, SequencedSim};

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    CloseCode, Config, ConnId, ConnectionInfo, Event, Footprint, Frame, History, Hub, Input,
    Message, Output, Protocol, Target,
};
use model::Model;

/// What the simulation runs: the hub's configuration, the cast, the network and the faults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SimConfig {
    /// The hub's configuration. The default uses small bounds so that faults bite.
    pub hub: Config,
    /// Simulated clients; each connects, drops and reconnects as the RNG decides.
    pub clients: usize,
    /// How many of `clients` (the last ones) speak raw: they send plain text and binary
    /// frames, which must reach the application as they were sent and in order, and the
    /// server joins them to rooms, whose publications they must get as bare payloads.
    pub raw_clients: usize,
    /// Rooms the clients subscribe to and the server publishes to (namespace `/`).
    pub rooms: Vec<String>,
    /// One-way latency of each packet, chosen uniformly in this range.
    pub latency: (Duration, Duration),
    /// Most virtual time between two actions.
    pub max_step: Duration,
    /// Whether faults happen: slow readers, silent peers, abrupt drops, bad frames, stalls.
    pub faults: bool,
    /// Whether a quarter of the runs shut the server down at a random step (under load).
    pub shutdown: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            hub: Config::default()
                .ping_period(Some(Duration::from_millis(500)))
                .pong_wait(Duration::from_millis(1500))
                .ack_timeout(Duration::from_secs(1))
                .answer_timeout(Duration::from_secs(1))
                .max_queue_frames(24)
                .max_queue_bytes(8 * 1024)
                .slow_consumer_timeout(Duration::from_secs(2))
                .write_window(4)
                .close_grace(Duration::from_millis(800))
                .max_rooms_per_connection(6)
                .max_errors(4)
                .error_window(Duration::from_secs(1))
                .max_message_size(2048)
                .max_batch_items(6)
                .client_publish(true)
                // Two rooms keep history (one long, one short enough to lose it), one none;
                // the byte cap is small enough to bite.
                .history("a", History::new(64, Duration::from_secs(10)))
                .history("b", History::new(4, Duration::from_millis(700)))
                .max_history_bytes(6 * 1024),
            clients: 8,
            raw_clients: 2,
            rooms: vec!["a".into(), "b".into(), "c".into()],
            latency: (Duration::from_millis(1), Duration::from_millis(40)),
            max_step: Duration::from_millis(40),
            faults: true,
            shutdown: true,
        }
    }
}

/// An invariant broke. The message says which and how; the seed replays it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// The step at which it was found.
    pub step: u64,
    /// Virtual time since the start.
    pub at: Duration,
    /// What broke.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} step {} at {:?}: {} (replay with TIDINGS_SEED={})",
            self.seed, self.step, self.at, self.message, self.seed
        )
    }
}

impl std::error::Error for Violation {}

/// What a finished run did.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Report {
    /// Steps taken (fewer than asked if the server shut down).
    pub steps: u64,
    /// Hash of every output in order: the same seed gives the same trace.
    pub trace: u64,
    /// Room messages delivered and checked.
    pub delivered: u64,
    /// Connections opened.
    pub connections: u64,
    /// Closes by code.
    pub closes: BTreeMap<CloseCode, u64>,
    /// Subscriptions from a position that recovered what was missed.
    pub recovered: u64,
    /// Subscriptions from a position told they could not recover.
    pub not_recovered: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Reading,
    /// Does not read: what arrives waits unread, and the hub's writes do not complete.
    Slow,
}

#[derive(Debug)]
struct Client {
    /// Speaks raw: no envelope either way.
    raw: bool,
    /// Raw messages it sent, across its connections: each carries its number.
    raw_sent: u64,
    conn: Option<ConnId>,
    mode: Mode,
    unread: VecDeque<Down>,
    /// Packets of one connection keep their order: none is due before these.
    up_free: Instant,
    down_free: Instant,
    /// The downstream direction delivers nothing before this.
    stall_until: Instant,
    /// Read slowly or was stalled during this connection: a graceful close may be cut.
    lagged: bool,
    next_ack: u64,
    /// Ack numbers this connection asked of the server and has not seen answered. Each must
    /// be answered exactly once (an `ack` frame, or an `error` carrying it) while it stays
    /// connected, by the application or by the answer deadline.
    asked: BTreeSet<u64>,
    /// The offset each subscribed channel's next publication must carry: the stream has no
    /// gaps for a member (from its `subscribed` offset on, or from the position it recovered
    /// from).
    next_offset: BTreeMap<String, u64>,
    /// Where the client stands in each channel's stream, `(epoch, next offset)`, kept across
    /// its connections: what it recovers from after a reconnect.
    positions: BTreeMap<String, (u64, u64)>,
    /// Channels it asked to recover from a position on this connection, with that position's
    /// offset; then, once recovered, the first live offset (events below it are the replay,
    /// owed to the connection that missed them, not to this one).
    recovering: BTreeMap<String, u64>,
    replay_until: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
enum Down {
    Frame(Frame),
    Close(CloseCode),
}

#[derive(Debug)]
enum Packet {
    Down {
        client: usize,
        conn: ConnId,
        what: Down,
    },
    Up {
        conn: ConnId,
        frame: Frame,
        /// The room and message id, if this is a client publish.
        publish: Option<(String, u64)>,
    },
    Gone {
        conn: ConnId,
        transport: bool,
    },
}

/// A hub, its clients and the network between them, driven by one seed.
pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    hub: Hub,
    rng: fastrand::Rng,
    start: Instant,
    now: Instant,
    clients: Vec<Client>,
    /// Every connection the hub may still hold, and its client (abandoned ones included).
    owner: BTreeMap<ConnId, usize>,
    net: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    model: Model,
    trace: DefaultHasher,
    step: u64,
    next_id: u64,
    shutdown_complete: bool,
    /// When the hub was told to shut down.
    shutdown_at: Option<Instant>,
    /// Connections whose graceful close came at the close grace: cut before they could read
    /// all they were owed (a slow network is enough).
    cut: BTreeSet<ConnId>,
    /// Connections the hub asked not to read, with what arrived from them meanwhile (it
    /// waits in the socket, as TCP holds it, and is read in order on resume).
    paused: BTreeMap<ConnId, VecDeque<Packet>>,
    connections: u64,
    /// The publication each `(channel, epoch, offset)` carried when a client first saw it.
    stream: BTreeMap<(String, u64, u64), u64>,
    /// Subscriptions recovered, and ones told they could not be.
    recovered: u64,
    not_recovered: u64,
    /// The number of the last raw message the application got from each raw connection.
    raw_received: BTreeMap<ConnId, u64>,
}

impl Sim {
    /// A simulation of `cfg` driven by `seed`, with virtual time starting at `start`.
    pub fn new(seed: u64, cfg: SimConfig, start: Instant) -> Self {
        let hub = Hub::new(cfg.hub.clone()).unwrap_or_else(|e| panic!("SimConfig::hub: {e}"));
        let first_raw = cfg.clients.saturating_sub(cfg.raw_clients);
        let clients = (0..cfg.clients)
            .map(|c| Client {
                raw: c >= first_raw,
                raw_sent: 0,
                conn: None,
                mode: Mode::Reading,
                unread: VecDeque::new(),
                up_free: start,
                down_free: start,
                stall_until: start,
                lagged: false,
                next_ack: 0,
                asked: BTreeSet::new(),
                next_offset: BTreeMap::new(),
                positions: BTreeMap::new(),
                recovering: BTreeMap::new(),
                replay_until: BTreeMap::new(),
            })
            .collect();
        Sim {
            seed,
            cfg,
            hub,
            rng: fastrand::Rng::with_seed(seed),
            start,
            now: start,
            clients,
            owner: BTreeMap::new(),
            net: BTreeMap::new(),
            seq: 0,
            model: Model::default(),
            trace: DefaultHasher::new(),
            step: 0,
            next_id: 0,
            shutdown_complete: false,
            shutdown_at: None,
            cut: BTreeSet::new(),
            paused: BTreeMap::new(),
            connections: 0,
            stream: BTreeMap::new(),
            recovered: 0,
            not_recovered: 0,
            raw_received: BTreeMap::new(),
        }
    }

    /// The hub under simulation.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Runs `steps` random actions (fewer if the server shuts down), then lets the network
    /// settle with faults off, then shuts the hub down and checks that every table is empty.
    pub fn run(&mut self, steps: u64) -> Result<Report, Violation> {
        // A quarter of the runs shut the server down at a random step; the others take them all.
        let shutdown_at =
            (self.cfg.shutdown && self.chance(25)).then(|| self.rng.u64(0..steps.max(1)));
        for step in 0..steps {
            if shutdown_at == Some(step) {
                self.shutdown();
                self.drain().map_err(|m| self.violation(m))?;
            }
            self.step()?;
            if self.shutdown_complete {
                break;
            }
        }
        self.settle()?;
        self.finish()?;
        Ok(Report {
            steps: self.step,
            trace: self.trace.finish(),
            delivered: self.model.delivered,
            connections: self.connections,
            closes: self.hub.counters().closes,
            recovered: self.recovered,
            not_recovered: self.not_recovered,
        })
    }

    /// One random action, then virtual time moves on by up to `max_step`.
    pub fn step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.act().map_err(|m| self.violation(m))?;
        let dt = self.rng.u64(0..=self.cfg.max_step.as_millis() as u64);
        self.drive(self.now + Duration::from_millis(dt))
    }

    /// Moves virtual time to `until` (see [`Sim::drive_bounded`]), failing on a livelock of
    /// more than 100,000 events at one instant.
    pub fn drive(&mut self, until: Instant) -> Result<(), Violation> {
        self.drive_bounded(until, 100_000)
    }

    /// Moves virtual time to `until`, delivering every packet and running every timer on the
    /// way at its own instant, and checking the invariants. Fails if more than `max_events`
    /// happen at one instant (a livelock) or an invariant breaks.
    pub fn drive_bounded(&mut self, until: Instant, max_events: usize) -> Result<(), Violation> {
        let mut at_same_instant = 0;
        loop {
            let next_packet = self.net.first_key_value().map(|(k, _)| k.0);
            let next = match (next_packet, self.hub.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            if next > self.now {
                self.now = next;
                at_same_instant = 0;
            }
            at_same_instant += 1;
            if at_same_instant > max_events {
                return Err(self.violation(format!(
                    "livelock: more than {max_events} events at one instant"
                )));
            }
            if let Some(entry) = self.net.first_entry().filter(|e| e.key().0 <= self.now) {
                let packet = entry.remove();
                self.deliver(packet).map_err(|m| self.violation(m))?;
            } else {
                self.hub.handle_timeout(self.now);
                self.drain().map_err(|m| self.violation(m))?;
                if self.hub.poll_timeout().is_some_and(|t| t <= self.now) {
                    return Err(self
                        .violation("poll_timeout() is not after the timeout just handled".into()));
                }
            }
        }
        self.now = self.now.max(until);
        self.check().map_err(|m| self.violation(m))
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            seed: self.seed,
            step: self.step,
            at: self.now - self.start,
            message,
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    fn room(&mut self) -> String {
        let i = self.rng.usize(0..self.cfg.rooms.len());
        self.cfg.rooms[i].clone()
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.cfg.latency;
        lo + Duration::from_micros(self.rng.u64(0..=hi.saturating_sub(lo).as_micros() as u64))
    }

    fn schedule(&mut self, at: Instant, packet: Packet) {
        self.seq += 1;
        self.net.insert((at, self.seq), packet);
    }

    /// Sends a packet from client `c` to the hub, after latency, in order.
    fn send_up(&mut self, c: usize, frame: Frame) {
        self.send_up_publish(c, frame, None);
    }

    /// Sends a packet; `publish` names the room and message id if it is a client publish.
    fn send_up_publish(&mut self, c: usize, frame: Frame, publish: Option<(String, u64)>) {
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        let at = (self.now + self.latency()).max(self.clients[c].up_free);
        self.clients[c].up_free = at;
        self.schedule(
            at,
            Packet::Up {
                conn,
                frame,
                publish,
            },
        );
    }

    fn send_text(&mut self, c: usize, value: Value) {
        self.send_up(c, Frame::text(value.to_string()));
    }

    /// One random action by a client or the server.
    fn act(&mut self) -> Result<(), String> {
        if self.chance(45) {
            let c = self.rng.usize(0..self.clients.len());
            self.client_act(c)
        } else {
            self.server_act()
        }
    }

    fn client_act(&mut self, c: usize) -> Result<(), String> {
        if self.clients[c].conn.is_none() {
            let mut info = ConnectionInfo::new("/ws").name(format!("client-{c}"));
            if self.clients[c].raw {
                info = info.protocol(Protocol::Raw);
            }
            if let Ok(conn) = self.hub.open(self.now, info) {
                self.connections += 1;
                let client = &mut self.clients[c];
                client.conn = Some(conn);
                client.asked.clear();
                client.next_offset.clear();
                client.recovering.clear();
                client.replay_until.clear();
                client.mode = Mode::Reading;
                client.lagged = false;
                client.unread.clear();
                self.owner.insert(conn, c);
                self.model.opened(conn, self.now);
                // Most come back to where they were.
                let positions: Vec<(String, (u64, u64))> = self.clients[c]
                    .positions
                    .iter()
                    .map(|(room, at)| (room.clone(), *at))
                    .collect();
                for (room, (epoch, since)) in positions {
                    if self.chance(80) {
                        self.clients[c].recovering.insert(room.clone(), since);
                        self.send_text(
                            c,
                            json!({"type": "subscribe", "channel": room, "since": since, "epoch": epoch}),
                        );
                    }
                }
            }
            return self.drain();
        }
        let roll = self.rng.u32(0..100);
        // A raw client has no requests: it talks, and has the faults of the last arms.
        if self.clients[c].raw && roll <= 70 {
            return self.raw_act(c);
        }
        match roll {
            0..=24 => {
                let room = self.room();
                self.send_text(c, json!({"type": "subscribe", "channel": room}));
            }
            25..=34 => {
                let room = self.room();
                self.send_text(c, json!({"type": "unsubscribe", "channel": room}));
            }
            35..=54 => {
                let ack = self.chance(50).then(|| {
                    self.clients[c].next_ack += 1;
                    self.clients[c].next_ack
                });
                if let Some(ack) = ack {
                    self.clients[c].asked.insert(ack);
                }
                self.send_text(
                    c,
                    json!({"type": "event", "event": "chat", "data": {"n": roll}, "ack": ack}),
                );
            }
            55..=57 => {
                self.next_id += 1;
                let id = self.next_id;
                let room = self.room();
                let frame =
                    json!({"type": "publish", "channel": room, "event": "say", "data": {"id": id}});
                self.send_up_publish(c, Frame::text(frame.to_string()), Some((room, id)));
            }
            58..=59 => {
                for i in 0..5 {
                    self.send_text(c, json!({"type": "ping", "id": i.to_string()}));
                }
            }
            60..=64 if self.cfg.faults => {
                let junk = [
                    "{",
                    "[]",
                    r#"{"type":"warp"}"#,
                    r#"{"type":"subscribe"}"#,
                    "\u{0}",
                ];
                let i = self.rng.usize(0..junk.len());
                self.send_up(c, Frame::text(junk[i]));
            }
            65..=67 if self.cfg.faults => {
                let big = "x".repeat(self.cfg.hub.max_message_size + 1);
                self.send_up(c, Frame::text(big));
            }
            68..=70 if self.cfg.faults => {
                for i in 0..(self.cfg.hub.max_rooms_per_connection + 4) {
                    self.send_text(
                        c,
                        json!({"type": "subscribe", "channel": format!("flood-{i}")}),
                    );
                }
            }
            71..=78 if self.cfg.faults => {
                let client = &mut self.clients[c];
                match client.mode {
                    Mode::Reading => {
                        client.mode = Mode::Slow;
                        client.lagged = true;
                    }
                    Mode::Slow => self.catch_up(c)?,
                }
            }
            79..=81 if self.cfg.faults => {
                // Half-open: the peer vanishes without a word; the hub must notice by silence.
                if let Some(conn) = self.clients[c].conn.take() {
                    self.model.abandoned(conn);
                    self.clients[c].unread.clear();
                }
            }
            82..=84 if self.cfg.faults => {
                if let Some(conn) = self.clients[c].conn.take() {
                    self.model.abandoned(conn);
                    self.clients[c].unread.clear();
                    let transport = self.chance(50);
                    let at = self.now + self.latency();
                    self.schedule(at, Packet::Gone { conn, transport });
                }
            }
            85..=87 if self.cfg.faults => {
                let stall = Duration::from_millis(self.rng.u64(50..=600));
                let client = &mut self.clients[c];
                client.stall_until = client.stall_until.max(self.now + stall);
                client.lagged = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// A raw client says something: its next number, as text or as 8 binary bytes, and
    /// now and then what would be a `tidings.v1` request, which is only text here; with
    /// faults, sometimes a message over the size limit (1009).
    fn raw_act(&mut self, c: usize) -> Result<(), String> {
        self.clients[c].raw_sent += 1;
        let n = self.clients[c].raw_sent;
        let frame = match self.rng.u32(0..20) {
            0..=11 => Frame::text(format!("raw {n}")),
            12..=16 => Frame::Binary(bytes::Bytes::copy_from_slice(&n.to_be_bytes())),
            17..=18 => Frame::text(format!(r#"{{"type":"subscribe","channel":"a","raw":{n}}}"#)),
            _ if self.cfg.faults => Frame::text("x".repeat(self.cfg.hub.max_message_size + 1)),
            _ => Frame::text(format!("raw {n}")),
        };
        self.send_up(c, frame);
        Ok(())
    }

    /// The application got `data` from raw connection `conn`: one message a client sent,
    /// as it sent it, after the one before it (the rate limit may drop some, never reorder).
    fn raw_message(&mut self, conn: ConnId, data: &crate::Payload) -> Result<(), String> {
        use crate::Payload;
        let n = match data {
            Payload::Text(text) => text
                .strip_prefix("raw ")
                .and_then(|n| n.parse().ok())
                .or_else(|| serde_json::from_str::<Value>(text).ok()?["raw"].as_u64()),
            Payload::Binary(bytes) => <[u8; 8]>::try_from(&bytes[..]).ok().map(u64::from_be_bytes),
            Payload::Json(_) => None,
        };
        let Some(n) = n else {
            return Err(format!(
                "{conn:?} (raw) reached the application as {data:?}"
            ));
        };
        let last = self.raw_received.entry(conn).or_insert(0);
        if n <= *last {
            return Err(format!(
                "{conn:?} (raw) sent message {n} after {last}, the application got it after"
            ));
        }
        *last = n;
        Ok(())
    }

    fn server_act(&mut self) -> Result<(), String> {
        let room = self.room();
        let roll = self.rng.u32(0..100);
        match roll {
            0..=39 => {
                self.next_id += 1;
                let id = self.next_id;
                let members = self.open_members(&room);
                let volatile = self.chance(25);
                let mut message = Message::json("news", json!({ "id": id }));
                message.volatile = volatile;
                let mut target = Target::room("/", room.as_str());
                // Sometimes all but one member, as a chat relays someone's message.
                let left_out = (self.chance(20) && !members.is_empty())
                    .then(|| members[self.rng.usize(0..members.len())]);
                target.except = left_out;
                // An application publish waits for room (Handle::publish): here, it is
                // skipped while a member is behind.
                if !volatile && !self.hub.can_take(&target) {
                    return self.drain();
                }
                let d = self
                    .hub
                    .publish(self.now, target, message)
                    .map_err(|e| e.to_string())?;
                for conn in members {
                    if d.disconnected.contains(&conn)
                        || d.refused.contains(&conn)
                        || Some(conn) == left_out
                    {
                        continue;
                    }
                    if volatile {
                        self.model.expect_volatile(conn, id);
                    } else {
                        self.model.expect(conn, id);
                    }
                }
            }
            40..=42 => {
                self.next_id += 1;
                let id = self.next_id;
                let open: Vec<ConnId> = self
                    .owner
                    .keys()
                    .copied()
                    .filter(|&c| self.hub.is_connected(c))
                    .collect();
                let message = Message::json("news", json!({ "id": id }));
                if !self.hub.can_take(&Target::all()) {
                    return self.drain();
                }
                let d = self
                    .hub
                    .publish(self.now, Target::all(), message)
                    .map_err(|e| e.to_string())?;
                for conn in open {
                    if !d.disconnected.contains(&conn) && !d.refused.contains(&conn) {
                        self.model.expect(conn, id);
                    }
                }
            }
            43..=49 => {
                let open: Vec<ConnId> = self
                    .clients
                    .iter()
                    .filter_map(|c| c.conn)
                    .filter(|&c| self.hub.is_connected(c))
                    .collect();
                if !open.is_empty() {
                    let conn = open[self.rng.usize(0..open.len())];
                    let message = Message::json("question", json!({"q": roll}));
                    if !self.hub.can_take(&Target::conn(conn)) {
                        return self.drain();
                    }
                    if let Ok(ack) = self.hub.emit_with_ack(self.now, conn, message, None) {
                        self.model
                            .ack_asked(conn, ack, self.now + self.cfg.hub.ack_timeout);
                    }
                }
            }
            50..=54 => {
                self.next_id += 1;
                let id = self.next_id;
                let members = self.open_members(&room);
                let message = Message::json("poll", json!({ "id": id }));
                let target = Target::room("/", room.as_str());
                if !self.hub.can_take(&target) {
                    return self.drain();
                }
                let (ack, d) = self
                    .hub
                    .publish_with_ack(self.now, target, message, None)
                    .map_err(|e| e.to_string())?;
                for conn in members {
                    if !d.disconnected.contains(&conn) && !d.refused.contains(&conn) {
                        self.model.expect(conn, id);
                        self.model
                            .ack_asked(conn, ack, self.now + self.cfg.hub.ack_timeout);
                    }
                }
            }
            55..=69 => {
                self.next_id += 1;
                let item = self.next_id;
                let ident = if self.chance(50) { "x" } else { "y" };
                let ttl = Duration::from_millis(self.rng.u64(10..=200));
                let target = Target::room("/", room.as_str());
                self.hub
                    .publish_batched(self.now, target, ident, "cursor", json!(item), ttl)
                    .map_err(|e| e.to_string())?;
                self.model.batch_item(
                    &room,
                    ident,
                    item,
                    self.now,
                    ttl,
                    self.cfg.hub.max_batch_items,
                );
            }
            70..=74 => {
                let ident = if self.chance(50) { "x" } else { "y" };
                let found = self
                    .hub
                    .cancel_batch(&Target::room("/", room.as_str()), ident);
                self.model.batch_cancelled(&room, ident, found, self.now)?;
            }
            75..=84 => {
                let c = self.rng.usize(0..self.clients.len());
                if let Some(conn) = self.clients[c].conn {
                    if self.chance(50) {
                        let _ = self.hub.join(conn, &room);
                    } else {
                        let _ = self.hub.leave(conn, &room);
                    }
                }
            }
            _ => {}
        }
        self.drain()
    }

    /// Members of `room` that are open, so a publish now is owed to them.
    fn open_members(&self, room: &str) -> Vec<ConnId> {
        self.hub
            .members("/", room)
            .into_iter()
            .filter(|&c| self.hub.is_connected(c))
            .collect()
    }

    /// Shuts the hub down (the first call counts) and tells the model.
    fn shutdown(&mut self) {
        self.shutdown_at.get_or_insert(self.now);
        self.hub.shutdown(self.now);
        self.model.batches_flushed();
    }

    /// Pulls every output of the hub and acts on it. Odd seeds take frames a connection at a
    /// time (`poll_transmits`), as tidings-net does; even seeds one by one.
    fn drain(&mut self) -> Result<(), String> {
        loop {
            if self.seed % 2 == 1 {
                let mut frames = Vec::new();
                if let Some(conn) = self.hub.poll_transmits(&mut frames) {
                    for frame in frames.into_iter().flatten() {
                        (0u8, conn, frame.as_text(), frame.len()).hash(&mut self.trace);
                        self.send_down(conn, Down::Frame(frame));
                    }
                    continue;
                }
            }
            let Some(output) = self.hub.poll_output() else {
                break;
            };
            match output {
                Output::Transmit { conn, frame } => {
                    (0u8, conn, frame.as_text(), frame.len()).hash(&mut self.trace);
                    self.send_down(conn, Down::Frame(frame));
                }
                Output::Close { conn, code, .. } => {
                    (1u8, conn, code).hash(&mut self.trace);
                    self.paused.remove(&conn); // what waited in its socket is never read
                    let grace = self.cfg.hub.close_grace;
                    if code == CloseCode::GOING_AWAY
                        && self.shutdown_at.is_some_and(|t| self.now >= t + grace)
                    {
                        self.cut.insert(conn);
                    }
                    let current = self
                        .owner
                        .get(&conn)
                        .is_some_and(|&c| self.clients[c].conn == Some(conn));
                    if current {
                        self.send_down(conn, Down::Close(code));
                    } else {
                        // Nobody reads an abandoned socket: what it was owed is moot.
                        self.owner.remove(&conn);
                        self.model.closed(conn, code, true)?;
                    }
                }
                Output::Event(event) => {
                    let event = *event;
                    (2u8, format!("{event:?}")).hash(&mut self.trace);
                    match event {
                        Event::Ack { conn, ack, .. } => self.model.ack_resolved(conn, ack)?,
                        Event::Published { data, delivery, .. } => {
                            if let Some(id) = data.as_json().and_then(|v| v["id"].as_u64()) {
                                for &conn in &delivery.refused {
                                    self.model.refused(conn, id);
                                }
                            }
                        }
                        Event::ShutdownComplete => self.shutdown_complete = true,
                        Event::Message { conn, data, .. }
                            if self.owner.get(&conn).is_some_and(|&c| self.clients[c].raw) =>
                        {
                            self.raw_message(conn, &data)?;
                        }
                        Event::Message {
                            conn,
                            ack: Some(ack),
                            ..
                        } => {
                            // The application answers most, fails some, forgets the rest
                            // (the answer deadline answers those).
                            let _ = match self.rng.u32(0..10) {
                                0..=5 => {
                                    self.hub.reply_ack(self.now, conn, ack, json!("ok").into())
                                }
                                6..=7 => {
                                    let now = self.now;
                                    self.hub.answer_error(
                                        now,
                                        conn,
                                        None,
                                        Some(ack),
                                        "no",
                                        "refused",
                                    )
                                }
                                _ => Ok(()),
                            };
                        }
                        _ => {}
                    }
                }
                Output::PauseReading { conn } => {
                    (3u8, conn).hash(&mut self.trace);
                    self.paused.entry(conn).or_default();
                }
                Output::ResumeReading { conn } => {
                    (4u8, conn).hash(&mut self.trace);
                    // Read what waited, in order, unless a frame of it pauses the reading again.
                    self.model.heard(conn, self.now);
                    let mut held = self.paused.remove(&conn).unwrap_or_default();
                    while !self.paused.contains_key(&conn) {
                        let Some(packet) = held.pop_front() else {
                            break;
                        };
                        self.deliver(packet)?;
                    }
                    if let Some(still) = self.paused.get_mut(&conn) {
                        held.append(still);
                        *still = held;
                    }
                }
                Output::Cluster(_) | Output::Fetch(_) => {}
            }
        }
        Ok(())
    }

    /// Puts a frame or close on the wire to the client holding `conn`.
    fn send_down(&mut self, conn: ConnId, what: Down) {
        let Some(&c) = self.owner.get(&conn) else {
            return;
        };
        if self.clients[c].conn != Some(conn) {
            return; // an abandoned socket: the write never completes
        }
        let latency = self.latency();
        let client = &self.clients[c];
        let at = (self.now + latency)
            .max(client.down_free)
            .max(client.stall_until);
        self.clients[c].down_free = at;
        self.schedule(
            at,
            Packet::Down {
                client: c,
                conn,
                what,
            },
        );
    }

    fn deliver(&mut self, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::Up { conn, .. } if self.paused.contains_key(&conn) => {
                if let Some(held) = self.paused.get_mut(&conn) {
                    held.push_back(packet);
                }
                return Ok(());
            }
            Packet::Up {
                conn,
                frame,
                publish,
            } => {
                if self.hub.queue_depth(conn).is_some() {
                    self.model.heard(conn, self.now);
                }
                // A client publish reaches the room's open members at this instant if the
                // sender is one of them (a member it overflows is closed, and the close check
                // then allows the loss).
                if let Some((room, id)) = publish {
                    if self.hub.is_connected(conn) && self.hub.in_room(conn, &room) {
                        for member in self.open_members(&room) {
                            self.model.expect(member, id);
                        }
                    }
                }
                self.hub.handle(self.now, Input::Frame { conn, frame });
            }
            Packet::Gone { conn, transport } => {
                let input = if transport {
                    Input::TransportError {
                        conn,
                        error: "connection reset".into(),
                    }
                } else {
                    Input::PeerClosed {
                        conn,
                        code: Some(CloseCode::NORMAL),
                        reason: "bye".into(),
                    }
                };
                self.hub.handle(self.now, input);
            }
            Packet::Down {
                client: c,
                conn,
                what,
            } => {
                if self.clients[c].conn != Some(conn) {
                    return Ok(()); // the client dropped this socket
                }
                match self.clients[c].mode {
                    Mode::Slow => self.clients[c].unread.push_back(what),
                    Mode::Reading => self.read(c, conn, what)?,
                }
            }
        }
        self.drain()
    }

    /// A slow client reads everything that waited.
    fn catch_up(&mut self, c: usize) -> Result<(), String> {
        self.clients[c].mode = Mode::Reading;
        while let Some(what) = self.clients[c].unread.pop_front() {
            let Some(conn) = self.clients[c].conn else {
                break;
            };
            self.read(c, conn, what)?;
            self.drain()?;
        }
        Ok(())
    }

    /// Client `c` reads one frame or close of `conn`; a frame read is a write completed.
    fn read(&mut self, c: usize, conn: ConnId, what: Down) -> Result<(), String> {
        let frame = match what {
            Down::Close(code) => {
                if code == CloseCode::SLOW_CONSUMER && !self.clients[c].lagged && self.fast_link() {
                    return Err(format!(
                        "{conn:?} read all the while, yet was cut as a slow consumer"
                    ));
                }
                let lenient = self.clients[c].lagged || self.cut.remove(&conn);
                self.clients[c].conn = None;
                self.clients[c].unread.clear();
                self.owner.remove(&conn);
                return self.model.closed(conn, code, lenient);
            }
            Down::Frame(frame) => frame,
        };
        self.hub
            .handle(self.now, Input::Written { conn, frames: 1 });
        match &frame {
            Frame::Ping(payload) => self.send_up(c, Frame::Pong(payload.clone())),
            Frame::Text(text) if self.clients[c].raw => {
                // Bare payloads: a publication's data, or a JSON batch's items.
                let value: Value = serde_json::from_str(text.as_str())
                    .map_err(|e| format!("{conn:?} (raw) got a frame that is not JSON: {e}"))?;
                match &value {
                    Value::Object(o) if !o.contains_key("type") => {
                        if let Some(id) = value["id"].as_u64() {
                            self.model.received(conn, id)?;
                        }
                    }
                    Value::Array(items) => {
                        let items: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
                        self.model.batch_received(conn, &items)?;
                    }
                    _ => return Err(format!("{conn:?} (raw) got an envelope: {value}")),
                }
            }
            Frame::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str())
                    .map_err(|e| format!("{conn:?} got a frame that is not JSON: {e}"))?;
                let answered = match value["type"].as_str() {
                    Some("ack") => value["ack"].as_u64(),
                    Some("error") => value["ack"].as_u64(),
                    _ => None,
                };
                if let Some(ack) = answered {
                    if !self.clients[c].asked.remove(&ack) {
                        return Err(format!(
                            "{conn:?} got an answer to ack {ack}, which it did not ask or \
                             was answered already: {value}"
                        ));
                    }
                }
                let channel = value["channel"].as_str().map(str::to_owned);
                let mut replayed = false;
                match (value["type"].as_str(), channel, value["offset"].as_u64()) {
                    (Some("subscribed"), Some(channel), Some(offset)) => {
                        self.subscribed(c, conn, &channel, offset, &value)?;
                    }
                    (Some("error"), Some(channel), _) => {
                        // A refused subscribe (limits) answers a recovery too.
                        self.clients[c].recovering.remove(&channel);
                    }
                    (Some("unsubscribed"), Some(channel), _) => {
                        let client = &mut self.clients[c];
                        client.next_offset.remove(&channel);
                        client.positions.remove(&channel);
                        client.replay_until.remove(&channel);
                    }
                    (Some("event"), Some(channel), Some(offset)) => {
                        let epoch = value["epoch"].as_u64().unwrap_or(u64::MAX);
                        let client = &mut self.clients[c];
                        let next = client.next_offset.get_mut(&channel);
                        let Some(next) = next else {
                            return Err(format!("{conn:?} got {channel} before subscribed"));
                        };
                        if offset != *next {
                            return Err(format!(
                                "{conn:?} got offset {offset} of {channel} where {next} was due"
                            ));
                        }
                        *next += 1;
                        client
                            .positions
                            .insert(channel.clone(), (epoch, offset + 1));
                        replayed = client
                            .replay_until
                            .get(&channel)
                            .is_some_and(|&until| offset < until);
                        if let Some(id) = value["data"]["id"].as_u64() {
                            let seen = self.stream.entry((channel.clone(), epoch, offset));
                            let first = *seen.or_insert(id);
                            if first != id {
                                return Err(format!(
                                    "{conn:?} got publication {id} as offset {offset} of \
                                     {channel} (epoch {epoch}), which carried {first}"
                                ));
                            }
                        }
                    }
                    _ => {}
                }
                match value["type"].as_str() {
                    Some("event") => {
                        // Room publishes and broadcasts carry an id; direct questions do not.
                        // A replay's were owed to the connection that missed them.
                        if let (Some(id), false) = (value["data"]["id"].as_u64(), replayed) {
                            self.model.received(conn, id)?;
                        }
                        if let Some(ack) = value["ack"].as_u64() {
                            if !self.cfg.faults || self.chance(80) {
                                self.send_text(
                                    c,
                                    json!({"type": "ack", "ack": ack, "data": "yes"}),
                                );
                            }
                        }
                    }
                    Some("batch") => {
                        let items: Vec<u64> = value["messages"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .collect();
                        self.model.batch_received(conn, &items)?;
                    }
                    _ => {}
                }
            }
            Frame::Binary(_) | Frame::Pong(_) => {}
        }
        Ok(())
    }

    /// A `subscribed` for `channel` at `offset`: live from there, or, if it recovered, the
    /// replay from the position the client asked for comes first.
    fn subscribed(
        &mut self,
        c: usize,
        conn: ConnId,
        channel: &str,
        offset: u64,
        value: &Value,
    ) -> Result<(), String> {
        let epoch = value["epoch"].as_u64().unwrap_or(u64::MAX);
        let client = &mut self.clients[c];
        // The application's joins answer no request of the client's.
        let asked = match value["server"].as_bool() {
            Some(true) => None,
            _ => client.recovering.remove(channel),
        };
        match (asked, value["recovered"].as_bool()) {
            (Some(since), Some(true)) => {
                if since > offset {
                    return Err(format!(
                        "{conn:?} recovered {channel} from {since}, past its live offset {offset}"
                    ));
                }
                self.recovered += 1;
                client.next_offset.insert(channel.to_owned(), since);
                client.replay_until.insert(channel.to_owned(), offset);
                // A replay deeper than its queue leaves room for batches fills it through no
                // fault of the reader: a batch (which does not wait) may then find it at twice
                // its bound and cut it (README, when 4000 happens, case 3).
                let room_for_batches = 2 * self.cfg.rooms.len();
                let replay = usize::try_from(offset - since).unwrap_or(usize::MAX);
                if replay + room_for_batches > self.cfg.hub.max_queue_frames {
                    client.lagged = true;
                }
            }
            (Some(_), Some(false)) => {
                if value["reason"].as_str().is_none() {
                    return Err(format!(
                        "{conn:?} was not recovered in {channel}, without a reason"
                    ));
                }
                self.not_recovered += 1;
                client.next_offset.insert(channel.to_owned(), offset);
                client.positions.insert(channel.to_owned(), (epoch, offset));
            }
            (Some(_), None) => {
                return Err(format!(
                    "{conn:?} asked to recover {channel}; no answer said whether"
                ));
            }
            (None, recovered) => {
                if recovered.is_some() {
                    return Err(format!(
                        "{conn:?} was told of a recovery it did not ask for"
                    ));
                }
                client.next_offset.insert(channel.to_owned(), offset);
                client.positions.insert(channel.to_owned(), (epoch, offset));
            }
        }
        Ok(())
    }

    /// Whether a reader that never lags can keep up with what the simulated server sends
    /// without waiting (batches; its publishes wait for room): its link carries
    /// `write_window` frames per round trip at the worst latency, at least 40 frames a
    /// second (the default configuration's carries 50), and its queue's bound holds the
    /// batches of every room flushing at once, twice over (both idents). On a slower link
    /// or a smaller bound (a fuzzer's window of 1 at 180 ms, or a bound of 2 frames) those
    /// sources outrun a reader that reads everything, and cutting it as slow is the hub's
    /// job.
    fn fast_link(&self) -> bool {
        let round_trip = 2.0 * self.cfg.latency.1.as_secs_f64();
        let batches_at_once = 2 * self.cfg.rooms.len();
        self.cfg.hub.write_window as f64 >= 40.0 * round_trip
            && self.cfg.hub.max_queue_frames >= 2 * batches_at_once
    }

    /// Invariants that hold at any instant.
    fn check(&mut self) -> Result<(), String> {
        // The hub does not read a paused client, so its silence starts when reading resumes.
        for &conn in self.paused.keys() {
            self.model.heard(conn, self.now);
        }
        let hub = &self.hub;
        self.model
            .check_deadlines(self.now, self.cfg.hub.silence_limit(None), |c| {
                hub.is_connected(c)
            })?;
        for (room, ident, deadline) in self.model.due_batches(self.now) {
            if self
                .hub
                .batch_pending(&Target::room("/", room.as_str()), &ident)
            {
                return Err(format!(
                    "batch ({room}, {ident}) still pending {:?} after its TTL",
                    self.now - deadline
                ));
            }
        }
        // Sources that cannot wait fill a queue to twice its bound; a publishing client adds
        // at most one frame more before it is paused; each request the client made that
        // is not answered yet may still be answered past the bound (by the application, or
        // by its deadline), as answers are never dropped; and a recovery's replay, an answer
        // too, holds up to its channel's history.
        let cfg = &self.cfg.hub;
        for (&conn, &c) in &self.owner {
            let client = &self.clients[c];
            let replaying = client.replay_until.iter().filter(|(channel, &until)| {
                client
                    .next_offset
                    .get(*channel)
                    .is_some_and(|&next| next < until)
            });
            let replays: usize = client
                .recovering
                .keys()
                .chain(replaying.map(|(channel, _)| channel))
                .filter_map(|channel| cfg.history_of(channel))
                .map(|h| h.max_len)
                .sum();
            let slack = self.clients.len() + client.asked.len() + replays;
            if let Some(d) = self.hub.queue_depth(conn) {
                let frames_ok = d.frames <= 2 * cfg.max_queue_frames + slack;
                let bytes_ok = d.bytes <= 2 * cfg.max_queue_bytes + slack * cfg.max_message_size
                    || d.frames <= 1;
                if !frames_ok || !bytes_ok {
                    return Err(format!("{conn:?} queue {d:?} exceeds its bounds"));
                }
            }
        }
        Ok(())
    }

    /// Faults stop; everyone reads; the network and timers run until nothing is owed.
    fn settle(&mut self) -> Result<(), Violation> {
        self.cfg.faults = false;
        for c in 0..self.clients.len() {
            self.clients[c].stall_until = self.now;
            if self.clients[c].mode == Mode::Slow {
                self.catch_up(c).map_err(|m| self.violation(m))?;
            }
        }
        let cfg = &self.cfg.hub;
        // A full queue drains a write window per round trip: on a slow link with a small
        // window, an answer queued behind it takes that long to arrive.
        let windows = 2 * cfg.max_queue_frames / cfg.write_window.max(1) + 1;
        let drain = self.cfg.latency.1 * 2 * u32::try_from(windows).unwrap_or(u32::MAX);
        let settle = cfg.ack_timeout.max(cfg.answer_timeout)
            + cfg.close_grace
            + cfg.silence_limit(None).unwrap_or_default()
            + drain
            + Duration::from_secs(1);
        self.drive(self.now + settle)?;
        for c in 0..self.clients.len() {
            if let Some(conn) = self.clients[c]
                .conn
                .filter(|&conn| self.hub.is_connected(conn))
            {
                self.model.settled(conn).map_err(|m| self.violation(m))?;
                if let Some(ack) = self.clients[c].asked.first() {
                    return Err(
                        self.violation(format!("{conn:?}'s ack request {ack} was never answered"))
                    );
                }
            }
        }
        if self.model.pending_acks() > 0 {
            return Err(self.violation(format!(
                "{} acks still pending after settling",
                self.model.pending_acks()
            )));
        }
        Ok(())
    }

    /// Shuts the hub down and checks that every connection closed and every table emptied.
    fn finish(&mut self) -> Result<(), Violation> {
        self.shutdown();
        self.drain().map_err(|m| self.violation(m))?;
        let grace = self.cfg.hub.close_grace + self.cfg.latency.1 * 4 + Duration::from_millis(100);
        self.drive(self.now + grace)?;
        if !self.shutdown_complete {
            return Err(self.violation(format!("shutdown did not complete within {grace:?}")));
        }
        let left = self.hub.footprint();
        let empty = Footprint {
            namespaces: 1,
            ..Footprint::default()
        };
        if left != empty {
            return Err(self.violation(format!("tables not empty after shutdown: {left:?}")));
        }
        Ok(())
    }
}
