//! What the simulation expects of the hub, and the invariants checked against it.
//!
//! The model is told what the server published and to whom (the members at publish time),
//! which acks and batches are pending, and when each connection was last heard from; the
//! clients report what they receive. Any disagreement is a [`Violation`](super::Violation)
//! message.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::{AckId, CloseCode, ConnId};

/// One batch as the server fed it: its items, its deadline, and how it ended.
#[derive(Debug)]
struct BatchRecord {
    room: String,
    ident: String,
    items: Vec<u64>,
    deadline: Instant,
    cancelled: bool,
    /// Flushed, cancelled or full: no more items go in.
    closed: bool,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    /// Room message ids each connection must still receive, in publish order.
    /// Each entry is a message id and whether it is volatile (may be dropped for a full
    /// queue, but never reordered or duplicated).
    expected: BTreeMap<ConnId, VecDeque<(u64, bool)>>,
    /// Server→client acks not yet resolved, with their deadlines.
    acks: BTreeMap<(ConnId, AckId), Instant>,
    /// When the hub last received anything from each connection it holds.
    heard: BTreeMap<ConnId, Instant>,
    batches: Vec<BatchRecord>,
    open_batches: BTreeMap<(String, String), usize>,
    item_batch: BTreeMap<u64, usize>,
    batches_seen: BTreeSet<(ConnId, usize)>,
    /// Room messages delivered, for the report.
    pub delivered: u64,
}

/// The ids of the entries that may not be dropped.
fn required(queue: VecDeque<(u64, bool)>) -> Vec<u64> {
    queue
        .into_iter()
        .filter(|&(_, volatile)| !volatile)
        .map(|(id, _)| id)
        .collect()
}

/// Codes that close a connection at once, dropping its queue: it did not stay connected, and
/// the code told it why.
fn drops_queue(code: CloseCode) -> bool {
    code != CloseCode::NORMAL && code != CloseCode::GOING_AWAY
}

impl Model {
    pub(super) fn opened(&mut self, conn: ConnId, now: Instant) {
        self.heard.insert(conn, now);
    }

    pub(super) fn heard(&mut self, conn: ConnId, now: Instant) {
        if let Some(t) = self.heard.get_mut(&conn) {
            *t = now;
        }
    }

    /// The server published room message `id` to `conn` (a member whose queue took it).
    pub(super) fn expect(&mut self, conn: ConnId, id: u64) {
        self.expected
            .entry(conn)
            .or_default()
            .push_back((id, false));
    }

    /// The server published volatile message `id` to `conn`: it may be dropped for `conn`.
    pub(super) fn expect_volatile(&mut self, conn: ConnId, id: u64) {
        self.expected.entry(conn).or_default().push_back((id, true));
    }

    /// Message `id` was refused for `conn` (its queue was full under the Refuse policy).
    pub(super) fn refused(&mut self, conn: ConnId, id: u64) {
        if let Some(queue) = self.expected.get_mut(&conn) {
            queue.retain(|&(x, _)| x != id);
        }
    }

    /// `conn` received room message `id`.
    pub(super) fn received(&mut self, conn: ConnId, id: u64) -> Result<(), String> {
        let queue = self.expected.entry(conn).or_default();
        // Volatile messages before this one may have been dropped; none may be skipped else.
        while queue
            .front()
            .is_some_and(|&(want, volatile)| volatile && want != id)
        {
            queue.pop_front();
        }
        match queue.front().map(|&(want, _)| want) {
            Some(want) if want == id => {
                queue.pop_front();
                self.delivered += 1;
                Ok(())
            }
            Some(want) => Err(format!("{conn:?} received message {id} but message {want} was next")),
            None => Err(format!("{conn:?} received message {id}, which it was not due (not a member, or a duplicate)")),
        }
    }

