//! Publishing: encode a message once, fan the shared bytes out to every recipient's queue,
//! apply the slow-consumer policy, register acks, and collect batched items; a publish to a
//! channel whose stream the backplane numbers goes to it instead (`sequenced.rs` delivers it
//! when it comes back).

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::{session_in, Hub};
use crate::batch::{self, Batch, Kind};
use crate::config::{Config, SlowConsumerPolicy};
use crate::error::Error;
use crate::frame::{CloseCode, Frame};
use crate::ids::{AckId, ConnId};
use crate::io::Output;
use crate::message::{ClusterMessage, Delivery, Message, Payload, Scope, Target};
use crate::metrics::Counters;
use crate::outbound::{Block, Shelf};
use crate::protocol::Protocol;
use crate::session::{Fill, Offer, Session};
use crate::timers::{TimerKey, Timers};
use crate::wire::{self, Envelope};

/// The close reason of a queue that reached twice its bound.
pub(super) const OVERFLOW: &str = "outbound queue overflow: the client reads too slowly";

/// One outgoing message as each protocol writes it, encoded the first time a recipient
/// that speaks that protocol needs it: once per protocol, never per member.
pub(super) struct Outgoing<'a> {
    what: What<'a>,
    frames: [OnceCell<Option<Frame>>; Protocol::COUNT],
}

enum What<'a> {
    Publication {
        target: &'a Target,
        message: &'a Message,
        position: Option<(u64, u64)>,
        ack: Option<AckId>,
    },
    Batch(&'a Batch),
}

impl<'a> Outgoing<'a> {
    /// A publication of `message` to `target`, at `position` in its channel's stream,
    /// asking for `ack`.
    pub(super) fn publication(
        target: &'a Target,
        message: &'a Message,
        position: Option<(u64, u64)>,
        ack: Option<AckId>,
    ) -> Self {
        Outgoing::of(What::Publication {
            target,
            message,
            position,
            ack,
        })
    }

    fn of(what: What<'a>) -> Self {
        Outgoing {
            what,
            frames: Default::default(),
        }
    }

    /// The frame for members that speak `protocol`; `None` if they do not get it.
    pub(super) fn frame(&self, protocol: Protocol) -> Option<&Frame> {
        self.frames[protocol.index()]
            .get_or_init(|| {
                let codec = super::codec(protocol);
                match &self.what {
                    What::Publication {
                        target,
                        message,
                        position,
                        ack,
                    } => codec.publication(target, message, *position, *ack),
                    What::Batch(batch) => Some(codec.batch(batch)),
                }
            })
            .as_ref()
    }
}

/// Offers one message, encoded once per protocol, to many sessions. Holds the hub's tables
/// by field so the room's member set can be read while sessions are written.
struct Fanout<'a> {
    sessions: &'a mut Slab<Session>,
    ready: &'a mut VecDeque<ConnId>,
    timers: &'a mut Timers,
    counters: &'a mut Counters,
    config: &'a Config,
    outgoing: &'a Outgoing<'a>,
    /// The room's shelves, taken out of it while its members are read, if it has members
    /// enough to share: each protocol's frame is written there once for its members.
    shelves: Option<[Shelf; Protocol::COUNT]>,
    /// Each protocol's frame as its recipients take it, once the first of them needed it.
    prepared: [Prepared; Protocol::COUNT],
    volatile: bool,
    /// How far this frame may fill a queue (see [`Fill`]).
    fill: Fill,
    ack: Option<(AckId, Instant)>,
    except: Option<ConnId>,
    delivery: Delivery,
    /// Recipients whose queue this publish took past its bound.
    behind: Vec<ConnId>,
}

/// One protocol's frame in a fan-out, once the first of its recipients needed it.
#[derive(Default)]
enum Prepared {
    /// No recipient of this protocol yet.
    #[default]
    Unprepared,
    /// Its recipients do not get this message.
    Skipped,
    /// The frame, its length, and where it was written on the room's shelf if it was.
    Ready(Frame, usize, Option<(Arc<Block>, u16)>),
}

