//! What the application sends and where: [`Payload`], [`Message`], [`Target`], and the
//! [`Delivery`] report a publish returns.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::ConnId;

/// The data a message carries.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Payload {
    /// Any JSON value; sent as the `data` field of a text frame.
    Json(Value),
    /// A string; sent as the `data` field (a JSON string) of a text frame.
    Text(String),
    /// Raw bytes; sent as a binary frame after a one-line JSON header (see PROTOCOL.md).
    Binary(Bytes),
}

impl Payload {
    /// The payload as JSON, if it is not binary.
    pub fn as_json(&self) -> Option<Value> {
        match self {
            Payload::Json(v) => Some(v.clone()),
            Payload::Text(s) => Some(Value::String(s.clone())),
            Payload::Binary(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_convert_to_json_unless_binary() {
        assert_eq!(
            Payload::Json(serde_json::json!({"a": 1})).as_json(),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            Payload::Text("hi".into()).as_json(),
            Some(Value::String("hi".into()))
        );
        assert_eq!(Payload::Binary(Bytes::from_static(b"x")).as_json(), None);
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}

impl From<String> for Payload {
    /// Text.
    fn from(s: String) -> Self {
        Payload::Text(s)
    }
}

impl From<&str> for Payload {
    /// Text.
    fn from(s: &str) -> Self {
        Payload::Text(s.to_owned())
    }
}

impl From<Bytes> for Payload {
    /// Binary.
    fn from(b: Bytes) -> Self {
        Payload::Binary(b)
    }
}

impl From<Vec<u8>> for Payload {
    /// Binary.
    fn from(b: Vec<u8>) -> Self {
        Payload::Binary(Bytes::from(b))
    }
}

/// One message from the application to one or many connections.
///
/// Built with [`Message::json`], [`Message::text`] or [`Message::binary`] and the chaining
/// methods for the optional envelope fields.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Message {
    /// The event (type) name the client dispatches on.
    pub event: String,
    /// The data.
    pub payload: Payload,
    /// An id for the message, chosen by the application.
    pub id: Option<String>,
    /// The id of the message this one answers.
    pub reply_to: Option<String>,
    /// A timestamp chosen by the caller (the core reads no clock), e.g. Unix milliseconds.
    pub timestamp: Option<u64>,
    /// A volatile message is dropped for a recipient whose queue is at its bound, instead of
    /// deepening a queue that is behind. It carries no channel `offset`.
    pub volatile: bool,
}

impl Message {
    /// A message of `event` with any payload.
    pub fn new(event: impl Into<String>, payload: Payload) -> Self {
        Message {
            event: event.into(),
            payload,
            id: None,
            reply_to: None,
            timestamp: None,
            volatile: false,
        }
    }

    /// A message with JSON data.
    pub fn json(event: impl Into<String>, data: Value) -> Self {
        Message::new(event, Payload::Json(data))
    }

    /// A message with string data.
    pub fn text(event: impl Into<String>, data: impl Into<String>) -> Self {
        Message::new(event, Payload::Text(data.into()))
    }

    /// A message with binary data.
    pub fn binary(event: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Message::new(event, Payload::Binary(data.into()))
    }

    /// Sets the message id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the id of the message this one replies to.
    #[must_use]
    pub fn reply_to(mut self, id: impl Into<String>) -> Self {
        self.reply_to = Some(id.into());
        self
    }

    /// Sets the caller-supplied timestamp.
    #[must_use]
    pub fn timestamp(mut self, ts: u64) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Marks the message droppable for slow readers. A volatile channel publication is not
    /// part of the channel's numbered stream: it carries no `offset`.
    #[must_use]
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }
}

/// Who a publish goes to, before exceptions.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Scope {
    /// One connection.
    Conn(ConnId),
    /// The members of a room in a namespace.
    Room {
        /// The namespace, e.g. `/`.
        namespace: String,
        /// The room (channel) name.
        room: String,
    },
    /// Every connection in a namespace.
    Namespace(String),
    /// Every connection.
    All,
    /// The connection opened under this name (`ConnectionInfo::name`), if any. Unlike a
    /// connection id, a name means the same on every node: with a backplane, a publish to a
    /// name reaches it on whichever node holds it.
    Name(String),
}

/// Where a publish goes: a [`Scope`], optionally minus one connection (usually the sender).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Target {
    /// The recipients.
    pub scope: Scope,
    /// A connection left out, e.g. the sender of a chat message.
    pub except: Option<ConnId>,
}

