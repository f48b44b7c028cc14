//! Channels whose stream the backplane numbers and keeps (`Config::sequenced`), so that
//! every node hands out the same offsets and a client recovers on any node.
//!
//! A publish to such a channel is not delivered where it is made: it goes to the backplane
//! ([`ClusterMessage::Sequence`]), which gives it the channel's next offset, keeps it, and
//! brings it back to every node ([`ClusterMessage::Sequenced`]). Each node delivers it at that
//! position and keeps it in its own log too, so that most recoveries are served here.
//!
//! A node has seen a channel's whole stream only while its link to the backplane holds
//! ([`Hub::backplane_lost`] ends that). A subscribe, a `join_pinned_from` or a `history`
//! request it cannot answer from what it saw asks the backplane ([`Output::Fetch`]) and waits:
//! the answer ([`Hub::fetched`]) first brings the room up to the backplane's stream
//! (publications this node missed are delivered to its members, older ones put back in its
//! log), then the request is served from the log as on a single node, in the same step, so
//! the switch to live has no gap and no duplicate. A publication that comes back after the
//! answer already brought it is not delivered again. Requests about one room share one
//! question in flight.
//!
//! A room *catches up* (asks from where it stands, and *holds* what arrives until the answer)
//! when its node's link comes back ([`Hub::backplane_restored`]), when a gap shows in the
//! offsets arriving, and when the application joins a client to it before this node knows
//! where its stream stands (the client's `subscribed` waits for the answer). Its members then
//! get what was published meanwhile, in order, unless the backplane no longer keeps it.

use std::collections::BTreeMap;

use super::rooms::Subscribed;
use super::Hub;
use crate::history::{Fetch, History, Position, Recovery, Stream};
use crate::ids::ConnId;
use crate::io::Output;
use crate::message::{Message, Scope, Target};
use crate::session::Fill;

/// Questions asked of the backplane and not yet answered, by id, and the requests that wait
/// for them.
#[derive(Debug, Default)]
pub(super) struct Fetches {
    waiting: BTreeMap<u64, Waiting>,
    /// The question in flight for each room `(namespace, name)` that clients asked about:
    /// further requests about the room wait for its answer rather than ask again (ten
    /// thousand clients recovering on a node that just started ask once).
    in_flight: BTreeMap<(usize, String), u64>,
    /// Requests waiting for the answer to another's question, by its id.
    parked: BTreeMap<u64, Vec<Waiting>>,
    next: u64,
}

impl Fetches {
    /// Requests waiting for the backplane.
    pub(super) fn len(&self) -> usize {
        self.waiting.len() + self.parked.values().map(Vec::len).sum::<usize>()
    }
}

/// A request that waits for the backplane's answer about its channel.
#[derive(Debug)]
struct Waiting {
    /// The namespace (its room lives while this waits, so it does too).
    ns: usize,
    /// Whose request it is (none for a catch-up).
    conn: Option<ConnId>,
    channel: String,
    then: Then,
    /// Asked a second time (see `Hub::behind_client`).
    again: bool,
}

/// What to do once the channel is up to date.
#[derive(Debug)]
enum Then {
    /// Answer the client's subscribe (kept in its `pending_subscribes` meanwhile).
    Subscribe,
    /// Join it for the application, recovering from a position.
    JoinPinned(Position),
    /// Answer a `history` request.
    History {
        reference: Option<String>,
        since: Option<Position>,
        limit: Option<u64>,
    },
    /// Fill a gap for the room's members, then deliver what it held meanwhile.
    CatchUp,
}

impl Hub {
    /// Tells the hub that its backplane's link broke: publications may have been missed, so
    /// every channel whose stream the backplane numbers asks it again before this node
    /// answers a subscribe or a recovery from what it saw.
    pub fn backplane_lost(&mut self) {
        self.links_lost += 1;
    }

