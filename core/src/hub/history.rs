//! Keeping channel history (see `history.rs`): each publication of a stream that keeps
//! history is kept as it is encoded, before it is offered to anyone, so a subscriber that
//! recovers can never miss one that was sent live; kept publications go once too many are
//! kept, once they are older than their rule's `ttl`, or, past `max_history_bytes` for every
//! channel together, those closest to expiring first. A room with no members lives until its
//! last kept publication goes.
//!
//! Recovery runs within one step of the hub: the replay is queued behind the `subscribed`
//! and before any publication that comes later, so the switch from replay to live has no gap
//! and no duplicate.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Hub;
use crate::frame::Frame;
use crate::history::{Entry, Log, Position, Unrecoverable};
use crate::ids::ConnId;

/// What a room lingering with no members and nothing kept counts against
/// `max_history_bytes`, besides its name: about what the room and its log take.
const LINGER_BYTES: usize = 256;

/// The kept publications asked for, or why they cannot all be had.
pub(super) type Replay = Result<Vec<Frame>, Unrecoverable>;

/// What every log holds together: the oldest entry of each, by when it expires (the next
/// expiry, and what goes first past the byte cap), and their bytes.
#[derive(Debug, Default)]
pub(super) struct Kept {
    fronts: BTreeSet<(Instant, usize)>,
    bytes: usize,
}

