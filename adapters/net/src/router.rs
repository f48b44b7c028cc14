//! [`Router`]: handlers by event name, a fallback for unknown events, connect and
//! disconnect hooks, and a hook that authorizes subscriptions.
//!
//! The router runs as one task that takes events in order and awaits each handler, so the
//! messages of a connection are handled in the order they were sent. A handler that does
//! slow work should spawn it. While the router is more than a backlog behind, the hub stops
//! reading connection input (see the driver), so a slow handler never grows memory.
//!
//! Every event that asked for an ack is answered once: by the handler ([`Ctx::reply`],
//! [`Ctx::error`]), else with what the handler returned once it has returned and dropped its
//! [`Ctx`], else (a `Ctx` kept by spawned work that never answers) by the server's answer
//! deadline.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_channel::Receiver;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tidings_core::{CloseCode, ConnId, Event, Message, Payload};
use tracing::Instrument;

use crate::{Handle, Result, Runtime};

type BoxFuture<T = ()> = Pin<Box<dyn Future<Output = T> + Send>>;
/// What a handler returned, as JSON, to answer an ack it left unanswered.
type Outcome = std::result::Result<Value, String>;
type Handler<R> = Box<dyn Fn(Ctx<R>, Payload) -> BoxFuture<Outcome> + Send + Sync>;
type Fallback<R> = Box<dyn Fn(Ctx<R>, String, Payload) -> BoxFuture<Outcome> + Send + Sync>;
type ConnectHook<R> = Box<dyn Fn(Ctx<R>) -> BoxFuture + Send + Sync>;
type DisconnectHook<R> = Box<dyn Fn(Disconnect<R>) -> BoxFuture + Send + Sync>;
type RoomHook<R> = Box<dyn Fn(Ctx<R>, String) -> BoxFuture + Send + Sync>;
type Authorize<R> = Box<dyn Fn(Ctx<R>, String) -> BoxFuture<Result<(), String>> + Send + Sync>;

/// Event handlers and hooks for a server. Build it, then pass it to the server builder.
///
/// ```
/// # fn demo<R: tidings_net::Runtime>() -> tidings_net::Router<R> {
/// use serde::Deserialize;
/// use tidings_net::Router;
///
/// #[derive(Deserialize)]
/// struct Join { game: String }
///
/// Router::new()
///     .on("join_game", |ctx, join: Join| async move {
///         let _ = ctx.join(&join.game).await;
///         let _ = ctx.reply(serde_json::json!({ "joined": join.game })).await;
///     })
///     .fallback(|ctx, event, _data| async move {
///         let _ = ctx.error(&format!("unknown command {event:?}")).await;
///     })
/// # }
/// ```
pub struct Router<R: Runtime> {
    handlers: HashMap<String, Handler<R>>,
    fallback: Option<Fallback<R>>,
    on_connect: Option<ConnectHook<R>>,
    on_disconnect: Option<DisconnectHook<R>>,
    on_join: Option<RoomHook<R>>,
    on_leave: Option<RoomHook<R>>,
    authorize: Option<Authorize<R>>,
}

impl<R: Runtime> Default for Router<R> {
    fn default() -> Self {
        Router {
            handlers: HashMap::new(),
            fallback: None,
            on_connect: None,
            on_disconnect: None,
            on_join: None,
            on_leave: None,
            authorize: None,
        }
    }
}

/// What the hub needs to know of a router: which events go to it.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    events: std::collections::HashSet<String>,
    fallback: bool,
    pub on_connect: bool,
    pub on_disconnect: bool,
    pub on_join: bool,
    pub on_leave: bool,
    pub authorize: bool,
}

impl Routes {
    /// Whether the router takes messages for `event` (else they go to the inbox).
    pub fn takes(&self, event: &str) -> bool {
        self.fallback || self.events.contains(event)
    }
}

