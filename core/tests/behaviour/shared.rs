//! Publications a room's members share: written once per room, handed out as runs, in the
//! same order and with the same bounds as frames queued one by one.

use tidings_core::{Chunk, ConnId, Frame, Input, Message, Target};

use crate::common::Sim;

/// A room "r" with `n` members, nothing written yet.
fn room(n: usize, window: usize) -> (Sim, Vec<ConnId>) {
    let mut sim = Sim::new(Sim::quiet().write_window(window));
    let members: Vec<ConnId> = (0..n).map(|_| sim.open_path("/")).collect();
    for &m in &members {
        sim.hub.join(m, "r").expect("join");
    }
    sim.drain();
    sim.clear();
    (sim, members)
}

fn publish(sim: &mut Sim, target: Target, n: usize) {
    for i in 0..n {
        let delivery = sim
            .hub
            .publish(sim.now, target.clone(), Message::text("m", i.to_string()))
            .expect("publish");
        assert!(delivery.queued > 0 && delivery.disconnected.is_empty());
    }
}

/// A frame for `conn` alone, between publications.
fn direct(sim: &mut Sim, conn: ConnId) {
    let _ = sim
        .hub
        .emit(sim.now, conn, Message::text("m", "direct"))
        .expect("emit");
}

/// Every hand-out until none is left, each connection's frames reported written at once.
fn hand_out_all(sim: &mut Sim) -> Vec<(ConnId, Vec<Chunk>)> {
    let mut handed = Vec::new();
    loop {
        let mut chunks = Vec::new();
        let Some(conn) = sim.hub.poll_transmits(&mut chunks) else {
            break;
        };
        let frames = chunks.iter().map(Chunk::len).sum();
        sim.hub.handle(sim.now, Input::Written { conn, frames });
        handed.push((conn, chunks));
    }
    handed
}

