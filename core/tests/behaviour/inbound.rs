//! Inbound frames: events surfaced to the application, client publishes, error replies with
//! reasons, abuse closes, size and type limits, application heartbeats.

use std::time::Duration;

use crate::common::Sim;
use bytes::Bytes;
use serde_json::json;
use tidings_core::{AppHeartbeat, CloseCode, Config, ConnId, Event, Frame, Input, Payload, Target};

#[test]
fn client_events_reach_the_application() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.take_events();
    sim.send(
        c,
        r#"{"type":"event","event":"move","data":{"x":1},"id":"m9"}"#,
    );
    assert_eq!(
        sim.take_events(),
        vec![Event::Message {
            conn: c,
            event: "move".into(),
            data: Payload::Json(json!({"x":1})),
            id: Some("m9".into()),
            ack: None
        }]
    );
    // Binary events carry their payload bytes.
    sim.send_frame(
        c,
        Frame::Binary(Bytes::from_static(
            b"{\"type\":\"event\",\"event\":\"up\"}\n\x00\x01",
        )),
    );
    assert_eq!(
        sim.take_events(),
        vec![Event::Message {
            conn: c,
            event: "up".into(),
            data: Payload::Binary(Bytes::from_static(b"\x00\x01")),
            id: None,
            ack: None
        }]
    );
}

#[test]
fn malformed_and_unknown_frames_get_an_error_with_a_reason() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.send(c, "not json");
    sim.send(c, r#"{"type":"teleport","id":"r1"}"#);
    sim.send(c, r#"{"type":"event"}"#);
    sim.send(c, r#"{"type":"event","event":""}"#);
    let errors = sim.of_type(c, "error");
    let codes: Vec<_> = errors
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["malformed", "unknown_type", "missing_field", "invalid_name"]
    );
    assert!(errors[1]["message"]
        .as_str()
        .is_some_and(|m| m.contains("teleport")));
    assert_eq!(errors[1]["ref"], "r1");
    assert!(sim.hub.is_connected(c));
    assert_eq!(sim.hub.counters().protocol_errors, 4);
}

#[test]
fn repeated_abuse_closes_the_connection() {
    let mut sim = Sim::new(
        Sim::quiet()
            .max_errors(3)
            .error_window(Duration::from_secs(10)),
    );
    let c = sim.open_path("/");
    for _ in 0..3 {
        sim.send(c, "garbage");
    }
    assert!(sim.hub.is_connected(c));
    sim.send(c, "garbage");
    let (code, reason) = sim.close_of(c).expect("closed");
    assert_eq!(code, CloseCode::RATE_LIMITED);
    assert!(reason.contains("protocol errors"), "{reason}");
    assert_eq!(
        sim.of_type(c, "error").len(),
        4,
        "the last error is answered too, before the close"
    );
    sim.send(c, "garbage");
    assert_eq!(
        sim.of_type(c, "error").len(),
        4,
        "a closing connection takes no more"
    );
}

#[test]
fn errors_spread_over_time_are_forgiven() {
    let mut sim = Sim::new(
        Sim::quiet()
            .max_errors(2)
            .error_window(Duration::from_secs(10)),
    );
    let c = sim.open_path("/");
    for _ in 0..5 {
        sim.send(c, "garbage");
        sim.send(c, "garbage");
        sim.advance(Duration::from_secs(10));
    }
    assert!(sim.hub.is_connected(c));
}

#[test]
fn an_oversized_message_closes_with_1009() {
    let mut sim = Sim::new(Sim::quiet().max_message_size(100));
    let c = sim.open_path("/");
    let other = sim.open_path("/");
    sim.send(
        c,
        &format!(
            r#"{{"type":"event","event":"e","data":"{}"}}"#,
            "x".repeat(200)
        ),
    );
    let (code, reason) = sim.close_of(c).expect("closed");
    assert_eq!(code, CloseCode::TOO_BIG);
    assert!(reason.contains("limit of 100"), "{reason}");
    assert!(sim.hub.is_connected(other));
    // Exactly at the limit is fine.
    let ok = sim.open_path("/");
    let body = r#"{"type":"ping"}"#;
    sim.send(ok, &format!("{body}{}", " ".repeat(100 - body.len())));
    assert!(sim.hub.is_connected(ok));
}

#[test]
fn binary_frames_close_with_1003_when_not_accepted() {
    let mut sim = Sim::new(Sim::quiet().accept_binary(false));
    let c = sim.open_path("/");
    sim.send_frame(
        c,
        Frame::Binary(Bytes::from_static(b"{\"type\":\"ping\"}\n")),
    );
    assert_eq!(
        sim.close_of(c).map(|c| c.0),
        Some(CloseCode::UNSUPPORTED_DATA)
    );
}

#[test]
fn a_binary_frame_without_header_is_an_error() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.send_frame(c, Frame::Binary(Bytes::from_static(b"\x00\x01\x02")));
    assert_eq!(sim.of_type(c, "error")[0]["code"], "malformed");
}