    /// `conn` is gone with `code`. What it still expected may be lost only if the close
    /// dropped its queue, or it read slowly enough that a graceful close was cut at the grace.
    pub(super) fn closed(
        &mut self,
        conn: ConnId,
        code: CloseCode,
        lenient: bool,
    ) -> Result<(), String> {
        self.heard.remove(&conn);
        let missed: Vec<u64> = required(self.expected.remove(&conn).unwrap_or_default());
        if !missed.is_empty() && !lenient && !drops_queue(code) {
            return Err(format!(
                "{conn:?} was closed with {code} (a graceful close) but never got messages {:?}",
                missed.iter().take(5).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    /// The client dropped the connection itself: nothing more is owed to it.
    pub(super) fn abandoned(&mut self, conn: ConnId) {
        self.expected.remove(&conn);
    }

    pub(super) fn ack_asked(&mut self, conn: ConnId, ack: AckId, deadline: Instant) {
        self.acks.insert((conn, ack), deadline);
    }

    pub(super) fn ack_resolved(&mut self, conn: ConnId, ack: AckId) -> Result<(), String> {
        match self.acks.remove(&(conn, ack)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "ack {ack} of {conn:?} resolved twice, or was never asked"
            )),
        }
    }

    /// The batch still collecting under `key` at `now`, if any.
    fn open_batch(&self, key: &(String, String), now: Instant) -> Option<usize> {
        let index = *self.open_batches.get(key)?;
        let record = &self.batches[index];
        (!record.closed && record.deadline > now).then_some(index)
    }

    /// A batched item was added; returns nothing, records which batch it joined.
    pub(super) fn batch_item(
        &mut self,
        room: &str,
        ident: &str,
        item: u64,
        now: Instant,
        ttl: Duration,
        max_items: usize,
    ) {
        let key = (room.to_owned(), ident.to_owned());
        let open = self.open_batch(&key, now);
        let index = match open {
            Some(i) => i,
            None => {
                self.batches.push(BatchRecord {
                    room: key.0.clone(),
                    ident: key.1.clone(),
                    items: Vec::new(),
                    deadline: now + ttl,
                    cancelled: false,
                    closed: false,
                });
                self.open_batches.insert(key, self.batches.len() - 1);
                self.batches.len() - 1
            }
        };
        let record = &mut self.batches[index];
        record.items.push(item);
        record.closed = record.items.len() >= max_items;
        self.item_batch.insert(item, index);
    }

    /// The server cancelled `(room, ident)`; `found` is what the hub answered.
    pub(super) fn batch_cancelled(
        &mut self,
        room: &str,
        ident: &str,
        found: bool,
        now: Instant,
    ) -> Result<(), String> {
        let key = (room.to_owned(), ident.to_owned());
        let open = self.open_batch(&key, now);
        match (open, found) {
            (Some(i), true) => {
                self.batches[i].cancelled = true;
                self.batches[i].closed = true;
                Ok(())
            }
            (None, false) => Ok(()),
            (Some(_), false) => Err(format!(
                "batch ({room}, {ident}) was pending but cancel found nothing"
            )),
            (None, true) => Err(format!(
                "cancel found batch ({room}, {ident}) after it should have flushed"
            )),
        }
    }

    /// Shutdown flushed every pending batch at once.
    pub(super) fn batches_flushed(&mut self) {
        for record in &mut self.batches {
            record.closed = true;
        }
    }

    /// Batches whose TTL has passed: the caller checks the hub no longer holds them. Only a
    /// key's current batch can be probed (a newer one may hold the key); an older batch that
    /// failed to flush would show in the next one's frame, which `batch_received` checks.
    pub(super) fn due_batches(&mut self, now: Instant) -> Vec<(String, String, Instant)> {
        let mut due = Vec::new();
        for &index in self.open_batches.values() {
            let record = &mut self.batches[index];
            if !record.closed && record.deadline < now {
                record.closed = true;
                due.push((record.room.clone(), record.ident.clone(), record.deadline));
            }
        }
        due
    }

    /// `conn` received a batch frame with these items.
    pub(super) fn batch_received(&mut self, conn: ConnId, items: &[u64]) -> Result<(), String> {
        let Some(&index) = items.first().and_then(|i| self.item_batch.get(i)) else {
            return Err(format!(
                "{conn:?} received a batch of unknown items {items:?}"
            ));
        };
        let record = &self.batches[index];
        if record.cancelled {
            return Err(format!(
                "{conn:?} received cancelled batch ({}, {})",
                record.room, record.ident
            ));
        }
        if record.items != items {
            return Err(format!(
                "{conn:?} received batch items {items:?}, the batch held {:?}",
                record.items
            ));
        }
        if !self.batches_seen.insert((conn, index)) {
            return Err(format!(
                "{conn:?} received batch ({}, {}) twice",
                record.room, record.ident
            ));
        }
        Ok(())
    }

    /// Time-bound invariants at `now`: acks resolved by their deadline, silent connections
    /// closed by `limit` after they were last heard from (`open` tells which still are).
    pub(super) fn check_deadlines(
        &self,
        now: Instant,
        limit: Option<Duration>,
        open: impl Fn(ConnId) -> bool,
    ) -> Result<(), String> {
        const TICK: Duration = Duration::from_millis(1);
        if let Some((&(conn, ack), &deadline)) = self.acks.iter().find(|(_, &d)| d + TICK < now) {
            return Err(format!(
                "ack {ack} of {conn:?} unresolved {:?} after its deadline",
                now - deadline
            ));
        }
        if let Some(limit) = limit {
            for (&conn, &t) in &self.heard {
                if open(conn) && t + limit + TICK < now {
                    return Err(format!(
                        "{conn:?} silent for {:?} (limit {limit:?}) and still open",
                        now - t
                    ));
                }
            }
        }
        Ok(())
    }

    /// Liveness once faults stop: `conn` is owed nothing.
    pub(super) fn settled(&self, conn: ConnId) -> Result<(), String> {
        let owed = required(self.expected.get(&conn).cloned().unwrap_or_default());
        if owed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{conn:?} still waits for messages {:?} after the network settled",
                &owed[..owed.len().min(5)]
            ))
        }
    }

    pub(super) fn pending_acks(&self) -> usize {
        self.acks.len()
    }
}
