//! The seam between the hub and the wire protocols: a [`Codec`] says what a client frame
//! asks and what an outgoing message looks like on one protocol's wire. The hub decides
//! everything else (rooms, bounds, heartbeats, closes) the same way for every protocol, and
//! `hub::codec` is the one place that picks each [`Protocol`](crate::Protocol)'s codec:
//!
//! - **`tidings.v1`** (`wire.rs`, PROTOCOL.md): JSON envelopes with requests, acks, errors,
//!   batches and recovery.
//! - **raw** (`raw.rs`): no envelope. Each text or binary frame a client sends is one
//!   message for the application, as it came; what the application sends is written as it
//!   is. The hub's own frames (welcome, subscribed, errors, acks, history) do not exist.
//!
//! A fan-out encodes a message once per protocol among its recipients, never per member
//! (see `hub/publish.rs`).
//!
//! **A third protocol** (Socket.IO v5 is the likely one) is one more `Protocol` variant, one
//! more [`Codec`] and its line in `hub::codec`. Its `decode` maps its packets onto the hub's
//! requests (an `EVENT` packet is an event, with its ack id; `CONNECT` to a namespace is a
//! join); its `publication` and `batch` write the hub's messages as its packets; and
//! `envelopes` becomes the set of hub frames it has an equivalent for. What it would also
//! need beyond this seam: its handshake packet at open (the hub's `welcome` is the place),
//! and the Engine.IO long-polling transport, which is not a WebSocket and so belongs in an
//! adapter.

use crate::batch::Batch;
use crate::frame::Frame;
use crate::ids::AckId;
use crate::message::{Message, Target};
use crate::request::{DecodeError, Request};

/// What one protocol writes and reads.
pub(crate) trait Codec: Sync {
    /// What a client's text or binary frame asks; a fault is answered with an `error`
    /// frame where the protocol has them (see `envelopes`), and always counts toward
    /// `Config::max_errors`.
    fn decode(&self, frame: &Frame) -> Result<Request, DecodeError>;

    /// A publication of `message` to `target`, at `position` in its channel's stream
    /// (offset, epoch), asking for `ack`. `None`: this protocol's members do not get it.
    fn publication(
        &self,
        target: &Target,
        message: &Message,
        position: Option<(u64, u64)>,
        ack: Option<AckId>,
    ) -> Option<Frame>;

    /// The one frame a flushed batch leaves as.
    fn batch(&self, batch: &Batch) -> Frame;

    /// Whether the protocol has the hub's own frames: `welcome`, `subscribed`, `error`,
    /// `ack`, `pong`, `history` and recovery replays, and so client requests, acks asked of
    /// the client, and channel recovery.
    fn envelopes(&self) -> bool;
}
