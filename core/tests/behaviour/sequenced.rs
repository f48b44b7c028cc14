//! Channels whose stream the backplane numbers and keeps (`Config::sequenced`): every node
//! delivers a publication at the position the backplane gave it, and a node that did not see
//! part of a stream asks the backplane before it answers a subscribe, a recovery or a
//! `history` request, with no gap and no duplicate around the answer. The test plays the
//! backplane by its contract (a sequencer per channel); tidings-redis's tests run the same
//! over a real Redis.

use std::collections::VecDeque;
use std::time::Duration;

use crate::common::Sim;
use serde_json::json;
use tidings_core::{
    ClusterMessage, Config, ConnId, History, Input, Message, Position, Recovery, Stream, Target,
};

const TTL: Duration = Duration::from_secs(60);

fn config() -> Config {
    Sim::quiet()
        .cluster(true)
        .sequenced(true)
        .history("news", History::new(5, TTL))
}

/// The backplane's side: one channel's stream, numbered from `next` in `epoch`.
struct Sequencer {
    epoch: u64,
    next: u64,
    kept: VecDeque<(u64, Message)>,
    max_len: usize,
}

impl Sequencer {
    fn new(epoch: u64, next: u64) -> Self {
        Sequencer {
            epoch,
            next,
            kept: VecDeque::new(),
            max_len: 5,
        }
    }

    /// Numbers what `node` sent to be numbered, and returns it as every node gets it back.
    fn number(&mut self, node: &mut Sim) -> Vec<ClusterMessage> {
        let mut out = Vec::new();
        for m in node.cluster.drain(..) {
            let ClusterMessage::Sequence {
                target,
                message,
                max_len,
                ..
            } = m
            else {
                panic!("only publications to be numbered go out: {m:?}");
            };
            assert_eq!(max_len, 5, "the channel's rule goes with it");
            let offset = self.next;
            self.next += 1;
            self.kept.push_back((offset, message.clone()));
            if self.kept.len() > self.max_len {
                self.kept.pop_front();
            }
            out.push(ClusterMessage::Sequenced {
                target,
                message,
                offset,
                epoch: self.epoch,
            });
        }
        out
    }

