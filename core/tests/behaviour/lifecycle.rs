//! Lifecycle: close once with code and reason, graceful flush within the grace, peer closes,
//! transport errors with a delay, graceful shutdown, and tables back to empty.

use std::time::Duration;

use crate::common::Sim;
use tidings_core::{CloseCode, ConnectionInfo, Error, Event, Initiator, Input, Message, Target};

fn disconnects(sim: &Sim) -> Vec<(tidings_core::ConnId, CloseCode, Initiator)> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected {
                conn,
                code,
                initiator,
                ..
            } => Some((*conn, *code, *initiator)),
            _ => None,
        })
        .collect()
}

#[test]
fn close_flushes_queued_frames_then_closes_once() {
    let mut sim = Sim::new(Sim::quiet().write_window(1));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for i in 0..3 {
        let _ = sim.hub.emit(sim.now, c, Message::text("t", i.to_string()));
    }
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "done")
        .expect("close");
    assert_eq!(
        sim.hub.close(sim.now, c, CloseCode::NORMAL, "again"),
        Err(Error::Closing(c))
    );
    assert_eq!(
        sim.hub.emit(sim.now, c, Message::text("t", "late")),
        Err(Error::Closing(c))
    );
    sim.drain();
    assert!(sim.closes.is_empty(), "frames first");
    sim.unstall(c);
    assert_eq!(sim.of_type(c, "event").len(), 3);
    assert_eq!(sim.closes, vec![(c, CloseCode::NORMAL, "done".to_owned())]);
    assert_eq!(
        disconnects(&sim),
        vec![(c, CloseCode::NORMAL, Initiator::Server)]
    );
    // Nothing after the close is transmitted or closed again.
    sim.hub.handle(
        sim.now,
        Input::PeerClosed {
            conn: c,
            code: None,
            reason: String::new(),
        },
    );
    sim.drain();
    assert_eq!(sim.closes.len(), 1);
    assert_eq!(disconnects(&sim).len(), 1);
}

#[test]
fn a_close_that_cannot_flush_is_cut_at_the_grace() {
    let mut sim = Sim::new(
        Sim::quiet()
            .write_window(1)
            .close_grace(Duration::from_secs(2)),
    );
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..3 {
        let _ = sim.hub.emit(sim.now, c, Message::text("t", "x"));
    }
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "done")
        .expect("close");
    sim.drain();
    sim.advance(Duration::from_millis(1999));
    assert!(sim.closes.is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.closes, vec![(c, CloseCode::NORMAL, "done".to_owned())]);
    assert_eq!(sim.hub.footprint().sessions, 0);
}

#[test]
fn a_peer_close_frees_the_connection_without_a_close_output() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open(ConnectionInfo::new("/").name("n"));
    sim.subscribe(c, "r");
    sim.hub.handle(
        sim.now,
        Input::PeerClosed {
            conn: c,
            code: Some(CloseCode(1000)),
            reason: "tab closed".into(),
        },
    );
    sim.drain();
    assert!(sim.closes.is_empty());
    assert!(sim.events.contains(&Event::Disconnected {
        conn: c,
        code: CloseCode::NORMAL,
        reason: "tab closed".into(),
        initiator: Initiator::Peer
    }));
    assert_eq!(
        sim.hub.footprint(),
        tidings_core::Hub::new(Sim::quiet())
            .expect("hub")
            .footprint()
    );
}

#[test]
fn a_transport_error_closes_after_the_configured_delay() {
    let mut sim = Sim::new(Sim::quiet().error_close_delay(Duration::from_secs(3)));
    let c = sim.open(ConnectionInfo::new("/").name("user-1"));
    let _ = sim.hub.emit(sim.now, c, Message::text("t", "x"));
    sim.hub.handle(
        sim.now,
        Input::TransportError {
            conn: c,
            error: "connection reset".into(),
        },
    );
    sim.drain();
    assert!(!sim.hub.is_connected(c));
    assert!(
        !sim.frames.contains_key(&c),
        "nothing is written to a failed transport"
    );
    assert_eq!(
        sim.hub.queue_depth(c).map(|d| d.frames),
        Some(0),
        "its queue is dropped at once"
    );
    assert!(sim.hub.exists("user-1"), "still known during the delay");
    assert_eq!(
        sim.hub.emit(sim.now, c, Message::text("t", "x")),
        Err(Error::Closing(c))
    );
    sim.advance(Duration::from_secs(3));
    assert_eq!(
        sim.closes,
        vec![(c, CloseCode::ABNORMAL, "connection reset".to_owned())]
    );
    assert!(!CloseCode::ABNORMAL.is_sendable());
    assert_eq!(
        disconnects(&sim),
        vec![(c, CloseCode::ABNORMAL, Initiator::Transport)]
    );
    assert!(!sim.hub.exists("user-1"));
}

#[test]
fn a_violation_closes_at_once_with_its_code_and_drops_the_queue() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open(ConnectionInfo::new("/").name("user-1"));
    sim.stalled.insert(c);
    let _ = sim.hub.emit(sim.now, c, Message::text("t", "queued"));
    sim.drain();
    sim.hub.handle(
        sim.now,
        Input::Violation {
            conn: c,
            code: CloseCode::TOO_BIG,
            reason: "message too big".into(),
        },
    );
    sim.drain();
    assert_eq!(
        sim.closes,
        vec![(c, CloseCode::TOO_BIG, "message too big".to_owned())]
    );
    assert_eq!(
        disconnects(&sim),
        vec![(c, CloseCode::TOO_BIG, Initiator::Server)]
    );
    assert!(!sim.hub.is_connected(c));
    assert!(!sim.hub.exists("user-1"), "its name is free at once");
    assert_eq!(sim.hub.poll_timeout(), None, "no timer is left behind");
}

