//! History and recovery across nodes over a real `redis-server`: Redis numbers the
//! publications of channels that keep history, so every node hands out the same offsets, and
//! a client recovers on any node, also one started after what it missed, or is told why not
//! (Redis lost the stream: `epoch_changed`; trimmed: `too_old`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidings_core::{Config, History, Message, Payload, Position};
use tidings_redis::testing::RedisServer;
use tidings_redis::Redis;
use tidings_smol::{Client, ClientEvent, Server};

async fn node(redis: &RedisServer) -> Server {
    let config = Config::default()
        .client_publish(true)
        .history("feed:*", History::new(10, Duration::from_secs(60)));
    let server = tidings_smol::builder()
        .config(config)
        .backplane(Redis::new(redis.url()))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let until = Instant::now() + Duration::from_secs(10);
    while !server.handle().backplane().is_some_and(|s| s.up) {
        assert!(Instant::now() < until, "the backplane did not come up");
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    server
}

async fn connect(server: &Server) -> Client {
    tidings_smol::connect(&server.ws_url("/ws"))
        .await
        .expect("connect")
}

/// The next publication: its data, offset and epoch.
async fn next(client: &Client) -> (Value, u64, u64) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Event(e)) => {
                let Payload::Json(data) = e.data else {
                    panic!("JSON expected");
                };
                return (data, e.offset.expect("offset"), e.epoch.expect("epoch"));
            }
            Some(
                ClientEvent::Welcome { .. }
                | ClientEvent::Subscribed { .. }
                | ClientEvent::Recovered { .. },
            ) => continue,
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

async fn publish(server: &Server, n: u64) {
    let _ = server
        .handle()
        .to_room("feed:1", Message::json("n", json!(n)))
        .await
        .expect("publish");
}

/// Nothing more arrives within a short while.
async fn quiet(client: &Client) {
    match client.next_timeout(Duration::from_millis(300)).await {
        None => {}
        other => panic!("nothing more expected, got {other:?}"),
    }
}

#[test]
fn every_node_hands_out_the_same_offsets_and_a_client_recovers_on_another() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let (a, b) = (node(&redis).await, node(&redis).await);
        let (x, y) = (connect(&a).await, connect(&b).await);
        x.subscribe("feed:1").await.expect("subscribe");
        y.subscribe("feed:1").await.expect("subscribe");
        assert_eq!(x.position("feed:1"), y.position("feed:1"), "one stream");
        // A client's publish on b, the application's on a: one order, one numbering.
        y.publish("feed:1", "n", json!(1)).await.expect("publish");
        publish(&a, 2).await;
        let (on_x, on_y) = (
            [next(&x).await, next(&x).await],
            [next(&y).await, next(&y).await],
        );
        assert_eq!(on_x, on_y, "the same offsets and epoch on both nodes");
        assert_eq!(on_x[1].1, on_x[0].1 + 1);
        // y drops off b; 3 and 4 are published on b; y comes back on a.
        let left = y.position("feed:1").expect("position");
        y.close().await.expect("close");
        publish(&b, 3).await;
        publish(&b, 4).await;
        assert_eq!(next(&x).await.0, json!(3));
        assert_eq!(next(&x).await.0, json!(4));
        let back = connect(&a).await;
        assert_eq!(
            back.subscribe_from("feed:1", left)
                .await
                .expect("subscribe"),
            None
        );
        assert_eq!(next(&back).await.0, json!(3));
        assert_eq!(next(&back).await.0, json!(4));
        publish(&b, 5).await;
        assert_eq!(next(&back).await.0, json!(5), "then live");
        quiet(&back).await;
    });
}

#[test]
fn a_node_started_after_the_publications_recovers_them_from_redis() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let a = node(&redis).await;
        let x = connect(&a).await;
        x.subscribe("feed:1").await.expect("subscribe");
        let left = x.position("feed:1").expect("position");
        x.close().await.expect("close");
        for n in 1..=3 {
            publish(&a, n).await;
        }
        // A node that was not running then, and a has stopped since.
        a.handle().shutdown().await.expect("shutdown");
        let c = node(&redis).await;
        let back = connect(&c).await;
        assert_eq!(
            back.subscribe_from("feed:1", left)
                .await
                .expect("subscribe"),
            None
        );
        let got: Vec<_> = [next(&back).await, next(&back).await, next(&back).await]
            .into_iter()
            .map(|(n, offset, epoch)| (n, offset - left.since, epoch))
            .collect();
        let want: Vec<_> = (1..=3).map(|n| (json!(n), n - 1, left.epoch)).collect();
        assert_eq!(got, want);
        let fresh = connect(&c).await;
        fresh.subscribe("feed:1").await.expect("subscribe");
        assert_eq!(
            fresh.position("feed:1"),
            Some(Position {
                since: left.since + 3,
                epoch: left.epoch
            }),
            "where the stream stands, from Redis"
        );
    });
}

