//! What a client can match its requests' answers by (a client author's findings): acks that
//! the application leaves unanswered expire, every refusal echoes the request's `ref` and
//! answers its ack, the server's joins are announced, 4003 is sent, a rate-limited close
//! still delivers the answers to what was accepted, and ack numbers stay within 2^53 - 1.

use std::time::Duration;

use crate::common::Sim;
use serde_json::{json, Value};
use tidings_core::{CloseCode, ConnId, Error, Event, Payload};

/// The acked events the application was given, as (conn, ack).
fn acked_messages(sim: &mut Sim) -> Vec<(ConnId, u64)> {
    sim.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message {
                conn,
                ack: Some(ack),
                ..
            } => Some((conn, ack)),
            _ => None,
        })
        .collect()
}

fn event_with_ack(ack: u64) -> String {
    format!(r#"{{"type":"event","event":"save","ack":{ack}}}"#)
}

#[test]
fn an_ack_the_application_never_answers_expires_and_frees_its_slot() {
    let mut sim = Sim::new(Sim::quiet().max_inbound_rate(None));
    let c = sim.open_path("/");
    for ack in 1..=128 {
        sim.send(c, &event_with_ack(ack));
    }
    assert_eq!(acked_messages(&mut sim).len(), 128);
    sim.send(c, &event_with_ack(129));
    let refused = sim.of_type(c, "error");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], "too_many_acks");
    assert_eq!(refused[0]["ack"], 129, "the refusal answers the request");

    sim.advance(Duration::from_secs(10)); // the default answer_timeout
    let answers = sim.of_type(c, "ack");
    assert_eq!(
        answers.len(),
        128,
        "each unanswered request is answered once"
    );
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["ack"], i as u64 + 1);
        assert_eq!(a["error"]["code"], "no_answer");
        assert!(a["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("10000 ms")));
        assert!(a.get("data").is_none());
    }
    assert_eq!(sim.hub.counters().answers_timed_out, 128);
    // The slots are free again; a late answer is refused, not sent.
    sim.send(c, &event_with_ack(130));
    assert_eq!(acked_messages(&mut sim), vec![(c, 130)]);
    assert!(matches!(
        sim.hub.reply_ack(sim.now, c, 1, Payload::Json(json!(1))),
        Err(Error::UnknownAck { ack: 1, .. })
    ));
    // An answered one does not expire again.
    sim.hub
        .reply_ack(sim.now, c, 130, Payload::Json(json!("ok")))
        .expect("pending");
    sim.drain();
    sim.advance(Duration::from_secs(20));
    assert_eq!(sim.of_type(c, "ack").len(), 129);
    assert_eq!(sim.hub.counters().answers_timed_out, 128);
}

