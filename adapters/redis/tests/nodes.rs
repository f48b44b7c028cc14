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
        let mut raws = Vec::new();
        for n in &nodes {
            raws.push(raw_member(n, "room").await);
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
            d.queued, 2,
            "the local members (ours and the raw one); remote ones are the other nodes'"
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
        // Plain tungstenite clients on each node see the same, each once.
        for (i, raw) in raws.iter_mut().enumerate() {
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(raw_event(raw).await["data"].clone());
            }
            got.sort_by_key(|v| v.as_u64());
            assert_eq!(
                got,
                [json!(1), json!(2), json!(3), json!(4)],
                "raw client on node {i}"
            );
        }
        // Nothing more came: a marker sent now is each member's next event.
        let _ = nodes[0]
            .handle()
            .to_room("room", Message::json("marker", json!(0)))
            .await
            .expect("marker");
        for m in &members {
            assert_eq!(next(m).await.0, "marker", "nothing was delivered twice");
        }
        // Two client publishes, one application publish, a broadcast and the marker, each
        // sent once and received by the two other nodes. (A node counts its send when Redis
        // confirms it, which may come after the others have the message.)
        let until = Instant::now() + Duration::from_secs(5);
        let stats = loop {
            let stats: Vec<_> = nodes
                .iter()
                .filter_map(|n| n.handle().backplane())
                .collect();
            let sent: u64 = stats.iter().map(|s| s.sent).sum();
            let received: u64 = stats.iter().map(|s| s.received).sum();
            if (sent, received) == (5, 10) {
                break stats;
            }
            assert!(
                Instant::now() < until,
                "sent {sent}, received {received}: expected 5, 10"
            );
            smol::Timer::after(Duration::from_millis(10)).await;
        };
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

        let events = a.handle().cluster_events().await.expect("listen");
        redis.kill();
        assert_eq!(
            link_event(&events).await,
            tidings_net::ClusterEvent::Down,
            "the outage is told"
        );
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
        assert_eq!(link_event(&events).await, tidings_net::ClusterEvent::Up);
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
        // The metrics say the same.
        let metrics = a.handle().metrics().await.expect("metrics");
        let sample = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(|v| v.parse::<f64>().expect("a number"))
        };
        assert_eq!(sample("tidings_backplane_up"), Some(1.0), "{metrics}");
        assert_eq!(
            sample("tidings_backplane_outages_total"),
            Some(stats.outages as f64)
        );
        assert!(
            sample("tidings_backplane_sent_total") >= Some(1.0),
            "{metrics}"
        );
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

/// A TCP relay to Redis that can be cut: a node behind it stops reaching Redis at once, as a
/// node that died would, without a goodbye.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to(upstream: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let relay = Relay {
            port,
            cut: Default::default(),
            streams: Default::default(),
        };
        let (cut, streams) = (relay.cut.clone(), relay.streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped at once: refused from here on
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut held = streams.lock().expect("lock");
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                held.extend([client, server]);
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.streams.lock().expect("lock").iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

async fn named_node(url: String, ttl: Duration) -> Server {
    let server = tidings_smol::builder()
        .on_connect(|req| async move {
            let name = req.query_param("name").unwrap_or_default();
            Ok(tidings_smol::Accept::new().name(name))
        })
        .backplane(Redis::new(url).presence_ttl(ttl))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    until_up(&server).await;
    server
}

async fn named_member(server: &Server, name: &str, room: &str) -> Client {
    let url = server.ws_url(&format!("/ws?name={name}"));
    let client = tidings_smol::connect(&url).await.expect("connect");
    client.subscribe(room).await.expect("subscribe");
    client
}

#[test]
fn members_count_and_names_answer_for_the_cluster_and_a_dead_node_leaves_them() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let relay = Relay::to(redis.port());
    let ttl = Duration::from_millis(600);
    smol::block_on(async {
        let a = named_node(redis.url(), ttl).await;
        let b = named_node(redis.url(), ttl).await;
        let doomed = named_node(relay.url(), ttl).await;
        let _ann = named_member(&a, "ann", "room").await;
        let _bob = named_member(&b, "bob", "room").await;
        let _cy = named_member(&doomed, "cy", "room").await;
        let _dee = named_member(&doomed, "dee", "elsewhere").await;
        let names = |members: Vec<tidings_net::Member>| -> Vec<String> {
            let mut names: Vec<String> = members.into_iter().filter_map(|m| m.name).collect();
            names.sort();
            names
        };
        for asker in [&a, &b, &doomed] {
            let members = asker
                .handle()
                .cluster_members("room")
                .await
                .expect("members");
            assert_eq!(names(members), ["ann", "bob", "cy"]);
            assert_eq!(asker.handle().cluster_count().await.expect("count"), 4);
            let all = asker.handle().cluster_names().await.expect("names");
            assert_eq!(all, ["ann", "bob", "cy", "dee"]);
            assert!(asker.handle().cluster_exists("dee").await.expect("exists"));
            assert!(!asker.handle().cluster_exists("eve").await.expect("exists"));
        }
        // Without a goodbye: the doomed node is cut off from Redis. Until its presence
        // expires a question fails, naming it; then its connections are gone from answers.
        relay.cut();
        let started = Instant::now();
        let mut refused = 0;
        loop {
            match a.handle().cluster_members("room").await {
                Ok(members) => {
                    assert_eq!(names(members), ["ann", "bob"]);
                    break;
                }
                Err(tidings_net::Error::Cluster(why)) => {
                    assert!(why.contains("no answer"), "{why}");
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
            assert!(
                started.elapsed() < ttl + Duration::from_secs(3),
                "the dead node is still asked"
            );
        }
        assert!(
            refused >= 1,
            "while it was still present, its silence was an error"
        );
        assert_eq!(a.handle().cluster_count().await.expect("count"), 2);
    });
}

#[test]
fn an_emit_to_a_member_reaches_it_on_its_node() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let (a, _b, ann, bob, member) = ann_on_a_bob_on_b(&redis).await;
        // To the other node, and to this one.
        let hello = Message::json("dm", json!("hello bob"));
        a.handle()
            .emit_to(&member("bob"), hello)
            .await
            .expect("sent");
        assert_eq!(next(&bob).await, ("dm".to_owned(), json!("hello bob")));
        let own = Message::json("dm", json!("hello ann"));
        a.handle().emit_to(&member("ann"), own).await.expect("sent");
        assert_eq!(next(&ann).await, ("dm".to_owned(), json!("hello ann")));
        // A node that is not in the cluster is an error, not a silent loss.
        let mut ghost = member("bob");
        ghost.node = "0000000000000000".into();
        let lost = a
            .handle()
            .emit_to(&ghost, Message::json("dm", json!("?")))
            .await;
        assert!(
            matches!(&lost, Err(tidings_net::Error::Cluster(why)) if why.contains("not in the cluster")),
            "{lost:?}"
        );
    });
}

