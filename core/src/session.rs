//! Per-connection state: lifecycle, the bounded outbound queue, the timer table, pending acks
//! and metadata. A session knows the ids of its rooms but holds no reference into the hub.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use litemap::LiteMap;
use serde_json::Value;

use crate::frame::{CloseCode, Frame};
use crate::ids::{AckId, ConnId};
use crate::info::ConnectionInfo;
use crate::outbound::{Block, Chunk, Flight, InFlight, Run, Spill};
use crate::protocol::Protocol;
use crate::timers::{ConnTimer, TimerKey, Timers};

/// `Open → Closing → (removed)`. One word (the closing details are boxed, as a session
/// closes once), so that it sits in the cache line every fan-out reads anyway.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum State {
    Open,
    /// No new frames are accepted.
    Closing(Box<Closing>),
}

/// How a closing session closes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Closing {
    pub code: CloseCode,
    pub reason: String,
    /// Queued frames still go out and the close follows the last of them (or the close
    /// timer); without, the transport is gone and the close timer only delays freeing the
    /// state.
    pub flush: bool,
}

impl State {
    /// `Closing` with `code`, `reason` and `flush`.
    pub(crate) fn closing(code: CloseCode, reason: String, flush: bool) -> Self {
        State::Closing(Box::new(Closing {
            code,
            reason,
            flush,
        }))
    }
}

/// A queue's bound, from `Config::max_queue_frames` and `Config::max_queue_bytes`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub frames: usize,
    pub bytes: usize,
}

/// How far a frame may fill a queue, by what its source can do about a queue that is behind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fill {
    /// Up to the bound: volatile frames and pings, dropped rather than deepen a queue that is
    /// behind.
    Bound,
    /// Up to twice the bound, plus what a recovery's replay put past the bound and is still
    /// queued: sources that cannot wait (notices, batches, publishes that did not wait for
    /// room, other nodes).
    Overflow,
    /// Without limit: replies, which answer what the client asked, and a publishing client,
    /// whose reading is paused as soon as a queue it feeds is behind, so what it adds past
    /// the bound is only what the driver had read.
    Pushback,
    /// Without limit, as `Pushback`: a recovery's replay, an answer as long as what the
    /// client missed. What it puts past the bound does not use up the allowance of sources
    /// that cannot wait (`Overflow`): a client that reads its long replay is not cut for it.
    Replay,
}

/// The outcome of offering a frame to a session's queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Offer {
    Queued,
    /// The queue is full.
    Full,
    /// The session takes no new frames.
    NotOpen,
}

