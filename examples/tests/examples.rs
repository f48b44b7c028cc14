//! Every example, started as a person starts it (`--listen`, the printed URL), and talked to
//! over real sockets with the tidings client and plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{http, start, start_with};
use futures_lite::StreamExt;
use serde_json::{json, Value};
use tidings_smol::reexports::async_tungstenite::{self, WebSocketStream};
use tidings_smol::reexports::tungstenite::Message as Ws;
use tidings_smol::{Client, ClientEvent, Payload};

/// The next event that is not a welcome or a membership notice, as (event name, JSON data).
async fn next_event(client: &Client) -> (String, Value) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(
                ClientEvent::Welcome { .. }
                | ClientEvent::Subscribed { .. }
                | ClientEvent::Unsubscribed { .. },
            ) => continue,
            Some(ClientEvent::Event(e)) => match e.data {
                Payload::Json(v) => return (e.event, v),
                other => panic!("expected JSON, got {other:?}"),
            },
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// The next batch, as (event name, items).
async fn next_batch(client: &Client) -> (String, Vec<Value>) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Batch {
                event, messages, ..
            }) => return (event, messages),
            Some(ClientEvent::Event(_) | ClientEvent::Welcome { .. }) => continue,
            other => panic!("expected a batch, got {other:?}"),
        }
    }
}

async fn connect(url: &str) -> Client {
    tidings_smol::connect(url).await.expect("connect")
}

#[test]
fn echo_sends_every_event_back_and_answers_acks() {
    let echo = start(env!("CARGO_BIN_EXE_echo"));
    smol::block_on(async {
        let client = connect(&echo.ws("/ws")).await;
        client.emit("hi", json!({"a": 1})).await.expect("emit");
        assert_eq!(next_event(&client).await, ("hi".into(), json!({"a": 1})));
        let answer = client.emit_with_ack("q", json!([1, 2]), None).await;
        assert_eq!(answer.expect("ack"), Payload::Json(json!([1, 2])));
    });
}

/// A plain WebSocket client (tungstenite, no tidings envelope) connected to `url`.
async fn plain(url: &str) -> WebSocketStream<smol::net::TcpStream> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let tcp = smol::net::TcpStream::connect(authority).await.expect("tcp");
    let (ws, _) = async_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    ws
}

/// The next data message a plain client reads, within 5 s.
async fn plain_next(ws: &mut WebSocketStream<smol::net::TcpStream>) -> Ws {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                other => panic!("the echo ended: {other:?}"),
            }
        }
    };
    futures_lite::future::or(read, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        panic!("no echo within 5 s")
    })
    .await
}

#[test]
fn echo_raw_sends_every_frame_back_as_it_came_to_a_plain_client() {
    let echo = start(env!("CARGO_BIN_EXE_echo-raw"));
    smol::block_on(async {
        for path in ["/", "/any/path?user=1"] {
            let mut ws = plain(&echo.ws(path)).await;
            ws.send(Ws::text("hello")).await.expect("send");
            assert_eq!(plain_next(&mut ws).await, Ws::text("hello"));
            let bytes = vec![0u8, 255, 10, 13];
            ws.send(Ws::binary(bytes.clone())).await.expect("send");
            assert_eq!(plain_next(&mut ws).await, Ws::binary(bytes));
            // What would be a tidings request is only text here.
            let json = r#"{"type":"subscribe","channel":"x"}"#;
            ws.send(Ws::text(json)).await.expect("send");
            assert_eq!(plain_next(&mut ws).await, Ws::text(json));
            // A megabyte comes back whole.
            let big = "x".repeat(1 << 20);
            ws.send(Ws::text(big.clone())).await.expect("send");
            assert_eq!(plain_next(&mut ws).await, Ws::text(big));
        }
    });
}

/// The user's own channel, joined by the server as the connection opens.
async fn joined_own_channel(client: &Client, user: &str) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Welcome { .. }) => continue,
            Some(ClientEvent::Subscribed { channel, pinned }) => {
                assert_eq!(
                    (channel.as_str(), pinned),
                    (format!("user:{user}").as_str(), true)
                );
                return;
            }
            other => panic!("expected the user's channel, got {other:?}"),
        }
    }
}

