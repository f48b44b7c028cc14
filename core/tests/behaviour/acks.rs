//! Acks both ways: server emit-with-ack (one client and broadcast) resolving exactly once as a
//! reply, a timeout or a close; client ack requests answered through the hub; bounds; bad ids.

use std::time::Duration;

use crate::common::Sim;
use serde_json::json;
use tidings_core::{AckId, AckOutcome, CloseCode, Error, Event, Input, Message, Payload, Target};

fn ack_events(sim: &mut Sim) -> Vec<(tidings_core::ConnId, AckId, AckOutcome)> {
    sim.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Ack { conn, ack, outcome } => Some((conn, ack, outcome)),
            _ => None,
        })
        .collect()
}

/// Emits a question to `conn` asking for an ack with the default deadline.
fn ask(sim: &mut Sim, conn: tidings_core::ConnId) -> AckId {
    sim.hub
        .emit_with_ack(sim.now, conn, Message::text("q", "?"), None)
        .expect("emit")
}

#[test]
fn emit_with_ack_resolves_once_with_the_reply() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    let ack = ask(&mut sim, c);
    sim.drain();
    let frame = &sim.of_type(c, "event")[0];
    assert_eq!(frame["ack"], ack.0);
    let reply = format!(r#"{{"type":"ack","ack":{},"data":{{"ok":true}}}}"#, ack.0);
    sim.send(c, &reply);
    sim.send(c, &reply); // a duplicate is ignored
    sim.advance(Duration::from_secs(10)); // and no timeout follows
    assert_eq!(
        ack_events(&mut sim),
        vec![(
            c,
            ack,
            AckOutcome::Reply(Payload::Json(json!({"ok": true})))
        )]
    );
    let counters = sim.hub.counters();
    assert_eq!(
        (
            counters.acks_replied,
            counters.acks_unknown,
            counters.acks_timed_out
        ),
        (1, 1, 0)
    );
    assert_eq!(sim.hub.footprint().pending_acks, 0);
    assert!(sim.hub.is_connected(c), "a duplicate ack is not an error");
}