impl Kept {
    /// When the next kept publication expires.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.fronts.first().map(|&(at, _)| at)
    }

    /// Bytes kept in every log.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Hub {
    /// Where room `room` of `namespace` stands: the offset its next publication takes, and
    /// its epoch (what a client that has seen everything so far would recover from). `None`
    /// if the room does not exist.
    pub fn room_position(&self, namespace: &str, room: &str) -> Option<Position> {
        let id = self.registry.room_by_names(namespace, room)?;
        let room = self.registry.rooms.get(id)?;
        Some(Position {
            since: room.next_offset,
            epoch: room.epoch,
        })
    }

    /// Keeps `frame`, the publication just numbered in room `id`, if the room keeps history.
    pub(super) fn keep(&mut self, id: usize, frame: &Frame) {
        let Some(now) = self.now.filter(|_| !self.shutting_down) else {
            return;
        };
        let Some(log) = self.log_mut(id) else {
            return;
        };
        let before = log.deadline();
        let expires = now + log.rule.ttl;
        log.entries.push_back(Entry {
            frame: frame.clone(),
            expires,
        });
        let over = log.entries.len().saturating_sub(log.rule.max_len);
        self.kept.bytes += frame.len();
        self.moved(id, before);
        for _ in 0..over {
            self.drop_oldest(id);
        }
        self.within_cap(id);
    }

    /// Keeps `frame`, the publication just before room `id`'s oldest kept one, if the room
    /// keeps fewer than its rule allows: what a backplane answered that this node had not
    /// kept. It expires with the oldest one kept (or after the rule's `ttl`, if none is).
    /// Returns whether it was kept.
    pub(super) fn keep_older(&mut self, id: usize, frame: Frame) -> bool {
        let Some(now) = self.now.filter(|_| !self.shutting_down) else {
            return false;
        };
        let Some(log) = self.log_mut(id) else {
            return false;
        };
        if log.entries.len() >= log.rule.max_len || log.first == 0 {
            return false;
        }
        let before = log.deadline();
        let expires = before
            .filter(|_| !log.entries.is_empty())
            .unwrap_or(now + log.rule.ttl);
        let bytes = frame.len();
        log.entries.push_front(Entry { frame, expires });
        log.first -= 1;
        self.kept.bytes += bytes;
        self.moved(id, before);
        self.within_cap(id);
        true
    }

    /// Drops everything room `id` keeps and starts its stream again at `start` in `epoch`:
    /// the history it kept no longer leads up to what comes next.
    pub(super) fn restart_stream(&mut self, id: usize, start: u64, epoch: u64) {
        while self.log_mut(id).is_some_and(|log| !log.entries.is_empty()) {
            self.drop_oldest(id);
        }
        let room = &mut self.registry.rooms[id];
        room.next_offset = start;
        room.epoch = epoch;
        if let Some(log) = room.history.as_mut() {
            log.first = start;
        }
    }

    /// Before `conn` leaves room `id`: if it is the last member of a room that keeps
    /// history, the room lingers for its rule's `ttl`, so that a member coming back finds the
    /// same epoch even if nothing was published meanwhile. A lingering room counts against
    /// `max_history_bytes` as `LINGER_BYTES` and its name.
    pub(super) fn before_leaving(&mut self, id: usize, conn: ConnId) {
        let Some(now) = self.now.filter(|_| !self.shutting_down) else {
            return;
        };
        let Some(room) = self.registry.rooms.get_mut(id) else {
            return;
        };
        let last = room.members.len() == 1 && room.members.contains(&conn);
        let cost = LINGER_BYTES + room.name.len();
        let Some(log) = room.history.as_mut().filter(|_| last) else {
            return;
        };
        let before = log.deadline();
        if log.linger.is_none() {
            self.kept.bytes += cost;
        }
        log.linger = Some(now + log.rule.ttl);
        self.moved(id, before);
        self.within_cap(id);
    }

    /// Past `max_history_bytes`, drops what would expire first until under it (possibly
    /// room `id`'s newest publication, if it alone is larger than the cap: the room then
    /// keeps nothing, and lives on for its members only). Room `id` is not freed here: its
    /// caller is still using it.
    fn within_cap(&mut self, id: usize) {
        while self.kept.bytes > self.config.max_history_bytes {
            let Some(&(_, victim)) = self.kept.fronts.first() else {
                return;
            };
            self.drop_oldest(victim);
            if victim != id {
                self.registry.free_if_unused(victim);
            }
        }
    }

    fn log_mut(&mut self, id: usize) -> Option<&mut Log> {
        self.registry.rooms.get_mut(id)?.history.as_mut()
    }

    /// Room `id`'s deadline may have moved from `before`: its record follows.
    fn moved(&mut self, id: usize, before: Option<Instant>) {
        let after = self.log_mut(id).and_then(|log| log.deadline());
        if before != after {
            if let Some(at) = before {
                self.kept.fronts.remove(&(at, id));
            }
            if let Some(at) = after {
                self.kept.fronts.insert((at, id));
            }
        }
    }

    /// Drops room `id`'s oldest kept publication, or, with none, ends its lingering.
    pub(super) fn drop_oldest(&mut self, id: usize) {
        let Some(room) = self.registry.rooms.get_mut(id) else {
            return;
        };
        let linger_cost = LINGER_BYTES + room.name.len();
        let Some(log) = room.history.as_mut() else {
            return;
        };
        let before = log.deadline();
        match log.entries.pop_front() {
            Some(oldest) => {
                log.first += 1;
                self.kept.bytes -= oldest.frame.len();
            }
            None => {
                if log.linger.take().is_some() {
                    self.kept.bytes -= linger_cost;
                }
            }
        }
        self.moved(id, before);
    }

    /// Drops every kept publication expired at `now`, ends the lingering that is over, and
    /// frees the rooms left with neither members nor history.
    pub(super) fn expire_kept(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.kept.fronts.first() {
            if at > now {
                return;
            }
            self.drop_oldest(id);
            self.registry.free_if_unused(id);
        }
    }

    /// For a `history` request of `conn` in `channel`: the room's position (next offset,
    /// epoch) and its kept publications from `since` on (the first `limit`), or the last
    /// `limit` of them, or why there are none.
    pub(super) fn kept_for(
        &mut self,
        conn: ConnId,
        channel: &str,
        since: Option<Position>,
        limit: Option<u64>,
    ) -> (Option<(u64, u64)>, Replay) {
        if let Some(now) = self.now {
            self.expire_kept(now);
        }
        let from = match since {
            Some(from) => Ok(from),
            None => self.current_start(conn, channel),
        };
        let kept = from.and_then(|from| self.kept_since(conn, channel, from));
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let kept = kept.map(|mut frames| {
            if since.is_some() {
                frames.truncate(limit);
            } else {
                frames.drain(..frames.len().saturating_sub(limit));
            }
            frames
        });
        let position = self
            .session(conn)
            .and_then(|s| self.registry.room(s.namespace, channel))
            .map(|id| {
                (
                    self.registry.rooms[id].next_offset,
                    self.registry.rooms[id].epoch,
                )
            });
        (position, kept)
    }

    /// The position of the oldest publication `conn`'s room `channel` keeps.
    fn current_start(&self, conn: ConnId, channel: &str) -> Result<Position, Unrecoverable> {
        let room = self
            .session(conn)
            .and_then(|s| self.registry.room(s.namespace, channel))
            .map(|id| &self.registry.rooms[id])
            .ok_or(Unrecoverable::NoHistory)?;
        let log = room.history.as_ref().ok_or(Unrecoverable::NoHistory)?;
        Ok(Position {
            since: log.first,
            epoch: room.epoch,
        })
    }

    /// Drops every kept publication, and the rooms left with neither members nor history: a
    /// hub that has shut down takes no one back.
    pub(super) fn forget_kept(&mut self) {
        while let Some(&(_, id)) = self.kept.fronts.first() {
            self.drop_oldest(id);
            self.registry.free_if_unused(id);
        }
    }

    /// The kept publications of `conn`'s room `channel` from `from` on, or why they cannot
    /// all be had.
    pub(super) fn kept_since(&mut self, conn: ConnId, channel: &str, from: Position) -> Replay {
        if let Some(now) = self.now {
            self.expire_kept(now);
        }
        let Some(room) = self
            .session(conn)
            .and_then(|s| self.registry.room(s.namespace, channel))
            .and_then(|id| self.registry.rooms.get(id))
        else {
            return Err(Unrecoverable::NoHistory);
        };
        let Some(log) = &room.history else {
            return Err(Unrecoverable::NoHistory);
        };
        if from.epoch != room.epoch {
            return Err(Unrecoverable::EpochChanged);
        }
        Ok(log.since(from.since, room.next_offset)?.cloned().collect())
    }
}
