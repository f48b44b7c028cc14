//! [`Client`]: a tidings client for either runtime. It speaks PROTOCOL.md and nothing else:
//! JSON text frames (binary frames with a JSON header line for binary data), requests
//! matched to their answers by `id`/`ref`, acks by number.
//!
//! A background task reads the socket, so WebSocket pings are answered (by tungstenite)
//! and acks resolve even while the application is not reading events. It also keeps, for
//! each channel the client is in, the position of the next publication it has not seen; with
//! [`ClientBuilder::reconnect`] it reconnects after a lost connection (backoff with jitter)
//! and subscribes again from those positions, so that the server replays what was missed
//! (PROTOCOL.md, "Recovery").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use bytes::Bytes;
use futures_lite::future::or;
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidings_core::{CloseCode, Payload, Position};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::{Error, Io, Result, Runtime, SUBPROTOCOL_V1};

type Stream = Box<dyn Io>;

/// The current connection's sending half, shared by the client and its reader (which
/// replaces it on a reconnect); `None` while there is none.
type SenderSlot = Arc<async_lock::Mutex<Option<WebSocketSender<Stream>>>>;

/// An event (or channel publication) from the server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerEvent {
    /// The event name.
    pub event: String,
    /// The data (`Payload::Json`, or `Payload::Binary` for a binary frame).
    pub data: Payload,
    /// The channel, for publications.
    pub channel: Option<String>,
    /// The message id.
    pub id: Option<String>,
    /// The id this message answers.
    pub reply_to: Option<String>,
    /// The channel offset, for publications.
    pub offset: Option<u64>,
    /// The channel epoch, for publications.
    pub epoch: Option<u64>,
    /// Set when the server asks for an ack: answer with [`Client::ack`].
    pub ack: Option<u64>,
}

/// What arrives from the server, in order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The first frame: the connection's id and heartbeat settings.
    Welcome {
        /// The connection id.
        conn: String,
        /// The server's ping period.
        ping_interval_ms: Option<u64>,
        /// How long the client may stay silent.
        timeout_ms: Option<u64>,
    },
    /// An event or a publication.
    Event(ServerEvent),
    /// The items of a batched publish.
    Batch {
        /// The batch's event name.
        event: String,
        /// The channel, for channel batches.
        channel: Option<String>,
        /// The items, in order.
        messages: Vec<Value>,
    },
    /// Joined a channel (when not in answer to [`Client::subscribe`]): the server put this
    /// connection in it.
    Subscribed {
        /// The channel.
        channel: String,
        /// Whether the server keeps the connection in it (an `unsubscribe` is refused).
        pinned: bool,
    },
    /// Left a channel (when not in answer to [`Client::unsubscribe`]): the server took this
    /// connection out of it.
    Unsubscribed {
        /// The channel.
        channel: String,
    },
    /// An `error` frame that answers no pending request.
    Error {
        /// The error code.
        code: String,
        /// Why.
        message: String,
        /// The channel concerned, if any.
        channel: Option<String>,
    },
    /// A text frame that is not JSON (a text batch, an application heartbeat).
    Text(String),
    /// The connection was lost and the client reconnects (with [`ClientBuilder::reconnect`]):
    /// requests fail with [`Error::Closed`] until [`ClientEvent::Reconnected`].
    Disconnected {
        /// The server's close code, if it sent one.
        code: Option<CloseCode>,
        /// The reason.
        reason: String,
    },
    /// Connected again; the channels the client was in are subscribed again, each answered
    /// by [`ClientEvent::Recovered`] or [`ClientEvent::NotRecovered`].
    Reconnected,
    /// In `channel` again from where this client stood (after a reconnect, or joined by the
    /// application with `join_pinned_from`), and every publication missed meanwhile follows,
    /// in order, before any live one.
    Recovered {
        /// The channel.
        channel: String,
    },
    /// In `channel` again (after a reconnect, or joined by the application from a position),
    /// but what was published meanwhile cannot be had: the application must reload the
    /// channel's state another way.
    NotRecovered {
        /// The channel.
        channel: String,
        /// Why (PROTOCOL.md, "Recovery": `epoch_changed`, `too_old`, `no_history`, ...).
        reason: String,
    },
    /// The connection closed; nothing follows.
    Closed {
        /// The server's close code, if it sent one.
        code: Option<CloseCode>,
        /// The reason.
        reason: String,
    },
}

