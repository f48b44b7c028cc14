//! Heartbeat timer churn: 100,000 connections with WebSocket pings every 25 s, opened evenly
//! over one period so their deadlines are spread out. Each step advances the clock so that
//! about `k` ping timers are due, handles the timeout, writes the pings and feeds back each
//! client's pong. Throughput is in due timers: a flat time per element across `k` and across
//! hub sizes shows `handle_timeout` costs what expires, not how many connections there are.
//!
//! `cargo bench -p tidings-core --bench timers`

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidings_core::{ConnectionInfo, Frame, Hub, Input, Output};

const PERIOD: Duration = Duration::from_secs(25);

/// A hub with `conns` connections opened evenly over one ping period, ending at the returned
/// instant.
fn hub_with_heartbeats(conns: usize, start: Instant) -> (Hub, Instant) {
    let mut hub = common::hub(conns, |c| {
        c.ping_period(Some(PERIOD))
            .pong_wait(Duration::from_secs(60))
    });
    let gap = PERIOD / conns as u32;
    let mut now = start;
    for _ in 0..conns {
        hub.open(now, ConnectionInfo::new("/ws")).expect("open");
        now += gap;
    }
    common::drain(&mut hub, now);
    (hub, now)
}

/// Handles the timeout at `now`, writes what it sent and answers every ping with a pong.
/// Returns how many pings went out.
fn tick(hub: &mut Hub, now: Instant) -> usize {
    hub.handle_timeout(now);
    let mut pings = 0;
    while let Some(out) = hub.poll_output() {
        if let Output::Transmit { conn, frame } = out {
            hub.handle(now, Input::Written { conn, frames: 1 });
            if let Frame::Ping(payload) = frame {
                pings += 1;
                let frame = Frame::Pong(payload);
                hub.handle(now, Input::Frame { conn, frame });
            }
        }
    }
    pings
}

fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers");
    for (conns, due) in [
        (100_000usize, 10usize),
        (100_000, 100),
        (100_000, 1_000),
        (100_000, 10_000),
        (1_000, 10),
        (1_000, 100),
    ] {
        let (mut hub, mut now) = hub_with_heartbeats(conns, Instant::now());
        let step = PERIOD * due as u32 / conns as u32;
        // Warm up to the steady state: every connection has pinged and ponged once.
        for _ in 0..conns / due + 1 {
            now += step;
            tick(&mut hub, now);
        }
        group.throughput(Throughput::Elements(due as u64));
        let id = BenchmarkId::new(format!("{conns}_conns"), format!("{due}_due"));
        group.bench_function(id, |b| {
            b.iter(|| {
                now += step;
                tick(&mut hub, now)
            })
        });
        assert_eq!(hub.connection_count(), conns, "no connection timed out");
    }

    // Nothing due: the cost of asking, at two hub sizes.
    for conns in [1_000usize, 100_000] {
        let (mut hub, now) = hub_with_heartbeats(conns, Instant::now());
        group.throughput(Throughput::Elements(1));
        let id = BenchmarkId::new(format!("{conns}_conns"), "0_due");
        group.bench_function(id, |b| b.iter(|| tick(&mut hub, now)));
    }
    group.finish();
}

criterion_group!(all, timers);
criterion_main!(all);
