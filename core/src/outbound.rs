//! What the hub hands a driver for one connection ([`Chunk`]), and the blocks a room's
//! publications are written to once and shared by its members' queues.
//!
//! A publish to a room of many members writes its frame once, into the room's current
//! [`Block`]; each member's queue then holds a run of that block (`start..end`), which the
//! next publish extends by one instead of queueing another frame. Deep queues in a burst so
//! cost a few runs each rather than an entry per frame, every member's writer reads the same
//! block, and handing a run out moves one reference to it. The block also keeps each
//! frame's wire bytes as the driver encodes them ([`Chunk::encode`]): the first writer
//! encodes a publication, the others copy its bytes.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::frame::Frame;

/// Frames per block: a burst of 2,000 publications is 63 runs per member's queue.
const BLOCK_FRAMES: usize = 32;

/// Publications of one room, each written once by the hub and read by every member's
/// writer. A slot is set once, so a writer holding the block reads the slots of its run
/// while the hub fills later ones.
#[derive(Debug)]
pub(crate) struct Block {
    slots: [OnceLock<Frame>; BLOCK_FRAMES],
    /// Each slot's frame as the driver's writers encode it, by the first that writes it.
    wire: [OnceLock<Bytes>; BLOCK_FRAMES],
}

impl Block {
    fn new() -> Self {
        Block {
            slots: std::array::from_fn(|_| OnceLock::new()),
            wire: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Appends the wire bytes of the frames in `start..end` to `out`, encoding (with
    /// `encode`) those no writer has encoded yet.
    fn encode(
        &self,
        start: u16,
        end: u16,
        encode: impl Fn(&Frame, &mut Vec<u8>),
        out: &mut Vec<u8>,
    ) {
        for at in start..end {
            if let Some(bytes) = self.wire(at, &encode) {
                out.extend_from_slice(bytes);
            }
        }
    }

    /// The wire bytes of slot `at`'s frame, encoded with `encode` by the first to ask.
    fn wire(&self, at: u16, encode: impl Fn(&Frame, &mut Vec<u8>)) -> Option<&Bytes> {
        let at = usize::from(at);
        let frame = self.slots.get(at)?.get()?;
        Some(self.wire[at].get_or_init(|| {
            let mut bytes = Vec::new();
            encode(frame, &mut bytes);
            Bytes::from(bytes)
        }))
    }

    /// The frames in `start..end` (each was set before a run covering it was made).
    fn frames(&self, start: u16, end: u16) -> impl Iterator<Item = &Frame> {
        self.slots[usize::from(start)..usize::from(end)]
            .iter()
            .filter_map(OnceLock::get)
    }

    /// Payload bytes of the frames in `start..end`.
    pub(crate) fn bytes(&self, start: u16, end: u16) -> usize {
        self.frames(start, end).map(Frame::len).sum()
    }
}

/// Where a room writes its next publication for its members to share.
#[derive(Debug, Default)]
pub(crate) struct Shelf {
    block: Option<Arc<Block>>,
    /// The next free slot of `block`.
    next: u16,
}

impl Shelf {
    /// Writes `frame` into the current block, or into a new one when that is full and still
    /// read; a block no queue refers to any more is emptied and written again from its
    /// first slot. Returns the block and the frame's slot.
    pub(crate) fn put(&mut self, frame: Frame) -> (Arc<Block>, u16) {
        let unread = self.block.as_mut().and_then(Arc::get_mut);
        if let Some(block) = unread {
            let used = ..usize::from(self.next);
            for (slot, wire) in block.slots[used].iter_mut().zip(&mut block.wire[used]) {
                slot.take();
                wire.take();
            }
            self.next = 0;
        } else if self.block.is_none() || usize::from(self.next) == BLOCK_FRAMES {
            self.block = Some(Arc::new(Block::new()));
            self.next = 0;
        }
        let block = self.block.get_or_insert_with(|| Arc::new(Block::new()));
        let at = self.next;
        // Empty: every slot from `next` on has never been set since the block was new or
        // emptied.
        let _ = block.slots[usize::from(at)].set(frame);
        self.next += 1;
        (Arc::clone(block), at)
    }
}

/// Frames handed to a driver for one connection, in order: one frame, or a run of
/// publications shared with the other members of a room. Write [`Chunk::frames`] in order.
#[derive(Clone, Debug)]
pub struct Chunk(Repr);

#[derive(Clone, Debug)]
enum Repr {
    One(Frame),
    Run(Run),
}

/// Slots `start..end` of a block: publications a connection gets in a row from one room,
/// with their payload bytes.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    block: Arc<Block>,
    start: u16,
    end: u16,
    bytes: usize,
}

impl Run {
    /// The run of slot `at` alone, a frame of `len` bytes.
    pub(crate) fn new(block: &Arc<Block>, at: u16, len: usize) -> Self {
        Run {
            block: Arc::clone(block),
            start: at,
            end: at + 1,
            bytes: len,
        }
    }

    /// How many frames.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.end - self.start)
    }

    /// Payload bytes of its frames.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Splits off and returns the first `n` frames (`0 < n < len`); `self` keeps the rest.
    pub(crate) fn split_front(&mut self, n: usize) -> Run {
        let front = self.start;
        self.start += u16::try_from(n)
            .unwrap_or(u16::MAX)
            .min(self.end - self.start);
        let bytes = self.block.bytes(front, self.start);
        self.bytes -= bytes;
        Run {
            block: Arc::clone(&self.block),
            start: front,
            end: self.start,
            bytes,
        }
    }

    /// The first frame of a run of two or more, taken out (a clone: the payload stays
    /// shared); `None` for a run of one.
    pub(crate) fn take_first(&mut self) -> Option<Frame> {
        if self.len() < 2 {
            return None;
        }
        let frame = self.block.slots[usize::from(self.start)].get().cloned()?;
        self.start += 1;
        self.bytes -= frame.len();
        Some(frame)
    }

    /// Its first frame, owned.
    pub(crate) fn into_first(self) -> Option<Frame> {
        self.block
            .slots
            .get(usize::from(self.start))?
            .get()
            .cloned()
    }

    /// Extends the run by slot `at` of `block` (a frame of `len` bytes) if it ends just
    /// before it; false otherwise.
    #[inline]
    pub(crate) fn extend(&mut self, block: &Arc<Block>, at: u16, len: usize) -> bool {
        let follows = self.end == at && Arc::ptr_eq(&self.block, block);
        if follows {
            self.end += 1;
            self.bytes += len;
        }
        follows
    }
}

impl From<Run> for Chunk {
    fn from(run: Run) -> Self {
        Chunk(Repr::Run(run))
    }
}

impl Chunk {
    /// A run of `block`'s slots `start..end`.
    #[cfg(test)]
    fn run(block: Arc<Block>, start: u16, end: u16) -> Self {
        let bytes = block.bytes(start, end);
        Chunk(Repr::Run(Run {
            block,
            start,
            end,
            bytes,
        }))
    }

