//! Namespaces, rooms and channels: protocol subscriptions (open and approved), server-side
//! joins, membership queries, and freeing.

use std::sync::Arc;

use crate::common::Sim;
use serde_json::json;
use tidings_core::{CloseCode, ConnectionInfo, Error, Event, Message, SubscribePolicy, Target};

#[test]
fn a_client_subscribes_and_unsubscribes_by_protocol() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.take_events();
    sim.send(c, r#"{"type":"subscribe","channel":"news","id":"r1"}"#);
    assert!(sim.hub.in_room(c, "news"));
    assert_eq!(
        sim.take_events(),
        vec![Event::Joined {
            conn: c,
            room: Arc::from("news")
        }]
    );
    let sub = &sim.of_type(c, "subscribed")[0];
    assert_eq!(
        (
            sub["channel"].clone(),
            sub["ref"].clone(),
            sub["offset"].clone()
        ),
        (json!("news"), json!("r1"), json!(0))
    );
    assert!(sub["epoch"].is_u64());
    // Subscribing twice is idempotent.
    sim.subscribe(c, "news");
    assert_eq!(sim.hub.room_size("/", "news"), 1);
    assert!(sim.take_events().is_empty());

    sim.send(c, r#"{"type":"unsubscribe","channel":"news","id":"u1"}"#);
    assert!(!sim.hub.in_room(c, "news"));
    assert_eq!(
        sim.of_type(c, "unsubscribed"),
        vec![json!({"type":"unsubscribed","channel":"news","ref":"u1"})]
    );
    assert_eq!(
        sim.take_events(),
        vec![Event::Left {
            conn: c,
            room: Arc::from("news")
        }]
    );
    assert!(!sim.hub.has_room("/", "news"), "an empty room is freed");

    sim.send(c, r#"{"type":"unsubscribe","channel":"news","id":"r2"}"#);
    let err = &sim.of_type(c, "error")[0];
    assert_eq!(
        (err["code"].clone(), err["ref"].clone()),
        (json!("not_subscribed"), json!("r2"))
    );
}

#[test]
fn the_application_approves_or_denies_subscriptions() {
    let mut sim = Sim::new(Sim::quiet().subscribe_policy(SubscribePolicy::Approve));
    let c = sim.open_path("/");
    sim.take_events();
    sim.subscribe(c, "vip");
    sim.subscribe(c, "public");
    assert_eq!(
        sim.take_events(),
        vec![
            Event::SubscribeRequest {
                conn: c,
                channel: "vip".into()
            },
            Event::SubscribeRequest {
                conn: c,
                channel: "public".into()
            },
        ]
    );
    assert!(!sim.hub.in_room(c, "vip"), "not before the decision");
    sim.hub
        .deny_subscribe(sim.now, c, "vip", "members only")
        .expect("pending");
    sim.hub
        .approve_subscribe(sim.now, c, "public")
        .expect("pending");
    sim.drain();
    assert!(!sim.hub.in_room(c, "vip"));
    assert!(sim.hub.in_room(c, "public"));
    let err = &sim.of_type(c, "error")[0];
    assert_eq!(
        (
            err["code"].clone(),
            err["channel"].clone(),
            err["message"].clone()
        ),
        (
            json!("subscribe_denied"),
            json!("vip"),
            json!("members only")
        )
    );
    assert_eq!(sim.of_type(c, "subscribed")[0]["channel"], "public");
    // A decision is taken once.
    assert!(matches!(
        sim.hub.approve_subscribe(sim.now, c, "vip"),
        Err(Error::NoSuchRequest { .. })
    ));
}

#[test]
fn decided_subscriptions_answer_with_the_request_id() {
    let mut sim = Sim::new(Sim::quiet().subscribe_policy(SubscribePolicy::Approve));
    let c = sim.open_path("/");
    sim.send(c, r#"{"type":"subscribe","channel":"vip","id":"r1"}"#);
    sim.send(c, r#"{"type":"subscribe","channel":"public","id":"r2"}"#);
    let long_id = "i".repeat(200);
    let frame = format!(r#"{{"type":"subscribe","channel":"big","id":"{long_id}"}}"#);
    sim.send(c, &frame);
    sim.hub
        .deny_subscribe(sim.now, c, "vip", "no")
        .expect("pending");
    sim.hub
        .approve_subscribe(sim.now, c, "public")
        .expect("pending");
    sim.hub
        .approve_subscribe(sim.now, c, "big")
        .expect("pending");
    sim.drain();
    assert_eq!(sim.of_type(c, "error")[0]["ref"], "r1");
    let subscribed = sim.of_type(c, "subscribed");
    assert_eq!(subscribed[0]["ref"], "r2");
    assert_eq!(subscribed[1]["channel"], "big");
    assert!(
        subscribed[1].get("ref").is_none(),
        "an id longer than a name is not kept"
    );
}

#[test]
fn the_server_joins_and_queries_rooms() {
    let mut sim = Sim::new(Sim::quiet());
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    assert_eq!(sim.hub.join(a, "red"), Ok(true));
    assert_eq!(sim.hub.join(a, "red"), Ok(false));
    sim.hub.join(a, "blue").expect("join");
    sim.hub.join(b, "red").expect("join");
    assert_eq!(
        sim.hub.rooms_of(a),
        vec![Arc::from("blue"), Arc::from("red")]
    );
    assert_eq!(sim.hub.room_size("/", "red"), 2);
    assert_eq!(sim.hub.members("/", "red"), vec![a, b]);
    assert!(sim.hub.has_room("/", "blue"));
    assert_eq!(
        sim.hub.rooms("/"),
        vec![Arc::from("blue"), Arc::from("red")]
    );
    assert_eq!(sim.hub.leave(a, "blue"), Ok(true));
    assert_eq!(sim.hub.leave(a, "blue"), Ok(false));
    assert!(!sim.hub.has_room("/", "blue"));
    assert_eq!(sim.hub.delete_room("/", "red"), 2);
    assert!(!sim.hub.has_room("/", "red"));
    assert!(sim.hub.rooms_of(b).is_empty());
    assert_eq!(sim.hub.counters().rooms, 0);
    assert!(matches!(
        sim.hub.join(a, ""),
        Err(Error::InvalidName { what: "room", .. })
    ));
}

#[test]
fn namespaces_partition_rooms_and_broadcasts() {
    let mut sim = Sim::new(Sim::quiet());
    let chat = sim.open(ConnectionInfo::new("/").namespace("/chat"));
    let game = sim.open(ConnectionInfo::new("/").namespace("/game"));
    sim.subscribe(chat, "lobby");
    sim.subscribe(game, "lobby");
    assert_eq!(sim.hub.room_size("/chat", "lobby"), 1);
    assert_eq!(sim.hub.room_size("/game", "lobby"), 1);
    sim.clear();
    let d = sim
        .hub
        .publish(
            sim.now,
            Target::room("/chat", "lobby"),
            Message::text("m", "hi"),
        )
        .expect("publish");
    assert_eq!(d.queued, 1);
    let d = sim
        .hub
        .publish(
            sim.now,
            Target::namespace("/game"),
            Message::text("m", "all"),
        )
        .expect("publish");
    assert_eq!(d.queued, 1);
    sim.drain();
    assert_eq!(sim.of_type(chat, "event").len(), 1);
    assert_eq!(sim.of_type(chat, "event")[0]["data"], "hi");
    assert_eq!(sim.of_type(game, "event")[0]["data"], "all");
}

#[test]
fn closing_leaves_every_room_and_frees_them() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open(ConnectionInfo::new("/").namespace("/tmp"));
    sim.subscribe(c, "a");
    sim.subscribe(c, "b");
    sim.take_events();
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "done")
        .expect("close");
    sim.drain();
    let events = sim.take_events();
    assert!(events.contains(&Event::Left {
        conn: c,
        room: Arc::from("a")
    }));
    assert!(events.contains(&Event::Left {
        conn: c,
        room: Arc::from("b")
    }));
    let fp = sim.hub.footprint();
    assert_eq!(
        (fp.rooms, fp.namespaces, fp.sessions),
        (0, 1, 0),
        "only `/` remains"
    );
}

#[test]
fn subscriptions_are_bounded_per_connection() {
    let mut sim = Sim::new(Sim::quiet().max_rooms_per_connection(2));
    let c = sim.open_path("/");
    sim.subscribe(c, "a");
    sim.subscribe(c, "b");
    sim.subscribe(c, "c");
    assert_eq!(sim.hub.rooms_of(c).len(), 2);
    let err = &sim.of_type(c, "error")[0];
    assert_eq!(
        (err["code"].clone(), err["channel"].clone()),
        (json!("too_many_subscriptions"), json!("c"))
    );
    assert_eq!(
        sim.hub.join(c, "d"),
        Err(Error::TooManyRooms { conn: c, limit: 2 })
    );
}

#[test]
fn pending_requests_count_against_the_room_limit() {
    let mut sim = Sim::new(
        Sim::quiet()
            .max_rooms_per_connection(2)
            .subscribe_policy(SubscribePolicy::Approve),
    );
    let c = sim.open_path("/");
    sim.hub.join(c, "joined").expect("join");
    sim.subscribe(c, "waiting");
    assert_eq!(
        sim.hub.join(c, "third"),
        Err(Error::TooManyRooms { conn: c, limit: 2 })
    );
    sim.subscribe(c, "fourth");
    assert_eq!(sim.of_type(c, "error")[0]["code"], "too_many_subscriptions");
    // Withdrawing the request frees its place.
    sim.send(c, r#"{"type":"unsubscribe","channel":"waiting"}"#);
    assert_eq!(sim.hub.join(c, "third"), Ok(true));
}

#[test]
fn invalid_channel_names_are_refused_without_echoing_them() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    let huge = "x".repeat(1000);
    sim.subscribe(c, &huge);
    sim.send(c, "{\"type\":\"subscribe\",\"channel\":\"a\\u0007b\"}");
    let errors = sim.of_type(c, "error");
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert_eq!(e["code"], "invalid_name");
        assert!(e.get("channel").is_none());
    }
    assert!(
        sim.frames[&c].iter().all(|f| f.len() < 200),
        "a long name is never echoed"
    );
    assert!(
        sim.hub.is_connected(c),
        "an invalid name is an error, not a close"
    );
}
