//! Heartbeats: WebSocket pings every period, silent connections closed after `pong_wait`,
//! any inbound frame counts as life.

use std::time::Duration;

use crate::common::Sim;
use bytes::Bytes;
use tidings_core::{CloseCode, Config, Frame};

fn config() -> Config {
    Config::default()
        .welcome(false)
        .ping_period(Some(Duration::from_secs(10)))
        .pong_wait(Duration::from_secs(25))
}

fn pings(sim: &Sim, c: tidings_core::ConnId) -> usize {
    sim.frames.get(&c).map_or(0, |f| {
        f.iter().filter(|f| matches!(f, Frame::Ping(_))).count()
    })
}

#[test]
fn pings_go_out_every_period() {
    let mut sim = Sim::new(config());
    let c = sim.open_path("/");
    sim.advance(Duration::from_millis(9_999));
    assert_eq!(pings(&sim, c), 0);
    sim.advance(Duration::from_millis(1));
    assert_eq!(pings(&sim, c), 1);
    sim.send_frame(c, Frame::Pong(Bytes::new()));
    sim.advance(Duration::from_secs(10));
    assert_eq!(pings(&sim, c), 2);
}

#[test]
fn a_silent_connection_is_closed_after_pong_wait() {
    let mut sim = Sim::new(config());
    let silent = sim.open_path("/");
    let alive = sim.open_path("/");
    for _ in 0..6 {
        sim.advance(Duration::from_secs(5));
        sim.send_frame(alive, Frame::Pong(Bytes::new()));
    }
    let (code, reason) = sim.close_of(silent).expect("closed");
    assert_eq!(code, CloseCode::HEARTBEAT_TIMEOUT);
    assert!(reason.contains("25000 ms"), "{reason}");
    assert!(sim.hub.is_connected(alive));
    assert!(sim.close_of(alive).is_none());
}

