//! The cases of the loopback suite, one async function each.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidings_core::{CloseCode, Config, ConnId, ConnectionInfo, Message, Payload, Target};
use tungstenite::Message as Ws;

use super::*;
use crate::{Accept, Ctx, Error, OriginPolicy, Refusal, Router};

/// The connection id our client was welcomed with, as the server knows it.
async fn welcome<R: Runtime>(client: &Client<R>) -> String {
    match client.next_timeout(Duration::from_secs(5)).await {
        Some(ClientEvent::Welcome { conn, .. }) => conn,
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// The server-side id of the connection welcomed as `label`.
async fn conn_of<R: Runtime>(server: &Server<R>, label: &str) -> ConnId {
    let id: ConnId = label.parse().expect("a connection id");
    assert!(
        server.handle().is_connected(id).await.expect("hub"),
        "{label} is open"
    );
    id
}

fn data(event: &ClientEvent) -> (&str, &Value) {
    match event {
        ClientEvent::Event(e) => match &e.data {
            Payload::Json(v) => (&e.event, v),
            other => panic!("expected JSON data, got {other:?}"),
        },
        other => panic!("expected an event, got {other:?}"),
    }
}

pub async fn handle_publishes_to_rooms_namespaces_and_all_but_one<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let handle = server.handle();
    let (a, b) = (
        client(&rt, &server, "/ws").await,
        client(&rt, &server, "/ws").await,
    );
    let a_id = conn_of(&server, &welcome(&a).await).await;
    let b_id = conn_of(&server, &welcome(&b).await).await;
    a.subscribe("news").await.expect("subscribe");

    let report = handle
        .to_room("news", Message::json("headline", json!({"n": 1})))
        .await
        .expect("publish");
    assert_eq!(report.queued, 1, "only the member");
    let got = event(&a).await;
    assert_eq!(data(&got), ("headline", &json!({"n": 1})));
    let ClientEvent::Event(e) = &got else {
        unreachable!()
    };
    assert_eq!(e.channel.as_deref(), Some("news"));

    assert!(handle.join(b_id, "news").await.expect("join"));
    // The client is told that the server put it in the channel.
    assert_eq!(
        event(&b).await,
        ClientEvent::Subscribed {
            channel: "news".into(),
            pinned: false
        }
    );
    assert_eq!(handle.members("news").await.expect("members").len(), 2);
    assert_eq!(handle.rooms_of(b_id).await.expect("rooms"), vec!["news"]);
    let all_but_a = Target::room("/", "news").except(a_id);
    let report = handle
        .publish(all_but_a, Message::text("only-b", "x"))
        .await
        .expect("publish");
    assert_eq!(report.queued, 1);
    assert_eq!(data(&event(&b).await).0, "only-b");

    let all = handle.broadcast(Message::json("all", json!(2)));
    assert_eq!(all.await.expect("broadcast").queued, 2);
    let ns = handle.publish(Target::namespace("/"), Message::json("ns", json!(3)));
    assert_eq!(ns.await.expect("namespace").queued, 2);
    let direct = handle.emit(a_id, Message::json("direct", json!(4)));
    assert_eq!(direct.await.expect("emit").queued, 1);
    assert_eq!(data(&event(&a).await).0, "all");
    assert_eq!(data(&event(&a).await).0, "ns");
    assert_eq!(data(&event(&a).await).0, "direct");
    assert_eq!(data(&event(&b).await).0, "all");
    assert_eq!(data(&event(&b).await).0, "ns");

    assert!(handle.leave(b_id, "news").await.expect("leave"));
    assert!(!handle.leave(b_id, "news").await.expect("leave twice"));
    assert!(matches!(
        handle
            .to_room("bad\nname", Message::json("x", json!(0)))
            .await,
        Err(Error::Hub(tidings_core::Error::InvalidName { .. }))
    ));
}

pub async fn handle_manages_connections_names_and_metadata<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone()).on_connect(|req| async move {
        Ok(Accept::new()
            .name(req.query_param("user").unwrap_or_default())
            .meta("role", "admin"))
    }))
    .await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws?user=ann").await;
    let a_id = conn_of(&server, &welcome(&a).await).await;
    assert!(handle.exists("ann").await.expect("exists"));
    assert!(!handle.exists("bob").await.expect("exists"));
    assert_eq!(handle.by_name("ann").await.expect("by_name"), Some(a_id));
    assert_eq!(handle.names().await.expect("names"), vec!["ann"]);
    assert_eq!(handle.count().await.expect("count"), 1);
    assert_eq!(
        handle.meta(a_id, "role").await.expect("meta"),
        Some(json!("admin"))
    );
    handle.set_meta(a_id, "score", 7).await.expect("set_meta");
    assert_eq!(
        handle.meta(a_id, "score").await.expect("meta"),
        Some(json!(7))
    );
    let info = handle.info(a_id).await.expect("info").expect("open");
    assert_eq!(info.path, "/ws");
    assert_eq!(info.query, "user=ann");
    assert!(info.remote.is_some_and(|r| r.ip().is_loopback()));

    handle
        .close(a_id, CloseCode(4100), "bye")
        .await
        .expect("close");
    match event(&a).await {
        ClientEvent::Closed { code, reason } => {
            assert_eq!(code, Some(CloseCode(4100)));
            assert_eq!(reason, "bye");
        }
        other => panic!("expected the close, got {other:?}"),
    }
    eventually(&rt, "closed connection gone", || async {
        !handle.is_connected(a_id).await.expect("is_connected")
    })
    .await;
    assert_eq!(handle.count().await.expect("count"), 0);
    assert!(!handle.exists("ann").await.expect("exists"));
    let counters = handle.counters().await.expect("counters");
    assert_eq!(counters.connections_opened, 1);
    assert!(matches!(
        handle.emit(a_id, Message::json("late", json!(0))).await,
        Err(Error::Hub(tidings_core::Error::UnknownConnection(_)))
    ));
}