#[test]
fn json_ping_gets_a_pong() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.send(c, r#"{"type":"ping","id":"p1"}"#);
    assert_eq!(
        sim.of_type(c, "pong"),
        vec![json!({"type":"pong","ref":"p1"})]
    );
}

#[test]
fn app_heartbeat_text_is_answered_and_keeps_the_connection_alive() {
    let hb = AppHeartbeat {
        ping: "ping".into(),
        pong: "pong".into(),
        alive_timeout: Duration::from_secs(30),
    };
    let mut sim = Sim::new(Sim::quiet().app_heartbeat(Some(hb)));
    let c = sim.open_path("/");
    for _ in 0..4 {
        sim.advance(Duration::from_secs(20));
        sim.send(c, "ping");
    }
    assert!(sim.hub.is_connected(c), "80 s alive by heartbeats");
    let pongs: Vec<_> = sim.frames[&c]
        .iter()
        .filter(|f| f.as_text() == Some("pong"))
        .collect();
    assert_eq!(pongs.len(), 4);
    assert!(
        sim.take_events()
            .iter()
            .all(|e| !matches!(e, Event::Message { .. })),
        "heartbeats are not events"
    );
    sim.advance(Duration::from_secs(30));
    let (code, _) = sim.close_of(c).expect("silent: closed");
    assert_eq!(code, CloseCode::HEARTBEAT_TIMEOUT);
}

#[test]
fn client_publish_is_off_by_default_and_needs_membership_when_on() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.subscribe(c, "room");
    sim.send(
        c,
        r#"{"type":"publish","channel":"room","event":"say","data":"hi"}"#,
    );
    assert_eq!(sim.of_type(c, "error")[0]["code"], "publish_not_allowed");

    let mut sim = Sim::new(Sim::quiet().client_publish(true));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.subscribe(a, "room");
    sim.subscribe(b, "room");
    let outsider = sim.open_path("/");
    sim.take_events();
    sim.send(
        a,
        r#"{"type":"publish","channel":"room","event":"say","data":"hi","id":"c1"}"#,
    );
    for conn in [a, b] {
        let e = &sim.of_type(conn, "event")[0];
        assert_eq!(
            (e["data"].clone(), e["channel"].clone(), e["id"].clone()),
            (json!("hi"), json!("room"), json!("c1"))
        );
    }
    assert!(
        matches!(&sim.take_events()[..], [Event::Published { conn, event, .. }] if *conn == a && event == "say")
    );
    sim.send(
        outsider,
        r#"{"type":"publish","channel":"room","event":"say","data":"x"}"#,
    );
    assert_eq!(sim.of_type(outsider, "error")[0]["code"], "not_subscribed");
    assert_eq!(sim.of_type(b, "event").len(), 1);
}

/// Found by the simulation: under the Refuse policy a client's publish skipped full
/// recipients and nothing said so.
#[test]
fn a_client_publish_past_a_readers_bound_pauses_the_publisher_until_it_drains() {
    let config = Sim::quiet().client_publish(true).max_queue_frames(4);
    let mut sim = Sim::new(config);
    let sender = sim.open_path("/");
    let slow = sim.open_path("/");
    let elsewhere = sim.open_path("/");
    sim.subscribe(sender, "room");
    sim.subscribe(slow, "room");
    sim.subscribe(elsewhere, "other");
    sim.stalled.insert(slow);
    sim.take_events();
    let say = r#"{"type":"publish","channel":"room","event":"say","data":"hi"}"#;
    for _ in 0..4 {
        sim.send(sender, say);
    }
    assert!(sim.paused.is_empty(), "at the bound is not behind");
    assert!(!sim.hub.any_behind());
    // What the driver had already read is taken, past the bound: nothing read is lost.
    for _ in 0..3 {
        sim.send(sender, say);
    }
    assert_eq!(sim.paused, [sender].into(), "the publisher is paused, once");
    assert!(
        sim.hub.any_behind(),
        "a driver's write reports go at once now"
    );
    assert_eq!(sim.hub.queue_depth(slow).map(|d| d.frames), Some(7));
    assert!(sim.hub.is_connected(slow), "the reader is not cut for it");
    assert_eq!(sim.hub.counters().reads_paused, 1);
    assert!(!sim.hub.can_take(&Target::room("/", "room")));
    assert!(sim.hub.can_take(&Target::room("/", "other")));
    assert!(!sim.hub.can_take(&Target::all()));
    // A publish elsewhere pauses nobody.
    sim.send(
        elsewhere,
        r#"{"type":"publish","channel":"other","event":"say","data":"x"}"#,
    );
    assert_eq!(sim.paused, [sender].into());
    // Written down to 3 of 4: within the bound but not yet drained to half of it.
    sim.hub.handle(
        sim.now,
        Input::Written {
            conn: slow,
            frames: 4,
        },
    );
    sim.drain();
    assert_eq!(
        sim.paused,
        [sender].into(),
        "still behind until half the bound"
    );
    sim.hub.handle(
        sim.now,
        Input::Written {
            conn: slow,
            frames: 1,
        },
    );
    sim.drain();
    assert!(
        sim.paused.is_empty(),
        "drained to 2 of 4: the publisher reads again"
    );
    assert!(sim.hub.can_take(&Target::all()));
    assert!(!sim.hub.any_behind());
    let events = sim.take_events();
    let published = events
        .iter()
        .filter(|e| matches!(e, Event::Published { delivery, .. } if delivery.refused.is_empty()))
        .count();
    assert_eq!(published, 8, "every publish reached every member");
}

