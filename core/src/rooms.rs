//! Namespaces and their rooms, interned: names map to slab ids, each room keeps its members in
//! id order (deterministic fan-out), its stream's position (offset, epoch) and, if it keeps
//! history, its log.
//!
//! A room is freed once it has no members and keeps no publications (a room with history
//! outlives its members until its log is empty and its lingering over, so that they can
//! come back and recover); so are empty namespaces other than `/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use slab::Slab;

use crate::history::{History, Log};
use crate::ids::ConnId;

#[derive(Debug)]
pub(crate) struct Namespace {
    pub name: Arc<str>,
    pub members: BTreeSet<ConnId>,
    pub rooms: BTreeMap<Arc<str>, usize>,
}

#[derive(Debug)]
pub(crate) struct Room {
    pub namespace: usize,
    pub name: Arc<str>,
    pub members: BTreeSet<ConnId>,
    /// The offset the next publish to this room gets. Only grows while the room lives.
    pub next_offset: u64,
    /// Changes whenever the room is created anew (its history is lost): the n-th room this
    /// registry creates gets `seed + n`.
    pub epoch: u64,
    /// Its kept publications, if a history rule matched its name.
    pub history: Option<Log>,
    /// With `Config::sequenced`, the backplane link (`Hub`'s count of links lost) during
    /// which its position and history last matched the backplane's: while the link holds,
    /// every numbered publication since came through it.
    pub synced: Option<u64>,
    /// Questions about it the backplane has not answered yet: the room lives until they are,
    /// so that what this node saw meanwhile is not forgotten (an answer may be older).
    pub asking: u32,
    /// With `Config::sequenced`: numbered publications that arrived while the room waits for
    /// the backplane to fill a gap before them (offset, epoch), delivered after its answer.
    pub held: Option<Vec<(crate::message::Message, u64, u64)>>,
    /// Members the application joined while the room caught up, with whether pinned: told
    /// `subscribed` once it has (with the backplane's position).
    pub announce: Vec<(ConnId, bool)>,
    /// Where its publications are written once for members to share, one shelf per
    /// protocol (indexed by `Protocol::index`).
    pub shelves: [crate::outbound::Shelf; crate::protocol::Protocol::COUNT],
}

impl Room {
    /// Neither members nor kept publications: nothing to keep it for.
    pub fn unused(&self) -> bool {
        self.members.is_empty()
            && self.asking == 0
            && self.history.as_ref().is_none_or(Log::is_spent)
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    pub namespaces: Slab<Namespace>,
    by_name: BTreeMap<Arc<str>, usize>,
    pub rooms: Slab<Room>,
    epochs: u64,
    seed: u64,
}

pub(crate) const DEFAULT_NAMESPACE: &str = "/";

impl Registry {
    pub(crate) fn new(seed: u64) -> Self {
        let mut r = Registry {
            namespaces: Slab::new(),
            by_name: BTreeMap::new(),
            rooms: Slab::new(),
            epochs: 0,
            seed,
        };
        r.namespace_or_create(DEFAULT_NAMESPACE);
        r
    }