pub async fn handle_receives_unrouted_messages_with_timeout_and_cancellation<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws").await;
    let a_id = conn_of(&server, &welcome(&a).await).await;

    let nothing = handle
        .receive_timeout(a_id, Duration::from_millis(50))
        .await
        .expect("receive");
    assert_eq!(nothing, None, "nothing sent yet");
    // A receive that is dropped (cancelled) loses nothing.
    let cancelled = or(async { Some(handle.receive(a_id).await) }, async {
        sleep(&rt, Duration::from_millis(20)).await;
        None
    })
    .await;
    assert!(cancelled.is_none());
    a.emit("hello", json!({"n": 1})).await.expect("emit");
    a.emit("hello", json!({"n": 2})).await.expect("emit");
    let first = handle.receive(a_id).await.expect("receive");
    assert_eq!(
        (first.event.as_str(), &first.data),
        ("hello", &Payload::Json(json!({"n": 1})))
    );
    let second = handle
        .receive_timeout(a_id, Duration::from_secs(5))
        .await
        .expect("receive")
        .expect("a message");
    assert_eq!(second.data, Payload::Json(json!({"n": 2})));
    // Binary both ways: a header line, a newline, the bytes (PROTOCOL.md).
    a.emit_binary("upload", &[0, 10, 255])
        .await
        .expect("binary");
    let upload = handle.receive(a_id).await.expect("receive");
    assert_eq!(upload.event, "upload");
    assert_eq!(upload.data, Payload::Binary(vec![0u8, 10, 255].into()));
    let sent = handle.emit(a_id, Message::binary("download", vec![1u8, b'\n', 2]));
    assert_eq!(sent.await.expect("emit").queued, 1);
    match event(&a).await {
        ClientEvent::Event(e) => {
            assert_eq!(e.event, "download");
            assert_eq!(e.data, Payload::Binary(vec![1u8, b'\n', 2].into()));
        }
        other => panic!("expected the binary event, got {other:?}"),
    }

    a.close().await.expect("close");
    assert!(matches!(
        handle.receive(a_id).await,
        Err(Error::ConnectionClosed(c)) if c == a_id
    ));
}

pub async fn handle_batches_and_cancels<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone())).await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws").await;
    a.subscribe("doc").await.expect("subscribe");
    let target = Target::room("/", "doc");
    let ttl = Duration::from_millis(50);
    for x in 0..3 {
        handle
            .publish_batched(target.clone(), "cursor:ann", "cursor", json!({"x": x}), ttl)
            .await
            .expect("batch");
    }
    match event(&a).await {
        ClientEvent::Batch {
            event,
            channel,
            messages,
        } => {
            assert_eq!(event, "cursor");
            assert_eq!(channel.as_deref(), Some("doc"));
            assert_eq!(
                messages,
                vec![json!({"x": 0}), json!({"x": 1}), json!({"x": 2})]
            );
        }
        other => panic!("expected the batch, got {other:?}"),
    }
    handle
        .publish_batched(target.clone(), "typing", "typing", json!("ann"), ttl)
        .await
        .expect("batch");
    assert!(handle
        .cancel_batch(target.clone(), "typing")
        .await
        .expect("cancel"));
    assert!(!handle
        .cancel_batch(target.clone(), "typing")
        .await
        .expect("cancel"));
    let after = handle.to_room("doc", Message::json("after", json!(0)));
    assert_eq!(after.await.expect("publish").queued, 1);
    sleep(&rt, ttl * 2).await;
    assert_eq!(data(&event(&a).await).0, "after");
    assert_eq!(
        a.next_timeout(ttl * 3).await,
        None,
        "the cancelled batch never came, even after its TTL"
    );
}