#[test]
fn a_publish_the_backplane_cannot_take_is_an_error_for_its_caller() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    // Through a relay that is then cut: Redis stays away (a killed one's port could be
    // taken by another test's Redis, which the node would happily use).
    let relay = Relay::to(redis.port());
    smol::block_on(async {
        let a = tidings_smol::builder()
            .backplane(Redis::new(relay.url()))
            .backplane_backlog(3)
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        until_up(&a).await;
        let on_a = member(&a, "room").await;
        relay.cut();
        let until = Instant::now() + Duration::from_secs(10);
        while a.handle().backplane().is_some_and(|s| s.up) {
            assert!(Instant::now() < until, "the outage was not noticed");
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        // Three wait for Redis; the fourth is refused whole, here too.
        for n in 0..3 {
            let sent = a
                .handle()
                .to_room("room", Message::json("n", json!(n)))
                .await;
            assert_eq!(sent.expect("waits for the link").queued, 1);
        }
        let refused = a
            .handle()
            .to_room("room", Message::json("n", json!(3)))
            .await;
        assert!(
            matches!(&refused, Err(tidings_net::Error::Cluster(why)) if why.contains("not published")),
            "{refused:?} {:?}",
            a.handle().backplane()
        );
        for n in 0..3 {
            assert_eq!(next(&on_a).await.1, json!(n));
        }
        // A publish to one connection does not need the backplane.
        let members = a.handle().members("room").await.expect("members");
        let direct = a
            .handle()
            .emit(members[0], Message::json("n", json!(9)))
            .await;
        assert!(direct.is_ok(), "{direct:?}");
        assert_eq!(next(&on_a).await.1, json!(9));
        assert_eq!(a.handle().backplane().map(|s| s.lost), Some(0));
    });
}

#[test]
fn joins_and_leaves_on_one_node_are_told_on_the_others() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let ttl = Duration::from_secs(6);
        let (a, b) = (
            named_node(redis.url(), ttl).await,
            named_node(redis.url(), ttl).await,
        );
        let events = b.handle().cluster_events().await.expect("listen");
        let ann = named_member(&a, "ann", "room").await;
        let next_change = || async {
            let event = smol::future::or(async { events.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            })
            .await;
            match event {
                Some(tidings_net::ClusterEvent::Presence(change)) => change,
                other => panic!("expected a change within 5 s, got {other:?}"),
            }
        };
        let joined = next_change().await;
        assert_eq!(
            (
                joined.room.as_str(),
                joined.joined,
                joined.member.name.as_deref()
            ),
            ("room", true, Some("ann"))
        );
        // The member it names is one an emit can reach.
        let sent = b
            .handle()
            .emit_to(&joined.member, Message::json("hi", json!(1)))
            .await;
        assert!(sent.is_ok(), "{sent:?}");
        assert_eq!(next(&ann).await, ("hi".to_owned(), json!(1)));
        ann.unsubscribe("room").await.expect("leave");
        let left = next_change().await;
        assert_eq!((left.room.as_str(), left.joined), ("room", false));
        assert_eq!(left.member.conn, joined.member.conn);
    });
}

