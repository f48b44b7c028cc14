//! Acknowledgements at scale: 100,000 server→client acks pending at once (1,000 connections
//! with 100 each), then all resolved by the clients' `ack` frames, or all timed out by one
//! `handle_timeout`. Throughput is in acks, so time per element is the cost of one.
//!
//! `cargo bench -p tidings-core --bench acks`

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use tidings_core::{AckId, ConnId, Frame, Hub, Input, Message};

const CONNS: usize = 1_000;
const PER_CONN: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A hub with `CONNS * PER_CONN` acks pending, and the ids to answer.
fn pending(now: Instant) -> (Hub, Vec<(ConnId, AckId)>) {
    let mut hub = common::hub(CONNS, |c| c.ping_period(None).ack_timeout(TIMEOUT));
    let conns = common::open(&mut hub, now, CONNS);
    let mut acks = Vec::with_capacity(CONNS * PER_CONN);
    for &conn in &conns {
        for i in 0..PER_CONN {
            let msg = Message::json("question", json!({ "n": i }));
            let ack = hub.emit_with_ack(now, conn, msg, None).expect("emit");
            acks.push((conn, ack));
        }
        common::drain(&mut hub, now);
    }
    (hub, acks)
}

fn acks(c: &mut Criterion) {
    let mut group = c.benchmark_group("acks");
    group.sample_size(10);
    group.throughput(Throughput::Elements((CONNS * PER_CONN) as u64));
    let now = Instant::now();

    group.bench_function("resolved", |b| {
        b.iter_batched(
            || {
                let (hub, acks) = pending(now);
                let frames: Vec<_> = acks
                    .iter()
                    .map(|&(conn, ack)| {
                        let text = format!(r#"{{"type":"ack","ack":{},"data":true}}"#, ack.0);
                        (conn, Frame::text(text))
                    })
                    .collect();
                (hub, frames)
            },
            |(mut hub, frames)| {
                for (conn, frame) in frames {
                    hub.handle(now, Input::Frame { conn, frame });
                }
                let (_, events) = common::drain(&mut hub, now);
                assert_eq!(events, CONNS * PER_CONN, "one Ack event per reply");
                hub
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("timed_out", |b| {
        b.iter_batched(
            || pending(now).0,
            |mut hub| {
                hub.handle_timeout(now + TIMEOUT);
                let (_, events) = common::drain(&mut hub, now + TIMEOUT);
                assert_eq!(events, CONNS * PER_CONN, "one Ack event per timeout");
                hub
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(all, acks);
criterion_main!(all);
