//! Publishing: every target kind, payload kinds, envelope fields, encode-once fan-out, room
//! offsets, and the cluster seam.

use crate::common::Sim;
use bytes::Bytes;
use serde_json::{json, Value};
use tidings_core::{
    ClusterMessage, ConnectionInfo, Error, Frame, Message, Output, Payload, Scope, Target,
};

fn three_in_a_room() -> (Sim, [tidings_core::ConnId; 3]) {
    let mut sim = Sim::new(Sim::quiet());
    let ids = [sim.open_path("/"), sim.open_path("/"), sim.open_path("/")];
    for &c in &ids[..2] {
        sim.subscribe(c, "room");
    }
    sim.clear();
    (sim, ids)
}

fn events(sim: &Sim, c: tidings_core::ConnId) -> Vec<Value> {
    sim.of_type(c, "event")
}

#[test]
fn each_target_reaches_exactly_its_recipients() {
    let (mut sim, [a, b, c]) = three_in_a_room();
    let now = sim.now;
    let cases: Vec<(Target, Vec<tidings_core::ConnId>)> = vec![
        (Target::room("/", "room"), vec![a, b]),
        (Target::room("/", "room").except(a), vec![b]),
        (Target::namespace("/"), vec![a, b, c]),
        (Target::namespace("/").except(b), vec![a, c]),
        (Target::all(), vec![a, b, c]),
        (Target::conn(c), vec![c]),
        (Target::room("/", "nobody-here"), vec![]),
        (Target::namespace("/elsewhere"), vec![]),
    ];
    for (target, want) in cases {
        sim.clear();
        let d = sim
            .hub
            .publish(now, target.clone(), Message::text("t", "x"))
            .expect("publish");
        sim.drain();
        assert_eq!(d.queued, want.len(), "{target:?}");
        for conn in [a, b, c] {
            assert_eq!(
                events(&sim, conn).len(),
                usize::from(want.contains(&conn)),
                "{target:?} {conn}"
            );
        }
    }
}

#[test]
fn envelope_carries_every_field_the_caller_sets() {
    let (mut sim, [a, ..]) = three_in_a_room();
    let msg = Message::json("chat", json!({"text": "hi"}))
        .id("m2")
        .reply_to("m1")
        .timestamp(1_700_000_000_000);
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "room"), msg)
        .expect("publish");
    sim.drain();
    let e = &events(&sim, a)[0];
    assert_eq!(e["event"], "chat");
    assert_eq!(e["channel"], "room");
    assert_eq!(e["data"], json!({"text": "hi"}));
    assert_eq!(e["id"], "m2");
    assert_eq!(e["reply_to"], "m1");
    assert_eq!(e["ts"], 1_700_000_000_000u64);
    assert_eq!(e["offset"], 0);
    // Direct emits carry no channel or offset.
    let _ = sim
        .hub
        .emit(sim.now, a, Message::text("note", "x"))
        .expect("emit");
    sim.drain();
    let e = &events(&sim, a)[1];
    assert!(e.get("channel").is_none() && e.get("offset").is_none());
    assert_eq!(e["data"], "x");
}

#[test]
fn binary_payloads_go_out_as_binary_frames_with_a_header_line() {
    let (mut sim, [a, ..]) = three_in_a_room();
    let _ = sim.hub.publish(
        sim.now,
        Target::room("/", "room"),
        Message::binary("blob", Bytes::from_static(&[0, 159, 10, 1])),
    );
    sim.drain();
    let Frame::Binary(bytes) = &sim.frames[&a][0] else {
        panic!("expected a binary frame")
    };
    let nl = bytes.iter().position(|&b| b == b'\n').expect("header");
    let head: Value = serde_json::from_slice(&bytes[..nl]).expect("json header");
    assert_eq!(head["event"], "blob");
    assert_eq!(head["channel"], "room");
    assert_eq!(&bytes[nl + 1..], &[0, 159, 10, 1]);
}

#[test]
fn a_broadcast_is_encoded_once_and_shared_by_every_recipient() {
    let mut sim = Sim::new(Sim::quiet());
    let ids: Vec<_> = (0..50).map(|_| sim.open_path("/")).collect();
    for &c in &ids {
        sim.hub.join(c, "big").expect("join");
    }
    sim.drain();
    sim.clear();
    let _ = sim
        .hub
        .publish(
            sim.now,
            Target::room("/", "big"),
            Message::json("e", json!({"n": 1})),
        )
        .expect("publish");
    let mut pointers = Vec::new();
    while let Some(out) = sim.hub.poll_output() {
        if let Output::Transmit {
            frame: Frame::Text(t),
            ..
        } = out
        {
            pointers.push(t.as_bytes().as_ptr());
        }
    }
    assert_eq!(pointers.len(), 50);
    assert!(
        pointers.windows(2).all(|w| w[0] == w[1]),
        "every recipient shares one buffer"
    );
}

