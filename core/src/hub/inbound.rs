//! Frames from clients: size and type checks, application heartbeats, decoding, and each
//! request (subscribe, unsubscribe, publish, event, ack, ping). Every fault is answered with an
//! `error` frame; too many faults in `error_window` close the connection with 4002.

use std::time::Instant;

use super::{session_in, Hub};
use crate::config::SubscribePolicy;
use crate::frame::{CloseCode, Frame};
use crate::history::Position;
use crate::ids::{AckId, ConnId};
use crate::io::{AckOutcome, Event};
use crate::message::{Message, Target};
use crate::protocol::Protocol;
use crate::request::{Body, ErrorCode, Request};
use crate::session::Fill;
use crate::timers::TimerKey;
use crate::wire::{self, Asked, Envelope};

impl Hub {
    pub(super) fn on_frame(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let max = self.config.max_message_size;
        let Some(s) = session_in(&mut self.sessions, conn) else {
            return;
        };
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        if !s.is_open() {
            return;
        }
        s.last_seen = now;
        if frame.len() > max {
            let reason = format!(
                "message of {} bytes exceeds the limit of {max}",
                frame.len()
            );
            return self.close_now(conn, CloseCode::TOO_BIG, reason);
        }
        if let Some(limit) = self.config.max_inbound_rate {
            let window = self.config.rate_window;
            if now.duration_since(s.rate_since) >= window {
                s.rate_since = now;
                s.rate_count = 0;
            }
            s.rate_count = s.rate_count.saturating_add(1);
            if s.rate_count > limit {
                // Dropped undecoded: only its `id` and `ack` are read, to match the refusal to
                // the request. At most `max_errors` of these are read before 4002.
                let message = format!("more than {limit} messages in {} ms", window.as_millis());
                let code = ErrorCode::TooManyRequests;
                let (id, ack) = wire::peek(&frame);
                let asked = Asked {
                    reference: id.as_deref(),
                    ack,
                    channel: None,
                };
                return self.protocol_error(now, conn, code, &message, asked);
            }
        }
        let protocol = s.protocol;
        match &frame {
            // Liveness only: the WebSocket library answers pings itself.
            Frame::Ping(_) => return,
            Frame::Pong(payload) => return self.on_pong(now, conn, payload),
            Frame::Text(text) => {
                if let Some(hb) = self.config.heartbeat_of(s.rule) {
                    if text.as_str() == hb.ping {
                        let pong = Frame::text(hb.pong.as_str());
                        self.send_back(conn, pong);
                        return;
                    }
                }
            }
            // A raw connection's binary frames are its data.
            Frame::Binary(_) if !self.config.accept_binary && protocol == Protocol::Tidings => {
                let reason = "binary frames are not accepted".to_owned();
                return self.close_now(conn, CloseCode::UNSUPPORTED_DATA, reason);
            }
            Frame::Binary(_) => {}
        }
        match super::codec(protocol).decode(&frame) {
            Ok(request) => self.on_request(now, conn, request),
            Err(e) => {
                let asked = Asked {
                    reference: e.id.as_deref(),
                    ack: e.ack,
                    channel: None,
                };
                self.protocol_error(now, conn, e.code, &e.message, asked);
            }
        }
    }

