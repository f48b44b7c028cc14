//! The [`Hub`]: the one entry point. It owns every table (sessions, rooms, timers, batches)
//! and drives them from inputs; this file holds the drive surface (`handle`, `poll_output`,
//! `poll_timeout`, `handle_timeout`) and the read-only queries. The other files of this module
//! add the connection lifecycle, rooms, publishing and inbound protocol handling.

mod conns;
mod flow;
mod history;
mod inbound;
mod ping;
mod publish;
mod rooms;
mod sequenced;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use slab::Slab;

use crate::batch::Batches;
use crate::codec::Codec;
use crate::config::Config;
use crate::error::Error;
use crate::frame::CloseCode;
use crate::ids::ConnId;
use crate::io::{AckOutcome, Event, Initiator, Input, Output};
use crate::message::{ClusterMessage, Scope, Target};
use crate::metrics::Counters;
use crate::outbound::Chunk;
use crate::protocol::Protocol;
use crate::rooms::Registry;
use crate::session::{Fill, Session, State};
use crate::timers::{ConnTimer, TimerKey, Timers};
use crate::wire;

/// The codec of `protocol`: the one place that knows every protocol's implementation.
fn codec(protocol: Protocol) -> &'static dyn Codec {
    match protocol {
        Protocol::Tidings => &wire::Tidings,
        Protocol::Raw => &crate::raw::Raw,
    }
}

/// A connection's outbound queue, as [`Hub::queue_depth`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueDepth {
    /// Frames queued or handed to the driver and not yet written.
    pub frames: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// The size of every internal table, for leak checks: all zero (but `namespaces`, which keeps
/// `/`) once every connection is gone, every batch has flushed and every kept publication
/// has expired.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct Footprint {
    /// Open or closing connections.
    pub sessions: usize,
    /// Named connections.
    pub names: usize,
    /// Rooms.
    pub rooms: usize,
    /// Namespaces (`/` always exists).
    pub namespaces: usize,
    /// Armed timers.
    pub timers: usize,
    /// Collecting batches.
    pub batches: usize,
    /// Server→client acks pending.
    pub pending_acks: usize,
    /// Outputs not yet polled, connections with frames waiting included.
    pub pending_outputs: usize,
    /// Connections whose queue is behind.
    pub behind: usize,
    /// Connections whose reading is paused.
    pub paused: usize,
    /// Bytes of publications kept as channel history (`Config::max_history_bytes` caps it).
    pub history_bytes: usize,
    /// Questions asked of the backplane ([`Output::Fetch`]) and not yet answered.
    pub fetches: usize,
}

/// The session behind `id` in `sessions`: a lookup that borrows only the slab, so the caller
/// may use the hub's other tables (timers, counters) alongside.
#[inline]
fn session_in(sessions: &mut Slab<Session>, id: ConnId) -> Option<&mut Session> {
    sessions
        .get_mut(id.index())
        .filter(|s| s.generation == id.generation())
}

/// The sans-IO messaging hub. See the crate docs for the drive loop.
#[derive(Debug)]
pub struct Hub {
    config: Config,
    /// The latest time seen; earlier times are clamped to it.
    now: Option<Instant>,
    sessions: Slab<Session>,
    next_generation: u32,
    names: BTreeMap<String, ConnId>,
    registry: Registry,
    timers: Timers,
    batches: Batches,
    /// Connections with frames that may be handed out, round-robin.
    ready: VecDeque<ConnId>,
    /// Events, closes and cluster messages, in order.
    outputs: VecDeque<Output>,
    /// Connections whose queue is behind (see `flow.rs`).
    behind: BTreeSet<ConnId>,
    /// Clients whose reading is paused, with the room they wait on (`None`: their own queue).
    paused: Vec<(ConnId, Option<usize>)>,
    counters: Counters,
    /// What every channel's history holds together.
    kept: history::Kept,
    /// Questions for the backplane not yet answered (`sequenced.rs`).
    fetches: sequenced::Fetches,
    /// How many times the backplane's link broke (`Hub::backplane_lost`).
    links_lost: u64,
    next_ack: u64,
    shutting_down: bool,
    shutdown_reported: bool,
}