/// Builds a [`Client`] connection.
#[derive(Clone)]
pub struct ClientBuilder<R: Runtime> {
    rt: R,
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    timeout: Duration,
    ws: WebSocketConfig,
    tls: crate::tls::ClientTls,
    reconnect: Option<Backoff>,
}

/// How long to wait before each attempt to reconnect: from `min`, doubling up to `max`,
/// each wait plus up to half again at random (so that clients cut off together do not all
/// come back at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before the next attempt, given `random` in `[0, 1)`: `min`, plus up to half
    /// again.
    fn wait(self, random: f64) -> Duration {
        self.min + self.min.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }

    /// The backoff after a failed attempt: twice the wait, up to `max`.
    fn next(self) -> Backoff {
        Backoff {
            min: (self.min * 2).min(self.max),
            max: self.max,
        }
    }
}

/// Whether an upgrade refused with `status` is refused for good: a client error other than
/// a timeout (408) or too many requests (429). Server errors (503 at a limit) may pass.
fn refused_for_good(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

impl Default for Backoff {
    /// From 250 ms up to 10 s.
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl<R: Runtime> ClientBuilder<R> {
    /// A connection to `url` (`ws://host:port/path`, or `wss://` with the `tls` feature),
    /// offering subprotocol `tidings.v1`, with a 10 s request timeout.
    pub fn new(rt: R, url: &str) -> Self {
        ClientBuilder {
            rt,
            url: url.to_owned(),
            headers: Vec::new(),
            subprotocols: vec![SUBPROTOCOL_V1.into()],
            timeout: Duration::from_secs(10),
            ws: WebSocketConfig::default().read_buffer_size(16 * 1024),
            tls: Default::default(),
            reconnect: None,
        }
    }

    /// Reconnects by itself after a lost connection, waiting `backoff` between attempts,
    /// and subscribes again to every channel it was in from where it stood, so that the
    /// server replays what was missed (where the channel keeps history). Not after
    /// [`Client::close`], nor after a close that says coming back would not help (1000, a
    /// protocol or policy violation, a message too big), nor after an upgrade refused with a
    /// 4xx status other than 408 and 429. Off by default.
    #[must_use]
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// The TLS settings for `wss://` (default: Mozilla's roots). See [`crate::tls`].
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: std::sync::Arc<futures_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Adds a request header (a token, a cookie, an `Origin`).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The subprotocols to offer, in order of preference (replaces `tidings.v1`).
    #[must_use]
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// How long [`Client::subscribe`], [`Client::unsubscribe`] and
    /// [`Client::emit_with_ack`] wait by default. Default 10 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects and upgrades. A refused upgrade is [`Error::Refused`] with the status and
    /// body the server gave.
    pub async fn connect(self) -> Result<Client<R>> {
        let (ws, protocol) = self.open().await?;
        let (sender, receiver) = ws.split();
        let sender = Arc::new(async_lock::Mutex::new(Some(sender)));
        let (events_tx, events) = async_channel::unbounded();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (stop, stopped) = async_channel::bounded(1);
        let reader = Reader {
            builder: self.clone(),
            sender: sender.clone(),
            pending: pending.clone(),
            events: events_tx,
            stopped,
        };
        self.rt.spawn(reader.run(receiver));
        Ok(Client {
            _stop: stop,
            rt: self.rt,
            sender,
            pending,
            events,
            next: AtomicU64::new(1),
            timeout: self.timeout,
            protocol,
        })
    }

    /// Opens the WebSocket: the socket, TLS if `wss://`, the upgrade. Returns it with the
    /// subprotocol the server chose.
    async fn open(&self) -> Result<(async_tungstenite::WebSocketStream<Stream>, Option<String>)> {
        let mut request = self.url.as_str().into_client_request()?;
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let value =
                http::HeaderValue::from_str(value).map_err(|e| Error::Invalid(e.to_string()))?;
            request.headers_mut().append(name, value);
        }
        if !self.subprotocols.is_empty() {
            let offered = http::HeaderValue::from_str(&self.subprotocols.join(", "))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            request
                .headers_mut()
                .insert(http::header::SEC_WEBSOCKET_PROTOCOL, offered);
        }
        let uri = request.uri();
        let secure = uri.scheme_str() == Some("wss");
        let host = uri
            .host()
            .ok_or_else(|| Error::Invalid("URL without a host".into()))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tcp = self.rt.connect(&format!("{host}:{port}")).await?;
        let io: Stream = if secure {
            crate::tls::connect_client(&self.tls, &host, tcp).await?
        } else {
            Box::new(tcp)
        };
        let (ws, response) =
            match async_tungstenite::client_async_with_config(request, io, Some(self.ws)).await {
                Ok(done) => done,
                Err(tungstenite::Error::Http(response)) => {
                    let status = response.status().as_u16();
                    let body = response
                        .body()
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                        .unwrap_or_default();
                    return Err(Error::Refused { status, body });
                }
                Err(e) => return Err(e.into()),
            };
        let protocol = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((ws, protocol))
    }
}

/// Requests waiting for their answer, by key (`id` of the request, or `ack-N`), and what
/// the reader knows of the connection.
#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Sender<Result<Payload>>>,
    /// Set once the connection is gone for good, or while it is being reconnected.
    closed: Option<(Option<CloseCode>, String)>,
    /// The application closed the connection: it is not reconnected.
    closing: bool,
    /// For each channel the client is in, the next publication it has not seen.
    positions: HashMap<String, Position>,
}

