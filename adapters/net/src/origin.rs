//! [`OriginPolicy`]: which web pages may open a WebSocket to the server.
//!
//! Browsers send `Origin` with every WebSocket upgrade and let any page connect anywhere, so
//! a server that ignores it lets any site act as its logged-in users (cross-site WebSocket
//! hijacking). Clients that are not browsers send no `Origin` and are not at that risk.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

type Predicate = Arc<dyn Fn(Option<&str>, &HeaderMap) -> bool + Send + Sync>;

/// Which `Origin`s may upgrade. Refused upgrades get HTTP 403 before any WebSocket exists.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// The default: the `Origin`'s host and port must equal the `Host` header's (default
    /// ports compared as such). A request without `Origin` (not from a browser) is allowed.
    #[default]
    SameOrigin,
    /// Only origins matching one of these patterns: exact (`https://app.example.com`,
    /// `http://localhost:8080`), any subdomain (`https://*.example.com`, which does not match
    /// `example.com` itself), or any port (`http://localhost:*`). A request without `Origin`
    /// is refused.
    AllowList(Vec<String>),
    /// Every origin, and none. Only by explicit choice: it lets any web page connect with
    /// the user's cookies.
    AllowAll,
    /// A predicate over the `Origin` (if any) and the request headers.
    Custom(Predicate),
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::SameOrigin => f.write_str("SameOrigin"),
            OriginPolicy::AllowList(list) => f.debug_tuple("AllowList").field(list).finish(),
            OriginPolicy::AllowAll => f.write_str("AllowAll"),
            OriginPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl OriginPolicy {
    /// An allow-list of origin patterns (see [`OriginPolicy::AllowList`]).
    pub fn allow<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OriginPolicy::AllowList(patterns.into_iter().map(Into::into).collect())
    }

    /// A custom predicate (see [`OriginPolicy::Custom`]).
    pub fn custom(f: impl Fn(Option<&str>, &HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        OriginPolicy::Custom(Arc::new(f))
    }

    /// Whether a request with these headers may upgrade.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let origin = header(http::header::ORIGIN);
        match self {
            OriginPolicy::AllowAll => true,
            OriginPolicy::Custom(f) => f(origin, headers),
            OriginPolicy::SameOrigin => match origin {
                None => true,
                Some(origin) => match (Origin::parse(origin), header(http::header::HOST)) {
                    (Some(o), Some(host)) => o.same_authority(host),
                    _ => false,
                },
            },
            OriginPolicy::AllowList(patterns) => origin
                .and_then(Origin::parse)
                .is_some_and(|o| patterns.iter().any(|p| o.matches(p))),
        }
    }
}

/// An `Origin` value split into its parts, lowercased.
struct Origin {
    scheme: String,
    host: String,
    port: Option<String>,
}

impl Origin {
    /// `scheme://host[:port]`; `None` for `null` or anything with a path.
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_port(authority);
        let scheme = scheme.to_ascii_lowercase();
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Origin {
            host: host.to_ascii_lowercase(),
            port: port.map(str::to_owned),
            scheme,
        })
    }

    /// Whether the origin names the same host and port as a `Host` header.
    fn same_authority(&self, host_header: &str) -> bool {
        let (host, port) = split_port(host_header);
        let port = port.filter(|p| Some(*p) != default_port(&self.scheme));
        self.host.eq_ignore_ascii_case(host) && self.port.as_deref() == port
    }

    fn matches(&self, pattern: &str) -> bool {
        let Some((scheme, authority)) = pattern.split_once("://") else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let (host, port) = split_port(authority);
        let port_ok = match port {
            Some("*") => true,
            Some(p) => {
                Some(p) == self.port.as_deref()
                    || Some(p) == default_port(&self.scheme) && self.port.is_none()
            }
            None => self.port.is_none(),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match host.strip_prefix("*.") {
            Some(domain) => self
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.host,
        };
        port_ok && host_ok
    }
}

