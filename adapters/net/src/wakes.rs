//! The writers the hub task has handed frames to and not yet woken, shared by the hub task
//! and the writers, so that the wakes spread over the threads that run writers.
//!
//! The hub posts its writers' wakers here as it hands out, in groups (waking each group's
//! first, so that they start while it goes on), then, at the end of its round, wakes those
//! still waiting in order until none is left. Each writer that takes a hand-out first takes
//! the next [`RELAYED`] waiting and wakes them. No wake is lost or doubled: whoever takes a
//! waker from the list wakes it at once, and the hub takes until the list is empty.
//!
//! Woken by the hub alone, one after another, tokio's idle worker was unparked to run the
//! one writer queued so far, and parked again: 25 to 127 times per paced publish to 1,000
//! readers (a scheduler trace; the idle worker parked on the hub's CPU and preempted it at
//! each unpark). A writer that wakes writers keeps the worker that runs it busy with its
//! own: 5 to 11 unparks per publish, against 3 or 4 for a relay whose channel wakes its
//! readers in one loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

/// How many waiting writers a writer wakes before it writes.
pub(crate) const RELAYED: usize = 2;

/// Writers waiting to be woken (see the module docs).
#[derive(Default)]
pub(crate) struct Wakes {
    /// In the order the hub handed out.
    waiting: Mutex<VecDeque<Waker>>,
    /// How many wait: a writer looks here without taking the lock.
    len: AtomicUsize,
}

impl Wakes {
    fn waiting(&self) -> MutexGuard<'_, VecDeque<Waker>> {
        // Poisoned only by a panic inside a push or a pop; the list is still whole.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Posts `wakers` after those waiting, leaving the `Vec` empty.
    pub fn post(&self, wakers: &mut Vec<Waker>) {
        if wakers.is_empty() {
            return;
        }
        let mut waiting = self.waiting();
        waiting.extend(wakers.drain(..));
        self.len.store(waiting.len(), Ordering::Release);
    }

    /// Posts `wakers` (leaving the `Vec` empty), then wakes every waiting writer that no
    /// writer takes meanwhile. When it returns, none waits: each was woken, or taken by a
    /// writer that wakes it.
    pub fn wake_all(&self, wakers: &mut Vec<Waker>) {
        self.post(wakers);
        while self.wake_some(1) > 0 {}
    }

    /// Takes the first `n` waiting writers (at most [`RELAYED`]) and wakes them; returns
    /// how many.
    pub fn wake_some(&self, n: usize) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut taken: [Option<Waker>; RELAYED] = Default::default();
        let count = {
            let mut waiting = self.waiting();
            let count = n.min(RELAYED).min(waiting.len());
            for slot in &mut taken[..count] {
                *slot = waiting.pop_front();
            }
            self.len.store(waiting.len(), Ordering::Release);
            count
        };
        // Woken outside the lock: a wake may run a runtime's scheduling.
        for waker in taken.into_iter().flatten() {
            waker.wake();
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::CountedWakes;

    fn counted(n: usize) -> (Vec<Arc<CountedWakes>>, Vec<Waker>) {
        (0..n).map(|_| CountedWakes::waker()).unzip()
    }

    fn counts(wakes: &[Arc<CountedWakes>]) -> Vec<usize> {
        wakes.iter().map(|w| w.count()).collect()
    }

    #[test]
    fn a_writer_wakes_the_first_waiting_and_the_hub_the_rest() {
        let list = Wakes::default();
        let (wakes, mut wakers) = counted(5);
        list.post(&mut wakers);
        assert!(wakers.is_empty());
        assert_eq!(counts(&wakes), [0; 5], "posting wakes nobody");

        assert_eq!(list.wake_some(10), RELAYED, "at most RELAYED at a time");
        assert_eq!(counts(&wakes), [1, 1, 0, 0, 0], "in the order posted");

        let (later, mut more) = counted(1);
        list.wake_all(&mut more);
        assert_eq!(counts(&wakes), [1; 5]);
        assert_eq!(counts(&later), [1]);
        assert_eq!(list.wake_some(RELAYED), 0, "none left");
    }

    #[test]
    fn every_writer_is_woken_once_while_writers_and_the_hub_take_together() {
        let list = Arc::new(Wakes::default());
        let (wakes, mut wakers) = counted(20_000);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (list, done) = (list.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut woke = 0;
                    while !done.load(Ordering::Acquire) {
                        woke += list.wake_some(RELAYED);
                    }
                    woke
                })
            })
            .collect();
        // Posted in parts, as the hub does, and woken until none is left.
        let mut rest = wakers.split_off(64);
        list.post(&mut wakers);
        list.wake_some(1);
        list.wake_all(&mut rest);
        assert_eq!(list.wake_some(RELAYED), 0, "none waits");
        // A writer may be between its take and its wakes: let it finish.
        done.store(true, Ordering::Release);
        let by_writers: usize = writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .sum();
        assert_eq!(counts(&wakes), vec![1; 20_000], "each woken, and only once");
        assert!(by_writers <= 20_000);
    }
}
