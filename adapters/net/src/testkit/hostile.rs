//! Hostile peers over a real socket: bytes no WebSocket library would send, crafted by hand,
//! and the close code (or HTTP status) each must get. Other clients stay unaffected.

use std::time::{Duration, Instant};

use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;
use tidings_core::{CloseCode, Config, Target};

use super::*;

/// A WebSocket frame as a client sends it: `fin`, `rsv` bits, opcode, masked (with the
/// all-zero key, so the payload reads as is) unless `masked` is false, any declared length.
fn frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    masked: bool,
    declared: Option<u64>,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask = if masked { 0x80 } else { 0 };
    let len = declared.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(mask | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    out.extend_from_slice(payload);
    out
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 0, 1, payload, true, None)
}

/// A raw TCP connection that has done the upgrade handshake by hand.
async fn upgraded<R: Runtime>(rt: &R, server: &Server<R>) -> R::TcpStream {
    let mut tcp = rt
        .connect(&server.local_addr().to_string())
        .await
        .expect("connect");
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// Reads an HTTP response head (up to the blank line; less if the connection ends).
async fn read_head<S: futures_lite::AsyncRead + Unpin>(tcp: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        // A reset (a connection turned away) ends the head like a close does.
        if !matches!(tcp.read(&mut byte).await, Ok(1..)) {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads server frames until a close frame; returns its code (`None` if the stream ended
/// without one). Fails after 5 s.
async fn close_code<R: Runtime>(rt: &R, tcp: &mut R::TcpStream) -> Option<u16> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Parse whole frames from the front of the buffer (server frames are unmasked).
            while buf.len() >= 2 {
                let opcode = buf[0] & 0x0F;
                let (len, start) = match buf[1] & 0x7F {
                    126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                    127 if buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&buf[2..10]);
                        (u64::from_be_bytes(n) as usize, 10)
                    }
                    126 | 127 => break,
                    n => (usize::from(n), 2),
                };
                if buf.len() < start + len {
                    break;
                }
                if opcode == 8 {
                    let body = &buf[start..start + len];
                    return (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                }
                buf.drain(..start + len);
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let sleep = rt.sleep_until(Instant::now() + Duration::from_secs(5));
    or(read, async {
        sleep.await;
        panic!("no close frame within 5 s");
    })
    .await
}

/// Sends `bytes` on a fresh upgraded connection and returns the close code it gets, while
/// a well-behaved client on the same server keeps working.
async fn answer_to<R: Runtime>(rt: &R, server: &Server<R>, bytes: &[u8]) -> Option<u16> {
    let bystander = client(rt, server, "/ws").await;
    let mut tcp = upgraded(rt, server).await;
    let _ = tcp.write_all(bytes).await;
    let code = close_code(rt, &mut tcp).await;
    bystander
        .ping()
        .await
        .expect("other clients are unaffected");
    code
}

pub async fn protocol_violations_close_with_1002<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let ping = br#"{"type":"ping"}"#;
    let cases: [(&str, Vec<u8>); 6] = [
        (
            "unmasked client frame",
            frame(true, 0, 1, ping, false, None),
        ),
        ("reserved bits set", frame(true, 0b100, 1, ping, true, None)),
        ("unknown opcode", frame(true, 0, 3, ping, true, None)),
        (
            "control frame over 125 bytes",
            frame(true, 0, 9, &[0; 126], true, None),
        ),
        (
            "fragmented control frame",
            frame(false, 0, 9, b"x", true, None),
        ),
        (
            "continuation without a start",
            frame(true, 0, 0, b"x", true, None),
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(answer_to(&rt, &server, &bytes).await, Some(1002), "{what}");
    }
}

pub async fn bad_close_frames_get_1002_and_good_ones_an_echo<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    for (what, body) in [
        ("a 1-byte body", vec![3u8]),
        ("code 999", 999u16.to_be_bytes().to_vec()),
        ("code 1005 (reserved)", 1005u16.to_be_bytes().to_vec()),
        ("code 5000", 5000u16.to_be_bytes().to_vec()),
    ] {
        let bytes = frame(true, 0, 8, &body, true, None);
        assert_eq!(answer_to(&rt, &server, &bytes).await, Some(1002), "{what}");
    }
    let good = frame(true, 0, 8, &4000u16.to_be_bytes(), true, None);
    assert_eq!(answer_to(&rt, &server, &good).await, Some(4000), "echoed");
}

pub async fn oversized_and_endless_messages_close_with_1009<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    // A header that declares 2^63 - 1 bytes: refused from the header, nothing allocated.
    let huge = frame(true, 0, 2, &[], true, Some(u64::MAX >> 1));
    assert_eq!(
        answer_to(&rt, &server, &huge).await,
        Some(1009),
        "2^63 declared"
    );
    // Continuation frames that never end: refused once past the message limit (64 KiB).
    let mut endless = frame(false, 0, 1, &[b'a'; 1000], true, None);
    for _ in 0..100 {
        endless.extend(frame(false, 0, 0, &[b'a'; 1000], true, None));
    }
    assert_eq!(
        answer_to(&rt, &server, &endless).await,
        Some(1009),
        "endless continuation"
    );
    let counters = server.handle().counters().await.expect("counters");
    assert_eq!(counters.closes.get(&CloseCode::TOO_BIG), Some(&2));
}

pub async fn invalid_utf8_closes_with_1007<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    assert_eq!(
        answer_to(&rt, &server, &text(&[b'"', 0xC3, 0x28, b'"'])).await,
        Some(1007)
    );
    // Split across fragments, the check is on the whole message.
    let mut split = frame(false, 0, 1, &[b'"', 0xE2, 0x82], true, None);
    split.extend(frame(true, 0, 0, &[0x28, b'"'], true, None));
    assert_eq!(answer_to(&rt, &server, &split).await, Some(1007));
}

