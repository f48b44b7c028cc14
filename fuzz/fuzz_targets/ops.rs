//! Arbitrary sequences of hub operations with time deltas: client frames (structured and raw),
//! writes completing or not, drops, server publishes, acks, batches, joins, closes, shutdown,
//! recoveries and history requests (rooms `a` and `b` keep history, `c` none), on
//! connections of both wire protocols (`tidings.v1` and raw), and pings answered or not.
//! Checked after every operation: each ack and each connection ends once, queues stay within
//! their bounds, `poll_timeout` is never in the past; at the end every table is empty.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tidings_core::{
    AckId, CloseCode, Config, ConnId, ConnectionInfo, Event, Frame, History, Hub, Input, Message,
    Output, Protocol, Target,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Open {
        name: Option<u8>,
        other_namespace: bool,
        /// Speaks raw (no envelope) rather than `tidings.v1`.
        raw: bool,
    },
    Subscribe {
        conn: u8,
        room: u8,
    },
    Unsubscribe {
        conn: u8,
        room: u8,
    },
    Recover {
        conn: u8,
        room: u8,
        since: u8,
        epoch: u8,
    },
    History {
        conn: u8,
        room: u8,
        since: Option<u8>,
        limit: Option<u8>,
    },
    ClientEvent {
        conn: u8,
        ack: Option<u8>,
    },
    ClientAck {
        conn: u8,
        ack: u8,
    },
    Raw {
        conn: u8,
        text: String,
    },
    Binary {
        conn: u8,
        bytes: Vec<u8>,
    },
    Written {
        conn: u8,
        frames: u8,
    },
    PeerClosed {
        conn: u8,
    },
    TransportError {
        conn: u8,
    },
    Advance {
        ms: u16,
    },
    Publish {
        room: u8,
        volatile: bool,
    },
    EmitAck {
        conn: u8,
    },
    PublishAck {
        room: u8,
    },
    Batch {
        room: u8,
        ident: bool,
        ttl_ms: u8,
        text: bool,
    },
    Cancel {
        room: u8,
        ident: bool,
    },
    Join {
        conn: u8,
        room: u8,
    },
    Leave {
        conn: u8,
        room: u8,
    },
    Close {
        conn: u8,
    },
    ReplyAck {
        conn: u8,
        ack: u8,
    },
    /// `Hub::ping`, answered at once by the pong that echoes it, or left to time out.
    Ping {
        conn: u8,
        answer: bool,
    },
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Case {
    max_queue_frames: u8,
    write_window: u8,
    /// Drain frames a connection at a time (`poll_transmits`) rather than one by one.
    batched: bool,
    slow_consumer_ms: u16,
    ops: Vec<Op>,
}

struct State {
    hub: Hub,
    now: Instant,
    conns: Vec<ConnId>,
    /// Frames handed out and not yet reported written, per connection.
    unwritten: BTreeMap<ConnId, usize>,
    acks: BTreeSet<(ConnId, AckId)>,
    ended: BTreeSet<ConnId>,
    client_acks: BTreeMap<ConnId, Vec<u64>>,
    /// Connections the hub asked not to read: their frames stay in the socket (dropped here).
    paused: BTreeSet<ConnId>,
    batched: bool,
    /// Frames each connection's recoveries and history requests may have queued (a replay
    /// is an answer: it may go past the bound, up to the history kept).
    replays: BTreeMap<ConnId, usize>,
}

/// The most publications a room keeps here.
const MAX_KEPT: usize = 8;

const ROOMS: [&str; 3] = ["a", "b", "c"];

impl State {
    fn conn(&self, i: u8) -> Option<ConnId> {
        (!self.conns.is_empty()).then(|| self.conns[i as usize % self.conns.len()])
    }