impl Hub {
    /// A hub with `config`, which must pass [`Config::validate`].
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Hub {
            registry: Registry::new(config.seed.unwrap_or(0)),
            config,
            now: None,
            sessions: Slab::new(),
            next_generation: 0,
            names: BTreeMap::new(),
            timers: Timers::default(),
            batches: Batches::default(),
            ready: VecDeque::new(),
            outputs: VecDeque::new(),
            behind: BTreeSet::new(),
            paused: Vec::new(),
            counters: Counters::default(),
            kept: history::Kept::default(),
            fetches: sequenced::Fetches::default(),
            links_lost: 0,
            next_ack: 0,
            shutting_down: false,
            shutdown_reported: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the caller's time, clamped so it never goes backwards.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        now
    }

    /// Feeds one input from the driver. Follow with [`Hub::poll_output`] until `None`.
    ///
    /// Inputs for connections the hub no longer knows are ignored: the driver may still be
    /// reading from a socket the hub has just closed.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let now = self.clock(now);
        match input {
            Input::Frame { conn, frame } => self.on_frame(now, conn, frame),
            Input::Written { conn, frames } => {
                let window = self.config.write_window;
                if let Some(s) = session_in(&mut self.sessions, conn) {
                    s.written(frames);
                    s.wake(&mut self.ready, conn, window);
                    if s.behind {
                        self.check_drained(conn, false);
                    }
                }
            }
            Input::PeerClosed { conn, code, reason } => {
                let code = code.unwrap_or(CloseCode(1005));
                self.finalize(conn, code, reason, Initiator::Peer, false);
            }
            Input::Violation { conn, code, reason } => self.close_now(conn, code, reason),
            Input::TransportError { conn, error } => self.on_transport_error(now, conn, error),
        }
    }

    /// Feeds a message that another node published (from the backplane). It is delivered to
    /// local connections and never output as [`Output::Cluster`] again.
    ///
    /// Connection ids are local to a node, so a remote message addressed to one connection is
    /// ignored and a remote `except` is dropped: neither may reach an unrelated local id.
    pub fn handle_remote(&mut self, now: Instant, message: ClusterMessage) -> Result<(), Error> {
        let now = self.clock(now);
        let local = |target: Target| match target.scope {
            Scope::Conn(_) => None,
            scope => Some(Target::from(scope)),
        };
        match message {
            ClusterMessage::Publish { target, message } => {
                let Some(target) = local(target) else {
                    return Ok(());
                };
                self.check_event_name(&message.event)?;
                self.counters.remote_publishes += 1;
                let _ = self.deliver(&target, &message, None, Fill::Overflow);
            }
            ClusterMessage::Batched {
                target,
                ident,
                event,
                item,
                ttl_ms,
            } => {
                let Some(target) = local(target) else {
                    return Ok(());
                };
                self.counters.remote_publishes += 1;
                let ttl = std::time::Duration::from_millis(ttl_ms);
                self.batch_item(now, target, &ident, &event, item, ttl, false)?;
            }
            ClusterMessage::Sequenced {
                target,
                message,
                offset,
                epoch,
            } => {
                let Some(target) = local(target) else {
                    return Ok(());
                };
                self.check_event_name(&message.event)?;
                self.counters.remote_publishes += 1;
                self.deliver_sequenced(&target, &message, offset, epoch);
            }
            // For the backplane to number: it comes back as `Sequenced`.
            ClusterMessage::Sequence { .. } => {}
        }
        Ok(())
    }

    /// The next output, or `None` when there is nothing to do until the next input or
    /// [`Hub::poll_timeout`]. Events, closes and cluster messages come first, then frames,
    /// one connection at a time in turn.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        let window = self.config.write_window;
        while let Some(conn) = self.ready.pop_front() {
            let Some(s) = session_in(&mut self.sessions, conn) else {
                continue;
            };
            s.ready = false;
            if !s.can_transmit(window) {
                continue;
            }
            let Some(frame) = s.take_next() else { continue };
            let len = frame.len() as u64;
            s.wake(&mut self.ready, conn, window);
            // The last queued frame of a closing connection: the close follows it.
            let finish = s.flushed_close();
            self.counters.frames_out += 1;
            self.counters.bytes_out += len;
            if let Some((code, reason)) = finish {
                self.finalize(conn, code, reason, Initiator::Server, true);
            }
            return Some(Output::Transmit { conn, frame });
        }
        None
    }

    /// Frames a connection at a time: moves into `chunks` every frame the next ready
    /// connection may be handed now (up to `Config::write_window` in flight), in order, and
    /// returns that connection; report them with [`Input::Written`] as they are written
    /// (counting frames, not chunks). A [`Chunk`] is one frame or a run of a room's
    /// publications that the room's other members share.
    ///
    /// It returns `None` while [`Hub::poll_output`] has an event, close or cluster message
    /// to give first, so a driver that calls this until `None`, then `poll_output` once, and
    /// repeats until both are `None`, sees outputs in the same order as with `poll_output`
    /// alone. It spares a driver that writes each connection's frames together (one channel
    /// send, one flush) an `Output` per frame.
    #[must_use]
    pub fn poll_transmits(&mut self, chunks: &mut Vec<Chunk>) -> Option<ConnId> {
        if !self.outputs.is_empty() {
            return None;
        }
        let window = self.config.write_window;
        while let Some(conn) = self.ready.pop_front() {
            let Some(s) = session_in(&mut self.sessions, conn) else {
                continue;
            };
            s.ready = false;
            let (mut count, mut bytes) = (0, 0);
            while s.can_transmit(window) {
                let Some((frames, len)) = s.take_chunk(s.sendable(window), chunks) else {
                    break;
                };
                count += frames;
                bytes += len as u64;
            }
            if count == 0 {
                continue;
            }
            // The last queued frame of a closing connection: the close follows them.
            let finish = s.flushed_close();
            self.counters.frames_out += count as u64;
            self.counters.bytes_out += bytes;
            if let Some((code, reason)) = finish {
                self.finalize(conn, code, reason, Initiator::Server, true);
            }
            return Some(conn);
        }
        None
    }

    /// When the hub next needs [`Hub::handle_timeout`], if ever. O(log n).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.kept.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer due at `now`. Calling it again with the same `now` does nothing.
    /// Follow with [`Hub::poll_output`] until `None`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        self.expire_kept(now);
        while let Some((_, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Conn(conn, which) => self.on_conn_timer(now, conn, which),
                TimerKey::Ack(conn, ack) => {
                    let Some(s) = self.session_mut(conn) else {
                        continue;
                    };
                    let ping = s.pings.remove(&ack).is_some();
                    if s.acks_out.remove(&ack).is_some() {
                        if ping {
                            self.counters.pings_timed_out += 1;
                        } else {
                            self.counters.acks_timed_out += 1;
                        }
                        self.event(Event::Ack {
                            conn,
                            ack,
                            outcome: AckOutcome::TimedOut,
                        });
                    }
                }
                TimerKey::Answer(conn, ack) => {
                    let limit = self.config.answer_timeout;
                    let Some(s) = self.session_mut(conn) else {
                        continue;
                    };
                    if s.acks_in.remove(&ack).is_some() {
                        self.counters.answers_timed_out += 1;
                        let message = format!(
                            "the application did not answer within {} ms",
                            limit.as_millis()
                        );
                        let frame = wire::encode_failed_ack(ack, "no_answer", &message);
                        self.answer(conn, frame);
                    }
                }
                TimerKey::Batch(id) => self.flush_batch(id),
            }
        }
    }

    fn on_conn_timer(&mut self, now: Instant, conn: ConnId, which: ConnTimer) {
        let ping_period = self.config.ping_period;
        let window = self.config.write_window;
        let bound = self.config.bound();
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        let silence = self.config.silence_limit(s.rule);
        s.timers[which as usize] = None; // popped already
        match which {
            ConnTimer::Ping => {
                if !s.is_open() {
                    return;
                }
                s.push_ping(bound);
                s.wake(&mut self.ready, conn, window);
                if let Some(period) = ping_period {
                    let s = &mut self.sessions[conn.index()];
                    s.set_timer(&mut self.timers, conn, ConnTimer::Ping, Some(now + period));
                }
            }
            ConnTimer::Silence => {
                let Some(limit) = silence else { return };
                if !s.is_open() {
                    return;
                }
                // A paused client is not read: its silence is the hub's doing.
                let deadline = if s.paused {
                    now + limit
                } else {
                    s.last_seen + limit
                };
                if deadline > now {
                    // Heard from since this was armed: the rearm is lazy, here, not per frame.
                    s.set_timer(&mut self.timers, conn, ConnTimer::Silence, Some(deadline));
                } else {
                    let reason = format!("no heartbeat for {} ms", limit.as_millis());
                    self.close_now(conn, CloseCode::HEARTBEAT_TIMEOUT, reason);
                }
            }
            ConnTimer::Slow => self.on_slow(conn),
            ConnTimer::Auth => {
                // `authenticate` disarms this timer, and `begin_close` leaves a closing
                // connection alone: firing means the deadline passed unauthenticated.
                let limit = self.config.auth_timeout.unwrap_or_default();
                let reason = format!("not authenticated within {} ms", limit.as_millis());
                self.begin_close(now, conn, CloseCode::AUTH_TIMEOUT, reason);
            }
            ConnTimer::Close => match s.state.clone() {
                State::Closing(closing) if closing.flush => {
                    self.finalize(conn, closing.code, closing.reason, Initiator::Server, true);
                }
                State::Closing(closing) => {
                    self.finalize(
                        conn,
                        CloseCode::ABNORMAL,
                        closing.reason,
                        Initiator::Transport,
                        true,
                    );
                }
                State::Open => {}
            },
        }
    }

    /// The session behind `id`, if it is still the same connection.
    fn session(&self, id: ConnId) -> Option<&Session> {
        self.sessions
            .get(id.index())
            .filter(|s| s.generation == id.generation())
    }

    fn session_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        session_in(&mut self.sessions, id)
    }

    fn open_session(&self, id: ConnId) -> Result<&Session, Error> {
        match self.session(id) {
            Some(s) if s.is_open() => Ok(s),
            Some(_) => Err(Error::Closing(id)),
            None => Err(Error::UnknownConnection(id)),
        }
    }

    /// An open session whose protocol has the hub's own frames, for `what` needs them
    /// ("acks", "recovery").
    fn enveloped_session(&self, id: ConnId, what: &'static str) -> Result<&Session, Error> {
        let s = self.open_session(id)?;
        if codec(s.protocol).envelopes() {
            Ok(s)
        } else {
            Err(Error::NotInProtocol {
                conn: id,
                protocol: s.protocol,
                what,
            })
        }
    }

    fn event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(Box::new(event)));
    }

    /// Each connection's queue depth: frames queued or handed out and not yet reported
    /// written, in no particular order. O(connections), for sampling (a metrics scrape), not
    /// for every step.
    pub fn queue_depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.sessions.iter().map(|(_, s)| s.depth_frames())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.connections = self.sessions.len();
        c.rooms = self.registry.rooms.len();
        c.members = self
            .registry
            .rooms
            .iter()
            .map(|(_, r)| r.members.len())
            .sum();
        c
    }

    /// The size of every internal table.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            sessions: self.sessions.len(),
            names: self.names.len(),
            rooms: self.registry.rooms.len(),
            namespaces: self.registry.namespaces.len(),
            timers: self.timers.len(),
            batches: self.batches.len(),
            pending_acks: self.sessions.iter().map(|(_, s)| s.acks_out.len()).sum(),
            behind: self.behind.len(),
            paused: self.paused.len(),
            history_bytes: self.kept.bytes(),
            fetches: self.fetches.len(),
            pending_outputs: self.outputs.len()
                + self
                    .sessions
                    .iter()
                    .filter(|(_, s)| !s.queue_is_empty())
                    .count(),
        }
    }

    /// Whether `conn` is open (not closing, not gone).
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.session(conn).is_some_and(Session::is_open)
    }

    /// Open and closing connections.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// The connection named `name`.
    pub fn by_name(&self, name: &str) -> Option<ConnId> {
        self.names.get(name).copied()
    }

    /// Whether a connection is named `name`.
    pub fn exists(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Every connection name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.keys().map(String::as_str)
    }

    /// The request `conn` was opened with.
    pub fn info(&self, conn: ConnId) -> Option<&crate::info::ConnectionInfo> {
        self.session(conn).map(|s| &*s.info)
    }

    /// How much `conn` has queued or in flight.
    pub fn queue_depth(&self, conn: ConnId) -> Option<QueueDepth> {
        self.session(conn).map(|s| QueueDepth {
            frames: s.depth_frames(),
            bytes: s.depth_bytes(),
        })
    }

    /// A metadata value of `conn`.
    pub fn meta(&self, conn: ConnId, key: &str) -> Option<&serde_json::Value> {
        self.session(conn)?.metadata.get(key)
    }

    /// Sets a metadata value of `conn`, returning the previous one.
    pub fn set_meta(
        &mut self,
        conn: ConnId,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Result<Option<serde_json::Value>, Error> {
        let s = self
            .session_mut(conn)
            .ok_or(Error::UnknownConnection(conn))?;
        Ok(s.metadata.insert(key.into(), value))
    }

    /// Removes a metadata value of `conn`, returning it.
    pub fn remove_meta(&mut self, conn: ConnId, key: &str) -> Option<serde_json::Value> {
        self.session_mut(conn)?.metadata.remove(key)
    }
}
