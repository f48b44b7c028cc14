//! Backpressure: bounded per-connection queues (frames and bytes, in flight included), the
//! slow-consumer timeout and policies, volatile drops, the write window, and queue depth.

use std::time::Duration;

use crate::common::Sim;
use tidings_core::{Chunk, CloseCode, Event, Initiator, Message, SlowConsumerPolicy, Target};

fn room_of_three(
    config: tidings_core::Config,
) -> (Sim, tidings_core::ConnId, [tidings_core::ConnId; 2]) {
    let mut sim = Sim::new(config);
    let slow = sim.open_path("/");
    let fast = [sim.open_path("/"), sim.open_path("/")];
    for c in [slow, fast[0], fast[1]] {
        sim.subscribe(c, "r");
    }
    sim.clear();
    sim.stalled.insert(slow);
    (sim, slow, fast)
}

/// Publishes the number `i` to room `r`, then drains the outputs.
fn publish_number(sim: &mut Sim, i: u64) -> tidings_core::Delivery {
    let message = Message::json("n", i.into());
    let delivery = sim
        .hub
        .publish(sim.now, Target::room("/", "r"), message)
        .expect("publish");
    sim.drain();
    delivery
}

fn numbers(sim: &Sim, c: tidings_core::ConnId) -> Vec<u64> {
    sim.of_type(c, "event")
        .iter()
        .filter_map(|e| e["data"].as_u64())
        .collect()
}

