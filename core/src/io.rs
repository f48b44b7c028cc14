//! The hub's vocabulary with its driver: [`Input`] in, [`Output`] and [`Event`] out.

use std::sync::Arc;

use crate::frame::{CloseCode, Frame};
use crate::history::Fetch;
use crate::ids::{AckId, ConnId};
use crate::message::{ClusterMessage, Delivery, Payload};

/// What the driver feeds the hub through [`Hub::handle`](crate::Hub::handle).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// A whole message arrived from `conn`.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The message.
        frame: Frame,
    },
    /// The driver wrote `frames` of the frames it took from [`Output::Transmit`] for `conn`
    /// (in order). Frees their room in the connection's queue.
    ///
    /// A driver may hold reports back and sum them, so long as nothing waits on one: frames
    /// past [`Config::write_window`](crate::Config::write_window) wait for room in it, and
    /// while [`Hub::any_behind`](crate::Hub::any_behind) a paused client or a waiting
    /// publish may. Reporting at least once per quarter of the window written, and every
    /// report at once while a queue is behind, keeps everything moving.
    Written {
        /// The connection.
        conn: ConnId,
        /// How many frames were written.
        frames: usize,
    },
    /// The peer closed the connection (close frame or end of stream). Its state is freed now.
    PeerClosed {
        /// The connection.
        conn: ConnId,
        /// The peer's close code, if it sent one (reported as 1005, "no status", if not).
        code: Option<CloseCode>,
        /// The peer's reason.
        reason: String,
    },
    /// The WebSocket layer refused what the peer sent: a message over the size limit (1009),
    /// a malformed frame (1002), a text message that is not UTF-8 (1007). The connection is
    /// closed at once with `code` and `reason`, dropping its queue (the peer is broken, and
    /// it may not be reading).
    Violation {
        /// The connection.
        conn: ConnId,
        /// The close code to send.
        code: CloseCode,
        /// What the peer did.
        reason: String,
    },
    /// Reading or writing failed. The connection is closed after `error_close_delay`.
    TransportError {
        /// The connection.
        conn: ConnId,
        /// What failed, for the disconnect event.
        error: String,
    },
}

/// What the hub asks of its driver, pulled with [`Hub::poll_output`](crate::Hub::poll_output).
#[derive(Clone, Debug)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Write `frame` to `conn`, then report it with [`Input::Written`].
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The frame (shared bytes: cloning is cheap).
        frame: Frame,
    },
    /// Close `conn`: send a close frame with `code` and `reason` if
    /// [`CloseCode::is_sendable`] (1006 is not: just drop the socket), then drop the socket.
    /// The hub has already forgotten the connection; later inputs for it are ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: CloseCode,
        /// The reason (at most 123 bytes, as a close frame allows).
        reason: String,
    },
    /// Stop reading from `conn` (let TCP push back on it): a room it published to has a
    /// member whose queue is behind. Frames already read are still fed to the hub.
    PauseReading {
        /// The connection.
        conn: ConnId,
    },
    /// Read from `conn` again.
    ResumeReading {
        /// The connection.
        conn: ConnId,
    },
    /// Something the application should know. Boxed, as `Cluster` is: an `Output` is moved
    /// out of every `poll_output`, frames most often, and an inline event tripled its size
    /// (a fan-out spent a tenth of its time copying it).
    Event(Box<Event>),
    /// A publish for the backplane to carry to the other nodes (only with `Config::cluster`).
    /// Boxed: it is rare and large, and every `poll_output` moves an `Output`.
    Cluster(Box<ClusterMessage>),
    /// A question for the backplane about a channel whose history it keeps (only with
    /// `Config::sequenced`): answer it with [`Hub::fetched`](crate::Hub::fetched).
    Fetch(Box<Fetch>),
}

/// Who ended a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Initiator {
    /// The hub (a limit, a timeout, the application's close, shutdown).
    Server,
    /// The peer (close frame or end of stream).
    Peer,
    /// The transport (a read or write error).
    Transport,
}

/// How a server→client ack request (or a [`Hub::ping`](crate::Hub::ping)) ended. Each
/// request ends exactly once.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum AckOutcome {
    /// The client answered with this data.
    Reply(Payload),
    /// The pong of a [`Hub::ping`](crate::Hub::ping) came back after this long.
    Pong(std::time::Duration),
    /// No answer before the deadline.
    TimedOut,
    /// The connection closed first.
    Closed,
}

/// Events for the application.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection was opened.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// A connection is gone; its state is freed.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// The close code (the peer's, or the one the hub sent).
        code: CloseCode,
        /// The reason.
        reason: String,
        /// Who ended it.
        initiator: Initiator,
    },
    /// A client sent an event. If `ack` is set, answer with
    /// [`Hub::reply_ack`](crate::Hub::reply_ack).
    Message {
        /// The sender.
        conn: ConnId,
        /// The event name.
        event: String,
        /// The data.
        data: Payload,
        /// The client's message id.
        id: Option<String>,
        /// The client's ack request id.
        ack: Option<u64>,
    },
    /// A client published to a channel (with `Config::client_publish`); it was already
    /// queued for every member of the channel, the sender included (a member whose queue is
    /// behind takes it past the bound, and the sender's reading pauses: see
    /// [`Output::PauseReading`]).
    Published {
        /// The sender.
        conn: ConnId,
        /// The channel.
        channel: Arc<str>,
        /// The event name.
        event: String,
        /// The data.
        data: Payload,
        /// What the publish did, recipient by recipient.
        delivery: Delivery,
    },
    /// A client asks to subscribe (with [`SubscribePolicy::Approve`](crate::SubscribePolicy::Approve)).
    SubscribeRequest {
        /// The connection.
        conn: ConnId,
        /// The channel.
        channel: String,
    },
    /// A connection joined a room.
    Joined {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: Arc<str>,
    },
    /// A connection left a room (on request, by the server, or because it closed).
    Left {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: Arc<str>,
    },
    /// A server→client ack request ended.
    Ack {
        /// The connection asked.
        conn: ConnId,
        /// The request.
        ack: AckId,
        /// How it ended.
        outcome: AckOutcome,
    },
    /// Shutdown finished: every connection is closed.
    ShutdownComplete,
}