impl<R: Runtime> Router<R> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles event `event`, its data deserialised as `T`. Data that does not fit `T` is
    /// answered with the error code `invalid_data` (see [`Ctx::error`]). What the handler
    /// returns (`()` is `null`) answers the event's ack if the handler did not.
    pub fn on<T, F, Fut, O>(mut self, event: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Ctx<R>, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: Handler<R> = Box::new(move |ctx, payload| {
            let handler = handler.clone();
            Box::pin(async move {
                match decode::<T>(payload) {
                    Ok(data) => outcome(handler(ctx, data).await),
                    Err(why) => {
                        let _ = ctx.error_code("invalid_data", &why).await;
                        Ok(Value::Null)
                    }
                }
            })
        });
        self.handlers.insert(event.to_owned(), boxed);
        self
    }

    /// Handles event `event` with its raw [`Payload`] (binary data included). What the
    /// handler returns answers the ack as with [`Router::on`].
    pub fn on_raw<F, Fut, O>(mut self, event: &str, handler: F) -> Self
    where
        F: Fn(Ctx<R>, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: Handler<R> = Box::new(move |c, p| {
            let handler = handler.clone();
            Box::pin(async move { outcome(handler(c, p).await) })
        });
        self.handlers.insert(event.to_owned(), boxed);
        self
    }

    /// Handles every event without a handler of its own (gets the event name too). Without
    /// one, such messages wait in the connection's inbox for [`Handle::receive`]. What the
    /// handler returns answers the ack as with [`Router::on`].
    pub fn fallback<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Ctx<R>, String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.fallback = Some(Box::new(move |c, e, p| {
            let handler = handler.clone();
            Box::pin(async move { outcome(handler(c, e, p).await) })
        }));
        self
    }

    /// Runs when a connection opens (after the server's connect hook admitted it).
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Ctx<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Box::new(move |c| Box::pin(hook(c))));
        self
    }

    /// Runs when a connection is gone (its rooms are already left).
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Disconnect<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Box::new(move |d| Box::pin(hook(d))));
        self
    }

    /// Runs when a connection joins a room: its own `subscribe`, or the server's join.
    pub fn on_join<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Ctx<R>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_join = Some(Box::new(move |c, room| Box::pin(hook(c, room))));
        self
    }

    /// Runs when a connection leaves a room: its own `unsubscribe`, the server's leave, or
    /// its close (then before `on_disconnect`, and calls about the connection may fail:
    /// it is gone).
    pub fn on_leave<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Ctx<R>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_leave = Some(Box::new(move |c, room| Box::pin(hook(c, room))));
        self
    }

    /// Decides each client `subscribe`: `Ok(())` joins it, `Err(reason)` answers it with a
    /// `subscribe_denied` error carrying the reason. Setting this turns on
    /// `SubscribePolicy::Approve`.
    pub fn authorize_subscribe<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Ctx<R>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.authorize = Some(Box::new(move |c, ch| Box::pin(hook(c, ch))));
        self
    }

    pub(crate) fn routes(&self) -> Routes {
        Routes {
            events: self.handlers.keys().cloned().collect(),
            fallback: self.fallback.is_some(),
            on_connect: self.on_connect.is_some(),
            on_disconnect: self.on_disconnect.is_some(),
            on_join: self.on_join.is_some(),
            on_leave: self.on_leave.is_some(),
            authorize: self.authorize.is_some(),
        }
    }

    /// The router task: one event at a time, in order, each inside its connection's span
    /// (see logs.rs), so what a handler logs reads under the connection it is about.
    pub(crate) async fn run(
        self,
        handle: Handle<R>,
        events: Receiver<(Event, tracing::Span)>,
        room: Arc<event_listener::Event>,
    ) {
        while let Ok((event, span)) = events.recv().await {
            room.notify(usize::MAX);
            self.dispatch(&handle, event).instrument(span).await;
        }
    }

    /// Runs the handler `event` is for, if any, and answers its ack if the handler did not.
    async fn dispatch(&self, handle: &Handle<R>, event: Event) {
        let ctx = |conn, ack, id| Ctx {
            handle: handle.clone(),
            conn,
            ack,
            id,
            answered: Arc::new(AtomicBool::new(false)),
        };
        match event {
            Event::Message {
                conn,
                event,
                data,
                ack,
                id,
            } => {
                let ctx = ctx(conn, ack, id);
                let answered = ctx.answered.clone();
                let result = if let Some(h) = self.handlers.get(&event) {
                    h(ctx, data).await
                } else if let Some(f) = &self.fallback {
                    f(ctx, event, data).await
                } else {
                    return;
                };
                // Unanswered, and no `Ctx` left to answer it (a handler that handed its
                // `Ctx` to spawned work leaves the answer to that work).
                let unanswered = !answered.load(Ordering::Acquire);
                if let (Some(ack), true) = (ack, unanswered && Arc::strong_count(&answered) == 1) {
                    let _ = match result {
                        Ok(value) => handle.reply_ack(conn, ack, value).await,
                        Err(why) => {
                            let code = "internal";
                            handle.answer_error(conn, None, Some(ack), code, &why).await
                        }
                    };
                }
            }
            Event::Connected { conn } => {
                if let Some(h) = &self.on_connect {
                    h(ctx(conn, None, None)).await;
                }
            }
            Event::Disconnected {
                conn, code, reason, ..
            } => {
                if let Some(h) = &self.on_disconnect {
                    let handle = handle.clone();
                    h(Disconnect {
                        handle,
                        conn,
                        code,
                        reason,
                    })
                    .await;
                }
            }
            Event::Joined { conn, room } => {
                if let Some(h) = &self.on_join {
                    h(ctx(conn, None, None), room.to_string()).await;
                }
            }
            Event::Left { conn, room } => {
                if let Some(h) = &self.on_leave {
                    h(ctx(conn, None, None), room.to_string()).await;
                }
            }
            Event::SubscribeRequest { conn, channel } => {
                if let Some(h) = &self.authorize {
                    let verdict = h(ctx(conn, None, None), channel.clone()).await;
                    let _ = handle
                        .call(move |d, now| match verdict {
                            Ok(()) => d.hub.approve_subscribe(now, conn, &channel),
                            Err(why) => d.hub.deny_subscribe(now, conn, &channel, &why),
                        })
                        .await;
                }
            }
            _ => {}
        }
    }
}

