//! The cluster seam of the driver: a [`Backplane`] carries this node's publishes to the other
//! nodes of a cluster and theirs to this node (`tidings-redis` does it over Redis).
//!
//! The core decides what crosses nodes: with `Config::cluster` on, it outputs each publish to
//! a room, a namespace or everyone as [`Output::Cluster`](tidings_core::Output::Cluster), and
//! [`Hub::handle_remote`](tidings_core::Hub::handle_remote) delivers what another node
//! published to this node's members. This module only moves those messages between the hub
//! task and the backplane's own task, through a [`Link`].
//!
//! A handle's [`Request`]s go the same way: questions about the whole cluster ([`Query`]: a
//! room's members, the connection count, the names), which the backplane asks of every live
//! node, each answering from its own hub ([`Link::answer`]); and emits to a [`Member`](crate::Member) on
//! whichever node holds it ([`Link::emit`] on that node).
//!
//! A backplane that numbers the streams of channels that keep history
//! ([`Backplane::numbers_history`]) also gets the hub's questions about them
//! ([`Link::fetch`]), and answers each ([`Link::fetched`]); when its link breaks
//! ([`Link::set_up`]`(false)`), the hub stops trusting what it saw of those streams until it
//! asks again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_channel::{Receiver, WeakSender};
use std::time::Duration;

use tidings_core::{AckOutcome, ClusterMessage, ConnId, Fetch, Message, Payload, Stream};

use crate::cluster::{
    local_answer, AckFailure, Answer, ClusterEvent, Presence, Query, Request, Stats,
};
use crate::driver::Control;

/// Messages this node publishes that may wait for the backplane, by default
/// ([`Builder::backplane_backlog`](crate::Builder::backplane_backlog)).
pub(crate) const OUTGOING_LIMIT: usize = 65_536;

/// Questions for the backplane that may wait for it; past that, a request is served from what
/// this node has (as if the backplane could not be reached).
pub(crate) const FETCHES: usize = 4096;

/// Carries publishes between the nodes of a cluster. Give one to
/// [`Builder::backplane`](crate::Builder::backplane); the server runs it as a task of its own.
pub trait Backplane: Send + 'static {
    /// Runs this node's side of the backplane until the hub stops, that is until
    /// [`Link::outgoing`] returns `None`: publishes each of this node's messages for the
    /// other nodes, and hands each of theirs to [`Link::deliver`]. It should ride out
    /// outages of its transport (reconnect with backoff), reporting them through the link.
    fn run(self: Box<Self>, link: Link) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Whether this backplane numbers and keeps the streams of channels that keep history,
    /// so that every node hands out the same offsets and a client recovers on any node
    /// (turns on `Config::sequenced`). Such a backplane brings each
    /// [`ClusterMessage::Sequence`] back to every node, this one included, numbered
    /// ([`ClusterMessage::Sequenced`]), and answers every [`Link::fetch`] with
    /// [`Link::fetched`]. Default `false`.
    fn numbers_history(&self) -> bool {
        false
    }
}

/// The hub's side of a backplane: what this node publishes, and where other nodes'
/// messages go.
pub struct Link {
    pub(crate) outgoing: Receiver<ClusterMessage>,
    pub(crate) presence: Receiver<Presence>,
    pub(crate) requests: Receiver<Request>,
    pub(crate) fetches: Receiver<Fetch>,
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

    /// The next message this node published for the other nodes, if one is waiting now: for
    /// a backplane that sends several at a time.
    pub fn try_outgoing(&self) -> Option<ClusterMessage> {
        self.outgoing.try_recv().ok()
    }

    /// The next change of membership on this node (a connection joined or left a room), for
    /// the other nodes; `None` once the hub has stopped. Its member's `node` is empty: the
    /// backplane names itself.
    pub async fn presence(&self) -> Option<Presence> {
        self.presence.recv().await.ok()
    }

    /// Tells this node's listeners ([`Handle::cluster_events`](crate::Handle::cluster_events))
    /// of a change of membership on another node.
    pub async fn presence_arrived(&self, change: Presence) -> bool {
        let Some(control) = self.control.upgrade() else {
            return false;
        };
        let event = ClusterEvent::Presence(change);
        let command: crate::driver::Command = Box::new(move |driver, _| driver.tell(&event));
        control.send(Control::Command(command)).await.is_ok()
    }

    /// The next request of a handle for the cluster; `None` once every handle is gone.
    /// Answer it with its `reply`.
    pub async fn request(&self) -> Option<Request> {
        self.requests.recv().await.ok()
    }

    /// Emits `message` to connection `conn` (a [`Member::conn`](crate::Member::conn)) of this node.
    pub async fn emit(&self, conn: &str, message: Message) -> Result<(), String> {
        let conn: ConnId = conn
            .parse()
            .map_err(|_| format!("{conn:?} is not a connection id"))?;
        let control = self.control.upgrade().ok_or("the hub has stopped")?;
        let (tx, rx) = async_channel::bounded(1);
        let command: crate::driver::Command = Box::new(move |driver, now| {
            let sent = driver.hub.emit(now, conn, message).map(|_| ());
            let _ = tx.try_send(sent.map_err(|e| e.to_string()));
        });
        control
            .send(Control::Command(command))
            .await
            .map_err(|_| "the hub has stopped")?;
        rx.recv().await.map_err(|_| "the hub has stopped")?
    }

