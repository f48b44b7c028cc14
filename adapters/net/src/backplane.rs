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
//! node, each answering from its own hub ([`Link::answer`]); and emits to a [`Member`] on
//! whichever node holds it ([`Link::emit`] on that node).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, Sender, WeakSender};
use serde::{Deserialize, Serialize};
use tidings_core::{ClusterMessage, ConnId, Message};

use crate::driver::Control;

/// Messages this node publishes that may wait for the backplane, by default
/// ([`Builder::backplane_backlog`](crate::Builder::backplane_backlog)).
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
    pub(crate) presence: Receiver<Presence>,
    pub(crate) requests: Receiver<Request>,
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

    /// Emits `message` to connection `conn` (a [`Member::conn`]) of this node.
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
    /// to down counts as an outage, and each change is a [`ClusterEvent`] for this node's
    /// listeners.
    pub fn set_up(&self, up: bool) {
        let was = self.stats.up.swap(u64::from(up), Ordering::Relaxed) == 1;
        if was == up {
            return;
        }
        if !up {
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(control) = self.control.upgrade() {
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

/// A question about the whole cluster, asked of every node
/// ([`Handle::cluster_members`](crate::Handle::cluster_members) and the like).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Query {
    /// The connections in `room` of `namespace`.
    Members {
        /// The namespace, e.g. `/`.
        namespace: String,
        /// The room.
        room: String,
    },
    /// How many connections are open.
    Count,
    /// The names of the connections that have one.
    Names,
}

/// One node's answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Answer {
    /// The room's members on that node.
    Members(Vec<Member>),
    /// The connections open on that node.
    Count(usize),
    /// The names held on that node.
    Names(Vec<String>),
}

/// A connection somewhere in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node that holds it (its backplane's id).
    pub node: String,
    /// Its id on that node (`ConnId`'s text form): meaningful there only.
    pub conn: String,
    /// Its name, if it has one.
    pub name: Option<String>,
}

/// What a handle asks of its backplane.
#[non_exhaustive]
pub enum Request {
    /// A question for every node.
    Ask(Question),
    /// An emit to a connection on some node.
    Emit(Emit),
}

/// An emit to a [`Member`], on its way to the node that holds it.
pub struct Emit {
    /// The recipient.
    pub member: Member,
    /// What it gets.
    pub message: Message,
    pub(crate) reply: Sender<Result<(), String>>,
}

impl Emit {
    /// Tells the handle that emitted: sent on (to its node, or delivered here), or why not.
    pub fn reply(self, sent: Result<(), String>) {
        let _ = self.reply.try_send(sent);
    }
}

/// A handle's question on its way to the backplane, with where the answer goes.
pub struct Question {
    /// What is asked.
    pub query: Query,
    pub(crate) reply: Sender<Result<Vec<Answer>, String>>,
}

impl Question {
    /// Answers the handle that asked: every node's answer, or why the cluster could not
    /// answer (a node that did not answer in time, Redis unreachable, ...).
    pub fn reply(self, answers: Result<Vec<Answer>, String>) {
        let _ = self.reply.try_send(answers);
    }
}

/// A hub's own answer to `query`.
pub(crate) fn local_answer(hub: &tidings_core::Hub, node: &str, query: &Query) -> Answer {
    match query {
        Query::Members { namespace, room } => Answer::Members(
            hub.members(namespace, room)
                .into_iter()
                .map(|conn| Member {
                    node: node.to_owned(),
                    conn: conn.to_string(),
                    name: hub.info(conn).and_then(|i| i.name.clone()),
                })
                .collect(),
        ),
        Query::Count => Answer::Count(hub.connection_count()),
        Query::Names => Answer::Names(hub.names().map(str::to_owned).collect()),
    }
}

/// A connection joined or left a room, somewhere in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Who (its name may be absent for a leave caused by its close).
    pub member: Member,
    /// The room, in the member's namespace.
    pub room: String,
    /// Joined (`true`) or left.
    pub joined: bool,
}

/// What a node's [`Handle::cluster_events`](crate::Handle::cluster_events) listeners hear.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A connection on another node joined or left a room.
    Presence(Presence),
    /// The backplane reached its transport (connected and subscribed).
    Up,
    /// The backplane lost its transport: until `Up`, this node serves its own clients only.
    Down,
}