/// A client author's finding: a publish that left the sender out used an offset the sender
/// never saw (`subscribed` said 0, its first event was 1). Offsets number only what every
/// member gets, so each member sees them without a gap from its `subscribed` offset on.
#[test]
fn every_member_sees_the_offsets_without_gaps_from_its_subscribed_offset() {
    let mut sim = Sim::new(Sim::quiet());
    let (a, b) = (sim.open_path("/"), sim.open_path("/"));
    sim.subscribe(a, "room");
    sim.subscribe(b, "room");
    let joined = sim.of_type(b, "subscribed")[0]["offset"].clone();
    let publish = |sim: &mut Sim, target: Target, message: Message| {
        let d = sim.hub.publish(sim.now, target, message).expect("publish");
        assert!(d.queued > 0);
    };
    // What a chat does when someone joins: tell everyone else.
    publish(
        &mut sim,
        Target::room("/", "room").except(b),
        Message::text("joined", "b"),
    );
    publish(
        &mut sim,
        Target::room("/", "room"),
        Message::text("say", "1"),
    );
    publish(
        &mut sim,
        Target::room("/", "room"),
        Message::text("cursor", "x").volatile(),
    );
    publish(
        &mut sim,
        Target::room("/", "room"),
        Message::text("say", "2"),
    );
    sim.drain();
    let numbered = |sim: &Sim, c| -> Vec<(String, Option<u64>)> {
        events(sim, c)
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap_or("").to_owned(),
                    e["offset"].as_u64(),
                )
            })
            .collect()
    };
    assert_eq!(joined, 0);
    assert_eq!(
        numbered(&sim, b),
        [("say", Some(0)), ("cursor", None), ("say", Some(1))].map(|(e, o)| (e.to_owned(), o))
    );
    assert_eq!(
        numbered(&sim, a),
        [
            ("joined", None),
            ("say", Some(0)),
            ("cursor", None),
            ("say", Some(1))
        ]
        .map(|(e, o)| (e.to_owned(), o))
    );
    // A later member starts where the stream is.
    let c = sim.open_path("/");
    sim.subscribe(c, "room");
    assert_eq!(sim.of_type(c, "subscribed")[0]["offset"], 2);
}

#[test]
fn room_offsets_only_grow_and_a_new_room_gets_a_new_epoch() {
    let (mut sim, [a, ..]) = three_in_a_room();
    for _ in 0..3 {
        let _ = sim
            .hub
            .publish(sim.now, Target::room("/", "room"), Message::text("t", "x"));
    }
    sim.drain();
    let ev = events(&sim, a);
    let offsets: Vec<_> = ev
        .iter()
        .map(|e| e["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    let epoch = ev[0]["epoch"].clone();
    assert!(ev.iter().all(|e| e["epoch"] == epoch));

    // Empty the room: its history is gone, and so is its epoch.
    let c = sim.open_path("/");
    let members = sim.hub.members("/", "room");
    for m in members {
        sim.hub.leave(m, "room").expect("leave");
    }
    sim.subscribe(c, "room");
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "room"), Message::text("t", "x"));
    sim.drain();
    let e = &events(&sim, c)[0];
    assert_eq!(e["offset"], 0);
    assert_ne!(e["epoch"], epoch);
}

