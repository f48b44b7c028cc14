//! What channel history costs: a publish to a room of N members with history on against the
//! same room without (criterion's throughput is in recipients, so time per element is the
//! cost per recipient; at one member it is the cost per publish), and a recovery: one
//! connection subscribing from a position 100 publications back, replay drained.
//!
//! `cargo bench -p tidings-core --bench history`

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tidings_core::{Config, Frame, History, Hub, Input, Message, Target};

/// Room `room` with `members`, keeping (or not) the last 1,000 publications for an hour.
fn hub_with_room(members: usize, history: bool, now: Instant) -> Hub {
    let keep = |c: Config| {
        let c = c.ping_period(None);
        match history {
            true => c.history("room", History::new(1_000, Duration::from_secs(3_600))),
            false => c,
        }
    };
    let mut hub = common::hub(members + 1, keep);
    for conn in common::open(&mut hub, now, members) {
        hub.join(conn, "room").expect("join");
    }
    common::drain(&mut hub, now);
    hub
}

fn message() -> Message {
    Message::json("tick", json!({ "v": "x".repeat(60) }))
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("history_publish");
    for members in [1usize, 1_000] {
        group.throughput(Throughput::Elements(members as u64));
        for history in [false, true] {
            let now = Instant::now();
            let mut hub = hub_with_room(members, history, now);
            let msg = message();
            let name = if history { "on" } else { "off" };
            group.bench_function(BenchmarkId::new(name, members), |b| {
                b.iter(|| {
                    let _ = hub
                        .publish(now, Target::room("/", "room"), msg.clone())
                        .expect("publish");
                    common::drain(&mut hub, now)
                })
            });
        }
    }
    group.finish();
}

/// One connection recovers 100 publications: subscribe from 100 back, the replay drained,
/// unsubscribe (so the next iteration subscribes again).
fn recover(c: &mut Criterion) {
    let mut group = c.benchmark_group("history_recover");
    let now = Instant::now();
    let mut hub = hub_with_room(1, true, now);
    for _ in 0..100 {
        let _ = hub
            .publish(now, Target::room("/", "room"), message())
            .expect("publish");
    }
    common::drain(&mut hub, now);
    let conn = common::open(&mut hub, now, 1)[0];
    hub.join(conn, "room").expect("join");
    let position = hub.room_position("/", "room").expect("a position");
    hub.leave(conn, "room").expect("leave");
    common::drain(&mut hub, now);
    let ask = format!(
        r#"{{"type":"subscribe","channel":"room","since":{},"epoch":{}}}"#,
        position.since - 100,
        position.epoch
    );
    let leave = r#"{"type":"unsubscribe","channel":"room"}"#;
    group.throughput(Throughput::Elements(100));
    group.bench_function("100", |b| {
        b.iter(|| {
            let frame = Frame::text(ask.as_str());
            hub.handle(now, Input::Frame { conn, frame });
            let (frames, _) = common::drain(&mut hub, now);
            debug_assert_eq!(frames, 101, "subscribed and the replay");
            hub.handle(
                now,
                Input::Frame {
                    conn,
                    frame: Frame::text(leave),
                },
            );
            common::drain(&mut hub, now)
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    publish(c);
    recover(c);
}

criterion_group!(all, benches);
criterion_main!(all);
