//! What crosses the socket: whole WebSocket messages ([`Frame`]), UTF-8-proven text
//! ([`Text`]) and close codes ([`CloseCode`]).
//!
//! The core never sees WebSocket framing (masking, fragmentation, control-frame rules): the
//! adapter's WebSocket library does that and hands over whole messages.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Bytes that are valid UTF-8, cheap to clone (shared, refcounted).
///
/// Every constructor checks or inherits UTF-8 validity, so an adapter may hand these bytes to
/// its WebSocket library as text without validating them again for each recipient.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(Bytes);

impl Text {
    /// Text from a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `bytes` are UTF-8. Returns them back on failure.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Text(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// The text as a string slice. This re-checks the bytes (O(n)) to stay free of `unsafe`;
    /// an adapter handing a broadcast frame to its WebSocket library per recipient should use
    /// [`Text::into_bytes`] (valid UTF-8 by construction) instead.
    pub fn as_str(&self) -> &str {
        // Valid by construction; `from_utf8` on a valid slice cannot fail, and falling back to
        // "" keeps this free of both `unsafe` and panics.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes (valid UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared bytes (valid UTF-8).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One whole WebSocket message, in either direction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Frame {
    /// A text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
    /// A protocol ping (the payload is echoed in the pong).
    Ping(Bytes),
    /// A protocol pong.
    Pong(Bytes),
}

impl Frame {
    /// A text frame from anything string-like.
    pub fn text(s: impl Into<Text>) -> Self {
        Frame::Text(s.into())
    }

    /// Payload length in bytes: what counts against size limits and queue bounds.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) | Frame::Ping(b) | Frame::Pong(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }
}

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// tidings' own codes live in 4000–4999, the range RFC 6455 §7.4.2 leaves to applications.
/// PROTOCOL.md lists each with whether a client should reconnect.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (graceful shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint does not accept (binary where only text is).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1006: the transport failed; reported locally, never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the peer broke a policy (repeated protocol errors).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message larger than the configured maximum.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1013: try again later (connection limit reached).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4000: the client read too slowly and its outbound queue overflowed.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4000);
    /// 4001: the client sent nothing (not even a pong) within the heartbeat deadline.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4001);
    /// 4002: too many requests or protocol errors in a short time.
    pub const RATE_LIMITED: CloseCode = CloseCode(4002);
    /// 4003: too many subscriptions.
    pub const TOO_MANY_SUBSCRIPTIONS: CloseCode = CloseCode(4003);
    /// 4004: the application refused the connection.
    pub const REFUSED: CloseCode = CloseCode(4004);
    /// 4005: the client did not authenticate in time.
    pub const AUTH_TIMEOUT: CloseCode = CloseCode(4005);
    /// 4006: a newer connection took this connection's name.
    pub const REPLACED: CloseCode = CloseCode(4006);

    /// Whether this code may appear in a close frame on the wire (RFC 6455 §7.4.1–2).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rejects_invalid_utf8() {
        let bad = Bytes::from_static(&[0x66, 0xff, 0x6f]);
        assert_eq!(Text::from_utf8(bad.clone()), Err(bad));
        let good = Text::from_utf8(Bytes::from_static("héllo".as_bytes())).expect("utf-8");
        assert_eq!(good.as_str(), "héllo");
        assert_eq!(good.len(), 6);
    }

    #[test]
    fn accessors_agree_with_the_content() {
        let t = Text::from("héllo");
        assert_eq!(t.as_bytes(), "héllo".as_bytes());
        assert_eq!(
            t.clone().into_bytes(),
            Bytes::from_static("héllo".as_bytes())
        );
        assert!(!t.is_empty());
        assert!(Text::from_static("").is_empty());
        assert_eq!(format!("{t} {t:?}"), "héllo \"héllo\"");
        assert!(Frame::Ping(Bytes::new()).is_empty());
        assert!(!Frame::text("x").is_empty());
        assert_eq!(Frame::Binary(Bytes::from_static(b"abc")).len(), 3);
        assert_eq!(Frame::Binary(Bytes::new()).as_text(), None);
        assert_eq!(CloseCode::SLOW_CONSUMER.to_string(), "4000");
    }

    #[test]
    fn reserved_close_codes_are_not_sendable() {
        assert!(CloseCode::NORMAL.is_sendable());
        assert!(CloseCode::SLOW_CONSUMER.is_sendable());
        assert!(!CloseCode::ABNORMAL.is_sendable());
        assert!(!CloseCode(1005).is_sendable());
        assert!(!CloseCode(1015).is_sendable());
        assert!(!CloseCode(5000).is_sendable());
    }
}
