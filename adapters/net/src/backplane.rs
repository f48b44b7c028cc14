//! The cluster seam of the driver: a [`Backplane`] carries this node's publishes to the other
//! nodes of a cluster and theirs to this node (`tidings-redis` does it over Redis).
//!
//! The core decides what crosses nodes: with `Config::cluster` on, it outputs each publish to
//! a room, a namespace or everyone as [`Output::Cluster`](tidings_core::Output::Cluster), and
//! [`Hub::handle_remote`](tidings_core::Hub::handle_remote) delivers what another node
//! published to this node's members. This module only moves those messages between the hub
//! task and the backplane's own task, through a [`Link`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, WeakSender};
use tidings_core::ClusterMessage;

use crate::driver::Control;

/// Messages this node publishes that wait for the backplane. Past this many (the backplane
/// is down or slower than the node publishes) a publish is not forwarded and counted in
/// [`BackplaneStats::lost`], rather than held in memory without bound.
pub(crate) const OUTGOING_LIMIT: usize = 65_536;

/// Carries publishes between the nodes of a cluster. Give one to
/// [`Builder::backplane`](crate::Builder::backplane); the server runs it as a task of its own.
pub trait Backplane: Send + 'static {
    /// Runs this node's side of the backplane until the hub stops, that is until
    /// [`Link::outgoing`] returns `None`: publishes each of this node's messages for the
    /// other nodes, and hands each of theirs to [`Link::deliver`]. It should ride out
    /// outages of its transport (reconnect with backoff), reporting them through the link.
    fn run(self: Box<Self>, link: Link) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The hub's side of a backplane: what this node publishes, and where other nodes'
/// messages go.
pub struct Link {
    pub(crate) outgoing: Receiver<ClusterMessage>,
    /// Weak: the hub task ends when every handle and connection is gone, backplane or not.
    pub(crate) control: WeakSender<Control>,
    pub(crate) stats: Arc<Stats>,
}

impl Link {
    /// The next message this node published for the other nodes; `None` once the hub has
    /// stopped.
    pub async fn outgoing(&self) -> Option<ClusterMessage> {
        self.outgoing.recv().await.ok()
    }

    /// Delivers a message another node published to this node's members. `false` once the
    /// hub has stopped.
    pub async fn deliver(&self, message: ClusterMessage) -> bool {
        let Some(control) = self.control.upgrade() else {
            return false;
        };
        let sent = control.send(Control::Remote(message)).await.is_ok();
        if sent {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Reports that this node's messages could not be carried (the transport failed before
    /// they went out): they are counted in [`BackplaneStats::lost`].
    pub fn lost(&self, messages: u64) {
        self.stats.lost.fetch_add(messages, Ordering::Relaxed);
    }

    /// Reports that a message went out to the other nodes.
    pub fn sent(&self) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports whether the transport is up (connected and subscribed) or down; each change
    /// to down counts as an outage.
    pub fn set_up(&self, up: bool) {
        let was = self.stats.up.swap(u64::from(up), Ordering::Relaxed);
        if was == 1 && !up {
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The backplane's counters, shared by the link and the handle.
#[derive(Default, Debug)]
pub(crate) struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    pub(crate) lost: AtomicU64,
    outages: AtomicU64,
    up: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> BackplaneStats {
        BackplaneStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed) == 1,
        }
    }
}

/// How a node's backplane is doing ([`Handle::backplane`](crate::Handle::backplane)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Messages this node sent to the other nodes.
    pub sent: u64,
    /// Messages from other nodes delivered to this node's hub.
    pub received: u64,
    /// Messages this node published that never reached the other nodes (the transport was
    /// down, or more waited than the backplane could take).
    pub lost: u64,
    /// Times the transport went down.
    pub outages: u64,
    /// Whether the transport is up now.
    pub up: bool,
}