    fn drain(&mut self) {
        loop {
            let mut frames = Vec::new();
            if self.batched {
                if let Some(conn) = self.hub.poll_transmits(&mut frames) {
                    let count: usize = frames.iter().map(|chunk| chunk.len()).sum();
                    assert!(
                        count > 0 && frames.iter().all(|chunk| !chunk.is_empty()),
                        "a connection with nothing to send"
                    );
                    *self.unwritten.entry(conn).or_default() += count;
                    continue;
                }
            }
            let Some(out) = self.hub.poll_output() else {
                break;
            };
            let event = match out {
                Output::Transmit { conn, .. } => {
                    *self.unwritten.entry(conn).or_default() += 1;
                    continue;
                }
                Output::PauseReading { conn } => {
                    assert!(self.paused.insert(conn), "{conn:?} paused twice");
                    continue;
                }
                Output::ResumeReading { conn } => {
                    assert!(self.paused.remove(&conn), "{conn:?} resumed, never paused");
                    continue;
                }
                Output::Event(event) => *event,
                _ => continue,
            };
            match event {
                Event::Ack { conn, ack, .. } => {
                    assert!(
                        self.acks.remove(&(conn, ack)),
                        "ack {ack} of {conn:?} ended twice or was never asked"
                    );
                }
                Event::Disconnected { conn, .. } => {
                    assert!(self.ended.insert(conn), "{conn:?} disconnected twice");
                    self.unwritten.remove(&conn);
                    self.paused.remove(&conn);
                }
                Event::Message {
                    conn,
                    ack: Some(ack),
                    ..
                } => {
                    self.client_acks.entry(conn).or_default().push(ack);
                }
                _ => {}
            }
        }
        // Sources that cannot wait fill a queue to twice its bound; a client, paused as soon
        // as it pushes a queue past its bound, adds at most what one operation sent; and each
        // of its requests not yet answered may still be answered past the bound (answers are
        // never dropped).
        let config = self.hub.config();
        for &conn in &self.conns {
            let slack = 8
                + self.client_acks.get(&conn).map_or(0, Vec::len)
                + self.replays.get(&conn).copied().unwrap_or(0);
            if let Some(d) = self.hub.queue_depth(conn) {
                assert!(
                    d.frames <= 2 * config.max_queue_frames + slack,
                    "{conn:?} {d:?}"
                );
                assert!(
                    d.bytes <= 2 * config.max_queue_bytes + slack * 1024 || d.frames <= 1,
                    "{conn:?} {d:?}"
                );
            }
        }
    }

    /// A frame from client `conn`, unless the hub paused its reading (then it stays unread).
    fn frame(&mut self, conn: ConnId, frame: Frame) {
        if !self.paused.contains(&conn) {
            self.hub.handle(self.now, Input::Frame { conn, frame });
        }
    }

