//! The hub task: the one owner of the [`Hub`]. It runs the sans-IO loop
//! `select(connection input, application command, timer) → hub → drain outputs → rearm`.
//!
//! Connection tasks send the hub's [`Input`] for what they read over a bounded channel (a full
//! channel stops their reading, so TCP pushes back on a flooding peer), and leave their write
//! reports in one shared list that the hub takes at each wake (`reports.rs`). Each
//! connection's [`Link`] carries the hub's hand-outs to its writer and its reading gate,
//! which the hub's [`Output::PauseReading`] closes until `ResumeReading`. The writers of a
//! round of hand-outs are woken through one shared list, by the hub and by each other
//! (`wakes.rs`).
//! Handles send commands as closures over the [`Driver`], so each handle method is a few
//! lines and the hub has one owner. Application publishes that wait for room wait here, in
//! one queue, until [`Hub::can_take`] says their recipients have it.
//! Outputs go to each connection's link, to the router task, to a connection's
//! inbox for [`Handle::receive`](crate::Handle::receive), to whoever awaits an ack, or (with a
//! backplane: `backplane.rs`) to the other nodes, whose messages come back as
//! [`Control::Remote`].

use std::collections::{HashMap, VecDeque};
use std::future::pending;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use event_listener::EventListener;
use futures_lite::future::or;
use futures_lite::{FutureExt, StreamExt};
use tidings_core::{
    AckId, AckOutcome, Chunk, CloseCode, ClusterMessage, ConnId, ConnectionInfo, Delivery, Event,
    Hub, Input, Message, Output, Payload, Target,
};

use crate::cluster::Stats;
use crate::link::Link;
use crate::reports::{List, Reports, SPARE_VECS};
use crate::router::Routes;
use crate::Runtime;

