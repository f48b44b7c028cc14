//! The hub task: the one owner of the [`Hub`]. It runs the sans-IO loop
//! `select(connection input, application command, timer) → hub → drain outputs → rearm`.
//!
//! Connection tasks send what they read over a bounded channel (a full channel stops their
//! reading, so TCP pushes back on a flooding peer) and their write reports over an unbounded
//! one (bounded in practice by the core's `write_window`). Handles send commands as closures
//! over the [`Driver`], so each handle method is a few lines and the hub has one owner.
//! Outputs go to each connection's writer channel, to the router task, to a connection's
//! inbox for [`Handle::receive`](crate::Handle::receive), or to whoever awaits an ack.

use std::collections::HashMap;
use std::future::pending;
use std::sync::Arc;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use event_listener::EventListener;
use futures_lite::future::or;
use futures_lite::FutureExt;
use tidings_core::{
    AckId, AckOutcome, CloseCode, ConnId, ConnectionInfo, Event, Frame, Hub, Input, Output, Payload,
};

use crate::router::{RouterEvent, Routes};
use crate::Runtime;

/// A command from a handle: runs on the hub task with the driver and the current time.
pub(crate) type Command = Box<dyn FnOnce(&mut Driver, Instant) + Send>;

/// What a connection's reader (or a failing writer) tells the hub, in the order it happened.
pub(crate) enum FromConn {
    Frame(ConnId, Frame),
    Violation(ConnId, CloseCode, String),
    PeerClosed(ConnId, Option<CloseCode>, String),
    TransportError(ConnId, String),
}

/// What must reach the hub even while it does not read connection input.
pub(crate) enum Control {
    Written(ConnId, usize),
    Command(Command),
}

/// The hub task's end of a connection's writer channel.
///
/// futures-channel's unbounded queue, not async-channel's: an idle connection holds one
/// empty node (about 100 bytes) where async-channel keeps a 31-slot block and three events
/// (2.3 KiB), which was a quarter of an idle connection's memory (BENCHMARKS.md).
pub(crate) type WriterTx = futures_channel::mpsc::UnboundedSender<WriterCmd>;
/// The connection task's end of its writer channel.
pub(crate) type WriterRx = futures_channel::mpsc::UnboundedReceiver<WriterCmd>;

/// What the hub asks of one connection's writer.
pub(crate) enum WriterCmd {
    Frame(Frame),
    Close(CloseCode, String),
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
/// Inputs handled per wake-up before outputs are drained.
const BURST: usize = 256;

/// The router task's end of the hub: which events it takes and how to reach it.
pub(crate) struct RouterLink {
    pub routes: Arc<Routes>,
    pub tx: Sender<RouterEvent>,
    pub room: Arc<event_listener::Event>,
}

/// The hub and the tables that connect its outputs to tasks.
pub(crate) struct Driver {
    pub hub: Hub,
    /// Writer channels by the connection's slab slot: one indexed load per transmitted
    /// frame, not a hash (this is the fan-out path).
    writers: Vec<Option<(ConnId, WriterTx)>>,
    inboxes: HashMap<ConnId, (Sender<Incoming>, Receiver<Incoming>)>,
    inbox_limit: usize,
    acks: HashMap<(ConnId, AckId), Sender<AckOutcome>>,
    shutdown_waiters: Vec<Sender<()>>,
    shutdown_done: bool,
    router: Option<RouterLink>,
    /// Set after shutdown: the hub task ends, and with it the router task.
    pub stopped: bool,
}

impl Driver {
    pub fn new(hub: Hub, inbox_limit: usize, router: Option<RouterLink>) -> Self {
        Driver {
            hub,
            writers: Vec::new(),
            inboxes: HashMap::new(),
            inbox_limit,
            acks: HashMap::new(),
            shutdown_waiters: Vec::new(),
            shutdown_done: false,
            router,
            stopped: false,
        }
    }