    /// The frames, in the order they are to be written.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        let (one, run) = match &self.0 {
            Repr::One(frame) => (Some(frame), None),
            Repr::Run(Run {
                block, start, end, ..
            }) => (None, Some(block.frames(*start, *end))),
        };
        one.into_iter().chain(run.into_iter().flatten())
    }

    /// Appends each frame to `out` as `encode` writes it (a driver's wire format), in order.
    /// A run shared with other connections is encoded once for all of them: the bytes are
    /// kept with the run's publications and copied from there. `encode` must depend on the
    /// frame alone, the same function for every connection of a hub.
    pub fn encode(&self, encode: impl Fn(&Frame, &mut Vec<u8>), out: &mut Vec<u8>) {
        match &self.0 {
            Repr::One(frame) => encode(frame, out),
            Repr::Run(Run {
                block, start, end, ..
            }) => block.encode(*start, *end, encode, out),
        }
    }

    /// The wire bytes of a chunk that is one publication of a room: encoded with `encode`
    /// by the first of the room's writers to ask, then shared, so a writer can hand them to
    /// its socket as they are. They are lent for as long as the chunk is held, not cloned:
    /// every member's writer would otherwise count the same shared bytes up and down, on
    /// a line the other cores' writers also write. `None` for any other chunk: write it
    /// with [`Chunk::encode`].
    pub fn wire(&self, encode: impl Fn(&Frame, &mut Vec<u8>)) -> Option<&Bytes> {
        match &self.0 {
            Repr::Run(run) if run.len() == 1 => run.block.wire(run.start, encode),
            _ => None,
        }
    }

    /// How many frames.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::One(_) => 1,
            Repr::Run(run) => run.len(),
        }
    }

    /// Whether it holds no frame (never, for a chunk the hub hands out).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes of its frames: what counts against queue bounds.
    pub(crate) fn bytes(&self) -> usize {
        match &self.0 {
            Repr::One(frame) => frame.len(),
            Repr::Run(run) => run.bytes(),
        }
    }

    /// The frame, if it is a single one.
    pub(crate) fn as_one(&self) -> Option<&Frame> {
        match &self.0 {
            Repr::One(frame) => Some(frame),
            Repr::Run(_) => None,
        }
    }

    /// Extends a run of `block` that ends at `at` by that slot; false for any other chunk.
    #[cfg(test)]
    fn extend(&mut self, block: &Arc<Block>, at: u16) -> bool {
        match &mut self.0 {
            Repr::Run(run) => run.extend(block, at, block.bytes(at, at + 1)),
            Repr::One(_) => false,
        }
    }

    /// Splits off and returns the first `n` frames (`0 < n < len`), as a run sharing the
    /// block; `self` keeps the rest.
    pub(crate) fn split_front(&mut self, n: usize) -> Chunk {
        match &mut self.0 {
            Repr::Run(run) => Chunk(Repr::Run(run.split_front(n))),
            // A single frame is never split (n < len = 1 has no solution).
            Repr::One(frame) => Chunk(Repr::One(frame.clone())),
        }
    }

    /// The first frame of a run of two or more, taken out (a clone: the payload stays
    /// shared); `None` for a single frame.
    pub(crate) fn take_first(&mut self) -> Option<Frame> {
        match &mut self.0 {
            Repr::Run(run) => run.take_first(),
            Repr::One(_) => None,
        }
    }

    /// Its first frame, owned.
    pub(crate) fn into_first(self) -> Option<Frame> {
        match self.0 {
            Repr::One(frame) => Some(frame),
            Repr::Run(run) => run.into_first(),
        }
    }
}