#[test]
fn invalid_event_and_room_names_are_errors() {
    let (mut sim, [a, ..]) = three_in_a_room();
    assert!(matches!(
        sim.hub
            .publish(sim.now, Target::room("/", "room"), Message::text("", "x")),
        Err(Error::InvalidName { what: "event", .. })
    ));
    assert!(matches!(
        sim.hub.publish(
            sim.now,
            Target::room("/", "x".repeat(500)),
            Message::text("e", "x")
        ),
        Err(Error::InvalidName { what: "room", .. })
    ));
    assert!(matches!(
        sim.hub.emit(sim.now, a, Message::text("a\nb", "x")),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn cluster_publishes_are_output_and_remote_ones_delivered_without_echo() {
    let mut sim = Sim::new(Sim::quiet().cluster(true));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.subscribe(a, "room");
    sim.subscribe(b, "room");
    sim.clear();
    let _ = sim.hub.publish(
        sim.now,
        Target::room("/", "room").except(a),
        Message::text("t", "local"),
    );
    let _ = sim.hub.emit(sim.now, a, Message::text("t", "direct"));
    sim.drain();
    // One cluster message: direct emits stay local, and the exception is dropped (ids are local).
    assert_eq!(sim.cluster.len(), 1);
    let ClusterMessage::Publish { target, message } = &sim.cluster[0] else {
        panic!("publish")
    };
    assert_eq!(target, &Target::room("/", "room"));
    assert_eq!(message.payload, Payload::Text("local".into()));
    // It survives serialisation, as a backplane would carry it.
    let wire = serde_json::to_string(&sim.cluster[0]).expect("serialise");
    let back: ClusterMessage = serde_json::from_str(&wire).expect("deserialise");

    sim.cluster.clear();
    sim.hub.handle_remote(sim.now, back).expect("remote");
    sim.drain();
    assert!(
        sim.cluster.is_empty(),
        "a remote publish is never echoed back"
    );
    assert_eq!(
        events(&sim, a)
            .iter()
            .filter(|e| e["data"] == "local")
            .count(),
        1
    );
    assert_eq!(
        events(&sim, b)
            .iter()
            .filter(|e| e["data"] == "local")
            .count(),
        2
    );
    assert_eq!(sim.hub.counters().remote_publishes, 1);
}

#[test]
fn without_cluster_nothing_is_output_for_a_backplane() {
    let (mut sim, _) = three_in_a_room();
    let _ = sim
        .hub
        .publish(sim.now, Target::all(), Message::text("t", "x"));
    sim.drain();
    assert!(sim.cluster.is_empty());
}

#[test]
fn remote_batched_items_batch_locally() {
    let mut sim = Sim::new(Sim::quiet().cluster(true));
    let a = sim.open(ConnectionInfo::new("/"));
    sim.subscribe(a, "doc");
    sim.clear();
    let target = Target {
        scope: Scope::Room {
            namespace: "/".into(),
            room: "doc".into(),
        },
        except: None,
    };
    for i in 0..2 {
        let m = ClusterMessage::Batched {
            target: target.clone(),
            ident: "cursors".into(),
            event: "cursor".into(),
            item: Payload::Json(json!(i)),
            ttl_ms: 50,
        };
        sim.hub.handle_remote(sim.now, m).expect("remote");
    }
    sim.drain();
    assert!(sim.cluster.is_empty());
    sim.advance(std::time::Duration::from_millis(50));
    let batches = sim.of_type(a, "batch");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["messages"], json!([0, 1]));
    assert_eq!(sim.hub.counters().remote_publishes, 2);
}

#[test]
fn remote_messages_never_address_local_connection_ids() {
    let mut sim = Sim::new(Sim::quiet().cluster(true));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.clear();
    // Ids from another node mean nothing here: one-connection targets are ignored...
    let to_one = ClusterMessage::Publish {
        target: Target::conn(a),
        message: Message::text("t", "x"),
    };
    sim.hub.handle_remote(sim.now, to_one).expect("ignored");
    // ...and an exception is dropped rather than applied to whoever holds that id locally.
    let all_but = ClusterMessage::Publish {
        target: Target::all().except(a),
        message: Message::text("t", "y"),
    };
    sim.hub.handle_remote(sim.now, all_but).expect("remote");
    sim.drain();
    assert_eq!(
        events(&sim, a)
            .iter()
            .map(|e| e["data"].clone())
            .collect::<Vec<_>>(),
        vec![json!("y")]
    );
    assert_eq!(events(&sim, b).len(), 1);
    assert_eq!(sim.hub.counters().remote_publishes, 1);
}

/// A name means the same on every node, so a publish to it is forwarded to the cluster and
/// delivered by whichever node holds it.
#[test]
fn a_publish_to_a_name_reaches_that_connection_here_and_is_forwarded() {
    let mut sim = Sim::new(Sim::quiet().cluster(true));
    let ann = sim.open(tidings_core::ConnectionInfo::new("/").name("ann"));
    let other = sim.open_path("/");
    let to_ann = |sim: &mut Sim, name: &str| {
        sim.hub
            .publish(sim.now, Target::name(name), Message::text("dm", "hi"))
            .expect("publish")
    };
    assert_eq!(to_ann(&mut sim, "ann").queued, 1);
    assert_eq!(
        to_ann(&mut sim, "bob").queued,
        0,
        "not here; another node may hold it"
    );
    sim.drain();
    assert_eq!(events(&sim, ann).len(), 1);
    assert!(events(&sim, other).is_empty());
    assert_eq!(sim.cluster.len(), 2, "both go to the other nodes");
    // From another node: delivered if held here.
    let remote = sim.cluster[0].clone();
    sim.hub.handle_remote(sim.now, remote).expect("remote");
    sim.drain();
    assert_eq!(events(&sim, ann).len(), 2);
    assert!(sim
        .hub
        .publish(sim.now, Target::name(""), Message::text("dm", "x"))
        .is_err());
}

#[test]
fn a_name_whose_connection_is_behind_cannot_take_more() {
    let mut sim = Sim::new(Sim::quiet().max_queue_frames(2));
    let ann = sim.open(tidings_core::ConnectionInfo::new("/").name("ann"));
    let _bob = sim.open(tidings_core::ConnectionInfo::new("/").name("bob"));
    sim.stalled.insert(ann);
    for _ in 0..3 {
        let d = sim
            .hub
            .publish(sim.now, Target::name("ann"), Message::text("dm", "x"))
            .expect("publish");
        assert_eq!(d.queued, 1);
        sim.drain();
    }
    assert!(!sim.hub.can_take(&Target::name("ann")), "ann is behind");
    assert!(sim.hub.can_take(&Target::name("bob")));
    assert!(sim.hub.can_take(&Target::name("nobody")));
}