#[test]
fn refusals_echo_the_ref_and_answer_the_ack_whenever_they_can_be_read() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    let cases: [(&str, &str, Option<u64>); 6] = [
        // A field of the wrong type: the id is still readable.
        (
            r#"{"type":"subscribe","channel":5,"id":"r12"}"#,
            "malformed",
            None,
        ),
        // An acked event refused: its ack is answered by the error.
        (
            r#"{"type":"event","event":"","id":"e1","ack":3}"#,
            "invalid_name",
            Some(3),
        ),
        (
            r#"{"type":"event","data":1,"id":"e2","ack":4}"#,
            "missing_field",
            Some(4),
        ),
        (
            r#"{"type":"event","event":7,"id":"e3","ack":5}"#,
            "malformed",
            Some(5),
        ),
        // An `ack` frame's number is the server's request, not the client's: not echoed.
        (r#"{"type":"ack","ack":"x","id":"a1"}"#, "malformed", None),
        (
            r#"{"type":"teleport","id":"t1","ack":6}"#,
            "unknown_type",
            None,
        ),
    ];
    for (frame, _, _) in cases {
        sim.send(c, frame);
    }
    let errors = sim.of_type(c, "error");
    assert_eq!(errors.len(), cases.len());
    for ((frame, code, ack), e) in cases.iter().zip(&errors) {
        let id: Value = serde_json::from_str::<Value>(frame).expect("json")["id"].clone();
        assert_eq!(e["code"], *code, "{frame}");
        assert_eq!(e["ref"], id, "{frame}");
        assert_eq!(e.get("ack").and_then(Value::as_u64), *ack, "{frame}");
    }
    // A duplicate's number belongs to the request still pending: the error leaves it alone.
    sim.clear();
    sim.send(c, r#"{"type":"event","event":"e","ack":9}"#);
    sim.send(c, r#"{"type":"event","event":"e","ack":9,"id":"d"}"#);
    let errors = sim.of_type(c, "error");
    assert_eq!(errors[0]["code"], "duplicate_ack");
    assert_eq!(errors[0]["ref"], "d");
    assert!(errors[0].get("ack").is_none());
    // Binary frames too.
    sim.send_frame(
        c,
        tidings_core::Frame::Binary(bytes::Bytes::from_static(
            b"{\"type\":\"event\",\"event\":\"\",\"id\":\"b1\",\"ack\":11}\n\x00",
        )),
    );
    let e = sim.of_type(c, "error").pop().expect("error");
    assert_eq!(
        (e["ref"].clone(), e["ack"].clone()),
        (json!("b1"), json!(11))
    );
}

#[test]
fn application_errors_answer_the_ack_or_carry_the_ref() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.send(c, r#"{"type":"event","event":"buy","id":"r1","ack":1}"#);
    sim.send(c, r#"{"type":"event","event":"buy","id":"r2"}"#);
    sim.hub
        .answer_error(sim.now, c, Some("r1"), Some(1), "sold_out", "none left")
        .expect("pending ack");
    sim.hub
        .answer_error(sim.now, c, Some("r2"), None, "sold_out", "none left")
        .expect("open");
    sim.drain();
    let frames = sim.json(c);
    assert_eq!(
        frames,
        vec![
            json!({"type":"ack","ack":1,"error":{"code":"sold_out","message":"none left"}}),
            json!({"type":"event","event":"error","ref":"r2",
                   "data":{"code":"sold_out","message":"none left"}}),
        ]
    );
    // The ack is answered once: neither its deadline nor a second answer sends more.
    assert!(sim
        .hub
        .reply_ack(sim.now, c, 1, Payload::Json(json!(1)))
        .is_err());
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.json(c).len(), 2);
}

#[test]
fn server_joins_and_leaves_are_announced_and_pinned_ones_cannot_be_left() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.subscribe(c, "news");
    assert!(sim.hub.join(c, "game:g1").expect("join"));
    assert!(sim.hub.join_pinned(c, "user:u1").expect("join"));
    assert!(
        !sim.hub.join(c, "game:g1").expect("join"),
        "no second notice"
    );
    sim.drain();
    let subscribed = sim.of_type(c, "subscribed");
    assert_eq!(
        subscribed,
        vec![
            json!({"type":"subscribed","channel":"news","offset":0,"epoch":1}),
            json!({"type":"subscribed","channel":"game:g1","offset":0,"epoch":2,"server":true}),
            json!({"type":"subscribed","channel":"user:u1","offset":0,"epoch":3,"server":true,
                   "pinned":true}),
        ]
    );
    // The client may leave what it joined and what the server joined it to, unless pinned.
    sim.clear();
    sim.send(c, r#"{"type":"unsubscribe","channel":"user:u1","id":"u"}"#);
    sim.send(c, r#"{"type":"unsubscribe","channel":"game:g1"}"#);
    assert_eq!(
        sim.json(c),
        vec![
            json!({"type":"error","code":"unsubscribe_denied","channel":"user:u1","ref":"u",
                   "message":"the application keeps you in this channel"}),
            json!({"type":"unsubscribed","channel":"game:g1"}),
        ]
    );
    assert!(sim.hub.in_room(c, "user:u1"));
    assert!(sim.hub.is_pinned(c, "user:u1"));
    // The application's leave is announced, and ends the pin.
    sim.clear();
    assert!(sim.hub.leave(c, "user:u1").expect("leave"));
    sim.drain();
    assert_eq!(
        sim.json(c),
        vec![json!({"type":"unsubscribed","channel":"user:u1","server":true})]
    );
    assert!(!sim.hub.is_pinned(c, "user:u1"));
    // Pinning a membership the client made tells it so.
    sim.clear();
    assert!(!sim.hub.join_pinned(c, "news").expect("pin"));
    sim.drain();
    assert_eq!(sim.of_type(c, "subscribed")[0]["pinned"], true);
}

#[test]
fn subscriptions_past_the_limit_end_in_4003() {
    let mut sim = Sim::new(Sim::quiet().max_rooms_per_connection(1));
    let c = sim.open_path("/");
    sim.subscribe(c, "a");
    for i in 0..11 {
        sim.subscribe(c, &format!("x{i}"));
    }
    let errors = sim.of_type(c, "error");
    assert_eq!(errors.len(), 11);
    assert!(errors.iter().all(|e| e["code"] == "too_many_subscriptions"));
    let (code, reason) = sim.close_of(c).expect("closed");
    assert_eq!(code, CloseCode::TOO_MANY_SUBSCRIPTIONS);
    assert!(reason.contains("protocol errors"), "{reason}");
    // Other faults still end in 4002.
    let d = sim.open_path("/");
    for _ in 0..11 {
        sim.send(d, "not json");
    }
    assert_eq!(sim.close_of(d).map(|c| c.0), Some(CloseCode::RATE_LIMITED));
}

#[test]
fn a_rate_limited_close_waits_for_the_answers_to_what_was_accepted() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    for ack in 1..=111 {
        sim.send(c, &event_with_ack(ack));
    }
    // 100 accepted, 11 refused unread (each answered), and the 11th refusal closes.
    let accepted = acked_messages(&mut sim);
    assert_eq!(accepted.len(), 100);
    let refused = sim.of_type(c, "error");
    assert_eq!(refused.len(), 11);
    assert!(refused.iter().all(|e| e["code"] == "too_many_requests"));
    let refused_acks: Vec<u64> = refused.iter().filter_map(|e| e["ack"].as_u64()).collect();
    assert_eq!(refused_acks, (101..=111).collect::<Vec<_>>());
    assert_eq!(sim.close_of(c), None, "the close waits for the answers");
    // The application answers after the close began: every answer goes out, then the close.
    sim.advance(Duration::from_millis(100));
    for (conn, ack) in accepted {
        sim.hub
            .reply_ack(sim.now, conn, ack, Payload::Json(json!(ack)))
            .expect("a closing connection takes answers");
    }
    sim.drain();
    let answers = sim.of_type(c, "ack");
    assert_eq!(answers.len(), 100);
    assert!(answers
        .iter()
        .enumerate()
        .all(|(i, a)| a["data"] == i as u64 + 1));
    assert_eq!(sim.close_of(c).map(|c| c.0), Some(CloseCode::RATE_LIMITED));
    // Its close went out after the last answer: the connection is gone.
    assert!(!sim.hub.is_connected(c));
}

#[test]
fn an_unanswered_request_holds_a_close_only_until_its_deadline() {
    let mut sim = Sim::new(Sim::quiet().close_grace(Duration::from_secs(30)));
    let c = sim.open_path("/");
    sim.send(c, &event_with_ack(1));
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "bye")
        .expect("close");
    sim.drain();
    assert_eq!(sim.close_of(c), None);
    sim.advance(Duration::from_secs(10));
    let answers = sim.of_type(c, "ack");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["error"]["code"], "no_answer");
    assert_eq!(sim.close_of(c).map(|c| c.0), Some(CloseCode::NORMAL));
}

