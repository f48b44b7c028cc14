//! Rooms from the application's side: join and leave on a connection's behalf (the client is
//! told, with `subscribed`/`unsubscribed` marked `"server":true`), pinned memberships the
//! client may not leave, membership queries, deleting a room, and deciding client subscribe
//! requests.

use std::sync::Arc;
use std::time::Instant;

use super::Hub;
use crate::error::Error;
use crate::history::{Position, Recovery, Unrecoverable};
use crate::ids::ConnId;
use crate::io::Event;
use crate::request::ErrorCode;
use crate::wire::{self, Asked, Envelope};

impl Hub {
    /// Puts `conn` in `room` of its namespace. Returns whether it was not a member before.
    /// A new member is told with `{"type":"subscribed",...,"server":true}` (with
    /// `Config::sequenced`, on a node that does not know where the channel's stream stands,
    /// once the backplane has said) and [`Event::Joined`] follows. The client may leave it with `unsubscribe`; see
    /// [`Hub::join_pinned`] for a membership it may not leave.
    pub fn join(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        let joined = self.join_quietly(conn, room, false)?;
        if joined {
            self.announce_joined(conn, room, false);
        }
        Ok(joined)
    }

    /// Like [`Hub::join`], but the client may not leave: its `unsubscribe` is refused with
    /// `unsubscribe_denied` until the application calls [`Hub::leave`]. Pins an existing
    /// membership too. The client is told with `subscribed` marked `"server":true` and
    /// `"pinned":true`. Returns whether `conn` was not a member before.
    pub fn join_pinned(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        let was_pinned = self.is_pinned(conn, room);
        let joined = self.join_quietly(conn, room, true)?;
        if !was_pinned {
            self.announce_joined(conn, room, true);
        }
        Ok(joined)
    }

    /// [`Hub::join_pinned`] for a client that comes back: it also gets every publication of
    /// `room` from `from` on (the position it had, which the application got from it, say in
    /// its connect request), before any live one and in the same step as the join, so that
    /// nothing is missed or sent twice. Its `subscribed` carries `recovered` (and `reason`),
    /// and so does what this returns. A connection already in the room gets no replay (what
    /// came since it joined, it has). With `Config::sequenced`, a node that cannot recover
    /// from what it saw asks the backplane, and the client joins when it answers
    /// ([`Recovery::Asked`]). A raw connection has no recovery: [`Error::NotInProtocol`].
    pub fn join_pinned_from(
        &mut self,
        conn: ConnId,
        room: &str,
        from: Position,
    ) -> Result<Recovery, Error> {
        self.enveloped_session(conn, "recovery")?;
        if self.in_room(conn, room) {
            self.join_pinned(conn, room)?;
            return Ok(Recovery::Recovered);
        }
        wire::check_name(room, self.config.max_name_len)
            .map_err(|why| Error::InvalidName { what: "room", why })?;
        if let Some(asked) = self.join_pinned_asking(conn, room, from) {
            return Ok(asked);
        }
        self.join_quietly(conn, room, true)?;
        let why = Subscribed::Server { pinned: true };
        Ok(match self.subscribed_from(conn, room, why, from) {
            None => Recovery::Recovered,
            Some(why) => Recovery::NotRecovered(why),
        })
    }

    /// Joins without telling the client (its own `subscribe` is answered by the caller).
    pub(super) fn join_quietly(
        &mut self,
        conn: ConnId,
        room: &str,
        pin: bool,
    ) -> Result<bool, Error> {
        wire::check_name(room, self.config.max_name_len)
            .map_err(|why| Error::InvalidName { what: "room", why })?;
        let s = self.open_session(conn)?;
        let ns = s.namespace;
        let existing = self
            .registry
            .room(ns, room)
            .filter(|id| s.rooms.contains_key(id));
        if let Some(id) = existing {
            if pin {
                if let Some(s) = self.session_mut(conn) {
                    s.pinned.insert(id);
                }
            }
            return Ok(false);
        }
        let limit = self.config.max_rooms_per_connection;
        if s.rooms.len() + s.pending_subscribes.len() >= limit {
            return Err(Error::TooManyRooms { conn, limit });
        }
        let history = self.config.history_of(room);
        let (id, name, _) = self.registry.join(ns, room, conn, history);
        if let Some(s) = self.session_mut(conn) {
            s.rooms.insert(id, name.clone());
            if pin {
                s.pinned.insert(id);
            }
        }
        self.event(Event::Joined { conn, room: name });
        Ok(true)
    }

