//! One connection's link with the hub task, shared by the two: what the hub hands the
//! connection's writer (frames, then perhaps a close) and the gate that stops its reader.
//!
//! The hub appends each hand-out under a lock and takes the writer's waker, which it wakes
//! with the others of its round of hand-outs (`wakes.rs`); the writer takes all that waits
//! in one go. A hand-out costs no allocation (a channel allocated a node per send,
//! which the writer then freed on another thread): a [`Burst`] keeps its first chunk inline,
//! and most hand-outs are one chunk. An idle link is one small struct.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use tidings_core::{Chunk, CloseCode};

/// A connection's link with the hub task (see the module docs).
#[derive(Default)]
pub(crate) struct Link {
    handed: Mutex<Handed>,
    /// The writer, waiting for a hand-out or a close.
    writer: AtomicWaker,
    /// Whether the hub reads the connection now: closed by `Output::PauseReading`, opened by
    /// `ResumeReading` (see the core's flow control).
    paused: AtomicBool,
    resumed: event_listener::Event,
}

/// Chunks handed to a writer, in order: the first inline, the rest in a `Vec`.
#[derive(Default)]
pub(crate) struct Burst {
    first: Option<Chunk>,
    rest: Vec<Chunk>,
}

impl Burst {
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Its chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.first.iter().chain(&self.rest)
    }

    /// Its chunk, if it has exactly one.
    pub fn only(&self) -> Option<&Chunk> {
        self.rest
            .is_empty()
            .then_some(self.first.as_ref())
            .flatten()
    }

    /// Adds the chunks of `batch` after its own, leaving `batch` empty. A lone chunk goes
    /// inline; several into an empty burst take `batch`'s `Vec` whole (swapped for the
    /// burst's own empty one).
    pub fn add(&mut self, batch: &mut Vec<Chunk>) {
        if !self.is_empty() {
            self.rest.append(batch);
        } else if batch.len() == 1 {
            self.first = batch.pop();
        } else {
            std::mem::swap(&mut self.rest, batch);
        }
    }

    /// Empties it and gives back its `Vec`, for a later hand-out.
    pub fn into_spare(self) -> Vec<Chunk> {
        let mut rest = self.rest;
        rest.clear();
        rest
    }
}

/// What the hub handed out and the writer has not taken yet.
#[derive(Default)]
struct Handed {
    burst: Burst,
    /// The close, which follows every frame handed out before it.
    close: Option<(CloseCode, String)>,
    /// The hub forgot the connection: nothing more will come.
    hung_up: bool,
}

/// What the writer takes in one go: the frames handed out since it last took, and the close
/// if the hub has sent it (to be written after them).
pub(crate) struct Taken {
    pub burst: Burst,
    pub close: Option<(CloseCode, String)>,
}

impl Link {
    fn handed(&self) -> MutexGuard<'_, Handed> {
        // Poisoned only by a panic inside these few lines; what they guard is still whole.
        self.handed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the chunks of `batch` to the writer, after what it has not taken yet, and
    /// leaves `batch` empty (perhaps another `Vec`, see [`Burst::add`]). Returns the writer's
    /// waker, for the caller to wake once it has handed out to every connection it has
    /// frames for (`None` if the writer is not waiting, or its waker was taken already).
    #[must_use = "the writer sleeps until its waker is woken"]
    pub fn hand_out(&self, batch: &mut Vec<Chunk>) -> Option<Waker> {
        self.handed().burst.add(batch);
        self.writer.take()
    }

    /// Hands the writer the close, to write after the frames handed out before it.
    pub fn close(&self, code: CloseCode, reason: String) {
        self.handed().close = Some((code, reason));
        self.writer.wake();
    }

    /// The hub forgot the connection: the writer takes what is left and then ends, and a
    /// paused reader is let go, to see the end too.
    pub fn hang_up(&self) {
        self.handed().hung_up = true;
        self.writer.wake();
        self.resume();
    }