    /// The stream as the backplane answers a question from `from`.
    fn stream(&self, from: Option<u64>) -> Stream {
        let entries = match from {
            Some(from) => self
                .kept
                .iter()
                .filter(|(o, _)| *o >= from)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        Stream {
            epoch: self.epoch,
            next: self.next,
            entries,
        }
    }

    /// Answers every question `node` asked.
    fn answer(&self, node: &mut Sim) {
        for fetch in std::mem::take(&mut node.fetches) {
            assert_eq!(fetch.room, "news");
            node.hub
                .fetched(node.now, fetch.id, Some(self.stream(fetch.from)));
            node.drain();
        }
    }
}

fn feed(node: &mut Sim, messages: &[ClusterMessage]) {
    for m in messages {
        node.hub.handle_remote(node.now, m.clone()).expect("remote");
        node.drain();
    }
}

fn publish(node: &mut Sim, n: u64) {
    let message = Message::json("item", json!({ "n": n }));
    let delivery = node
        .hub
        .publish(node.now, Target::room("/", "news"), message)
        .expect("publish");
    assert_eq!(delivery.queued, 0, "delivered only once numbered");
    node.drain();
}

/// Publishes `ns` on `from` and brings the numbered publications to every node of `to`.
fn publish_all(seq: &mut Sequencer, from: &mut Sim, to: &mut [&mut Sim], ns: &[u64]) {
    for &n in ns {
        publish(from, n);
    }
    let numbered = seq.number(from);
    for node in to.iter_mut() {
        feed(node, &numbered);
    }
}

/// The (n, offset, epoch) of each `item` event `conn` received.
fn items(node: &Sim, conn: ConnId) -> Vec<(u64, u64, u64)> {
    node.of_type(conn, "event")
        .iter()
        .filter(|e| e["event"] == "item")
        .map(|e| {
            let num = |k: &str| e[k].as_u64().unwrap_or(u64::MAX);
            (
                e["data"]["n"].as_u64().unwrap_or(u64::MAX),
                num("offset"),
                num("epoch"),
            )
        })
        .collect()
}

/// The `n` of each publication in the last `history` answer `conn` received.
fn backlog(node: &Sim, conn: ConnId) -> Vec<u64> {
    let answers = node.of_type(conn, "history");
    let last = answers.last().expect("a history answer");
    last["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

fn subscribe_since(node: &mut Sim, conn: ConnId, since: u64, epoch: u64) {
    node.send(
        conn,
        &format!(r#"{{"type":"subscribe","channel":"news","since":{since},"epoch":{epoch}}}"#),
    );
}

/// A subscribed member of "news" on `node`, the backplane answering its question.
fn member(node: &mut Sim, seq: &Sequencer) -> ConnId {
    let c = node.open_path("/");
    node.subscribe(c, "news");
    seq.answer(node);
    assert!(node.hub.in_room(c, "news"));
    c
}

#[test]
fn a_publication_is_delivered_at_the_position_the_backplane_gave_it_on_every_node() {
    let mut seq = Sequencer::new(777, 40);
    let (mut a, mut b) = (Sim::new(config()), Sim::new(config()));
    let on_a = a.open_path("/");
    a.subscribe(on_a, "news");
    assert!(!a.hub.in_room(on_a, "news"), "waits for the backplane");
    assert_eq!(a.fetches.len(), 1);
    assert_eq!(
        a.fetches[0].from, None,
        "a plain subscribe asks where it stands"
    );
    seq.answer(&mut a);
    let subscribed = &a.of_type(on_a, "subscribed")[0];
    assert_eq!(
        (subscribed["offset"].clone(), subscribed["epoch"].clone()),
        (json!(40), json!(777))
    );
    let on_b = member(&mut b, &seq);

    publish(&mut a, 1);
    publish(&mut a, 2);
    assert!(
        items(&a, on_a).is_empty(),
        "not delivered before it is numbered"
    );
    let numbered = seq.number(&mut a);
    feed(&mut a, &numbered);
    feed(&mut b, &numbered);
    let want = vec![(1, 40, 777), (2, 41, 777)];
    assert_eq!(items(&a, on_a), want);
    assert_eq!(items(&b, on_b), want);
    // The same publication again (a backplane that delivers twice) is not delivered twice.
    feed(&mut b, &numbered);
    assert_eq!(items(&b, on_b), want);
}

#[test]
fn a_client_recovers_on_a_node_that_did_not_see_what_it_missed() {
    let mut seq = Sequencer::new(9, 0);
    let mut a = Sim::new(config());
    member(&mut a, &seq);
    publish_all(&mut seq, &mut a, &mut [], &[1, 2, 3, 4]);
    // A client saw offsets 0 and 1 (items 1 and 2) on a node now gone; b never saw the
    // channel.
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 2, 9);
    assert_eq!(b.fetches[0].from, Some(2));
    seq.answer(&mut b);
    let subscribed = &b.of_type(c, "subscribed")[0];
    assert_eq!(subscribed["recovered"], json!(true));
    assert_eq!(items(&b, c), vec![(3, 2, 9), (4, 3, 9)]);
    // Live after the replay; what the answer brought is not delivered again when it comes.
    publish(&mut a, 5);
    let numbered = seq.number(&mut a);
    feed(&mut b, &numbered);
    assert_eq!(items(&b, c), vec![(3, 2, 9), (4, 3, 9), (5, 4, 9)]);
}

#[test]
fn publications_arriving_while_the_backplane_answers_are_neither_lost_nor_doubled() {
    let mut seq = Sequencer::new(5, 0);
    let mut a = Sim::new(config());
    let old = member(&mut a, &seq);
    // A second node holds the publisher; `a` hears of 0..2 now.
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [&mut a], &[0, 1, 2]);
    // A client comes back to `a` from offset 0 after `a` dropped its link: `a` asks.
    a.hub.backplane_lost();
    let c = a.open_path("/");
    subscribe_since(&mut a, c, 0, 5);
    assert_eq!(a.fetches.len(), 1);
    // Meanwhile 3 and 4 are numbered; the backplane answers with them, and only then does
    // `a` hear of 4 (3 it never hears of: lost with the link).
    publish(&mut p, 3);
    publish(&mut p, 4);
    let numbered = seq.number(&mut p);
    seq.answer(&mut a);
    feed(&mut a, &numbered[1..]);
    let all: Vec<_> = (0..5).map(|n| (n, n, 5)).collect();
    assert_eq!(
        items(&a, c),
        all,
        "the returning client: replay then live, once each"
    );
    assert_eq!(
        items(&a, old),
        all,
        "the member that stayed: 3 came with the answer, once"
    );
}

#[test]
fn a_new_epoch_or_a_trimmed_stream_is_told() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2, 3, 4, 5, 6, 7]);
    let mut b = Sim::new(config());
    // Kept: 3..=7. From 1 is too old, on a node that asks as on one that kept it.
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 1, 1);
    seq.answer(&mut b);
    assert_eq!(b.of_type(c, "subscribed")[0]["reason"], json!("too_old"));
    assert!(b.hub.in_room(c, "news"));
    assert!(items(&b, c).is_empty());
    // The backplane lost the stream: a new epoch.
    let mut lost = Sequencer::new(2, 0);
    let d = b.open_path("/");
    b.hub.backplane_lost();
    subscribe_since(&mut b, d, 8, 1);
    lost.answer(&mut b);
    assert_eq!(
        b.of_type(d, "subscribed")[0]["reason"],
        json!("epoch_changed")
    );
    assert_eq!(b.of_type(d, "subscribed")[0]["epoch"], json!(2));
    publish_all(&mut lost, &mut p, &mut [&mut b], &[9]);
    assert_eq!(items(&b, d), vec![(9, 0, 2)]);
    assert_eq!(
        items(&b, c),
        vec![(9, 0, 2)],
        "the member left from the old epoch too"
    );
}