pub async fn binary_where_text_is_expected_closes_with_1003<R: Runtime>(rt: R) {
    let config = Config::default().accept_binary(false);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let binary = frame(true, 0, 2, b"{\"type\":\"ping\"}\n", true, None);
    assert_eq!(answer_to(&rt, &server, &binary).await, Some(1003));
}

pub async fn huge_names_get_an_error_reply_and_the_connection_stays<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let name = "n".repeat(10_000);
    raw_send(
        &mut ws,
        json!({"type": "subscribe", "channel": name, "id": "big"}),
    )
    .await;
    let reply = raw_json(&rt, &mut ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("invalid_name"))
    );
    assert_eq!(reply["ref"], "big");
    assert!(reply.to_string().len() < 500, "the name is not echoed back");
    // An invalid event name (a control character) gets the same answer.
    raw_send(
        &mut ws,
        json!({"type": "event", "event": "bad\nname", "id": "ctl"}),
    )
    .await;
    let reply = raw_json(&rt, &mut ws).await;
    assert_eq!(
        (reply["code"].as_str(), reply["ref"].as_str()),
        (Some("invalid_name"), Some("ctl"))
    );
    // A 10 MB name cannot arrive at all: the message limit (64 KiB) closes with 1009 first,
    // which oversized_and_endless_messages_close_with_1009 covers.
    raw_send(&mut ws, json!({"type": "ping", "id": "still"})).await;
    assert_eq!(
        raw_json(&rt, &mut ws).await,
        json!({"type": "pong", "ref": "still"})
    );
}

pub async fn connection_cap_refuses_with_503<R: Runtime>(rt: R) {
    let config = Config::default().max_connections(1);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let first = client(&rt, &server, "/ws").await;
    let second = raw(&rt, &server.ws_url("/ws"), &[]).await;
    let (status, body) = second.err().expect("refused");
    assert_eq!(status, 503);
    assert!(body.contains("connection limit"), "{body}");
    first.ping().await.expect("the first is unaffected");
}