pub async fn emit_with_ack_both_ways_and_timeouts<R: Runtime>(rt: R) {
    let router = Router::new().on("echo", |ctx, value: Value| async move {
        ctx.reply(json!({"echo": value})).await.expect("reply");
    });
    let server = start(Builder::new(rt.clone()).router(router)).await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws").await;
    let a_id = conn_of(&server, &welcome(&a).await).await;

    // Client → server router.
    let answer = a
        .emit_with_ack("echo", json!([1, 2]), None)
        .await
        .expect("ack");
    assert_eq!(answer, Payload::Json(json!({"echo": [1, 2]})));
    // An event nobody answers times out on the client.
    let unanswered = a
        .emit_with_ack("nobody", json!(0), Some(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(unanswered, Err(Error::Timeout(_))),
        "{unanswered:?}"
    );

    // Server → client: the client answers.
    let asking = handle.emit_with_ack(a_id, Message::json("question", json!("2+2")), None);
    let answering = async {
        match event(&a).await {
            ClientEvent::Event(e) if e.event == "question" => {
                a.ack(e.ack.expect("asks for an ack"), json!(4))
                    .await
                    .expect("ack");
            }
            other => panic!("expected the question, got {other:?}"),
        }
    };
    let (reply, ()) = futures_lite::future::zip(asking, answering).await;
    assert_eq!(reply.expect("reply"), Payload::Json(json!(4)));
    // The client does not answer: a timeout, not a success.
    let silent = handle
        .emit_with_ack(
            a_id,
            Message::json("question", json!("?")),
            Some(Duration::from_millis(100)),
        )
        .await;
    assert!(matches!(silent, Err(Error::Timeout(_))), "{silent:?}");
    // The router takes only its events; the rest wait in the connection's inbox, the
    // unanswered question from above first.
    a.emit("unrouted", json!(1)).await.expect("emit");
    let nobody = handle.receive(a_id).await.expect("receive");
    assert_eq!(nobody.event, "nobody");
    assert!(nobody.ack.is_some(), "it asked for an ack nobody gave");
    let unrouted = handle.receive(a_id).await.expect("receive");
    assert_eq!(
        (unrouted.event.as_str(), unrouted.data),
        ("unrouted", Payload::Json(json!(1)))
    );
    // A reply to an ack never asked is ignored, and never taken as an answer.
    a.ack(999, json!("stray")).await.expect("send");
    assert!(handle.is_connected(a_id).await.expect("still up"));
}

pub async fn router_handlers_fallback_hooks_and_subscribe_authorization<R: Runtime>(rt: R) {
    #[derive(serde::Deserialize)]
    struct Join {
        game: String,
    }
    let (hooks_tx, hooks) = async_channel::unbounded::<String>();
    let (on_connect, on_disconnect) = (hooks_tx.clone(), hooks_tx.clone());
    let (on_join, on_leave) = (hooks_tx.clone(), hooks_tx);
    let router = Router::new()
        .on("join_game", |ctx, join: Join| async move {
            ctx.join(&join.game).await.expect("join");
            ctx.emit(
                "joined",
                json!({"game": join.game, "role": ctx.meta("role").await.expect("meta")}),
            )
            .await
            .expect("emit");
        })
        .on(
            "sum",
            |_, xs: Vec<i64>| async move { xs.iter().sum::<i64>() },
        )
        .on("forget", |_, _: Value| async {})
        .on("later", {
            let rt = rt.clone();
            move |ctx: Ctx<R>, _: Value| {
                let rt = rt.clone();
                async move {
                    // Its `Ctx` goes to spawned work, which answers once the handler is done.
                    let work_rt = rt.clone();
                    rt.spawn(async move {
                        sleep(&work_rt, Duration::from_millis(20)).await;
                        let _ = ctx.reply("later").await;
                    });
                }
            }
        })
        .fallback(|ctx, event, _| async move {
            ctx.error(&format!("unknown command {event:?}"))
                .await
                .expect("error");
        })
        .on_connect(move |ctx| {
            let tx = on_connect.clone();
            async move {
                let _ = tx.send(format!("connect {}", ctx.conn())).await;
            }
        })
        .on_disconnect(move |d| {
            let tx = on_disconnect.clone();
            async move {
                let _ = tx.send(format!("disconnect {} {}", d.conn, d.code.0)).await;
            }
        })
        .on_join(move |_, room| {
            let tx = on_join.clone();
            async move {
                let _ = tx.send(format!("join {room}")).await;
            }
        })
        .on_leave(move |_, room| {
            let tx = on_leave.clone();
            async move {
                let _ = tx.send(format!("leave {room}")).await;
            }
        })
        .authorize_subscribe(|_, channel| async move {
            if channel.starts_with("private-") {
                Err("members only".to_owned())
            } else {
                Ok(())
            }
        });
    let builder = Builder::new(rt.clone())
        .router(router)
        .on_connect(|_| async { Ok(Accept::new().meta("role", "player")) });
    let server = start(builder).await;
    let a = client(&rt, &server, "/ws").await;
    let label = welcome(&a).await;
    assert_eq!(
        hooks.recv().await.expect("hook"),
        format!("connect {label}")
    );

    a.emit("join_game", json!({"game": "g1"}))
        .await
        .expect("emit");
    assert_eq!(
        event(&a).await,
        ClientEvent::Subscribed {
            channel: "g1".into(),
            pinned: false
        },
        "the server's join is announced"
    );
    assert_eq!(
        data(&event(&a).await),
        ("joined", &json!({"game": "g1", "role": "player"}))
    );
    a.emit("join_game", json!({"nope": 1})).await.expect("emit");
    let refused = event(&a).await;
    let (name, body) = data(&refused);
    assert_eq!(name, "error");
    let why = body["message"].as_str().expect("a reason");
    assert!(
        why.starts_with("invalid data") && why.contains("game"),
        "{why}"
    );
    assert_eq!(body["code"], "invalid_data");
    // An acked event's error answers its ack, and nothing else is sent.
    let answer = a.emit_with_ack("join_game", json!(7), None).await;
    assert!(
        matches!(&answer, Err(Error::Server { code, .. }) if code == "invalid_data"),
        "bad data answers the ack with an error: {answer:?}"
    );
    a.emit("teleport", json!({})).await.expect("emit");
    let got = event(&a).await;
    assert_eq!(
        data(&got),
        (
            "error",
            &json!({"code": "application", "message": "unknown command \"teleport\""})
        )
    );
    let answer = a.emit_with_ack("teleport", json!({}), None).await;
    assert!(
        matches!(&answer, Err(Error::Server { code, .. }) if code == "application"),
        "{answer:?}"
    );
    // A handler that returns without replying answers with what it returned, or null.
    let sum = a.emit_with_ack("sum", json!([1, 2, 3]), None).await;
    assert_eq!(sum.expect("answered"), Payload::Json(json!(6)));
    let forgot = a.emit_with_ack("forget", json!(0), None).await;
    assert_eq!(forgot.expect("answered"), Payload::Json(Value::Null));
    // One that hands its `Ctx` to spawned work leaves the answer to that work.
    let later = a.emit_with_ack("later", json!(0), None).await;
    assert_eq!(later.expect("answered"), Payload::Json(json!("later")));

    a.subscribe("public").await.expect("allowed");
    match a.subscribe("private-x").await {
        Err(Error::Server { code, message }) => {
            assert_eq!(code, "subscribe_denied");
            assert_eq!(message, "members only");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    a.close().await.expect("close");
    let mut seen = Vec::new();
    while !seen
        .last()
        .is_some_and(|h: &String| h.starts_with("disconnect"))
    {
        seen.push(hooks.recv().await.expect("hook"));
    }
    assert_eq!(
        seen,
        [
            "join g1".to_owned(),
            "join public".to_owned(),
            "leave g1".to_owned(),
            "leave public".to_owned(),
            format!("disconnect {label} 1000"),
        ]
    );
}

pub async fn origin_is_refused_or_allowed_by_pattern<R: Runtime>(rt: R) {
    let server =
        start(Builder::new(rt.clone()).origin(OriginPolicy::allow(["https://*.example.com"])))
            .await;
    let url = server.ws_url("/ws");
    let refused = raw(&rt, &url, &[("origin", "https://evil.com")]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));
    let missing = raw(&rt, &url, &[]).await;
    assert_eq!(
        missing.err().map(|e| e.0),
        Some(403),
        "an allow-list needs an Origin"
    );
    let mut ok = raw(&rt, &url, &[("origin", "https://app.example.com")])
        .await
        .expect("allowed");
    raw_send(&mut ok, json!({"type": "ping", "id": "p"})).await;
    assert_eq!(
        raw_json(&rt, &mut ok).await,
        json!({"type": "pong", "ref": "p"})
    );

    // The default: same origin only; a non-browser without Origin is fine.
    let server = start(Builder::new(rt.clone())).await;
    let url = server.ws_url("/ws");
    let foreign = raw(&rt, &url, &[("origin", "http://evil.com")]).await;
    assert_eq!(foreign.err().map(|e| e.0), Some(403));
    let host = server.local_addr().to_string();
    let same = format!("http://{host}");
    assert!(raw(&rt, &url, &[("origin", &same)]).await.is_ok());
    assert!(raw(&rt, &url, &[]).await.is_ok());
}

pub async fn connect_hook_refuses_with_401_or_admits_with_identity<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone()).on_connect(|req| async move {
        match req.query_param("token").as_deref() {
            Some("s3cret") => Ok(Accept::new().name("ann").meta("user", "ann")),
            Some(_) => Err(Refusal::forbidden("bad token")),
            None => Err(Refusal::unauthorized("token required")),
        }
    }))
    .await;
    let refused = raw(&rt, &server.ws_url("/ws"), &[]).await;
    assert_eq!(refused.err(), Some((401, "token required".to_owned())));
    let ours = ClientBuilder::new(rt.clone(), &server.ws_url("/ws?token=nope"))
        .connect()
        .await;
    assert!(
        matches!(&ours, Err(Error::Refused { status: 403, body }) if body == "bad token"),
        "{ours:?}"
    );
    assert_eq!(server.handle().count().await.expect("count"), 0);
    let a = client(&rt, &server, "/ws?token=s3cret").await;
    welcome(&a).await;
    let handle = server.handle();
    let id = handle
        .by_name("ann")
        .await
        .expect("by_name")
        .expect("named");
    assert_eq!(
        handle.meta(id, "user").await.expect("meta"),
        Some(json!("ann"))
    );
}

pub async fn subprotocols_first_supported_wins<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone()).subprotocols(["tidings.v2", "tidings.v1"])).await;
    let url = server.ws_url("/ws");
    let ours = ClientBuilder::new(rt.clone(), &url)
        .subprotocols(["x-unknown", "tidings.v1", "tidings.v2"])
        .connect()
        .await
        .expect("connect");
    assert_eq!(
        ours.protocol(),
        Some("tidings.v1"),
        "the client's order decides"
    );
    let refused = raw(&rt, &url, &[("sec-websocket-protocol", "mqtt")]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(400));
    let none = ClientBuilder::new(rt.clone(), &url)
        .subprotocols(Vec::<String>::new())
        .connect()
        .await
        .expect("connect");
    assert_eq!(none.protocol(), None);
}

