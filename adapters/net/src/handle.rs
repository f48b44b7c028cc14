//! [`Handle`]: the application's way into a running hub, from any task or thread.
//!
//! Every method sends a closure to the hub task and awaits its answer, so the hub keeps one
//! owner and no lock. A handle is cheap to clone; the hub runs while any handle or
//! connection does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::Sender;
use async_tungstenite::WebSocketStream;
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};
use serde::Serialize;
use tidings_core::{
    AckId, AckOutcome, CloseCode, ConnId, ConnectionInfo, Counters, Delivery, Hub, Input, Message,
    Payload, Target,
};

use crate::conn::{self, ConnEnds, ConnOptions, TaskCount};
use crate::driver::{Answer, Command, Control, Driver, Incoming};
use crate::{Error, Result, Runtime};

/// A clonable, thread-safe handle to a running hub. See the crate docs for an example.
pub struct Handle<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Handle {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("connection_tasks", &self.inner.tasks.live())
            .field("stopping", &self.inner.stopping.load(Ordering::SeqCst))
            .finish()
    }
}

pub(crate) struct Inner<R> {
    pub rt: R,
    pub control: Sender<Control>,
    pub inbound: Sender<Input>,
    pub options: ConnOptions,
    pub close_grace: Duration,
    pub tasks: Arc<TaskCount>,
    pub stopping: AtomicBool,
    pub stop: event_listener::Event,
    /// The backplane's counters, if the hub has one.
    pub backplane: Option<Arc<crate::cluster::Stats>>,
    /// Where requests for the cluster go, if the hub has a backplane.
    pub requests: Option<async_channel::Sender<crate::Request>>,
    /// Upgrade requests refused, by HTTP status (for the metrics).
    pub refusals: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl<R: Runtime> Handle<R> {
    pub(crate) fn new(inner: Inner<R>) -> Self {
        Handle {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn runtime(&self) -> &R {
        &self.inner.rt
    }

    pub(crate) fn backplane_stats(&self) -> Option<Arc<crate::cluster::Stats>> {
        self.inner.backplane.clone()
    }

    pub(crate) fn options(&self) -> ConnOptions {
        self.inner.options
    }

    /// Runs `f` on the hub task and returns what it returns.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver, Instant) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = async_channel::bounded(1);
        let command: Command = Box::new(move |driver, now| {
            let _ = tx.try_send(f(driver, now));
        });
        self.inner
            .control
            .send(Control::Command(command))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.map_err(|_| Error::Stopped)
    }

    /// Runs a hub command that can fail.
    async fn hub<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut tidings_core::Hub, Instant) -> Result<T, tidings_core::Error>
            + Send
            + 'static,
    ) -> Result<T> {
        Ok(self.call(move |d, now| f(&mut d.hub, now)).await??)
    }

    // ---- sending ----

    /// Publishes `message` to `target` (a room, a namespace, everyone, one connection,
    /// optionally all except one). The payload is encoded once for every recipient.
    ///
    /// Waits for room: while a recipient's queue is behind (past `Config::max_queue_frames`
    /// or `max_queue_bytes`, until it drains to half), the publish waits, and publishes made
    /// after it wait behind it. A recipient that stays behind is cut after
    /// `Config::slow_consumer_timeout`, so the wait is bounded. A burst published this way
    /// reaches every reader that reads; use [`Handle::try_publish`] not to wait.
    ///
    /// With a backplane whose backlog is full (Redis down for long; see
    /// [`Builder::backplane_backlog`](crate::Builder::backplane_backlog)), a publish that would
    /// reach other nodes fails with [`Error::Cluster`] and reaches no one.
    pub async fn publish(&self, target: Target, message: Message) -> Result<Delivery> {
        self.when_room(move |d, now, answer| d.publish_when_room(now, target, message, answer))
            .await
    }

    /// Runs `f` on the hub task with where to answer, and awaits the answer: a publish that
    /// waits for room answers once it is made.
    async fn when_room(
        &self,
        f: impl FnOnce(&mut Driver, Instant, Answer) + Send + 'static,
    ) -> Result<Delivery> {
        let answer = self
            .call(move |d, now| {
                let (tx, rx) = async_channel::bounded(1);
                f(d, now, tx);
                rx
            })
            .await?;
        answer.recv().await.map_err(|_| Error::Stopped)?
    }

