//! Recovery over real sockets (PROTOCOL.md, "Recovery"): our client reconnects by itself
//! and gets what was published while it was away, exactly once and in order, and is told
//! which channels could not be recovered; a plain tungstenite client that comes back with
//! its position gets the same from the protocol alone.

use std::time::Duration;

use serde_json::{json, Value};
use tidings_core::{CloseCode, Config, History, Message, Payload};

use super::*;
use crate::Backoff;

fn history_config() -> Config {
    Config::default().history("feed:*", History::new(100, Duration::from_secs(60)))
}

/// The `n` of an `item` event.
fn item(event: &ClientEvent) -> Option<u64> {
    match event {
        ClientEvent::Event(e) if e.event == "item" => match &e.data {
            Payload::Json(v) => v["n"].as_u64(),
            _ => None,
        },
        _ => None,
    }
}

pub async fn a_reconnecting_client_gets_what_it_missed_once_in_order<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone()).config(history_config())).await;
    let handle = server.handle();
    let backoff = Backoff {
        min: Duration::from_millis(300),
        max: Duration::from_secs(1),
    };
    let c = ClientBuilder::new(rt.clone(), &server.ws_url("/ws"))
        .timeout(Duration::from_secs(5))
        .reconnect(backoff)
        .connect()
        .await
        .expect("connect");
    c.subscribe("feed:1").await.expect("subscribe");
    c.subscribe("chat").await.expect("subscribe");
    // A channel it left is not taken up again.
    c.subscribe("feed:left").await.expect("subscribe");
    assert!(c.position("feed:left").is_some());
    c.unsubscribe("feed:left").await.expect("unsubscribe");
    assert_eq!(c.position("feed:left"), None);
    // A channel the application put it in: the application's to take up again, not the
    // client's (no position kept, no subscribe after the reconnect).
    let conn = first_conn(&handle).await;
    handle.join(conn, "feed:app").await.expect("join");
    let publish = |n: u64| {
        let handle = handle.clone();
        async move {
            let message = Message::json("item", json!({ "n": n }));
            let _ = handle.to_room("feed:1", message).await.expect("publish");
        }
    };
    let mut events = Vec::new();
    let next = || async {
        c.next_timeout(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    };
    for n in 0..3 {
        publish(n).await;
    }
    while events.iter().filter_map(item).count() < 3 {
        events.push(next().await);
    }
    let before = c.position("feed:1").expect("a position");
    assert_eq!(before.since, 3);

    // The server cuts it (as it would a slow consumer); two publications while it is away.
    let cut = first_conn(&handle).await;
    handle
        .close(cut, CloseCode::SLOW_CONSUMER, "read faster")
        .await
        .expect("close");
    loop {
        let event = next().await;
        let gone = matches!(event, ClientEvent::Disconnected { code: Some(code), .. } if code == CloseCode::SLOW_CONSUMER);
        events.push(event);
        if gone {
            break;
        }
    }
    publish(3).await;
    publish(4).await;
    // Back: both channels answered, the replay, then live.
    let (mut recovered, mut not_recovered) = (false, None);
    while !(recovered && not_recovered.is_some() && events.iter().filter_map(item).count() >= 5) {
        let event = next().await;
        match &event {
            ClientEvent::Recovered { channel } if channel == "feed:1" => recovered = true,
            ClientEvent::NotRecovered { channel, reason } if channel == "chat" => {
                not_recovered = Some(reason.clone())
            }
            _ => {}
        }
        events.push(event);
    }
    assert_eq!(not_recovered.as_deref(), Some("no_history"));
    publish(5).await;
    while events.iter().filter_map(item).count() < 6 {
        events.push(next().await);
    }
    let items: Vec<u64> = events.iter().filter_map(item).collect();
    assert_eq!(
        items,
        vec![0, 1, 2, 3, 4, 5],
        "every one once, in order: {events:?}"
    );
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected { .. } => Some("disconnected"),
            ClientEvent::Reconnected => Some("reconnected"),
            ClientEvent::Recovered { .. } => Some("recovered"),
            _ if item(e) == Some(3) => Some("3"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec!["disconnected", "reconnected", "recovered", "3"],
        "{events:?}"
    );
    assert_eq!(c.position("feed:1").map(|p| p.since), Some(6));
    assert_eq!(c.position("feed:app"), None);
    assert!(
        !events.iter().any(|e| matches!(e,
            ClientEvent::Recovered { channel } | ClientEvent::NotRecovered { channel, .. }
                if channel == "feed:app" || channel == "feed:left")),
        "{events:?}"
    );

    // The application's own close ends it for good.
    c.close().await.expect("close");
    loop {
        match next().await {
            ClientEvent::Closed { .. } => break,
            ClientEvent::Disconnected { .. } => panic!("reconnecting after close()"),
            _ => {}
        }
    }
}

