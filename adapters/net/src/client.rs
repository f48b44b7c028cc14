//! [`Client`]: a tidings client for either runtime. It speaks PROTOCOL.md and nothing else:
//! JSON text frames (binary frames with a JSON header line for binary data), requests
//! matched to their answers by `id`/`ref`, acks by number.
//!
//! A background task reads the socket, so WebSocket pings are answered (by tungstenite)
//! and acks resolve even while the application is not reading events.

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
use tidings_core::{CloseCode, Payload};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::{Error, Io, Result, Runtime, SUBPROTOCOL_V1};

type Stream = Box<dyn Io>;

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
    /// The connection closed; nothing follows.
    Closed {
        /// The server's close code, if it sent one.
        code: Option<CloseCode>,
        /// The reason.
        reason: String,
    },
}

/// Builds a [`Client`] connection.
pub struct ClientBuilder<R: Runtime> {
    rt: R,
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    timeout: Duration,
    ws: WebSocketConfig,
    tls: crate::tls::ClientTls,
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
        }
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
            crate::tls::connect_client(self.tls, &host, tcp).await?
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
        let (sender, receiver) = ws.split();
        let (events_tx, events) = async_channel::unbounded();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (stop, stopped) = async_channel::bounded(1);
        self.rt
            .spawn(read(receiver, pending.clone(), events_tx, stopped));
        Ok(Client {
            _stop: stop,
            rt: self.rt,
            sender: async_lock::Mutex::new(sender),
            pending,
            events,
            next: AtomicU64::new(1),
            timeout: self.timeout,
            protocol,
        })
    }
}

/// Requests waiting for their answer, by key (`id` of the request, or `ack-N`).
#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Sender<Result<Payload>>>,
    closed: Option<(Option<CloseCode>, String)>,
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
    sender: async_lock::Mutex<WebSocketSender<Stream>>,
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

    /// Closes the connection with 1000.
    pub async fn close(&self) -> Result<()> {
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
        self.sender.lock().await.send(message).await?;
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
    error: Option<RawFailure>,
}

/// An `ack` frame's `error`: why the request failed.
#[derive(Deserialize)]
struct RawFailure {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The background reader: answers pending requests, forwards the rest as events.
async fn read(
    mut receiver: WebSocketReceiver<Stream>,
    pending: Arc<Mutex<Pending>>,
    events: Sender<ClientEvent>,
    stopped: Receiver<()>,
) {
    let mut close = (None, String::new());
    loop {
        // Ends when the client is dropped (its end of `stopped` closes).
        let next = or(receiver.next(), async {
            let _ = stopped.recv().await;
            None
        });
        let Some(message) = next.await else { break };
        let event = match message {
            Ok(Message::Text(text)) => match serde_json::from_str::<Raw>(&text) {
                Ok(raw) => dispatch(raw, None, &pending),
                Err(_) => Some(ClientEvent::Text(text.to_string())),
            },
            Ok(Message::Binary(bytes)) => {
                let split = bytes.iter().position(|&b| b == b'\n');
                let raw = split.and_then(|i| serde_json::from_slice::<Raw>(&bytes[..i]).ok());
                match (raw, split) {
                    (Some(raw), Some(i)) => dispatch(raw, Some(bytes.slice(i + 1..)), &pending),
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
                break;
            }
        };
        if let Some(event) = event {
            let _ = events.try_send(event);
        }
    }
    // Everyone still waiting learns the connection is gone.
    if let Ok(mut p) = pending.lock() {
        p.closed = Some(close.clone());
        p.waiting.clear();
    }
    let _ = events.try_send(ClientEvent::Closed {
        code: close.0,
        reason: close.1,
    });
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
        "event" => Some(ClientEvent::Event(ServerEvent {
            event: raw.event.unwrap_or_default(),
            data,
            channel: raw.channel,
            id: raw.id,
            reply_to: raw.reply_to,
            offset: raw.offset,
            epoch: raw.epoch,
            ack: raw.ack,
        })),
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
            if answered(&mut p, Ok(Payload::Json(Value::Null))) {
                return None;
            }
            let channel = raw.channel.clone().unwrap_or_default();
            match raw.kind.as_str() {
                "subscribed" => Some(ClientEvent::Subscribed {
                    channel,
                    pinned: raw.pinned,
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