pub async fn bad_handshakes_get_their_http_status<R: Runtime>(rt: R) {
    let hook = |req: crate::ConnectRequest| async move {
        match req.query_param("deny") {
            Some(_) => Err(crate::Refusal::new(
                http::StatusCode::BAD_REQUEST,
                "the application says no",
            )),
            None => Ok(crate::Accept::new()),
        }
    };
    let server = start(Builder::new(rt.clone()).on_connect(hook)).await;
    let addr = server.local_addr().to_string();
    let ask = |request: String| {
        let rt = rt.clone();
        let addr = addr.clone();
        async move {
            let mut tcp = rt.connect(&addr).await.expect("connect");
            let _ = tcp.write_all(request.as_bytes()).await;
            read_head(&mut tcp).await
        }
    };
    let upgrade = |extra: &str| {
        format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n")
    };
    let old = ask(upgrade(
        "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ))
    .await;
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");
    assert!(
        old.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{old}"
    );
    let keyless = ask(upgrade("Sec-WebSocket-Version: 13\r\n")).await;
    assert!(keyless.starts_with("HTTP/1.1 400"), "{keyless}");
    // A client author's findings: a plain GET was not told the version to speak; the two
    // kinds of 400 could not be told apart; unknown paths answer 404.
    let plain_get = ask("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert!(plain_get.starts_with("HTTP/1.1 426"), "{plain_get}");
    let lower = plain_get.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-version: 13"), "{plain_get}");
    assert!(lower.contains("tidings-refused-by: server"), "{plain_get}");
    assert!(keyless
        .to_ascii_lowercase()
        .contains("tidings-refused-by: server"));
    let denied = ask(
        "GET /ws?deny=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .into(),
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 400"), "{denied}");
    assert!(
        denied
            .to_ascii_lowercase()
            .contains("tidings-refused-by: application"),
        "{denied}"
    );
    let elsewhere = ask("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = ask(huge).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
        "{answer:.80}"
    );
    let many: String = (0..500).map(|i| format!("X-{i}: v\r\n")).collect();
    let answer = ask(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
        "{answer:.80}"
    );
    // The server still serves.
    client(&rt, &server, "/ws")
        .await
        .ping()
        .await
        .expect("still serving");
}

pub async fn a_subscription_flood_is_refused_then_closed_and_freed<R: Runtime>(rt: R) {
    // Without the rate limit, which would stop the flood first: the room limit is tested.
    let config = Config::default().max_inbound_rate(None);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let handle = server.handle();
    let bystander = client(&rt, &server, "/ws").await;
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let flood: usize = 2_000;
    for n in 0..flood {
        let frame = json!({"type": "subscribe", "channel": format!("c{n}")});
        if futures_util::SinkExt::send(&mut ws, tungstenite::Message::text(frame.to_string()))
            .await
            .is_err()
        {
            break; // closed under us: that is the point
        }
    }
    let (mut subscribed, mut refused, mut close) = (0, 0, None);
    while let Some(message) = raw_next(&rt, &mut ws).await {
        match message {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("subscribed"), _) => subscribed += 1,
                    (Some("error"), Some("too_many_subscriptions")) => refused += 1,
                    _ => {}
                }
            }
            tungstenite::Message::Close(frame) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(subscribed, 128, "max_rooms_per_connection");
    assert_eq!(refused, 11, "each refusal answered, up to the error limit");
    assert_eq!(
        close,
        Some(4003),
        "then the flood is closed as too many subscriptions"
    );
    let c = handle.counters().await.expect("counters");
    assert_eq!(c.protocol_errors, 11);
    assert_eq!(c.closes.get(&CloseCode::TOO_MANY_SUBSCRIPTIONS), Some(&1));
    eventually(&rt, "every room of the flood is freed", || async {
        let c = handle.counters().await.expect("counters");
        c.connections == 1 && c.rooms == 0
    })
    .await;
    bystander.ping().await.expect("the bystander is unaffected");
}

pub async fn a_silent_http_client_is_cut_at_the_handshake_timeout<R: Runtime>(rt: R) {
    let timeout = Duration::from_millis(200);
    let server = start(Builder::new(rt.clone()).handshake_timeout(timeout)).await;
    let started = Instant::now(); // before the connect: the server's clock starts at accept
    let mut tcp = rt
        .connect(&server.local_addr().to_string())
        .await
        .expect("connect");
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await; // and never the blank line
    let mut buf = [0u8; 256];
    let sleep = rt.sleep_until(started + Duration::from_secs(5));
    let ended = or(async { tcp.read(&mut buf).await.ok() }, async {
        sleep.await;
        panic!("a half-sent request head was kept open");
    })
    .await;
    let took = started.elapsed();
    assert!(took >= timeout, "cut after {took:?}");
    // hyper answers 408 or just closes; either way nothing is left open.
    if let Some(n) = ended.filter(|n| *n > 0) {
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
}

pub async fn unauthenticated_peers_are_closed_with_4005<R: Runtime>(rt: R) {
    let limit = Duration::from_millis(300);
    let config = Config::default().auth_timeout(Some(limit));
    let router = crate::Router::new().on("login", |ctx, token: String| async move {
        if token == "s3cret" {
            ctx.authenticate().await.expect("authenticate");
            ctx.reply("welcome in").await.expect("reply");
        } else {
            ctx.reply("no").await.expect("reply");
        }
    });
    let builder = Builder::new(rt.clone())
        .config(config)
        .router(router)
        .on_connect(|req| async move {
            let accept = crate::Accept::new();
            Ok(match req.query_param("token").as_deref() {
                Some("s3cret") => accept.authenticated(),
                _ => accept,
            })
        });
    let server = start(builder).await;
    let handle = server.handle();
    let started = Instant::now();
    let mut silent = upgraded(&rt, &server).await; // upgrades, then says nothing
    let wrong = client(&rt, &server, "/ws").await;
    let later = client(&rt, &server, "/ws").await;
    let upfront = client(&rt, &server, "/ws?token=s3cret").await;
    let no = wrong
        .emit_with_ack("login", "guess", None)
        .await
        .expect("ack");
    assert_eq!(no, tidings_core::Payload::Json(json!("no")));
    let yes = later
        .emit_with_ack("login", "s3cret", None)
        .await
        .expect("ack");
    assert_eq!(yes, tidings_core::Payload::Json(json!("welcome in")));

    assert_eq!(close_code(&rt, &mut silent).await, Some(4005));
    assert!(started.elapsed() >= limit);
    loop {
        match wrong.next_timeout(Duration::from_secs(5)).await {
            Some(crate::ClientEvent::Closed { code, reason }) => {
                assert_eq!(code, Some(CloseCode::AUTH_TIMEOUT));
                assert!(reason.contains("not authenticated"), "{reason}");
                break;
            }
            Some(_) => continue,
            None => panic!("the wrong password was not closed"),
        }
    }
    sleep(&rt, limit).await;
    later.ping().await.expect("authenticated by a message");
    upfront.ping().await.expect("authenticated at the upgrade");
    assert_eq!(handle.count().await.expect("count"), 2);
}

pub async fn ping_floods_and_event_spam_are_rate_limited<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await; // the default: 100 per second
                                                        // A WebSocket ping flood: answered (pongs coalesce in tungstenite), then 4002.
    let mut pings = Vec::new();
    for _ in 0..300 {
        pings.extend(frame(true, 0, 9, b"p", true, None));
    }
    assert_eq!(
        answer_to(&rt, &server, &pings).await,
        Some(4002),
        "ping flood"
    );
    // Event spam: `too_many_requests` errors, then 4002.
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    for n in 0..300 {
        let frame = json!({"type": "event", "event": "spam", "data": n});
        if futures_util::SinkExt::send(&mut ws, tungstenite::Message::text(frame.to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (mut too_many, mut close) = (0, None);
    while let Some(message) = raw_next(&rt, &mut ws).await {
        match message {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                if v["code"] == "too_many_requests" {
                    too_many += 1;
                }
            }
            tungstenite::Message::Close(f) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(too_many >= 1, "the excess is answered before the close");
    assert_eq!(close, Some(4002), "event spam");
}

/// A client author's finding: of 111 acked events in a burst, only some answers arrived before
/// the 4002 close. Every event the server accepted is answered, every one it refused is
/// answered by its error, and then the close comes.
pub async fn a_rate_limited_burst_still_gets_every_accepted_answer<R: Runtime>(rt: R) {
    let router = crate::Router::new().on("save", |_, n: u64| async move { json!({ "saved": n }) });
    let server = start(Builder::new(rt.clone()).router(router)).await; // 100 per second
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    for n in 1..=111u64 {
        let frame = json!({"type": "event", "event": "save", "data": n, "ack": n});
        futures_util::SinkExt::send(&mut ws, tungstenite::Message::text(frame.to_string()))
            .await
            .expect("the burst is read before the close");
    }
    let (mut answered, mut refused, mut close) = (Vec::new(), Vec::new(), None);
    while let Some(message) = raw_next(&rt, &mut ws).await {
        match message {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                match v["type"].as_str() {
                    Some("ack") => {
                        assert_eq!(v["data"]["saved"], v["ack"], "{v}");
                        answered.push(v["ack"].as_u64().expect("ack"));
                    }
                    Some("error") => {
                        assert_eq!(v["code"], "too_many_requests", "{v}");
                        refused.push(v["ack"].as_u64().expect("the refusal answers the ack"));
                    }
                    _ => {}
                }
            }
            tungstenite::Message::Close(f) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(close, Some(4002));
    assert_eq!(
        answered,
        (1..=100).collect::<Vec<_>>(),
        "every accepted event"
    );
    assert_eq!(
        refused,
        (101..=111).collect::<Vec<_>>(),
        "every refused one"
    );
}

pub async fn stray_and_duplicate_acks_are_never_a_success<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let handle = server.handle();
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let conn: tidings_core::ConnId = match raw_next(&rt, &mut ws).await {
        Some(tungstenite::Message::Text(t)) => {
            let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
            v["conn"].as_str().expect("welcome").parse().expect("id")
        }
        other => panic!("expected the welcome, got {other:?}"),
    };
    // An ack nobody asked for: ignored, no answer, the connection stays.
    raw_send(&mut ws, json!({"type": "ack", "ack": 999, "data": "stray"})).await;
    // The same ack number twice while the first waits: the second is refused.
    raw_send(&mut ws, json!({"type": "event", "event": "q", "ack": 7})).await;
    raw_send(
        &mut ws,
        json!({"type": "event", "event": "q", "ack": 7, "id": "again"}),
    )
    .await;
    let refusal = raw_json(&rt, &mut ws).await;
    assert_eq!(
        (refusal["code"].as_str(), refusal["ref"].as_str()),
        (Some("duplicate_ack"), Some("again"))
    );
    // The server asks; the client answers twice: the first answer wins, once.
    let asking = handle.emit_with_ack(
        conn,
        tidings_core::Message::json("question", json!(1)),
        None,
    );
    let answering = async {
        let question = raw_json(&rt, &mut ws).await;
        let n = question["ack"].as_u64().expect("an ack number");
        raw_send(&mut ws, json!({"type": "ack", "ack": n, "data": "first"})).await;
        raw_send(&mut ws, json!({"type": "ack", "ack": n, "data": "second"})).await;
    };
    let (answer, ()) = futures_lite::future::zip(asking, answering).await;
    assert_eq!(
        answer.expect("answered"),
        tidings_core::Payload::Json(json!("first"))
    );
    eventually(&rt, "both strays counted as unknown", || async {
        handle.counters().await.expect("counters").acks_unknown == 2
    })
    .await;
    let counters = handle.counters().await.expect("counters");
    assert_eq!(counters.acks_replied, 1);
    raw_send(&mut ws, json!({"type": "ping", "id": "up"})).await;
    assert_eq!(
        raw_json(&rt, &mut ws).await,
        json!({"type": "pong", "ref": "up"})
    );
}

pub async fn one_address_and_slow_handshakes_cannot_take_everything<R: Runtime>(rt: R) {
    let builder = Builder::new(rt.clone())
        .max_connections_per_address(2)
        .max_pending_handshakes(2);
    let server = start(builder).await;
    let handle = server.handle();
    let (a, b) = (
        client(&rt, &server, "/ws").await,
        client(&rt, &server, "/ws").await,
    );
    let third = raw(&rt, &server.ws_url("/ws"), &[]).await;
    let (status, body) = third.err().expect("over the per-address limit");
    assert_eq!(
        (status, body.trim()),
        (503, "too many connections from your address")
    );
    a.close().await.expect("close");
    eventually(&rt, "the closed one gives its share back", || async {
        handle.running_connections() == 1
    })
    .await;
    let again = client(&rt, &server, "/ws").await;
    again.ping().await.expect("admitted again");

    // Two connections that never finish their request head fill the handshake slots.
    let addr = server.local_addr().to_string();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut tcp = rt.connect(&addr).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        slow.push(tcp);
    }
    // Once the server has counted them, a third connection is dropped at accept without an
    // answer (a probe that arrives first holds a slot only until it is dropped).
    eventually(
        &rt,
        "a connection over the handshake limit is dropped",
        || async {
            let mut probe = rt.connect(&addr).await.expect("the kernel still accepts");
            let mut buf = [0u8; 64];
            let wait = rt.sleep_until(Instant::now() + Duration::from_millis(200));
            let read = or(async { Some(probe.read(&mut buf).await.ok()) }, async {
                wait.await;
                None // kept open: it was admitted
            })
            .await;
            matches!(read, Some(None | Some(0)))
        },
    )
    .await;
    drop(slow);
    eventually(&rt, "slots free once the slow ones leave", || async {
        let mut tcp = rt.connect(&addr).await.expect("connect");
        let _ = tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        read_head(&mut tcp).await.starts_with("HTTP/1.1 404")
    })
    .await;
    b.ping()
        .await
        .expect("established connections are unaffected");
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Thousands of connect / subscribe / publish / disconnect cycles with faults, then every
/// table and the RSS must come back to where they started. `TIDINGS_SOAK=<cycles>` sets the
/// length (default 30, a smoke run); the note gives the figures of a long run.
pub async fn soak_returns_every_table_and_memory_to_baseline<R: Runtime>(rt: R) {
    let cycles: u64 = std::env::var("TIDINGS_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let config = Config::default().close_grace(Duration::from_millis(200));
    let server = start(
        Builder::new(rt.clone())
            .config(config)
            .close_delay(Duration::from_millis(100)),
    )
    .await;
    let handle = server.handle();
    let baseline = handle.footprint().await.expect("footprint");
    let started = Instant::now();
    let mut rss_warm = 0;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for cycle in 0..cycles {
        if cycle == cycles / 10 {
            rss_warm = rss(); // after the allocator has warmed up
        }
        let room = format!("r{}", next(8));
        let ours = client(&rt, &server, "/ws").await;
        let mut theirs = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
        ours.subscribe(&room).await.expect("subscribe");
        raw_send(&mut theirs, subscribe(&room)).await;
        let _ = handle
            .to_room(&room, tidings_core::Message::json("m", json!(cycle)))
            .await;
        let _ = handle
            .publish_batched(
                Target::room("/", room.as_str()),
                "b",
                "b",
                json!(cycle),
                Duration::from_millis(5),
            )
            .await;
        match next(6) {
            0 => drop(theirs), // vanishes (or resets)
            1 => {
                let _ = tcp_garbage(&mut theirs).await; // a protocol error: 1002
            }
            2 => {
                let big = "x".repeat(70 * 1024); // over the 64 KiB limit: 1009
                let _ =
                    futures_util::SinkExt::send(&mut theirs, tungstenite::Message::text(big)).await;
            }
            3 => {
                let _ = futures_util::SinkExt::close(&mut theirs).await; // a clean close
            }
            4 => {
                for _ in 0..20 {
                    raw_send(&mut theirs, json!({"type": "nonsense"})).await; // 4002
                }
            }
            _ => {} // both just leave (ours dropped below, theirs at the end of the cycle)
        }
        if next(2) == 0 {
            let _ = ours.close().await;
        }
        drop(ours);
    }
    eventually(&rt, "every connection is gone", || async {
        handle.count().await.unwrap_or(1) == 0 && handle.running_connections() == 0
    })
    .await;
    // Batches still collecting flush (to nobody) at their 5 ms TTL.
    eventually(&rt, "every table back to baseline", || async {
        handle.footprint().await.expect("footprint") == baseline
    })
    .await;
    let rss_end = rss();
    let counters = handle.counters().await.expect("counters");
    eprintln!(
        "soak: {cycles} cycles, {} connections in {:?}; closes {:?}; RSS after warm-up {} KiB, at the end {} KiB",
        counters.connections_opened,
        started.elapsed(),
        counters.closes,
        rss_warm / 1024,
        rss_end / 1024,
    );
    if cycles >= 1000 {
        assert!(
            rss_end < rss_warm + 16 * 1024 * 1024,
            "RSS grew from {rss_warm} to {rss_end} over {cycles} cycles"
        );
    }
}

/// Sends a frame with reserved bits set on a tungstenite client's socket.
async fn tcp_garbage<S>(ws: &mut async_tungstenite::WebSocketStream<S>) -> std::io::Result<()>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    ws.get_mut()
        .write_all(&frame(true, 0b100, 1, b"{}", true, None))
        .await
}
