//! A test driver for the hub: a virtual clock, outputs collected per connection, and writers
//! that report frames written at once unless a connection is stalled (a slow reader).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidings_core::{CloseCode, Config, ConnId, ConnectionInfo, Event, Frame, Hub, Input, Output};

pub struct Sim {
    pub hub: Hub,
    pub now: Instant,
    /// Frames each connection received, in order.
    pub frames: BTreeMap<ConnId, Vec<Frame>>,
    /// Close outputs, in order.
    pub closes: Vec<(ConnId, CloseCode, String)>,
    pub events: Vec<Event>,
    pub cluster: Vec<tidings_core::ClusterMessage>,
    /// Questions for the backplane, in order.
    pub fetches: Vec<tidings_core::Fetch>,
    /// Connections whose writer does not report frames written.
    pub stalled: BTreeSet<ConnId>,
    /// Frames handed out to stalled connections and not yet reported written.
    pub unwritten: BTreeMap<ConnId, usize>,
    /// Connections the hub asked not to read.
    pub paused: BTreeSet<ConnId>,
}

impl Sim {
    pub fn new(config: Config) -> Self {
        Sim {
            hub: Hub::new(config).expect("valid config"),
            now: Instant::now(),
            frames: BTreeMap::new(),
            closes: Vec::new(),
            events: Vec::new(),
            cluster: Vec::new(),
            fetches: Vec::new(),
            stalled: BTreeSet::new(),
            unwritten: BTreeMap::new(),
            paused: BTreeSet::new(),
        }
    }

    /// A config without welcome frames or heartbeats, so tests see only what they cause.
    pub fn quiet() -> Config {
        Config::default().welcome(false).ping_period(None)
    }

    pub fn open(&mut self, info: ConnectionInfo) -> ConnId {
        let id = self.hub.open(self.now, info).expect("open");
        self.drain();
        id
    }

    pub fn open_path(&mut self, path: &str) -> ConnId {
        self.open(ConnectionInfo::new(path))
    }

    pub fn send(&mut self, conn: ConnId, text: &str) {
        self.hub.handle(
            self.now,
            Input::Frame {
                conn,
                frame: Frame::text(text),
            },
        );
        self.drain();
    }

    pub fn send_frame(&mut self, conn: ConnId, frame: Frame) {
        self.hub.handle(self.now, Input::Frame { conn, frame });
        self.drain();
    }

    pub fn subscribe(&mut self, conn: ConnId, channel: &str) {
        self.send(
            conn,
            &format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
        );
    }

    /// Polls every output; writes are reported at once for connections not stalled.
    pub fn drain(&mut self) {
        let mut guard = 0;
        while let Some(out) = self.hub.poll_output() {
            guard += 1;
            assert!(guard < 10_000_000, "poll_output does not settle");
            match out {
                Output::Transmit { conn, frame } => {
                    self.frames.entry(conn).or_default().push(frame);
                    if self.stalled.contains(&conn) {
                        *self.unwritten.entry(conn).or_default() += 1;
                    } else {
                        self.hub
                            .handle(self.now, Input::Written { conn, frames: 1 });
                    }
                }
                Output::Close { conn, code, reason } => self.closes.push((conn, code, reason)),
                Output::Event(e) => self.events.push(*e),
                Output::Cluster(m) => self.cluster.push(*m),
                Output::Fetch(f) => self.fetches.push(*f),
                Output::PauseReading { conn } => assert!(self.paused.insert(conn), "paused twice"),
                Output::ResumeReading { conn } => assert!(self.paused.remove(&conn), "not paused"),
                _ => unreachable!("a new output kind"),
            }
        }
    }

    /// The stalled connection's writer catches up.
    pub fn unstall(&mut self, conn: ConnId) {
        self.stalled.remove(&conn);
        let n = self.unwritten.remove(&conn).unwrap_or(0);
        self.hub
            .handle(self.now, Input::Written { conn, frames: n });
        self.drain();
    }

    /// Advances the virtual clock by `d`, running every timer on the way at its own time.
    /// Bounded, as a simulation's drive must be: a deadline that does not move on after its
    /// timeout was handled (a timer that never fires, or re-arms in the past) fails the test
    /// instead of hanging it.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut last = None;
        let mut repeats = 0;
        while let Some(at) = self.hub.poll_timeout() {
            if at > end {
                break;
            }
            assert!(at >= self.now, "poll_timeout went into the past");
            repeats = if last == Some(at) { repeats + 1 } else { 0 };
            assert!(
                repeats < 10_000,
                "the deadline {at:?} stays due after handle_timeout: livelock"
            );
            last = Some(at);
            self.now = at;
            self.hub.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// Text frames `conn` received, parsed as JSON (non-JSON text becomes a JSON string).
    pub fn json(&self, conn: ConnId) -> Vec<Value> {
        self.frames
            .get(&conn)
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_text())
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())))
            .collect()
    }

    /// Frames of `type` received by `conn`.
    pub fn of_type(&self, conn: ConnId, kind: &str) -> Vec<Value> {
        self.json(conn)
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn close_of(&self, conn: ConnId) -> Option<(CloseCode, String)> {
        self.closes
            .iter()
            .find(|c| c.0 == conn)
            .map(|c| (c.1, c.2.clone()))
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.events.clear();
        self.closes.clear();
    }
}
