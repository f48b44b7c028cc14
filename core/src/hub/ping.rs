//! Pings the application asks for ([`Hub::ping`]): a WebSocket ping whose payload names it,
//! resolved by the pong that echoes it with the round-trip time, or by its deadline, or by
//! the connection's close, exactly once, as an ack request is ([`Event::Ack`]).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{session_in, Hub};
use crate::error::Error;
use crate::frame::Frame;
use crate::ids::{AckId, ConnId};
use crate::io::{AckOutcome, Event};
use crate::session::{Fill, Offer};
use crate::timers::TimerKey;

impl Hub {
    /// Sends `conn` a WebSocket ping and waits for its pong, for any protocol. Exactly one
    /// [`Event::Ack`] follows for the returned id: [`AckOutcome::Pong`] with the time from
    /// this call to the pong's arrival, [`AckOutcome::TimedOut`] after `timeout` (default
    /// `Config::ack_timeout`), or [`AckOutcome::Closed`]. It counts against
    /// `Config::max_pending_acks`. Follow with [`Hub::poll_output`].
    pub fn ping(
        &mut self,
        now: Instant,
        conn: ConnId,
        timeout: Option<Duration>,
    ) -> Result<AckId, Error> {
        let now = self.clock(now);
        let (bound, window, limit) = (
            self.config.bound(),
            self.config.write_window,
            self.config.max_pending_acks,
        );
        let deadline = now + timeout.unwrap_or(self.config.ack_timeout);
        self.open_session(conn)?;
        let s = &mut self.sessions[conn.index()];
        if s.acks_out.len() >= limit {
            return Err(Error::TooManyPendingAcks { conn, limit });
        }
        self.next_ack += 1;
        let ack = AckId(self.next_ack);
        let payload = Bytes::copy_from_slice(&ack.0.to_be_bytes());
        // The application asked: it goes out behind what is queued, even past the bound.
        if s.offer(Frame::Ping(payload), bound, Fill::Overflow) != Offer::Queued {
            return Err(Error::QueueFull(conn));
        }
        s.wake(&mut self.ready, conn, window);
        s.acks_out.insert(ack, deadline);
        s.pings.insert(ack, now);
        self.timers.insert(deadline, TimerKey::Ack(conn, ack));
        Ok(ack)
    }

    /// A pong from `conn`: resolves the ping it echoes, if it echoes one still waiting.
    pub(super) fn on_pong(&mut self, now: Instant, conn: ConnId, payload: &[u8]) {
        let Ok(id) = <[u8; 8]>::try_from(payload) else {
            return; // a heartbeat's, or unsolicited
        };
        let ack = AckId(u64::from_be_bytes(id));
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        let Some(sent) = s.pings.remove(&ack) else {
            return;
        };
        if let Some(deadline) = s.acks_out.remove(&ack) {
            self.timers.remove(deadline, TimerKey::Ack(conn, ack));
        }
        self.counters.pings_answered += 1;
        self.event(Event::Ack {
            conn,
            ack,
            outcome: AckOutcome::Pong(now.saturating_duration_since(sent)),
        });
    }
}