    fn text(&mut self, conn: ConnId, value: serde_json::Value) {
        self.frame(conn, Frame::text(value.to_string()));
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Open {
                name,
                other_namespace,
                raw,
            } => {
                let mut info = ConnectionInfo::new("/ws");
                if raw {
                    info = info.protocol(Protocol::Raw);
                }
                if let Some(n) = name {
                    info = info.name(format!("n{}", n % 4));
                }
                if other_namespace {
                    info = info.namespace("/other");
                }
                if let Ok(conn) = self.hub.open(now, info) {
                    self.conns.push(conn);
                }
            }
            Op::Subscribe { conn, room } => {
                if let Some(c) = self.conn(conn) {
                    self.text(
                        c,
                        json!({"type": "subscribe", "channel": ROOMS[room as usize % 3]}),
                    );
                }
            }
            Op::Unsubscribe { conn, room } => {
                if let Some(c) = self.conn(conn) {
                    self.text(
                        c,
                        json!({"type": "unsubscribe", "channel": ROOMS[room as usize % 3]}),
                    );
                }
            }
            Op::Recover {
                conn,
                room,
                since,
                epoch,
            } => {
                if let Some(c) = self.conn(conn) {
                    *self.replays.entry(c).or_default() += MAX_KEPT;
                    let channel = ROOMS[room as usize % 3];
                    let ask = json!({"type": "subscribe", "channel": channel, "since": since, "epoch": epoch % 4});
                    self.text(c, ask);
                }
            }
            Op::History {
                conn,
                room,
                since,
                limit,
            } => {
                if let Some(c) = self.conn(conn) {
                    *self.replays.entry(c).or_default() += 1;
                    let channel = ROOMS[room as usize % 3];
                    let ask = match since {
                        Some(since) => {
                            json!({"type": "history", "channel": channel, "since": since, "epoch": 1, "limit": limit})
                        }
                        None => json!({"type": "history", "channel": channel, "limit": limit}),
                    };
                    self.text(c, ask);
                }
            }
            Op::ClientEvent { conn, ack } => {
                if let Some(c) = self.conn(conn) {
                    self.text(c, json!({"type": "event", "event": "e", "ack": ack}));
                }
            }
            Op::ClientAck { conn, ack } => {
                if let Some(c) = self.conn(conn) {
                    self.text(c, json!({"type": "ack", "ack": ack}));
                }
            }
            Op::Raw { conn, text } => {
                if let Some(c) = self.conn(conn) {
                    self.frame(c, Frame::text(text));
                }
            }
            Op::Binary { conn, bytes } => {
                if let Some(c) = self.conn(conn) {
                    self.frame(c, Frame::Binary(Bytes::from(bytes)));
                }
            }
            Op::Written { conn, frames } => {
                if let Some(c) = self.conn(conn) {
                    let pending = self.unwritten.entry(c).or_default();
                    let n = (frames as usize).min(*pending);
                    *pending -= n;
                    self.hub.handle(now, Input::Written { conn: c, frames: n });
                }
            }
            Op::PeerClosed { conn } => {
                if let Some(c) = self.conn(conn) {
                    self.hub.handle(
                        now,
                        Input::PeerClosed {
                            conn: c,
                            code: Some(CloseCode::NORMAL),
                            reason: String::new(),
                        },
                    );
                }
            }
            Op::TransportError { conn } => {
                if let Some(c) = self.conn(conn) {
                    self.hub.handle(
                        now,
                        Input::TransportError {
                            conn: c,
                            error: "reset".into(),
                        },
                    );
                }
            }
            Op::Advance { ms } => {
                let end = now + Duration::from_millis(u64::from(ms));
                while let Some(at) = self.hub.poll_timeout().filter(|&at| at <= end) {
                    self.now = self.now.max(at);
                    self.hub.handle_timeout(self.now);
                    self.drain();
                    assert!(
                        self.hub.poll_timeout().map_or(true, |t| t > self.now),
                        "poll_timeout in the past"
                    );
                }
                self.now = end;
            }
            Op::Publish { room, volatile } => {
                let mut m = Message::text("news", "x");
                m.volatile = volatile;
                let _ = self
                    .hub
                    .publish(now, Target::room("/", ROOMS[room as usize % 3]), m);
            }
            Op::Ping { conn, answer } => {
                if let Some(c) = self.conn(conn) {
                    let timeout = Some(Duration::from_millis(300));
                    if let Ok(ping) = self.hub.ping(now, c, timeout) {
                        self.acks.insert((c, ping));
                        if answer {
                            let payload = Bytes::copy_from_slice(&ping.0.to_be_bytes());
                            self.frame(c, Frame::Pong(payload));
                        }
                    }
                }
            }
            Op::EmitAck { conn } => {
                if let Some(c) = self.conn(conn) {
                    if let Ok(ack) = self.hub.emit_with_ack(
                        now,
                        c,
                        Message::text("q", "?"),
                        Some(Duration::from_millis(300)),
                    ) {
                        self.acks.insert((c, ack));
                    }
                }
            }
            Op::PublishAck { room } => {
                let room = ROOMS[room as usize % 3];
                let open: Vec<ConnId> = self
                    .hub
                    .members("/", room)
                    .into_iter()
                    .filter(|&c| self.hub.is_connected(c))
                    .collect();
                if let Ok((ack, d)) = self.hub.publish_with_ack(
                    now,
                    Target::room("/", room),
                    Message::text("q", "?"),
                    None,
                ) {
                    for c in open {
                        if !d.refused.contains(&c) && !d.disconnected.contains(&c) {
                            self.acks.insert((c, ack));
                        }
                    }
                }
            }
            Op::Batch {
                room,
                ident,
                ttl_ms,
                text,
            } => {
                let target = Target::room("/", ROOMS[room as usize % 3]);
                let ident = if ident { "x" } else { "y" };
                let ttl = Duration::from_millis(u64::from(ttl_ms));
                let _ = if text {
                    self.hub
                        .publish_batched_text(now, target, ident, "lines", "line", ttl)
                } else {
                    self.hub
                        .publish_batched(now, target, ident, "cursor", json!(1), ttl)
                };
            }
            Op::Cancel { room, ident } => {
                let _ = self.hub.cancel_batch(
                    &Target::room("/", ROOMS[room as usize % 3]),
                    if ident { "x" } else { "y" },
                );
            }
            Op::Join { conn, room } => {
                if let Some(c) = self.conn(conn) {
                    let _ = self.hub.join(c, ROOMS[room as usize % 3]);
                }
            }
            Op::Leave { conn, room } => {
                if let Some(c) = self.conn(conn) {
                    let _ = self.hub.leave(c, ROOMS[room as usize % 3]);
                }
            }
            Op::Close { conn } => {
                if let Some(c) = self.conn(conn) {
                    let _ = self.hub.close(now, c, CloseCode::NORMAL, "bye");
                }
            }
            Op::ReplyAck { conn, ack } => {
                if let Some(c) = self.conn(conn) {
                    let asked = self.client_acks.entry(c).or_default();
                    let pick =
                        (!asked.is_empty()).then(|| asked.remove(ack as usize % asked.len()));
                    let id = pick.unwrap_or(u64::from(ack));
                    let answered = self.hub.reply_ack(now, c, id, json!(null).into());
                    // Only a request the client asked is answered. (One it asked may have been
                    // answered by its deadline or refused by its connection's close: the
                    // simulation checks that each is answered exactly once.)
                    if answered.is_ok() {
                        assert!(pick.is_some(), "reply_ack({id}) = {answered:?}");
                    }
                }
            }
            Op::Shutdown => self.hub.shutdown(now),
        }
        self.drain();
    }
}

