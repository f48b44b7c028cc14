//! Channel history and recovery: a client that comes back with the position it had gets
//! exactly the publications it missed, in order and once, before any live one; or it is told
//! why it cannot (epoch changed, too old, ahead, no history). Also the `history` request,
//! what is kept (the stream only), the bounds (count, age, bytes hub-wide), and rooms that
//! outlive their members while they keep publications.

use std::time::Duration;

use crate::common::Sim;
use serde_json::{json, Value};
use tidings_core::{
    Config, ConnId, ConnectionInfo, History, Input, Message, Payload, SubscribePolicy, Target,
};

const TTL: Duration = Duration::from_secs(60);

fn config(max_len: usize) -> Config {
    Sim::quiet().history("news", History::new(max_len, TTL))
}

fn publish(sim: &mut Sim, channel: &str, n: u64) {
    let message = Message::json("item", json!({ "n": n }));
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", channel), message)
        .expect("publish");
    sim.drain();
}

/// The `n` of each `item` event `conn` received, with its offset.
fn items(sim: &Sim, conn: ConnId) -> Vec<(u64, u64)> {
    sim.of_type(conn, "event")
        .iter()
        .filter(|e| e["event"] == "item")
        .map(|e| {
            (
                e["data"]["n"].as_u64().unwrap_or(u64::MAX),
                e["offset"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn leave_by_dropping(sim: &mut Sim, conn: ConnId) {
    sim.hub.handle(
        sim.now,
        Input::TransportError {
            conn,
            error: "gone".into(),
        },
    );
    sim.drain();
    sim.advance(Duration::from_secs(10));
}

/// The position the client saw last: the epoch, and the next offset it expects.
fn position(sim: &Sim, conn: ConnId) -> (u64, u64) {
    let subscribed = &sim.of_type(conn, "subscribed")[0];
    let epoch = subscribed["epoch"].as_u64().expect("epoch");
    let next = items(sim, conn)
        .last()
        .map_or(subscribed["offset"].as_u64().expect("offset"), |&(_, o)| {
            o + 1
        });
    (epoch, next)
}

fn subscribe_since(sim: &mut Sim, conn: ConnId, since: u64, epoch: u64) {
    sim.send(
        conn,
        &format!(
            r#"{{"type":"subscribe","channel":"news","id":"s","since":{since},"epoch":{epoch}}}"#
        ),
    );
}

#[test]
fn a_client_that_comes_back_gets_what_it_missed_in_order_then_live() {
    let mut sim = Sim::new(config(100));
    let a = sim.open_path("/");
    sim.subscribe(a, "news");
    for n in 0..3 {
        publish(&mut sim, "news", n);
    }
    let (epoch, since) = position(&sim, a);
    assert_eq!(since, 3);
    assert_eq!(
        sim.hub.room_position("/", "news"),
        Some(tidings_core::Position { since, epoch }),
        "where a client that saw everything stands"
    );
    assert_eq!(sim.hub.room_position("/", "nowhere"), None);
    leave_by_dropping(&mut sim, a);
    assert_eq!(sim.hub.room_size("/", "news"), 0);
    assert!(
        sim.hub.has_room("/", "news"),
        "a room keeping history outlives its members"
    );
    // Published while nobody is in: kept all the same.
    publish(&mut sim, "news", 3);
    publish(&mut sim, "news", 4);

    let b = sim.open_path("/");
    subscribe_since(&mut sim, b, since, epoch);
    let subscribed = &sim.of_type(b, "subscribed")[0];
    assert_eq!(subscribed["recovered"], json!(true));
    assert_eq!(subscribed["offset"], json!(5), "the next live offset");
    assert_eq!(subscribed["epoch"], json!(epoch));
    assert!(subscribed.get("reason").is_none());
    publish(&mut sim, "news", 5);
    assert_eq!(items(&sim, b), vec![(3, 3), (4, 4), (5, 5)]);
    // The subscribed answer comes first, then the replay.
    let kinds: Vec<Value> = sim.json(b).iter().map(|f| f["type"].clone()).collect();
    assert_eq!(kinds[0], json!("subscribed"));
}

#[test]
fn publications_while_the_application_decides_are_replayed_once_in_order() {
    let mut sim = Sim::new(config(100).subscribe_policy(SubscribePolicy::Approve));
    let a = sim.open_path("/");
    sim.hub.join(a, "news").expect("join");
    sim.drain();
    for n in 0..2 {
        publish(&mut sim, "news", n);
    }
    let epoch = sim.of_type(a, "subscribed")[0]["epoch"]
        .as_u64()
        .expect("epoch");

    let b = sim.open_path("/");
    subscribe_since(&mut sim, b, 1, epoch);
    assert!(
        sim.of_type(b, "subscribed").is_empty(),
        "pending the decision"
    );
    // Publications during the decision: b is not in the room yet, so not sent live.
    publish(&mut sim, "news", 2);
    publish(&mut sim, "news", 3);
    assert!(items(&sim, b).is_empty());
    sim.hub
        .approve_subscribe(sim.now, b, "news")
        .expect("approve");
    sim.drain();
    publish(&mut sim, "news", 4);
    assert_eq!(items(&sim, b), vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
    assert_eq!(sim.of_type(b, "subscribed")[0]["recovered"], json!(true));
}

#[test]
fn a_lost_history_is_told_not_replayed() {
    let mut sim = Sim::new(config(100));
    let a = sim.open_path("/");
    sim.subscribe(a, "news");
    publish(&mut sim, "news", 0);
    let (epoch, since) = position(&sim, a);
    leave_by_dropping(&mut sim, a);
    // Everything kept expires: the room goes, and with it the stream's numbering.
    sim.advance(TTL);
    assert!(!sim.hub.has_room("/", "news"));
    assert_eq!(sim.hub.footprint().history_bytes, 0);

    let b = sim.open_path("/");
    subscribe_since(&mut sim, b, since, epoch);
    let subscribed = &sim.of_type(b, "subscribed")[0];
    assert_eq!(subscribed["recovered"], json!(false));
    assert_eq!(subscribed["reason"], json!("epoch_changed"));
    assert_ne!(subscribed["epoch"], json!(epoch));
    assert_eq!(subscribed["offset"], json!(0));
    assert!(items(&sim, b).is_empty());
    assert!(
        sim.hub.in_room(b, "news"),
        "subscribed all the same, live from here"
    );
}

#[test]
fn older_than_kept_ahead_of_the_stream_and_no_history_are_each_told() {
    let mut sim = Sim::new(config(3).history("*", History::new(1, TTL)));
    let a = sim.open_path("/");
    sim.subscribe(a, "news");
    for n in 0..6 {
        publish(&mut sim, "news", n);
    }
    let epoch = sim.of_type(a, "subscribed")[0]["epoch"]
        .as_u64()
        .expect("epoch");
    let answer = |sim: &mut Sim, since: u64| {
        let c = sim.open_path("/");
        subscribe_since(sim, c, since, epoch);
        let subscribed = sim.of_type(c, "subscribed")[0].clone();
        (
            subscribed["recovered"].clone(),
            subscribed["reason"].clone(),
            items(sim, c),
        )
    };
    // Only the last three (offsets 3, 4, 5) are kept.
    assert_eq!(
        answer(&mut sim, 3),
        (json!(true), Value::Null, vec![(3, 3), (4, 4), (5, 5)])
    );
    assert_eq!(answer(&mut sim, 6), (json!(true), Value::Null, vec![]));
    assert_eq!(
        answer(&mut sim, 2),
        (json!(false), json!("too_old"), vec![])
    );
    assert_eq!(
        answer(&mut sim, 7),
        (json!(false), json!("offset_ahead"), vec![])
    );
    // A channel without a rule keeps nothing: "other" matches only "*" here, so use a
    // hub without one.
    let mut bare = Sim::new(Sim::quiet());
    let c = bare.open_path("/");
    subscribe_since(&mut bare, c, 0, 1);
    let subscribed = &bare.of_type(c, "subscribed")[0];
    assert_eq!(
        (
            subscribed["recovered"].clone(),
            subscribed["reason"].clone()
        ),
        (json!(false), json!("no_history"))
    );
}

#[test]
fn only_the_stream_is_kept_and_count_and_age_bound_it() {
    let mut sim = Sim::new(config(2));
    let a = sim.open_path("/");
    let b = sim.open_path("/");
    sim.subscribe(a, "news");
    sim.subscribe(b, "news");
    let epoch = sim.of_type(a, "subscribed")[0]["epoch"]
        .as_u64()
        .expect("epoch");
    publish(&mut sim, "news", 0);
    // Not part of the stream: one that leaves a member out, and a volatile one.
    let except = Target::room("/", "news").except(b);
    let _ = sim
        .hub
        .publish(sim.now, except, Message::json("item", json!({"n": 100})))
        .expect("publish");
    let volatile = Message::json("item", json!({"n": 101})).volatile();
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "news"), volatile)
        .expect("publish");
    sim.drain();
    let c = sim.open_path("/");
    subscribe_since(&mut sim, c, 0, epoch);
    assert_eq!(items(&sim, c), vec![(0, 0)]);

    // Age: half a TTL later two more; the first expires at its TTL, they at theirs.
    sim.advance(TTL / 2);
    publish(&mut sim, "news", 1);
    let kept_one = sim.hub.footprint().history_bytes;
    sim.advance(TTL / 2);
    assert!(
        sim.hub.footprint().history_bytes < kept_one,
        "offset 0 expired"
    );
    let d = sim.open_path("/");
    subscribe_since(&mut sim, d, 0, epoch);
    assert_eq!(sim.of_type(d, "subscribed")[0]["reason"], json!("too_old"));
    let e = sim.open_path("/");
    subscribe_since(&mut sim, e, 1, epoch);
    assert_eq!(items(&sim, e), vec![(1, 1)]);
}

#[test]
fn history_bytes_are_capped_for_every_channel_together_closest_to_expiry_first() {
    let mut sim = Sim::new(
        Sim::quiet()
            .history("old", History::new(100, Duration::from_secs(10)))
            .history("new", History::new(100, Duration::from_secs(100)))
            .max_history_bytes(2_000),
    );
    for n in 0..5 {
        publish(&mut sim, "old", n);
    }
    let old = sim.hub.footprint().history_bytes;
    assert!(old > 0 && old < 2_000, "{old}");
    for n in 0..100 {
        publish(&mut sim, "new", n);
        assert!(sim.hub.footprint().history_bytes <= 2_000);
    }
    // "old" expires first, so it went first: its room, nobody in it, is gone.
    assert!(!sim.hub.has_room("/", "old"));
    assert!(sim.hub.has_room("/", "new"));
    // A publication larger than the whole cap is sent but not kept.
    let c = sim.open_path("/");
    sim.subscribe(c, "new");
    let big = Message::json("item", json!({"n": 1000, "pad": "x".repeat(3_000)}));
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "new"), big)
        .expect("publish");
    sim.drain();
    assert_eq!(items(&sim, c).last().map(|i| i.0), Some(1000));
    assert!(sim.hub.footprint().history_bytes <= 2_000);
}

#[test]
fn the_byte_cap_holds_exactly_what_fits() {
    // Every publication the same size: the cap holds exactly two.
    let one = {
        let mut probe = Sim::new(config(10));
        publish(&mut probe, "news", 0);
        probe.hub.footprint().history_bytes
    };
    let mut sim = Sim::new(config(10).max_history_bytes(2 * one));
    for n in 0..2 {
        publish(&mut sim, "news", n);
    }
    assert_eq!(sim.hub.footprint().history_bytes, 2 * one, "both fit");
    publish(&mut sim, "news", 2);
    assert_eq!(
        sim.hub.footprint().history_bytes,
        2 * one,
        "the oldest went"
    );
    let c = sim.open_path("/");
    sim.subscribe(c, "news");
    let epoch = sim.of_type(c, "subscribed")[0]["epoch"]
        .as_u64()
        .expect("epoch");
    subscribe_since(&mut sim, c, 1, epoch);
    assert_eq!(items(&sim, c), vec![(1, 1), (2, 2)]);
}

#[test]
fn a_room_nobody_is_in_goes_with_its_last_kept_publication() {
    let mut sim = Sim::new(config(10));
    publish(&mut sim, "news", 0);
    assert!(sim.hub.has_room("/", "news"), "kept for members to come");
    publish(&mut sim, "elsewhere", 0);
    assert!(
        !sim.hub.has_room("/", "elsewhere"),
        "no rule: nothing kept, no room"
    );
    // Outside the stream (volatile, or leaving someone out): not kept, no room either.
    let mut other = Sim::new(config(10));
    let volatile = Message::json("item", json!({"n": 0})).volatile();
    let _ = other
        .hub
        .publish(other.now, Target::room("/", "news"), volatile)
        .expect("publish");
    assert!(!other.hub.has_room("/", "news"));
    // A hub shutting down keeps nothing, and forgets what it kept once it has shut down.
    publish(&mut other, "news", 1);
    assert!(other.hub.has_room("/", "news"));
    other.hub.shutdown(other.now);
    other.drain();
    assert_eq!(other.hub.footprint().rooms, 0);
    let _ = other.hub.publish(
        other.now,
        Target::room("/", "news"),
        Message::json("item", json!({"n": 2})),
    );
    assert_eq!(other.hub.footprint().rooms, 0);
    assert_eq!(
        sim.hub.poll_timeout(),
        Some(sim.now + TTL),
        "the expiry is a deadline"
    );
    sim.advance(TTL);
    let footprint = sim.hub.footprint();
    assert_eq!((footprint.rooms, footprint.history_bytes), (0, 0));
    assert_eq!(sim.hub.poll_timeout(), None);
}

#[test]
fn a_history_request_returns_the_last_n_or_from_a_position() {
    let mut sim = Sim::new(config(10));
    let a = sim.open_path("/");
    sim.send(a, r#"{"type":"history","channel":"news","id":"h0"}"#);
    let refused = &sim.of_type(a, "error")[0];
    assert_eq!(
        (refused["code"].clone(), refused["ref"].clone()),
        (json!("not_subscribed"), json!("h0"))
    );
    sim.subscribe(a, "news");
    for n in 0..4 {
        publish(&mut sim, "news", n);
    }
    let binary = Message::new("blob", Payload::Binary(vec![0, 1, 2].into()));
    let _ = sim
        .hub
        .publish(sim.now, Target::room("/", "news"), binary)
        .expect("publish");
    sim.drain();
    let epoch = sim.of_type(a, "subscribed")[0]["epoch"]
        .as_u64()
        .expect("epoch");
    let offsets = |answer: &Value| -> Vec<u64> {
        answer["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .filter_map(|p| p["offset"].as_u64())
            .collect()
    };

    sim.send(
        a,
        r#"{"type":"history","channel":"news","id":"h1","limit":2}"#,
    );
    let last_two = sim.of_type(a, "history")[0].clone();
    assert_eq!(
        (last_two["ref"].clone(), last_two["channel"].clone()),
        (json!("h1"), json!("news"))
    );
    assert_eq!(
        (last_two["offset"].clone(), last_two["epoch"].clone()),
        (json!(5), json!(epoch))
    );
    assert_eq!(offsets(&last_two), vec![3, 4]);
    assert_eq!(last_two["publications"][0]["data"], json!({"n": 3}));
    // A binary publication appears as its header (its payload is not JSON).
    assert_eq!(last_two["publications"][1]["binary"], json!(true));
    assert_eq!(last_two["publications"][1]["event"], json!("blob"));

    sim.send(
        a,
        &format!(r#"{{"type":"history","channel":"news","since":1,"epoch":{epoch},"limit":2}}"#),
    );
    assert_eq!(offsets(&sim.of_type(a, "history")[1]), vec![1, 2]);
    let stale_epoch = epoch + 1;
    sim.send(
        a,
        &format!(r#"{{"type":"history","channel":"news","since":0,"epoch":{stale_epoch}}}"#),
    );
    let stale = sim.of_type(a, "history")[2].clone();
    assert_eq!(stale["reason"], json!("epoch_changed"));
    assert_eq!(offsets(&stale), Vec::<u64>::new());
}

#[test]
fn recovery_goes_through_the_queue_bounds_like_any_answer() {
    // A replay longer than the queue bound pauses the client's reading until it drains,
    // rather than being cut short or cutting the reader.
    let mut sim = Sim::new(config(50).max_queue_frames(8).write_window(4));
    let c = stalled_with_a_long_replay(&mut sim);
    sim.unstall(c);
    sim.advance(Duration::from_secs(1));
    let got: Vec<u64> = items(&sim, c).iter().map(|i| i.0).collect();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert!(sim.close_of(c).is_none());
}

/// A client stalled with a replay of 40 kept publications queued (past twice the bound
/// that `sim` sets), as a client is between asking and reading.
fn stalled_with_a_long_replay(sim: &mut Sim) -> ConnId {
    for n in 0..40 {
        publish(sim, "news", n);
    }
    let epoch = {
        let probe = sim.open_path("/");
        sim.subscribe(probe, "news");
        sim.of_type(probe, "subscribed")[0]["epoch"]
            .as_u64()
            .expect("epoch")
    };
    let c = sim.open(ConnectionInfo::new("/"));
    sim.stalled.insert(c);
    subscribe_since(sim, c, 0, epoch);
    let depth = sim.hub.queue_depth(c).expect("open");
    assert!(
        depth.frames > 16 || depth.bytes > 1600,
        "the replay is past twice the bound: {depth:?}"
    );
    c
}

/// Publishes items from 40 on, not waiting, until `c` is cut; returns how many it took.
fn publish_until_cut(sim: &mut Sim, c: ConnId) -> usize {
    for (queued, n) in (40..200).enumerate() {
        let message = Message::json("item", json!({ "n": n }));
        let delivery = sim
            .hub
            .publish(sim.now, Target::room("/", "news"), message)
            .expect("publish");
        sim.drain();
        if delivery.disconnected.contains(&c) {
            return queued;
        }
    }
    panic!("never cut");
}

/// `c` reads everything once it is unstalled: the replay, then item 40, and is not cut.
fn reads_the_replay_then_live(sim: &mut Sim, c: ConnId) {
    sim.unstall(c);
    sim.advance(Duration::from_secs(1));
    let got: Vec<u64> = items(sim, c).iter().map(|i| i.0).collect();
    assert_eq!(got, (0..=40).collect::<Vec<_>>(), "the replay, then live");
    assert!(sim.close_of(c).is_none());
}

/// One publish of item 40 that does not wait; returns how many it cut.
fn publish_item_40(sim: &mut Sim) -> usize {
    let message = Message::json("item", json!({ "n": 40 }));
    let delivery = sim
        .hub
        .publish(sim.now, Target::room("/", "news"), message)
        .expect("publish");
    sim.drain();
    delivery.disconnected.len()
}

#[test]
fn a_publish_that_does_not_wait_does_not_cut_a_client_for_its_long_replay() {
    // The replay is an answer, queued past the bound; a publish that does not wait for room
    // (a batch, another node, `try_publish`) may still fill the queue to twice the bound
    // beyond it. Found by the fuzzer: such a publish cut a reader that read all the while.
    let mut sim = Sim::new(config(50).max_queue_frames(8).write_window(4));
    let c = stalled_with_a_long_replay(&mut sim);
    assert_eq!(publish_item_40(&mut sim), 0);
    reads_the_replay_then_live(&mut sim, c);
}

#[test]
fn past_a_long_replay_a_queue_still_holds_twice_its_bound_at_most() {
    // What does not wait fills the queue to twice the bound, counting the replay's first
    // bound's worth (queued before the queue was past it) and not the rest: 8 live
    // publications here, and the ninth cuts the stalled client.
    let mut sim = Sim::new(config(50).max_queue_frames(8).write_window(4));
    let c = stalled_with_a_long_replay(&mut sim);
    let queued = publish_until_cut(&mut sim, c);
    assert_eq!(queued, 8, "twice the bound, beyond the replay past it");
    assert_eq!(
        sim.close_of(c).map(|(code, _)| code),
        Some(tidings_core::CloseCode::SLOW_CONSUMER)
    );
}

#[test]
fn the_byte_bound_excuses_a_long_replay_alike() {
    // The same with bytes: 40 items of about 80 bytes against a bound of 800. A publish
    // that does not wait still fits after the replay; about one bound's worth more does
    // (the replay's first 800 bytes count, the rest does not), and the next one cuts.
    let config = config(50)
        .max_queue_frames(10_000)
        .max_queue_bytes(800)
        .write_window(4);
    let mut sim = Sim::new(config.clone());
    let c = stalled_with_a_long_replay(&mut sim);
    assert_eq!(publish_item_40(&mut sim), 0);
    reads_the_replay_then_live(&mut sim, c);

    let mut sim = Sim::new(config);
    let c = stalled_with_a_long_replay(&mut sim);
    let queued = publish_until_cut(&mut sim, c);
    // Items are 83-84 bytes (with their offset), so 9 fit in the 800 the replay left.
    assert_eq!(queued, 9, "about 800 bytes of items past the replay");
}

#[test]
fn a_replay_partly_read_still_excuses_what_is_left_of_it() {
    // The client reads 12 frames (three windows of 4) of its 41, then stalls: 29 are left,
    // past twice the bound, and a publish that does not wait still does not cut it.
    let mut sim = Sim::new(config(50).max_queue_frames(8).write_window(4));
    let c = stalled_with_a_long_replay(&mut sim);
    for _ in 0..3 {
        sim.hub
            .handle(sim.now, Input::Written { conn: c, frames: 4 });
        sim.drain();
    }
    assert_eq!(sim.hub.queue_depth(c).expect("open").frames, 29);
    assert_eq!(publish_item_40(&mut sim), 0);
    reads_the_replay_then_live(&mut sim, c);
}

#[test]
fn a_replay_once_read_excuses_nothing_more() {
    // The client reads its replay and item 40, then stalls again: what does not wait now
    // fills its queue to twice the bound and no further, frames and bytes alike.
    for (config, least, most) in [
        (config(50).max_queue_frames(8), 16, 16),
        (
            config(50).max_queue_frames(10_000).max_queue_bytes(800),
            17,
            23,
        ),
    ] {
        let mut sim = Sim::new(config.write_window(4));
        let c = stalled_with_a_long_replay(&mut sim);
        assert_eq!(publish_item_40(&mut sim), 0);
        reads_the_replay_then_live(&mut sim, c);
        sim.stalled.insert(c);
        let queued = publish_until_cut(&mut sim, c);
        assert!(
            (least..=most).contains(&queued),
            "twice the bound once the replay is read: {queued}"
        );
    }
}

#[test]
fn a_room_left_empty_lingers_so_its_members_come_back_to_the_same_epoch() {
    let mut sim = Sim::new(config(10));
    let a = sim.open_path("/");
    sim.subscribe(a, "news");
    let (epoch, since) = position(&sim, a);
    assert_eq!(since, 0, "nothing published yet");
    // Only the last member's leaving makes a room linger.
    let other = sim.open_path("/");
    sim.subscribe(other, "news");
    sim.send(other, r#"{"type":"unsubscribe","channel":"news"}"#);
    assert_eq!(sim.hub.footprint().history_bytes, 0);
    leave_by_dropping(&mut sim, a);
    // Nothing kept, nobody in: the room lingers (and counts against the byte cap).
    assert!(sim.hub.has_room("/", "news"));
    assert!(sim.hub.footprint().history_bytes > 0);
    publish(&mut sim, "news", 0);
    let b = sim.open_path("/");
    subscribe_since(&mut sim, b, since, epoch);
    assert_eq!(sim.of_type(b, "subscribed")[0]["recovered"], json!(true));
    assert_eq!(items(&sim, b), vec![(0, 0)]);

    // Left again; nothing published for a whole TTL: the room and its epoch go.
    sim.send(b, r#"{"type":"unsubscribe","channel":"news"}"#);
    sim.advance(TTL * 2);
    let footprint = sim.hub.footprint();
    assert_eq!((footprint.rooms, footprint.history_bytes), (0, 0));
}

#[test]
fn the_application_joins_a_returning_client_from_where_it_stood() {
    let mut sim = Sim::new(config(10));
    for n in 0..3 {
        publish(&mut sim, "news", n);
    }
    let at = sim.hub.room_position("/", "news").expect("kept");
    let back = tidings_core::Position {
        since: at.since - 2,
        epoch: at.epoch,
    };
    let c = sim.open_path("/");
    let recovered = sim.hub.join_pinned_from(c, "news", back).expect("join");
    sim.drain();
    assert_eq!(recovered, tidings_core::Recovery::Recovered);
    let subscribed = &sim.of_type(c, "subscribed")[0];
    assert_eq!(
        (
            subscribed["server"].clone(),
            subscribed["pinned"].clone(),
            subscribed["recovered"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(items(&sim, c), vec![(1, 1), (2, 2)]);
    // Already in: nothing replayed again.
    assert_eq!(
        sim.hub.join_pinned_from(c, "news", back),
        Ok(tidings_core::Recovery::Recovered)
    );
    sim.drain();
    assert_eq!(items(&sim, c).len(), 2);
    // From another epoch: joined all the same, and told why there is no replay.
    let d = sim.open_path("/");
    let stale = tidings_core::Position {
        since: 0,
        epoch: at.epoch + 1,
    };
    let told = sim.hub.join_pinned_from(d, "news", stale).expect("join");
    assert_eq!(
        told,
        tidings_core::Recovery::NotRecovered(tidings_core::Unrecoverable::EpochChanged)
    );
    sim.drain();
    assert!(sim.hub.in_room(d, "news"));
    assert_eq!(
        sim.of_type(d, "subscribed")[0]["reason"],
        json!("epoch_changed")
    );
    assert!(items(&sim, d).is_empty());
}