    pub(crate) fn namespace(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn namespace_or_create(&mut self, name: &str) -> usize {
        if let Some(id) = self.namespace(name) {
            return id;
        }
        let name: Arc<str> = name.into();
        let id = self.namespaces.insert(Namespace {
            name: name.clone(),
            members: BTreeSet::new(),
            rooms: BTreeMap::new(),
        });
        self.by_name.insert(name, id);
        id
    }

    /// Frees a namespace with no members and no rooms (never `/`).
    pub(crate) fn release_namespace(&mut self, ns: usize) {
        let Some(n) = self.namespaces.get(ns) else {
            return;
        };
        if n.members.is_empty() && n.rooms.is_empty() && &*n.name != DEFAULT_NAMESPACE {
            let n = self.namespaces.remove(ns);
            self.by_name.remove(&n.name);
        }
    }

    pub(crate) fn room(&self, ns: usize, name: &str) -> Option<usize> {
        self.namespaces.get(ns)?.rooms.get(name).copied()
    }

    pub(crate) fn room_by_names(&self, ns: &str, room: &str) -> Option<usize> {
        self.room(self.namespace(ns)?, room)
    }

    /// The room `name` in `ns`, created (with a new epoch, keeping `history` if given) if it
    /// does not exist.
    pub(crate) fn room_or_create(
        &mut self,
        ns: usize,
        name: &str,
        history: Option<History>,
    ) -> usize {
        if let Some(id) = self.room(ns, name) {
            return id;
        }
        self.epochs += 1;
        let epoch = self.seed.wrapping_add(self.epochs);
        let name: Arc<str> = name.into();
        let id = self.rooms.insert(Room {
            namespace: ns,
            name: name.clone(),
            members: BTreeSet::new(),
            next_offset: 0,
            epoch,
            history: history.map(|rule| Log::new(rule, 0)),
            synced: None,
            asking: 0,
            held: None,
            announce: Vec::new(),
            shelves: Default::default(),
        });
        if let Some(n) = self.namespaces.get_mut(ns) {
            n.rooms.insert(name, id);
        }
        id
    }

    /// Adds `conn` to `room` in `ns`, creating the room (keeping `history` if given). Returns
    /// the room id and whether the connection was not a member before.
    pub(crate) fn join(
        &mut self,
        ns: usize,
        name: &str,
        conn: ConnId,
        history: Option<History>,
    ) -> (usize, Arc<str>, bool) {
        let id = self.room_or_create(ns, name, history);
        let room = &mut self.rooms[id];
        let fresh = room.members.insert(conn);
        (id, room.name.clone(), fresh)
    }

    /// Removes `conn` from room `id`, freeing the room if it is now empty.
    pub(crate) fn leave(&mut self, id: usize, conn: ConnId) -> bool {
        let Some(room) = self.rooms.get_mut(id) else {
            return false;
        };
        let was = room.members.remove(&conn);
        self.free_if_unused(id);
        was
    }

    /// Frees room `id` if it has no members and keeps nothing; returns whether it did.
    pub(crate) fn free_if_unused(&mut self, id: usize) -> bool {
        if !self.rooms.get(id).is_some_and(Room::unused) {
            return false;
        }
        let room = self.rooms.remove(id);
        if let Some(n) = self.namespaces.get_mut(room.namespace) {
            n.rooms.remove(&room.name);
        }
        self.release_namespace(room.namespace);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_interned_and_freed_when_empty() {
        let mut r = Registry::new(0);
        let ns = r.namespace_or_create("/chat");
        let (a, _, fresh) = r.join(ns, "lobby", ConnId::new(1, 0), None);
        assert!(fresh);
        let (b, name, fresh) = r.join(ns, "lobby", ConnId::new(2, 0), None);
        assert_eq!((a, &*name, fresh), (b, "lobby", true));
        let (_, _, fresh) = r.join(ns, "lobby", ConnId::new(2, 0), None);
        assert!(!fresh);
        assert!(r.leave(a, ConnId::new(1, 0)));
        assert!(r.room(ns, "lobby").is_some());
        assert!(r.leave(a, ConnId::new(2, 0)));
        assert!(r.room(ns, "lobby").is_none());
        assert!(r.rooms.is_empty());
        // The namespace had nothing else, so it went too; `/` never does.
        assert!(r.namespace("/chat").is_none());
        assert!(r.namespace("/").is_some());
    }

    #[test]
    fn a_recreated_room_has_a_new_epoch() {
        let mut r = Registry::new(1 << 32);
        let (id, _, _) = r.join(0, "x", ConnId::new(1, 0), None);
        let first = r.rooms[id].epoch;
        assert_eq!(first, (1 << 32) + 1, "epochs start from the seed");
        r.leave(id, ConnId::new(1, 0));
        let (id, _, _) = r.join(0, "x", ConnId::new(1, 0), None);
        assert_ne!(r.rooms[id].epoch, first);
    }
}