impl Target {
    /// One connection.
    pub fn conn(conn: ConnId) -> Self {
        Scope::Conn(conn).into()
    }

    /// The members of `room` in `namespace`.
    pub fn room(namespace: impl Into<String>, room: impl Into<String>) -> Self {
        Scope::Room {
            namespace: namespace.into(),
            room: room.into(),
        }
        .into()
    }

    /// Every connection in `namespace`.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        Scope::Namespace(namespace.into()).into()
    }

    /// The connection opened under `name`, on whichever node holds it.
    pub fn name(name: impl Into<String>) -> Self {
        Scope::Name(name.into()).into()
    }

    /// Every connection.
    pub fn all() -> Self {
        Scope::All.into()
    }

    /// Leaves `conn` out. A channel publication that leaves someone out is not part of the
    /// channel's numbered stream (every member sees every offset): it carries no `offset`.
    #[must_use]
    pub fn except(mut self, conn: ConnId) -> Self {
        self.except = Some(conn);
        self
    }

    /// The channel name the client sees in the envelope, for room targets.
    pub(crate) fn channel(&self) -> Option<&str> {
        match &self.scope {
            Scope::Room { room, .. } => Some(room),
            _ => None,
        }
    }
}

impl From<Scope> for Target {
    fn from(scope: Scope) -> Self {
        Target {
            scope,
            except: None,
        }
    }
}

/// What one publish did, recipient by recipient.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[must_use = "a delivery report says who did not get the message"]
pub struct Delivery {
    /// Recipients whose queue took the message.
    pub queued: usize,
    /// Recipients that skipped it because it was volatile and their queue was at its bound.
    pub dropped: usize,
    /// Recipients that skipped it under [`SlowConsumerPolicy::Refuse`](crate::SlowConsumerPolicy::Refuse)
    /// (queue at twice its bound), or because they had too many pending acks.
    pub refused: Vec<ConnId>,
    /// Recipients closed as slow consumers because of it.
    pub disconnected: Vec<ConnId>,
}

/// A publish carried between nodes by a backplane (see [`Output::Cluster`](crate::Output::Cluster)
/// and [`Hub::handle_remote`](crate::Hub::handle_remote)). Serialisable with serde.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClusterMessage {
    /// A plain publish.
    Publish {
        /// Where it goes (never a single connection, never with an exception: those are
        /// local to the node that published).
        target: Target,
        /// What it carries.
        message: Message,
    },
    /// One item of a batched publish; the receiving node batches it itself.
    Batched {
        /// Where the batch goes.
        target: Target,
        /// The batch key.
        ident: String,
        /// The batch's event name (JSON) or header line (text).
        event: String,
        /// The item: JSON for a JSON batch, a string for a text batch.
        item: Payload,
        /// The item's batching window.
        ttl_ms: u64,
    },
    /// A publication to a channel that keeps history, for the backplane to number with
    /// [`Config::sequenced`](crate::Config::sequenced): it gives it the channel's next offset,
    /// keeps it (at most `max_len`, each for `ttl_ms`) and brings it back to every node, this
    /// one included, as [`ClusterMessage::Sequenced`]. No node delivers it before.
    Sequence {
        /// The channel (always a room, never with an exception).
        target: Target,
        /// What it carries.
        message: Message,
        /// How many of the channel's publications the backplane keeps.
        max_len: usize,
        /// How long it keeps each.
        ttl_ms: u64,
    },
    /// A publication the backplane numbered: every node delivers it with this position.
    Sequenced {
        /// The channel.
        target: Target,
        /// What it carries.
        message: Message,
        /// Its offset in the channel's stream.
        offset: u64,
        /// The stream's epoch.
        epoch: u64,
    },
}
