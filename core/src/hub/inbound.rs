//! Frames from clients: size and type checks, application heartbeats, decoding, and each
//! request (subscribe, unsubscribe, publish, event, ack, ping). Every fault is answered with an
//! `error` frame; too many faults in `error_window` close the connection with 4002.

use std::time::Instant;

use super::{session_in, Hub};
use crate::config::SubscribePolicy;
use crate::frame::{CloseCode, Frame};
use crate::ids::{AckId, ConnId};
use crate::io::{AckOutcome, Event};
use crate::message::{Message, Target};
use crate::timers::TimerKey;
use crate::wire::{self, Envelope, ErrorCode, Request};

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
        let decoded = match &frame {
            // Liveness only: the WebSocket library answers pings itself.
            Frame::Ping(_) | Frame::Pong(_) => return,
            Frame::Text(text) => {
                if let Some(hb) = &self.config.app_heartbeat {
                    if text.as_str() == hb.ping {
                        let pong = Frame::text(hb.pong.as_str());
                        return self.reply(conn, pong);
                    }
                }
                wire::decode_text(text.as_str())
            }
            Frame::Binary(bytes) => {
                if !self.config.accept_binary {
                    let reason = "binary frames are not accepted".to_owned();
                    return self.close_now(conn, CloseCode::UNSUPPORTED_DATA, reason);
                }
                wire::decode_binary(bytes)
            }
        };
        match decoded {
            Ok(request) => self.on_request(now, conn, request),
            Err(e) => self.protocol_error(now, conn, e.code, &e.message, e.id.as_deref(), None),
        }
    }

    /// Answers a client's fault with an `error` frame, or closes the connection once it has
    /// made more than `max_errors` within `error_window`.
    pub(super) fn protocol_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        reference: Option<&str>,
        channel: Option<&str>,
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
        if s.errors > max {
            let reason = format!("more than {max} protocol errors in {} s", window.as_secs());
            return self.close_now(conn, CloseCode::RATE_LIMITED, reason);
        }
        self.counters.protocol_errors += 1;
        self.reply(conn, wire::encode_error(code, message, reference, channel));
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, request: Request) {
        let max_name = self.config.max_name_len;
        // Names are checked before they are echoed anywhere: a 10 MB name never is.
        let bad_name = |what: &str, name: &str| {
            wire::check_name(name, max_name)
                .err()
                .map(|why| format!("invalid {what} name: {why}"))
        };
        match request {
            Request::Subscribe { channel, id } => {
                if let Some(msg) = bad_name("channel", &channel) {
                    return self.protocol_error(
                        now,
                        conn,
                        ErrorCode::InvalidName,
                        &msg,
                        id.as_deref(),
                        None,
                    );
                }
                self.on_subscribe(now, conn, &channel, id.as_deref());
            }
            Request::Unsubscribe { channel, id } => {
                let pending = self
                    .session_mut(conn)
                    .is_some_and(|s| s.pending_subscribes.remove(&channel));
                if pending || self.leave(conn, &channel).unwrap_or(false) {
                    let frame = wire::encode(
                        Envelope {
                            kind: "unsubscribed",
                            channel: Some(&channel),
                            reference: id.as_deref(),
                            ..Envelope::default()
                        },
                        None,
                    );
                    self.reply(conn, frame);
                } else {
                    let channel = bad_name("channel", &channel)
                        .is_none()
                        .then_some(channel.as_str());
                    self.protocol_error(
                        now,
                        conn,
                        ErrorCode::NotSubscribed,
                        "not subscribed",
                        id.as_deref(),
                        channel,
                    );
                }
            }
            Request::Publish {
                channel,
                event,
                data,
                id,
            } => {
                if !self.config.client_publish {
                    let msg = "clients may not publish on this server";
                    return self.protocol_error(
                        now,
                        conn,
                        ErrorCode::PublishNotAllowed,
                        msg,
                        id.as_deref(),
                        None,
                    );
                }
                if let Some(msg) = bad_name("event", &event) {
                    return self.protocol_error(
                        now,
                        conn,
                        ErrorCode::InvalidName,
                        &msg,
                        id.as_deref(),
                        None,
                    );
                }
                if !self.in_room(conn, &channel) {
                    return self.protocol_error(
                        now,
                        conn,
                        ErrorCode::NotSubscribed,
                        "publish to a channel you are not subscribed to",
                        id.as_deref(),
                        None,
                    );
                }
                let Some(s) = self.session(conn) else { return };
                let namespace = self.registry.namespaces[s.namespace].name.to_string();
                // The interned name, taken before publishing: a full queue may close the sender.
                let room = self
                    .registry
                    .room(s.namespace, &channel)
                    .and_then(|id| s.rooms.get(&id).cloned());
                let mut message = Message::new(event.clone(), data.clone());
                message.id = id;
                let _ = self.publish(now, Target::room(namespace, channel.as_str()), message);
                if let Some(channel) = room {
                    self.event(Event::Published {
                        conn,
                        channel,
                        event,
                        data,
                    });
                }
            }
            Request::Event {
                event,
                data,
                id,
                ack,
            } => {
                if let Some(msg) = bad_name("event", &event) {
                    return self.protocol_error(
                        now,
                        conn,
                        ErrorCode::InvalidName,
                        &msg,
                        id.as_deref(),
                        None,
                    );
                }
                if let Some(ack) = ack {
                    let max = self.config.max_pending_acks;
                    let Some(s) = self.session_mut(conn) else {
                        return;
                    };
                    if s.acks_in.contains(&ack) {
                        return self.protocol_error(
                            now,
                            conn,
                            ErrorCode::DuplicateAck,
                            "ack id already pending",
                            id.as_deref(),
                            None,
                        );
                    }
                    if s.acks_in.len() >= max {
                        return self.protocol_error(
                            now,
                            conn,
                            ErrorCode::TooManyAcks,
                            "too many unanswered ack requests",
                            id.as_deref(),
                            None,
                        );
                    }
                    s.acks_in.insert(ack);
                }
                self.event(Event::Message {
                    conn,
                    event,
                    data,
                    id,
                    ack,
                });
            }
            Request::Ack { ack, data } => {
                let ack = AckId(ack);
                let resolved = self.session_mut(conn).and_then(|s| s.acks_out.remove(&ack));
                match resolved {
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
            }
            Request::Ping { id } => {
                let frame = wire::encode(
                    Envelope {
                        kind: "pong",
                        reference: id.as_deref(),
                        ..Envelope::default()
                    },
                    None,
                );
                self.reply(conn, frame);
            }
        }
    }

    fn on_subscribe(&mut self, now: Instant, conn: ConnId, channel: &str, reference: Option<&str>) {
        if self.in_room(conn, channel) {
            return self.send_subscribed(conn, channel, reference); // idempotent
        }
        let (limit, policy) = (
            self.config.max_rooms_per_connection,
            self.config.subscribe_policy,
        );
        let Some(s) = self.session_mut(conn) else {
            return;
        };
        if s.pending_subscribes.contains(channel) {
            return; // the application is deciding already
        }
        if s.rooms.len() + s.pending_subscribes.len() >= limit {
            let msg = format!("subscription limit of {limit} reached");
            return self.protocol_error(
                now,
                conn,
                ErrorCode::TooManySubscriptions,
                &msg,
                reference,
                Some(channel),
            );
        }
        match policy {
            SubscribePolicy::Open => {
                if self.join(conn, channel).is_ok() {
                    self.send_subscribed(conn, channel, reference);
                }
            }
            SubscribePolicy::Approve => {
                s.pending_subscribes.insert(channel.to_owned());
                self.event(Event::SubscribeRequest {
                    conn,
                    channel: channel.to_owned(),
                });
            }
        }
    }
}
