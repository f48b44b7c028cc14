//! Every deadline of the hub in one ordered set, so the next wakeup is its first entry.
//!
//! Each owner (a connection's timer table, a pending ack, a batch) remembers the deadline it
//! armed, so rearming removes exactly its old entry: the set never holds stale keys, and
//! handling a timeout twice finds nothing the second time.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::ids::{AckId, ConnId};

/// The per-connection timers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum ConnTimer {
    /// Send the next WebSocket ping.
    Ping = 0,
    /// Check whether the connection has been silent too long.
    Silence = 1,
    /// A closing connection's flush deadline, or a failed one's close delay.
    Close = 2,
    /// The deadline to be authenticated by (`Config::auth_timeout`).
    Auth = 3,
    /// The queue has been behind since `slow_consumer_timeout` before this.
    Slow = 4,
}

impl ConnTimer {
    pub(crate) const COUNT: usize = 5;
}

/// What a deadline belongs to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum TimerKey {
    Conn(ConnId, ConnTimer),
    Ack(ConnId, AckId),
    /// A client's ack request the application must answer by then.
    Answer(ConnId, u64),
    Batch(usize),
}

/// The ordered set of `(deadline, owner)`.
#[derive(Default, Debug)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    pub(crate) fn insert(&mut self, at: Instant, key: TimerKey) {
        self.set.insert((at, key));
    }

    pub(crate) fn remove(&mut self, at: Instant, key: TimerKey) {
        self.set.remove(&(at, key));
    }

    /// Moves `key` from `old` (if armed) to `new` (if any); returns `new` for the owner to keep.
    pub(crate) fn rearm(
        &mut self,
        key: TimerKey,
        old: Option<Instant>,
        new: Option<Instant>,
    ) -> Option<Instant> {
        if let Some(at) = old {
            self.remove(at, key);
        }
        if let Some(at) = new {
            self.insert(at, key);
        }
        new
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.set.first() {
            Some(&(at, _)) if at <= now => self.set.pop_first(),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.insert(t0 + Duration::from_secs(2), TimerKey::Batch(2));
        t.insert(t0 + Duration::from_secs(1), TimerKey::Batch(1));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(5)).map(|e| e.1),
            Some(TimerKey::Batch(1))
        );
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(5)).map(|e| e.1),
            Some(TimerKey::Batch(2))
        );
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn rearm_replaces_the_old_entry() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let key = TimerKey::Batch(7);
        let armed = t.rearm(key, None, Some(t0));
        let armed = t.rearm(key, armed, Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        t.rearm(key, armed, None);
        assert_eq!(t.len(), 0);
    }
}
