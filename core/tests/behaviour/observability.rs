//! Counters: a snapshot of what the hub did.

use crate::common::Sim;
use tidings_core::{CloseCode, Message, Target};

#[test]
fn counters_add_up() {
    let mut sim = Sim::new(Sim::quiet().max_message_size(64));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    let subscribe = r#"{"type":"subscribe","channel":"r"}"#;
    sim.send(a, subscribe); // 1 frame in, 1 out
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "r"), Message::text("t", "x")); // 1 out
    sim.drain();
    sim.send(b, &"x".repeat(65)); // too big: closed with 1009
    let c = sim.counters_snapshot();
    assert_eq!(c.connections, 1);
    assert_eq!(c.connections_opened, 2);
    assert_eq!(c.rooms, 1);
    assert_eq!(c.members, 1, "a, in r");
    assert_eq!(c.deliveries, 1, "the publish to r, for a");
    assert_eq!(c.frames_in, 2);
    assert_eq!(c.bytes_in, (subscribe.len() + 65) as u64);
    assert_eq!(c.frames_out, 2);
    let out_bytes: usize = sim.frames[&a].iter().map(|f| f.len()).sum();
    assert_eq!(c.bytes_out, out_bytes as u64);
    assert_eq!(c.closes.get(&CloseCode::TOO_BIG), Some(&1));
    assert_eq!(c.closes.len(), 1);
}

trait Snapshot {
    fn counters_snapshot(&self) -> tidings_core::Counters;
}

impl Snapshot for Sim {
    fn counters_snapshot(&self) -> tidings_core::Counters {
        self.hub.counters()
    }
}

/// What a metrics scrape samples: each connection's frames queued or handed out and not
/// yet written.
#[test]
fn queue_depths_count_what_each_connection_has_not_written() {
    let mut sim = Sim::new(Sim::quiet());
    let (a, b) = (sim.open_path("/"), sim.open_path("/"));
    sim.subscribe(a, "r");
    sim.subscribe(b, "r");
    sim.drain();
    sim.stalled.insert(b); // b's writer takes nothing from here on
    for n in 0..3 {
        let message = Message::text("t", n.to_string());
        let _ = sim.hub.publish(sim.now, Target::room("/", "r"), message);
    }
    sim.drain();
    let mut depths: Vec<usize> = sim.hub.queue_depths().collect();
    depths.sort_unstable();
    assert_eq!(depths, [0, 3], "a wrote all three, b none");
    sim.unstall(b);
    assert_eq!(sim.hub.queue_depths().collect::<Vec<_>>(), [0, 0]);
}