/// Fields are in C order, the ones every fan-out touches first: a broadcast to a large room
/// reads and writes the first cache lines of each member's session, not all of it, and the
/// upgrade request (read at connect and by `Hub::info`) sits behind a pointer. At 100,000
/// members this halved the cost per recipient (`cargo bench -p tidings-core --bench fanout`).
///
/// The hot fields fill exactly the first two cache lines (see [`HOT_BYTES`]), and rustc
/// keeps the slab's occupancy tag in `in_flight`'s discriminant (byte 88), so an offer, a
/// hand-out and a write report each touch those two lines of a member and no third. With
/// the queue and the in-flight tail as four-word deques they took three, and at 10,000
/// members the hot part of the room no longer fit in a core's L2 (1 MiB here): two lines
/// made `fanout/10000` 0.88x as long.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Session {
    // Hot: fan-out, `poll_output` and `Input::Written`.
    pub generation: u32,
    /// Whether the session is in the hub's ready list.
    pub ready: bool,
    /// Whether a ping waits in `queue`: at most one does.
    ping_queued: bool,
    /// What it speaks: read per recipient by a fan-out.
    pub protocol: Protocol,
    /// Past the bound and not yet drained to half of it (the hub's `behind` set holds it).
    pub behind: bool,
    /// Read by every offer and hand-out: in the first line, not the third.
    pub state: State,
    /// The run of room publications a publish to the same room extends, queued after
    /// `queue`: kept here, in the lines a fan-out touches anyway, rather than at the end of
    /// `queue`, whose tail is a cache miss per recipient (perf: half of the offer's time).
    open: Option<Run>,
    /// Frames and bytes in `queue` and `open`, then handed out and not yet written: what
    /// the bounds count, in the session's first cache line with `open`.
    queued_frames: usize,
    queued_bytes: usize,
    in_flight_frames: usize,
    in_flight_bytes: usize,
    /// What a recovery's replay put past the bound and is still queued, if anything: boxed,
    /// as it is rare, so that the fields a fan-out touches stay together.
    excused: Option<Box<Excused>>,
    /// Frames not yet handed to the driver (before `open`): single frames, and runs of room
    /// publications shared with the other members.
    queue: Spill<Chunk>,
    /// What was handed to the driver and not yet reported written, oldest first.
    in_flight: InFlight,
    /// Server→client ack requests and their deadlines, pings of [`Hub::ping`] included.
    ///
    /// [`Hub::ping`]: crate::Hub::ping
    pub acks_out: BTreeMap<AckId, Instant>,
    /// Those of `acks_out` that are pings, with when each was asked.
    pub pings: BTreeMap<AckId, Instant>,
    // Warm: inbound frames and timers.
    /// Its reading is paused until the room it published to has no member behind.
    pub paused: bool,
    pub last_seen: Instant,
    /// Inbound frames in the current rate window, and when it began.
    pub rate_count: u32,
    pub rate_since: Instant,
    pub timers: [Option<Instant>; ConnTimer::COUNT],
    pub namespace: usize,
    /// The index in `Config::paths` of the rule its path matched, if one did.
    pub rule: Option<usize>,
    /// Marked by [`Hub::authenticate`](crate::Hub::authenticate).
    pub authenticated: bool,
    pub errors: u32,
    pub errors_since: Instant,
    // Cold: subscriptions, acks asked of the server, metadata, the upgrade request.
    /// Rooms by id, each with its name for events: sorted in one `Vec`, as a connection is
    /// in a few rooms (at most `Config::max_rooms_per_connection`), and a B-tree's first
    /// node would be 280 bytes of every idle connection's memory.
    pub rooms: LiteMap<usize, Arc<str>>,
    /// Channels the client asked for that wait for the application's decision, with the
    /// request's `id` to answer with as `ref` and the position it asked to recover from.
    pub pending_subscribes: BTreeMap<String, (Option<String>, Option<crate::history::Position>)>,
    /// Client→server ack requests the application has not answered, with the deadline by
    /// which the server answers them itself (`Config::answer_timeout`).
    pub acks_in: BTreeMap<u64, Instant>,
    /// Rooms the application put the connection in and keeps it in: its `unsubscribe` from
    /// them is refused.
    pub pinned: BTreeSet<usize>,
    pub metadata: BTreeMap<String, Value>,
    pub info: Box<ConnectionInfo>,
}

/// How much of a session every fan-out reads: its first two cache lines, through
/// `in_flight`. Checked at compile time, so a field added among the hot ones shows here.
const HOT_BYTES: usize = 128;
const _: () = assert!(
    std::mem::offset_of!(Session, in_flight) + std::mem::size_of::<InFlight>() <= HOT_BYTES
);

/// Whether `frame` is the heartbeat's ping (empty; an application's ping names itself).
fn is_heartbeat(frame: &Frame) -> bool {
    matches!(frame, Frame::Ping(payload) if payload.is_empty())
}

/// What a recovery's replay ([`Fill::Replay`]) put past the bound and is still queued: a
/// source that cannot wait ([`Fill::Overflow`]) may fill the queue this much past twice the
/// bound, so a client that reads its long replay is not cut for it.
#[derive(Debug, Default)]
struct Excused {
    frames: usize,
    bytes: usize,
    /// Frames and bytes from the head of the queue through the last excused one: the
    /// excused ones are the last of them, so as the queue is written, no more of them can be
    /// left than this.
    within_frames: usize,
    within_bytes: usize,
}