fn data(frames: impl Iterator<Item = Frame>) -> Vec<String> {
    frames
        .filter_map(|f| f.as_text().map(str::to_owned))
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_burst_to_a_room_is_handed_out_in_runs_in_order() {
    let (mut sim, members) = room(3, 512);
    let sent_before = sim.hub.counters().frames_out;
    publish(&mut sim, Target::room("/", "r"), 100);
    let handed = hand_out_all(&mut sim);
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    for &m in &members {
        let chunks: Vec<&Chunk> = handed
            .iter()
            .filter(|(c, _)| *c == m)
            .flat_map(|(_, chunks)| chunks)
            .collect();
        let frames = chunks.iter().flat_map(|c| c.frames()).cloned();
        assert_eq!(data(frames), expected, "every publication once, in order");
        assert!(
            chunks.len() <= 4,
            "100 publications in a few runs, not one entry each: {}",
            chunks.len()
        );
    }
    assert_eq!(sim.hub.counters().frames_out - sent_before, 300);
    for &m in &members {
        assert_eq!(
            sim.hub.queue_depth(m).map(|d| (d.frames, d.bytes)),
            Some((0, 0))
        );
    }
}

#[test]
fn what_comes_between_publications_keeps_its_place() {
    let (mut sim, members) = room(2, 512);
    publish(&mut sim, Target::room("/", "r"), 2);
    direct(&mut sim, members[0]);
    // Leaves the first member out: its run breaks, the other's goes on.
    let _ = sim
        .hub
        .publish(
            sim.now,
            Target::room("/", "r").except(members[0]),
            Message::text("m", "not for 0"),
        )
        .expect("publish");
    publish(&mut sim, Target::room("/", "r"), 2);
    sim.drain();
    assert_eq!(
        data(sim.frames[&members[0]].iter().cloned()),
        ["0", "1", "direct", "0", "1"]
    );
    assert_eq!(
        data(sim.frames[&members[1]].iter().cloned()),
        ["0", "1", "not for 0", "0", "1"]
    );
}

#[test]
fn the_window_splits_a_run_and_a_partial_write_counts_its_exact_bytes() {
    let (mut sim, members) = room(2, 3);
    // Publications of different sizes, so that bytes tell them apart.
    for text in ["a", "bbbbbbbbbb", "cc", "dddddddddddddddddddd", "e"] {
        let _ = sim
            .hub
            .publish(sim.now, Target::room("/", "r"), Message::text("m", text))
            .expect("publish");
    }
    let before = sim.hub.queue_depth(members[0]).expect("open");
    let mut chunks = Vec::new();
    let conn = sim.hub.poll_transmits(&mut chunks).expect("a hand-out");
    let sizes: Vec<usize> = chunks
        .iter()
        .flat_map(Chunk::frames)
        .map(Frame::len)
        .collect();
    assert_eq!(sizes.len(), 3, "the window");
    // The driver wrote one frame, then the next two.
    sim.hub.handle(sim.now, Input::Written { conn, frames: 1 });
    let after_one = sim.hub.queue_depth(conn).expect("open");
    assert_eq!(
        (after_one.frames, after_one.bytes),
        (before.frames - 1, before.bytes - sizes[0])
    );
    sim.hub.handle(sim.now, Input::Written { conn, frames: 2 });
    let after_three = sim.hub.queue_depth(conn).expect("open");
    assert_eq!(
        (after_three.frames, after_three.bytes),
        (2, before.bytes - sizes.iter().sum::<usize>())
    );
    // The rest of the run comes next, in order.
    chunks.clear();
    while let Some(c) = sim.hub.poll_transmits(&mut chunks) {
        if c != conn {
            chunks.clear();
        } else {
            break;
        }
    }
    let rest: Vec<usize> = chunks
        .iter()
        .flat_map(Chunk::frames)
        .map(Frame::len)
        .collect();
    assert_eq!(rest.len(), 2);
    assert!(rest[0] > rest[1], "d before e");
}

#[test]
fn a_slow_member_keeps_its_runs_across_blocks_while_others_move_on() {
    let (mut sim, members) = room(3, 512);
    sim.stalled.insert(members[2]);
    publish(&mut sim, Target::room("/", "r"), 70);
    sim.drain();
    publish(&mut sim, Target::room("/", "r"), 70);
    sim.drain();
    let expected: Vec<String> = (0..70).chain(0..70).map(|i| i.to_string()).collect();
    for &m in &members[..2] {
        assert_eq!(data(sim.frames[&m].iter().cloned()), expected);
    }
    sim.unstall(members[2]);
    assert_eq!(data(sim.frames[&members[2]].iter().cloned()), expected);
}

#[test]
fn one_at_a_time_hand_outs_take_frames_out_of_runs_in_order() {
    let (mut sim, members) = room(2, 512);
    publish(&mut sim, Target::room("/", "r"), 5);
    let mut got = Vec::new();
    while let Some(out) = sim.hub.poll_output() {
        if let tidings_core::Output::Transmit { conn, frame } = out {
            if conn == members[1] {
                got.push(frame);
            }
            sim.hub.handle(sim.now, Input::Written { conn, frames: 1 });
        }
    }
    assert_eq!(data(got.into_iter()), ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_run_followed_by_a_direct_frame_is_split_at_the_window() {
    let (mut sim, members) = room(2, 3);
    publish(&mut sim, Target::room("/", "r"), 5);
    direct(&mut sim, members[0]);
    let bursts: Vec<Vec<String>> = hand_out_all(&mut sim)
        .into_iter()
        .filter(|(conn, _)| *conn == members[0])
        .map(|(_, chunks)| data(chunks.iter().flat_map(Chunk::frames).cloned()))
        .collect();
    assert_eq!(
        bursts,
        [vec!["0", "1", "2"], vec!["3", "4", "direct"]],
        "no burst past the window of 3"
    );
}

#[test]
fn a_closing_member_is_closed_right_after_its_last_shared_publication() {
    // A window larger than the run, and one just as long.
    for window in [512, 2] {
        closed_after_its_last_shared_publication(window);
    }
}

fn closed_after_its_last_shared_publication(window: usize) {
    let (mut sim, members) = room(2, window);
    publish(&mut sim, Target::room("/", "r"), 2);
    sim.hub
        .close(sim.now, members[0], tidings_core::CloseCode::NORMAL, "bye")
        .expect("close");
    let mut chunks = Vec::new();
    let mut closed_after = None;
    loop {
        if let Some(conn) = sim.hub.poll_transmits(&mut chunks) {
            let frames = chunks.iter().map(Chunk::len).sum();
            sim.hub.handle(sim.now, Input::Written { conn, frames });
            continue;
        }
        match sim.hub.poll_output() {
            Some(tidings_core::Output::Close { conn, .. }) if conn == members[0] => {
                closed_after = Some(chunks.iter().map(Chunk::len).sum::<usize>());
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(
        closed_after.is_some_and(|n| n >= 2),
        "the close follows both publications: {closed_after:?}"
    );
}
