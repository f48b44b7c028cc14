//! Raw connections over real sockets, with plain tungstenite clients that know nothing of
//! tidings' envelope: echo of text, binary and fragmented messages; a room shared with
//! `tidings.v1` clients; the choice by subprotocol; the application heartbeat of a path;
//! `Handle::ping`; a stalled raw reader cut as a slow consumer; 1009 over the size limit.

use std::time::Duration;

use serde_json::{json, Value};
use tidings_core::{
    AppHeartbeat, CloseCode, Config, ConnId, ConnectionInfo, Message, PathRule, Payload, Protocol,
    RAW_EVENT,
};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame as WireFrame;
use tungstenite::Message as Ws;

use super::*;
use crate::{Accept, Handle, Router};

/// Config with `/raw/*` speaking raw.
fn raw_config() -> Config {
    Config::default().path(PathRule::new("/raw/*", Protocol::Raw))
}

/// A server on `config` whose raw connections get every message back as it came, and
/// whose connections are named by their path (wsm's URL as the key).
async fn echo_server<R: Runtime>(rt: &R, config: Config) -> Server<R> {
    let router = Router::new().on_raw(RAW_EVENT, |ctx, data: Payload| async move {
        let _ = ctx.send(data).await;
    });
    let builder = Builder::new(rt.clone())
        .config(config)
        .router(router)
        .on_connect(|request| async move { Ok(Accept::new().name(request.path)) });
    start(builder).await
}

async fn conn_named<R: Runtime>(handle: &Handle<R>, name: &str) -> ConnId {
    let rt = handle.clone();
    let mut found = None;
    eventually(handle.runtime(), &format!("{name} is connected"), || {
        let handle = rt.clone();
        let name = name.to_owned();
        async move { handle.by_name(&name).await.ok().flatten().is_some() }
    })
    .await;
    if let Ok(Some(conn)) = handle.by_name(name).await {
        found = Some(conn);
    }
    found.expect("connected")
}

pub async fn raw_clients_get_text_binary_and_fragmented_messages_back_as_they_came<R: Runtime>(
    rt: R,
) {
    let server = echo_server(&rt, raw_config()).await;
    let mut ws = raw(&rt, &server.ws_url("/raw/echo"), &[])
        .await
        .expect("connect");
    ws.send(Ws::text("hello")).await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::text("hello")));
    let bytes = vec![0u8, 159, 146, 150, 255];
    ws.send(Ws::binary(bytes.clone())).await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::binary(bytes)));
    // A text message in three fragments is one message, and comes back whole.
    let parts = [
        (OpCode::Data(Data::Text), "frag", false),
        (OpCode::Data(Data::Continue), "men", false),
        (OpCode::Data(Data::Continue), "ted", true),
    ];
    for (opcode, text, fin) in parts {
        let frame = WireFrame::message(text.as_bytes().to_vec(), opcode, fin);
        ws.send(Ws::Frame(frame)).await.expect("send a fragment");
    }
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::text("fragmented")));
    // JSON is only text to a raw connection: no error, no welcome, the same text back.
    let request = r#"{"type":"subscribe","channel":"x"}"#;
    ws.send(Ws::text(request)).await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::text(request)));
    let handle = server.handle();
    let conn = conn_named(&handle, "/raw/echo").await;
    assert!(handle.rooms_of(conn).await.expect("rooms").is_empty());
}