impl Excused {
    /// The oldest `frames` frames (`bytes` bytes) of the queue were written; returns whether
    /// nothing is excused any more.
    fn written(&mut self, frames: usize, bytes: usize) -> bool {
        self.within_frames = self.within_frames.saturating_sub(frames);
        self.within_bytes = self.within_bytes.saturating_sub(bytes);
        self.frames = self.frames.min(self.within_frames);
        self.bytes = self.bytes.min(self.within_bytes);
        self.frames == 0 && self.bytes == 0
    }
}

impl Session {
    pub(crate) fn new(
        generation: u32,
        info: ConnectionInfo,
        namespace: usize,
        rule: Option<usize>,
        now: Instant,
    ) -> Self {
        Session {
            generation,
            protocol: info.protocol.unwrap_or_default(),
            rule,
            info: Box::new(info),
            namespace,
            state: State::Open,
            open: None,
            queue: Spill::default(),
            queued_frames: 0,
            queued_bytes: 0,
            in_flight: InFlight::default(),
            in_flight_frames: 0,
            in_flight_bytes: 0,
            excused: None,
            ready: false,
            ping_queued: false,
            behind: false,
            paused: false,
            rooms: LiteMap::new(),
            pending_subscribes: BTreeMap::new(),
            acks_out: BTreeMap::new(),
            pings: BTreeMap::new(),
            acks_in: BTreeMap::new(),
            pinned: BTreeSet::new(),
            last_seen: now,
            timers: [None; ConnTimer::COUNT],
            authenticated: false,
            rate_count: 0,
            rate_since: now,
            errors: 0,
            errors_since: now,
            metadata: BTreeMap::new(),
        }
    }

    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Frames queued or in flight.
    #[inline]
    pub(crate) fn depth_frames(&self) -> usize {
        self.queued_frames + self.in_flight_frames
    }

    /// Bytes queued or in flight.
    #[inline]
    pub(crate) fn depth_bytes(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }

    /// Offers a frame, filling the queue at most as far as `fill` allows. An empty queue takes
    /// any one frame, so a frame larger than the bound is delivered alone rather than never.
    #[inline]
    pub(crate) fn offer(&mut self, frame: Frame, bound: Bound, fill: Fill) -> Offer {
        let offer = self.admit(frame.len(), bound, fill);
        if offer == Offer::Queued {
            self.excuse(frame.len(), bound, fill);
            self.push_one(frame);
        }
        offer
    }

    /// Offers slot `at` of a room's `block` (a frame of `len` bytes), as [`Session::offer`]
    /// does a frame: it extends the run at the end of the queue when that run ends just
    /// before the slot, so a burst from one room costs one queue entry per block and
    /// writes no memory of its own per frame.
    #[inline]
    pub(crate) fn offer_shared(
        &mut self,
        block: &Arc<Block>,
        at: u16,
        len: usize,
        bound: Bound,
        fill: Fill,
    ) -> Offer {
        let offer = self.admit(len, bound, fill);
        if offer == Offer::Queued {
            self.excuse(len, bound, fill);
            self.queued_frames += 1;
            self.queued_bytes += len;
            let extended = self
                .open
                .as_mut()
                .is_some_and(|run| run.extend(block, at, len));
            if !extended {
                self.close_run();
                self.open = Some(Run::new(block, at, len));
            }
        }
        offer
    }