/// The id of the one connection the hub has.
async fn first_conn<R: Runtime>(handle: &crate::Handle<R>) -> tidings_core::ConnId {
    let members = handle.members("feed:1").await.expect("members");
    members[0]
}

pub async fn a_plain_client_that_comes_back_with_its_position_recovers<R: Runtime>(rt: R) {
    let server = start(Builder::new(rt.clone()).config(history_config())).await;
    let handle = server.handle();
    let url = server.ws_url("/ws");
    let mut first = raw(&rt, &url, &[]).await.expect("connect");
    raw_send(&mut first, subscribe("feed:2")).await;
    let subscribed = raw_json(&rt, &mut first).await;
    let epoch = subscribed["epoch"].as_u64().expect("epoch");
    for n in 0..2 {
        let message = Message::json("item", json!({ "n": n }));
        let _ = handle.to_room("feed:2", message).await.expect("publish");
    }
    let mut next = 0;
    for _ in 0..2 {
        let event = raw_json(&rt, &mut first).await;
        next = event["offset"].as_u64().expect("offset") + 1;
    }
    drop(first); // gone without a close frame
    eventually(&rt, "the server saw it go", || async {
        handle.count().await.is_ok_and(|n| n == 0)
    })
    .await;
    for n in 2..4 {
        let message = Message::json("item", json!({ "n": n }));
        let _ = handle.to_room("feed:2", message).await.expect("publish");
    }
    let mut again = raw(&rt, &url, &[]).await.expect("connect");
    let ask = json!({"type": "subscribe", "channel": "feed:2", "since": next, "epoch": epoch});
    raw_send(&mut again, ask).await;
    let answer = raw_json(&rt, &mut again).await;
    assert_eq!(
        (
            answer["type"].clone(),
            answer["recovered"].clone(),
            answer["offset"].clone()
        ),
        (json!("subscribed"), json!(true), json!(4))
    );
    let mut replay: Vec<Value> = Vec::new();
    for _ in 0..2 {
        replay.push(raw_json(&rt, &mut again).await);
    }
    let got: Vec<(Value, Value)> = replay
        .iter()
        .map(|e| (e["data"]["n"].clone(), e["offset"].clone()))
        .collect();
    assert_eq!(got, vec![(json!(2), json!(2)), (json!(3), json!(3))]);

    // The application joins a returning client from the position it had.
    let mut third = raw(&rt, &url, &[]).await.expect("connect");
    let welcome = raw_next(&rt, &mut third).await.expect("welcome");
    let welcome: Value = serde_json::from_str(welcome.to_text().expect("text")).expect("json");
    let conn: tidings_core::ConnId = welcome["conn"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("a connection id");
    let from = tidings_core::Position { since: 3, epoch };
    let told = handle.join_pinned_from(conn, "feed:2", from).await;
    assert_eq!(told.expect("joined"), tidings_core::Recovery::Recovered);
    let answer = raw_json(&rt, &mut third).await;
    assert_eq!(
        (
            answer["server"].clone(),
            answer["pinned"].clone(),
            answer["recovered"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(raw_json(&rt, &mut third).await["data"]["n"], json!(3));
}

pub async fn subscribe_from_a_kept_position_and_a_refused_reconnect<R: Runtime>(rt: R) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let closed_doors = Arc::new(AtomicBool::new(false));
    let doors = closed_doors.clone();
    let builder = Builder::new(rt.clone())
        .config(history_config())
        .on_connect(move |_| {
            let refuse = doors.load(Ordering::SeqCst);
            async move {
                match refuse {
                    true => Err(crate::Refusal::new(
                        http::StatusCode::FORBIDDEN,
                        "not any more",
                    )),
                    false => Ok(crate::Accept::new()),
                }
            }
        });
    let server = start(builder).await;
    let handle = server.handle();
    let publish = |n: u64| {
        let handle = handle.clone();
        async move {
            let message = Message::json("item", json!({ "n": n }));
            let _ = handle.to_room("feed:3", message).await.expect("publish");
        }
    };
    // A position kept by the application from one connection serves the next.
    let first = client(&rt, &server, "/ws").await;
    first.subscribe("feed:3").await.expect("subscribe");
    publish(0).await;
    while item(
        &first
            .next_timeout(Duration::from_secs(5))
            .await
            .expect("event"),
    ) != Some(0)
    {}
    let kept = first.position("feed:3").expect("a position");
    first.close().await.expect("close");
    publish(1).await;
    let second = client(&rt, &server, "/ws").await;
    assert_eq!(
        second.subscribe_from("feed:3", kept).await.expect("answer"),
        None
    );
    while item(
        &second
            .next_timeout(Duration::from_secs(5))
            .await
            .expect("event"),
    ) != Some(1)
    {}
    let stale = tidings_core::Position {
        since: 0,
        epoch: kept.epoch + 1,
    };
    let told = second
        .subscribe_from("feed:3", stale)
        .await
        .expect("answer");
    assert_eq!(told.as_deref(), Some("epoch_changed"));

    // A reconnect the server refuses for good (403) ends it: Closed, not another attempt.
    let backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let c = ClientBuilder::new(rt.clone(), &server.ws_url("/ws"))
        .reconnect(backoff)
        .connect()
        .await
        .expect("connect");
    c.subscribe("feed:3").await.expect("subscribe");
    closed_doors.store(true, Ordering::SeqCst);
    let conn = handle.members("feed:3").await.expect("members");
    for member in conn {
        let _ = handle.close(member, CloseCode::SLOW_CONSUMER, "cut").await;
    }
    loop {
        match c
            .next_timeout(Duration::from_secs(5))
            .await
            .expect("an event")
        {
            ClientEvent::Closed { reason, .. } => {
                assert!(reason.contains("403"), "{reason}");
                break;
            }
            ClientEvent::Reconnected => panic!("reconnected through a closed door"),
            _ => {}
        }
    }
}

/// A client that comes back to a restarted server is told `epoch_changed`: the new server's
/// offsets belong to another stream, and replaying them would hide what was lost.
pub async fn a_restarted_server_starts_new_epochs<R: Runtime>(rt: R) {
    let first = start(Builder::new(rt.clone()).config(history_config())).await;
    let c = client(&rt, &first, "/ws").await;
    c.subscribe("feed:4").await.expect("subscribe");
    let before = c.position("feed:4").expect("a position");
    assert!(before.epoch < 1 << 53, "a JavaScript number holds it");
    first.handle().shutdown().await.expect("shutdown");
    let second = start(Builder::new(rt.clone()).config(history_config())).await;
    let handle = second.handle();
    for n in 0..3 {
        let message = Message::json("item", json!({ "n": n }));
        let _ = handle.to_room("feed:4", message).await.expect("publish");
    }
    let back = client(&rt, &second, "/ws").await;
    let told = back.subscribe_from("feed:4", before).await.expect("answer");
    assert_eq!(told.as_deref(), Some("epoch_changed"), "{before:?}");
}