fuzz_target!(|case: Case| {
    let config = Config::default()
        .welcome(case.max_queue_frames % 2 == 0)
        .max_queue_frames(2 + case.max_queue_frames as usize % 30)
        .max_queue_bytes(4096)
        .write_window(1 + case.write_window as usize % 8)
        .ping_period(Some(Duration::from_millis(200)))
        .pong_wait(Duration::from_millis(700))
        .slow_consumer_timeout(Duration::from_millis(
            1 + u64::from(case.slow_consumer_ms % 2000),
        ))
        .max_errors(3)
        .history(
            "a",
            History::new(
                1 + case.max_queue_frames as usize % MAX_KEPT,
                Duration::from_millis(300),
            ),
        )
        .history("b", History::new(MAX_KEPT, Duration::from_secs(2)))
        .max_history_bytes(2048);
    let Ok(hub) = Hub::new(config) else { return };
    let mut state = State {
        hub,
        now: Instant::now(),
        conns: Vec::new(),
        unwritten: BTreeMap::new(),
        acks: BTreeSet::new(),
        ended: BTreeSet::new(),
        client_acks: BTreeMap::new(),
        paused: BTreeSet::new(),
        batched: case.batched,
        replays: BTreeMap::new(),
    };
    for op in case.ops.into_iter().take(500) {
        state.apply(op);
    }
    // Everyone leaves and time runs out: every table must be empty and every ack resolved.
    for c in state.conns.clone() {
        state.hub.handle(
            state.now,
            Input::PeerClosed {
                conn: c,
                code: None,
                reason: String::new(),
            },
        );
    }
    state.drain();
    state.apply(Op::Advance { ms: u16::MAX });
    assert!(state.acks.is_empty(), "unresolved acks {:?}", state.acks);
    let left = state.hub.footprint();
    assert_eq!(
        (
            left.sessions,
            left.names,
            left.rooms,
            left.timers,
            left.batches,
            left.pending_acks,
            left.pending_outputs,
            left.behind,
            left.paused,
            left.history_bytes
        ),
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        "{left:?}"
    );
});