pub async fn plain_http_is_served_beside_the_websocket<R: Runtime>(rt: R) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let server = start(Builder::new(rt.clone()).http(|handle, req| async move {
        let open = handle.count().await.expect("the handle works here");
        let body = format!("page at {} with {open} connections", req.uri().path());
        http::Response::new(http_body_util::Full::from(body))
    }))
    .await;
    let get = |path: &'static str| {
        let rt = rt.clone();
        let addr = server.local_addr().to_string();
        async move {
            let mut tcp = rt.connect(&addr).await.expect("connect");
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut response = String::new();
            tcp.read_to_string(&mut response).await.expect("read");
            response
        }
    };
    let addr = server.local_addr();
    assert_eq!(server.http_url("/x"), format!("http://{addr}/x"));
    assert_eq!(server.ws_url("/ws"), format!("ws://{addr}/ws"));
    let page = get("/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("page at / with 0 connections"), "{page}");
    let not_upgraded = get("/ws").await;
    assert!(not_upgraded.starts_with("HTTP/1.1 426"), "{not_upgraded}");
    // The WebSocket still works on the same port.
    let a = client(&rt, &server, "/ws").await;
    a.ping().await.expect("pong");
}

pub async fn oversized_message_is_closed_with_1009<R: Runtime>(rt: R) {
    let config = Config::default().max_message_size(1024);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let big = format!(
        r#"{{"type":"event","event":"x","data":"{}"}}"#,
        "a".repeat(2000)
    );
    let _ = futures_util::SinkExt::send(&mut ws, Ws::text(big)).await;
    loop {
        match raw_next(&rt, &mut ws).await {
            Some(Ws::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Some(Ws::Text(_)) => continue, // the welcome
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
    let counters = server.handle().counters().await.expect("counters");
    assert_eq!(counters.closes.get(&CloseCode::TOO_BIG), Some(&1));
}

pub async fn client_that_stops_answering_pings_is_closed_in_time<R: Runtime>(rt: R) {
    let (ping, wait) = (Duration::from_millis(100), Duration::from_millis(300));
    let config = Config::default().ping_period(Some(ping)).pong_wait(wait);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let handle = server.handle();
    // A live client: ours answers pings from its reader task.
    let live = client(&rt, &server, "/ws").await;
    let live_id = conn_of(&server, &welcome(&live).await).await;
    // A dead one: a raw client that never reads, so never answers a ping.
    let started = Instant::now();
    let mut dead = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    eventually(&rt, "the silent client is closed", || async {
        handle.count().await.expect("count") == 1
    })
    .await;
    let took = started.elapsed();
    assert!(took >= wait, "closed after {took:?}, before the pong wait");
    assert!(
        took < ping + wait + Duration::from_secs(1),
        "closed after {took:?}"
    );
    // When it reads at last: the pings it ignored, then 4001.
    loop {
        match raw_next(&rt, &mut dead).await {
            Some(Ws::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4001);
                break;
            }
            Some(Ws::Text(_)) => continue,
            other => panic!("expected close 4001, got {other:?}"),
        }
    }
    sleep(&rt, wait * 2).await;
    assert!(
        handle.is_connected(live_id).await.expect("live"),
        "pongs keep it open"
    );
}

pub async fn client_that_stops_reading_is_cut_while_others_get_everything<R: Runtime>(rt: R) {
    let config = Config::default()
        .max_queue_frames(64)
        .max_queue_bytes(512 * 1024)
        .slow_consumer_timeout(Duration::from_millis(500))
        .write_window(16);
    let (closes_tx, closes) = async_channel::unbounded();
    let router = Router::new().on_disconnect(move |d| {
        let tx = closes_tx.clone();
        async move {
            let _ = tx.send((d.conn, d.code, d.reason)).await;
        }
    });
    let server = start(Builder::new(rt.clone()).config(config).router(router)).await;
    let handle = server.handle();
    let mut slow = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    raw_send(&mut slow, subscribe("feed")).await;
    // It reads its welcome and subscribed answer, then nothing more.
    raw_json(&rt, &mut slow).await;
    let fast: Vec<_> = futures_lite::stream::iter(0..2)
        .then(|_| client(&rt, &server, "/ws"))
        .collect()
        .await;
    for c in &fast {
        c.subscribe("feed").await.expect("subscribe");
    }
    let (count, size) = (600usize, 16 * 1024);
    let publish = async {
        let filler = "x".repeat(size);
        for n in 0..count {
            let message = Message::json("item", json!({"n": n, "pad": filler}));
            // Waits for room while the slow reader is behind, until it is cut.
            let _ = handle.to_room("feed", message).await.expect("publish");
            if n % 8 == 0 {
                sleep(&rt, Duration::from_millis(1)).await;
            }
        }
    };
    futures_lite::future::zip(
        publish,
        futures_lite::future::zip(read_all(&fast[0], count), read_all(&fast[1], count)),
    )
    .await;
    let (_, code, reason) = closes.recv().await.expect("a disconnect");
    assert_eq!(code, CloseCode::SLOW_CONSUMER, "{reason}");
    assert!(
        reason.contains("slow") || reason.contains("queue"),
        "{reason}"
    );
    assert_eq!(handle.count().await.expect("count"), 2);
    drop(slow);
}

/// Bounds and a slow-consumer timeout that never cut a reader within a test: only the write
/// timeout could.
fn never_cut_by_the_hub() -> Config {
    Config::default()
        .max_queue_frames(100_000)
        .max_queue_bytes(256 * 1024 * 1024)
        .slow_consumer_timeout(Duration::from_secs(60))
        .write_window(100_000)
}

/// Publishes items `{"n": 0..count}`, each padded to 64 KiB, to room `feed`, whose one
/// member is the reader under test.
async fn publish_big_items<R: Runtime>(handle: &crate::Handle<R>, count: usize) {
    let filler = "x".repeat(64 * 1024);
    for n in 0..count {
        let message = Message::json("item", json!({"n": n, "pad": filler}));
        let delivery = handle.to_room("feed", message).await.expect("publish");
        assert_eq!(delivery.queued, 1);
    }
}

/// The write timeout counts from the last frame the socket took, not from the start of a
/// burst: a reader that keeps taking frames, however slowly, is never cut by it.
pub async fn a_reader_that_reads_slowly_is_not_cut_by_the_write_timeout<R: Runtime>(rt: R) {
    let config = never_cut_by_the_hub();
    let write_timeout = Duration::from_millis(300);
    let server = start(
        Builder::new(rt.clone())
            .config(config)
            .write_timeout(write_timeout),
    )
    .await;
    let handle = server.handle();
    let mut reader = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    raw_send(&mut reader, subscribe("feed")).await;
    raw_json(&rt, &mut reader).await;
    // 24 MiB in one burst: more than loopback's socket buffers hold, so the writer waits on
    // the reader for seconds, much longer than the write timeout. The reader reads from the
    // start: were it to wait for the whole burst to be published, a slow machine could take
    // longer than the write timeout to publish it, and the socket would rightly be cut.
    let (count, size) = (384usize, 64 * 1024);
    let filler = "x".repeat(size);
    let publish = async {
        for n in 0..count {
            let message = Message::json("item", json!({"n": n, "pad": filler}));
            let delivery = handle.to_room("feed", message).await.expect("publish");
            assert_eq!(delivery.queued, 1);
        }
    };
    let started = Instant::now();
    let read = async {
        for next in 0..count {
            if next % 20 == 0 {
                // About 12 MiB a second: slow, but the socket takes frames all the time.
                sleep(&rt, Duration::from_millis(100)).await;
            }
            let item = raw_json(&rt, &mut reader).await;
            assert_eq!(
                item["data"]["n"],
                json!(next),
                "every item, in order, none after a close"
            );
        }
    };
    futures_lite::future::zip(publish, read).await;
    assert!(
        started.elapsed() > write_timeout * 3,
        "the burst took longer than the write timeout"
    );
    assert_eq!(handle.count().await.expect("count"), 1, "not cut");
}

/// A graceful close that reaches the writer while it is stuck on a reader that is not
/// reading yet: the frames handed out before the close still go out, in order, then the
/// close frame (the writer had set them aside and sent the close without them).
pub async fn frames_handed_out_before_a_close_go_out_even_while_a_write_is_stuck<R: Runtime>(
    rt: R,
) {
    let config = never_cut_by_the_hub().close_grace(Duration::from_secs(20));
    let server = start(
        Builder::new(rt.clone())
            .config(config)
            .write_timeout(Duration::from_secs(20))
            .close_delay(Duration::from_secs(20)),
    )
    .await;
    let handle = server.handle();
    let mut reader = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    let conn: ConnId = match raw_next(&rt, &mut reader).await {
        Some(Ws::Text(welcome)) => {
            let welcome: Value = serde_json::from_str(&welcome).expect("JSON");
            welcome["conn"].as_str().expect("conn").parse().expect("id")
        }
        other => panic!("expected the welcome, got {other:?}"),
    };
    raw_send(&mut reader, subscribe("feed")).await;
    raw_json(&rt, &mut reader).await;
    // 24 MiB that the reader does not read yet: more than loopback's socket buffers hold, so
    // the writer is stuck in this burst.
    let count = 384;
    publish_big_items(&handle, count).await;
    sleep(&rt, Duration::from_millis(200)).await;
    // Handed out while that write is stuck, then the close.
    let last = Message::json("item", json!({"n": count}));
    let delivery = handle.to_room("feed", last).await.expect("publish");
    assert_eq!(delivery.queued, 1);
    handle
        .close(conn, CloseCode(4100), "done")
        .await
        .expect("close");
    for next in 0..=count {
        let item = raw_json(&rt, &mut reader).await;
        assert_eq!(
            item["data"]["n"],
            json!(next),
            "every item, in order, the last one too"
        );
    }
    match raw_next(&rt, &mut reader).await {
        Some(Ws::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4100),
        other => panic!("expected the close, got {other:?}"),
    }
}

/// A client's ping read while a write is stuck in the middle of a frame: tungstenite's
/// automatic pong must wait for the frame's end, or the client's stream is corrupt.
pub async fn a_ping_while_a_write_is_stuck_is_answered_between_whole_frames<R: Runtime>(rt: R) {
    let server = start(
        Builder::new(rt.clone())
            .config(never_cut_by_the_hub())
            .write_timeout(Duration::from_secs(20)),
    )
    .await;
    let handle = server.handle();
    let mut reader = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    raw_send(&mut reader, subscribe("feed")).await;
    raw_json(&rt, &mut reader).await;
    // 8 MiB that the reader does not read yet: the writer is stuck, most likely inside a
    // frame (frames of 64 KiB, socket buffers of odd sizes).
    let count = 128;
    publish_big_items(&handle, count).await;
    sleep(&rt, Duration::from_millis(200)).await;
    // The server reads these pings while its write is stuck; tungstenite owes their pongs.
    for n in 0u8..3 {
        futures_util::SinkExt::send(&mut reader, Ws::Ping(vec![n].into()))
            .await
            .expect("ping");
        sleep(&rt, Duration::from_millis(50)).await;
    }
    // Every item whole and in order, and the three pongs (owed before the burst's end)
    // somewhere between them or after.
    let (mut next, mut pongs) = (0, Vec::new());
    while next < count || pongs.len() < 3 {
        let frame = or(reader.next(), async {
            sleep(&rt, Duration::from_secs(5)).await;
            panic!(
                "nothing within 5 s: item {next} of {count}, {} pongs",
                pongs.len()
            );
        })
        .await;
        match frame {
            Some(Ok(Ws::Text(text))) => {
                let item: Value = serde_json::from_str(&text).expect("a whole JSON frame");
                assert_eq!(item["data"]["n"], json!(next), "every item, in order");
                next += 1;
            }
            Some(Ok(Ws::Pong(payload))) => pongs.push(payload.to_vec()),
            other => panic!("the stream broke before item {next}: {other:?}"),
        }
    }
    assert_eq!(
        pongs,
        [vec![0u8], vec![1], vec![2]],
        "each ping answered once, in order"
    );
}

/// One HTTP/1.1 GET's whole answer, head and body.
async fn http_get<R: Runtime>(rt: &R, server: &Server<R>, path: &str) -> String {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = rt
        .connect(&server.local_addr().to_string())
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    response
}

/// The samples of an OpenMetrics text, checked line by line: every line is a `HELP`,
/// `TYPE` or `UNIT` comment or a sample of a family whose `TYPE` came before it, names are
/// Prometheus names, values are numbers, and `# EOF` ends it. Sample name (with its labels)
/// to value.
fn metric_samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = std::collections::BTreeMap::new();
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name) = (parts.next(), parts.next().expect("a name"));
            assert!(is_name(name), "{line}");
            match kind {
                Some("TYPE") => {
                    let kind = parts.next().expect("a type");
                    assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                    typed.insert(name.to_owned());
                }
                Some("HELP" | "UNIT") => {}
                _ => panic!("not a metrics comment: {line}"),
            }
            continue;
        }
        let (sample, value) = line.rsplit_once(' ').expect("a sample and its value");
        let name = sample.split('{').next().expect("a name");
        assert!(is_name(name), "{line}");
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(typed.contains(family), "{line}: no TYPE before it");
        if let Some(labels) = sample.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let value: f64 = value.parse().expect("a number");
        samples.insert(sample.to_owned(), value);
    }
    samples
}