#[test]
fn a_node_that_saw_the_stream_recovers_without_asking() {
    let mut seq = Sequencer::new(3, 0);
    let mut a = Sim::new(config());
    member(&mut a, &seq);
    publish(&mut a, 0);
    publish(&mut a, 1);
    let numbered = seq.number(&mut a);
    feed(&mut a, &numbered);
    let c = a.open_path("/");
    subscribe_since(&mut a, c, 1, 3);
    assert!(a.fetches.is_empty(), "served from what it kept");
    assert_eq!(items(&a, c), vec![(1, 1, 3)]);
    let d = a.open_path("/");
    a.subscribe(d, "news");
    assert!(a.fetches.is_empty(), "where it stands is known");
    assert_eq!(a.of_type(d, "subscribed")[0]["offset"], json!(2));
}

#[test]
fn history_asks_the_backplane_for_what_this_node_did_not_keep() {
    let mut seq = Sequencer::new(4, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2]);
    let mut b = Sim::new(config());
    let c = member(&mut b, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut b], &[3]);
    b.send(
        c,
        r#"{"type":"history","channel":"news","id":"h","limit":3}"#,
    );
    assert_eq!(b.fetches.len(), 1, "it kept one of the last three");
    seq.answer(&mut b);
    assert_eq!(backlog(&b, c), vec![1, 2, 3]);
    assert_eq!(
        items(&b, c),
        vec![(3, 3, 4)],
        "the older ones are not delivered live"
    );
}

#[test]
fn a_backplane_that_cannot_answer_leaves_the_node_to_answer_alone() {
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 3, 8);
    assert_eq!(b.hub.footprint().fetches, 1);
    let fetch = b.fetches.remove(0);
    b.hub.fetched(b.now, fetch.id, None);
    b.drain();
    let subscribed = &b.of_type(c, "subscribed")[0];
    assert_eq!(subscribed["recovered"], json!(false));
    assert!(b.hub.in_room(c, "news"));
    assert_eq!(b.hub.footprint().fetches, 0);
}

#[test]
fn the_application_joins_a_returning_client_once_the_backplane_answers() {
    let mut seq = Sequencer::new(6, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1]);
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    let from = Position { since: 1, epoch: 6 };
    assert_eq!(b.hub.join_pinned_from(c, "news", from), Ok(Recovery::Asked));
    b.drain();
    assert!(!b.hub.in_room(c, "news"));
    seq.answer(&mut b);
    assert!(b.hub.is_pinned(c, "news"));
    assert_eq!(b.of_type(c, "subscribed")[0]["recovered"], json!(true));
    assert_eq!(items(&b, c), vec![(1, 1, 6)]);
}

