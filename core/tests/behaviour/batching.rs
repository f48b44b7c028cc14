//! Batched publishes: one frame per (target, ident) after the TTL, text variant, cancel,
//! early flush on count and bytes, the pending-batch bound, and flush on shutdown.

use std::time::Duration;

use crate::common::Sim;
use serde_json::json;
use tidings_core::{Error, Target};

const TTL: Duration = Duration::from_millis(50);

fn setup(config: tidings_core::Config) -> (Sim, tidings_core::ConnId) {
    let mut sim = Sim::new(config);
    let c = sim.open_path("/");
    sim.subscribe(c, "doc");
    sim.clear();
    (sim, c)
}

#[test]
fn items_collect_until_the_ttl_then_leave_as_one_frame() {
    let (mut sim, c) = setup(Sim::quiet());
    let room = Target::room("/", "doc");
    for i in 0..3 {
        sim.hub
            .publish_batched(
                sim.now,
                room.clone(),
                "cursors",
                "cursor",
                json!({"x": i}),
                TTL,
            )
            .expect("batch");
        sim.advance(Duration::from_millis(10));
    }
    sim.drain();
    assert!(!sim.frames.contains_key(&c), "nothing before the TTL");
    assert!(sim.hub.batch_pending(&room, "cursors"));
    sim.advance(Duration::from_millis(20)); // 50 ms after the first item
    assert!(!sim.hub.batch_pending(&room, "cursors"));
    let frames = sim.json(c);
    assert_eq!(
        frames,
        vec![
            json!({"type":"batch","event":"cursor","channel":"doc","messages":[{"x":0},{"x":1},{"x":2}]})
        ]
    );
    // The next item starts a new batch.
    sim.hub
        .publish_batched(sim.now, room, "cursors", "cursor", json!(9), TTL)
        .expect("batch");
    sim.advance(TTL);
    assert_eq!(sim.of_type(c, "batch").len(), 2);
    assert_eq!(sim.hub.counters().batches_flushed, 2);
}

#[test]
fn different_idents_batch_apart() {
    let (mut sim, c) = setup(Sim::quiet());
    let room = Target::room("/", "doc");
    sim.hub
        .publish_batched(sim.now, room.clone(), "a", "typing", json!("alice"), TTL)
        .expect("batch");
    sim.hub
        .publish_batched(sim.now, room, "b", "typing", json!("bob"), TTL)
        .expect("batch");
    sim.advance(TTL);
    let mut got: Vec<_> = sim
        .of_type(c, "batch")
        .iter()
        .map(|b| b["messages"].clone())
        .collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!(["alice"]), json!(["bob"])]);
}

#[test]
fn the_text_variant_joins_lines_under_a_header() {
    let (mut sim, c) = setup(Sim::quiet());
    let room = Target::room("/", "doc");
    sim.hub
        .publish_batched_text(sim.now, room.clone(), "log", "log-lines", "first", TTL)
        .expect("batch");
    sim.hub
        .publish_batched_text(sim.now, room.clone(), "log", "log-lines", "second", TTL)
        .expect("batch");
    assert!(matches!(
        sim.hub
            .publish_batched(sim.now, room, "log", "log-lines", json!(1), TTL),
        Err(Error::BatchKindMismatch {
            existing: "text",
            ..
        })
    ));
    // A line break in an item would read as two items: refused, the batch untouched.
    for bad in ["two\nlines", "cr\r"] {
        assert!(matches!(
            sim.hub.publish_batched_text(
                sim.now,
                Target::room("/", "doc"),
                "log",
                "log-lines",
                bad,
                TTL
            ),
            Err(Error::LineBreakInItem)
        ));
    }
    sim.advance(TTL);
    let texts: Vec<_> = sim.frames[&c].iter().filter_map(|f| f.as_text()).collect();
    assert_eq!(texts, vec!["log-lines\nfirst\nsecond"]);
}

#[test]
fn a_cancelled_batch_never_flushes() {
    let (mut sim, c) = setup(Sim::quiet());
    let room = Target::room("/", "doc");
    sim.hub
        .publish_batched(sim.now, room.clone(), "t", "typing", json!(1), TTL)
        .expect("batch");
    assert!(sim.hub.cancel_batch(&room, "t"));
    assert!(!sim.hub.cancel_batch(&room, "t"));
    sim.advance(TTL * 2);
    assert!(!sim.frames.contains_key(&c));
    assert_eq!(sim.hub.footprint().batches, 0);
    assert_eq!(sim.hub.footprint().timers, 0);
}

#[test]
fn a_full_batch_flushes_early() {
    let (mut sim, c) = setup(Sim::quiet().max_batch_items(3).max_batch_bytes(20));
    let room = Target::room("/", "doc");
    for i in 0..3 {
        sim.hub
            .publish_batched(sim.now, room.clone(), "n", "n", json!(i), TTL)
            .expect("batch");
    }
    sim.drain();
    assert_eq!(
        sim.of_type(c, "batch")[0]["messages"],
        json!([0, 1, 2]),
        "flushed at 3 items"
    );
    sim.hub
        .publish_batched(sim.now, room.clone(), "s", "s", json!("0123456789"), TTL)
        .expect("batch");
    sim.drain();
    assert_eq!(sim.of_type(c, "batch").len(), 1);
    sim.hub
        .publish_batched(sim.now, room, "s", "s", json!("0123456789"), TTL)
        .expect("batch");
    sim.drain();
    assert_eq!(sim.of_type(c, "batch").len(), 2, "flushed at 20 bytes");
}

#[test]
fn pending_batches_are_bounded() {
    let (mut sim, _) = setup(Sim::quiet().max_pending_batches(2));
    let room = Target::room("/", "doc");
    sim.hub
        .publish_batched(sim.now, room.clone(), "a", "e", json!(1), TTL)
        .expect("batch");
    sim.hub
        .publish_batched(sim.now, room.clone(), "b", "e", json!(1), TTL)
        .expect("batch");
    sim.hub
        .publish_batched(sim.now, room.clone(), "a", "e", json!(2), TTL)
        .expect("same key is fine");
    assert_eq!(
        sim.hub
            .publish_batched(sim.now, room, "c", "e", json!(1), TTL),
        Err(Error::TooManyBatches { limit: 2 })
    );
}

#[test]
fn shutdown_flushes_pending_batches_before_closing() {
    let (mut sim, c) = setup(Sim::quiet());
    let room = Target::room("/", "doc");
    let hour = Duration::from_secs(3600);
    for (ident, item) in [("t", "a"), ("u", "b"), ("v", "c")] {
        sim.hub
            .publish_batched(sim.now, room.clone(), ident, "typing", json!(item), hour)
            .expect("batch");
    }
    assert_eq!(sim.hub.footprint().batches, 3);
    sim.hub.shutdown(sim.now);
    sim.drain();
    let flushed: Vec<_> = sim
        .of_type(c, "batch")
        .iter()
        .map(|b| b["messages"].clone())
        .collect();
    assert_eq!(flushed, vec![json!(["a"]), json!(["b"]), json!(["c"])]);
    assert_eq!(sim.hub.footprint().batches, 0);
    assert_eq!(
        sim.close_of(c).map(|c| c.0),
        Some(tidings_core::CloseCode::GOING_AWAY)
    );
}