/// `Builder::metrics`: the counters are served in the Prometheus text format on the same
/// port, and each moves when its event happens.
pub async fn metrics_are_served_and_move_with_their_events<R: Runtime>(rt: R) {
    let off = start(Builder::new(rt.clone())).await;
    assert!(http_get(&rt, &off, "/metrics")
        .await
        .starts_with("HTTP/1.1 404"));

    let server = start(Builder::new(rt.clone()).metrics("/metrics")).await;
    let scrape = || async {
        let answer = http_get(&rt, &server, "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("content-type: application/openmetrics-text"),
            "{answer}"
        );
        let (_, body) = answer.split_once("\r\n\r\n").expect("a body");
        metric_samples(body)
    };
    let before = scrape().await;
    assert_eq!(before["tidings_connections"], 0.0);
    assert_eq!(before["tidings_connections_opened_total"], 0.0);
    assert_eq!(before["tidings_queue_depth_frames_count"], 0.0);
    let not_an_upgrade = http_get(&rt, &server, "/ws").await;
    assert!(
        not_an_upgrade.starts_with("HTTP/1.1 426"),
        "{not_an_upgrade}"
    );

    let a = client(&rt, &server, "/ws").await;
    a.subscribe("news").await.expect("subscribe");
    let mut raw_client = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    raw_send(&mut raw_client, json!({"type": "nonsense"})).await;
    raw_json(&rt, &mut raw_client).await; // the error answer
    let handle = server.handle();
    let news = Message::json("news", json!({"n": 1}));
    assert_eq!(
        handle.to_room("news", news).await.expect("publish").queued,
        1
    );
    event(&a).await;
    let now = scrape().await;
    assert_eq!(now["tidings_connections"], 2.0);
    assert_eq!(now["tidings_connections_opened_total"], 2.0);
    assert_eq!(now["tidings_rooms"], 1.0);
    assert_eq!(now["tidings_members"], 1.0);
    assert_eq!(now["tidings_deliveries_total"], 1.0, "the publish, to a");
    assert_eq!(now["tidings_protocol_errors_total"], 1.0);
    assert!(
        now["tidings_frames_in_total"] >= 2.0,
        "subscribe and nonsense"
    );
    assert!(now["tidings_frames_out_total"] > before["tidings_frames_out_total"]);
    assert!(now["tidings_bytes_out_total"] > before["tidings_bytes_out_total"]);
    assert_eq!(now["tidings_upgrades_refused_total{status=\"426\"}"], 1.0);
    assert_eq!(
        now["tidings_queue_depth_frames_count"], 2.0,
        "one per connection"
    );
    assert!(now["tidings_hub_busy_seconds_total"] > 0.0);
    // The same figures from the handle, for an application that shows them itself.
    let depths = handle.queue_depths().await.expect("depths");
    assert_eq!(depths.len(), 2, "one per connection: {depths:?}");
    assert!(handle.busy().await.expect("busy") > Duration::ZERO);

    a.close().await.expect("close");
    eventually(&rt, "the close is counted by its code", || async {
        let after = scrape().await;
        after.get("tidings_connections_closed_total{code=\"1000\"}") == Some(&1.0)
            && after["tidings_connections"] == 1.0
    })
    .await;
    assert_eq!(
        handle.metrics().await.expect("metrics").lines().last(),
        Some("# EOF")
    );
}