    /// Emits `message` to connection `conn` of this node, asking it to acknowledge within
    /// `timeout` (the hub's `Config::ack_timeout` if `None`). The future resolves with its
    /// answer; it owns what it needs, so a backplane can hold many while it does other work.
    pub fn emit_with_ack(
        &self,
        conn: &str,
        message: Message,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Future<Output = Result<Payload, AckFailure>> + Send>> {
        let conn: Result<ConnId, _> = conn.parse();
        let control = self.control.upgrade();
        Box::pin(async move {
            let closed = || AckFailure::Closed;
            let (Ok(conn), Some(control)) = (conn, control) else {
                return Err(closed());
            };
            let (tx, rx) = async_channel::bounded(1);
            let command: crate::driver::Command = Box::new(move |driver, now| {
                let wait = timeout.unwrap_or(driver.hub.config().ack_timeout);
                let asked = driver
                    .hub
                    .emit_with_ack(now, conn, message, timeout)
                    .map(|ack| (driver.await_ack(conn, ack), wait));
                let _ = tx.try_send(asked);
            });
            control
                .send(Control::Command(command))
                .await
                .map_err(|_| closed())?;
            let (outcome, wait) = rx
                .recv()
                .await
                .map_err(|_| closed())?
                .map_err(|_| closed())?;
            match outcome.recv().await {
                Ok(AckOutcome::Reply(payload)) => Ok(payload),
                Ok(AckOutcome::TimedOut) => Err(AckFailure::TimedOut(wait)),
                _ => Err(closed()),
            }
        })
    }

    /// This node's own answer to `query`, from its hub, its members marked with `node`.
    /// `None` once the hub has stopped.
    pub async fn answer(&self, node: &str, query: &Query) -> Option<Answer> {
        let control = self.control.upgrade()?;
        let (tx, rx) = async_channel::bounded(1);
        let (node, query) = (node.to_owned(), query.clone());
        let command: crate::driver::Command = Box::new(move |driver, _| {
            let _ = tx.try_send(local_answer(&driver.hub, &node, &query));
        });
        control.send(Control::Command(command)).await.ok()?;
        rx.recv().await.ok()
    }

    /// The next question of the hub about a channel whose stream this backplane keeps (see
    /// [`Backplane::numbers_history`]); `None` once the hub has stopped. Answer each with
    /// [`Link::fetched`], even if the backplane cannot be reached (`None`): the request it
    /// holds back waits for that answer.
    pub async fn fetch(&self) -> Option<Fetch> {
        self.fetches.recv().await.ok()
    }

    /// Answers the [`Fetch`] `id` with the channel's stream, or `None` if it could not be
    /// read. `false` once the hub has stopped.
    pub async fn fetched(&self, id: u64, stream: Option<Stream>) -> bool {
        let Some(control) = self.control.upgrade() else {
            return false;
        };
        let command: crate::driver::Command =
            Box::new(move |driver, now| driver.hub.fetched(now, id, stream));
        control.send(Control::Command(command)).await.is_ok()
    }

    /// Delivers a message another node published to this node's members. `false` once the
    /// hub has stopped.
    pub async fn deliver(&self, message: ClusterMessage) -> bool {
        let Some(control) = self.control.upgrade() else {
            return false;
        };
        let sent = control
            .send(Control::Remote(Box::new(message)))
            .await
            .is_ok();
        if sent {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Reports that this node's messages could not be carried (the transport failed before
    /// they went out): they are counted in [`BackplaneStats::lost`](crate::BackplaneStats::lost).
    pub fn lost(&self, messages: u64) {
        self.stats.lost.fetch_add(messages, Ordering::Relaxed);
        crate::logs::backplane_lost(messages);
    }

    /// Reports that a message went out to the other nodes.
    pub fn sent(&self) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports whether the transport is up (connected and subscribed) or down; each change
    /// to down counts as an outage, and each change is a [`ClusterEvent`] for this node's
    /// listeners.
    pub fn set_up(&self, up: bool) {
        let was = self.stats.up.swap(u64::from(up), Ordering::Relaxed) == 1;
        if was == up {
            return;
        }
        crate::logs::backplane(up);
        if !up {
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(control) = self.control.upgrade() {
            // Down: what comes next may not follow what this node saw, so it asks again.
            // Up: its members get what was published meanwhile.
            let streams: crate::driver::Command = if up {
                Box::new(|driver, _| driver.hub.backplane_restored())
            } else {
                Box::new(|driver, _| driver.hub.backplane_lost())
            };
            let _ = control.try_send(Control::Command(streams));
            let event = if up {
                ClusterEvent::Up
            } else {
                ClusterEvent::Down
            };
            let command: crate::driver::Command = Box::new(move |driver, _| driver.tell(&event));
            // The control channel is unbounded: this never waits, and fails only once the
            // hub has stopped.
            let _ = control.try_send(Control::Command(command));
        }
    }
}