/// `host:port` → (`host`, `port`), minding IPv6 brackets (`[::1]:80`).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    // A port's colon comes after an IPv6 literal's closing bracket, if there is one.
    let after_host = authority.rfind(']').unwrap_or(0);
    match authority[after_host..].rfind(':') {
        Some(i) => (
            &authority[..after_host + i],
            Some(&authority[after_host + i + 1..]),
        ),
        None => (authority, None),
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, host.parse().expect("host"));
        if let Some(o) = origin {
            h.insert(http::header::ORIGIN, o.parse().expect("origin"));
        }
        h
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.permits(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(p.permits(&headers(Some("https://Example.com"), "example.com:443")));
        assert!(p.permits(&headers(None, "example.com")), "not a browser");
        assert!(!p.permits(&headers(Some("http://evil.com"), "example.com")));
        assert!(!p.permits(&headers(Some("http://example.com:81"), "example.com")));
        assert!(!p.permits(&headers(Some("null"), "example.com")));
        assert!(p.permits(&headers(Some("http://[::1]:9000"), "[::1]:9000")));
    }

    #[test]
    fn allow_list_patterns() {
        let p = OriginPolicy::allow([
            "https://*.example.com",
            "http://localhost:*",
            "http://a.test:8080",
        ]);
        let ok = |o: &str| p.permits(&headers(Some(o), "server"));
        assert!(ok("https://app.example.com"));
        assert!(ok("https://a.b.example.com"));
        assert!(!ok("https://example.com"), "the wildcard needs a subdomain");
        assert!(!ok("https://evil-example.com"));
        assert!(!ok("https://app.example.com.evil.com"));
        assert!(!ok("http://app.example.com"), "the scheme must match");
        assert!(ok("http://localhost:3000"));
        assert!(ok("http://localhost"));
        assert!(ok("http://a.test:8080"));
        assert!(!ok("http://a.test:8081"));
        assert!(!p.permits(&headers(None, "server")), "no Origin, no entry");
    }

    #[test]
    fn ports_paths_and_ipv6_edges() {
        let same = OriginPolicy::SameOrigin;
        assert!(same.permits(&headers(Some("http://example.com"), "example.com:80")));
        assert!(same.permits(&headers(Some("http://[::]"), "[::]")));
        assert!(!same.permits(&headers(Some("http://[::]"), "[::]:81")));
        assert_eq!(split_port("[::]"), ("[::]", None));
        assert_eq!(split_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_port("a.test:8080"), ("a.test", Some("8080")));
        assert!(Origin::parse("http://").is_none());
        assert!(Origin::parse("http://a.com/path").is_none());
        assert!(Origin::parse("http://user@a.com").is_none());
        assert!(Origin::parse("a.com").is_none());
        let p = OriginPolicy::allow([
            "https://a.test:443",
            "http://[::1]:8080",
            "https://*.b.test",
        ]);
        let ok = |o: &str| p.permits(&headers(Some(o), "server"));
        assert!(ok("https://a.test"), "443 is https' default port");
        assert!(!ok("https://a.test:444"));
        assert!(!ok("http://a.test"));
        assert!(ok("http://[::1]:8080"));
        assert!(!ok("http://[::1]:9090"));
        assert!(!ok("https://.b.test"), "an empty label is no subdomain");
        assert_eq!(
            format!("{p:?}"),
            format!(
                "AllowList({:?})",
                [
                    "https://a.test:443",
                    "http://[::1]:8080",
                    "https://*.b.test"
                ]
            )
        );
        assert_eq!(
            format!("{:?}", OriginPolicy::custom(|_, _| true)),
            "Custom(..)"
        );
    }

    #[test]
    fn allow_all_and_custom() {
        assert!(OriginPolicy::AllowAll.permits(&headers(Some("http://x"), "y")));
        let p = OriginPolicy::custom(|o, _| o == Some("http://ok"));
        assert!(p.permits(&headers(Some("http://ok"), "y")));
        assert!(!p.permits(&headers(Some("http://no"), "y")));
    }
}