    /// Publishes `message` to `target` now, without waiting for room. A recipient whose
    /// queue is behind still gets it, up to twice its bound; past that the report lists it
    /// as refused or disconnected (`Config::slow_consumer`), and volatile messages are
    /// dropped for a queue past its bound (see [`Delivery`]).
    pub async fn try_publish(&self, target: Target, message: Message) -> Result<Delivery> {
        self.call(move |d, now| d.publish_now(now, target, message))
            .await?
    }

    /// Publishes `message` to `room` in the default namespace `/`.
    pub async fn to_room(&self, room: &str, message: Message) -> Result<Delivery> {
        self.publish(Target::room("/", room), message).await
    }

    /// Publishes `message` to every connection.
    pub async fn broadcast(&self, message: Message) -> Result<Delivery> {
        self.publish(Target::all(), message).await
    }

    /// Sends `message` to one connection, waiting for room as [`Handle::publish`] does.
    pub async fn emit(&self, conn: ConnId, message: Message) -> Result<Delivery> {
        self.when_room(move |d, now, answer| d.emit_when_room(now, conn, message, answer))
            .await
    }

    /// Sends `message` to one connection, asks it to acknowledge, and returns its answer:
    /// [`Error::Timeout`] after `timeout` (default `Config::ack_timeout`), or
    /// [`Error::ConnectionClosed`] if it closes first.
    pub async fn emit_with_ack(
        &self,
        conn: ConnId,
        message: Message,
        timeout: Option<Duration>,
    ) -> Result<Payload> {
        let ask = move |hub: &mut Hub, now| hub.emit_with_ack(now, conn, message, timeout);
        self.asked(conn, timeout, ask, |outcome| match outcome {
            AckOutcome::Reply(payload) => Some(payload),
            _ => None,
        })
        .await
    }

    /// Asks `conn` something the hub resolves as an ack (`ask` returns its id), and waits
    /// for the answer `answered` takes from its outcome: [`Error::Timeout`] after `timeout`
    /// (default `Config::ack_timeout`), [`Error::ConnectionClosed`] if it closes first.
    async fn asked<T>(
        &self,
        conn: ConnId,
        timeout: Option<Duration>,
        ask: impl FnOnce(&mut Hub, Instant) -> std::result::Result<AckId, tidings_core::Error>
            + Send
            + 'static,
        answered: impl FnOnce(AckOutcome) -> Option<T>,
    ) -> Result<T> {
        let (outcome, wait) = self
            .call(move |d, now| {
                let wait = timeout.unwrap_or(d.hub.config().ack_timeout);
                let ack = ask(&mut d.hub, now)?;
                Ok::<_, tidings_core::Error>((d.await_ack(conn, ack), wait))
            })
            .await??;
        match outcome.recv().await {
            Ok(AckOutcome::TimedOut) => Err(Error::Timeout(wait)),
            Ok(outcome) => answered(outcome).ok_or(Error::ConnectionClosed(conn)),
            Err(_) => Err(Error::ConnectionClosed(conn)),
        }
    }

    /// Sends `data` to one connection as a message named
    /// [`RAW_EVENT`](tidings_core::RAW_EVENT), waiting for room as [`Handle::emit`] does: a
    /// raw connection gets the bytes as they are (text, or binary for bytes), a `tidings.v1`
    /// one an `event` envelope around them. wsm's `Send(url, data)` is `handle.send(conn,
    /// data)`, with `conn` from `handle.by_name(url)` (`None`: that URL is not connected).
    pub async fn send(&self, conn: ConnId, data: impl Into<Payload>) -> Result<Delivery> {
        let message = Message::new(tidings_core::RAW_EVENT, data.into());
        self.emit(conn, message).await
    }

    /// Sends `conn` a WebSocket ping and returns the round-trip time once its pong is back,
    /// for a connection of any protocol: [`Error::Timeout`] after `timeout` (default
    /// `Config::ack_timeout`), or [`Error::ConnectionClosed`] if it closes first. The time
    /// runs from the hub's queueing of the ping to its reading of the pong, so it includes
    /// what was queued ahead of the ping.
    pub async fn ping(&self, conn: ConnId, timeout: Option<Duration>) -> Result<Duration> {
        let ask = move |hub: &mut Hub, now| hub.ping(now, conn, timeout);
        self.asked(conn, timeout, ask, |outcome| match outcome {
            AckOutcome::Pong(rtt) => Some(rtt),
            _ => None,
        })
        .await
    }