impl Pending {
    fn resolve(&mut self, key: &str, answer: Result<Payload>) -> bool {
        match self.waiting.remove(key) {
            Some(tx) => {
                let _ = tx.try_send(answer);
                true
            }
            None => false,
        }
    }
}

/// A connection to a tidings server. Methods take `&self`: share it between tasks with an
/// `Arc`. Dropping it ends the connection without a close frame (the server sees 1006):
/// call [`Client::close`] first to close cleanly.
pub struct Client<R: Runtime> {
    /// Dropped with the client: the reader task ends and the socket closes (abruptly; call
    /// [`Client::close`] first for a clean close).
    _stop: Sender<()>,
    rt: R,
    /// The socket's sending half; `None` while reconnecting.
    sender: SenderSlot,
    pending: Arc<Mutex<Pending>>,
    events: Receiver<ClientEvent>,
    next: AtomicU64,
    timeout: Duration,
    protocol: Option<String>,
}

impl<R: Runtime> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next event from the server; `None` after [`ClientEvent::Closed`].
    pub async fn next(&self) -> Option<ClientEvent> {
        self.events.recv().await.ok()
    }

    /// [`Client::next`] with a deadline: `None` if nothing came within `timeout`.
    pub async fn next_timeout(&self, timeout: Duration) -> Option<ClientEvent> {
        let sleep = self.rt.sleep_until(Instant::now() + timeout);
        or(self.next(), async {
            sleep.await;
            None
        })
        .await
    }

    /// Joins `channel`; fails with [`Error::Server`] if the server refuses.
    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        let id = self.id("s");
        let frame = json!({"type": "subscribe", "channel": channel, "id": id});
        self.request(id, frame, self.timeout).await.map(|_| ())
    }

    /// Leaves `channel`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        let id = self.id("u");
        let frame = json!({"type": "unsubscribe", "channel": channel, "id": id});
        self.request(id, frame, self.timeout).await.map(|_| ())
    }

    /// Publishes to a channel this client is in (if the server lets clients publish).
    pub async fn publish(&self, channel: &str, event: &str, data: impl Serialize) -> Result<()> {
        let frame = json!({"type": "publish", "channel": channel, "event": event, "data": data});
        self.send_json(&frame).await
    }

    /// Sends an event to the server application.
    pub async fn emit(&self, event: &str, data: impl Serialize) -> Result<()> {
        self.send_json(&json!({"type": "event", "event": event, "data": data}))
            .await
    }

    /// Sends an event with binary data (a header line, a newline, the bytes).
    pub async fn emit_binary(&self, event: &str, data: &[u8]) -> Result<()> {
        let mut frame = serde_json::to_vec(&json!({"type": "event", "event": event}))?;
        frame.push(b'\n');
        frame.extend_from_slice(data);
        self.send(Message::Binary(Bytes::from(frame))).await
    }

    /// Sends an event and waits for the application's ack: its data, [`Error::Timeout`]
    /// after `timeout` (default the client's), or [`Error::Server`] if the server refused
    /// the request (too many pending acks).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<Payload> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let frame =
            json!({"type": "event", "event": event, "data": data, "ack": n, "id": ack_key(n)});
        self.request(ack_key(n), frame, timeout.unwrap_or(self.timeout))
            .await
    }

    /// Answers the server's ack request `ack` (from [`ServerEvent::ack`]).
    pub async fn ack(&self, ack: u64, data: impl Serialize) -> Result<()> {
        self.send_json(&json!({"type": "ack", "ack": ack, "data": data}))
            .await
    }

    /// An application-level ping; completes when the server's `pong` arrives.
    pub async fn ping(&self) -> Result<()> {
        let id = self.id("p");
        let frame = json!({"type": "ping", "id": id});
        self.request(id, frame, self.timeout).await.map(|_| ())
    }

    /// Sends a raw text frame (for heartbeats, or tests of what a server does with garbage).
    pub async fn send_text(&self, text: &str) -> Result<()> {
        self.send(Message::text(text)).await
    }

    /// Where this client stands in `channel`'s stream: the epoch and the offset of the next
    /// publication it has not seen (PROTOCOL.md, "Recovery"), if it is in the channel.
    pub fn position(&self, channel: &str) -> Option<Position> {
        let p = self.pending.lock().ok()?;
        p.positions.get(channel).copied()
    }

    /// Joins `channel` asking for every publication from `from` on (a position kept from an
    /// earlier connection, see [`Client::position`]): `Ok(None)` if they follow, in order,
    /// before any live one; `Ok(Some(reason))` if they cannot be had (the client is
    /// subscribed all the same, live from now).
    pub async fn subscribe_from(&self, channel: &str, from: Position) -> Result<Option<String>> {
        let id = self.id("s");
        let frame = json!({
            "type": "subscribe", "channel": channel, "id": id,
            "since": from.since, "epoch": from.epoch,
        });
        // Where the replay starts, if there is one; a `subscribed` without one replaces it.
        if let Ok(mut p) = self.pending.lock() {
            p.positions.insert(channel.to_owned(), from);
        }
        let answer = self.request(id, frame, self.timeout).await?;
        Ok(answer
            .as_json()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned)))
    }

    /// Closes the connection with 1000 (and ends reconnecting, if the client does).
    pub async fn close(&self) -> Result<()> {
        if let Ok(mut p) = self.pending.lock() {
            p.closing = true;
        }
        let frame = CloseFrame {
            code: CloseCode::NORMAL.0.into(),
            reason: "".into(),
        };
        self.send(Message::Close(Some(frame))).await
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    async fn send_json(&self, frame: &Value) -> Result<()> {
        self.send(Message::text(frame.to_string())).await
    }

    async fn send(&self, message: Message) -> Result<()> {
        if let Some((code, reason)) = self.closed() {
            return Err(Error::Closed { code, reason });
        }
        let mut sender = self.sender.lock().await;
        let Some(sender) = sender.as_mut() else {
            let (code, reason) = self.closed().unwrap_or((None, "reconnecting".into()));
            return Err(Error::Closed { code, reason });
        };
        sender.send(message).await?;
        Ok(())
    }

    fn closed(&self) -> Option<(Option<CloseCode>, String)> {
        self.pending.lock().ok().and_then(|p| p.closed.clone())
    }

    /// Sends `frame` and waits for the answer keyed `key`.
    async fn request(&self, key: String, frame: Value, timeout: Duration) -> Result<Payload> {
        let (tx, rx) = async_channel::bounded(1);
        if let Ok(mut p) = self.pending.lock() {
            p.waiting.insert(key.clone(), tx);
        }
        if let Err(e) = self.send_json(&frame).await {
            self.forget(&key);
            return Err(e);
        }
        let sleep = self.rt.sleep_until(Instant::now() + timeout);
        let answer = or(async { Some(rx.recv().await) }, async {
            sleep.await;
            None
        })
        .await;
        match answer {
            Some(Ok(answer)) => answer,
            Some(Err(_)) => {
                let (code, reason) = self.closed().unwrap_or((None, String::new()));
                Err(Error::Closed { code, reason })
            }
            None => {
                self.forget(&key);
                Err(Error::Timeout(timeout))
            }
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.waiting.remove(key);
        }
    }
}

