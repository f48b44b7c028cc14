//! Connection lifecycle: open, close (graceful or at once), transport errors, shutdown, and
//! `finalize`, the one place a connection's state is freed.

use std::time::Instant;

use super::{session_in, Hub};
use crate::config::NameConflict;
use crate::error::Error;
use crate::frame::{CloseCode, Frame};
use crate::ids::ConnId;
use crate::info::ConnectionInfo;
use crate::io::{AckOutcome, Event, Initiator, Output};
use crate::session::{Fill, Offer, Session, State};
use crate::timers::ConnTimer;
use crate::wire;

/// A close frame's reason holds at most 123 bytes (RFC 6455 §5.5: 125 minus the code).
fn close_reason(mut reason: String) -> String {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

impl Hub {
    /// Opens a connection the driver has accepted (upgraded). Follow with
    /// [`Hub::poll_output`]: a `welcome` frame and [`Event::Connected`] are queued.
    ///
    /// Refused with [`Error::ShuttingDown`], [`Error::TooManyConnections`] (answer with HTTP
    /// 503 or close 1013), [`Error::NameTaken`] or [`Error::InvalidName`] (the namespace).
    ///
    /// The connection speaks `info.protocol`, or else the protocol of the first of
    /// `Config::paths` that matches its path, or else `tidings.v1`.
    pub fn open(&mut self, now: Instant, mut info: ConnectionInfo) -> Result<ConnId, Error> {
        let now = self.clock(now);
        let refused = |hub: &mut Hub, e: Error| {
            hub.counters.connections_refused += 1;
            Err(e)
        };
        if self.shutting_down {
            return refused(self, Error::ShuttingDown);
        }
        if let Err(why) =
            wire::check_name(&info.namespace, self.config.max_name_len).and_then(|()| {
                if info.namespace.starts_with('/') {
                    Ok(())
                } else {
                    Err("must start with /")
                }
            })
        {
            return refused(
                self,
                Error::InvalidName {
                    what: "namespace",
                    why,
                },
            );
        }
        if let Some(old) = info.name.as_ref().and_then(|n| self.names.get(n).copied()) {
            match self.config.name_conflict {
                NameConflict::Refuse => {
                    let name = info.name.clone().unwrap_or_default();
                    return refused(self, Error::NameTaken(name));
                }
                NameConflict::Replace => {
                    self.close_now(
                        old,
                        CloseCode::REPLACED,
                        "replaced by a newer connection".into(),
                    );
                }
            }
        }
        if self.sessions.len() >= self.config.max_connections {
            let limit = self.config.max_connections;
            return refused(self, Error::TooManyConnections { limit });
        }

        let rule = self.config.rule_for(&info.path);
        let protocol = info
            .protocol
            .or_else(|| rule.map(|i| self.config.paths[i].protocol))
            .unwrap_or_default();
        info.protocol = Some(protocol);
        let ns = self.registry.namespace_or_create(&info.namespace);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.sessions.vacant_entry();
        let conn = ConnId::new(entry.key(), generation);
        let name = info.name.clone();
        let s = entry.insert(Session::new(generation, info, ns, rule, now));
        if let Some(period) = self.config.ping_period {
            s.set_timer(&mut self.timers, conn, ConnTimer::Ping, Some(now + period));
        }
        if let Some(limit) = self.config.silence_limit(rule) {
            s.set_timer(
                &mut self.timers,
                conn,
                ConnTimer::Silence,
                Some(now + limit),
            );
        }
        if let Some(limit) = self.config.auth_timeout {
            s.set_timer(&mut self.timers, conn, ConnTimer::Auth, Some(now + limit));
        }
        if let Some(n) = self.registry.namespaces.get_mut(ns) {
            n.members.insert(conn);
        }
        if let Some(name) = name {
            self.names.insert(name, conn);
        }
        self.counters.connections_opened += 1;
        self.event(Event::Connected { conn });
        if self.config.welcome {
            let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let heartbeat = self.config.heartbeat_of(rule);
            let frame = wire::encode_welcome(
                &conn.to_string(),
                self.config.ping_period.map(ms),
                self.config.silence_limit(rule).map(ms),
                heartbeat.map(|hb| (hb.ping.as_str(), hb.pong.as_str())),
            );
            self.reply(conn, frame);
        }
        Ok(conn)
    }

    /// Closes `conn` gracefully: it takes no new frames, its queued frames are still sent
    /// (within `close_grace`), then [`Output::Close`] with `code` and `reason`.
    pub fn close(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: CloseCode,
        reason: impl Into<String>,
    ) -> Result<(), Error> {
        let now = self.clock(now);
        self.open_session(conn)?;
        self.begin_close(now, conn, code, reason.into());
        Ok(())
    }

    /// Starts shutdown: new connections are refused, pending batches flush, every connection
    /// is closed gracefully with 1001. [`Event::ShutdownComplete`] follows the last close (at
    /// the latest `close_grace` from now). Calling it again does nothing.
    pub fn shutdown(&mut self, now: Instant) {
        let now = self.clock(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for id in self.batches.ids() {
            self.flush_batch(id);
        }
        let open: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_open())
            .map(|(i, s)| ConnId::new(i, s.generation))
            .collect();
        for conn in open {
            self.begin_close(
                now,
                conn,
                CloseCode::GOING_AWAY,
                "server shutting down".into(),
            );
        }
        self.check_shutdown_complete();
    }

    /// Marks `conn` authenticated: it is no longer closed at `Config::auth_timeout`.
    /// Calling it again does nothing.
    pub fn authenticate(&mut self, conn: ConnId) -> Result<(), Error> {
        self.open_session(conn)?;
        let s = &mut self.sessions[conn.index()];
        s.authenticated = true;
        s.set_timer(&mut self.timers, conn, ConnTimer::Auth, None);
        Ok(())
    }

    /// Whether `conn` is open and authenticated (always, if `Config::auth_timeout` is
    /// unset).
    pub fn is_authenticated(&self, conn: ConnId) -> bool {
        self.session(conn)
            .is_some_and(|s| s.is_open() && (s.authenticated || self.config.auth_timeout.is_none()))
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub(super) fn begin_close(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: CloseCode,
        reason: String,
    ) {
        let grace = self.config.close_grace;
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if !s.is_open() {
            return;
        }
        let reason = close_reason(reason);
        s.state = State::closing(code, reason.clone(), true);
        s.set_timer(&mut self.timers, conn, ConnTimer::Ping, None);
        s.set_timer(&mut self.timers, conn, ConnTimer::Silence, None);
        s.set_timer(&mut self.timers, conn, ConnTimer::Close, Some(now + grace));
        if s.queue_is_empty() && s.acks_in.is_empty() {
            self.finalize(conn, code, reason, Initiator::Server, true);
        }
    }

    /// Closes `conn` at once, dropping what it has queued.
    pub(super) fn close_now(&mut self, conn: ConnId, code: CloseCode, reason: String) {
        self.finalize(conn, code, reason, Initiator::Server, true);
    }

    fn on_transport_error_state(s: &mut Session, error: &str) {
        s.clear_queue();
        s.state = State::closing(CloseCode::ABNORMAL, close_reason(error.to_owned()), false);
    }

    pub(super) fn on_transport_error(&mut self, now: Instant, conn: ConnId, error: String) {
        let delay = self.config.error_close_delay;
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if matches!(&s.state, State::Closing(c) if !c.flush) {
            return; // already failed
        }
        Self::on_transport_error_state(s, &error);
        // Its queue will never drain: it holds nobody back while its state lingers.
        self.check_drained(conn, true);
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if delay.is_zero() {
            self.finalize(conn, CloseCode::ABNORMAL, error, Initiator::Transport, true);
        } else {
            s.set_timer(&mut self.timers, conn, ConnTimer::Ping, None);
            s.set_timer(&mut self.timers, conn, ConnTimer::Silence, None);
            s.set_timer(&mut self.timers, conn, ConnTimer::Close, Some(now + delay));
        }
    }

    /// Frees every trace of `conn`: rooms (with [`Event::Left`]), name, timers, pending acks
    /// (resolved as [`AckOutcome::Closed`]), then [`Output::Close`] if asked and
    /// [`Event::Disconnected`]. Does nothing for an unknown id, so a connection ends once.
    pub(super) fn finalize(
        &mut self,
        conn: ConnId,
        code: CloseCode,
        reason: String,
        initiator: Initiator,
        send_close: bool,
    ) {
        if self.session(conn).is_none() {
            return;
        }
        self.check_drained(conn, true);
        let mut s = self.sessions.remove(conn.index());
        let reason = close_reason(reason);
        s.clear_timers(&mut self.timers, conn);
        if send_close {
            self.outputs.push_back(Output::Close {
                conn,
                code,
                reason: reason.clone(),
            });
        }
        for (room, name) in std::mem::take(&mut s.rooms) {
            self.before_leaving(room, conn);
            self.registry.leave(room, conn);
            self.event(Event::Left { conn, room: name });
        }
        if let Some(n) = self.registry.namespaces.get_mut(s.namespace) {
            n.members.remove(&conn);
        }
        self.registry.release_namespace(s.namespace);
        if let Some(name) = &s.info.name {
            if self.names.get(name) == Some(&conn) {
                self.names.remove(name);
            }
        }
        for ack in std::mem::take(&mut s.acks_out).into_keys() {
            if s.pings.contains_key(&ack) {
                self.counters.pings_failed += 1;
            } else {
                self.counters.acks_failed += 1;
            }
            self.event(Event::Ack {
                conn,
                ack,
                outcome: AckOutcome::Closed,
            });
        }
        *self.counters.closes.entry(code).or_insert(0) += 1;
        self.event(Event::Disconnected {
            conn,
            code,
            reason,
            initiator,
        });
        self.check_shutdown_complete();
    }

    fn check_shutdown_complete(&mut self) {
        if self.shutting_down && !self.shutdown_reported && self.sessions.is_empty() {
            self.shutdown_reported = true;
            self.forget_kept();
            self.event(Event::ShutdownComplete);
        }
    }

    /// Queues the answer to a client's ack request, also on a connection closing with flush
    /// (whose close waits for these answers). Otherwise as [`Hub::reply`].
    pub(super) fn answer(&mut self, conn: ConnId, frame: Frame) {
        let window = self.config.write_window;
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if s.is_open() {
            return self.reply(conn, frame);
        }
        if super::codec(s.protocol).envelopes() && s.offer_answer(frame) == Offer::Queued {
            s.wake(&mut self.ready, conn, window);
        }
    }

    /// Tells a connection of a membership change the application made (`subscribed` or
    /// `unsubscribed` marked `server`). Bounded as the application's publishes that cannot
    /// wait are (twice the queue's bound): a connection that cannot take it is not reading,
    /// and is closed as a slow consumer rather than left with a wrong view of its channels.
    pub(super) fn notice(&mut self, conn: ConnId, frame: Frame) {
        let (bound, window) = (self.config.bound(), self.config.write_window);
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if !super::codec(s.protocol).envelopes() {
            return;
        }
        match s.offer(frame, bound, Fill::Overflow) {
            Offer::Queued => {
                s.wake(&mut self.ready, conn, window);
                self.check_behind(conn);
            }
            Offer::Full => {
                let reason = super::publish::OVERFLOW.to_owned();
                self.close_now(conn, CloseCode::SLOW_CONSUMER, reason);
            }
            Offer::NotOpen => {}
        }
    }

    /// Queues a protocol reply (welcome, subscribed, error, pong, ack answer). Each answers
    /// something the client sent, so it is never dropped: it is queued past the bound if need
    /// be, and a client whose queue that puts behind is paused until it reads its answers
    /// (and cut if it stays behind for `slow_consumer_timeout`). Only a connection that is
    /// closing or gone takes no reply (but see [`Hub::answer`] for answers to its requests).
    /// These are `tidings.v1` frames: a connection whose protocol has no envelopes takes
    /// none (see [`Hub::send_back`] for a reply every protocol has).
    pub(super) fn reply(&mut self, conn: ConnId, frame: Frame) {
        self.answer_filling(conn, frame, Fill::Pushback);
    }

    /// Queues a frame of a recovery's replay, as [`Hub::reply`] queues a reply; what it puts
    /// past the bound does not count against sources that cannot wait (see `Fill::Replay`).
    pub(super) fn replay(&mut self, conn: ConnId, frame: Frame) {
        self.answer_filling(conn, frame, Fill::Replay);
    }

    fn answer_filling(&mut self, conn: ConnId, frame: Frame, fill: Fill) {
        if self
            .session(conn)
            .is_some_and(|s| super::codec(s.protocol).envelopes())
        {
            self.send_back_filling(conn, frame, fill);
        }
    }

    /// Queues a reply to what the client sent, whatever its protocol (an application
    /// heartbeat's answer), as [`Hub::reply`] does.
    pub(super) fn send_back(&mut self, conn: ConnId, frame: Frame) {
        self.send_back_filling(conn, frame, Fill::Pushback);
    }

    fn send_back_filling(&mut self, conn: ConnId, frame: Frame, fill: Fill) {
        let (bound, window) = (self.config.bound(), self.config.write_window);
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        if s.offer(frame, bound, fill) == Offer::Queued {
            s.wake(&mut self.ready, conn, window);
            self.check_behind(conn);
            self.push_back(conn, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_reason;

    #[test]
    fn close_reasons_are_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let cut = close_reason(long);
        assert!(cut.len() <= 123);
        assert_eq!(cut.chars().count(), 61);
        assert_eq!(close_reason("short".into()), "short");
        let exact = "x".repeat(123);
        assert_eq!(close_reason(exact.clone()), exact);
    }
}
