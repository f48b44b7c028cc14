//! Fan-out cost per recipient: one 128-byte JSON frame published to a room of N members, every
//! output drained and reported written, as a driver would. Criterion's throughput is in
//! recipients, so time per element is the cost per recipient.
//!
//! `cargo bench -p tidings-core --bench fanout`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tidings_core::{Config, ConnectionInfo, Hub, Input, Message, Output, Target};

fn hub_with_room(members: usize, now: Instant) -> Hub {
    let config = Config::default()
        .welcome(false)
        .ping_period(None)
        .max_connections(members + 1);
    let mut hub = Hub::new(config).expect("config");
    for _ in 0..members {
        let conn = hub.open(now, ConnectionInfo::new("/ws")).expect("open");
        hub.join(conn, "room").expect("join");
    }
    while hub.poll_output().is_some() {}
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
    for members in [10usize, 1_000, 10_000] {
        let now = Instant::now();
        let mut hub = hub_with_room(members, now);
        let msg = message();
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                let report = hub
                    .publish(now, Target::room("/", "room"), msg.clone())
                    .expect("publish");
                debug_assert_eq!(report.queued, members);
                while let Some(out) = hub.poll_output() {
                    if let Output::Transmit { conn, frame } = out {
                        black_box(&frame);
                        hub.handle(now, Input::Written { conn, frames: 1 });
                    }
                }
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