    /// Takes `conn` out of `room`. Returns whether it was a member. An open connection is
    /// told with `{"type":"unsubscribed",...,"server":true}`; [`Event::Left`] follows. An
    /// emptied room is freed.
    pub fn leave(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        let left = self.leave_quietly(conn, room)?;
        if left {
            let envelope = Envelope {
                kind: "unsubscribed",
                channel: Some(room),
                server: true,
                ..Envelope::default()
            };
            self.notice(conn, wire::encode(envelope, None));
        }
        Ok(left)
    }

    /// Leaves without telling the client (its own `unsubscribe` is answered by the caller).
    pub(super) fn leave_quietly(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        let s = self.session(conn).ok_or(Error::UnknownConnection(conn))?;
        let Some(id) = self.registry.room(s.namespace, room) else {
            return Ok(false);
        };
        let Some(s) = self.session_mut(conn) else {
            return Ok(false);
        };
        s.pinned.remove(&id);
        let Some(name) = s.rooms.remove(&id) else {
            return Ok(false);
        };
        self.before_leaving(id, conn);
        self.registry.leave(id, conn);
        self.event(Event::Left { conn, room: name });
        Ok(true)
    }

    /// Whether `conn` is in `room` on a membership the client may not leave.
    pub fn is_pinned(&self, conn: ConnId, room: &str) -> bool {
        self.session(conn).is_some_and(|s| {
            self.registry
                .room(s.namespace, room)
                .is_some_and(|id| s.pinned.contains(&id))
        })
    }

    /// Whether `conn` is in `room` of its namespace.
    pub fn in_room(&self, conn: ConnId, room: &str) -> bool {
        self.session(conn)
            .and_then(|s| {
                Some(
                    s.rooms
                        .contains_key(&self.registry.room(s.namespace, room)?),
                )
            })
            .unwrap_or(false)
    }

    /// The rooms `conn` is in, sorted by name.
    pub fn rooms_of(&self, conn: ConnId) -> Vec<Arc<str>> {
        let mut rooms: Vec<Arc<str>> = self
            .session(conn)
            .map(|s| s.rooms.values().cloned().collect())
            .unwrap_or_default();
        rooms.sort();
        rooms
    }

    /// How many connections are in `room` of `namespace`.
    pub fn room_size(&self, namespace: &str, room: &str) -> usize {
        self.registry
            .room_by_names(namespace, room)
            .map_or(0, |id| self.registry.rooms[id].members.len())
    }

