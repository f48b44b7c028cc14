//! The wire protocols a connection may speak, and the seam between the hub and them.
//!
//! A connection's [`Protocol`] is fixed when it opens ([`ConnectionInfo::protocol`], else its
//! subprotocol, else the first [`PathRule`] that matches its path, else `tidings.v1`). The
//! hub decides everything else (rooms, bounds, heartbeats, closes) the same way for every
//! protocol; a [`Codec`] only says what a client frame asks and what an outgoing message
//! looks like on that protocol's wire:
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
//! **A third protocol** (Socket.IO v5 is the likely one) is one more [`Protocol`] variant and
//! one more [`Codec`]: its `decode` maps its packets onto the hub's requests (an `EVENT`
//! packet is an event, with its ack id; `CONNECT` to a namespace is a join), its
//! `publication` and `batch` write the hub's messages as its packets, and `envelopes`
//! becomes the set of hub frames it has an equivalent for. What it would also need beyond
//! this seam: its handshake packet at open (the hub's `welcome` is the place), and the
//! Engine.IO long-polling transport, which is not a WebSocket and so belongs in an adapter.

use std::fmt;

use crate::batch::Batch;
use crate::frame::Frame;
use crate::ids::AckId;
use crate::message::{Message, Target};
use crate::wire::{DecodeError, Request};

/// A wire protocol, chosen per connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// PROTOCOL.md: JSON envelopes, subprotocol `tidings.v1`.
    #[default]
    Tidings,
    /// No envelope: frames are the application's messages as they are, subprotocol
    /// `tidings.raw` (or a path whose [`PathRule`] says so: clients written for wsm or goWs
    /// offer no subprotocol).
    Raw,
}

impl Protocol {
    /// How many protocols there are: the size of per-protocol tables.
    pub(crate) const COUNT: usize = 2;

    /// Every protocol, in the order of their indices.
    pub const ALL: [Protocol; Protocol::COUNT] = [Protocol::Tidings, Protocol::Raw];

    /// The `Sec-WebSocket-Protocol` name that selects this protocol.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Protocol::Tidings => "tidings.v1",
            Protocol::Raw => "tidings.raw",
        }
    }

    /// The protocol a negotiated subprotocol names, if it names one.
    pub fn from_subprotocol(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.subprotocol() == name)
    }

    /// Its index in per-protocol tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Its codec.
    pub(crate) fn codec(self) -> &'static dyn Codec {
        match self {
            Protocol::Tidings => &crate::wire::Tidings,
            Protocol::Raw => &crate::raw::Raw,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subprotocol())
    }
}

/// The event name of a raw connection's messages, in both directions: what
/// [`Event::Message`](crate::Event::Message) carries for a frame it sent, and what a message
/// sent to it is best called (the name is not written: raw frames carry only the data).
pub const RAW_EVENT: &str = "message";

/// What one protocol writes and reads. The hub holds one per [`Protocol`], chosen by
/// [`Protocol::codec`].
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

/// Settings for the connections whose path matches `path`: which protocol they speak (unless
/// their subprotocol names one) and their application heartbeat.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PathRule {
    /// `/raw` matches that path only; `/raw/*` every path under it (`/raw/a/b`), as
    /// `Builder::paths` in tidings-net does.
    pub path: String,
    /// The protocol of connections on these paths. Default [`Protocol::Tidings`].
    pub protocol: Protocol,
    /// The application heartbeat on these paths, in place of
    /// [`Config::app_heartbeat`](crate::Config::app_heartbeat); `None` keeps that one.
    pub app_heartbeat: Option<crate::AppHeartbeat>,
}

impl PathRule {
    /// Connections on `path` speak `protocol`, with the hub-wide heartbeat.
    pub fn new(path: impl Into<String>, protocol: Protocol) -> Self {
        PathRule {
            path: path.into(),
            protocol,
            app_heartbeat: None,
        }
    }

    /// Sets this path's application heartbeat.
    #[must_use]
    pub fn app_heartbeat(mut self, heartbeat: crate::AppHeartbeat) -> Self {
        self.app_heartbeat = Some(heartbeat);
        self
    }

    /// Whether the rule covers `path`.
    pub fn matches(&self, path: &str) -> bool {
        path_matches(&self.path, path)
    }
}

/// Whether `path` is `pattern`, or lies under it if `pattern` ends in `/*` (`/ws/*` takes
/// `/ws/a` and `/ws/a/b`, not `/ws` or `/ws/`).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_exactly_or_under_a_prefix() {
        assert!(path_matches("/ws", "/ws"));
        assert!(!path_matches("/ws", "/ws/x"));
        assert!(path_matches("/ws/*", "/ws/user123/notification"));
        assert!(!path_matches("/ws/*", "/ws"));
        assert!(!path_matches("/ws/*", "/ws/"));
        assert!(!path_matches("/ws/*", "/wsx/a"));
        assert!(PathRule::new("/raw/*", Protocol::Raw).matches("/raw/a"));
    }

    #[test]
    fn subprotocol_names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_subprotocol(p.subprotocol()), Some(p));
            assert_eq!(Protocol::ALL[p.index()], p);
            assert_eq!(p.to_string(), p.subprotocol());
        }
        assert_eq!(Protocol::from_subprotocol("chat"), None);
        assert_eq!(Protocol::default(), Protocol::Tidings);
    }
}