    /// Takes everything handed out; `None` once the hub hung up and nothing is left.
    pub async fn take(&self) -> Option<Taken> {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Taken>> {
        // Registered before the look, so a hand-out after the look wakes this writer.
        self.writer.register(cx.waker());
        let mut handed = self.handed();
        if !handed.burst.is_empty() || handed.close.is_some() {
            return Poll::Ready(Some(Taken {
                burst: std::mem::take(&mut handed.burst),
                close: handed.close.take(),
            }));
        }
        match handed.hung_up {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }

    /// Completes once the hub has sent the close, with it and the frames handed out before
    /// it; never, if the hub hangs up without one.
    pub async fn closing(&self) -> (CloseCode, String, Burst) {
        std::future::poll_fn(|cx| {
            self.writer.register(cx.waker());
            let mut handed = self.handed();
            match handed.close.take() {
                Some((code, reason)) => {
                    Poll::Ready((code, reason, std::mem::take(&mut handed.burst)))
                }
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Stops the reading of the connection.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Lets the reading of the connection go on.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        self.resumed.notify(usize::MAX);
    }

    /// Completes once reading is allowed.
    pub async fn opened(&self) {
        while self.paused.load(Ordering::Acquire) {
            let listener = self.resumed.listen();
            if !self.paused.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    fn frames(n: usize) -> Vec<Chunk> {
        (0..n)
            .map(|i| Chunk::from(tidings_core::Frame::Text(i.to_string().into())))
            .collect()
    }

    fn texts(burst: &Burst) -> Vec<String> {
        burst
            .chunks()
            .flat_map(|chunk| chunk.clone())
            .map(|frame| match frame {
                tidings_core::Frame::Text(text) => String::from_utf8_lossy(text.as_bytes()).into(),
                other => panic!("a text frame, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_lone_chunk_goes_inline_and_several_bring_their_vec() {
        let mut burst = Burst::default();
        let mut batch = frames(1);
        batch.reserve(8);
        burst.add(&mut batch);
        assert!(batch.is_empty() && batch.capacity() >= 8, "the Vec stays");
        assert_eq!(burst.only().map(Chunk::len), Some(1));
        assert_eq!(burst.into_spare().capacity(), 0, "no Vec was used");

        let mut burst = Burst::default();
        let mut batch = frames(2);
        burst.add(&mut batch);
        assert_eq!(batch.capacity(), 0, "the Vec went with its chunks");
        assert!(burst.only().is_none());
        let mut more = frames(1);
        burst.add(&mut more);
        assert_eq!(texts(&burst), ["0", "1", "0"]);
        assert!(burst.into_spare().capacity() >= 2, "given back for reuse");
    }

    #[test]
    fn the_writer_takes_all_that_was_handed_out_in_order_then_the_close_then_the_end() {
        let link = Link::default();
        let (wakes, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(link.poll_take(&mut cx).is_pending());

        let waiting = link.hand_out(&mut frames(1));
        assert!(
            link.hand_out(&mut frames(2)).is_none(),
            "the first hand-out took the waker"
        );
        let mut batch = frames(3);
        let _ = link.hand_out(&mut batch);
        assert!(
            batch.is_empty() && batch.capacity() >= 3,
            "added to the others"
        );
        link.close(CloseCode(4100), "done".into());
        assert_eq!(wakes.count(), 0, "woken by whoever holds the waker");
        waiting.expect("the waiting writer's waker").wake();
        assert_eq!(wakes.count(), 1, "woken once: it takes all in one go");

        let Poll::Ready(Some(taken)) = link.poll_take(&mut cx) else {
            panic!("taken");
        };
        let close = taken.close;
        assert_eq!(texts(&taken.burst), ["0", "0", "1", "0", "1", "2"]);
        assert_eq!(close, Some((CloseCode(4100), "done".to_owned())));

        assert!(link.poll_take(&mut cx).is_pending(), "nothing more yet");
        link.hang_up();
        assert!(matches!(link.poll_take(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_hand_out_wakes_the_waker_of_the_writer_s_last_poll() {
        let link = Link::default();
        let (first, waker) = crate::CountedWakes::waker();
        assert!(link
            .poll_take(&mut Context::from_waker(&waker))
            .is_pending());
        // The same writer, polled again from another waker (a task moved, a `select!`).
        let (last, waker) = crate::CountedWakes::waker();
        assert!(link
            .poll_take(&mut Context::from_waker(&waker))
            .is_pending());
        link.hand_out(&mut frames(1))
            .expect("the writer waits")
            .wake();
        assert_eq!((first.count(), last.count()), (0, 1));
        // A close wakes it too, when no hand-out took the waker first.
        let _ = link.poll_take(&mut Context::from_waker(&waker));
        assert!(link
            .poll_take(&mut Context::from_waker(&waker))
            .is_pending());
        link.close(CloseCode::NORMAL, String::new());
        assert_eq!(last.count(), 2);
    }

    #[test]
    fn frames_left_when_the_hub_hangs_up_are_still_taken() {
        let link = Link::default();
        assert!(
            link.hand_out(&mut frames(1)).is_none(),
            "no writer waits yet"
        );
        link.hang_up();
        let taken = futures_lite::future::block_on(link.take()).expect("what is left");
        assert_eq!(texts(&taken.burst), ["0"]);
        assert!(futures_lite::future::block_on(link.take()).is_none());
    }

    #[test]
    fn closing_waits_for_the_close_and_takes_the_frames_before_it() {
        let link = Link::default();
        let _ = link.hand_out(&mut frames(2));
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        let mut closing = std::pin::pin!(link.closing());
        assert!(
            closing.as_mut().poll(&mut cx).is_pending(),
            "frames are no close"
        );
        link.hang_up();
        assert!(
            closing.as_mut().poll(&mut cx).is_pending(),
            "nor is a hang-up"
        );
        link.close(CloseCode::NORMAL, String::new());
        let Poll::Ready((code, _, rest)) = closing.as_mut().poll(&mut cx) else {
            panic!("the close");
        };
        assert_eq!(code, CloseCode::NORMAL);
        assert_eq!(texts(&rest), ["0", "1"]);
    }

    #[test]
    fn a_hang_up_lets_a_paused_reader_go() {
        let link = Link::default();
        link.pause();
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        let mut opened = std::pin::pin!(link.opened());
        assert!(opened.as_mut().poll(&mut cx).is_pending());
        link.hang_up();
        assert!(opened.as_mut().poll(&mut cx).is_ready());
    }
}