    /// Delivers a publication the backplane numbered, unless this node delivered it already.
    pub(super) fn deliver_sequenced(
        &mut self,
        target: &Target,
        message: &Message,
        offset: u64,
        epoch: u64,
    ) {
        let Some(id) = self.sequenced_room(target) else {
            let _ = self.deliver(target, message, None, Fill::Overflow);
            return;
        };
        let room = &mut self.registry.rooms[id];
        if let Some(held) = room.held.as_mut() {
            held.push((message.clone(), offset, epoch));
            if held.len() >= self.config.max_queue_frames {
                // The backplane is too slow to answer: stop waiting for it rather than hold
                // more than a queue takes (what its answer brings later is not delivered
                // twice; what it would have filled in before is skipped).
                self.release(id, target);
            }
            return;
        }
        // Publications this node missed (a link that broke unnoticed): its members get them
        // from the backplane first, rather than skip them.
        let gap = room.epoch == epoch
            && room.synced.is_some()
            && offset > room.next_offset
            && !room.members.is_empty();
        if gap {
            room.held = Some(vec![(message.clone(), offset, epoch)]);
            self.catch_up_room(id);
            return;
        }
        self.deliver_at(id, target, message, offset, epoch);
        self.registry.free_if_unused(id);
    }

    /// Tells the hub that its backplane's link is back: each channel whose stream the
    /// backplane numbers and that has members here asks for what was published while the
    /// link was down, and holds what arrives meanwhile, so that its members get every
    /// publication, in order, across the outage.
    pub fn backplane_restored(&mut self) {
        let stale: Vec<usize> = self
            .registry
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.synced.is_some_and(|at| at != self.links_lost)
                    && !r.members.is_empty()
                    && r.held.is_none()
                    && self.config.sequenced_history(&r.name).is_some()
            })
            .map(|(id, _)| id)
            .collect();
        for id in stale {
            self.registry.rooms[id].held = Some(Vec::new());
            self.catch_up_room(id);
        }
    }

    /// Tells `conn`, which the application just joined to `room`, that it is in it: at once,
    /// or, in a channel whose stream the backplane numbers and that this node has not had
    /// the backplane's position of since its link came up, once it has (what arrives
    /// meanwhile is held), so that the `subscribed` carries the cluster's position.
    pub(super) fn announce_joined(&mut self, conn: ConnId, room: &str, pinned: bool) {
        let unsynced = self
            .config
            .sequenced_history(room)
            .and_then(|_| self.session(conn))
            .and_then(|s| self.registry.room(s.namespace, room))
            .filter(|&id| self.registry.rooms[id].synced != Some(self.links_lost));
        let Some(id) = unsynced else {
            self.send_subscribed(conn, room, Subscribed::Server { pinned }, None);
            return;
        };
        let r = &mut self.registry.rooms[id];
        r.announce.push((conn, pinned));
        if r.held.is_none() {
            r.held = Some(Vec::new());
            self.catch_up_room(id);
        }
    }

    /// Asks the backplane for room `id`'s stream from where the room stands.
    fn catch_up_room(&mut self, id: usize) {
        let room = &self.registry.rooms[id];
        let Some(history) = room.history.as_ref().map(|log| log.rule) else {
            return;
        };
        // Where it stands, for a room that never had the backplane's position.
        let from = room.synced.map(|_| room.next_offset);
        let key = (room.namespace, room.name.to_string());
        let waiting = Waiting {
            ns: room.namespace,
            conn: None,
            channel: room.name.to_string(),
            then: Then::CatchUp,
            again: false,
        };
        // Requests about the room wait for this answer: the room holds what arrives until.
        let id = self.send_fetch(waiting, history, from);
        self.fetches.in_flight.insert(key, id);
    }

    /// Delivers what room `id` held while it caught up; a gap left (the backplane no longer
    /// kept what was missed, or could not be asked) is skipped, not asked about again.
    fn release(&mut self, id: usize, target: &Target) {
        let room = &mut self.registry.rooms[id];
        let (announce, name) = (std::mem::take(&mut room.announce), room.name.clone());
        for (conn, pinned) in announce {
            if self.in_room(conn, &name) {
                self.send_subscribed(conn, &name, Subscribed::Server { pinned }, None);
            }
        }
        let held = self.registry.rooms[id].held.take().unwrap_or_default();
        for (message, offset, epoch) in held {
            self.deliver_at(id, target, &message, offset, epoch);
        }
    }

    /// The room of `target`, created if need be, if its stream is the backplane's.
    fn sequenced_room(&mut self, target: &Target) -> Option<usize> {
        let Scope::Room { namespace, room } = &target.scope else {
            return None;
        };
        let history = self.config.sequenced_history(room)?;
        let ns = self.registry.namespace_or_create(namespace);
        Some(self.registry.room_or_create(ns, room, Some(history)))
    }

    /// Delivers the publication at `offset` in `epoch` to room `id`'s members and keeps it,
    /// unless this node delivered it already. A new epoch, or a gap, starts the room's log
    /// again.
    fn deliver_at(
        &mut self,
        id: usize,
        target: &Target,
        message: &Message,
        offset: u64,
        epoch: u64,
    ) {
        let room = &self.registry.rooms[id];
        let same = room.epoch == epoch && room.synced.is_some();
        if same && offset < room.next_offset {
            return;
        }
        if !same || offset > room.next_offset {
            self.restart_stream(id, offset, epoch);
        }
        let room = &mut self.registry.rooms[id];
        room.next_offset = offset + 1;
        room.synced = Some(self.links_lost);
        let _ = self.deliver_numbered(target, message, None, Fill::Overflow, Some(id));
    }

    /// Whether `conn`'s subscribe to `channel` (recovering from `recover`) must wait for the
    /// backplane, and if so from which offset to ask: `Some(None)` for where the stream
    /// stands only.
    fn must_ask(
        &self,
        conn: ConnId,
        channel: &str,
        recover: Option<Position>,
    ) -> Option<Option<u64>> {
        self.config.sequenced_history(channel)?;
        let s = self.session(conn)?;
        let Some(room) = self
            .registry
            .room(s.namespace, channel)
            .map(|id| &self.registry.rooms[id])
        else {
            return Some(recover.map(|p| p.since));
        };
        let synced = room.synced == Some(self.links_lost);
        let from_here = recover.is_none_or(|p| {
            let first = room.history.as_ref().map_or(room.next_offset, |l| l.first);
            p.epoch == room.epoch && (first..=room.next_offset).contains(&p.since)
        });
        if synced && from_here {
            return None;
        }
        // From where this node stands too: what it missed comes with the answer.
        let local = room.synced.map(|_| room.next_offset);
        Some(match (recover, local) {
            (Some(p), Some(next)) => Some(p.since.min(next)),
            (Some(p), None) => Some(p.since),
            (None, next) => next,
        })
    }

    /// Asks the backplane about `channel` of `conn`'s namespace, from offset `from`, and
    /// waits to do `then`.
    fn ask(
        &mut self,
        conn: ConnId,
        channel: &str,
        history: History,
        from: Option<u64>,
        then: Then,
    ) {
        let Some(ns) = self.session(conn).map(|s| s.namespace) else {
            return;
        };
        let waiting = Waiting {
            ns,
            conn: Some(conn),
            channel: channel.to_owned(),
            then,
            again: false,
        };
        let key = (ns, channel.to_owned());
        match self.fetches.in_flight.get(&key) {
            Some(id) => self.fetches.parked.entry(*id).or_default().push(waiting),
            None => {
                let id = self.send_fetch(waiting, history, from);
                self.fetches.in_flight.insert(key, id);
            }
        }
    }

    /// Outputs the question for `waiting`, keeping its room meanwhile. Returns its id.
    fn send_fetch(&mut self, waiting: Waiting, history: History, from: Option<u64>) -> u64 {
        let ns = waiting.ns;
        let namespace = self.registry.namespaces[ns].name.to_string();
        let channel = waiting.channel.clone();
        let room = self.registry.room_or_create(ns, &channel, Some(history));
        self.registry.rooms[room].asking += 1;
        self.fetches.next += 1;
        let id = self.fetches.next;
        self.fetches.waiting.insert(id, waiting);
        self.outputs.push_back(Output::Fetch(Box::new(Fetch {
            id,
            namespace,
            room: channel,
            from,
            history,
        })));
        id
    }

    /// Answers `conn`'s subscribe to `channel` now (it joins), or asks the backplane first.
    pub(super) fn admit(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        recover: Option<Position>,
    ) -> Result<(), crate::error::Error> {
        match (
            self.must_ask(conn, channel, recover),
            self.config.sequenced_history(channel),
        ) {
            (Some(from), Some(history)) => {
                if let Some(s) = self.session_mut(conn) {
                    s.pending_subscribes
                        .insert(channel.to_owned(), (reference.map(str::to_owned), recover));
                }
                self.ask(conn, channel, history, from, Then::Subscribe);
            }
            _ => {
                self.join_quietly(conn, channel, false)?;
                self.subscribed(conn, channel, reference, recover);
            }
        }
        Ok(())
    }

    /// [`Hub::join_pinned_from`] for a channel whose stream is the backplane's and that this
    /// node cannot recover from what it saw: asks, and joins when it answers.
    pub(super) fn join_pinned_asking(
        &mut self,
        conn: ConnId,
        room: &str,
        from: Position,
    ) -> Option<Recovery> {
        let asked = self.must_ask(conn, room, Some(from))?;
        let history = self.config.sequenced_history(room)?;
        self.ask(conn, room, history, asked, Then::JoinPinned(from));
        Some(Recovery::Asked)
    }

    /// Answers a `history` request of `conn` in `channel` from what this node keeps, or asks
    /// the backplane first if it may not have all it asks for.
    pub(super) fn history_here_or_asked(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        since: Option<Position>,
        limit: Option<u64>,
    ) {
        if !self.history_asking(conn, channel, reference, since, limit) {
            self.answer_history(conn, channel, reference, since, limit);
        }
    }

    /// Asks the backplane about a `history` request if this node may not have all it asks
    /// for: returns whether it asked.
    fn history_asking(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        since: Option<Position>,
        limit: Option<u64>,
    ) -> bool {
        let Some(history) = self.config.sequenced_history(channel) else {
            return false;
        };
        let complete = |room: &crate::rooms::Room| {
            let Some(log) = room.history.as_ref() else {
                return true;
            };
            let want = limit.map_or(history.max_len, |l| {
                usize::try_from(l)
                    .unwrap_or(usize::MAX)
                    .min(history.max_len)
            });
            match since {
                Some(p) => p.epoch != room.epoch || p.since >= log.first,
                None => log.first == 0 || log.entries.len() >= want,
            }
        };
        let here = self
            .session(conn)
            .and_then(|s| self.registry.room(s.namespace, channel))
            .map(|id| &self.registry.rooms[id])
            .filter(|room| room.synced == Some(self.links_lost))
            .is_some_and(complete);
        if here {
            return false;
        }
        let then = Then::History {
            reference: reference.map(str::to_owned),
            since,
            limit,
        };
        // Everything it keeps: at most `max_len`, and the older ones go back in the log.
        self.ask(conn, channel, history, Some(0), then);
        true
    }

    /// The backplane's answer to the [`Fetch`] `id`: `Some` with the channel's stream as the
    /// backplane keeps it, or `None` if it could not be asked (the request is then served
    /// from what this node has, as without a backplane). Follow with [`Hub::poll_output`].
    pub fn fetched(&mut self, now: std::time::Instant, id: u64, stream: Option<Stream>) {
        self.clock(now);
        let Some(waiting) = self.fetches.waiting.remove(&id) else {
            return;
        };
        let key = (waiting.ns, waiting.channel.clone());
        if self.fetches.in_flight.get(&key) == Some(&id) {
            self.fetches.in_flight.remove(&key);
        }
        let parked = self.fetches.parked.remove(&id).unwrap_or_default();
        self.serve_answer(waiting, stream);
        for waiting in parked {
            self.again(waiting);
        }
    }

    /// Serves the request whose question was answered (`stream`), after bringing its room up
    /// to the answer.
    fn serve_answer(&mut self, waiting: Waiting, stream: Option<Stream>) {
        let asked = self.registry.room(waiting.ns, &waiting.channel);
        if let Some(id) = asked {
            self.registry.rooms[id].asking -= 1;
        }
        let namespace = self.registry.namespaces[waiting.ns].name.to_string();
        let target = Target::room(namespace, waiting.channel.as_str());
        let top = stream.as_ref().map(|s| Position {
            since: s.next,
            epoch: s.epoch,
        });
        if let Some(stream) = stream {
            let filling = matches!(waiting.then, Then::CatchUp);
            self.catch_up(&target, stream, filling);
        }
        if let (Then::CatchUp, Some(id)) = (&waiting.then, asked) {
            self.release(id, &target);
            self.registry.free_if_unused(id);
            return;
        }
        let Some(conn) = waiting
            .conn
            .filter(|&c| self.session(c).is_some_and(|s| s.takes_answers()))
        else {
            if let Some(id) = asked {
                self.registry.free_if_unused(id);
            }
            return;
        };
        // A room catching up holds publications it has not delivered yet: served after.
        let key = (waiting.ns, waiting.channel.clone());
        let holding = asked.is_some_and(|id| self.registry.rooms[id].held.is_some());
        if let Some(&catching) = self.fetches.in_flight.get(&key).filter(|_| holding) {
            self.fetches
                .parked
                .entry(catching)
                .or_default()
                .push(waiting);
            return;
        }
        let Some(waiting) = self.behind_client(waiting, top) else {
            return; // asked again
        };
        self.serve_waiting(conn, waiting);
    }

    /// A request that waited for another's answer: served now if this node has what it
    /// needs, else asked about in turn.
    fn again(&mut self, waiting: Waiting) {
        let Some(conn) = waiting
            .conn
            .filter(|&c| self.session(c).is_some_and(|s| s.takes_answers()))
        else {
            return;
        };
        let channel = waiting.channel.clone();
        let Some(history) = self.config.sequenced_history(&channel) else {
            return;
        };
        let recover = match &waiting.then {
            Then::Subscribe => match self
                .session(conn)
                .and_then(|s| s.pending_subscribes.get(&channel))
            {
                Some((_, recover)) => *recover,
                None => return, // unsubscribed meanwhile
            },
            Then::JoinPinned(from) => Some(*from),
            Then::History {
                reference,
                since,
                limit,
            } => {
                let (reference, since, limit) = (reference.clone(), *since, *limit);
                // Only for a member still (it may have left while the request waited).
                if self.in_room(conn, &channel) {
                    self.history_here_or_asked(conn, &channel, reference.as_deref(), since, limit);
                }
                return;
            }
            Then::CatchUp => return,
        };
        match self.must_ask(conn, &channel, recover) {
            Some(from) => self.ask(conn, &channel, history, from, waiting.then),
            None => self.serve_waiting(conn, waiting),
        }
    }

    /// Serves `conn`'s request from what this node has.
    fn serve_waiting(&mut self, conn: ConnId, waiting: Waiting) {
        let Waiting {
            ns, channel, then, ..
        } = waiting;
        match then {
            Then::Subscribe => {
                let pending = self
                    .session_mut(conn)
                    .and_then(|s| s.pending_subscribes.remove(&channel));
                if let Some((reference, recover)) = pending {
                    if self.join_quietly(conn, &channel, false).is_ok() {
                        self.subscribed(conn, &channel, reference.as_deref(), recover);
                    }
                }
            }
            Then::JoinPinned(from) => {
                if self.in_room(conn, &channel) {
                    let _ = self.join_pinned(conn, &channel);
                } else if self.join_quietly(conn, &channel, true).is_ok() {
                    let why = Subscribed::Server { pinned: true };
                    self.subscribed_from(conn, &channel, why, from);
                }
            }
            Then::History {
                reference,
                since,
                limit,
            } => {
                if self.in_room(conn, &channel) {
                    self.answer_history(conn, &channel, reference.as_deref(), since, limit);
                }
            }
            Then::CatchUp => {}
        }
        if let Some(id) = self.registry.room(ns, &channel) {
            self.registry.free_if_unused(id);
        }
    }

    /// Asks again, once, for a client that recovers from a position this node has not reached
    /// yet (the publications up to it are still on their way here, and the answer did not
    /// bring them): from where the node is, so that the answer does. `None` if it did.
    fn behind_client(&mut self, waiting: Waiting, top: Option<Position>) -> Option<Waiting> {
        let recover = match &waiting.then {
            Then::JoinPinned(from) => Some(*from),
            Then::Subscribe => waiting
                .conn
                .and_then(|c| self.session(c))
                .and_then(|s| s.pending_subscribes.get(&waiting.channel))
                .and_then(|(_, recover)| *recover),
            Then::History { .. } | Then::CatchUp => None,
        };
        let room = self
            .registry
            .room(waiting.ns, &waiting.channel)
            .map(|id| &self.registry.rooms[id]);
        let (Some(from), Some(top), Some(room)) = (recover, top, room) else {
            return Some(waiting);
        };
        let behind = from.epoch == room.epoch
            && top.epoch == room.epoch
            && room.next_offset < from.since
            && from.since <= top.since;
        let rule = room.history.as_ref().map(|log| log.rule);
        match rule {
            Some(history) if behind && !waiting.again => {
                let from = Some(room.next_offset);
                let waiting = Waiting {
                    again: true,
                    ..waiting
                };
                self.send_fetch(waiting, history, from);
                None
            }
            _ => Some(waiting),
        }
    }

    /// Brings the room of `target` up to the backplane's `stream`: publications it has not
    /// delivered go to its members now, older ones it did not keep go back in its log.
    ///
    /// An answer may be ahead of the publications on their way here. A room that has seen
    /// every publication since the link came up (synced, same epoch) takes from the answer
    /// only what follows on from where it is: the rest is still coming. For a catch-up
    /// (`filling`: a gap seen, or a room that never had the backplane's position) what it
    /// misses is lost, not coming, so it follows the answer past gaps. A room that did not
    /// see every publication follows the answer too, and, unless it holds what arrived
    /// meanwhile (delivered next), starts again at its end.
    fn catch_up(&mut self, target: &Target, stream: Stream, filling: bool) {
        let Some(id) = self.sequenced_room(target) else {
            return;
        };
        let room = &self.registry.rooms[id];
        let following = room.synced == Some(self.links_lost) && room.epoch == stream.epoch;
        if room.epoch != stream.epoch || room.synced.is_none() {
            let start = stream.entries.first().map_or(stream.next, |e| e.0);
            self.restart_stream(id, start, stream.epoch);
        }
        self.registry.rooms[id].synced = Some(self.links_lost);
        let first = self.log_first(id);
        for (offset, message) in stream.entries.iter().rev() {
            if *offset >= first {
                continue;
            }
            let position = Some((*offset, stream.epoch));
            let frame = crate::wire::encode_publication(target, message, position, None);
            if *offset + 1 != self.log_first(id) || !self.keep_older(id, frame) {
                break;
            }
        }
        // A room that holds what arrives (while it catches up) holds these too, ahead of
        // what it holds: members it is still to tell `subscribed` must not get them first.
        let holding = self.registry.rooms[id].held.is_some();
        let mut ahead = Vec::new();
        let mut next = self.registry.rooms[id].next_offset;
        for (offset, message) in stream.entries {
            if offset < next || (following && !filling && offset > next) {
                continue;
            }
            if holding {
                ahead.push((message, offset, stream.epoch));
                next = offset + 1;
            } else {
                self.deliver_at(id, target, &message, offset, stream.epoch);
                next = self.registry.rooms[id].next_offset;
            }
        }
        if let Some(held) = self.registry.rooms[id].held.as_mut() {
            ahead.append(held);
            *held = ahead;
        }
        let room = &self.registry.rooms[id];
        if !following && room.held.is_none() && room.next_offset < stream.next {
            // What came before the end is no longer kept: the stream goes on from there.
            self.restart_stream(id, stream.next, stream.epoch);
        }
    }

    /// The offset of room `id`'s oldest kept publication.
    fn log_first(&self, id: usize) -> u64 {
        self.registry.rooms[id]
            .history
            .as_ref()
            .map_or(0, |log| log.first)
    }
}
