//! Several tidings nodes in one process over a real `redis-server` (started here on a free
//! loopback port, without persistence): publishes cross nodes once, never echoed, and the
//! nodes ride out a Redis restart. Needs `redis-server` on the PATH (Debian package
//! `redis-server`; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidings_core::{Config, Message, Payload, Target};
use tidings_redis::testing::RedisServer;
use tidings_redis::Redis;
use tidings_smol::{Client, ClientEvent, Server};

async fn node(redis: &RedisServer) -> Server {
    let config = Config::default().client_publish(true);
    let server = tidings_smol::builder()
        .config(config)
        .backplane(Redis::new(redis.url()))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    until_up(&server).await;
    server
}

/// Waits until the node's backplane is subscribed.
async fn until_up(server: &Server) {
    let until = Instant::now() + Duration::from_secs(10);
    while !server.handle().backplane().is_some_and(|s| s.up) {
        assert!(Instant::now() < until, "the backplane did not come up");
        smol::Timer::after(Duration::from_millis(10)).await;
    }
}

async fn member(server: &Server, room: &str) -> Client {
    let client = tidings_smol::connect(&server.ws_url("/ws"))
        .await
        .expect("connect");
    client.subscribe(room).await.expect("subscribe");
    client
}

/// The next event's name and data; welcome and membership notices skipped.
async fn next(client: &Client) -> (String, Value) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Event(e)) => {
                let data = match e.data {
                    Payload::Json(v) => v,
                    other => panic!("JSON expected, got {other:?}"),
                };
                return (e.event, data);
            }
            Some(ClientEvent::Welcome { .. } | ClientEvent::Subscribed { .. }) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

#[test]
fn a_publish_on_any_node_reaches_every_member_once() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
        let mut members = Vec::new();
        for n in &nodes {
            members.push(member(n, "room").await);
        }
        let outsider = tidings_smol::connect(&nodes[1].ws_url("/ws"))
            .await
            .expect("connect");
        // A client's publishes on node 0, the application's on node 1, a broadcast on node 2.
        for n in [1, 2] {
            members[0]
                .publish("room", "say", json!(n))
                .await
                .expect("publish");
        }
        let d = nodes[1]
            .handle()
            .publish(Target::room("/", "room"), Message::json("say", json!(3)))
            .await
            .expect("publish");
        assert_eq!(
            d.queued, 1,
            "the local member; remote ones are the other nodes'"
        );
        let c = nodes[2].handle();
        let _ = c
            .broadcast(Message::json("all", json!(4)))
            .await
            .expect("broadcast");
        for (i, m) in members.iter().enumerate() {
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(next(m).await.1);
            }
            // Each publisher's messages in the order it sent them; publishers interleave.
            let from_0: Vec<&Value> = got
                .iter()
                .filter(|v| *v == &json!(1) || *v == &json!(2))
                .collect();
            assert_eq!(
                from_0,
                [&json!(1), &json!(2)],
                "member on node {i}: {got:?}"
            );
            got.sort_by_key(|v| v.as_u64());
            assert_eq!(
                got,
                [json!(1), json!(2), json!(3), json!(4)],
                "member on node {i}: each once"
            );
        }
        assert_eq!(next(&outsider).await, ("all".to_owned(), json!(4)));
        // Nothing more came: a marker sent now is each member's next event.
        let _ = nodes[0]
            .handle()
            .to_room("room", Message::json("marker", json!(0)))
            .await
            .expect("marker");
        for m in &members {
            assert_eq!(next(m).await.0, "marker", "nothing was delivered twice");
        }
        let stats: Vec<_> = nodes
            .iter()
            .map(|n| n.handle().backplane().unwrap())
            .collect();
        // Two client publishes, one application publish, a broadcast and the marker.
        assert_eq!(stats.iter().map(|s| s.sent).sum::<u64>(), 5);
        assert_eq!(
            stats.iter().map(|s| s.received).sum::<u64>(),
            10,
            "each to two others"
        );
        assert!(stats.iter().all(|s| s.lost == 0 && s.outages == 0));
    });
}

#[test]
fn nodes_ride_out_a_redis_restart() {
    let Some(mut redis) = RedisServer::start_or_skip() else {
        return;
    };
    let port = redis.port();
    smol::block_on(async {
        let (a, b) = (node(&redis).await, node(&redis).await);
        let on_b = member(&b, "room").await;
        let _ = a
            .handle()
            .to_room("room", Message::json("before", json!(1)))
            .await
            .expect("publish");
        assert_eq!(next(&on_b).await.0, "before");

        redis.kill();
        let until = Instant::now() + Duration::from_secs(10);
        while a.handle().backplane().is_some_and(|s| s.up) {
            assert!(Instant::now() < until, "the outage was not noticed");
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        // Local clients are still served meanwhile.
        let on_a = member(&a, "room").await;
        let _ = a
            .handle()
            .to_room("room", Message::json("local", json!(2)))
            .await
            .expect("publish");
        assert_eq!(next(&on_a).await.0, "local");

        redis = RedisServer::start_on(port);
        until_up(&a).await;
        until_up(&b).await;
        // What node A published meanwhile waited for the link and went out as soon as A was
        // back: B has it if it was subscribed again by then (at most once between nodes).
        let _ = a
            .handle()
            .to_room("room", Message::json("after", json!(3)))
            .await
            .expect("publish");
        let mut got = next(&on_b).await;
        if got.0 == "local" {
            got = next(&on_b).await;
        }
        assert_eq!(got, ("after".to_owned(), json!(3)));
        let stats = a.handle().backplane().unwrap();
        assert!(stats.outages >= 1 && stats.up, "{stats:?}");
    });
    drop(redis);
}

#[test]
fn a_publish_to_a_name_finds_it_on_another_node() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let a = node(&redis).await;
        let b = tidings_smol::builder()
            .on_connect(|req| async move {
                let name = req.query_param("name").unwrap_or_default();
                Ok(tidings_smol::Accept::new().name(name))
            })
            .backplane(Redis::new(redis.url()))
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        until_up(&b).await;
        let ann = tidings_smol::connect(&b.ws_url("/ws?name=ann"))
            .await
            .expect("connect");
        ann.ping().await.expect("connected");
        let d = a
            .handle()
            .publish(Target::name("ann"), Message::json("dm", json!("for ann")))
            .await
            .expect("publish");
        assert_eq!(d.queued, 0, "not on node a");
        assert_eq!(next(&ann).await, ("dm".to_owned(), json!("for ann")));
    });
}