/// A handler's result as JSON.
fn outcome(value: impl Serialize) -> Outcome {
    serde_json::to_value(value).map_err(|e| format!("the handler's result is not JSON: {e}"))
}

fn decode<T: DeserializeOwned>(payload: Payload) -> Result<T, String> {
    let value = match payload {
        Payload::Json(v) => v,
        Payload::Text(s) => Value::String(s),
        Payload::Binary(_) => return Err("binary data where JSON was expected".into()),
        _ => return Err("unsupported payload".into()),
    };
    serde_json::from_value(value).map_err(|e| format!("invalid data: {e}"))
}

/// What a handler gets besides the data: the connection, a handle, and the request to answer
/// (its `id` and ack).
pub struct Ctx<R: Runtime> {
    handle: Handle<R>,
    conn: ConnId,
    ack: Option<u64>,
    id: Option<String>,
    /// Set once the ack is answered; shared with the router, which answers it otherwise.
    answered: Arc<AtomicBool>,
}

impl<R: Runtime> Ctx<R> {
    /// The connection the event came from.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// A handle to the hub, to publish, emit, join and so on.
    pub fn handle(&self) -> &Handle<R> {
        &self.handle
    }

    /// Whether the client asked for an ack (answer it with [`Ctx::reply`]).
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// The event's `id`, if the client gave one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Answers the client's ack request. `Ok(false)` if it asked for none.
    pub async fn reply(&self, data: impl Serialize) -> Result<bool> {
        match self.ack {
            Some(ack) => {
                self.handle.reply_ack(self.conn, ack, data).await?;
                self.answered.store(true, Ordering::Release);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sends the event `event` with `data` to this connection.
    pub async fn emit(&self, event: &str, data: impl Serialize) -> Result<()> {
        let message = Message::json(event, serde_json::to_value(data)?);
        self.handle.emit(self.conn, message).await.map(|_| ())
    }

    /// Sends `data` to this connection as it is (see [`Handle::send`]): for a raw
    /// connection, the echo of what it sent is `ctx.send(data)`.
    pub async fn send(&self, data: impl Into<Payload>) -> Result<()> {
        self.handle.send(self.conn, data).await.map(|_| ())
    }

    /// Answers the event with an application error of code `application`; see
    /// [`Ctx::error_code`].
    pub async fn error(&self, message: &str) -> Result<()> {
        self.error_code("application", message).await
    }

    /// Answers the event with an application error: if it asked for an ack (and that is not
    /// answered yet), the ack, `{"type":"ack","ack":n,"error":{"code":..,"message":..}}`;
    /// else an `error` event, `{"type":"event","event":"error","ref":id,"data":{"code":..,
    /// "message":..}}`, with the event's `id` as `ref`.
    pub async fn error_code(&self, code: &str, message: &str) -> Result<()> {
        let ack = self.ack.filter(|_| !self.answered.load(Ordering::Acquire));
        let id = self.id.clone();
        self.handle
            .answer_error(self.conn, id, ack, code, message)
            .await?;
        if ack.is_some() {
            self.answered.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Asks this connection a question and waits for its ack.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<Payload> {
        let message = Message::json(event, serde_json::to_value(data)?);
        self.handle.emit_with_ack(self.conn, message, timeout).await
    }

    /// Marks this connection authenticated (see `Config::auth_timeout`).
    pub async fn authenticate(&self) -> Result<()> {
        self.handle.authenticate(self.conn).await
    }

    /// Puts this connection in `room` (the client is told, and may leave it).
    pub async fn join(&self, room: &str) -> Result<bool> {
        self.handle.join(self.conn, room).await
    }

    /// Puts this connection in `room` and keeps it there: its `unsubscribe` is refused.
    pub async fn join_pinned(&self, room: &str) -> Result<bool> {
        self.handle.join_pinned(self.conn, room).await
    }

    /// [`Ctx::join_pinned`] for a client that comes back with the position it had in `room`:
    /// see [`Handle::join_pinned_from`].
    pub async fn join_pinned_from(
        &self,
        room: &str,
        from: tidings_core::Position,
    ) -> Result<tidings_core::Recovery> {
        self.handle.join_pinned_from(self.conn, room, from).await
    }

    /// Takes this connection out of `room`.
    pub async fn leave(&self, room: &str) -> Result<bool> {
        self.handle.leave(self.conn, room).await
    }

    /// This connection's metadata value `key` (set by the connect hook or by handlers).
    pub async fn meta(&self, key: &str) -> Result<Option<Value>> {
        self.handle.meta(self.conn, key).await
    }

    /// Sets this connection's metadata value `key`.
    pub async fn set_meta(&self, key: &str, value: impl Serialize) -> Result<()> {
        self.handle.set_meta(self.conn, key, value).await
    }
}

/// What an `on_disconnect` hook gets.
pub struct Disconnect<R: Runtime> {
    /// A handle to the hub.
    pub handle: Handle<R>,
    /// The connection that closed.
    pub conn: ConnId,
    /// Its close code.
    pub code: CloseCode,
    /// The close reason.
    pub reason: String,
}
