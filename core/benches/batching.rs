//! Batching at scale: 100,000 items spread over 1,000 batch keys (one room each, one member
//! per room), collected, then flushed by one `handle_timeout` at the TTL into 1,000 frames.
//! Throughput is in items, so time per element is the cost of one item, flush included.
//!
//! `cargo bench -p tidings-core --bench batching`

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use tidings_core::{Hub, Target};

const KEYS: usize = 1_000;
const ITEMS: usize = 100_000;
const TTL: Duration = Duration::from_millis(50);

fn hub_with_rooms(now: Instant) -> Hub {
    let mut hub = common::hub(KEYS, |c| c.ping_period(None).max_pending_batches(KEYS));
    for (i, conn) in common::open(&mut hub, now, KEYS).into_iter().enumerate() {
        hub.join(conn, &format!("room-{i}")).expect("join");
    }
    common::drain(&mut hub, now);
    hub
}

fn batching(c: &mut Criterion) {
    let mut group = c.benchmark_group("batching");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS as u64));
    let now = Instant::now();
    let targets: Vec<Target> = (0..KEYS)
        .map(|i| Target::room("/", format!("room-{i}")))
        .collect();
    let item = json!({ "x": 12, "y": 34 });

    group.bench_function("100k_items_1k_keys", |b| {
        b.iter_batched(
            || hub_with_rooms(now),
            |mut hub| {
                for i in 0..ITEMS {
                    let target = targets[i % KEYS].clone();
                    hub.publish_batched(now, target, "moves", "move", item.clone(), TTL)
                        .expect("batch");
                }
                hub.handle_timeout(now + TTL);
                let (frames, _) = common::drain(&mut hub, now + TTL);
                assert_eq!(frames, KEYS, "one frame per key");
                hub
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(all, batching);
criterion_main!(all);