    /// Whether a frame of `len` bytes may be queued, filling the queue at most as far as
    /// `fill` allows. An empty queue takes any one frame, so a frame larger than the bound
    /// is delivered alone rather than never.
    #[inline]
    fn admit(&self, len: usize, bound: Bound, fill: Fill) -> Offer {
        if !self.is_open() {
            return Offer::NotOpen;
        }
        let depth = self.depth_frames();
        let times = match fill {
            Fill::Bound => 1,
            Fill::Overflow => 2,
            Fill::Pushback | Fill::Replay => usize::MAX,
        };
        let (max_frames, max_bytes) = (
            bound.frames.saturating_mul(times),
            bound.bytes.saturating_mul(times),
        );
        if depth > 0 && (depth + 1 > max_frames || self.depth_bytes() + len > max_bytes) {
            let excused = fill == Fill::Overflow
                && self.excused.as_ref().is_some_and(|e| {
                    depth < max_frames + e.frames && self.depth_bytes() + len <= max_bytes + e.bytes
                });
            if !excused {
                return Offer::Full;
            }
        }
        Offer::Queued
    }

    /// Counts what a frame of `len` bytes about to be queued by a replay adds past the bound
    /// (see [`Excused`]).
    #[inline]
    fn excuse(&mut self, len: usize, bound: Bound, fill: Fill) {
        if fill != Fill::Replay {
            return;
        }
        let (frames, bytes) = (self.depth_frames() + 1, self.depth_bytes() + len);
        let past = bytes.saturating_sub(bound.bytes).min(len);
        if frames <= bound.frames && past == 0 {
            return;
        }
        let e = self.excused.get_or_insert_with(Box::default);
        if frames > bound.frames {
            e.frames += 1;
            e.within_frames = frames;
        }
        if past > 0 {
            e.bytes += past;
            e.within_bytes = bytes;
        }
    }

    /// Queues one frame.
    fn push_one(&mut self, frame: Frame) {
        self.queued_frames += 1;
        self.queued_bytes += frame.len();
        self.close_run();
        self.queue.push_back(Chunk::from(frame));
    }

    /// Moves the open run to the end of `queue`: what comes next goes after it.
    #[inline]
    fn close_run(&mut self) {
        if let Some(run) = self.open.take() {
            self.queue.push_back(Chunk::from(run));
        }
    }

    /// Queues an answer to a client request on a connection that is closing with flush
    /// (without limit, as a reply: the requests it answers were bounded when they came in).
    pub(crate) fn offer_answer(&mut self, frame: Frame) -> Offer {
        if !self.flushing() {
            return Offer::NotOpen;
        }
        self.push_one(frame);
        Offer::Queued
    }

    /// Whether the queue is past its bound.
    #[inline]
    pub(crate) fn over(&self, bound: Bound) -> bool {
        self.depth_frames() > bound.frames || self.depth_bytes() > bound.bytes
    }

    /// Whether the queue has drained to half its bound (where a queue stops being behind).
    #[inline]
    pub(crate) fn drained(&self, bound: Bound) -> bool {
        self.depth_frames() <= bound.frames / 2 && self.depth_bytes() <= bound.bytes / 2
    }

    /// Queues a WebSocket ping within the bound like any frame, unless one is waiting
    /// already. A queue at its bound skips this period's ping: the peer is not reading what
    /// it has.
    pub(crate) fn push_ping(&mut self, bound: Bound) {
        if !self.ping_queued
            && self.offer(Frame::Ping(bytes::Bytes::new()), bound, Fill::Bound) == Offer::Queued
        {
            self.ping_queued = true;
        }
    }

    /// Whether a frame can be handed to the driver now.
    #[inline]
    pub(crate) fn can_transmit(&self, window: usize) -> bool {
        self.queued_frames > 0 && self.in_flight_frames < window && self.flushing()
    }

    /// Whether queued frames still go out (open, or closing with flush).
    #[inline]
    fn flushing(&self) -> bool {
        match &self.state {
            State::Open => true,
            State::Closing(closing) => closing.flush,
        }
    }

    /// How many frames can be handed to the driver now.
    #[inline]
    pub(crate) fn sendable(&self, window: usize) -> usize {
        if !self.flushing() {
            return 0;
        }
        self.queued_frames
            .min(window.saturating_sub(self.in_flight_frames))
    }