/// Reads `count` `item` events numbered 0.. in order.
async fn read_all<R: Runtime>(c: &Client<R>, count: usize) {
    for next in 0..count {
        let got = event(c).await;
        let (name, value) = data(&got);
        assert_eq!(name, "item");
        assert_eq!(value["n"], json!(next), "in order, none missing");
    }
}

pub async fn graceful_shutdown_delivers_queued_messages_then_1001<R: Runtime>(rt: R) {
    let grace = Duration::from_secs(30);
    let server = start(Builder::new(rt.clone()).config(Config::default().close_grace(grace))).await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws").await;
    let mut b = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    a.subscribe("room").await.expect("subscribe");
    raw_send(&mut b, subscribe("room")).await;
    assert_eq!(raw_json(&rt, &mut b).await["type"], "subscribed");
    for n in 0..50 {
        let sent = handle.to_room("room", Message::json("m", json!(n)));
        assert_eq!(sent.await.expect("publish").queued, 2);
    }
    assert!(!handle.is_stopping());
    assert_eq!(handle.running_connections(), 2);
    let not_yet = or(
        async {
            server.stopped().await;
            true
        },
        async {
            sleep(&rt, Duration::from_millis(20)).await;
            false
        },
    );
    assert!(!not_yet.await, "stopped() waits for shutdown");
    let started = Instant::now();
    let shutdown = handle.shutdown();
    let read_a = async {
        for n in 0..50 {
            assert_eq!(data(&event(&a).await), ("m", &json!(n)));
        }
        match event(&a).await {
            ClientEvent::Closed { code, .. } => assert_eq!(code, Some(CloseCode::GOING_AWAY)),
            other => panic!("expected 1001, got {other:?}"),
        }
    };
    let read_b = async {
        for n in 0..50 {
            assert_eq!(raw_json(&rt, &mut b).await["data"], json!(n));
        }
        match raw_next(&rt, &mut b).await {
            Some(Ws::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected 1001, got {other:?}"),
        }
    };
    let (done, _) =
        futures_lite::future::zip(shutdown, futures_lite::future::zip(read_a, read_b)).await;
    done.expect("shutdown");
    assert!(
        started.elapsed() < grace / 2,
        "shutdown returns once everyone is closed, not at the grace"
    );
    assert!(handle.is_stopping());
    assert!(
        matches!(handle.count().await, Err(Error::Stopped)),
        "the hub task has ended"
    );
    assert_eq!(
        handle.running_connections(),
        0,
        "every connection task has ended"
    );
    server.stopped().await;
    let late = ClientBuilder::new(rt.clone(), &server.ws_url("/ws"))
        .connect()
        .await;
    assert!(late.is_err(), "no new connections after shutdown");
}

pub async fn bring_your_own_server_hands_over_a_websocket<R: Runtime>(rt: R) {
    // A hub without a server of its own, and the application's own accept loop, whose
    // handshake answers the subprotocol our client offers.
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    let choose = |req: &tungstenite::handshake::server::Request,
                  mut res: tungstenite::handshake::server::Response| {
        let offered = req.headers().get("sec-websocket-protocol");
        if offered
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(crate::SUBPROTOCOL_V1))
        {
            let v = http::HeaderValue::from_static(crate::SUBPROTOCOL_V1);
            res.headers_mut().insert("sec-websocket-protocol", v);
        }
        Ok(res)
    };
    let name = "/ws/user123/notification";
    let info = ConnectionInfo::new(name).name(name);
    let (handle, addr, opened) = own_server(&rt, info, move |tcp| async move {
        async_tungstenite::accept_hdr_async(tcp, choose)
            .await
            .expect("upgrade")
    })
    .await;
    let url = format!("ws://{addr}/ws/user123/notification");
    let a = ClientBuilder::new(rt.clone(), &url)
        .connect()
        .await
        .expect("connect");
    let conn = opened.recv().await.expect("opened");
    welcome(&a).await;
    assert!(handle
        .exists("/ws/user123/notification")
        .await
        .expect("exists"));
    let by_name = handle
        .by_name("/ws/user123/notification")
        .await
        .expect("by_name");
    assert_eq!(by_name, Some(conn));
    let sent = handle.emit(conn, Message::json("notification", json!({"title": "hi"})));
    assert_eq!(sent.await.expect("emit").queued, 1);
    assert_eq!(
        data(&event(&a).await),
        ("notification", &json!({"title": "hi"}))
    );
    a.subscribe("alerts")
        .await
        .expect("a connection like any other");
    handle
        .close(conn, CloseCode::NORMAL, "done")
        .await
        .expect("close");
    assert!(matches!(
        event(&a).await,
        ClientEvent::Closed {
            code: Some(CloseCode::NORMAL),
            ..
        }
    ));
}

