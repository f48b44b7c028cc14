//! Flow control: which queues are *behind* (past their bound, not yet drained to half of
//! it), pushing back on what feeds them, and cutting a reader that stays behind.
//!
//! A queue that passes its bound joins the `behind` set and arms its slow-consumer timer. A
//! client whose publish reaches a room with a member behind, or whose own queue a reply puts
//! behind, has its reading paused ([`Output::PauseReading`]); it resumes
//! ([`Output::ResumeReading`]) once no member of that room (or its own queue) is behind.
//! Application publishes ask [`Hub::can_take`] first and wait. A queue that drains to half
//! its bound leaves the set; one still behind when its timer fires is closed with
//! [`CloseCode::SLOW_CONSUMER`].
//!
//! "Is a member of this room behind?" scans the behind set: free while it is empty (nearly
//! always), one look during a burst (its members are the room's), but proportional to the
//! set for a publish to a quiet room while many readers elsewhere are behind. A count per
//! room, kept on join, leave and crossing, would make it O(1); it is not needed yet.

use super::{session_in, Hub};
use crate::frame::CloseCode;
use crate::ids::ConnId;
use crate::io::Output;
use crate::message::{Scope, Target};
use crate::timers::ConnTimer;

impl Hub {
    /// Whether no recipient of `target` is behind, so a publish to it now overflows no
    /// queue. A driver whose application publishes wait for room (as tidings-net's `Handle`
    /// does) publishes once this holds; it changes after [`Input::Written`](crate::Input)
    /// and closes.
    pub fn can_take(&self, target: &Target) -> bool {
        if self.behind.is_empty() {
            return true;
        }
        match &target.scope {
            Scope::Conn(conn) => !self.behind.contains(conn),
            Scope::Room { namespace, room } => self
                .registry
                .room_by_names(namespace, room)
                .is_none_or(|id| !self.room_is_behind(id)),
            Scope::Namespace(ns) => self.registry.namespace(ns).is_none_or(|id| {
                !self
                    .behind
                    .iter()
                    .any(|&b| self.session(b).is_some_and(|s| s.namespace == id))
            }),
            Scope::All => false,
            Scope::Name(name) => self.by_name(name).is_none_or(|c| !self.behind.contains(&c)),
        }
    }

    /// Whether some queue is behind. While one is, a write report may let a paused client
    /// read again or a waiting publish through (see [`Hub::can_take`]), so a driver that
    /// holds its reports back to sum them sends each at once (see
    /// [`Input::Written`](crate::Input)).
    pub fn any_behind(&self) -> bool {
        !self.behind.is_empty()
    }

    /// Whether a member of room `id` is behind (see the module's note on its cost).
    fn room_is_behind(&self, id: usize) -> bool {
        self.behind
            .iter()
            .any(|&b| self.session(b).is_some_and(|s| s.rooms.contains_key(&id)))
    }

    /// Whether a member of `room` (`None`: `conn` itself) is behind.
    fn waits_on(&self, conn: ConnId, room: Option<usize>) -> bool {
        match room {
            Some(id) => self.room_is_behind(id),
            None => self.behind.contains(&conn),
        }
    }

    /// `conn`'s queue may have passed its bound: if so, it is behind from now.
    pub(super) fn check_behind(&mut self, conn: ConnId) {
        let bound = self.config.bound();
        let timeout = self.config.slow_consumer_timeout;
        // A session exists only after `open(now, ..)` set the clock, so it is set.
        let (Some(now), Some(s)) = (self.now, session_in(&mut self.sessions, conn)) else {
            return;
        };
        if s.behind || !s.over(bound) {
            return;
        }
        s.behind = true;
        s.set_timer(&mut self.timers, conn, ConnTimer::Slow, Some(now + timeout));
        self.behind.insert(conn);
    }

    /// `conn`'s queue may have drained to half its bound (or the connection is going): if
    /// so, it is no longer behind, and the clients it held back may read again.
    pub(super) fn check_drained(&mut self, conn: ConnId, going: bool) {
        let bound = self.config.bound();
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if !s.behind || !(going || s.drained(bound)) {
            return;
        }
        s.behind = false;
        s.set_timer(&mut self.timers, conn, ConnTimer::Slow, None);
        self.behind.remove(&conn);
        self.resume_paused();
    }

    /// After a client's publish to `room`, or a reply to it (`None`): while a member of the
    /// room (or its own queue) is behind, its reading pauses.
    pub(super) fn push_back(&mut self, conn: ConnId, room: Option<usize>) {
        if !self.waits_on(conn, room) {
            return;
        }
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if s.paused || !s.is_open() {
            return;
        }
        s.paused = true;
        self.paused.push((conn, room));
        self.counters.reads_paused += 1;
        self.outputs.push_back(Output::PauseReading { conn });
    }

    /// Resumes the reading of every paused client whose room has no member behind.
    fn resume_paused(&mut self) {
        let mut i = 0;
        while i < self.paused.len() {
            let (conn, room) = self.paused[i];
            let gone = self.session(conn).is_none();
            if !gone && self.waits_on(conn, room) {
                i += 1;
                continue;
            }
            self.paused.swap_remove(i);
            if let Some(s) = session_in(&mut self.sessions, conn) {
                s.paused = false;
                // What it sent while paused waits in its socket: its silence starts now.
                s.last_seen = self.now.unwrap_or(s.last_seen);
                self.outputs.push_back(Output::ResumeReading { conn });
            }
        }
    }

    /// The slow-consumer timer fired: the queue stayed behind for the whole timeout.
    pub(super) fn on_slow(&mut self, conn: ConnId) {
        if !self.session(conn).is_some_and(|s| s.behind) {
            return;
        }
        let reason = format!(
            "outbound queue behind for {} ms: the client reads too slowly",
            self.config.slow_consumer_timeout.as_millis()
        );
        self.close_now(conn, CloseCode::SLOW_CONSUMER, reason);
    }
}