#[test]
fn a_reader_behind_for_the_slow_consumer_timeout_is_cut_and_nobody_else_misses_anything() {
    let timeout = Duration::from_secs(3);
    let config = Sim::quiet()
        .max_queue_frames(8)
        .slow_consumer_timeout(timeout);
    let (mut sim, slow, fast) = room_of_three(config);
    for i in 0..9u64 {
        let d = publish_number(&mut sim, i);
        assert_eq!(d.queued, 3, "message {i}: past the bound is still queued");
    }
    assert!(!sim.hub.can_take(&Target::room("/", "r")), "9 of 8: behind");
    sim.advance(timeout - Duration::from_millis(1));
    assert!(sim.hub.is_connected(slow), "not cut before the timeout");
    sim.advance(Duration::from_millis(1));
    let (code, reason) = sim.close_of(slow).expect("closed");
    assert_eq!(code, CloseCode::SLOW_CONSUMER);
    assert!(
        reason.contains("too slowly") && reason.contains("3000 ms"),
        "{reason}"
    );
    assert!(sim.events.iter().any(|e| matches!(e, Event::Disconnected { conn, code: CloseCode::SLOW_CONSUMER, initiator: Initiator::Server, .. } if *conn == slow)));
    assert!(sim.hub.can_take(&Target::room("/", "r")));
    for i in 9..100u64 {
        let _ = publish_number(&mut sim, i);
    }
    // What the slow reader got is a prefix, in order: nothing skipped silently.
    assert_eq!(numbers(&sim, slow), (0..9).collect::<Vec<_>>());
    for c in fast {
        assert_eq!(numbers(&sim, c), (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn a_reader_that_drains_to_half_its_bound_in_time_is_not_cut() {
    let timeout = Duration::from_secs(3);
    let config = Sim::quiet()
        .max_queue_frames(8)
        .slow_consumer_timeout(timeout);
    let (mut sim, slow, _) = room_of_three(config);
    for i in 0..12u64 {
        let _ = publish_number(&mut sim, i);
    }
    sim.advance(Duration::from_secs(2));
    // Its writer catches up for a moment (down to 4 of 8), then stalls again.
    sim.hub.handle(
        sim.now,
        tidings_core::Input::Written {
            conn: slow,
            frames: 8,
        },
    );
    sim.drain();
    assert!(
        sim.hub.can_take(&Target::room("/", "r")),
        "drained to half: not behind"
    );
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.hub.is_connected(slow),
        "the timer stopped when it drained"
    );
    for i in 12..17u64 {
        let _ = publish_number(&mut sim, i);
    }
    sim.advance(timeout);
    assert_eq!(
        sim.close_of(slow).map(|c| c.0),
        Some(CloseCode::SLOW_CONSUMER),
        "behind again for a whole timeout"
    );
}

#[test]
fn a_reader_at_twice_its_bound_is_cut_at_once_by_publishes_that_did_not_wait() {
    let (mut sim, slow, fast) = room_of_three(Sim::quiet().max_queue_frames(8));
    let mut disconnected_at = None;
    for i in 0..100u64 {
        let d = publish_number(&mut sim, i);
        if d.disconnected == [slow] {
            disconnected_at = Some(i);
        }
    }
    assert_eq!(
        disconnected_at,
        Some(16),
        "the 17th message overflows 16 frames"
    );
    let (code, reason) = sim.close_of(slow).expect("closed");
    assert_eq!(code, CloseCode::SLOW_CONSUMER);
    assert!(reason.contains("overflow"), "{reason}");
    assert_eq!(numbers(&sim, slow), (0..16).collect::<Vec<_>>());
    for c in fast {
        assert_eq!(numbers(&sim, c), (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn the_byte_bound_applies_too() {
    let (mut sim, slow, _) = room_of_three(Sim::quiet().max_queue_bytes(1000));
    let big = "x".repeat(300);
    for n in 0..7 {
        if n == 4 {
            assert!(
                sim.hub.is_connected(slow),
                "1200 of 1000 bytes: behind, not cut"
            );
            assert!(!sim.hub.can_take(&Target::room("/", "r")));
        }
        let _ = sim.hub.publish(
            sim.now,
            Target::room("/", "r"),
            Message::text("t", big.as_str()),
        );
        sim.drain();
    }
    assert_eq!(
        sim.close_of(slow).map(|c| c.0),
        Some(CloseCode::SLOW_CONSUMER)
    );
}

#[test]
fn volatile_messages_are_dropped_for_a_full_queue_instead() {
    let (mut sim, slow, fast) = room_of_three(Sim::quiet().max_queue_frames(4));
    for i in 0..10u64 {
        let d = sim
            .hub
            .publish(
                sim.now,
                Target::room("/", "r"),
                Message::json("n", i.into()).volatile(),
            )
            .expect("publish");
        assert_eq!(d.dropped, usize::from(i >= 4), "message {i}");
        sim.drain();
    }
    assert!(sim.hub.is_connected(slow));
    assert_eq!(sim.hub.counters().dropped, 6);
    assert_eq!(numbers(&sim, fast[0]).len(), 10);
    // Once it catches up, it receives again.
    sim.unstall(slow);
    let _ = sim.hub.publish(
        sim.now,
        Target::room("/", "r"),
        Message::json("n", 99.into()).volatile(),
    );
    sim.drain();
    assert_eq!(numbers(&sim, slow), vec![0, 1, 2, 3, 99]);
}

#[test]
fn the_refuse_policy_keeps_the_reader_and_reports_the_refusal() {
    let (mut sim, slow, fast) = room_of_three(
        Sim::quiet()
            .max_queue_frames(2)
            .slow_consumer(SlowConsumerPolicy::Refuse),
    );
    let mut refused = 0;
    for i in 0..7u64 {
        let d = publish_number(&mut sim, i);
        refused += d.refused.iter().filter(|&&c| c == slow).count();
        sim.drain();
    }
    assert_eq!(refused, 3);
    assert!(sim.hub.is_connected(slow));
    assert_eq!(sim.hub.counters().refused, 3);
    assert_eq!(numbers(&sim, fast[1]).len(), 7);
    // A direct emit with ack to a full queue is refused as an error.
    assert_eq!(
        sim.hub
            .emit_with_ack(sim.now, slow, Message::text("q", "?"), None),
        Err(tidings_core::Error::QueueFull(slow))
    );
}

#[test]
fn queue_depth_counts_queued_and_unwritten_frames() {
    let mut sim = Sim::new(Sim::quiet().write_window(2));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..5 {
        let _ = sim.hub.emit(sim.now, c, Message::text("t", "abc"));
    }
    sim.drain();
    let depth = sim.hub.queue_depth(c).expect("depth");
    assert_eq!(depth.frames, 5);
    assert!(depth.bytes > 5 * 3);
    assert_eq!(
        sim.frames[&c].len(),
        2,
        "the write window holds the rest in the core"
    );
    sim.unstall(c); // reports 2 written: two more go out, and so on as the driver reports
    assert_eq!(sim.frames[&c].len(), 5);
    assert_eq!(sim.hub.queue_depth(c).map(|d| d.frames), Some(0));
}

#[test]
fn a_client_that_reads_no_replies_is_paused_then_closed_whatever_the_policy() {
    let timeout = Duration::from_secs(2);
    let mut sim = Sim::new(
        Sim::quiet()
            .max_queue_frames(4)
            .slow_consumer_timeout(timeout)
            .slow_consumer(SlowConsumerPolicy::Refuse),
    );
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..10 {
        sim.send(c, r#"{"type":"ping"}"#);
    }
    // Answers are never dropped: the fifth is past the bound, and the client is not read
    // until it reads them (the driver had already read the other five).
    assert_eq!(sim.paused, [c].into());
    assert_eq!(sim.hub.queue_depth(c).map(|d| d.frames), Some(10));
    sim.advance(timeout);
    assert_eq!(sim.close_of(c).map(|c| c.0), Some(CloseCode::SLOW_CONSUMER));
    assert!(sim.paused.is_empty());
}

#[test]
fn connections_take_turns_one_frame_each() {
    let mut sim = Sim::new(Sim::quiet());
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    // All of a's frames first: a fair hub still alternates, one frame per turn, because each
    // connection waits on the ready list once, not once per frame.
    for conn in [a, b] {
        for i in 0..3 {
            let _ = sim
                .hub
                .emit(sim.now, conn, Message::text("t", i.to_string()));
        }
    }
    // Drain by hand, reporting each write at once as a fast driver does: the order shows
    // whether a connection is ever queued twice for its turn.
    let mut order = Vec::new();
    while let Some(out) = sim.hub.poll_output() {
        if let tidings_core::Output::Transmit { conn, .. } = out {
            order.push(if conn == a { 'a' } else { 'b' });
            sim.hub
                .handle(sim.now, tidings_core::Input::Written { conn, frames: 1 });
        }
    }
    assert_eq!(order.iter().collect::<String>(), "ababab");
}

#[test]
fn poll_transmits_hands_out_a_connection_at_a_time_within_the_window_in_order() {
    let mut sim = Sim::new(Sim::quiet().write_window(3));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    for conn in [a, b] {
        for i in 0..5 {
            let _ = sim
                .hub
                .emit(sim.now, conn, Message::text("t", i.to_string()));
        }
    }
    let mut frames = Vec::new();
    assert_eq!(sim.hub.poll_transmits(&mut frames), Some(a));
    assert_eq!(frames.len(), 3, "the write window");
    assert_eq!(sim.hub.poll_transmits(&mut frames), Some(b));
    assert_eq!(frames.len(), 6, "appended");
    assert_eq!(
        sim.hub.poll_transmits(&mut frames),
        None,
        "both windows are full"
    );
    let texts: Vec<&str> = frames
        .iter()
        .flat_map(Chunk::frames)
        .filter_map(|f| f.as_text())
        .collect();
    assert!(texts[0].contains(r#""data":"0""#) && texts[2].contains(r#""data":"2""#));
    sim.hub
        .handle(sim.now, tidings_core::Input::Written { conn: a, frames: 3 });
    frames.clear();
    // An event waits first: poll_transmits gives way to poll_output.
    sim.hub
        .close(sim.now, a, CloseCode::NORMAL, "bye")
        .expect("close");
    assert_eq!(sim.hub.poll_transmits(&mut frames), Some(a));
    assert_eq!(frames.len(), 2, "the rest of a's queue");
    assert_eq!(
        sim.hub.poll_transmits(&mut frames),
        None,
        "the close and its events come before more frames"
    );
    assert!(matches!(
        sim.hub.poll_output(),
        Some(tidings_core::Output::Close { conn, .. }) if conn == a
    ));
    let counters = sim.hub.counters();
    let bytes: usize = frames
        .iter()
        .flat_map(Chunk::frames)
        .map(|f| f.len())
        .sum::<usize>()
        * 8
        / 2;
    assert_eq!(counters.frames_out, 8);
    assert_eq!(counters.bytes_out, bytes as u64, "8 frames of one size");
}

#[test]
fn a_closing_connection_closes_after_its_last_frame_not_after_a_window() {
    let mut sim = Sim::new(Sim::quiet().write_window(2));
    let c = sim.open_path("/");
    for i in 0..5 {
        let _ = sim.hub.emit(sim.now, c, Message::text("t", i.to_string()));
    }
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "bye")
        .expect("close");
    let mut frames = Vec::new();
    for expected in [2, 2, 1] {
        frames.clear();
        assert_eq!(sim.hub.poll_transmits(&mut frames), Some(c));
        assert_eq!(frames.len(), expected);
        let closed = std::iter::from_fn(|| sim.hub.poll_output())
            .any(|o| matches!(o, tidings_core::Output::Close { .. }));
        assert_eq!(
            closed,
            expected == 1,
            "the close follows the last frame only"
        );
        sim.hub.handle(
            sim.now,
            tidings_core::Input::Written {
                conn: c,
                frames: expected,
            },
        );
    }
}

#[test]
fn can_take_asks_only_about_the_targets_recipients() {
    let mut sim = Sim::new(Sim::quiet().max_queue_frames(2));
    let slow = sim.open_path("/");
    let other = sim.open_path("/");
    // Someone in another namespace, so that namespace exists.
    let _games = sim.open(tidings_core::ConnectionInfo::new("/").namespace("/games"));
    sim.stalled.insert(slow);
    assert!(sim.hub.can_take(&Target::all()), "nobody is behind");
    for _ in 0..3 {
        let _ = sim.hub.emit(sim.now, slow, Message::text("t", "x"));
    }
    sim.drain();
    assert!(!sim.hub.can_take(&Target::conn(slow)));
    assert!(sim.hub.can_take(&Target::conn(other)));
    assert!(!sim.hub.can_take(&Target::namespace("/")));
    assert!(sim.hub.can_take(&Target::namespace("/games")));
    assert!(sim.hub.can_take(&Target::namespace("/nobody")));
    assert!(!sim.hub.can_take(&Target::all()));
}