fn ack_key(n: u64) -> String {
    format!("ack-{n}")
}

/// A server frame as PROTOCOL.md lists its fields; unknown fields are ignored.
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    event: Option<String>,
    channel: Option<String>,
    id: Option<String>,
    reply_to: Option<String>,
    offset: Option<u64>,
    epoch: Option<u64>,
    ack: Option<u64>,
    code: Option<String>,
    message: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    data: Option<Value>,
    messages: Option<Vec<Value>>,
    conn: Option<String>,
    ping_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    server: bool,
    error: Option<RawFailure>,
    recovered: Option<bool>,
    reason: Option<String>,
}

/// An `ack` frame's `error`: why the request failed.
#[derive(Deserialize)]
struct RawFailure {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The background reader: answers pending requests, forwards the rest as events, and (with
/// [`ClientBuilder::reconnect`]) connects again when the connection is lost.
struct Reader<R: Runtime> {
    builder: ClientBuilder<R>,
    sender: SenderSlot,
    pending: Arc<Mutex<Pending>>,
    events: Sender<ClientEvent>,
    /// Closed when the client is dropped: the reader ends.
    stopped: Receiver<()>,
}

/// How a connection ended, for whoever is still waiting.
type Ending = (Option<CloseCode>, String);

impl<R: Runtime> Reader<R> {
    async fn run(self, mut receiver: WebSocketReceiver<Stream>) {
        let mut backoff = self.builder.reconnect;
        loop {
            let Some(ending) = self.read(receiver).await else {
                return; // the client was dropped
            };
            let Some(retry) = backoff.filter(|_| self.comes_back(&ending)) else {
                self.end(ending);
                return;
            };
            *self.sender.lock().await = None;
            self.fail_waiting(&ending);
            let (code, reason) = ending;
            let _ = self
                .events
                .try_send(ClientEvent::Disconnected { code, reason });
            match self.reconnect(retry).await {
                Some(next) => {
                    receiver = next;
                    backoff = self.builder.reconnect;
                }
                None => return,
            }
        }
    }

    /// Reads until the connection ends (how) or the client is dropped (`None`).
    async fn read(&self, mut receiver: WebSocketReceiver<Stream>) -> Option<Ending> {
        let mut close = (None, String::new());
        loop {
            let next = or(async { Some(receiver.next().await) }, async {
                let _ = self.stopped.recv().await;
                None
            });
            let Some(message) = next.await? else {
                return Some(close);
            };
            let event = match message {
                Ok(Message::Text(text)) => match serde_json::from_str::<Raw>(&text) {
                    Ok(raw) => dispatch(raw, None, &self.pending),
                    Err(_) => Some(ClientEvent::Text(text.to_string())),
                },
                Ok(Message::Binary(bytes)) => {
                    let split = bytes.iter().position(|&b| b == b'\n');
                    let raw = split.and_then(|i| serde_json::from_slice::<Raw>(&bytes[..i]).ok());
                    match (raw, split) {
                        (Some(raw), Some(i)) => {
                            dispatch(raw, Some(bytes.slice(i + 1..)), &self.pending)
                        }
                        _ => None, // not PROTOCOL.md: nothing to tell the application
                    }
                }
                Ok(Message::Close(frame)) => {
                    if let Some(f) = frame {
                        close = (Some(CloseCode(f.code.into())), f.reason.to_string());
                    }
                    None
                }
                Ok(_) => None, // pings are answered by tungstenite
                Err(e) => {
                    if close.0.is_none() {
                        close.1 = e.to_string();
                    }
                    return Some(close);
                }
            };
            if let Some(event) = event {
                let _ = self.events.try_send(event);
            }
        }
    }

    /// Whether to reconnect after `ending`: not after the application's close, nor after a
    /// close that coming back would only repeat.
    fn comes_back(&self, ending: &Ending) -> bool {
        if self.pending.lock().map_or(true, |p| p.closing) {
            return false;
        }
        // Closes the server would only repeat: violations, limits, and being replaced by
        // another connection under the same name (coming back would replace that one).
        let final_codes = [
            CloseCode::NORMAL,
            CloseCode::PROTOCOL_ERROR,
            CloseCode::UNSUPPORTED_DATA,
            CloseCode::INVALID_PAYLOAD,
            CloseCode::POLICY,
            CloseCode::TOO_BIG,
            CloseCode::TOO_MANY_SUBSCRIPTIONS,
            CloseCode::REFUSED,
            CloseCode::AUTH_TIMEOUT,
            CloseCode::REPLACED,
        ];
        !ending.0.is_some_and(|code| final_codes.contains(&code))
    }

    /// Connects again, waiting longer after each failure; subscribes again from each
    /// channel's position. `None` if the client was dropped or the server refuses for good.
    async fn reconnect(&self, mut backoff: Backoff) -> Option<WebSocketReceiver<Stream>> {
        loop {
            let wait = backoff.wait(fastrand::f64());
            let wake = self.builder.rt.sleep_until(Instant::now() + wait);
            let stopped = async {
                let _ = self.stopped.recv().await;
                true
            };
            if or(stopped, async {
                wake.await;
                false
            })
            .await
            {
                return None;
            }
            match self.builder.open().await {
                Ok((ws, _)) => {
                    let (mut sender, receiver) = ws.split();
                    let positions: Vec<(String, Position)> = match self.pending.lock() {
                        Ok(mut p) => {
                            p.closed = None;
                            p.positions.iter().map(|(c, at)| (c.clone(), *at)).collect()
                        }
                        Err(_) => return None,
                    };
                    for (channel, at) in positions {
                        let frame = json!({
                            "type": "subscribe", "channel": channel,
                            "since": at.since, "epoch": at.epoch,
                        });
                        // A failure shows as the new connection's end, read next.
                        let _ = sender.send(Message::text(frame.to_string())).await;
                    }
                    *self.sender.lock().await = Some(sender);
                    let _ = self.events.try_send(ClientEvent::Reconnected);
                    return Some(receiver);
                }
                Err(Error::Refused { status, body }) if refused_for_good(status) => {
                    self.end((None, format!("reconnect refused with {status}: {body}")));
                    return None;
                }
                Err(_) => backoff = backoff.next(),
            }
        }
    }

    /// Fails every request still waiting: the connection they went out on is gone.
    fn fail_waiting(&self, ending: &Ending) {
        if let Ok(mut p) = self.pending.lock() {
            p.closed = Some(ending.clone());
            p.waiting.clear();
        }
    }

    /// The connection is gone for good: everyone still waiting learns it, and so does the
    /// application.
    fn end(&self, ending: Ending) {
        self.fail_waiting(&ending);
        let (code, reason) = ending;
        let _ = self.events.try_send(ClientEvent::Closed { code, reason });
    }
}

/// Resolves a pending request with `raw`, or turns it into an event.
fn dispatch(raw: Raw, binary: Option<Bytes>, pending: &Mutex<Pending>) -> Option<ClientEvent> {
    let mut p = pending.lock().ok()?;
    let data = match binary {
        Some(bytes) => Payload::Binary(bytes),
        None => Payload::Json(raw.data.unwrap_or(Value::Null)),
    };
    let answered = |p: &mut Pending, answer: Result<Payload>| {
        raw.reference
            .as_deref()
            .is_some_and(|r| p.resolve(r, answer))
    };
    match raw.kind.as_str() {
        "welcome" => Some(ClientEvent::Welcome {
            conn: raw.conn.unwrap_or_default(),
            ping_interval_ms: raw.ping_interval_ms,
            timeout_ms: raw.timeout_ms,
        }),
        "event" => {
            // One past the last publication seen, in a channel the client is in.
            if let (Some(channel), Some(offset), Some(epoch)) =
                (&raw.channel, raw.offset, raw.epoch)
            {
                if let Some(at) = p.positions.get_mut(channel) {
                    *at = Position {
                        since: offset + 1,
                        epoch,
                    };
                }
            }
            Some(ClientEvent::Event(ServerEvent {
                event: raw.event.unwrap_or_default(),
                data,
                channel: raw.channel,
                id: raw.id,
                reply_to: raw.reply_to,
                offset: raw.offset,
                epoch: raw.epoch,
                ack: raw.ack,
            }))
        }
        "batch" => Some(ClientEvent::Batch {
            event: raw.event.unwrap_or_default(),
            channel: raw.channel,
            messages: raw.messages.unwrap_or_default(),
        }),
        "ack" => {
            let n = raw.ack?;
            let answer = match raw.error {
                Some(failure) => Err(Error::Server {
                    code: failure.code,
                    message: failure.message,
                }),
                None => Ok(data),
            };
            p.resolve(&ack_key(n), answer);
            None
        }
        "subscribed" | "unsubscribed" | "pong" => {
            let channel = raw.channel.clone().unwrap_or_default();
            match (raw.kind.as_str(), raw.offset, raw.epoch) {
                // Only the client's own subscriptions are taken up again after a reconnect:
                // the application joins its own again (from the position it is given).
                ("subscribed", _, _) if raw.server => {}
                // A recovery's replay follows: the position moves with it, not past it.
                ("subscribed", _, _) if raw.recovered == Some(true) => {
                    p.positions.entry(channel.clone()).or_insert(Position {
                        since: raw.offset.unwrap_or(0),
                        epoch: raw.epoch.unwrap_or(0),
                    });
                }
                ("subscribed", Some(since), Some(epoch)) => {
                    p.positions
                        .insert(channel.clone(), Position { since, epoch });
                }
                ("unsubscribed", _, _) => {
                    p.positions.remove(&channel);
                }
                _ => {}
            }
            let answer = json!({"recovered": raw.recovered, "reason": raw.reason});
            if answered(&mut p, Ok(Payload::Json(answer))) {
                return None;
            }
            match raw.kind.as_str() {
                "subscribed" => Some(match (raw.recovered, raw.reason) {
                    (Some(true), _) => ClientEvent::Recovered { channel },
                    (Some(false), reason) => ClientEvent::NotRecovered {
                        channel,
                        reason: reason.unwrap_or_default(),
                    },
                    (None, _) => ClientEvent::Subscribed {
                        channel,
                        pinned: raw.pinned,
                    },
                }),
                "unsubscribed" => Some(ClientEvent::Unsubscribed { channel }),
                _ => None,
            }
        }
        "error" => {
            let code = raw.code.clone().unwrap_or_default();
            let message = raw.message.clone().unwrap_or_default();
            let error = || Error::Server {
                code: code.clone(),
                message: message.clone(),
            };
            // An `ack` answers the event that asked for it; else `ref` names the request.
            if raw
                .ack
                .is_some_and(|n| p.resolve(&ack_key(n), Err(error())))
            {
                return None;
            }
            if answered(&mut p, Err(error())) {
                return None;
            }
            Some(ClientEvent::Error {
                code,
                message,
                channel: raw.channel,
            })
        }
        _ => None, // a newer server's frame type: ignore, as PROTOCOL.md asks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_max_and_adds_up_to_half_again() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        assert_eq!(b.wait(0.0), Duration::from_millis(100));
        assert_eq!(b.wait(0.5), Duration::from_millis(125));
        assert_eq!(b.wait(1.0), Duration::from_millis(150));
        let waits: Vec<Duration> = std::iter::successors(Some(b), |b| Some(b.next()))
            .take(4)
            .map(|b| b.min)
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [ms(100), ms(200), ms(300), ms(300)]);
        assert_eq!(b.next().max, b.max);
    }

    #[test]
    fn only_client_errors_that_would_repeat_end_reconnecting() {
        for status in [400, 401, 403, 404, 409, 426] {
            assert!(refused_for_good(status), "{status}");
        }
        for status in [408, 429, 500, 502, 503, 399] {
            assert!(!refused_for_good(status), "{status}");
        }
    }
}
