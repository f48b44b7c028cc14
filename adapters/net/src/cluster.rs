//! What the nodes of a cluster say to each other and what a handle asks of them, as data:
//! questions ([`Query`]) and their [`Answer`]s, [`Member`]s, membership changes
//! ([`Presence`]), [`ClusterEvent`]s, a handle's [`Request`]s, and the backplane's counters.
//! The driver and handles use these; the [`Backplane`](crate::Backplane) carries them.

use std::sync::atomic::{AtomicU64, Ordering};

use async_channel::Sender;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use tidings_core::{Message, Payload};

/// The backplane's counters, shared by the link and the handle.
#[derive(Default, Debug)]
pub(crate) struct Stats {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) outages: AtomicU64,
    pub(crate) up: AtomicU64,
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
    /// An emit to a connection on some node that asks it to acknowledge.
    EmitAck(EmitAck),
}

/// An emit with an ack to a [`Member`], on its way to the node that holds it.
pub struct EmitAck {
    /// The recipient.
    pub member: Member,
    /// What it gets.
    pub message: Message,
    /// How long it has to answer (that node's `Config::ack_timeout` if `None`).
    pub timeout: Option<Duration>,
    pub(crate) reply: Sender<Result<Payload, AckFailure>>,
}

impl EmitAck {
    /// Tells the handle that asked: the member's answer, or why there is none.
    pub fn reply(self, answer: Result<Payload, AckFailure>) {
        let _ = self.reply.try_send(answer);
    }
}

/// Why an ack asked of a [`Member`] brought no answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AckFailure {
    /// The member did not answer within this time.
    TimedOut(Duration),
    /// The member's connection closed (or was not open) first.
    Closed,
    /// The cluster could not carry the question or its answer.
    Cluster(String),
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
