//! The simulation harness with fuzzer-chosen seeds and knobs: every invariant of
//! `tidings_core::sim` (delivery, acks, heartbeats, batches, bounds, empty tables) under
//! configurations the default sweep does not try.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidings_core::sim::{Sim, SimConfig};

#[derive(Arbitrary, Debug)]
struct Case {
    seed: u64,
    steps: u16,
    clients: u8,
    raw_clients: u8,
    queue_frames: u8,
    window: u8,
    max_latency_ms: u8,
    max_step_ms: u8,
}

fuzz_target!(|case: Case| {
    let mut cfg = SimConfig::default();
    cfg.clients = 1 + case.clients as usize % 12;
    cfg.raw_clients = case.raw_clients as usize % (cfg.clients + 1);
    cfg.hub = cfg
        .hub
        .max_queue_frames(2 + case.queue_frames as usize % 40)
        .write_window(1 + case.window as usize % 8);
    cfg.latency.1 = cfg.latency.0 + Duration::from_millis(u64::from(case.max_latency_ms) % 200);
    cfg.max_step = Duration::from_millis(1 + u64::from(case.max_step_ms));
    let steps = u64::from(case.steps) % 3000;
    if let Err(v) = Sim::new(case.seed, cfg, Instant::now()).run(steps) {
        panic!("{v}");
    }
});