pub async fn client_publishes_and_unsubscribes<R: Runtime>(rt: R) {
    let config = Config::default().client_publish(true);
    let server = start(Builder::new(rt.clone()).config(config)).await;
    let (a, b) = (
        client(&rt, &server, "/ws").await,
        client(&rt, &server, "/ws").await,
    );
    a.subscribe("chat").await.expect("subscribe");
    b.subscribe("chat").await.expect("subscribe");
    a.publish("chat", "say", json!("hi"))
        .await
        .expect("publish");
    for c in [&a, &b] {
        let got = event(c).await;
        assert_eq!(
            data(&got),
            ("say", &json!("hi")),
            "every member, the sender too"
        );
    }
    b.unsubscribe("chat").await.expect("unsubscribe");
    match b.unsubscribe("chat").await {
        Err(Error::Server { code, .. }) => assert_eq!(code, "not_subscribed"),
        other => panic!("expected not_subscribed, got {other:?}"),
    }
    a.publish("chat", "say", json!("again"))
        .await
        .expect("publish");
    assert_eq!(data(&event(&a).await).1, &json!("again"));
    b.ping().await.expect("b is up");
    assert!(
        b.next_timeout(Duration::from_millis(100)).await.is_none(),
        "b left"
    );
    // A publish to a channel it is not in is refused, not delivered.
    b.publish("chat", "say", json!("outsider"))
        .await
        .expect("sent");
    match event(&b).await {
        ClientEvent::Error { code, .. } => assert_eq!(code, "not_subscribed"),
        other => panic!("expected not_subscribed, got {other:?}"),
    }
}

pub async fn transport_error_closes_after_the_configured_delay<R: Runtime>(rt: R) {
    // An end of stream without a close frame is the peer's doing: 1006 at once.
    let server = start(Builder::new(rt.clone())).await;
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    raw_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(raw_json(&rt, &mut ws).await["type"], "pong");
    drop(ws); // everything read: a plain end of stream (FIN), no close frame
    eventually(&rt, "the vanished peer is gone", || async {
        server.handle().count().await.expect("count") == 0
    })
    .await;
    let closes = server.handle().counters().await.expect("counters").closes;
    assert_eq!(closes.get(&CloseCode::ABNORMAL), Some(&1), "{closes:?}");

    let delay = Duration::from_secs(1);
    let config = Config::default().error_close_delay(delay);
    let (closes_tx, closes) = async_channel::unbounded();
    let router = Router::new().on_disconnect(move |d| {
        let tx = closes_tx.clone();
        async move {
            let _ = tx.send((d.code, Instant::now())).await;
        }
    });
    let server = start(Builder::new(rt.clone()).config(config).router(router)).await;
    let handle = server.handle();
    let ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    eventually(&rt, "the welcome is sent", || async {
        handle
            .counters()
            .await
            .expect("counters")
            .connections_opened
            == 1
    })
    .await;
    let sent = handle.broadcast(Message::json("unread", json!(0)));
    assert_eq!(sent.await.expect("broadcast").queued, 1);
    sleep(&rt, Duration::from_millis(50)).await;
    // Dropped with a message unread: the kernel resets the connection (a read error on the
    // server, not an end of stream).
    let dropped = Instant::now();
    drop(ws);
    let (code, at) = closes.recv().await.expect("disconnect");
    assert_eq!(code, CloseCode::ABNORMAL);
    let after = at - dropped;
    assert!(
        after >= delay,
        "closed {after:?} after the error, before the delay"
    );
    assert_eq!(handle.count().await.expect("count"), 0);
}