    /// Answers a client's event that asked for an ack (see [`Incoming::ack`]).
    pub async fn reply_ack(&self, conn: ConnId, ack: u64, data: impl Serialize) -> Result<()> {
        let data = Payload::Json(serde_json::to_value(data)?);
        self.hub(move |hub, now| hub.reply_ack(now, conn, ack, data))
            .await
    }

    /// Answers a client's event with the application's error: its ack, if it asked for one
    /// (`ack`), with `{"code":..,"message":..}` as the ack's `error`; else an `error` event
    /// carrying the event's `id` as `ref`. See [`Hub::answer_error`](tidings_core::Hub::answer_error).
    pub async fn answer_error(
        &self,
        conn: ConnId,
        id: Option<String>,
        ack: Option<u64>,
        code: &str,
        message: &str,
    ) -> Result<()> {
        let (code, message) = (code.to_owned(), message.to_owned());
        self.hub(move |hub, now| hub.answer_error(now, conn, id.as_deref(), ack, &code, &message))
            .await
    }

    /// Adds `data` to the batch `(target, ident)`: items collect for `ttl` after the first,
    /// then go out as one `batch` frame with event `event`.
    pub async fn publish_batched(
        &self,
        target: Target,
        ident: &str,
        event: &str,
        data: impl Serialize,
        ttl: Duration,
    ) -> Result<()> {
        let data = serde_json::to_value(data)?;
        let (ident, event) = (ident.to_owned(), event.to_owned());
        self.hub(move |hub, now| hub.publish_batched(now, target, &ident, &event, data, ttl))
            .await
    }

    /// Adds `line` to the text batch `(target, ident)`: lines collect for `ttl` after the
    /// first, then go out as one text frame, the `header` line and one line per item (see
    /// [`Hub::publish_batched_text`](tidings_core::Hub::publish_batched_text)).
    pub async fn publish_batched_text(
        &self,
        target: Target,
        ident: &str,
        header: &str,
        line: &str,
        ttl: Duration,
    ) -> Result<()> {
        let (ident, header, line) = (ident.to_owned(), header.to_owned(), line.to_owned());
        self.hub(move |hub, now| hub.publish_batched_text(now, target, &ident, &header, &line, ttl))
            .await
    }

    /// Drops the pending batch `(target, ident)` unsent. Returns whether there was one.
    pub async fn cancel_batch(&self, target: Target, ident: &str) -> Result<bool> {
        let ident = ident.to_owned();
        self.call(move |d, _| d.hub.cancel_batch(&target, &ident))
            .await
    }

    // ---- membership ----

    /// Puts `conn` in `room` (of its namespace). Returns whether it was not there already.
    /// The client is told (`subscribed` marked `"server":true`) and may leave it.
    pub async fn join(&self, conn: ConnId, room: &str) -> Result<bool> {
        let room = room.to_owned();
        self.hub(move |hub, _| hub.join(conn, &room)).await
    }

    /// Puts `conn` in `room` and keeps it there: its `unsubscribe` is refused until
    /// [`Handle::leave`]. Returns whether it was not there already.
    pub async fn join_pinned(&self, conn: ConnId, room: &str) -> Result<bool> {
        let room = room.to_owned();
        self.hub(move |hub, _| hub.join_pinned(conn, &room)).await
    }

    /// [`Handle::join_pinned`] for a client that comes back with the position it had in
    /// `room` (from its connect request, say): it gets every publication from there on before
    /// any live one, or is told why not (and so are you, unless the backplane was asked first:
    /// [`Recovery::Asked`](tidings_core::Recovery::Asked)). See
    /// [`Hub::join_pinned_from`](tidings_core::Hub::join_pinned_from).
    pub async fn join_pinned_from(
        &self,
        conn: ConnId,
        room: &str,
        from: tidings_core::Position,
    ) -> Result<tidings_core::Recovery> {
        let room = room.to_owned();
        self.hub(move |hub, _| hub.join_pinned_from(conn, &room, from))
            .await
    }

    /// Takes `conn` out of `room` (the client is told). Returns whether it was there.
    pub async fn leave(&self, conn: ConnId, room: &str) -> Result<bool> {
        let room = room.to_owned();
        self.hub(move |hub, _| hub.leave(conn, &room)).await
    }