#[test]
fn it_is_closed_exactly_at_the_deadline_not_before() {
    let mut sim = Sim::new(config());
    let c = sim.open_path("/");
    sim.advance(Duration::from_secs(7));
    sim.send(c, r#"{"type":"ping"}"#); // any frame is life: deadline is now 7 + 25 = 32 s
    sim.advance(Duration::from_millis(24_999));
    assert!(sim.hub.is_connected(c));
    sim.advance(Duration::from_millis(1));
    assert!(!sim.hub.is_connected(c));
}

#[test]
fn without_pings_nothing_is_armed() {
    let mut sim = Sim::new(config().ping_period(None));
    let c = sim.open_path("/");
    assert_eq!(sim.hub.poll_timeout(), None);
    sim.advance(Duration::from_secs(3600));
    assert!(sim.hub.is_connected(c));
}

#[test]
fn handling_a_timeout_twice_does_nothing_more() {
    let mut sim = Sim::new(config());
    let c = sim.open_path("/");
    let at = sim.hub.poll_timeout().expect("ping armed");
    sim.hub.handle_timeout(at);
    sim.drain();
    sim.hub.handle_timeout(at);
    sim.drain();
    assert_eq!(pings(&sim, c), 1);
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut sim = Sim::new(config());
    let c = sim.open_path("/");
    sim.advance(Duration::from_secs(20));
    let earlier = sim.now - Duration::from_secs(15);
    sim.hub.handle(
        earlier,
        tidings_core::Input::Frame {
            conn: c,
            frame: Frame::Pong(Bytes::new()),
        },
    );
    // Life was recorded at the clamped time (20 s), not at 5 s: alive until 45 s.
    sim.advance(Duration::from_secs(24));
    assert!(sim.hub.is_connected(c));
}

/// Found by the simulation: under the Refuse policy a peer that sends but never reads is never
/// closed, and each ping period used to add a ping to its queue, without bound.
#[test]
fn a_peer_that_never_reads_holds_at_most_one_ping() {
    let mut sim = Sim::new(
        config()
            .slow_consumer(tidings_core::SlowConsumerPolicy::Refuse)
            .write_window(1),
    );
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..20 {
        sim.advance(Duration::from_secs(10));
        sim.send_frame(c, Frame::Pong(Bytes::new())); // alive: it sends, it just never reads
    }
    assert!(sim.hub.is_connected(c));
    assert_eq!(
        pings(&sim, c),
        1,
        "one ping handed out (the window holds one frame)"
    );
    assert_eq!(
        sim.hub.queue_depth(c).map(|d| d.frames),
        Some(2),
        "one in flight, one waiting"
    );
}

/// Found by fuzzing: pings handed out to a peer that never reads used to pile up past the
/// queue bound, one per period up to the write window. A ping is offered like any frame.
#[test]
fn pings_never_push_a_queue_past_its_bound() {
    let mut sim = Sim::new(config().max_queue_frames(2).write_window(8));
    let c = sim.open_path("/");
    sim.stalled.insert(c);
    for _ in 0..10 {
        sim.advance(Duration::from_secs(10));
        sim.send_frame(c, Frame::Pong(Bytes::new())); // alive, never reading
        let depth = sim.hub.queue_depth(c).expect("open").frames;
        assert!(depth <= 2, "{depth} frames queued or in flight, bound 2");
    }
    assert_eq!(pings(&sim, c), 2, "pings stop once the queue is full");
    sim.unstall(c);
    sim.advance(Duration::from_secs(10));
    assert_eq!(pings(&sim, c), 3, "and resume when the peer reads");
}

/// A client cannot answer an application heartbeat it was never told of: the welcome names
/// its texts, and only when one is configured.
#[test]
fn the_welcome_announces_the_application_heartbeat() {
    let hb = tidings_core::AppHeartbeat {
        ping: "2".into(),
        pong: "3".into(),
        alive_timeout: Duration::from_secs(30),
    };
    let mut sim = Sim::new(Config::default().ping_period(None).app_heartbeat(Some(hb)));
    let c = sim.open_path("/");
    let welcome = &sim.json(c)[0];
    assert_eq!(
        welcome["heartbeat"],
        serde_json::json!({"ping": "2", "pong": "3"})
    );
    assert_eq!(welcome["timeout_ms"], 30_000);
    sim.send(c, "2");
    assert_eq!(sim.frames[&c].last().and_then(Frame::as_text), Some("3"));
    let mut plain = Sim::new(Config::default());
    let d = plain.open_path("/");
    assert!(plain.json(d)[0].get("heartbeat").is_none());
}

/// A driver that takes frames a connection at a time (`poll_transmits`, as tidings-net
/// does) gets a ping every period too: handing one out frees the place of the next.
#[test]
fn pings_handed_out_in_bursts_make_room_for_the_next() {
    let mut hub = tidings_core::Hub::new(config()).expect("config");
    let start = std::time::Instant::now();
    let c = hub
        .open(start, tidings_core::ConnectionInfo::new("/"))
        .expect("open");
    let mut pings = 0;
    for period in 1..=3u64 {
        let now = start + Duration::from_secs(10 * period);
        hub.handle_timeout(now);
        hub.handle(
            now,
            tidings_core::Input::Frame {
                conn: c,
                frame: Frame::Pong(Bytes::new()),
            },
        );
        // As tidings-net drains: bursts until none, then one output, until both are done.
        loop {
            let mut chunks = Vec::new();
            if let Some(conn) = hub.poll_transmits(&mut chunks) {
                let frames = chunks.iter().map(tidings_core::Chunk::len).sum();
                hub.handle(now, tidings_core::Input::Written { conn, frames });
                pings += chunks
                    .iter()
                    .flat_map(tidings_core::Chunk::frames)
                    .filter(|f| matches!(f, Frame::Ping(_)))
                    .count();
                continue;
            }
            match hub.poll_output() {
                Some(tidings_core::Output::Transmit { conn, frame }) => {
                    pings += usize::from(matches!(frame, Frame::Ping(_)));
                    hub.handle(now, tidings_core::Input::Written { conn, frames: 1 });
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    assert_eq!(pings, 3, "one ping each period");
}
