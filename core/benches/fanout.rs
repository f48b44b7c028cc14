//! Fan-out cost per recipient: one 128-byte JSON frame published to a room of N members, every
//! output drained and reported written, as tidings-net does (a connection's frames at a time). Criterion's throughput is in
//! recipients, so time per element is the cost per recipient. Target: ≤ 25 ns at 10,000
//! members (issue 12), compared across hours by alternate runs with an older build.
//!
//! `cargo bench -p tidings-core --bench fanout`

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tidings_core::{Hub, Message, Output, Target};

fn hub_with_room(members: usize, now: Instant) -> Hub {
    let mut hub = common::hub(members, |c| c.ping_period(None));
    for conn in common::open(&mut hub, now, members) {
        hub.join(conn, "room").expect("join");
    }
    common::drain(&mut hub, now);
    hub
}

/// A message whose encoded frame is 128 bytes.
fn message() -> Message {
    let envelope =
        r#"{"type":"event","event":"tick","channel":"room","offset":0,"epoch":1,"data":{"v":""}}"#
            .len();
    Message::json("tick", json!({ "v": "x".repeat(128 - envelope) }))
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for members in [10usize, 1_000, 10_000, 100_000] {
        let now = Instant::now();
        let mut hub = hub_with_room(members, now);
        let msg = message();
        group.throughput(Throughput::Elements(members as u64));
        if members >= 100_000 {
            group.sample_size(20);
        }
        group.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                let report = hub
                    .publish(now, Target::room("/", "room"), msg.clone())
                    .expect("publish");
                debug_assert_eq!(report.queued, members);
                common::drain(&mut hub, now)
            })
        });
    }
    group.finish();
}

/// Checks the frame size the benchmark claims, once.
fn frame_is_128_bytes() {
    let now = Instant::now();
    let mut hub = hub_with_room(1, now);
    let _ = hub
        .publish(now, Target::room("/", "room"), message())
        .expect("publish");
    while let Some(out) = hub.poll_output() {
        if let Output::Transmit { frame, .. } = out {
            assert!(
                (120..=136).contains(&frame.len()),
                "frame is {} bytes",
                frame.len()
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    frame_is_128_bytes();
    fanout(c);
}

criterion_group!(all, benches);
criterion_main!(all);
