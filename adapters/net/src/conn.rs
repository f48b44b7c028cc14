//! One connection's task: a reader that turns WebSocket messages into hub input, and a
//! writer that sends what the hub hands out and reports it written (the core's backpressure
//! depends on that report), both over one async-tungstenite stream they take turns on.
//!
//! The task ends when the writer does: after the hub's close (close frame sent, then up to
//! `close_delay` for the peer's answer), or once the hub has forgotten the connection (peer
//! close, transport error), or when a write fails or times out.

use std::future::{pending, poll_fn};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_channel::Sender;
use async_tungstenite::WebSocketStream;
use futures_lite::future::{or, poll_once};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt, Stream};
use futures_util::Sink;
use tidings_core::{Chunk, CloseCode, ConnId, Frame, Input, Text};
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::frame::coding::{Control as ControlCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, FrameHeader};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::driver::{Control, Opened};
use crate::link::{Burst, Link, Taken};
use crate::reports::Reports;
use crate::wakes::RELAYED;
use crate::Runtime;

/// How a connection's socket is run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnOptions {
    /// tungstenite's buffers and limits.
    pub ws: WebSocketConfig,
    /// A write (a burst of frames and its flush) that takes longer fails the connection.
    pub write_timeout: Duration,
    /// After the close frame, how long to wait for the peer's before dropping the socket.
    pub close_delay: Duration,
}

/// Counts running connection tasks, so shutdown can wait for the last one.
#[derive(Default)]
pub(crate) struct TaskCount {
    live: AtomicUsize,
    ended: event_listener::Event,
}

impl TaskCount {
    pub fn enter(self: &Arc<Self>) -> TaskGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.clone())
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Completes once no connection task is running.
    pub async fn idle(&self) {
        loop {
            let listener = self.ended.listen();
            if self.live() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Held by a running connection task.
pub(crate) struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify(usize::MAX);
    }
}

/// A connection task's ends: its id, its link (what the hub hands its writer, and its
/// reading gate), the channel for what it reads, and where its writer reports.
pub(crate) struct ConnEnds {
    pub conn: ConnId,
    pub link: Arc<Link>,
    pub inbound: Sender<Input>,
    pub reports: Arc<Reports>,
    /// Not used, only held: the hub task runs while a connection or a handle holds one.
    pub control: Sender<Control>,
}

impl ConnEnds {
    pub fn new(opened: Opened, inbound: Sender<Input>, control: Sender<Control>) -> Self {
        ConnEnds {
            conn: opened.conn,
            link: opened.link,
            inbound,
            reports: opened.reports,
            control,
        }
    }
}

/// The connection's stream, which its reader and writer (two futures of one task) take
/// turns on, each holding the lock only within one poll, never across an await: the
/// lock is never contended.
///
/// async-tungstenite's own `split` locks a mutex for every `poll_ready` and `start_send`:
/// those two lock round trips per frame were about 7 % of the server's CPU in the open-loop
/// fan-out (perf); a burst here is fed under one lock per poll.
struct Shared<S>(Mutex<Socket<S>>);

