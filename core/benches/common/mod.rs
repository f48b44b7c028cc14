//! What every core benchmark needs: a hub without greetings, connections, and a driver loop
//! that drains the outputs and reports each transmitted frame written, as an adapter would.

#![allow(dead_code)] // each bench uses a part

use std::hint::black_box;
use std::time::Instant;

use tidings_core::{Config, ConnId, ConnectionInfo, Hub, Input, Output};

/// A hub sized for `conns` connections, with no welcome frame, no inbound rate limit and
/// `config` applied last.
pub fn hub(conns: usize, config: impl FnOnce(Config) -> Config) -> Hub {
    let base = Config::default()
        .welcome(false)
        .max_inbound_rate(None)
        .max_connections(conns + 1);
    Hub::new(config(base)).expect("config")
}

/// Opens `n` connections at `now` and drains what opening them output.
pub fn open(hub: &mut Hub, now: Instant, n: usize) -> Vec<ConnId> {
    let conns = (0..n)
        .map(|_| hub.open(now, ConnectionInfo::new("/ws")).expect("open"))
        .collect();
    drain(hub, now);
    conns
}

/// Drains every output as tidings-net does (a connection's frames at a time, with
/// `poll_transmits`), reporting them written at once. Returns how many frames were
/// transmitted and how many events came out.
pub fn drain(hub: &mut Hub, now: Instant) -> (usize, usize) {
    let (mut frames, mut events) = (0, 0);
    let mut batch = Vec::new();
    loop {
        if let Some(conn) = hub.poll_transmits(&mut batch) {
            let count: usize = batch.iter().map(|chunk| chunk.len()).sum();
            frames += count;
            black_box(&batch);
            hub.handle(
                now,
                Input::Written {
                    conn,
                    frames: count,
                },
            );
            batch.clear();
            continue;
        }
        let Some(out) = hub.poll_output() else {
            break;
        };
        match out {
            Output::Transmit { conn, frame } => {
                black_box(&frame);
                frames += 1;
                hub.handle(now, Input::Written { conn, frames: 1 });
            }
            Output::Event(event) => {
                black_box(&event);
                events += 1;
            }
            other => {
                black_box(&other);
            }
        }
    }
    (frames, events)
}