    /// Hands the next frame to the driver, moving it in flight.
    #[inline]
    pub(crate) fn take_next(&mut self) -> Option<Frame> {
        let frame = match self.queue.front_mut() {
            Some(front) => match front.take_first() {
                Some(frame) => frame,
                None => self.queue.pop_front()?.into_first()?,
            },
            None => match self.open.as_mut()?.take_first() {
                Some(frame) => frame,
                None => self.open.take()?.into_first()?,
            },
        };
        if is_heartbeat(&frame) {
            self.ping_queued = false;
        }
        let len = frame.len();
        self.in_flight.push_back(Flight::One(len));
        self.moved_in_flight(1, len);
        Some(frame)
    }

    /// Hands the driver the next chunk of at most `max` frames (a run is split at `max`),
    /// pushing it onto `out` and moving it in flight. Returns its frames and bytes, or
    /// `None` if nothing is queued.
    ///
    /// (Pushed here rather than returned: returned with its counts, the chunk was copied
    /// through the stack on the way, each copy written in parts and read back whole, a
    /// store-forwarding stall that was 10 % of `cargo bench -p tidings-core --bench fanout`.)
    #[inline]
    pub(crate) fn take_chunk(
        &mut self,
        max: usize,
        out: &mut Vec<Chunk>,
    ) -> Option<(usize, usize)> {
        if max == 0 {
            return None;
        }
        // The open run is handed out from where it is, without passing through `queue`.
        let chunk = match self.queue.front_mut() {
            Some(front) if front.len() > max => front.split_front(max),
            Some(_) => self.queue.pop_front()?,
            None => match self.open.as_mut()? {
                run if run.len() > max => Chunk::from(run.split_front(max)),
                _ => Chunk::from(self.open.take()?),
            },
        };
        if chunk.as_one().is_some_and(is_heartbeat) {
            self.ping_queued = false;
        }
        // Counted while it is a local and pushed last: pushed straight from the match and
        // read back from `out`, it went through the stack in pieces and was loaded whole, a
        // store-forwarding stall (39 % of `Hub::poll_transmits` in perf; 21 % now).
        let (frames, bytes) = self.in_flight.push_chunk(&chunk);
        out.push(chunk);
        self.moved_in_flight(frames, bytes);
        Some((frames, bytes))
    }

    /// Counts `frames` frames of `bytes` bytes, just put in flight, as no longer queued.
    #[inline]
    fn moved_in_flight(&mut self, frames: usize, bytes: usize) {
        self.queued_frames -= frames;
        self.queued_bytes -= bytes;
        self.in_flight_frames += frames;
        self.in_flight_bytes += bytes;
    }

    /// Puts the session on the hub's ready list if it has a frame to hand out and is not on
    /// the list already. Every path that queues or frees room calls this one function.
    #[inline]
    pub(crate) fn wake(&mut self, ready: &mut VecDeque<ConnId>, id: ConnId, window: usize) {
        if !self.ready && self.can_transmit(window) {
            self.ready = true;
            ready.push_back(id);
        }
    }

    /// The driver wrote `n` frames.
    #[inline]
    pub(crate) fn written(&mut self, n: usize) {
        if n >= self.in_flight_frames && self.excused.is_none() {
            // All that was handed out is written, the report of a connection that keeps
            // up: nothing to count frame by frame.
            self.in_flight.clear();
            self.in_flight_frames = 0;
            self.in_flight_bytes = 0;
        } else {
            self.written_in_part(n);
        }
        if self.queue_is_empty() && self.in_flight.is_empty() {
            // Drained: give back the queue's memory, so an idle connection keeps none. Room
            // publications queue in `open` and a hand-out at a time is in flight inline, so
            // a connection that keeps up allocates here only for single frames (replies,
            // pings, sends to it alone), a deque per frame.
            self.queue.shrink();
            self.in_flight.shrink();
        }
    }