/// The two notification servers: on tidings' own server, and inside an axum application.
const NOTIFY: [&str; 2] = [
    env!("CARGO_BIN_EXE_notify"),
    env!("CARGO_BIN_EXE_axum-notify"),
];

#[test]
fn notify_delivers_to_one_user_or_everyone_and_counts() {
    NOTIFY.iter().for_each(|bin| notify_delivers(bin));
}

/// A page that comes back with where it stood (`since`, `epoch` in its query) gets the
/// notifications sent to its user while it was away, in order, before anything new.
#[test]
fn notify_recovers_what_a_page_missed() {
    NOTIFY.iter().for_each(|bin| notify_recovers(bin));
}

fn notify_recovers(bin: &str) {
    let notify = start_with(bin, &["--user", "42:t42"]);
    let addr = notify.addr();
    let send = |title: &str| {
        let body = format!(r#"{{"user_id": 42, "title": "{title}", "body": "b"}}"#);
        let (status, _) = http(&addr, "POST", "/api/notify", &body);
        assert_eq!(status, 200, "{bin}");
    };
    smol::block_on(async {
        let first = connect(&notify.ws("/ws/notifications?token=t42")).await;
        joined_own_channel(&first, "42").await;
        send("seen");
        let seen = match first.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Event(e)) => e,
            other => panic!("{bin}: expected the notification, got {other:?}"),
        };
        let (offset, epoch) = (seen.offset.expect("offset"), seen.epoch.expect("epoch"));
        first.close().await.expect("close");
        send("missed 1");
        send("missed 2");
        let path = format!(
            "/ws/notifications?token=t42&since={}&epoch={epoch}",
            offset + 1
        );
        let back = connect(&notify.ws(&path)).await;
        let mut got = Vec::new();
        loop {
            match back.next_timeout(Duration::from_secs(5)).await {
                Some(ClientEvent::Welcome { .. }) => {}
                Some(ClientEvent::Recovered { channel }) => {
                    assert_eq!(channel, "user:42", "{bin}");
                    got.push("recovered".to_owned());
                }
                Some(ClientEvent::Event(e)) => {
                    let title = e.data.as_json().map(|d| d["title"].clone());
                    got.push(format!("{} at {:?}", title.unwrap_or_default(), e.offset));
                    if got.len() == 3 {
                        break;
                    }
                }
                other => panic!("{bin}: {other:?} after {got:?}"),
            }
        }
        let want = [
            "recovered".to_owned(),
            format!("\"missed 1\" at Some({})", offset + 1),
            format!("\"missed 2\" at Some({})", offset + 2),
        ];
        assert_eq!(got, want, "{bin}");
    });
}

