//! Raw connections: no envelope in either direction, chosen per connection, in rooms shared
//! with `tidings.v1` members; their application heartbeat per path; and pings the
//! application asks for with their round-trip time.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tidings_core::{
    AckOutcome, AppHeartbeat, CloseCode, Config, ConnId, ConnectionInfo, Error, Event, Frame,
    Input, Message, PathRule, Payload, Protocol, Target, RAW_EVENT,
};

use crate::common::Sim;

/// A hub whose `/raw/*` paths speak raw.
fn raw_paths(config: Config) -> Sim {
    Sim::new(config.path(PathRule::new("/raw/*", Protocol::Raw)))
}

/// The messages the application got, as (sender, data).
fn messages(sim: &mut Sim) -> Vec<(ConnId, Payload)> {
    sim.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message {
                conn,
                event,
                data,
                id,
                ack,
            } => {
                assert_eq!((event.as_str(), id, ack), (RAW_EVENT, None, None));
                Some((conn, data))
            }
            _ => None,
        })
        .collect()
}

fn frames(sim: &Sim, conn: ConnId) -> Vec<Frame> {
    sim.frames.get(&conn).cloned().unwrap_or_default()
}

#[test]
fn a_raw_clients_frames_are_messages_as_they_came_and_it_gets_no_welcome() {
    // Welcome frames on: the tidings client gets one, the raw one nothing.
    let mut sim = raw_paths(Config::default().ping_period(None));
    let raw = sim.open_path("/raw/user1");
    let tidings = sim.open_path("/ws");
    assert!(frames(&sim, raw).is_empty());
    assert_eq!(sim.of_type(tidings, "welcome").len(), 1);
    sim.take_events();

    sim.send(raw, r#"{"type":"subscribe","channel":"x"}"#);
    sim.send(raw, "not json at all");
    let bytes = Bytes::from_static(&[0, 159, 146, 150, 10]);
    sim.send_frame(raw, Frame::Binary(bytes.clone()));
    assert_eq!(
        messages(&mut sim),
        vec![
            (
                raw,
                Payload::Text(r#"{"type":"subscribe","channel":"x"}"#.into())
            ),
            (raw, Payload::Text("not json at all".into())),
            (raw, Payload::Binary(bytes)),
        ]
    );
    // A request's shape is data here: nothing was joined, nothing answered.
    assert!(frames(&sim, raw).is_empty());
    assert!(sim.hub.rooms_of(raw).is_empty());
}

#[test]
fn the_protocol_comes_from_the_connection_then_its_path_rule_then_the_default() {
    let mut sim = raw_paths(Sim::quiet());
    let by_rule = sim.open_path("/raw/a");
    let by_default = sim.open_path("/raw");
    let explicit = sim.open(ConnectionInfo::new("/raw/b").protocol(Protocol::Tidings));
    let explicit_raw = sim.open(ConnectionInfo::new("/ws").protocol(Protocol::Raw));
    let protocol = |sim: &Sim, c| sim.hub.info(c).and_then(|i| i.protocol);
    assert_eq!(protocol(&sim, by_rule), Some(Protocol::Raw));
    assert_eq!(protocol(&sim, by_default), Some(Protocol::Tidings));
    assert_eq!(protocol(&sim, explicit), Some(Protocol::Tidings));
    assert_eq!(protocol(&sim, explicit_raw), Some(Protocol::Raw));
}

/// A room "r" with two members of each protocol: (tidings, raw).
fn mixed_room(sim: &mut Sim) -> ([ConnId; 2], [ConnId; 2]) {
    let tidings = [sim.open_path("/ws"), sim.open_path("/ws")];
    let raw = [sim.open_path("/raw/1"), sim.open_path("/raw/2")];
    for c in tidings.iter().chain(&raw) {
        sim.hub.join(*c, "r").expect("join");
    }
    sim.drain();
    sim.clear();
    (tidings, raw)
}

#[test]
fn a_room_of_both_protocols_gets_each_message_in_its_members_form() {
    let mut sim = raw_paths(Sim::quiet());
    let (tidings, raw) = mixed_room(&mut sim);
    let room = Target::room("/", "r");
    for message in [
        Message::text("chat", "hi").id("m1"),
        Message::binary("chat", vec![1, 2, 3]),
        Message::json("chat", json!({"n": 1})),
    ] {
        let delivery = sim.hub.publish(sim.now, room.clone(), message).expect("ok");
        assert_eq!(delivery.queued, 4);
    }
    sim.drain();
    for c in raw {
        assert_eq!(
            frames(&sim, c),
            vec![
                Frame::text("hi"),
                Frame::Binary(Bytes::from_static(&[1, 2, 3])),
                Frame::text(r#"{"n":1}"#),
            ]
        );
    }
    for c in tidings {
        let events = sim.of_type(c, "event");
        assert_eq!(events.len(), 2, "two text envelopes, one binary frame");
        assert_eq!(
            (&events[0]["data"], &events[0]["id"]),
            (&json!("hi"), &json!("m1"))
        );
        assert_eq!(events[1]["data"], json!({"n": 1}));
        let binary = frames(&sim, c)
            .into_iter()
            .find_map(|f| match f {
                Frame::Binary(b) => Some(b),
                _ => None,
            })
            .expect("a binary frame");
        assert!(binary.starts_with(br#"{"type":"event""#) && binary.ends_with(&[b'\n', 1, 2, 3]));
    }
}

#[test]
fn a_mixed_room_encodes_each_publication_once_per_protocol_not_per_member() {
    let mut sim = raw_paths(Sim::quiet());
    let (tidings, raw) = mixed_room(&mut sim);
    let delivery = sim
        .hub
        .publish(sim.now, Target::room("/", "r"), Message::text("chat", "hi"))
        .expect("ok");
    assert_eq!(delivery.queued, 4);
    // Where each member's copy of the frame lives: one place per protocol.
    let mut at = std::collections::BTreeMap::new();
    let mut chunks = Vec::new();
    while let Some(conn) = sim.hub.poll_transmits(&mut chunks) {
        let frames: Vec<Frame> = chunks.drain(..).flatten().collect();
        let [Frame::Text(text)] = &frames[..] else {
            panic!("one text frame each: {frames:?}");
        };
        at.insert(conn, text.as_bytes().as_ptr());
        sim.hub.handle(sim.now, Input::Written { conn, frames: 1 });
    }
    assert_eq!(at.len(), 4);
    assert_eq!(at[&tidings[0]], at[&tidings[1]]);
    assert_eq!(at[&raw[0]], at[&raw[1]]);
    assert_ne!(at[&tidings[0]], at[&raw[0]]);
}

#[test]
fn batches_reach_raw_members_as_their_items_alone() {
    let mut sim = raw_paths(Sim::quiet());
    let (tidings, raw) = mixed_room(&mut sim);
    let room = Target::room("/", "r");
    let ttl = Duration::from_millis(50);
    for line in ["a", "b"] {
        sim.hub
            .publish_batched_text(sim.now, room.clone(), "t", "header", line, ttl)
            .expect("batched");
    }
    for n in [1, 2] {
        sim.hub
            .publish_batched(sim.now, room.clone(), "j", "nums", json!(n), ttl)
            .expect("batched");
    }
    sim.advance(ttl);
    assert_eq!(
        frames(&sim, raw[0]),
        vec![Frame::text("a\nb"), Frame::text("[1,2]")]
    );
    let texts: Vec<_> = frames(&sim, tidings[0])
        .iter()
        .filter_map(|f| f.as_text().map(str::to_owned))
        .collect();
    assert_eq!(texts[0], "header\na\nb");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&texts[1]).expect("json")["messages"],
        json!([1, 2])
    );
}

#[test]
fn raw_connections_have_no_acks_and_no_recovery() {
    let mut sim = raw_paths(Sim::quiet());
    let (tidings, raw) = mixed_room(&mut sim);
    let refused = sim
        .hub
        .emit_with_ack(sim.now, raw[0], Message::text("q", "?"), None);
    assert!(matches!(
        refused,
        Err(Error::NotInProtocol {
            what: "acks",
            protocol: Protocol::Raw,
            ..
        })
    ));
    let (_, delivery) = sim
        .hub
        .publish_with_ack(
            sim.now,
            Target::room("/", "r"),
            Message::text("q", "?"),
            None,
        )
        .expect("published");
    assert_eq!(delivery.queued, 2);
    let mut skipped = delivery.refused.clone();
    skipped.sort();
    assert_eq!(skipped, raw.to_vec());
    sim.drain();
    assert!(frames(&sim, raw[0]).is_empty());
    assert_eq!(sim.of_type(tidings[0], "event").len(), 1);

    let from = tidings_core::Position { since: 0, epoch: 0 };
    let refused = sim.hub.join_pinned_from(raw[0], "other", from);
    assert!(matches!(
        refused,
        Err(Error::NotInProtocol {
            what: "recovery",
            ..
        })
    ));
}

#[test]
fn the_application_joins_a_raw_member_silently_and_its_faults_still_close_it() {
    let config = Sim::quiet().max_inbound_rate(Some(2)).max_errors(3);
    let mut sim = raw_paths(config);
    let raw = sim.open_path("/raw/1");
    assert_eq!(sim.hub.join(raw, "r"), Ok(true));
    sim.drain();
    assert!(frames(&sim, raw).is_empty(), "no `subscribed` frame");
    for i in 0..6 {
        sim.send(raw, &i.to_string());
    }
    // Two messages within the rate; four over it, each a fault without an `error` frame,
    // and the fourth fault is one past `max_errors`.
    assert_eq!(messages(&mut sim).len(), 2);
    assert!(frames(&sim, raw).is_empty());
    assert_eq!(
        sim.close_of(raw).map(|c| c.0),
        Some(CloseCode::RATE_LIMITED)
    );
}

#[test]
fn a_raw_message_over_the_size_limit_closes_with_1009() {
    let mut sim = raw_paths(Sim::quiet().max_message_size(8));
    let raw = sim.open_path("/raw/1");
    sim.send(raw, "12345678");
    sim.send_frame(raw, Frame::Binary(Bytes::from_static(b"123456789")));
    assert_eq!(messages(&mut sim).len(), 1);
    assert_eq!(sim.close_of(raw).map(|c| c.0), Some(CloseCode::TOO_BIG));
}

#[test]
fn binary_frames_are_a_raw_connections_data_even_where_tidings_clients_may_not_send_them() {
    let mut sim = raw_paths(Sim::quiet().accept_binary(false));
    let raw = sim.open_path("/raw/1");
    let tidings = sim.open_path("/ws");
    sim.send_frame(raw, Frame::Binary(Bytes::from_static(b"ok")));
    sim.send_frame(tidings, Frame::Binary(Bytes::from_static(b"{}\nno")));
    assert_eq!(messages(&mut sim).len(), 1);
    assert_eq!(sim.close_of(raw), None);
    assert_eq!(
        sim.close_of(tidings).map(|c| c.0),
        Some(CloseCode::UNSUPPORTED_DATA)
    );
}

#[test]
fn a_path_rule_sets_its_own_application_heartbeat() {
    let beat = AppHeartbeat {
        ping: "hb?".into(),
        pong: "hb!".into(),
        alive_timeout: Duration::from_secs(5),
    };
    let rule = PathRule::new("/raw/*", Protocol::Raw).app_heartbeat(beat);
    let mut sim = Sim::new(Sim::quiet().path(rule));
    let raw = sim.open_path("/raw/1");
    let tidings = sim.open_path("/ws");
    sim.send(raw, "hb?");
    sim.send(tidings, "hb?");
    assert_eq!(frames(&sim, raw), vec![Frame::text("hb!")]);
    assert!(
        messages(&mut sim).is_empty(),
        "a heartbeat is not a message"
    );
    assert_eq!(
        sim.of_type(tidings, "error").len(),
        1,
        "no heartbeat on /ws"
    );

    sim.advance(Duration::from_secs(4));
    sim.send(raw, "hb?");
    sim.advance(Duration::from_secs(4));
    assert_eq!(sim.close_of(raw), None, "heard from 4 s ago");
    sim.advance(Duration::from_secs(2));
    assert_eq!(
        sim.close_of(raw).map(|c| c.0),
        Some(CloseCode::HEARTBEAT_TIMEOUT)
    );
    assert_eq!(sim.close_of(tidings), None, "no heartbeat limit on /ws");
}

#[test]
fn a_path_rules_heartbeat_is_checked_like_the_hub_wide_one() {
    let beat = AppHeartbeat {
        ping: String::new(),
        ..AppHeartbeat::default()
    };
    let rule = PathRule::new("/raw/*", Protocol::Raw).app_heartbeat(beat);
    assert!(matches!(
        tidings_core::Hub::new(Sim::quiet().path(rule)),
        Err(Error::InvalidConfig(_))
    ));
    let relative = PathRule::new("raw", Protocol::Raw);
    assert!(tidings_core::Hub::new(Sim::quiet().path(relative)).is_err());
}

/// The payload of the one ping `conn` was sent.
fn ping_sent(sim: &Sim, conn: ConnId) -> Bytes {
    let pings: Vec<Bytes> = frames(sim, conn)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Ping(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(pings.len(), 1, "one ping: {pings:?}");
    pings[0].clone()
}

fn ack_outcomes(sim: &mut Sim) -> Vec<AckOutcome> {
    sim.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Ack { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ping_resolves_with_its_round_trip_time_when_its_pong_comes_back() {
    for path in ["/raw/1", "/ws"] {
        let mut sim = raw_paths(Sim::quiet());
        let conn = sim.open_path(path);
        let ping = sim.hub.ping(sim.now, conn, None).expect("ping");
        sim.drain();
        let payload = ping_sent(&sim, conn);
        sim.advance(Duration::from_millis(30));
        // An unsolicited pong, and a heartbeat's (empty), resolve nothing.
        sim.send_frame(conn, Frame::Pong(Bytes::from_static(b"12345678")));
        sim.send_frame(conn, Frame::Pong(Bytes::new()));
        assert!(ack_outcomes(&mut sim).is_empty());
        sim.send_frame(conn, Frame::Pong(payload.clone()));
        let events = sim.take_events();
        assert_eq!(
            events,
            vec![Event::Ack {
                conn,
                ack: ping,
                outcome: AckOutcome::Pong(Duration::from_millis(30)),
            }]
        );
        // Exactly once: a second pong, and the deadline, resolve nothing more.
        sim.send_frame(conn, Frame::Pong(payload));
        sim.advance(Duration::from_secs(10));
        assert!(ack_outcomes(&mut sim).is_empty());
        let counters = sim.hub.counters();
        assert_eq!((counters.pings_answered, counters.acks_replied), (1, 0));
    }
}

#[test]
fn a_ping_without_its_pong_times_out_or_ends_with_its_connection() {
    let mut sim = raw_paths(Sim::quiet());
    let conn = sim.open_path("/raw/1");
    sim.hub
        .ping(sim.now, conn, Some(Duration::from_millis(100)))
        .expect("ping");
    sim.drain();
    let payload = ping_sent(&sim, conn);
    sim.advance(Duration::from_millis(99));
    assert!(ack_outcomes(&mut sim).is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(ack_outcomes(&mut sim), vec![AckOutcome::TimedOut]);
    sim.send_frame(conn, Frame::Pong(payload));
    assert!(
        ack_outcomes(&mut sim).is_empty(),
        "a late pong resolves nothing"
    );
    let counters = sim.hub.counters();
    assert_eq!((counters.pings_timed_out, counters.pings_answered), (1, 0));
    assert_eq!(counters.acks_timed_out, 0, "a ping is not an ack");

    sim.hub.ping(sim.now, conn, None).expect("ping");
    sim.hub
        .close(sim.now, conn, CloseCode::NORMAL, "bye")
        .expect("open");
    sim.drain();
    assert_eq!(ack_outcomes(&mut sim), vec![AckOutcome::Closed]);
    let counters = sim.hub.counters();
    assert_eq!((counters.pings_failed, counters.acks_failed), (1, 0));
    assert_eq!(
        sim.hub.ping(sim.now, conn, None),
        Err(Error::UnknownConnection(conn))
    );
}

#[test]
fn a_tidings_clients_ack_frame_cannot_answer_a_ping() {
    let mut sim = raw_paths(Sim::quiet().max_pending_acks(1));
    let conn = sim.open_path("/ws");
    let ping = sim.hub.ping(sim.now, conn, None).expect("ping");
    assert!(matches!(
        sim.hub.ping(sim.now, conn, None),
        Err(Error::TooManyPendingAcks { limit: 1, .. })
    ));
    sim.drain();
    sim.send(conn, &format!(r#"{{"type":"ack","ack":{}}}"#, ping.0));
    assert!(ack_outcomes(&mut sim).is_empty());
    let payload = ping_sent(&sim, conn);
    sim.send_frame(conn, Frame::Pong(payload));
    assert!(matches!(ack_outcomes(&mut sim)[..], [AckOutcome::Pong(_)]));
}

#[test]
fn each_ping_has_its_own_id_and_is_answered_by_its_own_pong() {
    let mut sim = raw_paths(Sim::quiet());
    let conn = sim.open_path("/raw/1");
    let first = sim
        .hub
        .ping(sim.now, conn, Some(Duration::from_secs(1)))
        .expect("ping");
    let second = sim
        .hub
        .ping(sim.now, conn, Some(Duration::from_secs(1)))
        .expect("ping");
    assert_ne!(first, second);
    sim.drain();
    // The second's pong alone: the second resolves, the first times out.
    sim.send_frame(
        conn,
        Frame::Pong(Bytes::copy_from_slice(&second.0.to_be_bytes())),
    );
    sim.advance(Duration::from_secs(1));
    let outcomes: Vec<_> = sim
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Ack { ack, outcome, .. } => Some((ack, outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (second, AckOutcome::Pong(Duration::ZERO)),
            (first, AckOutcome::TimedOut)
        ]
    );
}

#[test]
fn an_application_ping_handed_out_does_not_make_room_for_a_second_heartbeat_ping() {
    // One frame in flight at a time, and a reader that writes nothing back: a heartbeat ping
    // queued behind the application's ping must stay the only one queued.
    let period = Duration::from_secs(1);
    let config = Sim::quiet()
        .ping_period(Some(period))
        .pong_wait(Duration::from_secs(60))
        .write_window(1);
    let mut sim = raw_paths(config);
    let conn = sim.open_path("/raw/1");
    sim.stalled.insert(conn);
    let _ = sim
        .hub
        .emit(sim.now, conn, Message::text("m", "first"))
        .expect("emit");
    sim.drain(); // the message is in flight, unwritten
    sim.hub
        .ping(sim.now, conn, Some(Duration::from_secs(30)))
        .expect("ping");
    sim.advance(period); // the heartbeat's ping queues behind the application's
                         // The message is written (as the stalled writer's count knows).
    sim.hub.handle(sim.now, Input::Written { conn, frames: 1 });
    *sim.unwritten.get_mut(&conn).expect("in flight") -= 1;
    sim.drain(); // the application's ping is handed out; the heartbeat's still waits
    sim.advance(period); // a heartbeat ping is still queued: this period adds none
    sim.unstall(conn);
    sim.advance(Duration::from_millis(1));
    let heartbeats = frames(&sim, conn)
        .iter()
        .filter(|f| matches!(f, Frame::Ping(p) if p.is_empty()))
        .count();
    assert_eq!(heartbeats, 1, "{:?}", frames(&sim, conn));
}
