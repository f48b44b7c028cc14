//! Rooms from the application's side: join and leave on a connection's behalf, membership
//! queries, deleting a room, and deciding client subscribe requests.

use std::sync::Arc;
use std::time::Instant;

use super::Hub;
use crate::error::Error;
use crate::ids::ConnId;
use crate::io::Event;
use crate::wire::{self, Envelope, ErrorCode};

impl Hub {
    /// Puts `conn` in `room` of its namespace. Returns whether it was not a member before.
    /// [`Event::Joined`] follows a new membership.
    pub fn join(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        wire::check_name(room, self.config.max_name_len)
            .map_err(|why| Error::InvalidName { what: "room", why })?;
        let s = self.open_session(conn)?;
        let ns = s.namespace;
        if self
            .registry
            .room(ns, room)
            .is_some_and(|id| s.rooms.contains_key(&id))
        {
            return Ok(false);
        }
        let limit = self.config.max_rooms_per_connection;
        if s.rooms.len() + s.pending_subscribes.len() >= limit {
            return Err(Error::TooManyRooms { conn, limit });
        }
        let (id, name, _) = self.registry.join(ns, room, conn);
        if let Some(s) = self.session_mut(conn) {
            s.rooms.insert(id, name.clone());
        }
        self.event(Event::Joined { conn, room: name });
        Ok(true)
    }

    /// Takes `conn` out of `room`. Returns whether it was a member. [`Event::Left`] follows.
    /// An emptied room is freed.
    pub fn leave(&mut self, conn: ConnId, room: &str) -> Result<bool, Error> {
        let s = self.session(conn).ok_or(Error::UnknownConnection(conn))?;
        let Some(id) = self.registry.room(s.namespace, room) else {
            return Ok(false);
        };
        let Some(name) = self.session_mut(conn).and_then(|s| s.rooms.remove(&id)) else {
            return Ok(false);
        };
        self.registry.leave(id, conn);
        self.event(Event::Left { conn, room: name });
        Ok(true)
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
        let reference = self.take_request(conn, channel)?;
        self.join(conn, channel)?;
        self.send_subscribed(conn, channel, reference.as_deref());
        Ok(())
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
        let reference = self.take_request(conn, channel)?;
        let error = ErrorCode::SubscribeDenied;
        let frame = wire::encode_error(error, reason, reference.as_deref(), Some(channel));
        self.reply(conn, frame);
        Ok(())
    }

    /// Takes a pending request; returns its id.
    fn take_request(&mut self, conn: ConnId, channel: &str) -> Result<Option<String>, Error> {
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

    /// `{"type":"subscribed","channel":...,"offset":...,"epoch":...}`: the room's position,
    /// so a client can later ask to recover from it.
    pub(super) fn send_subscribed(&mut self, conn: ConnId, channel: &str, reference: Option<&str>) {
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
                ..Envelope::default()
            },
            None,
        );
        self.reply(conn, frame);
    }
}