struct Socket<S> {
    ws: WebSocketStream<S>,
    /// The peer's close frame was read: tungstenite owes (or has sent) the echo, after which
    /// nothing more may be written.
    peer_closed: bool,
    /// A ping or a close was read, so tungstenite owes (or owed) a pong or the close's echo,
    /// which it writes from within a read, may have written in part, or may still hold (a
    /// read whose write would block keeps it for a later read, which may never come): the
    /// next write that starts between frames flushes it first. Only then: a flush through
    /// async-tungstenite registers two wakers, 3 % of the server's CPU when paced (perf).
    owes: bool,
    /// A burst's write stopped inside a frame (the socket took part of it). tungstenite
    /// writes the pongs it owes from within a read, so the reader waits (here) for the
    /// frame's end: a pong in the middle of a frame would corrupt the stream.
    mid_frame: Option<Option<Waker>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Writes `bytes` (whole frames) from `at` on, as far as the socket takes them now;
    /// before the first byte (`at` 0: between frames), what tungstenite owes.
    fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        at: &mut usize,
        written: &AtomicUsize,
    ) -> Poll<Result<(), tungstenite::Error>> {
        // What tungstenite owes goes out even after the peer's close: its echo is one.
        if *at == 0 && self.owes {
            ready!(Pin::new(&mut self.ws).poll_flush(cx))?;
            self.owes = false;
        }
        if self.peer_closed {
            return Poll::Ready(Err(ProtocolError::SendAfterClosing.into()));
        }
        let socket = self.ws.get_mut();
        while *at < bytes.len() {
            match Pin::new(&mut *socket).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => {
                    let zero = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Poll::Ready(Err(zero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    *at += n;
                    written.fetch_add(1, Ordering::Relaxed);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    if *at > 0 && self.mid_frame.is_none() {
                        self.mid_frame = Some(None);
                    }
                    return Poll::Pending;
                }
            }
        }
        if let Some(Some(reader)) = self.mid_frame.take() {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }
}

/// Bytes of encoded frames gathered before one write to the socket. A writer waiting on a
/// full socket holds what it gathered, so with the small send buffers of
/// [`crate::Builder::send_buffer`] a burst to 1,000 members held a writer's buffer each:
/// with 32 KiB send buffers, the server's peak RSS in the open-loop burst was 74-98 MiB at
/// 64 KiB, 44-47 MiB at 16 KiB and 33-37 MiB at 8 KiB, whose smaller writes cost more CPU
/// per delivery (BENCHMARKS.md, "Socket memory in a burst").
const WRITE_AT: usize = 16 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        Shared(Mutex::new(Socket {
            ws,
            peer_closed: false,
            owes: false,
            mid_frame: None,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Socket<S>> {
        // Poisoned only if tungstenite panicked mid-call; the stream then fails its next
        // call with an error, which ends the connection.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, tungstenite::Error>>> {
        let mut stream = self.lock();
        if let Some(reader) = &mut stream.mid_frame {
            *reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let next = Pin::new(&mut stream.ws).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(Message::Close(_)))) => {
                stream.peer_closed = true;
                stream.owes = true;
            }
            Poll::Ready(Some(Ok(Message::Ping(_)))) => stream.owes = true,
            _ => {}
        }
        next
    }

    /// Writes the frames of `burst` to the socket, and gives back the emptied `Vec` (its
    /// allocation serves a later hand-out). `written` counts the socket's writes so far
    /// (the write timeout watches it move).
    ///
    /// The frames are encoded here, with tungstenite's frame header, and written to the
    /// socket in writes of about [`WRITE_AT`] bytes, not fed to tungstenite one message at a
    /// time: a run a room's members share is encoded once for all of them (see
    /// [`Chunk::encode`]), and a burst costs a few large writes. tungstenite still writes
    /// what it owes itself (pongs, the close), flushed between two frames (if a ping or a
    /// close was read since the last flush) so frames never interleave; once the peer's
    /// close was read, nothing more is written, as tungstenite would refuse.
    ///
    /// `from` is how much of a one-publication burst [`Shared::poll_write_now`] wrote
    /// already (0 for any other burst).
    async fn write_burst(
        &self,
        burst: Burst,
        from: usize,
        written: &AtomicUsize,
    ) -> Result<Vec<Chunk>, tungstenite::Error> {
        // One publication of a room (a paced fan-out's every burst): its shared wire bytes
        // go to the socket as they are, with no buffer to fill, from where
        // `poll_write_now` stopped.
        if let Some(wire) = one_publication(&burst) {
            self.write_all(wire, from, written).await?;
            return Ok(burst.into_spare());
        }
        let mut out = Vec::new();
        // In a block of its own: the iterator borrows `burst`, which `into_spare` takes.
        {
            let mut chunks = burst.chunks();
            loop {
                for chunk in chunks.by_ref() {
                    chunk.encode(encode, &mut out);
                    if out.len() >= WRITE_AT {
                        break;
                    }
                }
                if out.is_empty() {
                    break;
                }
                self.write_all(&out, 0, written).await?;
                out.clear();
            }
        }
        // No flush after: the bytes went to the socket itself, past tungstenite's buffer,
        // and a TCP socket's flush does nothing.
        Ok(burst.into_spare())
    }

    /// Writes `bytes` (whole frames) to the socket, from `from` on (what an earlier write
    /// took). Until the last byte is taken, a write that stopped inside them holds the
    /// reader back (see [`Socket::mid_frame`]).
    async fn write_all(
        &self,
        bytes: &[u8],
        from: usize,
        written: &AtomicUsize,
    ) -> Result<(), tungstenite::Error> {
        let mut at = from;
        poll_fn(|cx| self.lock().poll_write_from(cx, bytes, &mut at, written)).await
    }

    /// Writes one publication's `wire` bytes (after what tungstenite owes) in this one poll
    /// if the socket takes them all; `at` says how far it got otherwise (`Pending`: the
    /// rest is for [`Shared::write_burst`], from `at`).
    fn poll_write_now(
        &self,
        cx: &mut Context<'_>,
        wire: &[u8],
        at: &mut usize,
    ) -> Poll<Result<(), tungstenite::Error>> {
        self.lock()
            .poll_write_from(cx, wire, at, &AtomicUsize::new(0))
    }

    /// Writes one message and flushes.
    async fn send(&self, message: Message) -> Result<(), tungstenite::Error> {
        let mut message = Some(message);
        poll_fn(|cx| {
            let mut stream = self.lock();
            let mut ws = Pin::new(&mut stream.ws);
            if message.is_some() {
                match ws.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                if let Some(message) = message.take() {
                    ws.as_mut().start_send(message)?;
                }
            }
            ws.poll_flush(cx)
        })
        .await
    }
}

/// The wire bytes of a burst that is one publication of a room (a paced fan-out's every
/// burst), shared with the room's other writers; `None` for any other burst.
fn one_publication(burst: &Burst) -> Option<&[u8]> {
    Some(burst.only()?.wire(encode)?)
}

/// Appends `frame` to `out` as it goes on the wire from a server: tungstenite's header for
/// one final, unmasked frame of its kind, then the payload.
fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let (opcode, payload): (OpCode, &[u8]) = match frame {
        Frame::Text(text) => (OpCode::Data(Data::Text), text.as_bytes()),
        Frame::Binary(bytes) => (OpCode::Data(Data::Binary), bytes),
        Frame::Ping(bytes) => (OpCode::Control(ControlCode::Ping), bytes),
        Frame::Pong(bytes) => (OpCode::Control(ControlCode::Pong), bytes),
    };
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Formatting into a `Vec` cannot fail: `Vec`'s `io::Write` never does.
    let _ = header.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Runs a connection over `ws` until it ends.
///
/// A plain fn that builds the task's state before its future: an async fn keeps a slot
/// for each of its arguments for its whole life, beside what they were moved into (the
/// socket, 400 bytes, twice), and that state is most of an idle connection's memory.
pub(crate) fn run<R, S>(
    rt: R,
    ws: WebSocketStream<S>,
    ends: ConnEnds,
    options: ConnOptions,
    held: impl Send + 'static,
) -> impl std::future::Future<Output = ()>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = Shared::new(ws);
    let ConnEnds {
        conn,
        link,
        inbound,
        reports,
        control,
    } = ends;
    let deadlines = Deadlines {
        write_timeout: options.write_timeout,
        close_delay: options.close_delay,
    };
    async move {
        // Dropped when the connection ends: its task count's guard, its address's claim, its
        // hold on the hub task.
        let _held = (held, control);
        // Set when the reader has ended. Reader and writer are polled by one `or` in one
        // task, the reader first, so the writer sees the flag in the same poll that set it.
        let reader_ended = AtomicBool::new(false);
        let reader = pin!(async {
            read(&ws, conn, &link, &inbound).await;
            reader_ended.store(true, Ordering::Release);
            pending::<()>().await
        });
        let reader = WokenOnly::new(reader);
        let to_hub = ToHub {
            conn,
            inbound: &inbound,
            reports: &reports,
        };
        let writer = write(&rt, &ws, &link, to_hub, deadlines, &reader_ended);
        or(reader, writer).await;
    }
}