    /// Opens a connection in the hub and gives it a writer channel.
    pub fn open(
        &mut self,
        now: Instant,
        info: ConnectionInfo,
    ) -> Result<(ConnId, WriterRx), tidings_core::Error> {
        let conn = self.hub.open(now, info)?;
        let (tx, rx) = futures_channel::mpsc::unbounded();
        let slot = conn.index();
        if self.writers.len() <= slot {
            self.writers.resize_with(slot + 1, || None);
        }
        self.writers[slot] = Some((conn, tx));
        Ok((conn, rx))
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

    fn handle_conn(&mut self, now: Instant, input: FromConn) {
        let input = match input {
            FromConn::Frame(conn, frame) => Input::Frame { conn, frame },
            FromConn::Violation(conn, code, reason) => Input::Violation { conn, code, reason },
            FromConn::PeerClosed(conn, code, reason) => Input::PeerClosed { conn, code, reason },
            FromConn::TransportError(conn, error) => Input::TransportError { conn, error },
        };
        self.hub.handle(now, input);
    }

    fn handle_control(&mut self, now: Instant, control: Control) {
        match control {
            Control::Written(conn, frames) => self.hub.handle(now, Input::Written { conn, frames }),
            Control::Command(command) => command(self, now),
        }
    }

    /// Routes every pending output of the hub.
    pub fn drain(&mut self, now: Instant) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Transmit { conn, frame } => {
                    self.send_to_writer(conn, WriterCmd::Frame(frame))
                }
                Output::Close { conn, code, reason } => {
                    self.send_to_writer(conn, WriterCmd::Close(code, reason));
                }
                Output::Event(event) => self.on_event(now, event),
                // `Output::Cluster`: no backplane is attached yet, so a single node has
                // nothing to forward.
                _ => {}
            }
        }
    }

    fn send_to_writer(&self, conn: ConnId, cmd: WriterCmd) {
        // A slot reused by a newer connection holds another id: nothing is sent there.
        if let Some(Some((owner, writer))) = self.writers.get(conn.index()) {
            if *owner == conn {
                // Unbounded: never full. Closed only once the connection task has ended.
                let _ = writer.unbounded_send(cmd);
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
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
                match &self.router {
                    Some(r) if r.routes.takes(&incoming.event) => {
                        let _ = r.tx.try_send(RouterEvent::Message(incoming));
                    }
                    _ => self.deliver_to_inbox(now, incoming),
                }
            }
            Event::Connected { conn } => {
                self.send_to_router(|r| r.on_connect, RouterEvent::Connected(conn))
            }
            Event::Disconnected {
                conn, code, reason, ..
            } => {
                // Dropping the senders ends the writer (after what it holds) and the inbox
                // (after what it holds).
                if let Some(slot) = self.writers.get_mut(conn.index()) {
                    if slot.as_ref().is_some_and(|(owner, _)| *owner == conn) {
                        *slot = None;
                    }
                }
                self.inboxes.remove(&conn);
                self.send_to_router(
                    |r| r.on_disconnect,
                    RouterEvent::Disconnected { conn, code, reason },
                );
            }
            Event::SubscribeRequest { conn, channel } => {
                if self.router.as_ref().is_some_and(|r| r.routes.authorize) {
                    self.send_to_router(|_| true, RouterEvent::SubscribeRequest { conn, channel });
                } else {
                    // Approve was configured without a hook to decide: nobody would answer.
                    let _ = self.hub.approve_subscribe(now, conn, &channel);
                }
            }
            Event::Joined { conn, room } => {
                let room = room.to_string();
                self.send_to_router(|r| r.on_join, RouterEvent::Joined { conn, room });
            }
            Event::Left { conn, room } => {
                let room = room.to_string();
                self.send_to_router(|r| r.on_leave, RouterEvent::Left { conn, room });
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

    fn send_to_router(&self, wants: impl Fn(&Routes) -> bool, event: RouterEvent) {
        if let Some(r) = &self.router {
            if wants(&r.routes) {
                let _ = r.tx.try_send(event);
            }
        }
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

/// Runs the hub until shutdown is over, or every handle and connection task is gone.
pub(crate) async fn run<R: Runtime>(
    rt: R,
    mut driver: Driver,
    inbound: Receiver<FromConn>,
    control: Receiver<Control>,
) {
    enum Wake {
        Control(Option<Control>),
        Conn(Option<FromConn>),
        Timer,
        RouterRoom,
    }
    loop {
        driver.drain(Instant::now());
        if driver.stopped {
            return;
        }
        let deadline = driver.hub.poll_timeout();
        let router_full = driver.router_full();
        let gated = router_full.is_some();
        let wake = {
            let control = async { Wake::Control(control.recv().await.ok()) };
            let conn = async {
                if gated {
                    pending().await
                } else {
                    Wake::Conn(inbound.recv().await.ok())
                }
            };
            let timer = async {
                match deadline {
                    Some(at) => rt.sleep_until(at).await,
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
            or(control, or(conn, timer.or(room))).await
        };
        let now = Instant::now();
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
                driver.handle_conn(now, first);
                for next in std::iter::from_fn(|| inbound.try_recv().ok()).take(BURST) {
                    driver.handle_conn(now, next);
                }
            }
            Wake::Timer => driver.hub.handle_timeout(now),
            Wake::RouterRoom => {}
        }
    }
}