#[test]
fn a_client_that_leaves_or_closes_before_the_answer_is_not_joined() {
    let seq = Sequencer::new(6, 0);
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    b.subscribe(c, "news");
    b.send(c, r#"{"type":"unsubscribe","channel":"news","id":"u"}"#);
    assert_eq!(b.of_type(c, "unsubscribed").len(), 1);
    let d = b.open_path("/");
    b.subscribe(d, "news");
    b.hub.handle(
        b.now,
        Input::TransportError {
            conn: d,
            error: "gone".into(),
        },
    );
    b.drain();
    seq.answer(&mut b);
    assert!(!b.hub.in_room(c, "news"));
    assert!(b.of_type(c, "subscribed").is_empty());
    b.advance(Duration::from_secs(10));
    let footprint = b.hub.footprint();
    assert_eq!(
        (footprint.sessions, footprint.fetches, footprint.rooms),
        (1, 0, 0),
        "the room lived while asked about, not after"
    );
}

#[test]
fn a_client_ahead_of_a_node_still_waiting_for_publications_gets_none_twice() {
    let mut seq = Sequencer::new(2, 0);
    let mut p = Sim::new(config());
    for n in 0..3 {
        publish(&mut p, n);
    }
    let numbered = seq.number(&mut p);
    // The client saw 0..=2 on another node; here only 0 has arrived yet.
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 3, 2);
    assert_eq!(b.fetches[0].from, Some(3));
    feed(&mut b, &numbered[..1]);
    seq.answer(&mut b);
    assert_eq!(b.fetches.len(), 1, "asks again for what it lacks");
    assert_eq!(b.fetches[0].from, Some(1));
    seq.answer(&mut b);
    assert_eq!(b.of_type(c, "subscribed")[0]["recovered"], json!(true));
    feed(&mut b, &numbered[1..]);
    assert!(items(&b, c).is_empty(), "nothing it had");
    publish_all(&mut seq, &mut p, &mut [&mut b], &[3]);
    assert_eq!(items(&b, c), vec![(3, 3, 2)]);
}

#[test]
fn without_a_sequencing_backplane_a_node_numbers_its_own() {
    for config in [
        Sim::quiet()
            .cluster(true)
            .history("news", History::new(5, TTL)),
        Sim::quiet()
            .sequenced(true)
            .history("news", History::new(5, TTL)),
    ] {
        let mut a = Sim::new(config);
        let c = a.open_path("/");
        a.subscribe(c, "news");
        assert!(a.fetches.is_empty() && a.hub.in_room(c, "news"));
        let message = Message::json("item", json!({ "n": 1 }));
        let delivery = a
            .hub
            .publish(a.now, Target::room("/", "news"), message)
            .expect("publish");
        a.drain();
        assert_eq!(delivery.queued, 1, "delivered here at once");
        assert_eq!(
            items(&a, c),
            vec![(1, 0, items(&a, c)[0].2)],
            "numbered here, from 0"
        );
        // With a cluster, it goes to the others as a plain publish; without, nowhere.
        let plain = usize::from(a.hub.config().cluster);
        assert_eq!(a.cluster.len(), plain);
        assert!(a
            .cluster
            .iter()
            .all(|m| matches!(m, ClusterMessage::Publish { .. })));
    }
}

#[test]
fn a_numbered_publication_counts_as_remote() {
    let mut seq = Sequencer::new(1, 0);
    let mut a = Sim::new(config());
    member(&mut a, &seq);
    publish_all(&mut seq, &mut a, &mut [], &[]);
    publish(&mut a, 0);
    publish(&mut a, 1);
    let numbered = seq.number(&mut a);
    feed(&mut a, &numbered);
    assert_eq!(a.hub.counters().remote_publishes, 2);
}