    /// [`Session::written`] when the report leaves frames in flight or frames are excused:
    /// the oldest hand-outs are marked written one by one, with their bytes.
    fn written_in_part(&mut self, mut n: usize) {
        let (mut frames_written, mut bytes_written) = (0, 0);
        while n > 0 {
            let Some(first) = self.in_flight.front_mut() else {
                break;
            };
            let frames = first.frames();
            let bytes = if frames <= n {
                let bytes = first.bytes();
                self.in_flight.pop_front();
                bytes
            } else {
                first.write_front(n)
            };
            let done = frames.min(n);
            self.in_flight_frames -= done;
            self.in_flight_bytes -= bytes;
            n -= done;
            frames_written += done;
            bytes_written += bytes;
        }
        if let Some(e) = &mut self.excused {
            if e.written(frames_written, bytes_written) {
                self.excused = None;
            }
        }
    }

    /// The close of a connection closing with flush whose queue has just emptied and whose
    /// client requests are all answered (the close waits for the application's answers, each
    /// of which has a deadline).
    pub(crate) fn flushed_close(&self) -> Option<(CloseCode, String)> {
        match &self.state {
            State::Closing(closing)
                if closing.flush && self.queue_is_empty() && self.acks_in.is_empty() =>
            {
                Some((closing.code, closing.reason.clone()))
            }
            _ => None,
        }
    }

    /// Whether an answer to a client request may still be queued: open, or closing with the
    /// queue still flushing.
    pub(crate) fn takes_answers(&self) -> bool {
        self.flushing()
    }