pub async fn a_room_is_shared_by_raw_and_tidings_clients<R: Runtime>(rt: R) {
    let router = Router::new()
        // The application puts raw clients in the lobby: they cannot subscribe.
        .on_connect(|ctx| async move {
            let raw = ctx.handle().info(ctx.conn()).await.ok().flatten();
            if raw.and_then(|i| i.protocol) == Some(Protocol::Raw) {
                let _ = ctx.join("lobby").await;
            }
        })
        // What a raw client says goes to the whole lobby.
        .on_raw(RAW_EVENT, |ctx, data: Payload| async move {
            let message = Message::new("said", data);
            let _ = ctx.handle().to_room("lobby", message).await;
        });
    let builder = Builder::new(rt.clone()).config(raw_config()).router(router);
    let server = start(builder).await;
    let handle = server.handle();
    let mut plain = raw(&rt, &server.ws_url("/raw/a"), &[]).await.expect("raw");
    let mut enveloped = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("tidings");
    raw_send(&mut enveloped, subscribe("lobby")).await;
    assert_eq!(raw_json(&rt, &mut enveloped).await["type"], "subscribed");
    eventually(&rt, "both in the lobby", || async {
        handle.members("lobby").await.expect("members").len() == 2
    })
    .await;

    plain.send(Ws::text("hi all")).await.expect("send");
    plain.send(Ws::binary(vec![1, 2, 3])).await.expect("send");
    assert_eq!(raw_next(&rt, &mut plain).await, Some(Ws::text("hi all")));
    assert_eq!(
        raw_next(&rt, &mut plain).await,
        Some(Ws::binary(vec![1, 2, 3]))
    );
    let said = raw_json(&rt, &mut enveloped).await;
    assert_eq!(
        (&said["event"], &said["channel"], &said["data"]),
        (&json!("said"), &json!("lobby"), &json!("hi all"))
    );
    match raw_next(&rt, &mut enveloped).await {
        Some(Ws::Binary(bytes)) => {
            let (head, body) = bytes.split_at(bytes.iter().position(|&b| b == b'\n').unwrap());
            let head: Value = serde_json::from_slice(head).expect("JSON header");
            assert_eq!(head["event"], "said");
            assert_eq!(body, b"\n\x01\x02\x03");
        }
        other => panic!("expected the binary envelope, got {other:?}"),
    }
    // The application's JSON reaches the raw client as its text.
    let news = Message::json("news", json!({"n": 1}));
    let delivery = handle.to_room("lobby", news).await.expect("publish");
    assert_eq!(delivery.queued, 2);
    assert_eq!(
        raw_next(&rt, &mut plain).await,
        Some(Ws::text(r#"{"n":1}"#))
    );
    assert_eq!(raw_json(&rt, &mut enveloped).await["event"], "news");
}

pub async fn the_subprotocol_chooses_the_protocol_over_the_path<R: Runtime>(rt: R) {
    let server = echo_server(&rt, raw_config()).await;
    let raw_name = Protocol::Raw.subprotocol();
    let header = [("Sec-WebSocket-Protocol", raw_name)];
    let mut on_ws = raw(&rt, &server.ws_url("/ws"), &header)
        .await
        .expect("raw on /ws");
    on_ws.send(Ws::text("plain")).await.expect("send");
    // No welcome first: the echo is the first thing it reads.
    assert_eq!(raw_next(&rt, &mut on_ws).await, Some(Ws::text("plain")));
    let header = [("Sec-WebSocket-Protocol", "tidings.v1")];
    let mut on_raw = raw(&rt, &server.ws_url("/raw/x"), &header)
        .await
        .expect("v1");
    match raw_next(&rt, &mut on_raw).await {
        Some(Ws::Text(text)) => assert!(text.contains(r#""type":"welcome""#), "{text}"),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

pub async fn a_raw_path_answers_its_heartbeat_and_ping_measures_the_round_trip<R: Runtime>(rt: R) {
    let beat = AppHeartbeat {
        ping: "are you there".into(),
        pong: "yes".into(),
        alive_timeout: Duration::from_secs(30),
    };
    let config = Config::default().path(PathRule::new("/raw/*", Protocol::Raw).app_heartbeat(beat));
    let server = echo_server(&rt, config).await;
    let handle = server.handle();
    let mut ws = raw(&rt, &server.ws_url("/raw/beat"), &[])
        .await
        .expect("connect");
    ws.send(Ws::text("are you there")).await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::text("yes")));

    // tungstenite answers a ping while it reads; the client reads until the server says
    // it is done.
    let conn = conn_named(&handle, "/raw/beat").await;
    let pinged = async {
        let rtt = handle
            .ping(conn, Some(Duration::from_secs(5)))
            .await
            .expect("a pong");
        let _ = handle.send(conn, "done").await.expect("send");
        rtt
    };
    let (rtt, echo) = futures_lite::future::zip(pinged, async {
        loop {
            match ws.next().await {
                Some(Ok(Ws::Text(text))) => return text.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("reader ended: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(echo, "done");
    assert!(rtt < Duration::from_secs(5), "{rtt:?}");

    // A tidings client's pong counts the same; one that never reads times out.
    let idle = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let idle_conn = conn_named(&handle, "/ws").await;
    let wait = Duration::from_millis(200);
    match handle.ping(idle_conn, Some(wait)).await {
        Err(crate::Error::Timeout(w)) => assert_eq!(w, wait),
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(idle);
}

pub async fn a_stalled_raw_reader_is_cut_while_raw_readers_get_everything<R: Runtime>(rt: R) {
    let config = raw_config()
        .max_queue_frames(64)
        .max_queue_bytes(512 * 1024)
        .slow_consumer_timeout(Duration::from_millis(500))
        .write_window(16);
    let (closes_tx, closes) = async_channel::unbounded();
    let router = Router::new()
        .on_connect(|ctx| async move {
            let _ = ctx.join("feed").await;
        })
        .on_disconnect(move |d| {
            let tx = closes_tx.clone();
            async move {
                let _ = tx.send((d.code, d.reason)).await;
            }
        });
    let server = start(Builder::new(rt.clone()).config(config).router(router)).await;
    let handle = server.handle();
    let stalled = raw(&rt, &server.ws_url("/raw/stalled"), &[])
        .await
        .expect("connect");
    let mut readers = Vec::new();
    for i in 0..2 {
        let url = server.ws_url(&format!("/raw/{i}"));
        readers.push(raw(&rt, &url, &[]).await.expect("connect"));
    }
    eventually(&rt, "all three in the feed", || async {
        handle.members("feed").await.expect("members").len() == 3
    })
    .await;
    let (count, size) = (600usize, 16 * 1024);
    let publish = async {
        let filler = "x".repeat(size);
        for n in 0..count {
            let message = Message::text("item", format!("{n} {filler}"));
            // Waits for room while the stalled reader is behind, until it is cut.
            let _ = handle.to_room("feed", message).await.expect("publish");
        }
    };
    let read = |mut ws: WebSocketStream<R::TcpStream>| {
        let rt = rt.clone();
        async move {
            for n in 0..count {
                match raw_next(&rt, &mut ws).await {
                    Some(Ws::Text(text)) => {
                        assert_eq!(text.split(' ').next(), Some(n.to_string().as_str()));
                    }
                    other => panic!("reader got {other:?} at {n}"),
                }
            }
            ws // still connected: counted below
        }
    };
    let mut readers = readers.into_iter();
    let (first, second) = (readers.next().unwrap(), readers.next().unwrap());
    let (_, readers) = futures_lite::future::zip(
        publish,
        futures_lite::future::zip(read(first), read(second)),
    )
    .await;
    let (code, reason) = closes.recv().await.expect("a disconnect");
    assert_eq!(code, CloseCode::SLOW_CONSUMER, "{reason}");
    assert_eq!(handle.count().await.expect("count"), 2);
    drop((stalled, readers));
}

pub async fn a_raw_message_over_the_limit_closes_with_1009<R: Runtime>(rt: R) {
    let server = echo_server(&rt, raw_config().max_message_size(1024)).await;
    let mut ws = raw(&rt, &server.ws_url("/raw/big"), &[])
        .await
        .expect("connect");
    ws.send(Ws::binary(vec![7u8; 1024])).await.expect("send");
    assert_eq!(
        raw_next(&rt, &mut ws).await,
        Some(Ws::binary(vec![7u8; 1024]))
    );
    let _ = ws.send(Ws::binary(vec![7u8; 1025])).await;
    match raw_next(&rt, &mut ws).await {
        Some(Ws::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

/// wsm's flow in tidings: the application's own server upgrades, and the connection is
/// managed by its URL: open, send, receive with a timeout, exists, names, is-connected,
/// close.
pub async fn a_raw_websocket_the_application_upgraded_is_managed_by_its_url<R: Runtime>(rt: R) {
    let url = "/ws/user123/notification";
    let info = ConnectionInfo::new(url).name(url).protocol(Protocol::Raw);
    let (handle, addr, opened) = own_server(&rt, info, |tcp| async {
        async_tungstenite::accept_async(tcp).await.expect("upgrade")
    })
    .await;
    let mut ws = raw(&rt, &format!("ws://{addr}{url}"), &[])
        .await
        .expect("connect");
    let conn = opened.recv().await.expect("opened");
    assert!(handle.exists(url).await.expect("exists"));
    assert_eq!(handle.names().await.expect("names"), vec![url.to_owned()]);
    assert!(handle.is_connected(conn).await.expect("is connected"));

    let _ = handle.send(conn, "hello").await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::text("hello")));
    let _ = handle.send(conn, vec![1u8, 2]).await.expect("send");
    assert_eq!(raw_next(&rt, &mut ws).await, Some(Ws::binary(vec![1u8, 2])));

    let quiet = handle
        .receive_timeout(conn, Duration::from_millis(50))
        .await;
    assert!(quiet.expect("open").is_none(), "nothing sent yet");
    ws.send(Ws::binary(vec![9u8, 8])).await.expect("send");
    let got = handle
        .receive_timeout(conn, Duration::from_secs(5))
        .await
        .expect("open")
        .expect("a message");
    assert_eq!(
        (got.event.as_str(), got.data),
        (RAW_EVENT, Payload::Binary(vec![9u8, 8].into()))
    );

    handle
        .close(conn, CloseCode::NORMAL, "bye")
        .await
        .expect("close");
    match raw_next(&rt, &mut ws).await {
        Some(Ws::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected close 1000, got {other:?}"),
    }
    eventually(&rt, "the URL is gone", || async {
        !handle.exists(url).await.expect("exists")
    })
    .await;
}