#[test]
fn shutdown_closes_everyone_with_1001_after_their_queues_and_refuses_newcomers() {
    // A window of one frame keeps the slow reader's second frame inside the core.
    let mut sim = Sim::new(
        Sim::quiet()
            .close_grace(Duration::from_secs(5))
            .write_window(1),
    );
    let quick = sim.open_path("/");
    let slow = sim.open_path("/");
    sim.stalled.insert(slow);
    let _ = sim
        .hub
        .publish(sim.now, Target::all(), Message::text("t", "last words"));
    let _ = sim
        .hub
        .publish(sim.now, Target::all(), Message::text("t", "really last"));
    assert!(!sim.hub.is_shutting_down());
    sim.hub.shutdown(sim.now);
    assert!(sim.hub.is_shutting_down());
    sim.drain();
    assert_eq!(
        sim.hub.open(sim.now, ConnectionInfo::new("/")),
        Err(Error::ShuttingDown)
    );
    assert_eq!(
        sim.of_type(quick, "event").len(),
        2,
        "queued frames go out first"
    );
    assert_eq!(
        sim.close_of(quick),
        Some((CloseCode::GOING_AWAY, "server shutting down".into()))
    );
    assert!(
        !sim.events.contains(&Event::ShutdownComplete),
        "the slow one is still flushing"
    );
    sim.unstall(slow);
    assert_eq!(sim.of_type(slow, "event").len(), 2);
    assert_eq!(sim.close_of(slow).map(|c| c.0), Some(CloseCode::GOING_AWAY));
    assert_eq!(
        sim.events
            .iter()
            .filter(|e| **e == Event::ShutdownComplete)
            .count(),
        1
    );
    assert_eq!(sim.hub.poll_timeout(), None, "nothing left running");
}

#[test]
fn shutdown_completes_at_the_grace_even_if_a_reader_never_drains() {
    let mut sim = Sim::new(Sim::quiet().close_grace(Duration::from_secs(5)));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    let _ = sim.hub.emit(sim.now, c, Message::text("t", "x"));
    let _ = sim.hub.emit(sim.now, c, Message::text("t", "x"));
    sim.hub.shutdown(sim.now);
    sim.hub.shutdown(sim.now); // idempotent
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        sim.events
            .iter()
            .filter(|e| **e == Event::ShutdownComplete)
            .count(),
        1
    );
    assert_eq!(sim.hub.footprint().sessions, 0);
}

#[test]
fn shutdown_with_no_connections_completes_at_once() {
    let mut sim = Sim::new(Sim::quiet());
    sim.hub.shutdown(sim.now);
    sim.drain();
    assert_eq!(sim.events, vec![Event::ShutdownComplete]);
}

#[test]
fn footprint_counts_what_waits_to_be_polled() {
    let mut sim = Sim::new(Sim::quiet());
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    let _idle = sim.open_path("/");
    assert_eq!(sim.hub.footprint().pending_outputs, 0);
    let _ = sim.hub.emit(sim.now, a, Message::text("t", "1"));
    let _ = sim.hub.emit(sim.now, a, Message::text("t", "2"));
    let _ = sim.hub.emit(sim.now, b, Message::text("t", "3"));
    sim.hub.join(b, "r").expect("join"); // one event
    assert_eq!(
        sim.hub.footprint().pending_outputs,
        3,
        "two connections with frames, one event"
    );
    sim.drain();
    assert_eq!(sim.hub.footprint().pending_outputs, 0);
}

#[test]
fn every_table_is_empty_once_every_connection_is_gone() {
    let mut sim = Sim::new(tidings_core::Config::default());
    let empty = sim.hub.footprint();
    let ids: Vec<_> = (0..20)
        .map(|i| {
            sim.open(
                ConnectionInfo::new("/")
                    .name(format!("c{i}"))
                    .namespace(if i % 2 == 0 { "/" } else { "/odd" }),
            )
        })
        .collect();
    for (i, &c) in ids.iter().enumerate() {
        sim.subscribe(c, &format!("room{}", i % 3));
        let _ = sim
            .hub
            .emit_with_ack(sim.now, c, Message::text("q", "?"), None);
        sim.send(c, r#"{"type":"event","event":"e","ack":1}"#);
    }
    let _ = sim.hub.publish_batched(
        sim.now,
        Target::room("/", "room0"),
        "b",
        "e",
        1.into(),
        Duration::from_millis(10),
    );
    sim.advance(Duration::from_millis(10));
    for (i, &c) in ids.iter().enumerate() {
        match i % 3 {
            0 => sim.hub.handle(
                sim.now,
                Input::PeerClosed {
                    conn: c,
                    code: None,
                    reason: String::new(),
                },
            ),
            1 => sim.hub.handle(
                sim.now,
                Input::TransportError {
                    conn: c,
                    error: "eof".into(),
                },
            ),
            _ => sim
                .hub
                .close(sim.now, c, CloseCode::NORMAL, "")
                .expect("close"),
        }
        sim.drain();
    }
    // The application's close waits for its answer to the acked event, up to the answer
    // deadline, which answers it.
    sim.advance(Sim::quiet().answer_timeout);
    assert_eq!(sim.hub.footprint(), empty);
    assert_eq!(sim.hub.poll_timeout(), None);
}
