//! What the hub knows of a connection from its upgrade request: [`ConnectionInfo`].

use core::net::SocketAddr;
use std::borrow::Cow;

use crate::protocol::Protocol;

/// The request a connection was opened with, as the adapter saw it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnectionInfo {
    /// The request path, e.g. `/ws/user123/notification`.
    pub path: String,
    /// The raw query string without `?`, e.g. `user_id=42&token=x`.
    pub query: String,
    /// The peer's address, if known.
    pub remote: Option<SocketAddr>,
    /// Request headers the adapter chose to keep (names compared case-insensitively).
    pub headers: Vec<(String, String)>,
    /// The namespace the connection belongs to. Default `/`.
    pub namespace: String,
    /// A unique name to find the connection by, e.g. its path. Default none.
    pub name: Option<String>,
    /// The wire protocol it speaks, if the adapter chose it (from the negotiated
    /// subprotocol, or because the application said so). `None`: the first of
    /// `Config::paths` that matches `path` decides, else `tidings.v1`. Once open, the hub's
    /// copy ([`Hub::info`](crate::Hub::info)) holds the protocol it chose.
    pub protocol: Option<Protocol>,
}

impl ConnectionInfo {
    /// A connection on `path` in the default namespace `/`.
    pub fn new(path: impl Into<String>) -> Self {
        ConnectionInfo {
            path: path.into(),
            query: String::new(),
            remote: None,
            headers: Vec::new(),
            namespace: "/".into(),
            name: None,
            protocol: None,
        }
    }

    /// Sets the raw query string.
    #[must_use]
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// Sets the peer address.
    #[must_use]
    pub fn remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// Sets the unique name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the wire protocol.
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The first header called `name`, compared case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `key`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<Cow<'_, str>> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_query_is_decoded() {
        let info = ConnectionInfo::new("/ws")
            .query("user_id=a%20b&x=1&user_id=second")
            .header("Authorization", "Bearer t");
        assert_eq!(info.header_value("authorization"), Some("Bearer t"));
        assert_eq!(info.header_value("cookie"), None);
        assert_eq!(info.query_param("user_id").as_deref(), Some("a b"));
        assert_eq!(info.query_param("x").as_deref(), Some("1"));
        assert_eq!(info.query_param("missing"), None);
    }
}