/// The connection an event for the router is about, if it is about one.
fn event_conn(event: &Event) -> Option<ConnId> {
    match event {
        Event::Message { conn, .. }
        | Event::Connected { conn }
        | Event::Disconnected { conn, .. }
        | Event::Joined { conn, .. }
        | Event::Left { conn, .. }
        | Event::SubscribeRequest { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// A command from a handle: runs on the hub task with the driver and the current time.
pub(crate) type Command = Box<dyn FnOnce(&mut Driver, Instant) + Send>;

/// What must reach the hub even while it does not read connection input.
pub(crate) enum Control {
    Command(Command),
    /// A message another node published, from the backplane (boxed: the channel's every
    /// slot is as large as its largest message).
    Remote(Box<ClusterMessage>),
}

/// A message from a client that no router handler took; read it with
/// [`Handle::receive`](crate::Handle::receive).
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// The sender.
    pub conn: ConnId,
    /// The event name.
    pub event: String,
    /// The data.
    pub data: Payload,
    /// The client's message id.
    pub id: Option<String>,
    /// The client's ack request: answer with [`Handle::reply_ack`](crate::Handle::reply_ack).
    pub ack: Option<u64>,
}

/// Events waiting for the router beyond this many stop the reading of connection input
/// until the router catches up: a slow handler slows the peers, never grows memory.
const ROUTER_BACKLOG: usize = 1024;

/// Writers handed frames per group whose wakers the hub posts (`wakes.rs`) as it goes,
/// waking the group's first, rather than all at the end of its round of hand-outs.
const EARLY_WAKES: usize = 32;
/// Cluster events a listener may have waiting.
const CLUSTER_BACKLOG: usize = 4096;
/// Inputs handled per wake-up before outputs are drained.
pub(crate) const BURST: usize = 256;

/// The router task's end of the hub: which events it takes and how to reach it.
pub(crate) struct RouterLink {
    pub routes: Arc<Routes>,
    /// Each event with the span of its connection, for the handler to run in.
    pub tx: Sender<(Event, tracing::Span)>,
    pub room: Arc<event_listener::Event>,
}

/// A connection's end on the hub task: its link.
struct ConnSlot {
    conn: ConnId,
    link: Arc<Link>,
    /// The connection's span (logs.rs), closed with the slot.
    span: crate::logs::ConnSpan,
}

impl Drop for ConnSlot {
    /// The hub forgot the connection, or the hub task ended: its writer writes what it was
    /// handed and ends, and its reader is let go to see the end.
    fn drop(&mut self) {
        self.link.hang_up();
    }
}

/// What [`Driver::open`] gives the connection task.
pub(crate) struct Opened {
    pub conn: ConnId,
    pub link: Arc<Link>,
    pub reports: Arc<Reports>,
}

/// Where the outcome of a publish that waits for room is sent.
pub(crate) type Answer = Sender<Result<Delivery, crate::Error>>;

/// An application publish or emit waiting for room (see [`Hub::can_take`]).
struct Waiting {
    to: To,
    message: Message,
    answer: Answer,
}

/// Where a waiting message goes: a publish, or an emit, which fails (as [`Hub::emit`] does)
/// if its connection is not open when it goes out.
enum To {
    Target(Target),
    Conn(ConnId),
}

/// The hub and the tables that connect its outputs to tasks.
pub(crate) struct Driver {
    pub hub: Hub,
    /// Connections by their slab slot: one indexed load per transmitted frame, not a hash
    /// (this is the fan-out path).
    slots: Vec<Option<ConnSlot>>,
    /// Application publishes waiting for room, in the order they were made: one that waits
    /// holds back those behind it, so a handle's publishes keep their order.
    waiting: VecDeque<Waiting>,
    inboxes: HashMap<ConnId, (Sender<Incoming>, Receiver<Incoming>)>,
    inbox_limit: usize,
    acks: HashMap<(ConnId, AckId), Sender<AckOutcome>>,
    shutdown_waiters: Vec<Sender<()>>,
    shutdown_done: bool,
    router: Option<RouterLink>,
    /// Where this node's publishes go for the other nodes, if it has a backplane.
    backplane: Option<(Sender<ClusterMessage>, Arc<Stats>)>,
    /// Where the hub's questions about channels the backplane keeps go.
    fetches: Option<Sender<tidings_core::Fetch>>,
    /// Where this node's membership changes go for the other nodes (with a backplane), and
    /// who listens to the cluster's events ([`Handle::cluster_events`](crate::Handle::cluster_events)).
    presence_out: Option<Sender<crate::Presence>>,
    cluster_listeners: Vec<Sender<crate::ClusterEvent>>,
    /// Set after shutdown: the hub task ends, and with it the router task.
    pub stopped: bool,
    /// The writers' write reports, and what the last take of them brought.
    reports: Arc<Reports>,
    taken: List,
    /// Where the hub puts a connection's frames before they are handed out; left empty by
    /// each hand-out, with or without its buffer (see `Burst::add`).
    batch: Vec<Chunk>,
    /// Emptied hand-out `Vec`s the writers gave back: a hand-out takes one instead of
    /// allocating. Allocated here and freed by a writer on another thread, they were 2 %
    /// of the server's CPU in the open-loop fan-out (perf).
    spare: Vec<Vec<Chunk>>,
    /// The writers handed frames in the current round of outputs, woken at its end (see
    /// `wakes.rs`).
    to_wake: Vec<Waker>,
    /// Time the hub task has spent working (from a wake to the end of its drain), for the
    /// metrics: how close the one hub task is to saturation.
    pub busy: std::time::Duration,
}

impl Driver {
    pub fn new(hub: Hub, inbox_limit: usize, router: Option<RouterLink>) -> Self {
        let reports = Arc::new(Reports::new(hub.config().write_window));
        Driver {
            hub,
            slots: Vec::new(),
            waiting: VecDeque::new(),
            inboxes: HashMap::new(),
            inbox_limit,
            acks: HashMap::new(),
            shutdown_waiters: Vec::new(),
            shutdown_done: false,
            router,
            backplane: None,
            fetches: None,
            presence_out: None,
            cluster_listeners: Vec::new(),
            stopped: false,
            reports,
            taken: List::default(),
            batch: Vec::new(),
            spare: Vec::new(),
            to_wake: Vec::new(),
            busy: std::time::Duration::ZERO,
        }
    }

    /// Forwards this node's publishes to `outgoing`, its membership changes to `presence` and
    /// its questions about kept streams to `fetches`: the backplane's ends of the link.
    pub fn with_backplane(
        mut self,
        outgoing: Sender<ClusterMessage>,
        presence: Sender<crate::Presence>,
        fetches: Sender<tidings_core::Fetch>,
        stats: Arc<Stats>,
    ) -> Self {
        self.backplane = Some((outgoing, stats));
        self.fetches = Some(fetches);
        self.presence_out = Some(presence);
        self
    }

    /// A listener for the cluster's events.
    pub fn listen_cluster(&mut self) -> Receiver<crate::ClusterEvent> {
        let (tx, rx) = async_channel::bounded(CLUSTER_BACKLOG);
        self.cluster_listeners.push(tx);
        rx
    }

    /// Tells every listener of a cluster event. A listener that is `CLUSTER_BACKLOG` behind
    /// misses it (and one that is gone is forgotten).
    pub fn tell(&mut self, event: &crate::ClusterEvent) {
        self.cluster_listeners.retain(|l| {
            !matches!(
                l.try_send(event.clone()),
                Err(async_channel::TrySendError::Closed(_))
            )
        });
    }

    /// Sends this node's membership change to the backplane.
    fn share_presence(&self, conn: ConnId, room: &str, joined: bool) {
        if let Some(out) = &self.presence_out {
            let name = self.hub.info(conn).and_then(|i| i.name.clone());
            let member = crate::Member {
                node: String::new(),
                conn: conn.to_string(),
                name,
            };
            let room = room.to_owned();
            // Full: the backplane is far behind; a presence change is not worth memory.
            let _ = out.try_send(crate::Presence {
                member,
                room,
                joined,
            });
        }
    }

    /// Opens a connection in the hub and gives it its link.
    pub fn open(
        &mut self,
        now: Instant,
        info: ConnectionInfo,
    ) -> Result<Opened, tidings_core::Error> {
        let conn = self.hub.open(now, info)?;
        let info = self.hub.info(conn);
        let span = crate::logs::ConnSpan::new(conn, info);
        crate::logs::opened(span.get(), info.and_then(|i| i.name.as_deref()));
        let link = Arc::new(Link::default());
        let index = conn.index();
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(ConnSlot {
            conn,
            link: link.clone(),
            span,
        });
        Ok(Opened {
            conn,
            link,
            reports: self.reports.clone(),
        })
    }

    /// Publishes `message` to `target` once no recipient is behind, answering on `answer`.
    pub fn publish_when_room(
        &mut self,
        now: Instant,
        target: Target,
        message: Message,
        answer: Answer,
    ) {
        self.wait(now, To::Target(target), message, answer);
    }

    /// Emits `message` to `conn` once its queue is not behind, answering on `answer`.
    pub fn emit_when_room(&mut self, now: Instant, conn: ConnId, message: Message, answer: Answer) {
        self.wait(now, To::Conn(conn), message, answer);
    }

    fn wait(&mut self, now: Instant, to: To, message: Message, answer: Answer) {
        self.waiting.push_back(Waiting {
            to,
            message,
            answer,
        });
        self.publish_waiting(now);
    }

    /// Sends the waiting messages that have room now, in order.
    fn publish_waiting(&mut self, now: Instant) {
        while let Some(first) = self.waiting.front() {
            let has_room = match &first.to {
                To::Target(target) => self.hub.can_take(target),
                To::Conn(conn) => self.hub.can_take(&Target::conn(*conn)),
            };
            if !has_room {
                return;
            }
            let Some(w) = self.waiting.pop_front() else {
                return;
            };
            let sent = match w.to {
                To::Target(target) => self.publish_now(now, target, w.message),
                To::Conn(conn) => self.hub.emit(now, conn, w.message).map_err(Into::into),
            };
            let _ = w.answer.try_send(sent);
        }
    }

    /// Publishes `message` to `target` now. With a backplane, a publish for the other nodes
    /// that their backlog cannot take is refused whole, before it reaches anyone here: the
    /// caller learns it was not carried, rather than the cluster losing it silently.
    pub fn publish_now(
        &mut self,
        now: Instant,
        target: Target,
        message: Message,
    ) -> Result<Delivery, crate::Error> {
        if let Some((outgoing, _)) = &self.backplane {
            let forwarded = !matches!(target.scope, tidings_core::Scope::Conn(_));
            if forwarded && outgoing.is_full() {
                return Err(crate::Error::Cluster(format!(
                    "the backplane is {} messages behind (is its transport down?): not published",
                    outgoing.len()
                )));
            }
        }
        let delivery = self.hub.publish(now, target, message)?;
        if self.backplane.is_some() {
            // Into the backlog now, so the next publish sees it there.
            self.route_outputs(now);
        }
        Ok(delivery)
    }

    /// The live slot of `conn`: a slot reused by a newer connection holds another id.
    fn slot(&self, conn: ConnId) -> Option<&ConnSlot> {
        self.slots
            .get(conn.index())
            .and_then(Option::as_ref)
            .filter(|s| s.conn == conn)
    }

    /// The inbox of an open connection, created on first use.
    pub fn inbox(&mut self, conn: ConnId) -> Option<Receiver<Incoming>> {
        if !self.hub.is_connected(conn) {
            return None;
        }
        let (_, rx) = self
            .inboxes
            .entry(conn)
            .or_insert_with(async_channel::unbounded);
        Some(rx.clone())
    }

    /// Where the outcome of ack `ack` for `conn` will be sent.
    pub fn await_ack(&mut self, conn: ConnId, ack: AckId) -> Receiver<AckOutcome> {
        let (tx, rx) = async_channel::bounded(1);
        self.acks.insert((conn, ack), tx);
        rx
    }

    /// Where a unit is sent once shutdown completes (at once if it has).
    pub fn await_shutdown(&mut self) -> Receiver<()> {
        let (tx, rx) = async_channel::bounded(1);
        if self.shutdown_done {
            let _ = tx.try_send(());
        } else {
            self.shutdown_waiters.push(tx);
        }
        rx
    }

    /// Feeds the hub every write report made since the last call, and keeps the emptied
    /// `Vec`s that came with them.
    fn take_reports(&mut self, now: Instant) {
        self.reports.take(&mut self.taken);
        for &(conn, frames) in &self.taken.written {
            self.hub.handle(now, Input::Written { conn, frames });
        }
        let room = SPARE_VECS.saturating_sub(self.spare.len());
        let kept = self.taken.spare.len().min(room);
        self.spare.extend(self.taken.spare.drain(..kept));
        self.taken.spare.clear();
    }

    fn handle_control(&mut self, now: Instant, control: Control) {
        match control {
            Control::Command(command) => command(self, now),
            Control::Remote(message) => {
                // Refused only for a name this node's limits do not allow: nothing to answer.
                let _ = self.hub.handle_remote(now, *message);
            }
        }
    }

    /// Routes every pending output of the hub, then publishes what waited for room.
    pub fn drain(&mut self, now: Instant) {
        self.route_outputs(now);
        if !self.waiting.is_empty() {
            self.publish_waiting(now);
            self.route_outputs(now);
        }
    }

    /// Hands each connection's frames to its writer in one message (one channel send, one
    /// flush), and everything else where it goes, in the hub's order.
    fn route_outputs(&mut self, now: Instant) {
        self.route_outputs_quietly(now);
        self.reports.wakes.wake_all(&mut self.to_wake);
    }

    /// Routes every pending output, keeping the wakers of the writers it handed frames to
    /// in `to_wake`.
    fn route_outputs_quietly(&mut self, now: Instant) {
        loop {
            if self.batch.capacity() == 0 {
                self.batch = self.spare.pop().unwrap_or_default();
            }
            if let Some(conn) = self.hub.poll_transmits(&mut self.batch) {
                self.hand_out(conn);
                continue;
            }
            let Some(output) = self.hub.poll_output() else {
                return;
            };
            match output {
                Output::Transmit { conn, frame } => {
                    self.batch.push(Chunk::from(frame));
                    self.hand_out(conn);
                }
                Output::Close { conn, code, reason } => {
                    if let Some(slot) = self.slot(conn) {
                        slot.link.close(code, reason);
                    }
                }
                Output::PauseReading { conn } => {
                    if let Some(slot) = self.slot(conn) {
                        slot.link.pause();
                    }
                }
                Output::ResumeReading { conn } => {
                    if let Some(slot) = self.slot(conn) {
                        slot.link.resume();
                    }
                }
                Output::Event(event) => self.on_event(now, *event),
                Output::Cluster(message) => self.forward(*message),
                Output::Fetch(fetch) => {
                    let id = fetch.id;
                    let asked = self.fetches.as_ref().map(|tx| tx.try_send(*fetch));
                    if !matches!(asked, Some(Ok(()))) {
                        // No backplane to ask, or too many questions waiting: served from
                        // what this node has.
                        self.hub.fetched(now, id, None);
                    }
                }
                _ => {}
            }
        }
    }

    /// Hands a publish to the backplane for the other nodes. One that cannot wait there (the
    /// backlog is full; application publishes are refused before that, but a client's publish
    /// or a batch item is not) is counted as lost.
    fn forward(&self, message: ClusterMessage) {
        if let Some((outgoing, stats)) = &self.backplane {
            if outgoing.try_send(message).is_err() {
                stats
                    .lost
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Hands the batch to the connection's writer.
    fn hand_out(&mut self, conn: ConnId) {
        let slot = self.slots.get(conn.index()).and_then(Option::as_ref);
        match slot.filter(|s| s.conn == conn) {
            Some(slot) => {
                self.to_wake.extend(slot.link.hand_out(&mut self.batch));
                if self.to_wake.len() == EARLY_WAKES {
                    // This group's writers start while the hub hands out to the others: its
                    // first now, the rest as writers relay (`wakes.rs`).
                    self.reports.wakes.post(&mut self.to_wake);
                    self.reports.wakes.wake_some(1);
                }
            }
            None => self.batch.clear(),
        }
    }

    /// Acts on a hub event: what the router asked for goes to it as the core's `Event`;
    /// unrouted messages go to the connection's inbox.
    fn on_event(&mut self, now: Instant, event: Event) {
        let routes = self.router.as_ref().map(|r| &r.routes);
        let to_router = match &event {
            Event::Message { event: name, .. } => routes.is_some_and(|r| r.takes(name)),
            Event::Connected { .. } => routes.is_some_and(|r| r.on_connect),
            Event::Disconnected { .. } => routes.is_some_and(|r| r.on_disconnect),
            Event::Joined { .. } => routes.is_some_and(|r| r.on_join),
            Event::Left { .. } => routes.is_some_and(|r| r.on_leave),
            Event::SubscribeRequest { .. } => routes.is_some_and(|r| r.authorize),
            _ => false,
        };
        // The connection's span, for the router and the close's log line only (unrouted
        // messages, the busy case, need none), taken before a disconnect forgets it.
        let disconnected = matches!(event, Event::Disconnected { .. });
        let span = event_conn(&event)
            .filter(|_| to_router || disconnected)
            .and_then(|conn| self.slot(conn))
            .map_or_else(tracing::Span::none, |slot| slot.span.get().clone());
        if let Event::Disconnected {
            conn,
            code,
            reason,
            initiator,
        } = &event
        {
            crate::logs::closed(&span, *code, reason, *initiator);
            self.forget(*conn);
        }
        match &event {
            Event::Joined { conn, room } => self.share_presence(*conn, room, true),
            Event::Left { conn, room } => self.share_presence(*conn, room, false),
            _ => {}
        }
        if to_router {
            if let Some(r) = &self.router {
                let _ = r.tx.try_send((event, span));
            }
            return;
        }
        match event {
            Event::Message {
                conn,
                event,
                data,
                id,
                ack,
            } => {
                let incoming = Incoming {
                    conn,
                    event,
                    data,
                    id,
                    ack,
                };
                self.deliver_to_inbox(now, incoming);
            }
            Event::SubscribeRequest { conn, channel } => {
                // Approve was configured without a hook to decide: nobody would answer.
                let _ = self.hub.approve_subscribe(now, conn, &channel);
            }
            Event::Ack {
                conn, ack, outcome, ..
            } => {
                if let Some(tx) = self.acks.remove(&(conn, ack)) {
                    let _ = tx.try_send(outcome);
                }
            }
            Event::ShutdownComplete => {
                self.shutdown_done = true;
                for tx in self.shutdown_waiters.drain(..) {
                    let _ = tx.try_send(());
                }
            }
            _ => {}
        }
    }

    /// A connection is gone. Dropping its slot hangs up its link (the writer ends after what
    /// it was handed, and a paused reader is let go to see the end), and dropping its inbox's
    /// sender ends the inbox after what it holds.
    fn forget(&mut self, conn: ConnId) {
        if let Some(slot) = self.slots.get_mut(conn.index()) {
            if slot.as_ref().is_some_and(|s| s.conn == conn) {
                slot.take();
            }
        }
        self.inboxes.remove(&conn);
    }

    fn deliver_to_inbox(&mut self, now: Instant, incoming: Incoming) {
        let conn = incoming.conn;
        let (tx, _) = self
            .inboxes
            .entry(conn)
            .or_insert_with(async_channel::unbounded);
        if tx.len() >= self.inbox_limit {
            // Nobody reads this connection's messages: stop taking more rather than grow.
            let _ = self.hub.close(
                now,
                conn,
                CloseCode::POLICY,
                "too many unread messages: the application is not reading",
            );
            return;
        }
        let _ = tx.try_send(incoming);
    }

    /// A listener that fires when the router has room again, if it has none now.
    fn router_full(&self) -> Option<EventListener> {
        let r = self.router.as_ref()?;
        if r.tx.len() < ROUTER_BACKLOG {
            return None;
        }
        let listener = r.room.listen();
        (r.tx.len() >= ROUTER_BACKLOG).then_some(listener)
    }
}

/// Runs the hub until shutdown is over, or every handle and connection task is gone, then
/// turns away what handles send from then on.
pub(crate) async fn run<R: Runtime>(
    rt: R,
    driver: Driver,
    inbound: Receiver<Input>,
    control: Receiver<Control>,
) {
    let mut control = std::pin::pin!(control);
    run_hub(rt, driver, inbound, control.as_mut()).await;
    refuse_commands(&control);
}

/// Closes the control channel and drops the commands still in it, so a handle call that
/// raced the hub task's end answers `Stopped` instead of waiting forever: a command left
/// in the channel would keep its reply sender alive for as long as any handle lives.
fn refuse_commands(control: &Receiver<Control>) {
    control.close();
    while control.try_recv().is_ok() {}
}

/// The hub task's loop. It may wake several times per publish, so what it waits with lives
/// across wakes: the two channels are read as streams, which keep their listener, and the
/// timer is made anew only when the hub's deadline moves. A timer made per wake cost tokio a
/// write to its driver's eventfd each time (`reregister`), and with it a wake of the other
/// worker: 240 syscalls and 50 context switches per paced publish to 1,000 (perf).
async fn run_hub<R: Runtime>(
    rt: R,
    mut driver: Driver,
    inbound: Receiver<Input>,
    mut control: Pin<&mut Receiver<Control>>,
) {
    // Pinned: a receiver read as a stream keeps its listener inside.
    let mut inbound = std::pin::pin!(inbound);
    enum Wake {
        Control(Option<Control>),
        Conn(Option<Input>),
        Reports,
        Timer,
        RouterRoom,
    }
    // When the task last woke, to count its busy time once the wake's work is drained.
    let mut woke: Option<Instant> = None;
    // The armed timer and its deadline.
    let mut timer = None;
    let reports = driver.reports.clone();
    loop {
        driver.drain(Instant::now());
        // While a queue is behind, every report must reach the hub at once. Those made
        // before their writer could see that are taken here, once: a writer that reports
        // after the flag is set wakes the hub itself, so this does not loop (and starve the
        // channels) while writers keep reporting. If this drain left no queue behind, the
        // flag costs a wake at most, after which it is decided again.
        if reports.want_at_once(driver.hub.any_behind()) {
            let now = Instant::now();
            driver.take_reports(now);
            driver.drain(now);
        }
        if let Some(woke) = woke.take() {
            driver.busy += woke.elapsed();
        }
        if driver.stopped {
            return;
        }
        let deadline = driver.hub.poll_timeout();
        if timer.as_ref().map(|(at, _)| *at) != deadline {
            timer = deadline.map(|at| (at, Box::pin(rt.sleep_until(at))));
        }
        let router_full = driver.router_full();
        let gated = router_full.is_some();
        let wake = {
            let from_control = async { Wake::Control(control.as_mut().next().await) };
            let from_conn = async {
                if gated {
                    pending().await
                } else {
                    Wake::Conn(inbound.as_mut().next().await)
                }
            };
            let nudged = async {
                std::future::poll_fn(|cx| reports.poll_nudged(cx)).await;
                Wake::Reports
            };
            let fired = async {
                match &mut timer {
                    Some((_, sleep)) => sleep.as_mut().await,
                    None => pending().await,
                }
                Wake::Timer
            };
            let room = async {
                match router_full {
                    Some(listener) => listener.await,
                    None => pending().await,
                }
                Wake::RouterRoom
            };
            or(from_control, or(from_conn, nudged.or(fired.or(room)))).await
        };
        let now = Instant::now();
        woke = Some(now);
        // First what was written since the last wake, so the hub decides on today's queues.
        driver.take_reports(now);
        match wake {
            Wake::Control(None) => return, // every handle and connection task is gone
            Wake::Control(Some(first)) => {
                driver.handle_control(now, first);
                for _ in 0..BURST {
                    // Nothing more once stopped: later commands answer `Stopped`.
                    match control.try_recv() {
                        Ok(next) if !driver.stopped => driver.handle_control(now, next),
                        _ => break,
                    }
                }
            }
            Wake::Conn(None) => return,
            Wake::Conn(Some(first)) => {
                driver.hub.handle(now, first);
                for next in std::iter::from_fn(|| inbound.try_recv().ok()).take(BURST) {
                    driver.hub.handle(now, next);
                }
            }
            Wake::Timer => {
                // Spent: the next deadline arms a new one.
                timer = None;
                driver.hub.handle_timeout(now);
            }
            Wake::Reports | Wake::RouterRoom => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn hand_out_vecs_are_reused_and_their_pool_is_bounded() {
        let hub = Hub::new(tidings_core::Config::default()).expect("hub");
        let mut driver = Driver::new(hub, 16, None);
        let now = Instant::now();
        // Nothing to hand out: no `Vec` is kept that was never used.
        driver.route_outputs(now);
        assert!(driver.spare.is_empty());
        // Writers give back more `Vec`s than the pool keeps, over two takes.
        let conn: ConnId = "0.0".parse().expect("id");
        let mut unannounced = 0;
        for _ in 0..2 {
            for _ in 0..SPARE_VECS {
                let spare = Vec::with_capacity(8);
                driver.reports.report(conn, 0, spare, &mut unannounced);
            }
            driver.take_reports(now);
        }
        assert_eq!(driver.spare.len(), SPARE_VECS, "kept up to the bound");
        assert!(driver.taken.spare.is_empty(), "the rest are freed");
        // A round with nothing to hand out takes one to put frames in, and keeps it.
        driver.route_outputs(now);
        assert_eq!(driver.spare.len(), SPARE_VECS - 1);
        assert!(driver.batch.capacity() >= 8);
        driver.route_outputs(now);
        assert_eq!(driver.spare.len(), SPARE_VECS - 1, "one at a time");
        assert!(driver.spare.iter().all(|v| v.capacity() >= 8));
    }

    #[test]
    fn a_command_sent_as_the_hub_task_ends_is_answered_stopped_not_left_waiting() {
        let (control_tx, control) = async_channel::unbounded();
        let (reply_tx, reply) = async_channel::bounded::<()>(1);
        let command: Command = Box::new(move |_, _| {
            let _ = reply_tx.try_send(());
        });
        // Queued, never run: the hub task had stopped reading.
        control_tx
            .try_send(Control::Command(command))
            .expect("queued");
        refuse_commands(&control);
        assert!(
            matches!(reply.try_recv(), Err(async_channel::TryRecvError::Closed)),
            "the command was dropped, so its caller sees the hub gone"
        );
        let late: Command = Box::new(|_, _| {});
        assert!(control_tx.try_send(Control::Command(late)).is_err());
    }
}