impl From<Frame> for Chunk {
    fn from(frame: Frame) -> Self {
        Chunk(Repr::One(frame))
    }
}

impl IntoIterator for Chunk {
    type Item = Frame;
    type IntoIter = std::vec::IntoIter<Frame>;

    /// Its frames, owned (a run's are cloned: the payloads stay shared).
    fn into_iter(self) -> Self::IntoIter {
        match self.0 {
            Repr::One(frame) => vec![frame].into_iter(),
            run => Chunk(run).frames().cloned().collect::<Vec<_>>().into_iter(),
        }
    }
}

/// Frames handed out and not yet reported written: a single frame's bytes, or a run, which
/// keeps its block so that a write report ending inside it counts exactly the bytes written.
#[derive(Debug)]
pub(crate) enum Flight {
    One(usize),
    Run(Run),
}

impl Flight {
    pub(crate) fn frames(&self) -> usize {
        match self {
            Flight::One(_) => 1,
            Flight::Run(run) => run.len(),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            Flight::One(bytes) => *bytes,
            Flight::Run(run) => run.bytes(),
        }
    }

    /// Marks the first `n` frames (fewer than it holds) written; returns their bytes.
    pub(crate) fn write_front(&mut self, n: usize) -> usize {
        match self {
            Flight::Run(run) => run.split_front(n).bytes(),
            // A single frame: a partial write of it is none.
            Flight::One(_) => 0,
        }
    }
}

/// A deque that is one word while empty: a session's queue and in-flight tail, empty for a
/// connection that keeps up, cost it a pointer in the cache lines every fan-out reads rather
/// than a `VecDeque`'s four words. The buffer is given back by [`Spill::shrink`].
#[derive(Debug)]
#[allow(clippy::box_collection)] // the box is the point: one word inline, not four
pub(crate) struct Spill<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for Spill<T> {
    fn default() -> Self {
        Spill(None)
    }
}

impl<T> Spill<T> {
    #[inline]
    pub(crate) fn push_back(&mut self, value: T) {
        self.0.get_or_insert_with(Box::default).push_back(value);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    #[inline]
    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()?.front_mut()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    /// Drops every element, keeping the buffer.
    #[inline]
    pub(crate) fn clear(&mut self) {
        if let Some(q) = &mut self.0 {
            q.clear();
        }
    }

    /// Gives the buffer back if it is empty.
    #[inline]
    pub(crate) fn shrink(&mut self) {
        if self.0.as_ref().is_some_and(|q| q.is_empty()) {
            self.0 = None;
        }
    }

    /// Slots allocated, 0 once shrunk.
    #[cfg(test)]
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.capacity())
    }

    #[cfg(test)]
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }
}

/// What was handed to a driver and not yet reported written, oldest first. The oldest is
/// kept inline: a connection that keeps up has one hand-out in flight at a time, and then
/// needs no buffer of its own for it (an idle connection kept one, 96 bytes, from its first
/// hand-out on).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// `None` only when nothing is in flight.
    oldest: Option<Flight>,
    /// Those after `oldest`.
    rest: Spill<Flight>,
}

