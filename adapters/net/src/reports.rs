//! Write reports, from the connections' writers to the hub task.
//!
//! A writer reports each burst it wrote (the core's [`Input::Written`]) by adding it to one
//! shared list, which the hub task takes whole whenever it wakes, before anything else. The
//! writer wakes the hub only when its report would let something proceed (see
//! [`Input::Written`] for the rule the core gives):
//! - it has written a quarter of the write window since it last woke the hub, so frames
//!   held back by the window go out;
//! - or a queue is behind ([`Hub::any_behind`]), so a paused client or a waiting publish
//!   may go on.
//!
//! Reports sent one by one woke the hub task 10 to 80 times per publish to 1,000 readers,
//! each wake a task switch, and on tokio often a wake of the other worker thread. Now a
//! publish to readers that keep up wakes it once (for the publish) and its reports ride
//! along.
//!
//! [`Input::Written`]: tidings_core::Input::Written
//! [`Hub::any_behind`]: tidings_core::Hub::any_behind

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tidings_core::{Chunk, ConnId};

use crate::wakes::Wakes;

/// How many emptied hand-out `Vec`s wait for the hub at most: beyond it, a writer frees
/// its own.
pub(crate) const SPARE_VECS: usize = 64;

/// The write reports shared by every writer and the hub task (see the module docs).
pub(crate) struct Reports {
    list: Mutex<List>,
    /// Set by the hub while a report must reach it at once (a queue is behind).
    urgent: AtomicBool,
    /// A writer asked the hub to wake since it last looked.
    nudged: AtomicBool,
    hub: AtomicWaker,
    /// Frames a writer writes between two wakes of the hub at most: a quarter of the
    /// write window.
    nudge_at: usize,
    /// The writers the hub has handed frames to and not yet woken (`wakes.rs`): shared by
    /// the same parties, so kept here.
    pub wakes: Wakes,
}

/// What waits for the hub.
#[derive(Default)]
pub(crate) struct List {
    /// Frames written, by connection, in the order reported.
    pub written: Vec<(ConnId, usize)>,
    /// Emptied hand-out `Vec`s, for later hand-outs: allocated on the hub's thread, they
    /// are freed there too (a writer's free on another thread was 2 % of the server's CPU
    /// in the open-loop fan-out, perf).
    pub spare: Vec<Vec<Chunk>>,
}

impl Reports {
    /// Reports for a hub whose write window is `write_window` frames.
    pub fn new(write_window: usize) -> Self {
        Reports {
            list: Mutex::new(List::default()),
            urgent: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
            hub: AtomicWaker::new(),
            nudge_at: (write_window / 4).max(1),
            wakes: Wakes::default(),
        }
    }

    fn list(&self) -> MutexGuard<'_, List> {
        // Poisoned only by a panic inside a push or a swap; the list is still whole.
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A writer wrote `frames` frames of `conn` from `spare`, now emptied. `unannounced`
    /// counts the frames it wrote since it last woke the hub; this wakes the hub (and
    /// zeroes it) when it reaches a quarter window or while the hub wants every report.
    pub fn report(&self, conn: ConnId, frames: usize, spare: Vec<Chunk>, unannounced: &mut usize) {
        let freed = {
            let mut list = self.list();
            list.written.push((conn, frames));
            if list.spare.len() < SPARE_VECS && spare.capacity() > 0 {
                list.spare.push(spare);
                None
            } else {
                Some(spare)
            }
        };
        drop(freed);
        *unannounced += frames;
        // After the push: the hub sets `urgent` before it last looks at the list (`pending`),
        // so either it sees this report there or this load sees its flag.
        if *unannounced >= self.nudge_at || self.urgent.load(Ordering::SeqCst) {
            *unannounced = 0;
            if !self.nudged.swap(true, Ordering::AcqRel) {
                self.hub.wake();
            }
        }
    }

    /// Takes everything reported since the last take, leaving `into`'s emptied `Vec`s in
    /// its place (so neither side allocates in the steady state).
    pub fn take(&self, into: &mut List) {
        into.written.clear();
        let mut list = self.list();
        std::mem::swap(&mut list.written, &mut into.written);
        into.spare.append(&mut list.spare);
    }

    /// Whether the hub wants every report at once from now on. Returns whether a report is
    /// waiting: one made before the writer could see the flag, which the hub must then
    /// take itself.
    pub fn want_at_once(&self, urgent: bool) -> bool {
        self.urgent.store(urgent, Ordering::SeqCst);
        urgent && !self.list().written.is_empty()
    }

    /// Ready once a writer has woken the hub since it last was.
    pub fn poll_nudged(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the look, so a nudge after the look wakes this task.
        self.hub.register(cx.waker());
        match self.nudged.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn conn(n: u32) -> ConnId {
        format!("{n}.0").parse().expect("id")
    }

    #[test]
    fn a_writer_wakes_the_hub_each_quarter_window_and_every_report_is_taken_in_order() {
        let reports = Reports::new(16); // a nudge each 4 frames
        let (wakes, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(reports.poll_nudged(&mut cx).is_pending());
        let mut unannounced = 0;
        for n in 0..3 {
            reports.report(conn(n), 1, Vec::new(), &mut unannounced);
        }
        assert_eq!(wakes.count(), 0, "3 of 4: no wake");
        assert_eq!(unannounced, 3);
        reports.report(conn(3), 1, Vec::with_capacity(2), &mut unannounced);
        assert_eq!(wakes.count(), 1, "the fourth wakes the hub");
        assert_eq!(unannounced, 0);
        assert!(reports.poll_nudged(&mut cx).is_ready());
        assert!(reports.poll_nudged(&mut cx).is_pending(), "once per nudge");

        let mut taken = List::default();
        reports.take(&mut taken);
        assert_eq!(
            taken.written,
            [(conn(0), 1), (conn(1), 1), (conn(2), 1), (conn(3), 1)]
        );
        assert_eq!(taken.spare.len(), 1, "only a Vec with room is kept");
        reports.take(&mut taken);
        assert!(taken.written.is_empty(), "taken once");
    }

    #[test]
    fn while_the_hub_wants_reports_at_once_each_one_wakes_it() {
        let reports = Reports::new(512);
        let (wakes, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(reports.poll_nudged(&mut cx).is_pending());
        let mut unannounced = 0;
        reports.report(conn(1), 1, Vec::new(), &mut unannounced);
        assert_eq!(wakes.count(), 0);
        // The report came before the flag: the hub learns it must take it itself.
        assert!(reports.want_at_once(true));
        let mut taken = List::default();
        reports.take(&mut taken);
        assert!(!reports.want_at_once(true), "nothing left to take");
        reports.report(conn(1), 1, Vec::new(), &mut unannounced);
        assert_eq!(wakes.count(), 1, "at once");
        assert!(reports.poll_nudged(&mut cx).is_ready());
        assert!(!reports.want_at_once(false), "not wanted: nothing to say");
        reports.report(conn(1), 1, Vec::new(), &mut unannounced);
        assert_eq!(wakes.count(), 1, "held back again");
    }

    #[test]
    fn the_spare_vecs_waiting_for_the_hub_are_bounded() {
        let reports = Reports::new(512);
        let mut unannounced = 0;
        for _ in 0..SPARE_VECS + 10 {
            reports.report(conn(1), 1, Vec::with_capacity(4), &mut unannounced);
        }
        let mut taken = List::default();
        reports.take(&mut taken);
        assert_eq!(taken.spare.len(), SPARE_VECS);
        assert_eq!(taken.written.len(), SPARE_VECS + 10);
    }
}