impl Prepared {
    /// Encodes `outgoing` for `protocol`, and writes it on its shelf if there are shelves.
    #[cold]
    fn new(
        outgoing: &Outgoing<'_>,
        shelves: &mut Option<[Shelf; Protocol::COUNT]>,
        protocol: Protocol,
    ) -> Self {
        let Some(frame) = outgoing.frame(protocol).cloned() else {
            return Prepared::Skipped;
        };
        let shared = shelves
            .as_mut()
            .map(|s| s[protocol.index()].put(frame.clone()));
        let len = frame.len();
        Prepared::Ready(frame, len, shared)
    }
}

impl Fanout<'_> {
    #[inline]
    fn offer(&mut self, conn: ConnId) {
        if self.except == Some(conn) {
            return;
        }
        let Some(s) = session_in(self.sessions, conn) else {
            return;
        };
        let protocol = s.protocol;
        let prepared = &mut self.prepared[protocol.index()];
        if let Prepared::Unprepared = prepared {
            *prepared = Prepared::new(self.outgoing, &mut self.shelves, protocol);
        }
        let Prepared::Ready(frame, len, shared) = prepared else {
            return;
        };
        if self.ack.is_some()
            && (!super::codec(protocol).envelopes()
                || s.acks_out.len() >= self.config.max_pending_acks)
        {
            self.delivery.refused.push(conn);
            return;
        }
        let bound = self.config.bound();
        let offer = match shared {
            Some((block, at)) => s.offer_shared(block, *at, *len, bound, self.fill),
            None => s.offer(frame.clone(), bound, self.fill),
        };
        match offer {
            Offer::Queued => {
                self.delivery.queued += 1;
                if let Some((ack, deadline)) = self.ack {
                    s.acks_out.insert(ack, deadline);
                    self.timers.insert(deadline, TimerKey::Ack(conn, ack));
                }
                s.wake(self.ready, conn, self.config.write_window);
                if !s.behind && s.over(bound) {
                    self.behind.push(conn);
                }
            }
            Offer::Full if self.volatile => {
                self.delivery.dropped += 1;
                self.counters.dropped += 1;
            }
            Offer::Full => match self.config.slow_consumer {
                SlowConsumerPolicy::Disconnect => self.delivery.disconnected.push(conn),
                SlowConsumerPolicy::Refuse => {
                    self.counters.refused += 1;
                    self.delivery.refused.push(conn);
                }
            },
            Offer::NotOpen => {}
        }
    }
}

impl Hub {
    /// Publishes `message` to `target`. The frame is encoded once and shared by every
    /// recipient. With `Config::cluster`, the publish is also output for other nodes (unless
    /// it targets one connection). Follow with [`Hub::poll_output`].
    ///
    /// Recipients whose queue is behind still get it, up to twice their bound; call
    /// [`Hub::can_take`] first to publish only when that is not needed.
    pub fn publish(
        &mut self,
        now: Instant,
        target: Target,
        message: Message,
    ) -> Result<Delivery, Error> {
        self.publish_filling(now, target, message, Fill::Overflow)
    }

    /// [`Hub::publish`], filling recipients' queues as far as `fill` allows.
    pub(super) fn publish_filling(
        &mut self,
        now: Instant,
        target: Target,
        message: Message,
        fill: Fill,
    ) -> Result<Delivery, Error> {
        self.clock(now);
        self.check_event_name(&message.event)?;
        self.check_target(&target)?;
        if self.sequence(&target, &message) {
            return Ok(Delivery::default()); // delivered when the backplane has numbered it
        }
        self.forward(&target, || ClusterMessage::Publish {
            target: Target {
                scope: target.scope.clone(),
                except: None,
            },
            message: message.clone(),
        });
        Ok(self.deliver(&target, &message, None, fill))
    }