/// What a connection's writer needs of its [`ConnOptions`].
#[derive(Clone, Copy)]
struct Deadlines {
    /// See [`ConnOptions::write_timeout`].
    write_timeout: Duration,
    /// See [`ConnOptions::close_delay`].
    close_delay: Duration,
}

/// A future polled only once its own waker has fired (and on its first poll), however often
/// the task that holds it is woken for something else.
///
/// The connection's reader and writer share a task, and `or` polls both whenever either is
/// woken. A poll of the reader tries a `recv` on the socket (async-io reads first and waits
/// for readiness only when told "would block"), so a writer woken for every delivery cost
/// a futile `recv` syscall per delivery, 6 % of the server's CPU when paced (perf).
struct WokenOnly<F> {
    inner: F,
    flag: Arc<WakeFlag>,
    /// The waker `inner` is polled with: it sets the flag and wakes the task.
    waker: std::task::Waker,
}

/// Whether a [`WokenOnly`]'s future was woken since its last poll, and the task to wake.
struct WakeFlag {
    woken: AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: std::future::Future + Unpin> WokenOnly<F> {
    fn new(inner: F) -> Self {
        let flag = Arc::new(WakeFlag {
            // The first poll runs the future.
            woken: AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        WokenOnly {
            inner,
            waker: flag.clone().into(),
            flag,
        }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake after the read finds this task.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

/// Feeds every message to the hub until the stream ends or fails, reading only while the
/// link's reading gate is open.
async fn read<S>(ws: &Shared<S>, conn: ConnId, link: &Link, inbound: &Sender<Input>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut closed = false;
    loop {
        link.opened().await;
        let Some(item) = poll_fn(|cx| ws.poll_next(cx)).await else {
            break;
        };
        let input = match item {
            Ok(Message::Text(text)) => match Text::from_utf8(text.into()) {
                Ok(text) => Input::Frame {
                    conn,
                    frame: Frame::Text(text),
                },
                Err(_) => violation(conn, CloseCode::INVALID_PAYLOAD, "text is not UTF-8"),
            },
            Ok(Message::Binary(bytes)) => Input::Frame {
                conn,
                frame: Frame::Binary(bytes),
            },
            Ok(Message::Ping(bytes)) => Input::Frame {
                conn,
                frame: Frame::Ping(bytes),
            },
            Ok(Message::Pong(bytes)) => Input::Frame {
                conn,
                frame: Frame::Pong(bytes),
            },
            Ok(Message::Close(frame)) => {
                // tungstenite queues the echo; reading on sends it and ends the stream.
                closed = true;
                let (code, reason) = match frame {
                    Some(f) => (Some(CloseCode(f.code.into())), f.reason.to_string()),
                    None => (None, String::new()),
                };
                Input::PeerClosed { conn, code, reason }
            }
            Ok(Message::Frame(_)) => continue,
            Err(error) => {
                if !closed {
                    let _ = inbound.send(classify(conn, error)).await;
                }
                return;
            }
        };
        if inbound.send(input).await.is_err() {
            return;
        }
    }
    if !closed {
        let _ = inbound.send(vanished(conn)).await;
    }
}

/// The stream ended without a close frame: 1006, as RFC 6455 (7.1.5) names it.
fn vanished(conn: ConnId) -> Input {
    let reason = "connection closed without a close frame".to_owned();
    Input::PeerClosed {
        conn,
        code: Some(CloseCode::ABNORMAL),
        reason,
    }
}

fn violation(conn: ConnId, code: CloseCode, reason: impl Into<String>) -> Input {
    Input::Violation {
        conn,
        code,
        reason: reason.into(),
    }
}

/// What a read error means for the connection: the peer broke the protocol (a close code
/// for it), the stream ended, or the transport failed.
fn classify(conn: ConnId, error: tungstenite::Error) -> Input {
    use tungstenite::Error as E;
    match error {
        E::Capacity(CapacityError::MessageTooLong { max_size, .. }) => violation(
            conn,
            CloseCode::TOO_BIG,
            format!("message too big (limit {max_size} bytes)"),
        ),
        E::Capacity(e) => violation(conn, CloseCode::TOO_BIG, e.to_string()),
        E::Utf8(_) => violation(conn, CloseCode::INVALID_PAYLOAD, "text is not UTF-8"),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | E::ConnectionClosed
        | E::AlreadyClosed => vanished(conn),
        E::Protocol(e) => violation(conn, CloseCode::PROTOCOL_ERROR, e.to_string()),
        E::AttackAttempt => violation(conn, CloseCode::POLICY, "attack attempt"),
        e => transport_error(conn, e.to_string()),
    }
}

fn transport_error(conn: ConnId, error: String) -> Input {
    Input::TransportError { conn, error }
}

/// How the writer reports to the hub.
struct ToHub<'a> {
    conn: ConnId,
    inbound: &'a Sender<Input>,
    reports: &'a Reports,
}

/// Writes what the hub hands out, in bursts with one flush, and reports each burst written.
async fn write<R, S>(
    rt: &R,
    ws: &Shared<S>,
    link: &Link,
    to_hub: ToHub<'_>,
    deadlines: Deadlines,
    reader_ended: &AtomicBool,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ToHub {
        conn,
        inbound,
        reports,
    } = to_hub;
    // Frames written since this writer last woke the hub (see `reports.rs`).
    let mut unannounced = 0;
    let linger = |until: Instant| async move {
        // The reader ends when the peer's close arrives (or the stream does).
        or(
            async {
                poll_fn(|_| match reader_ended.load(Ordering::Acquire) {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                })
                .await;
            },
            rt.sleep_until(until),
        )
        .await;
    };
    loop {
        // At most `write_window` frames are ever handed out, so a burst is bounded.
        let Some(Taken { burst, mut close }) = link.take().await else {
            // The hub forgot the connection (the peer closed, or the transport failed): let
            // the reader send the close echo, then drop the socket.
            return linger(Instant::now() + deadlines.close_delay).await;
        };
        // Other writers of the same round of hand-outs go first (see `wakes.rs`).
        reports.wakes.wake_some(RELAYED);
        if !burst.is_empty() {
            let frames = burst.chunks().map(Chunk::len).sum();
            // A burst that is one publication (a paced fan-out's every burst) most often
            // goes out whole in its first poll, and so needs no timer, no watch for a close
            // and no box; `from` says how far it got otherwise.
            let mut from = 0;
            let at_once = match one_publication(&burst) {
                Some(wire) => poll_once(poll_fn(|cx| ws.poll_write_now(cx, wire, &mut from))).await,
                None => None,
            };
            let wrote = match at_once {
                Some(Ok(())) => Wrote::Done(burst.into_spare()),
                Some(Err(e)) => Wrote::Failed(e),
                // Boxed: a burst's state is most of what a writer ever holds, and an idle
                // connection, waiting for its next hand-out, holds none of it.
                None => Box::pin(write_burst_within(rt, ws, link, burst, from, deadlines)).await,
            };
            match wrote {
                Wrote::Done(spare) => {
                    // The emptied `Vec` goes back with the report, for a later hand-out.
                    reports.report(conn, frames, spare, &mut unannounced);
                }
                Wrote::Failed(e) => {
                    let _ = inbound.send(transport_error(conn, e.to_string())).await;
                    return;
                }
                Wrote::TimedOut => {
                    // A reader that takes nothing is a slow consumer: closed with 4000 (the
                    // close frame cannot be written, so the socket is dropped).
                    let reason = format!(
                        "the socket took nothing for {} ms: the client reads too slowly",
                        deadlines.write_timeout.as_millis()
                    );
                    let stalled = violation(conn, CloseCode::SLOW_CONSUMER, reason);
                    let _ = inbound.send(stalled).await;
                    return;
                }
                Wrote::Closed {
                    code,
                    reason,
                    flushed,
                } => {
                    if !flushed {
                        return;
                    }
                    close = Some((code, reason));
                }
            }
        }
        if let Some((code, reason)) = close {
            let until = Instant::now() + deadlines.close_delay;
            // Boxed: a path taken once, whose state would otherwise size every
            // connection's task for its whole life.
            Box::pin(send_close(rt, ws, code, reason, until)).await;
            return linger(until).await;
        }
    }
}

/// How the write of one burst ended.
enum Wrote {
    /// Every frame went out; the burst's emptied `Vec`.
    Done(Vec<Chunk>),
    Failed(tungstenite::Error),
    /// A whole write timeout passed in which the socket took not one frame.
    TimedOut,
    /// The hub closed the connection while the write was stuck; `flushed` if the rest of
    /// it and what was handed out before the close went out within the close delay, so
    /// the close frame follows.
    Closed {
        code: CloseCode,
        reason: String,
        flushed: bool,
    },
}

/// Writes `burst` unless the socket stalls for a write timeout or the hub closes the
/// connection meanwhile.
async fn write_burst_within<R, S>(
    rt: &R,
    ws: &Shared<S>,
    link: &Link,
    burst: Burst,
    from: usize,
    deadlines: Deadlines,
) -> Wrote
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Frames the socket has taken so far: the write timeout counts from the last.
    let progress = AtomicUsize::new(0);
    let progress = &progress;
    let mut writing = pin!(ws.write_burst(burst, from, progress));
    /// How the race below ended: the write's own end, or the hub's close with the frames
    /// handed out before it, which the stuck write then has the close delay to finish.
    enum Outcome {
        Ended(Wrote),
        Closing(CloseCode, String, Burst),
    }
    // Stalled: a whole `write_timeout` in which the socket took not one frame.
    let timeout = async {
        let mut seen = 0;
        loop {
            rt.sleep_until(Instant::now() + deadlines.write_timeout)
                .await;
            let now = progress.load(Ordering::Relaxed);
            if now == seen {
                return Outcome::Ended(Wrote::TimedOut);
            }
            seen = now;
        }
    };
    // While a write is stuck, the hub may give up on this peer (a slow consumer): notice
    // its close rather than wait out the write timeout. What it hands out meanwhile waits
    // in the link.
    let watch = async {
        let (code, reason, rest) = link.closing().await;
        Outcome::Closing(code, reason, rest)
    };
    let wrote = async {
        Outcome::Ended(match (&mut writing).await {
            Ok(spare) => Wrote::Done(spare),
            Err(e) => Wrote::Failed(e),
        })
    };
    match or(wrote, timeout.or(watch)).await {
        Outcome::Ended(wrote) => wrote,
        Outcome::Closing(code, reason, rest) => {
            // The hub has already forgotten the connection. Give the stuck write the close
            // delay to finish, then the frames handed out after it and before the close
            // (the answers a flushing close waits for); the close frame follows if they
            // all went out.
            let sleep = rt.sleep_until(Instant::now() + deadlines.close_delay);
            let flushed = async {
                (&mut writing).await.is_ok()
                    && (rest.is_empty()
                        || ws.write_burst(rest, 0, &AtomicUsize::new(0)).await.is_ok())
            };
            let flushed = or(flushed, async {
                sleep.await;
                false
            })
            .await;
            Wrote::Closed {
                code,
                reason,
                flushed,
            }
        }
    }
}

/// Sends a close frame if the code may be sent (1006 may not), giving up at `until`.
async fn send_close<R, S>(rt: &R, ws: &Shared<S>, code: CloseCode, reason: String, until: Instant)
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !code.is_sendable() {
        return;
    }
    let frame = CloseFrame {
        code: code.0.into(),
        reason: reason.into(),
    };
    let send = async {
        let _ = ws.send(Message::Close(Some(frame))).await;
    };
    or(send, rt.sleep_until(until)).await;
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::task::Waker;

    use super::*;

    #[test]
    fn a_woken_only_future_is_polled_first_and_then_only_after_its_own_wake() {
        let polls = Cell::new(0);
        let own_waker: RefCell<Option<Waker>> = RefCell::new(None);
        let inner = pin!(poll_fn(|cx| {
            polls.set(polls.get() + 1);
            *own_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }));
        let mut future = WokenOnly::new(inner);
        let (task, task_waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&task_waker);

        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 1, "the first poll runs the future");
        // The task is polled again for something else (the writer): the future is not.
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 1);

        // Its own waker wakes the task, and the next poll reaches the future.
        let own = own_waker
            .borrow_mut()
            .take()
            .expect("the future kept its waker");
        own.wake_by_ref();
        assert_eq!(task.count(), 1, "the task was woken");
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 2);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 2);
    }

    /// A socket in memory: reads give `input` and then would block; writes take bytes
    /// until `output` holds `room` of them, and then would block.
    struct Pipe {
        input: Vec<u8>,
        read_at: usize,
        output: Vec<u8>,
        room: usize,
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let rest = &this.input[this.read_at..];
            if rest.is_empty() {
                return Poll::Pending;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            this.read_at += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.room.saturating_sub(this.output.len()));
            if n == 0 {
                return Poll::Pending;
            }
            this.output.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A server's stream over a [`Pipe`] that reads `input` and takes `room` bytes.
    fn over_pipe(input: Vec<u8>, room: usize) -> Shared<Pipe> {
        let pipe = Pipe {
            input,
            read_at: 0,
            output: Vec::new(),
            room,
        };
        Shared::new(futures_lite::future::block_on(
            WebSocketStream::from_raw_socket(pipe, tungstenite::protocol::Role::Server, None),
        ))
    }

    /// A client's masked control frame of `opcode` with a payload under 126 bytes.
    fn client_control(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let length = u8::try_from(payload.len()).expect("a short payload");
        let mut frame = vec![0x80 | opcode, 0x80 | length];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    /// A client's masked ping "hello".
    fn client_ping() -> Vec<u8> {
        client_control(0x9, b"hello")
    }

    /// The pong of [`client_ping`], then the text frame "after", as the server writes them.
    fn pong_then_after() -> Vec<u8> {
        let mut expected = vec![0x8A, 5];
        expected.extend_from_slice(b"hello");
        expected.extend_from_slice(&[0x81, 5]);
        expected.extend_from_slice(b"after");
        expected
    }

    /// A burst of the one text frame "after".
    fn burst_after() -> Burst {
        let mut burst = Burst::default();
        burst.add(&mut vec![Chunk::from(Frame::Text(
            "after".to_owned().into(),
        ))]);
        burst
    }

    #[test]
    fn a_pong_owed_while_a_burst_waits_goes_out_before_the_burst() {
        // The socket takes nothing: the burst waits before its first byte.
        let shared = over_pipe(client_ping(), 0);
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        let written = AtomicUsize::new(0);
        let mut write = pin!(shared.write_burst(burst_after(), 0, &written));
        assert!(write.as_mut().poll(&mut cx).is_pending());
        assert!(shared.lock().mid_frame.is_none(), "between frames");
        // Meanwhile the reader reads a ping; tungstenite cannot write its pong yet and
        // keeps it, and no read may come again (the client waits for the pong).
        assert!(matches!(
            shared.poll_next(&mut cx),
            Poll::Ready(Some(Ok(Message::Ping(_))))
        ));
        assert!(shared.poll_next(&mut cx).is_pending());

        shared.lock().ws.get_mut().room = usize::MAX;
        assert!(matches!(write.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
        assert_eq!(
            shared.lock().ws.get_ref().output,
            pong_then_after(),
            "the pong, then the burst's frame"
        );
    }

    #[test]
    fn the_echo_of_a_peer_s_close_goes_out_though_the_burst_after_it_may_not() {
        // A client's close frame, code 1000 and no reason. The socket takes nothing yet:
        // tungstenite cannot write the echo from the read.
        let shared = over_pipe(client_control(0x8, &[0x03, 0xE8]), 0);
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            shared.poll_next(&mut cx),
            Poll::Ready(Some(Ok(Message::Close(_))))
        ));

        shared.lock().ws.get_mut().room = usize::MAX;
        let written = AtomicUsize::new(0);
        let wrote = futures_lite::future::block_on(shared.write_burst(burst_after(), 0, &written));
        assert!(wrote.is_err(), "nothing may follow the peer's close");
        assert_eq!(
            shared.lock().ws.get_ref().output,
            [0x88, 2, 0x03, 0xE8],
            "the echo went out, and only the echo"
        );
    }

    #[test]
    fn a_pong_tungstenite_wrote_in_part_is_finished_before_a_burst() {
        let shared = over_pipe(client_ping(), 3);
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            shared.poll_next(&mut cx),
            Poll::Ready(Some(Ok(Message::Ping(_))))
        ));
        // The next read writes the pong first; the socket takes 3 of its 7 bytes.
        assert!(shared.poll_next(&mut cx).is_pending());
        assert_eq!(shared.lock().ws.get_ref().output, [0x8A, 5, b'h']);

        shared.lock().ws.get_mut().room = usize::MAX;
        let written = AtomicUsize::new(0);
        let wrote = futures_lite::future::block_on(shared.write_burst(burst_after(), 0, &written));
        assert!(wrote.is_ok());
        assert_eq!(
            shared.lock().ws.get_ref().output,
            pong_then_after(),
            "the pong whole, then the burst's frame"
        );
    }

    #[test]
    fn a_publication_the_socket_took_in_part_is_finished_from_where_it_stopped() {
        // One publication of a room, as the hub hands it out.
        let mut hub = tidings_core::Hub::new(tidings_core::Config::default()).expect("hub");
        let now = Instant::now();
        // Two members: a room's publication is shared by its members' queues.
        let mut members = Vec::new();
        for _ in 0..2 {
            let conn = hub
                .open(now, tidings_core::ConnectionInfo::new("/"))
                .expect("open");
            hub.join(conn, "room").expect("join");
            members.push(conn);
        }
        let mut chunks = Vec::new();
        while hub.poll_transmits(&mut chunks).is_some() || hub.poll_output().is_some() {}
        let message = tidings_core::Message::text("said", "hello, room");
        let delivery = hub
            .publish(now, tidings_core::Target::room("/", "room"), message)
            .expect("publish");
        assert_eq!(delivery.queued, 2);
        chunks.clear();
        assert_eq!(hub.poll_transmits(&mut chunks), Some(members[0]));
        let mut burst = Burst::default();
        burst.add(&mut chunks);
        let wire = one_publication(&burst).expect("one publication").to_vec();

        let shared = over_pipe(Vec::new(), 3);
        let (_, waker) = crate::CountedWakes::waker();
        let mut cx = Context::from_waker(&waker);
        let mut from = 0;
        assert!(shared
            .poll_write_now(&mut cx, &wire, &mut from)
            .is_pending());
        assert_eq!(from, 3, "the socket took 3 bytes");
        assert!(shared.lock().mid_frame.is_some(), "the reader waits");

        shared.lock().ws.get_mut().room = usize::MAX;
        let written = AtomicUsize::new(0);
        let wrote = futures_lite::future::block_on(shared.write_burst(burst, from, &written));
        assert!(wrote.is_ok());
        let socket = shared.lock();
        assert_eq!(socket.ws.get_ref().output, wire.to_vec(), "once, whole");
        assert!(socket.mid_frame.is_none(), "the reader may go on");
    }
}
