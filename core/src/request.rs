//! What a client asks, whatever its wire protocol: the [`Request`] a codec decodes a frame
//! into, why a frame could not be decoded, and the codes of refusals ([`ErrorCode`]), which
//! `tidings.v1` writes in its `error` frames.

use crate::history::Position;
use crate::message::Payload;

/// Machine-readable codes of `error` frames (the `code` field).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, not an object, a field of the wrong type, or a binary frame without header.
    Malformed,
    /// A `type` this server does not know.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A channel or event name breaks the naming rules.
    InvalidName,
    /// Unsubscribe from, or publish to, a channel the connection is not in.
    NotSubscribed,
    /// The application denied the subscription.
    SubscribeDenied,
    /// The connection is in too many channels.
    TooManySubscriptions,
    /// The connection has too many unanswered ack requests.
    TooManyAcks,
    /// An ack id that is already waiting for its answer.
    DuplicateAck,
    /// Clients may not publish on this server.
    PublishNotAllowed,
    /// The connection sent more messages than its rate limit allows; this one was dropped.
    TooManyRequests,
    /// The client tried to leave a channel the application keeps it in.
    UnsubscribeDenied,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::SubscribeDenied => "subscribe_denied",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyAcks => "too_many_acks",
            ErrorCode::DuplicateAck => "duplicate_ack",
            ErrorCode::PublishNotAllowed => "publish_not_allowed",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::UnsubscribeDenied => "unsubscribe_denied",
        }
    }
}

/// A decoded client request: what it asks, and the client's `id` to echo as `ref`.
#[derive(Debug, PartialEq)]
pub(crate) struct Request {
    pub id: Option<String>,
    pub body: Body,
}

/// What a client request asks.
#[derive(Debug, PartialEq)]
pub(crate) enum Body {
    Subscribe {
        channel: String,
        /// Where the client's view stands, to recover from (`since` and `epoch`).
        recover: Option<Position>,
    },
    /// The channel's kept publications: the last `limit`, or those from a position on.
    History {
        channel: String,
        since: Option<Position>,
        limit: Option<u64>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        event: String,
        data: Payload,
    },
    Event {
        event: String,
        data: Payload,
        ack: Option<u64>,
    },
    Ack {
        ack: u64,
        data: Payload,
    },
    Ping,
}

/// Why a client frame could not be decoded, with what it asked when that was readable: its
/// `id`, and the `ack` number of an `event`.
#[derive(Debug, PartialEq)]
pub(crate) struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub id: Option<String>,
    pub ack: Option<u64>,
}