#[test]
fn what_the_backplane_gives_back_is_kept_as_long_as_what_this_node_kept() {
    let mut seq = Sequencer::new(1, 0);
    let mut a = Sim::new(config());
    let stays = member(&mut a, &seq);
    publish_all(&mut seq, &mut a, &mut [], &[]);
    for n in 0..2 {
        publish(&mut a, n);
    }
    let numbered = seq.number(&mut a);
    feed(&mut a, &numbered);
    // This node's own copies expire; the backplane still has them.
    a.advance(TTL + Duration::from_secs(1));
    assert_eq!(a.hub.footprint().history_bytes, 0);
    let c = a.open_path("/");
    subscribe_since(&mut a, c, 0, 1);
    assert_eq!(a.fetches.len(), 1);
    seq.answer(&mut a);
    assert_eq!(a.of_type(c, "subscribed")[0]["recovered"], json!(true));
    assert_eq!(items(&a, c), vec![(0, 0, 1), (1, 1, 1)]);
    assert_eq!(items(&a, stays), vec![(0, 0, 1), (1, 1, 1)], "not twice");
    // Given back now, they expire a ttl from now, with what this node keeps from then.
    publish_all(&mut seq, &mut a, &mut [], &[]);
    publish(&mut a, 2);
    let numbered = seq.number(&mut a);
    feed(&mut a, &numbered);
    a.advance(TTL / 2);
    a.send(c, r#"{"type":"history","channel":"news","id":"h"}"#);
    seq.answer(&mut a);
    assert_eq!(backlog(&a, c).len(), 3);
    a.advance(TTL / 2 + Duration::from_secs(1));
    assert_eq!(a.hub.footprint().history_bytes, 0, "all gone together");
}

#[test]
fn a_node_keeps_no_more_than_its_rule_also_of_what_it_is_given() {
    let mut seq = Sequencer::new(1, 0);
    seq.max_len = 10;
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2, 3, 4]);
    // b hears 5..=7 live; older ones it is given back, up to five kept in all.
    let mut b = Sim::new(config());
    member(&mut b, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut b], &[5, 6, 7]);
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 1, 1);
    seq.answer(&mut b);
    assert_eq!(
        b.of_type(c, "subscribed")[0]["reason"],
        json!("too_old"),
        "five kept here: from 3 on"
    );
    b.send(
        c,
        r#"{"type":"history","channel":"news","id":"h","limit":100}"#,
    );
    seq.answer(&mut b);
    assert_eq!(backlog(&b, c).len(), 5);
}

#[test]
fn an_older_publication_given_back_expires_with_the_oldest_kept_one() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0]);
    // b joins after 0 and keeps 1 only.
    let mut b = Sim::new(config());
    member(&mut b, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut b], &[1]);
    b.advance(TTL / 2);
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 0, 1);
    seq.answer(&mut b);
    assert_eq!(items(&b, c), vec![(0, 0, 1), (1, 1, 1)]);
    b.advance(TTL / 2 + Duration::from_secs(1));
    assert_eq!(
        b.hub.footprint().history_bytes,
        0,
        "0 went with 1, not a ttl after it was given back"
    );
}

#[test]
fn members_get_what_was_published_while_the_link_was_down_in_order() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut a], &[0, 1]);
    a.hub.backplane_lost();
    publish_all(&mut seq, &mut p, &mut [], &[2, 3]); // a never hears of these
    a.hub.backplane_restored();
    a.drain();
    assert_eq!(a.fetches.len(), 1);
    assert_eq!(a.fetches[0].from, Some(2), "from where its members stand");
    // 4 arrives live before the answer: held until then.
    publish_all(&mut seq, &mut p, &mut [&mut a], &[4]);
    assert_eq!(items(&a, m).len(), 2);
    seq.answer(&mut a);
    let all: Vec<_> = (0..5).map(|n| (n, n, 1)).collect();
    assert_eq!(items(&a, m), all);
    // A node with nobody in the channel asks nothing.
    let mut idle = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [&mut idle], &[5]);
    idle.hub.backplane_lost();
    idle.hub.backplane_restored();
    idle.drain();
    assert!(idle.fetches.is_empty());
}

#[test]
fn a_gap_in_what_arrives_is_filled_from_the_backplane_first() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq);
    for n in 0..3 {
        publish(&mut p, n);
    }
    let numbered = seq.number(&mut p);
    feed(&mut a, &numbered[..1]);
    feed(&mut a, &numbered[2..]); // 1 went missing on the way
    assert_eq!(items(&a, m), vec![(0, 0, 1)]);
    assert_eq!(a.fetches[0].from, Some(1));
    seq.answer(&mut a);
    assert_eq!(items(&a, m), vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
    // If the backplane cannot be asked, what was held goes out with the gap.
    publish_all(&mut seq, &mut p, &mut [], &[3]);
    publish_all(&mut seq, &mut p, &mut [&mut a], &[4]);
    let fetch = a.fetches.remove(0);
    a.hub.fetched(a.now, fetch.id, None);
    a.drain();
    assert_eq!(items(&a, m).last(), Some(&(4, 4, 1)));
    assert_eq!(a.hub.footprint().fetches, 0);
}