impl InFlight {
    /// Puts `chunk`, just handed out, in flight; returns its frames and bytes.
    ///
    /// (Each kind is pushed on its own branch: built as one `Flight` value and then pushed,
    /// the value went through the stack, written in halves and read back whole, a stall
    /// that was 40 % of `Hub::poll_transmits` in `cargo bench --bench fanout`.)
    #[inline]
    pub(crate) fn push_chunk(&mut self, chunk: &Chunk) -> (usize, usize) {
        match &chunk.0 {
            Repr::Run(run) if run.len() > 1 => {
                let counts = (run.len(), run.bytes());
                self.push_back(Flight::Run(run.clone()));
                counts
            }
            _ => {
                let bytes = chunk.bytes();
                self.push_back(Flight::One(bytes));
                (1, bytes)
            }
        }
    }

    #[inline]
    pub(crate) fn push_back(&mut self, flight: Flight) {
        if self.oldest.is_none() {
            self.oldest = Some(flight);
        } else {
            self.rest.push_back(flight);
        }
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut Flight> {
        self.oldest.as_mut()
    }

    pub(crate) fn pop_front(&mut self) -> Option<Flight> {
        let oldest = self.oldest.take();
        self.oldest = self.rest.pop_front();
        oldest
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.oldest.is_none()
    }

    /// Forgets everything in flight (all of it was written), keeping the deque's memory.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.oldest = None;
        self.rest.clear();
    }