    /// The members of `room` of `namespace`, in id order.
    pub fn members(&self, namespace: &str, room: &str) -> Vec<ConnId> {
        self.registry
            .room_by_names(namespace, room)
            .map(|id| self.registry.rooms[id].members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether `room` exists (has members) in `namespace`.
    pub fn has_room(&self, namespace: &str, room: &str) -> bool {
        self.registry.room_by_names(namespace, room).is_some()
    }

    /// The rooms of `namespace`, sorted by name.
    pub fn rooms(&self, namespace: &str) -> Vec<Arc<str>> {
        self.registry
            .namespace(namespace)
            .map(|ns| self.registry.namespaces[ns].rooms.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes every member from `room` of `namespace` (each gets [`Event::Left`]), which frees
    /// the room. Returns how many members it had.
    pub fn delete_room(&mut self, namespace: &str, room: &str) -> usize {
        let members = self.members(namespace, room);
        for &conn in &members {
            let _ = self.leave(conn, room);
        }
        members.len()
    }

    /// Grants a pending subscribe request: the connection joins and is told `subscribed`.
    pub fn approve_subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        channel: &str,
    ) -> Result<(), Error> {
        self.clock(now);
        let (reference, recover) = self.take_request(conn, channel)?;
        self.admit(conn, channel, reference.as_deref(), recover)
    }

    /// Refuses a pending subscribe request: the client gets an `error` with code
    /// `subscribe_denied`, the channel and `reason`.
    pub fn deny_subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        channel: &str,
        reason: &str,
    ) -> Result<(), Error> {
        self.clock(now);
        let (reference, _) = self.take_request(conn, channel)?;
        let error = ErrorCode::SubscribeDenied;
        let asked = Asked {
            reference: reference.as_deref(),
            ack: None,
            channel: Some(channel),
        };
        let frame = wire::encode_error(error, reason, asked);
        self.reply(conn, frame);
        Ok(())
    }

    /// Takes a pending request; returns its id and the position it asked to recover from.
    fn take_request(
        &mut self,
        conn: ConnId,
        channel: &str,
    ) -> Result<(Option<String>, Option<Position>), Error> {
        let s = self
            .session_mut(conn)
            .ok_or(Error::UnknownConnection(conn))?;
        s.pending_subscribes
            .remove(channel)
            .ok_or_else(|| Error::NoSuchRequest {
                conn,
                channel: channel.to_owned(),
            })
    }

    /// Answers a client's `subscribe` of a channel it is in now: `subscribed`, and if it asked
    /// to recover from a position, whether it did, then the publications it missed.
    pub(super) fn subscribed(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        recover: Option<Position>,
    ) {
        match recover {
            Some(from) => {
                let _ = self.subscribed_from(conn, channel, Subscribed::Client(reference), from);
            }
            None => self.send_subscribed(conn, channel, Subscribed::Client(reference), None),
        }
    }

    /// Tells `conn` it is in `channel` (`why`) and whether it recovered from `from`, then
    /// replays what it missed: in one step, so that no live publication comes between.
    pub(super) fn subscribed_from(
        &mut self,
        conn: ConnId,
        channel: &str,
        why: Subscribed<'_>,
        from: Position,
    ) -> Option<Unrecoverable> {
        let recovery = self.kept_since(conn, channel, from);
        let outcome = recovery.as_ref().map(|_| ()).map_err(|e| *e);
        self.send_subscribed(conn, channel, why, Some(outcome));
        if let Ok(missed) = recovery {
            for frame in missed {
                self.replay(conn, frame);
            }
        }
        outcome.err()
    }

    /// `{"type":"subscribed","channel":...,"offset":...,"epoch":...}`: the room's position,
    /// so a client can later ask to recover from it; with `recovered` (and a `reason` if
    /// not) when the client asked to.
    pub(super) fn send_subscribed(
        &mut self,
        conn: ConnId,
        channel: &str,
        why: Subscribed<'_>,
        recovery: Option<Result<(), Unrecoverable>>,
    ) {
        let (reference, server, pinned) = match why {
            Subscribed::Client(reference) => (reference, false, false),
            Subscribed::Server { pinned } => (None, true, pinned),
        };
        let Some(s) = self.session(conn) else { return };
        let position = self.registry.room(s.namespace, channel).map(|id| {
            let r = &self.registry.rooms[id];
            (r.next_offset, r.epoch)
        });
        let frame = wire::encode(
            Envelope {
                kind: "subscribed",
                channel: Some(channel),
                reference,
                offset: position.map(|p| p.0),
                epoch: position.map(|p| p.1),
                server,
                pinned,
                recovered: recovery.map(|r| r.is_ok()),
                reason: recovery.and_then(|r| r.err()).map(Unrecoverable::as_str),
                ..Envelope::default()
            },
            None,
        );
        match why {
            Subscribed::Client(_) => self.reply(conn, frame),
            Subscribed::Server { .. } => self.notice(conn, frame),
        }
    }
}

/// Who caused a `subscribed`: the client's request (answered with its `id` as `ref`), or the
/// application.
#[derive(Clone, Copy)]
pub(super) enum Subscribed<'a> {
    Client(Option<&'a str>),
    Server { pinned: bool },
}