#[test]
fn what_leaves_someone_out_or_may_be_dropped_is_not_numbered_and_goes_out_at_once() {
    let seq = Sequencer::new(1, 0);
    let mut a = Sim::new(config());
    let (m, other) = (member(&mut a, &seq), member(&mut a, &seq));
    let volatile = Message::json("item", json!({ "n": 1 })).volatile();
    let except = Target::room("/", "news").except(other);
    for (target, message) in [
        (Target::room("/", "news"), volatile),
        (except, Message::json("item", json!({ "n": 2 }))),
    ] {
        let delivery = a.hub.publish(a.now, target, message).expect("publish");
        assert!(delivery.queued >= 1, "delivered here at once");
    }
    a.drain();
    assert!(a
        .cluster
        .iter()
        .all(|c| !matches!(c, ClusterMessage::Sequence { .. })));
    let got = a.of_type(m, "event");
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e.get("offset").is_none()));
}

#[test]
fn a_new_epoch_arriving_live_starts_the_stream_again() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut a], &[0, 1]);
    // Redis lost the stream: the next publication is offset 0 of a new epoch.
    let mut lost = Sequencer::new(2, 0);
    publish_all(&mut lost, &mut p, &mut [&mut a], &[9]);
    assert_eq!(items(&a, m), vec![(0, 0, 1), (1, 1, 1), (9, 0, 2)]);
    a.send(
        m,
        r#"{"type":"history","channel":"news","id":"h","limit":5}"#,
    );
    lost.answer(&mut a);
    assert_eq!(backlog(&a, m), vec![9], "nothing of the old epoch");
}

#[test]
fn requests_about_one_channel_share_a_question_and_each_is_answered() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1]);
    let mut b = Sim::new(config());
    // Three clients back from the same position, one that wants only the live stream.
    let back: Vec<ConnId> = (0..3).map(|_| b.open_path("/")).collect();
    for &c in &back {
        subscribe_since(&mut b, c, 0, 1);
    }
    let fresh = b.open_path("/");
    b.subscribe(fresh, "news");
    assert_eq!(b.fetches.len(), 1, "one question for all four");
    assert_eq!(b.hub.footprint().fetches, 4);
    seq.answer(&mut b);
    assert!(b.fetches.is_empty(), "the answer served them all");
    for &c in &back {
        assert_eq!(items(&b, c), vec![(0, 0, 1), (1, 1, 1)]);
    }
    assert_eq!(b.of_type(fresh, "subscribed")[0]["offset"], json!(2));
    // One that needs more than the question in flight asks in turn.
    let (c, d) = (b.open_path("/"), b.open_path("/"));
    b.hub.backplane_lost();
    b.subscribe(c, "news");
    subscribe_since(&mut b, d, 0, 1);
    assert_eq!(b.fetches.len(), 1);
    assert_eq!(
        b.fetches[0].from,
        Some(2),
        "c's question: from where the node stands"
    );
    b.send(d, r#"{"type":"unsubscribe","channel":"news","id":"u"}"#);
    seq.answer(&mut b);
    assert!(
        b.fetches.is_empty(),
        "d left before its turn: nothing asked for it"
    );
    assert!(b.hub.in_room(c, "news") && !b.hub.in_room(d, "news"));
    assert_eq!(b.hub.footprint().fetches, 0);
}

#[test]
fn a_history_request_asks_only_for_what_this_node_lacks() {
    let mut seq = Sequencer::new(1, 0);
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [&mut a], &[0, 1, 2]);
    for asked in [
        r#"{"type":"history","channel":"news","limit":2}"#,
        r#"{"type":"history","channel":"news","since":1,"epoch":1}"#,
        r#"{"type":"history","channel":"news","since":0,"epoch":5}"#,
    ] {
        a.send(m, asked);
        assert!(a.fetches.is_empty(), "{asked}: served here");
    }
    // Once the link broke, even what it has may be behind.
    a.hub.backplane_lost();
    a.send(m, r#"{"type":"history","channel":"news","limit":2}"#);
    assert_eq!(a.fetches.len(), 1);
    seq.answer(&mut a);
    // A node that joined late lacks what came before.
    let mut b = Sim::new(config());
    let n = member(&mut b, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut a, &mut b], &[3]);
    b.send(
        n,
        r#"{"type":"history","channel":"news","since":1,"epoch":1}"#,
    );
    assert_eq!(b.fetches.len(), 1);
    seq.answer(&mut b);
    assert_eq!(backlog(&b, n), vec![1, 2, 3]);
    // Five more: it keeps the last five of the stream, so the last two are here.
    publish_all(&mut seq, &mut p, &mut [&mut b], &[4, 5, 6, 7, 8]);
    b.send(n, r#"{"type":"history","channel":"news","limit":2}"#);
    assert!(b.fetches.is_empty());
}