#[test]
fn a_client_is_told_when_redis_lost_or_trimmed_what_it_missed() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let (a, b) = (node(&redis).await, node(&redis).await);
        let x = connect(&a).await;
        x.subscribe("feed:1").await.expect("subscribe");
        let left = x.position("feed:1").expect("position");
        x.close().await.expect("close");
        let watcher = connect(&b).await;
        watcher.subscribe("feed:1").await.expect("subscribe");
        // Eleven publications: the channel keeps ten, here and in Redis.
        for n in 1..=11 {
            publish(&a, n).await;
        }
        for n in 1..=11 {
            assert_eq!(next(&watcher).await.0, json!(n));
        }
        let back = connect(&b).await;
        assert_eq!(
            back.subscribe_from("feed:1", left)
                .await
                .expect("subscribe"),
            Some("too_old".to_owned())
        );
        // The same on a node that saw none of it: Redis trimmed the stream too.
        let c = node(&redis).await;
        let elsewhere = connect(&c).await;
        assert_eq!(
            elsewhere
                .subscribe_from("feed:1", left)
                .await
                .expect("subscribe"),
            Some("too_old".to_owned())
        );
        let one_later = Position {
            since: left.since + 1,
            epoch: left.epoch,
        };
        let recovers = connect(&c).await;
        let told = recovers.subscribe_from("feed:1", one_later).await;
        assert_eq!(told.expect("subscribe"), None, "what Redis keeps, it gives");
        for n in 2..=11 {
            assert_eq!(next(&recovers).await.0, json!(n));
        }
        // Redis loses everything: the stream starts again in a new epoch.
        let client = redis::Client::open(redis.url()).expect("url");
        let mut conn = client.get_connection().expect("connect");
        redis::cmd("FLUSHALL").exec(&mut conn).expect("flush");
        let held = back.position("feed:1").expect("position");
        back.close().await.expect("close");
        publish(&a, 12).await;
        // Once b has it (a client that comes back before would recover what b had seen).
        let (n, offset, epoch) = next(&watcher).await;
        assert_eq!((n, offset), (json!(12), 0));
        assert_ne!(epoch, held.epoch);
        let again = connect(&b).await;
        let told = again
            .subscribe_from("feed:1", held)
            .await
            .expect("subscribe");
        assert_eq!(told, Some("epoch_changed".to_owned()));
        let now = again.position("feed:1").expect("position");
        assert_ne!(now.epoch, held.epoch);
    });
}

/// The ids of the connections subscribed to something in `redis` (each node has one).
fn subscribers(redis: &RedisServer) -> Vec<u64> {
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client.get_connection().expect("connect");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .expect("client list");
    list.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn members_get_what_was_published_while_their_node_was_cut_from_redis() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let a = node(&redis).await;
        let before = subscribers(&redis);
        let b = node(&redis).await;
        let b_subscriber = subscribers(&redis)
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("b's subscription");
        let m = connect(&b).await;
        m.subscribe("feed:1").await.expect("subscribe");
        publish(&a, 1).await;
        assert_eq!(next(&m).await.0, json!(1));
        // Redis drops b's subscription; what a publishes now never reaches b live.
        let client = redis::Client::open(redis.url()).expect("url");
        let mut conn = client.get_connection().expect("connect");
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(b_subscriber)
            .exec(&mut conn)
            .expect("kill");
        publish(&a, 2).await;
        publish(&a, 3).await;
        // b comes back by itself and asks Redis for what it missed.
        let got = [next(&m).await, next(&m).await];
        assert_eq!(
            got.iter().map(|g| (g.0.clone(), g.1)).collect::<Vec<_>>(),
            vec![(json!(2), 1), (json!(3), 2)]
        );
        publish(&a, 4).await;
        assert_eq!(next(&m).await.0, json!(4));
        quiet(&m).await;
        let stats = b.handle().backplane().expect("stats");
        assert!(stats.outages >= 1, "{stats:?}");
    });
}