    /// Answers a client's fault with an `error` frame, or closes the connection once it has
    /// made more than `max_errors` within `error_window`: with 4003 if the fault that crossed
    /// the limit was a subscription past `max_rooms_per_connection`, else 4002.
    pub(super) fn protocol_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        asked: Asked<'_>,
    ) {
        let (window, max) = (self.config.error_window, self.config.max_errors);
        let Some(s) = self.session_mut(conn) else {
            return;
        };
        if now.duration_since(s.errors_since) >= window {
            s.errors = 0;
            s.errors_since = now;
        }
        s.errors += 1;
        let over = s.errors > max;
        self.counters.protocol_errors += 1;
        self.reply(conn, wire::encode_error(code, message, asked));
        if over {
            // Gracefully: the client reads why each request failed, then why it is closed.
            // It takes no more frames meanwhile; the application's answers to the requests
            // it did accept still go out first, and `close_grace` bounds the whole flush.
            let reason = format!("more than {max} protocol errors in {} s", window.as_secs());
            let close = if code == ErrorCode::TooManySubscriptions {
                CloseCode::TOO_MANY_SUBSCRIPTIONS
            } else {
                CloseCode::RATE_LIMITED
            };
            self.begin_close(now, conn, close, reason);
        }
    }

    /// Serves one decoded request; a refusal becomes one `error` frame echoing its `id` (and
    /// answering its ack, if it was an event that asked for one).
    fn on_request(&mut self, now: Instant, conn: ConnId, request: Request) {
        let Request { id, body } = request;
        let ack = match &body {
            Body::Event { ack, .. } => *ack,
            _ => None,
        };
        if let Err(r) = self.serve(now, conn, body, id.as_deref()) {
            let asked = Asked {
                reference: id.as_deref(),
                // A duplicate's number belongs to the request still pending: not answered.
                ack: ack.filter(|_| r.code != ErrorCode::DuplicateAck),
                channel: r.channel.as_deref(),
            };
            self.protocol_error(now, conn, r.code, &r.message, asked);
        }
    }

    fn serve(
        &mut self,
        now: Instant,
        conn: ConnId,
        body: Body,
        id: Option<&str>,
    ) -> Result<(), Refusal> {
        match body {
            Body::Subscribe { channel, recover } => {
                self.valid_name("channel", &channel)?;
                self.on_subscribe(conn, &channel, id, recover)
            }
            Body::History {
                channel,
                since,
                limit,
            } => {
                self.valid_name("channel", &channel)?;
                self.on_history(conn, &channel, id, since, limit)
            }
            Body::Unsubscribe { channel } => {
                if self.is_pinned(conn, &channel) {
                    let refusal = Refusal::new(
                        ErrorCode::UnsubscribeDenied,
                        "the application keeps you in this channel",
                    );
                    return Err(refusal.on(&channel));
                }
                let pending = self
                    .session_mut(conn)
                    .is_some_and(|s| s.pending_subscribes.remove(&channel).is_some());
                if !pending && !self.leave_quietly(conn, &channel).unwrap_or(false) {
                    let refusal = Refusal::new(ErrorCode::NotSubscribed, "not subscribed");
                    // Only a valid name is echoed back.
                    return Err(match self.valid_name("channel", &channel) {
                        Ok(()) => refusal.on(&channel),
                        Err(_) => refusal,
                    });
                }
                let envelope = Envelope {
                    kind: "unsubscribed",
                    channel: Some(&channel),
                    reference: id,
                    ..Envelope::default()
                };
                self.reply(conn, wire::encode(envelope, None));
                Ok(())
            }
            Body::Publish {
                channel,
                event,
                data,
            } => {
                if !self.config.client_publish {
                    return Err(Refusal::new(
                        ErrorCode::PublishNotAllowed,
                        "clients may not publish on this server",
                    ));
                }
                self.valid_name("event", &event)?;
                let s = self.session(conn).ok_or(Refusal::gone())?;
                // The interned name, taken before publishing, for the `Published` event.
                let Some(room) = self
                    .registry
                    .room(s.namespace, &channel)
                    .and_then(|r| s.rooms.get(&r).cloned())
                else {
                    return Err(Refusal::new(
                        ErrorCode::NotSubscribed,
                        "publish to a channel you are not subscribed to",
                    ));
                };
                let namespace = self.registry.namespaces[s.namespace].name.to_string();
                let mut message = Message::new(event.clone(), data.clone());
                message.id = id.map(str::to_owned);
                let room_id = self.registry.room(s.namespace, &channel);
                // The names were checked above, so the publish itself cannot be refused. Its
                // recipients take it past their bound if need be: the sender is then paused,
                // so what it adds is only what the driver had already read.
                let target = Target::room(namespace, channel);
                let delivery = self
                    .publish_filling(now, target, message, Fill::Pushback)
                    .unwrap_or_default();
                if let Some(id) = room_id {
                    self.push_back(conn, Some(id));
                }
                self.event(Event::Published {
                    conn,
                    channel: room,
                    event,
                    data,
                    delivery,
                });
                Ok(())
            }
            Body::Event { event, data, ack } => {
                self.valid_name("event", &event)?;
                if let Some(ack) = ack {
                    let max = self.config.max_pending_acks;
                    let deadline = now + self.config.answer_timeout;
                    let s = self.session_mut(conn).ok_or(Refusal::gone())?;
                    if s.acks_in.contains_key(&ack) {
                        return Err(Refusal::new(
                            ErrorCode::DuplicateAck,
                            "ack id already pending",
                        ));
                    }
                    if s.acks_in.len() >= max {
                        return Err(Refusal::new(
                            ErrorCode::TooManyAcks,
                            "too many unanswered ack requests",
                        ));
                    }
                    s.acks_in.insert(ack, deadline);
                    self.timers.insert(deadline, TimerKey::Answer(conn, ack));
                }
                let id = id.map(str::to_owned);
                self.event(Event::Message {
                    conn,
                    event,
                    data,
                    id,
                    ack,
                });
                Ok(())
            }
            Body::Ack { ack, data } => {
                let ack = AckId(ack);
                // A ping's id is answered by its pong only.
                let asked = self
                    .session_mut(conn)
                    .filter(|s| !s.pings.contains_key(&ack));
                match asked.and_then(|s| s.acks_out.remove(&ack)) {
                    Some(deadline) => {
                        self.timers.remove(deadline, TimerKey::Ack(conn, ack));
                        self.counters.acks_replied += 1;
                        self.event(Event::Ack {
                            conn,
                            ack,
                            outcome: AckOutcome::Reply(data),
                        });
                    }
                    // Unknown, late or duplicate: counted and ignored, never a success.
                    None => self.counters.acks_unknown += 1,
                }
                Ok(())
            }
            Body::Ping => {
                let envelope = Envelope {
                    kind: "pong",
                    reference: id,
                    ..Envelope::default()
                };
                self.reply(conn, wire::encode(envelope, None));
                Ok(())
            }
        }
    }

    fn on_subscribe(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        recover: Option<Position>,
    ) -> Result<(), Refusal> {
        if self.in_room(conn, channel) {
            self.subscribed(conn, channel, reference, recover); // idempotent
            return Ok(());
        }
        let (limit, policy, max_id) = (
            self.config.max_rooms_per_connection,
            self.config.subscribe_policy,
            self.config.max_name_len,
        );
        let s = self.session_mut(conn).ok_or(Refusal::gone())?;
        if s.pending_subscribes.contains_key(channel) {
            return Ok(()); // the application is deciding already
        }
        if s.rooms.len() + s.pending_subscribes.len() >= limit {
            let message = format!("subscription limit of {limit} reached");
            return Err(Refusal::new(ErrorCode::TooManySubscriptions, message).on(channel));
        }
        match policy {
            SubscribePolicy::Open => {
                let _ = self.admit(conn, channel, reference, recover);
            }
            SubscribePolicy::Approve => {
                // The id comes back as `ref` with the decision; a client's id longer than
                // a name is not kept (it would cost memory per pending request).
                let id = reference.filter(|r| r.len() <= max_id);
                s.pending_subscribes
                    .insert(channel.to_owned(), (id.map(str::to_owned), recover));
                self.event(Event::SubscribeRequest {
                    conn,
                    channel: channel.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Answers a `history` request of a member of `channel`: the kept publications from
    /// `since` on (the first `limit` of them), or the last `limit`, or why there are none.
    fn on_history(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        since: Option<Position>,
        limit: Option<u64>,
    ) -> Result<(), Refusal> {
        if !self.in_room(conn, channel) {
            return Err(Refusal::new(ErrorCode::NotSubscribed, "not subscribed").on(channel));
        }
        self.history_here_or_asked(conn, channel, reference, since, limit);
        Ok(())
    }

    /// Answers a `history` request from what this node keeps.
    pub(super) fn answer_history(
        &mut self,
        conn: ConnId,
        channel: &str,
        reference: Option<&str>,
        since: Option<Position>,
        limit: Option<u64>,
    ) {
        let (position, kept) = self.kept_for(conn, channel, since, limit);
        let head = Envelope {
            kind: "history",
            channel: Some(channel),
            reference,
            offset: position.map(|p| p.0),
            epoch: position.map(|p| p.1),
            reason: kept.as_ref().err().map(|e| e.as_str()),
            ..Envelope::default()
        };
        let frame = wire::encode_history(head, kept.iter().flatten());
        self.reply(conn, frame);
    }

    /// Checks a client-supplied name; the refusal never echoes it (it may be 10 MB).
    fn valid_name(&self, what: &str, name: &str) -> Result<(), Refusal> {
        wire::check_name(name, self.config.max_name_len).map_err(|why| {
            Refusal::new(
                ErrorCode::InvalidName,
                format!("invalid {what} name: {why}"),
            )
        })
    }
}

/// Why a well-formed request is refused: one `error` frame with a code and a reason.
struct Refusal {
    code: ErrorCode,
    message: String,
    channel: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            channel: None,
        }
    }

    /// Names the channel the refusal is about.
    fn on(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_owned());
        self
    }

    /// The connection closed while its request was served (its own publish overflowed it).
    /// Nothing will be sent; the code is never seen.
    fn gone() -> Self {
        Refusal::new(ErrorCode::Malformed, "connection closed")
    }
}