#[test]
fn a_client_that_missed_nothing_is_answered_after_one_question() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1]);
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 2, 1);
    seq.answer(&mut b);
    assert!(b.fetches.is_empty());
    assert_eq!(b.of_type(c, "subscribed")[0]["recovered"], json!(true));
}

#[test]
fn a_client_ahead_of_what_the_backplane_still_keeps_is_answered_after_two_questions() {
    let mut seq = Sequencer::new(1, 0);
    seq.max_len = 2;
    let mut p = Sim::new(config());
    for n in 0..4 {
        publish(&mut p, n);
    }
    let numbered = seq.number(&mut p); // keeps 2 and 3
    let mut b = Sim::new(config());
    let m = member(&mut b, &Sequencer::new(1, 0));
    let c = b.open_path("/");
    subscribe_since(&mut b, c, 4, 1);
    feed(&mut b, &numbered[..1]); // b has heard of 0 only
    seq.answer(&mut b);
    assert_eq!(b.fetches[0].from, Some(1));
    seq.answer(&mut b);
    assert!(b.fetches.is_empty(), "no third question");
    assert!(b.hub.in_room(c, "news"));
    // 1 is still on its way: the answer's 2 and 3 wait for it, for the member that stays.
    feed(&mut b, &numbered[1..]);
    let got: Vec<u64> = items(&b, m).iter().map(|i| i.1).collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
}

#[test]
fn a_node_that_lost_its_link_follows_the_answer_past_what_was_trimmed() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq);
    publish_all(&mut seq, &mut p, &mut [&mut a], &[0, 1]);
    a.hub.backplane_lost();
    publish_all(&mut seq, &mut p, &mut [], &[2, 3, 4, 5, 6, 7, 8, 9]); // kept: 5..=9
    let c = a.open_path("/");
    a.subscribe(c, "news");
    assert_eq!(a.fetches[0].from, Some(2));
    seq.answer(&mut a);
    let got: Vec<u64> = items(&a, m).iter().map(|i| i.1).collect();
    assert_eq!(got, vec![0, 1, 5, 6, 7, 8, 9], "2..=4 are gone");
    assert_eq!(a.of_type(c, "subscribed")[0]["offset"], json!(10));
    // Again, and this time everything expired: the stream goes on from its end.
    a.hub.backplane_lost();
    publish_all(&mut seq, &mut p, &mut [], &[10, 11]);
    seq.kept.clear();
    let d = a.open_path("/");
    a.subscribe(d, "news");
    seq.answer(&mut a);
    assert_eq!(a.of_type(d, "subscribed")[0]["offset"], json!(12));
    assert_eq!(items(&a, m).len(), 7);
}

#[test]
fn history_requests_that_share_a_question_are_each_answered() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2]);
    let mut b = Sim::new(config());
    let m = member(&mut b, &seq);
    b.send(
        m,
        r#"{"type":"history","channel":"news","id":"1","limit":2}"#,
    );
    b.send(
        m,
        r#"{"type":"history","channel":"news","id":"2","limit":3}"#,
    );
    assert_eq!(b.fetches.len(), 1);
    seq.answer(&mut b);
    assert!(b.fetches.is_empty());
    let answers = b.of_type(m, "history");
    let counts: Vec<_> = answers
        .iter()
        .map(|h| (h["ref"].clone(), h["publications"].as_array().map(Vec::len)))
        .collect();
    assert_eq!(counts, vec![(json!("1"), Some(2)), (json!("2"), Some(3))]);
}