    /// The rooms `conn` is in.
    pub async fn rooms_of(&self, conn: ConnId) -> Result<Vec<String>> {
        self.call(move |d, _| d.hub.rooms_of(conn).iter().map(|r| r.to_string()).collect())
            .await
    }

    /// The members of `room` in namespace `/`.
    pub async fn members(&self, room: &str) -> Result<Vec<ConnId>> {
        let room = room.to_owned();
        self.call(move |d, _| d.hub.members("/", &room)).await
    }

    // ---- connections ----

    /// Closes `conn` gracefully: what it has queued is still sent, then a close frame with
    /// `code` and `reason`.
    pub async fn close(&self, conn: ConnId, code: CloseCode, reason: &str) -> Result<()> {
        let reason = reason.to_owned();
        self.hub(move |hub, now| hub.close(now, conn, code, reason))
            .await
    }

    /// Whether a connection holds the name `name`.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.call(move |d, _| d.hub.exists(&name)).await
    }

    /// The connection holding the name `name`.
    pub async fn by_name(&self, name: &str) -> Result<Option<ConnId>> {
        let name = name.to_owned();
        self.call(move |d, _| d.hub.by_name(&name)).await
    }

    /// The names of all named connections.
    pub async fn names(&self) -> Result<Vec<String>> {
        self.call(|d, _| d.hub.names().map(str::to_owned).collect())
            .await
    }

    /// How many connections are open.
    pub async fn count(&self) -> Result<usize> {
        self.call(|d, _| d.hub.connection_count()).await
    }

    /// Whether `conn` is open.
    pub async fn is_connected(&self, conn: ConnId) -> Result<bool> {
        self.call(move |d, _| d.hub.is_connected(conn)).await
    }

    /// Marks `conn` authenticated, so `Config::auth_timeout` no longer closes it.
    pub async fn authenticate(&self, conn: ConnId) -> Result<()> {
        self.hub(move |hub, _| hub.authenticate(conn)).await
    }

    /// Whether `conn` is open and authenticated (always, without `Config::auth_timeout`).
    pub async fn is_authenticated(&self, conn: ConnId) -> Result<bool> {
        self.call(move |d, _| d.hub.is_authenticated(conn)).await
    }

    /// What `conn` was opened with (path, query, remote address, kept headers, name).
    pub async fn info(&self, conn: ConnId) -> Result<Option<ConnectionInfo>> {
        self.call(move |d, _| d.hub.info(conn).cloned()).await
    }

    /// The metadata value `key` of `conn`.
    pub async fn meta(&self, conn: ConnId, key: &str) -> Result<Option<serde_json::Value>> {
        let key = key.to_owned();
        self.call(move |d, _| d.hub.meta(conn, &key).cloned()).await
    }

    /// Sets the metadata value `key` of `conn`.
    pub async fn set_meta(&self, conn: ConnId, key: &str, value: impl Serialize) -> Result<()> {
        let value = serde_json::to_value(value)?;
        let key = key.to_owned();
        self.hub(move |hub, _| hub.set_meta(conn, &key, value).map(|_| ()))
            .await
    }

    /// The size of the hub's tables (sessions, rooms, timers, batches, ...): what a leak
    /// would grow.
    pub async fn footprint(&self) -> Result<tidings_core::Footprint> {
        self.call(|d, _| d.hub.footprint()).await
    }

    /// The hub's counters.
    pub async fn counters(&self) -> Result<Counters> {
        self.call(|d, _| d.hub.counters()).await
    }

    /// The time the hub task has spent working since it started: its rate is the task's load
    /// (1 means saturated), as `tidings_hub_busy_seconds_total`.
    pub async fn busy(&self) -> Result<Duration> {
        self.call(|d, _| d.busy).await
    }

    /// Each connection's queue depth in frames (queued, or handed to its socket and not yet
    /// written), in no particular order: what `tidings_queue_depth_frames` is sampled from,
    /// for an application that shows it itself. One pass over the connections.
    pub async fn queue_depths(&self) -> Result<Vec<usize>> {
        self.call(|d, _| d.hub.queue_depths().collect()).await
    }

    /// The counters in the Prometheus text format (OpenMetrics), for an application that
    /// serves them itself; the built-in server serves them at [`Builder::metrics`]'s path.
    /// Every name, its type and meaning are in README.md ("Metrics").
    ///
    /// [`Builder::metrics`]: crate::Builder::metrics
    pub async fn metrics(&self) -> Result<String> {
        let (counters, busy, depths) = self
            .call(|d, _| {
                let depths: Vec<usize> = d.hub.queue_depths().collect();
                (d.hub.counters(), d.busy, depths)
            })
            .await?;
        let refusals = self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(crate::metrics::render(&crate::metrics::Snapshot {
            counters,
            busy,
            depths,
            refusals,
            backplane: self.backplane(),
        }))
    }

    /// Counts an upgrade request refused with `status`.
    pub(crate) fn count_refusal(&self, status: u16) {
        let mut refusals = self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *refusals.entry(status).or_insert(0) += 1;
    }

    /// The members of `room` (namespace `/`) on every node of the cluster, sorted; this
    /// node's alone without a backplane. Fails with [`Error::Cluster`] if a live node does not
    /// answer within the backplane's time (a node that died stops being expected once its
    /// presence expires; see the backplane's documentation).
    pub async fn cluster_members(&self, room: &str) -> Result<Vec<crate::Member>> {
        let query = crate::Query::Members {
            namespace: "/".into(),
            room: room.to_owned(),
        };
        self.gather(query, |answer| match answer {
            crate::Answer::Members(members) => members,
            _ => Vec::new(),
        })
        .await
    }

    /// How many connections are open on every node of the cluster (this node's alone
    /// without a backplane). Fails as [`Handle::cluster_members`] does.
    pub async fn cluster_count(&self) -> Result<usize> {
        let counts = self
            .gather(crate::Query::Count, |answer| match answer {
                crate::Answer::Count(n) => vec![n],
                _ => Vec::new(),
            })
            .await?;
        Ok(counts.into_iter().sum())
    }

    /// The names held on every node of the cluster, sorted (this node's alone without a
    /// backplane). Fails as [`Handle::cluster_members`] does.
    pub async fn cluster_names(&self) -> Result<Vec<String>> {
        self.gather(crate::Query::Names, |answer| match answer {
            crate::Answer::Names(names) => names,
            _ => Vec::new(),
        })
        .await
    }

    /// Whether a connection named `name` is open on any node of the cluster (this node alone
    /// without a backplane). Fails as [`Handle::cluster_members`] does.
    pub async fn cluster_exists(&self, name: &str) -> Result<bool> {
        let names = self.cluster_names().await?;
        Ok(names.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
    }

    /// Emits `message` to `member` (from [`Handle::cluster_members`]) on whichever node holds
    /// it. Without a backplane, `member` is this node's. It fails with [`Error::Cluster`] if
    /// its node is not in the cluster; once handed to that node, delivery is at most once (the
    /// connection may have closed meanwhile).
    pub async fn emit_to(&self, member: &crate::Member, message: Message) -> Result<()> {
        if self.inner.requests.is_none() {
            let conn: ConnId = member
                .conn
                .parse()
                .map_err(|_| Error::Cluster(format!("{:?} is not a connection id", member.conn)))?;
            return self.emit(conn, message).await.map(|_| ());
        }
        let member = member.clone();
        self.through_backplane(|reply| {
            crate::Request::Emit(crate::Emit {
                member,
                message,
                reply,
            })
        })
        .await?
        .map_err(Error::Cluster)
    }

    /// The cluster's events, as they happen: a connection on another node joined or left a
    /// room (this node's are the router's `on_join`/`on_leave`), and the backplane losing or
    /// regaining its transport. Without a backplane nothing arrives. A listener that falls
    /// 4,096 events behind misses the newest; read it, or drop it.
    pub async fn cluster_events(&self) -> Result<async_channel::Receiver<crate::ClusterEvent>> {
        self.call(|d, _| d.listen_cluster()).await
    }

    /// Emits `message` to `member` on whichever node holds it and waits for its ack, as
    /// [`Handle::emit_with_ack`] does for a connection of this node: the answer,
    /// [`Error::Timeout`], [`Error::ConnectionClosed`] (with the id it has on its node), or
    /// [`Error::Cluster`] if the question or its answer could not cross the cluster.
    pub async fn emit_with_ack_to(
        &self,
        member: &crate::Member,
        message: Message,
        timeout: Option<Duration>,
    ) -> Result<Payload> {
        let closed = |member: &crate::Member| match member.conn.parse() {
            Ok(conn) => Error::ConnectionClosed(conn),
            Err(_) => Error::Cluster(format!("{:?} is not a connection id", member.conn)),
        };
        if self.inner.requests.is_none() {
            let conn: ConnId = member.conn.parse().map_err(|_| closed(member))?;
            return self.emit_with_ack(conn, message, timeout).await;
        }
        let to = member.clone();
        let answer = self
            .through_backplane(|reply| {
                crate::Request::EmitAck(crate::EmitAck {
                    member: to,
                    message,
                    timeout,
                    reply,
                })
            })
            .await?;
        match answer {
            Ok(payload) => Ok(payload),
            Err(crate::AckFailure::TimedOut(wait)) => Err(Error::Timeout(wait)),
            Err(crate::AckFailure::Closed) => Err(closed(member)),
            Err(crate::AckFailure::Cluster(why)) => Err(Error::Cluster(why)),
        }
    }

    /// Every node's items of the answer to `query`, together and sorted.
    async fn gather<T: Ord>(
        &self,
        query: crate::Query,
        items: impl Fn(crate::Answer) -> Vec<T>,
    ) -> Result<Vec<T>> {
        let mut all: Vec<T> = self
            .ask_cluster(query)
            .await?
            .into_iter()
            .flat_map(items)
            .collect();
        all.sort();
        Ok(all)
    }

    /// Every node's answer to `query`: through the backplane, or this hub's alone.
    async fn ask_cluster(&self, query: crate::Query) -> Result<Vec<crate::Answer>> {
        if self.inner.requests.is_none() {
            let answer = self
                .call(move |d, _| crate::cluster::local_answer(&d.hub, "", &query))
                .await?;
            return Ok(vec![answer]);
        }
        self.through_backplane(|reply| crate::Request::Ask(crate::Question { query, reply }))
            .await?
            .map_err(Error::Cluster)
    }

    /// Hands the backplane the request `make` builds around a reply channel, and waits for
    /// the reply. Only with a backplane ([`Error::Stopped`] otherwise, or once it is gone).
    async fn through_backplane<T>(
        &self,
        make: impl FnOnce(async_channel::Sender<T>) -> crate::Request,
    ) -> Result<T> {
        let requests = self.inner.requests.as_ref().ok_or(Error::Stopped)?;
        let (reply, answer) = async_channel::bounded(1);
        requests
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        answer.recv().await.map_err(|_| Error::Stopped)
    }

    /// How the backplane is doing, if the hub has one (see
    /// [`Builder::backplane`](crate::Builder::backplane)).
    pub fn backplane(&self) -> Option<crate::BackplaneStats> {
        self.inner.backplane.as_ref().map(|s| s.snapshot())
    }

    // ---- receiving ----

    /// The next message from `conn` that no router handler took. Cancel-safe: dropping the
    /// future loses nothing. [`Error::ConnectionClosed`] once it is closed and read out.
    pub async fn receive(&self, conn: ConnId) -> Result<Incoming> {
        let inbox = self
            .call(move |d, _| d.inbox(conn))
            .await?
            .ok_or(Error::ConnectionClosed(conn))?;
        inbox
            .recv()
            .await
            .map_err(|_| Error::ConnectionClosed(conn))
    }

    /// [`Handle::receive`] with a deadline: `Ok(None)` if nothing came within `timeout`.
    pub async fn receive_timeout(
        &self,
        conn: ConnId,
        timeout: Duration,
    ) -> Result<Option<Incoming>> {
        let sleep = self.inner.rt.sleep_until(Instant::now() + timeout);
        or(async { self.receive(conn).await.map(Some) }, async {
            sleep.await;
            Ok(None)
        })
        .await
    }

    // ---- bring your own server ----

    /// Adopts a WebSocket that the application's own HTTP server upgraded (the server's
    /// side: frames are written unmasked, as RFC 6455 has a server write them): from now on
    /// it is a connection like any other. `info` says what it was opened with (its path, a
    /// name to find it by, and the wire protocol it speaks: `info.protocol(Protocol::Raw)`
    /// for a client that sends plain frames, else the hub's path rules decide);
    /// `close_delay` overrides how long a close waits for the peer's close frame before the
    /// socket is dropped.
    ///
    /// ```no_run
    /// # async fn demo(handle: tidings_net::Handle<impl tidings_net::Runtime>,
    /// #     ws: async_tungstenite::WebSocketStream<futures_lite::io::Cursor<Vec<u8>>>) {
    /// use std::time::Duration;
    /// use tidings_core::ConnectionInfo;
    /// let info = ConnectionInfo::new("/ws/user123/notification").name("/ws/user123/notification");
    /// let conn = handle.open(info, ws, Some(Duration::from_secs(1))).await.expect("opened");
    /// # }
    /// ```
    pub async fn open<S>(
        &self,
        info: ConnectionInfo,
        ws: WebSocketStream<S>,
        close_delay: Option<Duration>,
    ) -> Result<ConnId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admitted = self.admit(info, Vec::new(), false).await?;
        let conn = admitted.conn;
        let mut options = self.inner.options;
        if let Some(delay) = close_delay {
            options.close_delay = delay;
        }
        self.attach(admitted, ws, options, ());
        Ok(conn)
    }

    /// Opens a connection in the hub with its metadata; frames queue for it until
    /// [`Handle::attach`].
    pub(crate) async fn admit(
        &self,
        info: ConnectionInfo,
        meta: Vec<(String, serde_json::Value)>,
        authenticated: bool,
    ) -> Result<Admitted> {
        let opened = self
            .call(move |d, now| {
                let opened = d.open(now, info)?;
                for (key, value) in meta {
                    d.hub.set_meta(opened.conn, &key, value)?;
                }
                if authenticated {
                    d.hub.authenticate(opened.conn)?;
                }
                Ok::<_, tidings_core::Error>(opened)
            })
            .await??;
        Ok(Admitted {
            conn: opened.conn,
            ends: ConnEnds::new(
                opened,
                self.inner.inbound.clone(),
                self.inner.control.clone(),
            ),
            guard: self.inner.tasks.enter(),
        })
    }

    /// Runs an admitted connection over `ws` in a task of its own, which keeps `held` (the
    /// built-in server's claim on the address's share) until the connection ends.
    pub(crate) fn attach<S>(
        &self,
        admitted: Admitted,
        ws: WebSocketStream<S>,
        options: ConnOptions,
        held: impl Send + 'static,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let held = (admitted.guard, held);
        let rt = self.inner.rt.clone();
        self.inner
            .rt
            .spawn(conn::run(rt, ws, admitted.ends, options, held));
    }

    /// Reports that an admitted connection's upgrade failed.
    pub(crate) async fn abandon(&self, admitted: Admitted, error: String) {
        let _ = self
            .inner
            .inbound
            .send(Input::TransportError {
                conn: admitted.conn,
                error,
            })
            .await;
    }

    // ---- shutdown ----

    /// Shuts down: no new connections; every connection gets what it has queued, then a
    /// close with 1001. Returns once every connection is closed, or `close_grace` plus the
    /// close delay have passed. Then the hub task and the router task end: later calls on
    /// any handle return [`Error::Stopped`].
    pub async fn shutdown(&self) -> Result<()> {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        inner.stop.notify(usize::MAX);
        let done = self
            .call(|d, now| {
                d.hub.shutdown(now);
                d.await_shutdown()
            })
            .await?;
        let until = Instant::now() + inner.close_grace + inner.options.close_delay;
        let all_closed = async {
            let _ = done.recv().await;
            inner.tasks.idle().await;
        };
        or(all_closed, inner.rt.sleep_until(until)).await;
        // Connection tasks that outlived the grace end when the hub's channels close.
        let _ = self.call(|d, _| d.stopped = true).await;
        Ok(())
    }

    /// How many connection tasks are running (sockets still open, closing ones included).
    pub fn running_connections(&self) -> usize {
        self.inner.tasks.live()
    }

    /// Whether [`Handle::shutdown`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Completes once [`Handle::shutdown`] is called.
    pub(crate) async fn stopping(&self) {
        loop {
            let listener = self.inner.stop.listen();
            if self.is_stopping() {
                return;
            }
            listener.await;
        }
    }
}

/// A connection the hub has opened, waiting for its socket.
pub(crate) struct Admitted {
    pub conn: ConnId,
    ends: ConnEnds,
    guard: conn::TaskGuard,
}
