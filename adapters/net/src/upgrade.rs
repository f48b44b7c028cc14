//! The RFC 6455 server handshake over hyper: checking the upgrade request, choosing a
//! subprotocol, and the answers (101, or a refusal with a status that says why).
//!
//! A refusal is the `Err` of these checks: it is the response itself, built once per
//! refused request, so it is not boxed.
#![allow(clippy::result_large_err)]

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::server::HttpResponse;
use crate::Error;

fn refuse(status: StatusCode, body: &str) -> HttpResponse {
    let mut response = Response::new(Full::from(format!("{body}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether a comma-separated header holds `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value to answer with.
pub(crate) fn check_request<B>(req: &Request<B>) -> Result<String, HttpResponse> {
    let headers = req.headers();
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        let mut response = refuse(StatusCode::UPGRADE_REQUIRED, "this is a WebSocket endpoint");
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Err(response);
    }
    if req.method() != http::Method::GET {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_key(key.as_bytes()) => {
            Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}

/// A key is 16 bytes in base64: 22 alphabet characters, then `==`.
fn is_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first subprotocol the client lists that the server speaks; `None` if the client
/// lists none; a 400 if it lists some and none is spoken here.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    supported: &[String],
) -> Result<Option<String>, HttpResponse> {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    if offered.peek().is_none() {
        return Ok(None);
    }
    match offered.find(|p| supported.iter().any(|s| s == p)) {
        Some(p) => Ok(Some(p.to_owned())),
        None => Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "no supported subprotocol (this server speaks {})",
                supported.join(", ")
            ),
        )),
    }
}

/// The answer when the hub will not open the connection.
pub(crate) fn refusal(error: Error) -> HttpResponse {
    use tidings_core::Error as Hub;
    match error {
        Error::Hub(Hub::TooManyConnections { .. }) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at its connection limit",
        ),
        Error::Hub(Hub::ShuttingDown) | Error::Stopped => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ),
        Error::Hub(Hub::NameTaken(_)) => refuse(StatusCode::CONFLICT, "that name is connected"),
        Error::Hub(e @ Hub::InvalidName { .. }) => refuse(StatusCode::BAD_REQUEST, &e.to_string()),
        e => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// 101 Switching Protocols.
pub(crate) fn switching(accept_key: &str, protocol: Option<String>) -> HttpResponse {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_good_request_gets_the_rfc_accept_key() {
        // RFC 6455 section 1.3's example.
        assert_eq!(
            check_request(&request(&GOOD)).ok().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn an_upgrade_needs_both_upgrade_and_connection_headers() {
        for missing in [0, 1] {
            let h: Vec<_> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, h)| *h)
                .collect();
            let r = check_request(&request(&h)).expect_err("not an upgrade");
            assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
            assert_eq!(r.headers()[header::UPGRADE], "websocket");
        }
        let mut h = GOOD.to_vec();
        h[0] = ("upgrade", "h2c");
        assert!(check_request(&request(&h)).is_err());
    }

    #[test]
    fn keys_use_the_whole_base64_alphabet() {
        let mut h = GOOD.to_vec();
        h[3] = ("sec-websocket-key", "abcdefghijklmnopqrst+/==");
        assert!(check_request(&request(&h)).is_ok());
    }

    #[test]
    fn bad_version_gets_426_with_the_version_we_speak() {
        let mut h = GOOD.to_vec();
        h[2] = ("sec-websocket-version", "8");
        let r = check_request(&request(&h)).expect_err("refused");
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn bad_key_gets_400() {
        for key in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            let mut h = GOOD.to_vec();
            h[3] = ("sec-websocket-key", key);
            let r = check_request(&request(&h)).expect_err("refused");
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "key {key:?}");
        }
    }

    #[test]
    fn subprotocols_first_supported_in_client_order_wins() {
        let supported = vec!["tidings.v1".to_owned(), "tidings.v2".to_owned()];
        let h = |v: &str| request(&[("sec-websocket-protocol", v)]).headers().clone();
        assert_eq!(
            negotiate(&h("x, tidings.v2, tidings.v1"), &supported).ok(),
            Some(Some("tidings.v2".into()))
        );
        assert_eq!(negotiate(&HeaderMap::new(), &supported).ok(), Some(None));
        let refused = negotiate(&h("mqtt"), &supported).expect_err("none spoken");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