#[test]
fn a_client_the_application_joins_is_told_the_clusters_position() {
    let mut seq = Sequencer::new(3, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1]);
    let mut b = Sim::new(config());
    let c = b.open_path("/");
    assert_eq!(b.hub.join(c, "news"), Ok(true));
    b.drain();
    assert!(b.hub.in_room(c, "news"), "in the room at once");
    assert!(
        b.of_type(c, "subscribed").is_empty(),
        "told once the position is known"
    );
    assert_eq!(b.fetches[0].from, None);
    // What arrives meanwhile waits for the `subscribed`, and is delivered after it if the
    // stream the answer describes goes on from before it.
    publish(&mut p, 2);
    let two = seq.number(&mut p);
    let answer_before_two = Sequencer::new(3, 2);
    feed(&mut b, &two);
    assert!(items(&b, c).is_empty());
    answer_before_two.answer(&mut b);
    let subscribed = &b.of_type(c, "subscribed")[0];
    assert_eq!(
        (subscribed["offset"].clone(), subscribed["epoch"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(items(&b, c), vec![(2, 2, 3)]);
    // Where the position is known, at once; pinned ones are told they are pinned.
    let d = b.open_path("/");
    assert_eq!(b.hub.join_pinned(d, "news"), Ok(true));
    b.drain();
    assert!(b.fetches.is_empty());
    assert_eq!(b.of_type(d, "subscribed")[0]["pinned"], json!(true));
    assert_eq!(b.of_type(d, "subscribed")[0]["offset"], json!(3));
}

#[test]
fn what_an_answer_brings_while_a_room_catches_up_is_held_in_order() {
    let mut seq = Sequencer::new(1, 0);
    seq.max_len = 10;
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2, 3, 4]);
    let mut a = Sim::new(config());
    let m = member(&mut a, &seq); // at 5
    let c = a.open_path("/");
    subscribe_since(&mut a, c, 3, 1);
    let asked_for_c = a.fetches.remove(0);
    assert_eq!(asked_for_c.from, Some(3));
    // 5, 6 and 7 are numbered; only 7 reaches a: a gap, so a catches up from 5.
    for n in 5..8 {
        publish(&mut p, n);
    }
    let numbered = seq.number(&mut p);
    feed(&mut a, &numbered[2..]);
    let catching_up = a.fetches.remove(0);
    assert_eq!(catching_up.from, Some(5));
    // c's answer comes first (with 3..=7), then the catch-up cannot be answered.
    a.hub
        .fetched(a.now, asked_for_c.id, Some(seq.stream(Some(3))));
    a.drain();
    assert!(items(&a, m).is_empty(), "held until the catch-up's answer");
    a.hub.fetched(a.now, catching_up.id, None);
    a.drain();
    let offsets = |conn| items(&a, conn).iter().map(|i| i.1).collect::<Vec<_>>();
    assert_eq!(offsets(m), vec![5, 6, 7]);
    assert_eq!(offsets(c), vec![3, 4, 5, 6, 7]);
}

#[test]
fn a_room_stops_holding_when_the_backplane_takes_too_long() {
    // A room holds at most a queue's bound.
    const LIMIT: u64 = 64;
    let mut seq = Sequencer::new(1, 0);
    seq.max_len = 1;
    let mut p = Sim::new(config());
    let mut a = Sim::new(config().max_queue_frames(LIMIT as usize));
    let m = member(&mut a, &seq);
    a.hub.backplane_lost();
    a.hub.backplane_restored();
    a.drain();
    let catching_up = a.fetches.remove(0);
    for n in 0..LIMIT - 1 {
        publish(&mut p, n);
    }
    let numbered = seq.number(&mut p);
    feed(&mut a, &numbered);
    assert!(items(&a, m).is_empty(), "held while it waits");
    publish_all(&mut seq, &mut p, &mut [&mut a], &[LIMIT - 1]);
    assert_eq!(
        items(&a, m).len() as u64,
        LIMIT,
        "delivered, not held without end"
    );
    // The answer, late, brings nothing twice.
    a.hub
        .fetched(a.now, catching_up.id, Some(seq.stream(Some(0))));
    a.drain();
    assert_eq!(items(&a, m).len() as u64, LIMIT);
    assert_eq!(a.hub.footprint().fetches, 0);
}

#[test]
fn a_waiting_history_request_of_a_client_that_left_is_not_answered() {
    let mut seq = Sequencer::new(1, 0);
    let mut p = Sim::new(config());
    publish_all(&mut seq, &mut p, &mut [], &[0, 1, 2]);
    let mut b = Sim::new(config());
    let m = member(&mut b, &seq);
    b.send(
        m,
        r#"{"type":"history","channel":"news","id":"1","limit":3}"#,
    );
    b.send(
        m,
        r#"{"type":"history","channel":"news","id":"2","limit":3}"#,
    );
    b.send(m, r#"{"type":"unsubscribe","channel":"news","id":"u"}"#);
    seq.answer(&mut b);
    let refs: Vec<_> = b
        .of_type(m, "history")
        .iter()
        .map(|h| h["ref"].clone())
        .collect();
    assert!(
        refs.is_empty(),
        "no backlog for a channel it left: {refs:?}"
    );
}