#[test]
fn an_unanswered_ack_times_out_at_its_deadline() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    let default = sim
        .hub
        .emit_with_ack(sim.now, c, Message::text("q", "?"), None)
        .expect("emit");
    let short = sim
        .hub
        .emit_with_ack(
            sim.now,
            c,
            Message::text("q", "?"),
            Some(Duration::from_secs(1)),
        )
        .expect("emit");
    sim.drain();
    assert_eq!(
        sim.hub.poll_timeout(),
        Some(sim.now + Duration::from_secs(1))
    );
    sim.advance(Duration::from_millis(999));
    assert!(ack_events(&mut sim).is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(ack_events(&mut sim), vec![(c, short, AckOutcome::TimedOut)]);
    sim.advance(Duration::from_secs(4)); // default ack_timeout is 5 s
    assert_eq!(
        ack_events(&mut sim),
        vec![(c, default, AckOutcome::TimedOut)]
    );
    assert_eq!(sim.hub.counters().acks_timed_out, 2);
    // A late reply is counted and ignored.
    sim.send(c, &format!(r#"{{"type":"ack","ack":{}}}"#, short.0));
    assert!(ack_events(&mut sim).is_empty());
    assert_eq!(sim.hub.counters().acks_unknown, 1);
    assert_eq!(sim.hub.footprint().timers, 0);
}

#[test]
fn broadcast_acks_resolve_per_recipient() {
    let mut sim = Sim::new(Sim::quiet());
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.subscribe(a, "r");
    sim.subscribe(b, "r");
    sim.take_events();
    let (ack, d) = sim
        .hub
        .publish_with_ack(
            sim.now,
            Target::room("/", "r"),
            Message::text("poll", "?"),
            None,
        )
        .expect("publish");
    assert_eq!(d.queued, 2);
    sim.drain();
    assert_eq!(sim.of_type(a, "event")[0]["ack"], ack.0);
    assert_eq!(sim.of_type(b, "event")[0]["ack"], ack.0);
    sim.send(
        a,
        &format!(r#"{{"type":"ack","ack":{},"data":"yes"}}"#, ack.0),
    );
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        ack_events(&mut sim),
        vec![
            (a, ack, AckOutcome::Reply(Payload::Json(json!("yes")))),
            (b, ack, AckOutcome::TimedOut)
        ]
    );
}

#[test]
fn a_closed_connection_fails_its_pending_acks_at_once() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    let ack = ask(&mut sim, c);
    sim.drain();
    sim.hub.handle(
        sim.now,
        Input::PeerClosed {
            conn: c,
            code: Some(CloseCode::NORMAL),
            reason: "bye".into(),
        },
    );
    sim.drain();
    assert_eq!(ack_events(&mut sim), vec![(c, ack, AckOutcome::Closed)]);
    sim.advance(Duration::from_secs(10));
    assert!(ack_events(&mut sim).is_empty(), "resolved once");
    assert_eq!(sim.hub.counters().acks_failed, 1);
}

#[test]
fn pending_acks_are_bounded() {
    let mut sim = Sim::new(Sim::quiet().max_pending_acks(2));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.subscribe(a, "r");
    sim.subscribe(b, "r");
    for _ in 0..2 {
        sim.hub
            .emit_with_ack(sim.now, a, Message::text("q", "?"), None)
            .expect("emit");
    }
    assert_eq!(
        sim.hub
            .emit_with_ack(sim.now, a, Message::text("q", "?"), None),
        Err(Error::TooManyPendingAcks { conn: a, limit: 2 })
    );
    // A broadcast skips the full recipient and says so.
    let (_, d) = sim
        .hub
        .publish_with_ack(
            sim.now,
            Target::room("/", "r"),
            Message::text("q", "?"),
            None,
        )
        .expect("publish");
    assert_eq!((d.queued, d.refused), (1, vec![a]));
}

#[test]
fn client_ack_requests_are_answered_through_the_hub_once() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.take_events();
    sim.send(c, r#"{"type":"event","event":"save","data":1,"ack":41}"#);
    assert!(matches!(
        &sim.take_events()[..],
        [Event::Message { ack: Some(41), .. }]
    ));
    sim.hub
        .reply_ack(sim.now, c, 41, Payload::Json(json!({"saved": true})))
        .expect("reply");
    sim.drain();
    assert_eq!(
        sim.of_type(c, "ack"),
        vec![json!({"type":"ack","ack":41,"data":{"saved":true}})]
    );
    assert_eq!(
        sim.hub
            .reply_ack(sim.now, c, 41, Payload::Json(json!(null))),
        Err(Error::UnknownAck { conn: c, ack: 41 })
    );
    assert_eq!(
        sim.hub.reply_ack(sim.now, c, 7, Payload::Json(json!(null))),
        Err(Error::UnknownAck { conn: c, ack: 7 })
    );
}

#[test]
fn client_ack_requests_are_bounded_and_unique() {
    let mut sim = Sim::new(Sim::quiet().max_pending_acks(2));
    let c = sim.open_path("/");
    sim.send(c, r#"{"type":"event","event":"e","ack":1}"#);
    sim.send(c, r#"{"type":"event","event":"e","ack":1}"#);
    sim.send(c, r#"{"type":"event","event":"e","ack":2}"#);
    sim.send(c, r#"{"type":"event","event":"e","ack":3}"#);
    let codes: Vec<_> = sim
        .of_type(c, "error")
        .iter()
        .map(|e| e["code"].clone())
        .collect();
    assert_eq!(codes, [json!("duplicate_ack"), json!("too_many_acks")]);
    let messages = sim
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(messages, 2);
}

/// An answer to a client's ack request is never dropped: past the queue's bound it is still
/// queued, and the client is not read until it reads its answers.
#[test]
fn a_reply_past_the_bound_is_queued_and_pauses_the_client() {
    let mut sim = Sim::new(Sim::quiet().max_queue_frames(1));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    sim.send(c, r#"{"type":"event","event":"save","ack":1}"#);
    sim.send(c, r#"{"type":"event","event":"save","ack":2}"#);
    let _ = sim
        .hub
        .emit(sim.now, c, Message::text("t", "fills the queue"));
    sim.drain();
    assert!(sim.paused.is_empty());
    assert_eq!(
        sim.hub.reply_ack(sim.now, c, 1, Payload::Json(json!(null))),
        Ok(())
    );
    sim.drain();
    assert_eq!(sim.paused, [c].into());
    assert_eq!(
        sim.hub.reply_ack(sim.now, c, 1, Payload::Json(json!(null))),
        Err(Error::UnknownAck { conn: c, ack: 1 }),
        "answered once"
    );
    sim.unstall(c);
    assert!(sim.paused.is_empty());
    let answers = sim.of_type(c, "ack");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["ack"], json!(1));
}
