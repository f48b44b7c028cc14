//! The crate's one error type: misuse of the API and requests the hub refuses.
//!
//! A *peer's* misbehaviour is never an `Err`: it becomes an error frame to the client, a close,
//! and an [`Event`](crate::Event). `Err` is for the application's calls.

use crate::ids::ConnId;

/// Why a call on the [`Hub`](crate::Hub) did not do what was asked.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is inconsistent; the text says which bound.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// No open connection has this id (it closed, or never existed).
    #[error("unknown connection {0}")]
    UnknownConnection(ConnId),
    /// The connection is closing and takes no new work.
    #[error("connection {0} is closing")]
    Closing(ConnId),
    /// `max_connections` are open.
    #[error("too many connections (limit {limit})")]
    TooManyConnections {
        /// The configured limit.
        limit: usize,
    },
    /// The hub is shutting down and accepts no new connections.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// Another connection holds this name and the policy is [`NameConflict::Refuse`](crate::NameConflict::Refuse).
    #[error("connection name {0:?} is taken")]
    NameTaken(String),
    /// The connection's wire protocol has no such thing (acks or recovery on a raw
    /// connection).
    #[error("connection {conn} speaks {protocol}, which has no {what}")]
    NotInProtocol {
        /// The connection.
        conn: ConnId,
        /// Its protocol.
        protocol: crate::protocol::Protocol,
        /// What it has not ("acks", "recovery").
        what: &'static str,
    },
    /// A room, channel, event or namespace name breaks the naming rules.
    #[error("invalid {what} name: {why}")]
    InvalidName {
        /// What was being named ("room", "event", ...).
        what: &'static str,
        /// Which rule it broke.
        why: &'static str,
    },
    /// The connection is in `max_rooms_per_connection` rooms already.
    #[error("connection {conn} is in too many rooms (limit {limit})")]
    TooManyRooms {
        /// The connection.
        conn: ConnId,
        /// The configured limit.
        limit: usize,
    },
    /// The connection has `max_pending_acks` acks outstanding.
    #[error("connection {conn} has too many pending acks (limit {limit})")]
    TooManyPendingAcks {
        /// The connection.
        conn: ConnId,
        /// The configured limit.
        limit: usize,
    },
    /// `max_pending_batches` batches are collecting.
    #[error("too many pending batches (limit {limit})")]
    TooManyBatches {
        /// The configured limit.
        limit: usize,
    },
    /// A batch key already collects items of the other kind (JSON vs text).
    #[error("batch {ident:?} already collects {existing} items")]
    BatchKindMismatch {
        /// The batch's ident.
        ident: String,
        /// The kind it collects.
        existing: &'static str,
    },
    /// A text batch item holds a line break, which would split it in two on the wire.
    #[error("a text batch item may not contain a line break")]
    LineBreakInItem,
    /// The client never asked for this ack, or it was answered already.
    #[error("connection {conn} has no pending ack request {ack}")]
    UnknownAck {
        /// The connection.
        conn: ConnId,
        /// The client's ack id.
        ack: u64,
    },
    /// No subscribe request for this channel is waiting for a decision.
    #[error("connection {conn} has no pending subscribe request for {channel:?}")]
    NoSuchRequest {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: String,
    },
    /// The connection's queue was full: the message was refused, or under
    /// [`SlowConsumerPolicy::Disconnect`](crate::SlowConsumerPolicy::Disconnect) the connection closed.
    #[error("the outbound queue of connection {0} is full")]
    QueueFull(ConnId),
}
