//! The wire protocols a connection may speak ([`Protocol`]), and how a path is matched.
//!
//! A connection's protocol is fixed when it opens ([`ConnectionInfo::protocol`], else its
//! subprotocol, else the first `Config::paths` rule that matches its path, else
//! `tidings.v1`). What each protocol reads and writes is its codec (`codec.rs`).
//!
//! [`ConnectionInfo::protocol`]: crate::ConnectionInfo::protocol

use std::fmt;

/// A wire protocol, chosen per connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// PROTOCOL.md: JSON envelopes, subprotocol `tidings.v1`.
    #[default]
    Tidings,
    /// No envelope: frames are the application's messages as they are, subprotocol
    /// `tidings.raw` (or a path whose [`PathRule`](crate::PathRule) says so: clients written
    /// for wsm or goWs offer no subprotocol).
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