#[test]
fn ack_numbers_stop_at_2_pow_53_minus_1() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    sim.send(c, &event_with_ack(9_007_199_254_740_991));
    assert_eq!(acked_messages(&mut sim), vec![(c, 9_007_199_254_740_991)]);
    sim.send(
        c,
        r#"{"type":"event","event":"save","ack":9007199254740992,"id":"big"}"#,
    );
    let e = &sim.of_type(c, "error")[0];
    assert_eq!(e["code"], "malformed");
    assert_eq!(e["ref"], "big");
    assert!(
        e.get("ack").is_none(),
        "a number it cannot hold is not echoed"
    );
    assert!(e["message"]
        .as_str()
        .is_some_and(|m| m.contains("9007199254740991")));
    assert!(acked_messages(&mut sim).is_empty());
}

#[test]
fn a_failed_connection_takes_no_answers() {
    let mut sim = Sim::new(Sim::quiet().error_close_delay(Duration::from_secs(5)));
    let c = sim.open_path("/");
    sim.send(c, &event_with_ack(1));
    sim.hub.handle(
        sim.now,
        tidings_core::Input::TransportError {
            conn: c,
            error: "reset".into(),
        },
    );
    sim.drain();
    // Its state lingers for the close delay, but nothing can reach it any more.
    assert!(matches!(
        sim.hub.reply_ack(sim.now, c, 1, Payload::Json(json!(1))),
        Err(Error::Closing(_))
    ));
    assert!(sim.of_type(c, "ack").is_empty());
}

#[test]
fn a_rate_limited_binary_frame_is_answered_by_its_header() {
    let mut sim = Sim::new(Sim::quiet().max_inbound_rate(Some(1)));
    let c = sim.open_path("/");
    sim.send(c, r#"{"type":"ping"}"#);
    sim.send_frame(
        c,
        tidings_core::Frame::Binary(bytes::Bytes::from_static(
            b"{\"type\":\"event\",\"event\":\"up\",\"id\":\"b\",\"ack\":4}\n\x00\x01",
        )),
    );
    let e = sim.of_type(c, "error").pop().expect("refused");
    assert_eq!(e["code"], "too_many_requests");
    assert_eq!((e["ref"].clone(), e["ack"].clone()), (json!("b"), json!(4)));
}

#[test]
fn a_malformed_frame_echoes_only_an_events_ack_it_can_hold() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    // An `ack` frame's number is the server's own request: not echoed.
    sim.send(c, r#"{"type":"ack","ack":5,"event":9}"#);
    // An event's ack past 2^53 - 1 cannot be echoed as a number the client holds.
    sim.send(c, r#"{"type":"event","event":7,"ack":9007199254740992}"#);
    let errors = sim.of_type(c, "error");
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e["code"] == "malformed" && e.get("ack").is_none()));
}

/// Membership notices are the application's doing, so a connection that reads nothing cannot
/// make them pile up: past twice the bound it is cut as a slow consumer, like a publish that
/// cannot wait.
#[test]
fn membership_notices_to_a_reader_that_reads_nothing_stay_bounded() {
    let mut sim = Sim::new(Sim::quiet().max_queue_frames(4));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..20 {
        let _ = sim.hub.join(c, "room");
        let _ = sim.hub.leave(c, "room");
        sim.drain();
        if let Some(d) = sim.hub.queue_depth(c) {
            assert!(d.frames <= 8, "{d:?}");
        }
    }
    assert_eq!(sim.close_of(c).map(|c| c.0), Some(CloseCode::SLOW_CONSUMER));
}