    #[inline]
    pub(crate) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty() && self.open.is_none()
    }

    /// Drops every queued frame (an immediate close).
    pub(crate) fn clear_queue(&mut self) {
        self.queue.clear();
        self.open = None;
        self.queued_frames = 0;
        self.queued_bytes = 0;
        self.excused = None;
        self.ping_queued = false;
    }

    /// Arms, moves or disarms one of this session's timers.
    pub(crate) fn set_timer(
        &mut self,
        timers: &mut Timers,
        id: ConnId,
        which: ConnTimer,
        at: Option<Instant>,
    ) {
        let slot = &mut self.timers[which as usize];
        *slot = timers.rearm(TimerKey::Conn(id, which), *slot, at);
    }

    /// Disarms every timer of this session, its acks' included.
    pub(crate) fn clear_timers(&mut self, timers: &mut Timers, id: ConnId) {
        for which in [
            ConnTimer::Ping,
            ConnTimer::Silence,
            ConnTimer::Close,
            ConnTimer::Auth,
            ConnTimer::Slow,
        ] {
            self.set_timer(timers, id, which, None);
        }
        for (&ack, &at) in &self.acks_out {
            timers.remove(at, TimerKey::Ack(id, ack));
        }
        for (&ack, &at) in &self.acks_in {
            timers.remove(at, TimerKey::Answer(id, ack));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(0, ConnectionInfo::new("/"), 0, None, Instant::now())
    }

    fn bound(frames: usize, bytes: usize) -> Bound {
        Bound { frames, bytes }
    }

    #[test]
    fn fill_says_how_far_past_the_bound_a_frame_may_go() {
        let mut s = session();
        let b = bound(2, 1000);
        for _ in 0..2 {
            assert_eq!(s.offer(Frame::text("a"), b, Fill::Bound), Offer::Queued);
        }
        assert!(!s.over(b), "at the bound is not past it");
        assert_eq!(s.offer(Frame::text("a"), b, Fill::Bound), Offer::Full);
        assert_eq!(s.offer(Frame::text("a"), b, Fill::Overflow), Offer::Queued);
        assert!(s.over(b));
        assert_eq!(s.offer(Frame::text("a"), b, Fill::Overflow), Offer::Queued);
        assert_eq!(
            s.offer(Frame::text("a"), b, Fill::Overflow),
            Offer::Full,
            "twice the bound"
        );
        for _ in 0..100 {
            assert_eq!(s.offer(Frame::text("a"), b, Fill::Pushback), Offer::Queued);
        }
        // Bytes count the same way.
        let mut s = session();
        let b = bound(100, 4);
        assert_eq!(s.offer(Frame::text("aaaa"), b, Fill::Bound), Offer::Queued);
        assert!(!s.over(b), "exactly the byte bound is not past it");
        assert_eq!(s.offer(Frame::text("a"), b, Fill::Bound), Offer::Full);
        assert_eq!(
            s.offer(Frame::text("aaaa"), b, Fill::Overflow),
            Offer::Queued
        );
        assert!(s.over(b));
        assert_eq!(s.offer(Frame::text("a"), b, Fill::Overflow), Offer::Full);
    }

    #[test]
    fn a_queue_is_drained_at_half_its_bound() {
        let mut s = session();
        let b = bound(4, 1000);
        for _ in 0..5 {
            assert_eq!(s.offer(Frame::text("a"), b, Fill::Overflow), Offer::Queued);
        }
        assert!(s.over(b) && !s.drained(b));
        while s.take_next().is_some() {}
        s.written(2);
        assert!(
            !s.over(b) && !s.drained(b),
            "3 of 4: within the bound, not drained"
        );
        s.written(1);
        assert!(s.drained(b), "2 of 4");
        let mut s = session();
        let b = bound(100, 8);
        assert_eq!(s.offer(Frame::text("aaaaa"), b, Fill::Bound), Offer::Queued);
        assert!(!s.drained(b), "5 of 8 bytes is more than half");
    }

    #[test]
    fn a_report_of_all_in_flight_forgets_every_hand_out() {
        let mut s = session();
        let b = bound(100, 1000);
        for text in ["a", "bb", "ccc"] {
            assert_eq!(s.offer(Frame::text(text), b, Fill::Bound), Offer::Queued);
        }
        // Two hand-outs in flight and one frame queued, then a report of both.
        assert_eq!(s.take_next(), Some(Frame::text("a")));
        assert_eq!(s.take_next(), Some(Frame::text("bb")));
        s.written(2);
        assert_eq!((s.depth_frames(), s.depth_bytes()), (1, 3));
        // Three more in flight, reported one at a time: each counts its own bytes.
        for text in ["dddd", "e"] {
            assert_eq!(s.offer(Frame::text(text), b, Fill::Bound), Offer::Queued);
        }
        while s.take_next().is_some() {}
        s.written(1);
        assert_eq!((s.depth_frames(), s.depth_bytes()), (2, 5), "ccc written");
        s.written(1);
        assert_eq!((s.depth_frames(), s.depth_bytes()), (1, 1), "dddd written");
        s.written(1);
        assert_eq!((s.depth_frames(), s.depth_bytes()), (0, 0));
    }

    #[test]
    fn bounds_count_queued_and_in_flight_frames() {
        let mut s = session();
        assert_eq!(
            s.offer(Frame::text("aa"), bound(2, 100), Fill::Bound),
            Offer::Queued
        );
        assert_eq!(s.take_next(), Some(Frame::text("aa")));
        assert_eq!(
            s.offer(Frame::text("bb"), bound(2, 100), Fill::Bound),
            Offer::Queued
        );
        // One in flight + one queued = 2 = the bound.
        assert_eq!(
            s.offer(Frame::text("cc"), bound(2, 100), Fill::Bound),
            Offer::Full
        );
        s.written(1);
        assert_eq!(
            s.offer(Frame::text("cc"), bound(2, 100), Fill::Bound),
            Offer::Queued
        );
        assert_eq!((s.depth_frames(), s.depth_bytes()), (2, 4));
    }

    #[test]
    fn the_byte_bound_is_inclusive() {
        let mut s = session();
        assert_eq!(
            s.offer(Frame::text("aaa"), bound(10, 6), Fill::Bound),
            Offer::Queued
        );
        assert_eq!(
            s.offer(Frame::text("bbb"), bound(10, 6), Fill::Bound),
            Offer::Queued,
            "exactly 6 bytes fit"
        );
        assert_eq!(
            s.offer(Frame::text("c"), bound(10, 6), Fill::Bound),
            Offer::Full
        );
        assert_eq!(s.depth_bytes(), 6);
    }

    #[test]
    fn a_drained_queue_keeps_no_memory() {
        let mut s = session();
        for _ in 0..100 {
            assert_eq!(
                s.offer(Frame::text("x"), bound(1000, 1000), Fill::Bound),
                Offer::Queued
            );
        }
        while s.take_next().is_some() {}
        s.written(99);
        assert!(
            s.queue.capacity() >= 100 && s.in_flight.capacity() > 0,
            "still one frame in flight: keep the buffers"
        );
        s.written(1);
        assert_eq!((s.queue.capacity(), s.in_flight.capacity()), (0, 0));
        // One frame at a time, as an idle connection's ping or a reply: nothing is kept
        // once it is written, and one in flight needs no buffer.
        for _ in 0..3 {
            assert_eq!(
                s.offer(Frame::text("x"), bound(1000, 1000), Fill::Bound),
                Offer::Queued
            );
            assert!(s.take_next().is_some());
            assert_eq!(s.in_flight.capacity(), 0);
            s.written(1);
            assert_eq!((s.queue.capacity(), s.in_flight.capacity()), (0, 0));
        }
    }

    #[test]
    fn byte_bound_admits_one_oversized_frame_when_empty() {
        let mut s = session();
        assert_eq!(
            s.offer(Frame::text("0123456789"), bound(10, 4), Fill::Bound),
            Offer::Queued
        );
        assert_eq!(
            s.offer(Frame::text("x"), bound(10, 4), Fill::Bound),
            Offer::Full
        );
    }

    #[test]
    fn closing_without_flush_transmits_nothing() {
        let mut s = session();
        assert_eq!(
            s.offer(Frame::text("a"), bound(10, 10), Fill::Bound),
            Offer::Queued
        );
        assert!(s.can_transmit(1));
        s.state = State::closing(CloseCode::NORMAL, String::new(), false);
        assert!(!s.can_transmit(1));
        assert_eq!(
            s.offer(Frame::text("b"), bound(10, 10), Fill::Bound),
            Offer::NotOpen
        );
    }

    #[test]
    fn pings_wait_one_at_a_time_within_the_bounds() {
        let mut s = session();
        s.push_ping(bound(3, 100));
        s.push_ping(bound(3, 100));
        assert_eq!(s.depth_frames(), 1, "one ping waits, not one per period");
        assert!(matches!(s.take_next(), Some(Frame::Ping(_))));
        s.push_ping(bound(3, 100));
        assert_eq!(
            s.depth_frames(),
            2,
            "once handed out, the next period queues another"
        );
        assert!(s.take_next().is_some());
        s.push_ping(bound(3, 100));
        assert!(s.take_next().is_some());
        s.push_ping(bound(3, 100));
        assert_eq!(
            s.depth_frames(),
            3,
            "a full queue takes no ping, even unread ones in flight count"
        );
        s.clear_queue();
        s.written(3);
        s.push_ping(bound(3, 100));
        assert_eq!(s.queue.len(), 1);
    }

    #[test]
    fn window_limits_frames_in_flight() {
        let mut s = session();
        for _ in 0..3 {
            assert_eq!(
                s.offer(Frame::text("a"), bound(10, 100), Fill::Bound),
                Offer::Queued
            );
        }
        assert!(s.take_next().is_some());
        assert!(s.take_next().is_some());
        assert!(!s.can_transmit(2));
        s.written(5); // more than in flight: clamps
        assert!(s.can_transmit(2));
        assert_eq!(s.depth_frames(), 1);
    }
}