    /// Sends `message` to one connection. Fails if it is not open; a queue at twice its bound
    /// shows in the report (and closes it under [`SlowConsumerPolicy::Disconnect`]).
    pub fn emit(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: Message,
    ) -> Result<Delivery, Error> {
        self.open_session(conn)?;
        self.publish(now, Target::conn(conn), message)
    }

    /// Sends `message` to one connection and asks it to acknowledge within `timeout` (default
    /// `Config::ack_timeout`). Exactly one [`Event::Ack`](crate::Event::Ack) follows for the
    /// returned id: the reply, a timeout, or the connection's close. A raw connection has no
    /// acks: [`Error::NotInProtocol`].
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: Message,
        timeout: Option<Duration>,
    ) -> Result<AckId, Error> {
        let s = self.enveloped_session(conn, "acks")?;
        if s.acks_out.len() >= self.config.max_pending_acks {
            return Err(Error::TooManyPendingAcks {
                conn,
                limit: self.config.max_pending_acks,
            });
        }
        let (ack, delivery) = self.publish_with_ack(now, Target::conn(conn), message, timeout)?;
        if delivery.queued == 1 {
            Ok(ack)
        } else {
            Err(Error::QueueFull(conn))
        }
    }

    /// Publishes `message` to `target`, asking every recipient to acknowledge. Each recipient
    /// that got it resolves once, as its own [`Event::Ack`](crate::Event::Ack) with the shared
    /// id. Recipients with `max_pending_acks` outstanding, and those whose protocol has no
    /// acks (raw), are skipped and listed in [`Delivery::refused`]. Acks are local to this
    /// node: nothing is output for the cluster.
    pub fn publish_with_ack(
        &mut self,
        now: Instant,
        target: Target,
        message: Message,
        timeout: Option<Duration>,
    ) -> Result<(AckId, Delivery), Error> {
        let now = self.clock(now);
        self.check_event_name(&message.event)?;
        self.check_target(&target)?;
        self.next_ack += 1;
        let ack = AckId(self.next_ack);
        let deadline = now + timeout.unwrap_or(self.config.ack_timeout);
        let delivery = self.deliver(&target, &message, Some((ack, deadline)), Fill::Overflow);
        Ok((ack, delivery))
    }

    /// Answers a client event that asked for an ack (its [`Event::Message`](crate::Event::Message)
    /// had `ack: Some(id)`) with `{"type":"ack","ack":id,"data":...}`. Each request is
    /// answered once, by this, [`Hub::answer_error`] or its deadline
    /// (`Config::answer_timeout`). The answer is never dropped: past the queue's bound it is
    /// still queued, and the client is paused until it reads (see `hub/flow.rs`); a connection
    /// the server is closing gracefully sends it before its close frame.
    pub fn reply_ack(
        &mut self,
        now: Instant,
        conn: ConnId,
        ack: u64,
        data: Payload,
    ) -> Result<(), Error> {
        self.clock(now);
        self.take_ack_in(conn, ack)?;
        let frame = wire::encode(
            Envelope {
                kind: "ack",
                ack: Some(ack),
                ..Envelope::default()
            },
            Some(&data),
        );
        self.answer(conn, frame);
        Ok(())
    }

    /// Answers a client event with the application's error `code` and `message`. An event
    /// that asked for an ack (`ack`) has it answered:
    /// `{"type":"ack","ack":n,"error":{"code":...,"message":...}}`. Any other gets an `error`
    /// event, `{"type":"event","event":"error","ref":id,"data":{"code":...,"message":...}}`,
    /// with the event's `id` as `ref` if it had one. (Protocol errors are `error` frames; these
    /// are the application's.)
    pub fn answer_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: Option<&str>,
        ack: Option<u64>,
        code: &str,
        message: &str,
    ) -> Result<(), Error> {
        self.clock(now);
        let frame = match ack {
            Some(ack) => {
                self.take_ack_in(conn, ack)?;
                wire::encode_failed_ack(ack, code, message)
            }
            None => {
                self.open_session(conn)?;
                let data = Payload::Json(serde_json::json!({ "code": code, "message": message }));
                wire::encode(
                    Envelope {
                        kind: "event",
                        event: Some("error"),
                        reference: id,
                        ..Envelope::default()
                    },
                    Some(&data),
                )
            }
        };
        self.answer(conn, frame);
        Ok(())
    }

    /// Takes a pending client ack request off its connection (and its deadline off the
    /// timers), for its one answer.
    fn take_ack_in(&mut self, conn: ConnId, ack: u64) -> Result<(), Error> {
        let s = self
            .session_mut(conn)
            .ok_or(Error::UnknownConnection(conn))?;
        if !s.takes_answers() {
            return Err(Error::Closing(conn));
        }
        let deadline = s
            .acks_in
            .remove(&ack)
            .ok_or(Error::UnknownAck { conn, ack })?;
        self.timers.remove(deadline, TimerKey::Answer(conn, ack));
        Ok(())
    }

    /// Encodes once and fans out; closes the recipients the policy disconnects.
    pub(super) fn deliver(
        &mut self,
        target: &Target,
        message: &Message,
        ack: Option<(AckId, Instant)>,
        fill: Fill,
    ) -> Delivery {
        let mut numbered_in = None;
        if let Scope::Room { namespace, room } = &target.scope {
            // The channel's stream, numbered without gaps, holds only what every member gets:
            // a publication that leaves someone out, or that may be dropped for a member that
            // is behind, carries no offset (PROTOCOL.md, "Offsets and epochs"). Where the
            // backplane numbers the stream, only it does.
            let numbered = target.except.is_none()
                && !message.volatile
                && self.config.sequenced_history(room).is_none();
            let existing = self.registry.room_by_names(namespace, room);
            // A channel that keeps history keeps its stream with nobody in it, so that its
            // members can come back and recover (not on a hub shutting down: no one can).
            let history = (existing.is_none() && numbered && !self.shutting_down)
                .then(|| self.config.history_of(room))
                .flatten();
            let id = match (existing, history) {
                (Some(id), _) => id,
                (None, Some(history)) => {
                    let ns = self.registry.namespace_or_create(namespace);
                    self.registry.room_or_create(ns, room, Some(history))
                }
                (None, None) => return Delivery::default(), // nobody is in it
            };
            if numbered {
                let room = &mut self.registry.rooms[id];
                room.next_offset += 1;
                numbered_in = Some(id);
            }
        }
        self.deliver_numbered(target, message, ack, fill, numbered_in)
    }

    /// Encodes `message` once, with the position of room `numbered_in` (its offset the one
    /// before `next_offset`) if it is part of that room's stream, keeps it if the room keeps
    /// history, and fans it out.
    pub(super) fn deliver_numbered(
        &mut self,
        target: &Target,
        message: &Message,
        ack: Option<(AckId, Instant)>,
        fill: Fill,
        numbered_in: Option<usize>,
    ) -> Delivery {
        let position = numbered_in.map(|id| {
            let room = &self.registry.rooms[id];
            (room.next_offset - 1, room.epoch)
        });
        let outgoing = Outgoing::publication(target, message, position, ack.map(|a| a.0));
        let kept_in = numbered_in.filter(|&id| self.registry.rooms[id].history.is_some());
        // Kept before it is offered to anyone: a member that recovers later cannot miss it.
        // History keeps the `tidings.v1` frame: only that protocol recovers.
        if let (Some(id), Some(frame)) = (kept_in, outgoing.frame(Protocol::Tidings)) {
            self.keep(id, frame);
        }
        let delivery = self.fan_out(target, &outgoing, message.volatile, ack, fill);
        if let Some(id) = kept_in {
            // A room nobody is in whose only publication did not fit under the cap.
            self.registry.free_if_unused(id);
        }
        delivery
    }

    /// Offers `outgoing` to every recipient of `target`.
    pub(super) fn fan_out(
        &mut self,
        target: &Target,
        outgoing: &Outgoing<'_>,
        volatile: bool,
        ack: Option<(AckId, Instant)>,
        fill: Fill,
    ) -> Delivery {
        let room_id = match &target.scope {
            Scope::Room { namespace, room } => self.registry.room_by_names(namespace, room),
            _ => None,
        };
        // A room's members share one copy; one recipient gains nothing from a shared block.
        let shelves = room_id
            .map(|id| &mut self.registry.rooms[id])
            .filter(|room| room.members.len() > 1)
            .map(|room| std::mem::take(&mut room.shelves));
        let (registry, names) = (&self.registry, &self.names);
        let mut f = Fanout {
            sessions: &mut self.sessions,
            ready: &mut self.ready,
            timers: &mut self.timers,
            counters: &mut self.counters,
            config: &self.config,
            outgoing,
            shelves,
            prepared: Default::default(),
            volatile,
            // A volatile frame is dropped rather than deepen a queue that is behind.
            fill: if volatile { Fill::Bound } else { fill },
            ack,
            except: target.except,
            delivery: Delivery::default(),
            behind: Vec::new(),
        };
        match &target.scope {
            Scope::Conn(conn) => f.offer(*conn),
            Scope::Room { .. } => {
                if let Some(id) = room_id {
                    registry.rooms[id].members.iter().for_each(|&c| f.offer(c));
                }
            }
            Scope::Namespace(ns) => {
                if let Some(id) = registry.namespace(ns) {
                    registry.namespaces[id]
                        .members
                        .iter()
                        .for_each(|&c| f.offer(c));
                }
            }
            Scope::All => {
                for (_, ns) in registry.namespaces.iter() {
                    ns.members.iter().for_each(|&c| f.offer(c));
                }
            }
            Scope::Name(name) => {
                if let Some(&conn) = names.get(name.as_str()) {
                    f.offer(conn);
                }
            }
        }
        let (delivery, behind) = (f.delivery, f.behind);
        if let (Some(id), Some(shelves)) = (room_id, f.shelves) {
            self.registry.rooms[id].shelves = shelves;
        }
        self.counters.deliveries += delivery.queued as u64;
        for conn in behind {
            self.check_behind(conn);
        }
        for &conn in &delivery.disconnected {
            self.close_now(conn, CloseCode::SLOW_CONSUMER, OVERFLOW.into());
        }
        delivery
    }

    /// Adds `data` to the JSON batch `(target, ident)`. Items collect until `ttl` after the
    /// first one (or until the batch is full), then go out as one frame
    /// `{"type":"batch","event":event,"channel":...,"messages":[...]}`.
    pub fn publish_batched(
        &mut self,
        now: Instant,
        target: Target,
        ident: &str,
        event: &str,
        data: serde_json::Value,
        ttl: Duration,
    ) -> Result<(), Error> {
        let now = self.clock(now);
        self.batch_item(now, target, ident, event, Payload::Json(data), ttl, true)
    }

    /// Adds a line to the text batch `(target, ident)`, which goes out as one text frame: the
    /// `header` line, then one line per item. A `line` with a line break (`\n` or `\r`) is
    /// refused with [`Error::LineBreakInItem`]: it would read as two items.
    pub fn publish_batched_text(
        &mut self,
        now: Instant,
        target: Target,
        ident: &str,
        header: &str,
        line: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        let now = self.clock(now);
        if line.contains(['\n', '\r']) {
            return Err(Error::LineBreakInItem);
        }
        self.batch_item(
            now,
            target,
            ident,
            header,
            Payload::Text(line.to_owned()),
            ttl,
            true,
        )
    }

    /// Whether items for `(target, ident)` are collecting (not yet flushed or cancelled).
    pub fn batch_pending(&self, target: &Target, ident: &str) -> bool {
        self.batches.find(target, ident).is_some()
    }

    /// Drops the pending batch `(target, ident)` unsent. Returns whether there was one.
    pub fn cancel_batch(&mut self, target: &Target, ident: &str) -> bool {
        self.batches.cancel(&mut self.timers, target, ident)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_item(
        &mut self,
        now: Instant,
        target: Target,
        ident: &str,
        event: &str,
        item: Payload,
        ttl: Duration,
        forward: bool,
    ) -> Result<(), Error> {
        self.check_event_name(event)?;
        self.check_target(&target)?;
        let (kind, bytes) = match &item {
            Payload::Text(line) => (Kind::Text, line.as_bytes().to_vec()),
            Payload::Json(v) => (
                Kind::Json,
                serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec()),
            ),
            Payload::Binary(_) => {
                return Err(Error::BatchKindMismatch {
                    ident: ident.into(),
                    existing: "binary",
                })
            }
        };
        let limits = batch::Limits {
            max_batches: self.config.max_pending_batches,
            max_items: self.config.max_batch_items,
            max_bytes: self.config.max_batch_bytes,
        };
        let full = self.batches.add(
            &mut self.timers,
            now,
            target.clone(),
            ident,
            event,
            kind,
            &bytes,
            ttl,
            &limits,
        )?;
        if forward {
            self.forward(&target, || ClusterMessage::Batched {
                target: Target {
                    scope: target.scope.clone(),
                    except: None,
                },
                ident: ident.to_owned(),
                event: event.to_owned(),
                item,
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            });
        }
        if let Some(id) = full {
            self.flush_batch(id);
        }
        Ok(())
    }

    /// Sends a batch now, if it is still pending.
    pub(super) fn flush_batch(&mut self, id: usize) {
        let Some(batch) = self.batches.take(&mut self.timers, id) else {
            return;
        };
        self.counters.batches_flushed += 1;
        let outgoing = Outgoing::of(What::Batch(&batch));
        let _ = self.fan_out(&batch.target, &outgoing, false, None, Fill::Overflow);
    }

    /// Sends a publish to `target` to the backplane to be numbered, if the channel's stream
    /// is the backplane's. Returns whether it did.
    pub(super) fn sequence(&mut self, target: &Target, message: &Message) -> bool {
        let Scope::Room { room, .. } = &target.scope else {
            return false;
        };
        if target.except.is_some() || message.volatile {
            return false;
        }
        let Some(history) = self.config.sequenced_history(room) else {
            return false;
        };
        self.outputs
            .push_back(Output::Cluster(Box::new(ClusterMessage::Sequence {
                target: target.clone(),
                message: message.clone(),
                max_len: history.max_len,
                ttl_ms: u64::try_from(history.ttl.as_millis()).unwrap_or(u64::MAX),
            })));
        true
    }

    /// With `Config::cluster`, outputs a message for the backplane (never for one connection).
    fn forward(&mut self, target: &Target, message: impl FnOnce() -> ClusterMessage) {
        if self.config.cluster && !matches!(target.scope, Scope::Conn(_)) {
            self.outputs.push_back(Output::Cluster(Box::new(message())));
        }
    }

    pub(super) fn check_event_name(&self, event: &str) -> Result<(), Error> {
        wire::check_name(event, self.config.max_name_len)
            .map_err(|why| Error::InvalidName { what: "event", why })
    }

    fn check_target(&self, target: &Target) -> Result<(), Error> {
        let max = self.config.max_name_len;
        let check = |what, name: &str| {
            wire::check_name(name, max).map_err(|why| Error::InvalidName { what, why })
        };
        match &target.scope {
            Scope::Room { namespace, room } => {
                check("namespace", namespace).and(check("room", room))
            }
            Scope::Namespace(ns) => check("namespace", ns),
            Scope::Name(name) if name.is_empty() => Err(Error::InvalidName {
                what: "connection name",
                why: "empty",
            }),
            Scope::Conn(_) | Scope::All | Scope::Name(_) => Ok(()),
        }
    }
}