#[test]
fn an_ack_asked_of_a_member_on_another_node_comes_back() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    smol::block_on(async {
        let (a, _b, ann, bob, member) = ann_on_a_bob_on_b(&redis).await;
        // Bob (node b) answers node a's question.
        let question = Message::json("q", json!("ready?"));
        let (answer, ()) = futures_lite::future::zip(
            a.handle()
                .emit_with_ack_to(&member("bob"), question, Some(Duration::from_secs(3))),
            answer_once(&bob, json!("yes")),
        )
        .await;
        assert_eq!(answer.expect("bob's answer"), Payload::Json(json!("yes")));
        // The same for a member of this node.
        let question = Message::json("q", json!("and you?"));
        let (answer, ()) = futures_lite::future::zip(
            a.handle()
                .emit_with_ack_to(&member("ann"), question, Some(Duration::from_secs(3))),
            answer_once(&ann, json!("me too")),
        )
        .await;
        assert_eq!(
            answer.expect("ann's answer"),
            Payload::Json(json!("me too"))
        );
        // A member that does not answer times out, as on one node.
        let silent = a
            .handle()
            .emit_with_ack_to(
                &member("bob"),
                Message::json("q", json!("?")),
                Some(Duration::from_millis(300)),
            )
            .await;
        assert!(
            matches!(silent, Err(tidings_net::Error::Timeout(t)) if t == Duration::from_millis(300)),
            "{silent:?}"
        );
    });
}

/// Reads `client`'s events until a question asks for an ack, and answers it with `answer`.
async fn answer_once(client: &Client, answer: Value) {
    loop {
        match client.next_timeout(Duration::from_secs(5)).await {
            Some(ClientEvent::Event(e)) if e.ack.is_some() => {
                let ack = e.ack.expect("asked");
                client.ack(ack, answer).await.expect("ack");
                return;
            }
            Some(_) => continue,
            None => panic!("no question within 5 s"),
        }
    }
}

/// The next event about the backplane's link (other nodes' presence changes skipped).
async fn link_event(
    events: &async_channel::Receiver<tidings_net::ClusterEvent>,
) -> tidings_net::ClusterEvent {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let next = smol::future::or(async { events.recv().await.ok() }, async {
            smol::Timer::at(until).await;
            None
        });
        match next.await {
            Some(tidings_net::ClusterEvent::Presence(_)) => continue,
            Some(event) => return event,
            None => panic!("no link event within 10 s"),
        }
    }
}

/// Two nodes; ann in `room` on the first, bob on the second; and a lookup of the members the
/// first node lists, by name.
async fn ann_on_a_bob_on_b(
    redis: &RedisServer,
) -> (
    Server,
    Server,
    Client,
    Client,
    impl Fn(&str) -> tidings_net::Member,
) {
    let ttl = Duration::from_secs(6);
    let (a, b) = (
        named_node(redis.url(), ttl).await,
        named_node(redis.url(), ttl).await,
    );
    let ann = named_member(&a, "ann", "room").await;
    let bob = named_member(&b, "bob", "room").await;
    let members = a.handle().cluster_members("room").await.expect("members");
    let member = move |name: &str| {
        members
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .cloned()
            .expect("listed")
    };
    (a, b, ann, bob, member)
}

type Raw = async_tungstenite::WebSocketStream<smol::net::TcpStream>;

/// A plain tungstenite client on `server`, subscribed to `room` (answer awaited).
async fn raw_member(server: &Server, room: &str) -> Raw {
    let tcp = smol::net::TcpStream::connect(server.local_addr())
        .await
        .expect("tcp");
    let (mut ws, _) = async_tungstenite::client_async(server.ws_url("/ws"), tcp)
        .await
        .expect("handshake");
    let subscribe = json!({"type": "subscribe", "channel": room, "id": "s"}).to_string();
    ws.send(async_tungstenite::tungstenite::Message::text(subscribe))
        .await
        .expect("send");
    loop {
        let frame = raw_json(&mut ws).await;
        if frame["type"] == "subscribed" {
            return ws;
        }
    }
}

/// The next JSON text frame of a raw client, within 5 s.
async fn raw_json(ws: &mut Raw) -> Value {
    use futures_lite::StreamExt;
    let next = smol::future::or(async { ws.next().await }, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    });
    match next.await {
        Some(Ok(async_tungstenite::tungstenite::Message::Text(t))) => {
            serde_json::from_str(t.as_str()).expect("JSON")
        }
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next `event` frame of a raw client.
async fn raw_event(ws: &mut Raw) -> Value {
    loop {
        let frame = raw_json(ws).await;
        if frame["type"] == "event" {
            return frame;
        }
    }
}