pub async fn peer_close_is_echoed_and_reported<R: Runtime>(rt: R) {
    let (closes_tx, closes) = async_channel::unbounded();
    let router = Router::new().on_disconnect(move |d| {
        let tx = closes_tx.clone();
        async move {
            let _ = tx.send((d.code, d.reason)).await;
        }
    });
    let server = start(Builder::new(rt.clone()).router(router)).await;
    let mut ws = raw(&rt, &server.ws_url("/ws"), &[]).await.expect("connect");
    assert_eq!(
        raw_next(&rt, &mut ws).await.map(|m| m.is_text()),
        Some(true),
        "welcome"
    );
    let frame = tungstenite::protocol::CloseFrame {
        code: 4321.into(),
        reason: "done here".into(),
    };
    futures_util::SinkExt::send(&mut ws, Ws::Close(Some(frame)))
        .await
        .expect("close");
    match raw_next(&rt, &mut ws).await {
        Some(Ws::Close(Some(echo))) => assert_eq!(u16::from(echo.code), 4321),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    let (code, reason) = closes.recv().await.expect("disconnect");
    assert_eq!((code, reason.as_str()), (CloseCode(4321), "done here"));
}

pub async fn a_slow_router_stops_the_reading_of_sockets<R: Runtime>(rt: R) {
    let (gate_tx, gate) = async_channel::bounded::<()>(1);
    let (done_tx, done) = async_channel::unbounded::<u64>();
    let router = Router::new().on("work", move |_, n: u64| {
        let (gate, done) = (gate.clone(), done_tx.clone());
        async move {
            if n == 0 {
                let _ = gate.recv().await; // the first job blocks the router
            }
            let _ = done.send(n).await;
        }
    });
    // The rate limit would stop this flood first; here the router's gate is under test.
    let config = Config::default().max_inbound_rate(None);
    let server = start(Builder::new(rt.clone()).config(config).router(router)).await;
    let handle = server.handle();
    let a = client(&rt, &server, "/ws").await;
    let count = 5000u64;
    for n in 0..count {
        a.emit("work", n).await.expect("emit"); // small frames: the socket buffers hold them
    }
    sleep(&rt, Duration::from_millis(300)).await;
    let read = handle.counters().await.expect("counters").frames_in;
    assert!(
        read < 1024 + 256 + 16,
        "the hub read {read} frames while its router was stuck: it should stop near 1024"
    );
    gate_tx.send(()).await.expect("release");
    for n in 0..count {
        assert_eq!(
            done.recv().await.expect("handled"),
            n,
            "every message, in order"
        );
    }
}

pub async fn handler_context_namespaces_and_client_details<R: Runtime>(rt: R) {
    let router = Router::new()
        .on_raw("blob", |ctx, payload| async move {
            let len = match payload {
                Payload::Binary(b) => b.len(),
                _ => 0,
            };
            let data = json!({"len": len, "wants_ack": ctx.wants_ack()});
            ctx.emit("blob_len", data).await.expect("emit");
        })
        .on("ask", |ctx, n: Value| async move {
            let answer = json!({"n": n, "wants_ack": ctx.wants_ack()});
            if !ctx.reply(answer.clone()).await.expect("reply") {
                ctx.emit("asked", answer).await.expect("emit");
            }
        })
        .on("quit", |ctx, room: String| async move {
            let left = ctx.leave(&room).await.expect("leave");
            ctx.set_meta("quit", &room).await.expect("set_meta");
            ctx.reply(json!({"left": left})).await.expect("reply");
        });
    let builder = Builder::new(rt.clone())
        .router(router)
        .on_connect(|req| async move {
            let team = req.header("x-team").unwrap_or("none").to_owned();
            Ok(Accept::new().namespace(format!("/{team}")))
        });
    let server = start(builder).await;
    let handle = server.handle();
    let connect = |team: &'static str| {
        ClientBuilder::new(rt.clone(), &server.ws_url("/ws"))
            .header("x-team", team)
            .connect()
    };
    let red = connect("red").await.expect("connect");
    let blue = connect("blue").await.expect("connect");
    let red_id = conn_of(&server, &welcome(&red).await).await;
    welcome(&blue).await;
    let info = handle.info(red_id).await.expect("info").expect("open");
    assert_eq!(info.namespace, "/red");
    let sent = handle.publish(
        Target::namespace("/red"),
        Message::json("team", json!("red")),
    );
    assert_eq!(sent.await.expect("publish").queued, 1, "one namespace only");
    assert_eq!(data(&event(&red).await), ("team", &json!("red")));

    red.emit_binary("blob", &[1, 2, 3]).await.expect("binary");
    assert_eq!(
        data(&event(&red).await),
        ("blob_len", &json!({"len": 3, "wants_ack": false}))
    );
    // Two questions at once: each answer finds its own question.
    let (one, two) = futures_lite::future::zip(
        red.emit_with_ack("ask", 1, None),
        red.emit_with_ack("ask", 2, None),
    )
    .await;
    assert_eq!(
        one.expect("ack"),
        Payload::Json(json!({"n": 1, "wants_ack": true}))
    );
    assert_eq!(
        two.expect("ack"),
        Payload::Json(json!({"n": 2, "wants_ack": true}))
    );
    red.emit("ask", 3).await.expect("emit");
    assert_eq!(
        data(&event(&red).await),
        ("asked", &json!({"n": 3, "wants_ack": false}))
    );

    assert!(handle.join(red_id, "r").await.expect("join"));
    let joined = ClientEvent::Subscribed {
        channel: "r".into(),
        pinned: false,
    };
    assert_eq!(event(&red).await, joined);
    let quit = red.emit_with_ack("quit", "r", None).await.expect("ack");
    assert_eq!(quit, Payload::Json(json!({"left": true})));
    let again = red.emit_with_ack("quit", "r", None).await.expect("ack");
    assert_eq!(again, Payload::Json(json!({"left": false})));
    let left = ClientEvent::Unsubscribed {
        channel: "r".into(),
    };
    assert_eq!(event(&red).await, left, "the server's leave is announced");
    assert_eq!(
        handle.meta(red_id, "quit").await.expect("meta"),
        Some(json!("r"))
    );

    // Concurrent requests carry their own ids: each answer finds its request.
    let (x, y) = futures_lite::future::zip(red.subscribe("p"), red.subscribe("q")).await;
    x.expect("p");
    y.expect("q");
    red.ping().await.expect("pong");
    // Answers to requests without an id are events.
    red.send_text(r#"{"type":"subscribe","channel":"x"}"#)
        .await
        .expect("send");
    assert_eq!(
        event(&red).await,
        ClientEvent::Subscribed {
            channel: "x".into(),
            pinned: false
        }
    );
    red.send_text(r#"{"type":"unsubscribe","channel":"x"}"#)
        .await
        .expect("send");
    assert_eq!(
        event(&red).await,
        ClientEvent::Unsubscribed {
            channel: "x".into()
        }
    );

    handle
        .close(red_id, CloseCode(4200), "later")
        .await
        .expect("close");
    assert!(matches!(event(&red).await, ClientEvent::Closed { .. }));
    match red.emit("late", 0).await {
        Err(Error::Closed { code, reason }) => {
            assert_eq!((code, reason.as_str()), (Some(CloseCode(4200)), "later"));
        }
        other => panic!("a closed client refuses to send, got {other:?}"),
    }
    assert!(
        red.ping().await.is_err(),
        "no pong comes on a closed connection"
    );
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
fn handle_is_clone_send_sync<R: Runtime>() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<crate::Handle<R>>();
}

#[cfg(feature = "tls")]
pub async fn tls_serves_wss_to_our_client_and_tungstenite<R: Runtime>(rt: R) {
    let server_config = crate::tls::server_config(
        include_bytes!("tls/server.pem"),
        include_bytes!("tls/server-key.pem"),
    )
    .expect("server config");
    let roots = crate::tls::client_config(Some(include_bytes!("tls/ca.pem"))).expect("roots");
    let router = Router::new().on("echo", |ctx, v: Value| async move {
        ctx.reply(v).await.expect("reply");
    });
    let server = start(Builder::new(rt.clone()).tls(server_config).router(router)).await;
    let url = server.ws_url("/ws");
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let ours = ClientBuilder::new(rt.clone(), &url)
        .tls(roots.clone())
        .connect()
        .await
        .expect("wss connect");
    let answer = ours.emit_with_ack("echo", json!("over tls"), None).await;
    assert_eq!(answer.expect("ack"), Payload::Json(json!("over tls")));
    // Without the test CA the certificate is not trusted.
    let untrusted = ClientBuilder::new(rt.clone(), &url).connect().await;
    assert!(untrusted.is_err(), "an unknown CA is refused");
    // Plain tungstenite over futures-rustls agrees.
    let tcp = rt
        .connect(&server.local_addr().to_string())
        .await
        .expect("tcp");
    let name = futures_rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = futures_rustls::TlsConnector::from(roots)
        .connect(name, tcp)
        .await
        .expect("tls");
    let (mut ws, _) = async_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("upgrade");
    raw_send(&mut ws, json!({"type": "ping", "id": "t"})).await;
    assert_eq!(
        raw_json(&rt, &mut ws).await,
        json!({"type": "pong", "ref": "t"})
    );
}