/// A publisher and a stalled reader in `room`, under a bound of 2 frames: three publishes
/// take the reader past it, and the publisher is paused.
fn publisher_paused_by_a_stalled_reader(config: Config) -> (Sim, ConnId, ConnId) {
    let mut sim = Sim::new(config.client_publish(true).max_queue_frames(2));
    let sender = sim.open_path("/");
    let stalled = sim.open_path("/");
    sim.subscribe(sender, "room");
    sim.subscribe(stalled, "room");
    sim.stalled.insert(stalled);
    for _ in 0..3 {
        sim.send(
            sender,
            r#"{"type":"publish","channel":"room","event":"say","data":"hi"}"#,
        );
    }
    assert_eq!(sim.paused, [sender].into());
    (sim, sender, stalled)
}

#[test]
fn a_paused_publisher_is_resumed_when_the_reader_behind_is_cut() {
    let timeout = Duration::from_secs(2);
    let (mut sim, sender, stalled) =
        publisher_paused_by_a_stalled_reader(Sim::quiet().slow_consumer_timeout(timeout));
    sim.advance(timeout - Duration::from_millis(1));
    assert!(sim.hub.is_connected(stalled), "not before the timeout");
    sim.advance(Duration::from_millis(1));
    let (code, reason) = sim.close_of(stalled).expect("cut");
    assert_eq!(code, CloseCode::SLOW_CONSUMER);
    assert!(reason.contains("2000 ms"), "{reason}");
    assert!(sim.paused.is_empty(), "the publisher reads again");
    assert!(sim.hub.is_connected(sender));
    let fp = sim.hub.footprint();
    assert_eq!((fp.behind, fp.paused), (0, 0));
}

#[test]
fn a_paused_publisher_is_not_closed_for_its_silence() {
    let config = Sim::quiet()
        .ping_period(Some(Duration::from_secs(1)))
        .pong_wait(Duration::from_secs(3))
        .slow_consumer_timeout(Duration::from_secs(60));
    let (mut sim, sender, stalled) = publisher_paused_by_a_stalled_reader(config);
    for _ in 0..10 {
        sim.advance(Duration::from_secs(1));
        // The stalled reader still answers pings; the paused publisher is not read.
        sim.send_frame(stalled, Frame::Pong(Bytes::new()));
    }
    assert!(
        sim.hub.is_connected(sender),
        "its silence is the hub's doing"
    );
    sim.unstall(stalled);
    assert!(sim.paused.is_empty());
    sim.advance(Duration::from_secs(4));
    assert!(
        !sim.hub.is_connected(sender),
        "once read again, silence counts"
    );
}

#[test]
fn a_rate_limit_drops_and_answers_the_excess_then_closes_a_flood() {
    let mut sim = Sim::new(
        Sim::quiet()
            .max_inbound_rate(Some(5))
            .rate_window(Duration::from_secs(1))
            .max_errors(3),
    );
    let c = sim.open_path("/");
    for _ in 0..5 {
        sim.send(c, r#"{"type":"ping"}"#);
    }
    assert_eq!(sim.of_type(c, "pong").len(), 5, "within the limit");
    sim.send(c, r#"{"type":"ping"}"#);
    assert_eq!(sim.of_type(c, "pong").len(), 5, "the excess is dropped");
    let errors = sim.of_type(c, "error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "too_many_requests");
    sim.advance(Duration::from_secs(1));
    sim.send(c, r#"{"type":"ping"}"#);
    assert_eq!(sim.of_type(c, "pong").len(), 6, "a new window admits again");
    assert!(sim.hub.is_connected(c));
    // WebSocket pings count too: a flood of them ends in 4002.
    for _ in 0..10 {
        sim.hub.handle(
            sim.now,
            tidings_core::Input::Frame {
                conn: c,
                frame: tidings_core::Frame::Ping(Default::default()),
            },
        );
    }
    sim.drain();
    let (code, _) = sim.close_of(c).expect("closed");
    assert_eq!(code, CloseCode::RATE_LIMITED);
}

#[test]
fn a_paused_publisher_waits_for_every_reader_behind_in_its_room() {
    let (mut sim, sender, first) = publisher_paused_by_a_stalled_reader(Sim::quiet());
    let second = sim.open_path("/");
    sim.subscribe(second, "room");
    sim.stalled.insert(second);
    for _ in 0..3 {
        let _ = sim
            .hub
            .emit(sim.now, second, tidings_core::Message::text("t", "x"));
    }
    sim.drain();
    assert!(
        !sim.hub.can_take(&Target::conn(second)),
        "both readers are behind"
    );
    sim.unstall(first);
    assert_eq!(
        sim.paused,
        [sender].into(),
        "the second reader is still behind"
    );
    sim.unstall(second);
    assert!(sim.paused.is_empty());
}