fn notify_delivers(bin: &str) {
    let users = ["--user", "42:t42", "--user", "7:t7"];
    let notify = start_with(bin, &users);
    let addr = notify.addr();
    smol::block_on(async {
        for path in ["/ws/notifications", "/ws/notifications?token=wrong"] {
            let refused = tidings_smol::connect(&notify.ws(path)).await;
            assert!(
                matches!(
                    &refused,
                    Err(tidings_smol::Error::Refused { status: 401, .. })
                ),
                "{bin} {path}: {refused:?}"
            );
        }
        let u42 = connect(&notify.ws("/ws/notifications?token=t42")).await;
        let u42b = connect(&notify.ws("/ws/notifications?token=t42")).await;
        let u7 = connect(&notify.ws("/ws/notifications?token=t7")).await;
        joined_own_channel(&u42, "42").await;
        joined_own_channel(&u42b, "42").await;
        joined_own_channel(&u7, "7").await;
        let (status, body) = http(
            &addr,
            "POST",
            "/api/notify",
            r#"{"user_id": 42, "title": "hi", "body": "for 42"}"#,
        );
        assert_eq!(
            (status, serde_json::from_str::<Value>(&body).ok()),
            (200, Some(json!({"delivered": 2})))
        );
        for c in [&u42, &u42b] {
            let (event, data) = next_event(c).await;
            assert_eq!(
                (event.as_str(), data),
                ("notification", json!({"title": "hi", "body": "for 42"}))
            );
        }
        let (status, body) = http(
            &addr,
            "POST",
            "/api/notify",
            r#"{"title": "all", "body": "everyone"}"#,
        );
        assert_eq!((status, body.as_str()), (200, r#"{"delivered":3}"#));
        let (_, data) = next_event(&u7).await;
        assert_eq!(
            data["title"], "all",
            "7's first notification is the broadcast"
        );

        let (status, body) = http(&addr, "POST", "/api/notify", "{not json");
        assert_eq!(status, 400);
        assert!(body.contains("invalid JSON"), "{body}");
        let (status, body) = http(&addr, "POST", "/api/notify", r#"{"title": 1}"#);
        assert_eq!(status, 400);
        assert!(body.contains("required"), "{body}");
        assert_eq!(http(&addr, "GET", "/api/notify", "").0, 405);
        let (status, page) = http(&addr, "GET", "/", "");
        assert_eq!(status, 200);
        assert!(page.contains("/api/notify"));
    });
}

/// A client author's finding: any client could subscribe to `user:1` and read another
/// user's notifications.
#[test]
fn notify_refuses_another_users_channel() {
    NOTIFY.iter().for_each(|bin| notify_refuses(bin));
}

fn notify_refuses(bin: &str) {
    let users = ["--user", "42:t42", "--user", "7:t7"];
    let notify = start_with(bin, &users);
    let addr = notify.addr();
    smol::block_on(async {
        let spy = connect(&notify.ws("/ws/notifications?token=t7")).await;
        joined_own_channel(&spy, "7").await;
        match spy.subscribe("user:42").await {
            Err(tidings_smol::Error::Server { code, .. }) => assert_eq!(code, "subscribe_denied"),
            other => panic!("another user's channel must be refused, got {other:?}"),
        }
        match spy.unsubscribe("user:7").await {
            Err(tidings_smol::Error::Server { code, .. }) => {
                assert_eq!(code, "unsubscribe_denied")
            }
            other => panic!("the server keeps it in its own channel, got {other:?}"),
        }
        let (status, body) = http(
            &addr,
            "POST",
            "/api/notify",
            r#"{"user_id": "42", "title": "secret", "body": "for 42 only"}"#,
        );
        assert_eq!((status, body.as_str()), (200, r#"{"delivered":0}"#));
        // A broadcast still arrives, and the secret never did.
        http(
            &addr,
            "POST",
            "/api/notify",
            r#"{"title": "all", "body": "x"}"#,
        );
        assert_eq!(next_event(&spy).await.1["title"], "all");
    });
}

/// A client author's finding: echo and lobby printed a page URL that answered 404. Each
/// example prints what answers there: a page (200) or a WebSocket (a client connects).
#[test]
fn every_example_prints_what_answers_there() {
    for (bin, kind) in [
        (env!("CARGO_BIN_EXE_chat"), "page"),
        (env!("CARGO_BIN_EXE_dashboard"), "page"),
        (env!("CARGO_BIN_EXE_notify"), "page"),
        (env!("CARGO_BIN_EXE_axum-notify"), "page"),
        (env!("CARGO_BIN_EXE_cursors"), "page"),
        (env!("CARGO_BIN_EXE_echo"), "socket"),
        (env!("CARGO_BIN_EXE_lobby"), "socket"),
        (env!("CARGO_BIN_EXE_echo-raw"), "raw"),
    ] {
        let running = start(bin);
        if kind == "page" {
            assert!(running.url.starts_with("http://"), "{bin}: {}", running.url);
            let (status, _) = http(&running.addr(), "GET", "/", "");
            assert_eq!(status, 200, "{bin}: {}", running.url);
        } else if kind == "raw" {
            assert!(running.url.starts_with("ws://"), "{bin}: {}", running.url);
            smol::block_on(async {
                let mut ws = plain(&running.url).await;
                ws.send(Ws::text("here?")).await.expect("send");
                assert_eq!(plain_next(&mut ws).await, Ws::text("here?"));
            });
        } else {
            assert!(running.url.starts_with("ws://"), "{bin}: {}", running.url);
            smol::block_on(async {
                let client = connect(&running.url).await;
                client.ping().await.expect("the printed WebSocket answers");
            });
        }
    }
}

/// A client author's finding: on SIGINT or SIGTERM the examples died and clients saw 1006.
/// Each now closes every client with 1001 and exits with 0.
#[test]
fn every_example_shuts_down_gracefully_on_sigint_and_sigterm() {
    let examples = [
        (env!("CARGO_BIN_EXE_chat"), "/ws?name=ann"),
        (env!("CARGO_BIN_EXE_dashboard"), "/ws?name=ann"),
        (env!("CARGO_BIN_EXE_notify"), "/ws/notifications?token=t42"),
        (
            env!("CARGO_BIN_EXE_axum-notify"),
            "/ws/notifications?token=t42",
        ),
        (env!("CARGO_BIN_EXE_lobby"), "/ws?name=ann"),
        (env!("CARGO_BIN_EXE_cursors"), "/ws"),
        (env!("CARGO_BIN_EXE_echo"), "/ws"),
    ];
    for (bin, path) in examples {
        for signal in ["INT", "TERM"] {
            let mut running = start_with(bin, &["--user", "42:t42"]);
            let client = smol::block_on(connect(&running.ws(path)));
            smol::block_on(client.ping()).expect("connected");
            running.signal(signal);
            let closed = smol::block_on(async {
                loop {
                    match client.next_timeout(Duration::from_secs(10)).await {
                        Some(ClientEvent::Closed { code, .. }) => return code,
                        Some(_) => continue,
                        None => panic!("{bin}: no close within 10 s of SIG{signal}"),
                    }
                }
            });
            assert_eq!(
                closed.map(|c| c.0),
                Some(1001),
                "{bin} on SIG{signal}: going away"
            );
            let status = running.wait_exit(Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "{bin} on SIG{signal}: {status:?}"
            );
        }
    }
}

/// A raw connection is shut down as any other: what it was sent arrives, then 1001.
#[test]
fn echo_raw_shuts_down_gracefully_for_plain_clients() {
    for signal in ["INT", "TERM"] {
        let mut running = start(env!("CARGO_BIN_EXE_echo-raw"));
        smol::block_on(async {
            let mut ws = plain(&running.ws("/")).await;
            ws.send(Ws::text("before")).await.expect("send");
            assert_eq!(plain_next(&mut ws).await, Ws::text("before"));
            running.signal(signal);
            match plain_next(&mut ws).await {
                Ws::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
                other => panic!("expected close 1001 on SIG{signal}, got {other:?}"),
            }
        });
        let status = running.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal}: {status:?}"
        );
    }
}

#[test]
fn lobby_routes_game_commands_and_refuses_unknown_ones() {
    let lobby = start(env!("CARGO_BIN_EXE_lobby"));
    smol::block_on(async {
        let ann = connect(&lobby.ws("/ws?name=ann")).await;
        let bob = connect(&lobby.ws("/ws?name=bob")).await;
        let joined = ann
            .emit_with_ack("join_game", json!({"game": "g1"}), None)
            .await;
        assert_eq!(
            joined.expect("ack"),
            Payload::Json(json!({"game": "g1", "players": 1}))
        );
        // The game keeps its players until `leave_game`, which tells the others.
        match ann.unsubscribe("game:g1").await {
            Err(tidings_smol::Error::Server { code, .. }) => {
                assert_eq!(code, "unsubscribe_denied")
            }
            other => panic!("a player leaves with leave_game, got {other:?}"),
        }
        assert_eq!(
            next_event(&ann).await,
            (
                "player_joined".into(),
                json!({"game": "g1", "player": "ann"})
            )
        );
        bob.emit_with_ack("join_game", json!({"game": "g1"}), None)
            .await
            .expect("ack");
        assert_eq!(next_event(&ann).await.1["player"], "bob");
        assert_eq!(next_event(&bob).await.1["player"], "bob");

        bob.emit(
            "game_action",
            json!({"game": "g1", "action": {"move": "e4"}}),
        )
        .await
        .expect("emit");
        for c in [&ann, &bob] {
            let (event, data) = next_event(c).await;
            assert_eq!(event, "game_action");
            assert_eq!(
                (data["player"].clone(), data["action"].clone()),
                (json!("bob"), json!({"move": "e4"}))
            );
        }
        ann.emit("chat", json!({"game": "g1", "text": "gg"}))
            .await
            .expect("emit");
        assert_eq!(
            next_event(&bob).await,
            (
                "chat".into(),
                json!({"game": "g1", "player": "ann", "text": "gg"})
            )
        );
        assert_eq!(next_event(&ann).await.0, "chat");

        ann.emit("game_action", json!({"game": "other", "action": 1}))
            .await
            .expect("emit");
        let (event, data) = next_event(&ann).await;
        assert_eq!(event, "error");
        assert!(data["message"]
            .as_str()
            .expect("message")
            .contains("not in game"));
        ann.emit("teleport", json!({})).await.expect("emit");
        assert_eq!(
            next_event(&ann).await,
            (
                "error".into(),
                json!({"code": "application", "message": "unknown command \"teleport\""})
            )
        );

        let left = bob
            .emit_with_ack("leave_game", json!({"game": "g1"}), None)
            .await;
        assert_eq!(left.expect("ack"), Payload::Json(json!({"left": "g1"})));
        assert_eq!(
            next_event(&ann).await,
            ("player_left".into(), json!({"game": "g1", "player": "bob"}))
        );
    });
}

#[test]
fn chat_announces_members_relays_messages_and_batches_typing() {
    let chat = start(env!("CARGO_BIN_EXE_chat"));
    let (status, page) = http(&chat.addr(), "GET", "/", "");
    assert_eq!(status, 200);
    assert!(page.contains("tidings chat"));
    smol::block_on(async {
        let nameless = tidings_smol::connect(&chat.ws("/ws")).await;
        assert!(matches!(
            nameless,
            Err(tidings_smol::Error::Refused { status: 400, .. })
        ));
        let ann = connect(&chat.ws("/ws?name=ann")).await;
        ann.subscribe("lobby").await.expect("join");
        assert_eq!(
            next_event(&ann).await,
            ("members".into(), json!({"room": "lobby", "names": ["ann"]}))
        );
        let bob = connect(&chat.ws("/ws?name=bob")).await;
        bob.subscribe("lobby").await.expect("join");
        assert_eq!(
            next_event(&ann).await,
            ("joined".into(), json!({"room": "lobby", "name": "bob"}))
        );
        assert_eq!(next_event(&bob).await.1["names"], json!(["ann", "bob"]));

        bob.emit("say", json!({"room": "lobby", "text": "hello"}))
            .await
            .expect("say");
        for c in [&ann, &bob] {
            assert_eq!(
                next_event(c).await,
                (
                    "message".into(),
                    json!({"room": "lobby", "name": "bob", "text": "hello"})
                )
            );
        }
        for _ in 0..3 {
            bob.emit("typing", json!({"room": "lobby"}))
                .await
                .expect("typing");
        }
        let (event, typists) = next_batch(&ann).await;
        assert_eq!(
            (event.as_str(), typists),
            ("typing", vec![json!("bob"); 3]),
            "one frame for three keystrokes"
        );
        // The typist gets the batch too (its page leaves its own name out).
        assert_eq!(next_batch(&bob).await.0, "typing");

        bob.emit("say", json!({"room": "elsewhere", "text": "x"}))
            .await
            .expect("say");
        assert_eq!(next_event(&bob).await.0, "error");
        bob.unsubscribe("lobby").await.expect("leave");
        assert_eq!(
            next_event(&ann).await,
            ("left".into(), json!({"room": "lobby", "name": "bob"}))
        );
    });
}

#[test]
fn cursors_batch_moves_per_document() {
    let cursors = start(env!("CARGO_BIN_EXE_cursors"));
    let (status, page) = http(&cursors.addr(), "GET", "/", "");
    assert_eq!(status, 200);
    assert!(page.contains("pointermove"));
    smol::block_on(async {
        let a = connect(&cursors.ws("/ws")).await;
        let b = connect(&cursors.ws("/ws")).await;
        let a_id = match a.next().await {
            Some(ClientEvent::Welcome { conn, .. }) => conn,
            other => panic!("expected welcome, got {other:?}"),
        };
        a.subscribe("doc:x").await.expect("subscribe");
        b.subscribe("doc:x").await.expect("subscribe");
        // A client author's finding: a tab not on the document moved cursors in it.
        let outsider = connect(&cursors.ws("/ws")).await;
        outsider
            .emit("move", json!({"doc": "x", "x": 0.9, "y": 0.9}))
            .await
            .expect("move");
        let (event, data) = next_event(&outsider).await;
        assert_eq!(
            (event.as_str(), &data["code"]),
            ("error", &json!("not_a_member"))
        );
        for i in 0..5 {
            a.emit(
                "move",
                json!({"doc": "x", "x": 0.1 * f64::from(i), "y": 0.5}),
            )
            .await
            .expect("move");
        }
        let (event, moves) = next_batch(&b).await;
        assert_eq!(event, "cursors");
        assert!(!moves.is_empty() && moves.len() <= 5, "{moves:?}");
        assert!(
            moves.iter().all(|m| m["id"] == json!(a_id)),
            "the outsider's move is not among them: {moves:?}"
        );
        a.unsubscribe("doc:x").await.expect("leave");
        loop {
            let (event, data) = next_event(&b).await;
            if event == "gone" {
                assert_eq!(data["id"], json!(a_id));
                break;
            }
        }
    });
}

/// Two chat processes over one `redis-server` (started here): a room's messages reach its
/// members on both nodes, once, and a member that comes back on the other node recovers what
/// it missed.
#[test]
fn two_chat_nodes_share_a_room_through_redis() {
    let Some(redis) = tidings_redis::testing::RedisServer::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let one = start_with(env!("CARGO_BIN_EXE_chat"), &["--redis", &url]);
    let two = start_with(env!("CARGO_BIN_EXE_chat"), &["--redis", &url]);
    smol::block_on(async {
        let ann = connect(&one.ws("/ws?name=ann")).await;
        let bob = connect(&two.ws("/ws?name=bob")).await;
        ann.subscribe("lobby").await.expect("join");
        bob.subscribe("lobby").await.expect("join");
        // Each is shown the room's members on its own node (ann's arrival, announced from
        // node one, may reach bob just before his list).
        assert_eq!(next_event(&ann).await.0, "members");
        let mut first = next_event(&bob).await;
        if first.0 == "joined" {
            first = next_event(&bob).await;
        }
        assert_eq!(first.0, "members");
        assert_eq!(
            next_event(&ann).await,
            ("joined".into(), json!({"room": "lobby", "name": "bob"})),
            "bob's arrival crossed nodes"
        );
        for (from, text) in [(&ann, "hi from one"), (&bob, "hi from two")] {
            from.emit("say", json!({"room": "lobby", "text": text}))
                .await
                .expect("say");
            for c in [&ann, &bob] {
                // Ann's arrival may reach bob's node after bob joined: told, then messages.
                let mut got = next_event(c).await;
                if got.0 == "joined" {
                    got = next_event(c).await;
                }
                assert_eq!((got.0.as_str(), &got.1["text"]), ("message", &json!(text)));
            }
        }
        // Bob drops off node two and comes back on node one: what was said meanwhile
        // follows, once and in order (the room's stream is kept in Redis).
        let left = bob.position("lobby").expect("bob's position");
        bob.close().await.expect("close");
        for text in ["while away 1", "while away 2"] {
            ann.emit("say", json!({"room": "lobby", "text": text}))
                .await
                .expect("say");
        }
        let back = connect(&one.ws("/ws?name=bob")).await;
        let told = back.subscribe_from("lobby", left).await.expect("subscribe");
        assert_eq!(told, None, "recovered on the other node");
        let mut said = Vec::new();
        while said.len() < 2 {
            let (event, data) = next_event(&back).await;
            if event == "message" {
                said.push(data["text"].clone());
            }
        }
        assert_eq!(said, [json!("while away 1"), json!("while away 2")]);
    });
}