    /// Slots allocated behind the oldest.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.rest.capacity()
    }

    /// Gives back the memory of the deque behind the oldest; call it once nothing is in
    /// flight.
    #[inline]
    pub(crate) fn shrink(&mut self) {
        debug_assert!(self.is_empty());
        self.rest.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(chunk: &Chunk) -> Vec<String> {
        chunk
            .frames()
            .filter_map(|f| f.as_text().map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_run_extends_only_from_its_end_in_its_own_block() {
        let mut shelf = Shelf::default();
        let (block, a) = shelf.put(Frame::text("a"));
        let mut run = Chunk::run(Arc::clone(&block), a, a + 1);
        let (same, b) = shelf.put(Frame::text("bb"));
        assert!(Arc::ptr_eq(&block, &same));
        assert!(!run.extend(&block, b + 1), "a gap is not extended over");
        assert!(run.extend(&block, b));
        assert_eq!(texts(&run), ["a", "bb"]);
        assert_eq!((run.len(), run.bytes(), run.is_empty()), (2, 3, false));
        assert!(Chunk::run(Arc::clone(&block), b, b).is_empty());
        assert!(!Chunk::from(Frame::text("x")).is_empty());
        let other = Arc::new(Block::new());
        assert!(!run.extend(&other, b + 1), "another block's slot");
        assert!(!Chunk::from(Frame::text("x")).extend(&block, 0));
    }

    #[test]
    fn a_block_is_written_again_once_nothing_reads_it() {
        let mut shelf = Shelf::default();
        let (first, at) = shelf.put(Frame::text("a"));
        assert_eq!(at, 0);
        drop(first);
        let (again, at) = shelf.put(Frame::text("b"));
        assert_eq!(
            at, 0,
            "nothing read the block: written again from its start"
        );
        assert_eq!(again.bytes(0, 1), 1);
        // While a run holds it, publications go on into the next slots, then a new block.
        let mut held = vec![again];
        for i in 1..BLOCK_FRAMES {
            let (block, at) = shelf.put(Frame::text("c"));
            assert_eq!(usize::from(at), i);
            held.push(block);
        }
        let (next, at) = shelf.put(Frame::text("d"));
        assert_eq!(at, 0);
        assert!(!Arc::ptr_eq(&next, &held[0]), "a full block still read");
        assert_eq!(held[0].bytes(0, 2), 2, "what a reader holds is unchanged");
    }

    #[test]
    fn a_shared_frame_is_encoded_once_for_every_run_that_holds_it() {
        let mut shelf = Shelf::default();
        let (block, _) = shelf.put(Frame::text("a"));
        let _ = shelf.put(Frame::text("bb"));
        let calls = std::cell::Cell::new(0);
        let encode = |frame: &Frame, out: &mut Vec<u8>| {
            calls.set(calls.get() + 1);
            out.push(b'<');
            out.extend_from_slice(frame.as_text().unwrap_or_default().as_bytes());
            out.push(b'>');
        };
        let (mut one, mut other) = (Vec::new(), Vec::new());
        Chunk::run(Arc::clone(&block), 0, 2).encode(encode, &mut one);
        Chunk::run(Arc::clone(&block), 1, 2).encode(encode, &mut other);
        assert_eq!(
            (one.as_slice(), other.as_slice()),
            (&b"<a><bb>"[..], &b"<bb>"[..])
        );
        assert_eq!(
            calls.get(),
            2,
            "the second run copied what the first encoded"
        );
        Chunk::from(Frame::text("c")).encode(encode, &mut one);
        assert_eq!(one, b"<a><bb><c>");
        // A block written again forgets the old encodings with the old frames.
        drop(block);
        let (again, at) = shelf.put(Frame::text("d"));
        let mut fresh = Vec::new();
        Chunk::run(again, at, at + 1).encode(encode, &mut fresh);
        assert_eq!(fresh, b"<d>");
    }

    #[test]
    fn one_publication_s_wire_bytes_are_shared_not_copied() {
        let mut shelf = Shelf::default();
        let (block, a) = shelf.put(Frame::text("a"));
        let (_, b) = shelf.put(Frame::text("bb"));
        let calls = std::cell::Cell::new(0);
        let encode = |frame: &Frame, out: &mut Vec<u8>| {
            calls.set(calls.get() + 1);
            out.extend_from_slice(frame.as_text().unwrap_or_default().as_bytes());
        };
        let (one, other) = (
            Chunk::run(Arc::clone(&block), b, b + 1),
            Chunk::run(Arc::clone(&block), b, b + 1),
        );
        let (first, second) = (one.wire(encode), other.wire(encode));
        assert_eq!(first.map(|b| &b[..]), Some(&b"bb"[..]));
        assert_eq!(calls.get(), 1, "encoded once");
        assert!(
            first.zip(second).is_some_and(|(f, s)| std::ptr::eq(f, s)),
            "both lent the block's own bytes: not copied, not even counted up"
        );
        // What `encode` copies for a longer run is the same.
        let mut run = Vec::new();
        Chunk::run(Arc::clone(&block), a, b + 1).encode(encode, &mut run);
        assert_eq!(run, b"abb");
        assert_eq!(calls.get(), 2, "only `a` was new");
        assert!(Chunk::run(Arc::clone(&block), a, b + 1)
            .wire(encode)
            .is_none());
        assert!(Chunk::from(Frame::text("c")).wire(encode).is_none());
    }

    #[test]
    fn splitting_and_taking_keep_the_order() {
        let mut shelf = Shelf::default();
        let mut blocks = Vec::new();
        for t in ["a", "bb", "ccc", "dddd"] {
            blocks.push(shelf.put(Frame::text(t)));
        }
        let mut run = Chunk::run(Arc::clone(&blocks[0].0), 0, 4);
        let front = run.split_front(1);
        assert_eq!(
            (texts(&front), texts(&run)),
            (
                vec!["a".into()],
                vec!["bb".into(), "ccc".into(), "dddd".into()]
            )
        );
        assert_eq!(run.take_first(), Some(Frame::text("bb")));
        assert_eq!(
            run.clone().into_iter().collect::<Vec<_>>(),
            [Frame::text("ccc"), Frame::text("dddd")]
        );
        let mut flights = InFlight::default();
        assert_eq!(flights.push_chunk(&run), (2, 7));
        let held = Arc::strong_count(&blocks[0].0);
        assert_eq!(flights.push_chunk(&front), (1, 1));
        assert_eq!(
            Arc::strong_count(&blocks[0].0),
            held,
            "one frame in flight is its bytes alone: it keeps no block from being written again"
        );
        let flight = flights.front_mut().expect("in flight");
        assert_eq!((flight.frames(), flight.bytes()), (2, 7));
        assert_eq!(flight.write_front(1), 3);
        assert_eq!((flight.frames(), flight.bytes()), (1, 4));
        let kept = |f: Option<Flight>| f.map(|f| (f.frames(), f.bytes()));
        assert_eq!(kept(flights.pop_front()), Some((1, 4)));
        assert_eq!(kept(flights.pop_front()), Some((1, 1)), "a run of one");
    }

    #[test]
    fn in_flight_keeps_the_order_with_the_oldest_inline() {
        let mut flights = InFlight::default();
        assert!(flights.is_empty());
        flights.push_back(Flight::One(1));
        assert_eq!(flights.capacity(), 0, "one in flight needs no buffer");
        for bytes in [2, 3] {
            flights.push_back(Flight::One(bytes));
        }
        assert_eq!(flights.front_mut().map(|f| f.bytes()), Some(1));
        let order: Vec<usize> = std::iter::from_fn(|| flights.pop_front())
            .map(|f| f.bytes())
            .collect();
        assert_eq!(order, [1, 2, 3]);
        assert!(flights.is_empty() && flights.front_mut().is_none());
        flights.shrink();
        assert_eq!(flights.capacity(), 0);
    }
}
