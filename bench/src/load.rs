//! The load generator's two scenarios, run on one thread (a `LocalExecutor`) so that the
//! other core is the server's.
//!
//! - `fanout`: S subscribers in one room; a publisher sends M messages of P bytes, each
//!   carrying its sequence number and send time. By default it is open-loop, as a real
//!   publisher is: it sends as fast as its socket takes them and never waits for deliveries
//!   (a closed loop keeps the server's queues short and hides what a burst does). With a
//!   `window`, at most that many messages are in flight (published and not yet delivered to
//!   everyone); a `rate` paces the publisher below saturation.
//! - `idle`: C connections open and (on tidings) subscribed, then silent; the server's memory
//!   and CPU are what is measured. Client sockets are bound round-robin to 127.0.0.2 and up,
//!   so more than one address's ephemeral ports are available.
//! - `recovery` (tidings only): C clients in 100 rooms that keep history note where they
//!   stand, then all drop; M publications go to each room meanwhile; then all come back at
//!   once and subscribe from their positions. Measured: the time from the first reconnect
//!   until every client has its M missed publications, and the server's memory.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use async_lock::Semaphore;
use async_tungstenite::WebSocketStream;
use futures_lite::StreamExt;
use memchr::memmem;
use smol::{Async, LocalExecutor, Timer};
use socket2::{Domain, Socket, Type};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::procfs::TcpMemoryWatch;
use crate::server::{Kind, CHANNEL};
use crate::stats::{per_publish, quantile, Delivery, PerPublish};

type Ws = WebSocketStream<Async<TcpStream>>;

/// Handshakes in progress at once: under the server's pending-handshake cap and its listen
/// backlog.
const CONCURRENT_HANDSHAKES: usize = 256;

/// How long without a delivery before a run gives up on the rest.
const STALL: Duration = Duration::from_secs(10);

/// Where to connect, and from which source addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's WebSocket URL.
    pub url: String,
    /// The server's socket address.
    pub addr: SocketAddr,
    /// What the server speaks.
    pub kind: Kind,
    /// Source addresses used round-robin: 127.0.0.2 .. 127.0.0.(1 + sources).
    pub sources: u8,
    /// A second node of the same cluster: odd-numbered clients connect to it.
    pub second: Option<(String, SocketAddr)>,
}

impl Target {
    fn source(&self, i: usize) -> IpAddr {
        let last = 2 + (i % usize::from(self.sources.max(1))) as u8;
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Opens WebSocket `i`, bound to its source address; on tidings, subscribes it to
    /// `channel` and waits for the answer.
    async fn open(&self, i: usize, channel: Option<&str>) -> io::Result<Ws> {
        let mut ws = self.connect(i).await?;
        if let (true, Some(channel)) = (self.kind.is_tidings(), channel) {
            let subscribe = format!(r#"{{"type":"subscribe","channel":"{channel}","id":"s"}}"#);
            subscribed(&mut ws, &subscribe).await?;
        }
        Ok(ws)
    }

    /// Opens WebSocket `i`, bound to its source address.
    async fn connect(&self, i: usize) -> io::Result<Ws> {
        let (url, to) = match &self.second {
            Some((url, addr)) if i % 2 == 1 => (url.as_str(), *addr),
            _ => (self.url.as_str(), self.addr),
        };
        let from = self.source(i);
        let tcp = smol::unblock(move || -> io::Result<TcpStream> {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(from, 0).into())?;
            socket.connect(&to.into())?;
            socket.set_tcp_nodelay(true)?;
            Ok(socket.into())
        })
        .await?;
        // A small read buffer: 10,000 idle clients should not cost the machine gigabytes.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let (ws, _) =
            async_tungstenite::client_async_with_config(url, Async::new(tcp)?, Some(config))
                .await
                .map_err(io::Error::other)?;
        Ok(ws)
    }
}

/// Sends `subscribe` and reads until its `subscribed` answer, which it returns parsed.
async fn subscribed(ws: &mut Ws, subscribe: &str) -> io::Result<serde_json::Value> {
    ws.send(Message::text(subscribe))
        .await
        .map_err(io::Error::other)?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"subscribed""#) => {
                return serde_json::from_str(t.as_str()).map_err(io::Error::other);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// The epoch in the frames the baselines relay with `--same-frames`: as long as tidings'.
const SAME_EPOCH: u64 = 4_503_599_627_370_495;

/// Nanoseconds since the load generator started: the clock of the payload timestamps.
fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The fan-out workload.
#[derive(Clone, Copy, Debug)]
pub struct Fanout {
    /// Subscribers in the room.
    pub subscribers: usize,
    /// Messages published.
    pub messages: usize,
    /// Payload bytes of each message.
    pub size: usize,
    /// Messages in flight at most; 0 for none (open loop).
    pub window: usize,
    /// Messages per second, or 0 for as fast as the window allows.
    pub rate: u64,
    /// The baselines' publisher sends the very frame tidings delivers for a publish
    /// (`{"type":"event",...}`), which they relay as is: every server then delivers the same
    /// bytes and the generator reads and parses the same frames. Without it the baselines
    /// deliver the bare payload, about 30 % fewer bytes.
    pub same_frames: bool,
}

/// What one fan-out run measured.
#[derive(Clone, Debug)]
pub struct FanoutResult {
    /// Deliveries that arrived (warm-up excluded).
    pub received: u64,
    /// `subscribers * messages`.
    pub expected: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Latency quantiles in microseconds: p50, p99, p99.9.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// The load generator's own CPU seconds from the first publish to the last delivery:
    /// near `elapsed`, the generator (one thread) is what limits the run.
    pub generator_cpu_seconds: f64,
    /// Text bytes per delivery, as the generator received them (frame headers not counted).
    pub bytes_per_delivery: f64,
    /// The kernel's memory in TCP socket buffers at its peak from the first publish to the
    /// last delivery, in KiB: bytes the server wrote and the generator had not read yet (both
    /// ends are on this machine). The kernel touches it afresh for each run, which is what
    /// most of a server's CPU in an open-loop burst goes to here (BENCHMARKS.md).
    pub peak_tcp_memory_kib: u64,
    /// What the deliveries say publish by publish, when they were kept (`--deliveries`).
    pub per_publish: Option<PerPublish>,
}

impl FanoutResult {
    /// Deliveries per second over `elapsed`.
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the subscribers share with the publisher (one thread: cells, no locks).
#[derive(Default)]
struct Tally {
    delivered: Cell<u64>,
    /// Text bytes of the deliveries counted.
    bytes: Cell<u64>,
    warmed: Cell<usize>,
    /// When the last delivery counted arrived, on `clock_ns`; 0 before the first.
    last_ns: Cell<u64>,
    latencies_ns: RefCell<Vec<u64>>,
    /// Every delivery as (publish, subscriber, latency in ns), kept only when asked
    /// (`--deliveries`): which publishes a tail comes from, and which readers.
    deliveries: Option<RefCell<Vec<Delivery>>>,
}

/// What precedes the payload in an `event` envelope. Found with `memchr`'s vectorised
/// search: `str::find` took 26 ns a frame to memmem's 5 (2026-12-03, 225-byte frames), a
/// cost the bare payload never pays, so the generator's own work weighed on the enveloped
/// servers' figures.
static DATA: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(br#""data":""#));

impl Tally {
    /// Records one text frame, an `event` envelope or a bare payload; returns whether it was
    /// the warm-up.
    fn record(&self, enveloped: bool, text: &str, subscriber: usize) -> bool {
        let payload = if enveloped {
            match DATA.find(text.as_bytes()) {
                // The needle is ASCII: the byte after a match starts a character.
                Some(at) => &text[at + DATA.needle().len()..],
                None => return false, // not a publish (a pong, say)
            }
        } else {
            text
        };
        if payload.starts_with('w') {
            return true;
        }
        let mut parts = payload.splitn(3, ':');
        let (Some(seq), Some(sent)) = (parts.next(), parts.next()) else {
            return false;
        };
        let Ok(sent) = sent.parse::<u64>() else {
            return false;
        };
        // One clock read a delivery (a read costs about 23 ns here): the latency and the
        // time of the last delivery both come from it.
        let now = clock_ns();
        self.delivered.set(self.delivered.get() + 1);
        self.bytes.set(self.bytes.get() + text.len() as u64);
        self.last_ns.set(now);
        let latency = now.saturating_sub(sent);
        self.latencies_ns.borrow_mut().push(latency);
        if let Some(deliveries) = &self.deliveries {
            let seq = seq.parse().unwrap_or(u32::MAX);
            deliveries
                .borrow_mut()
                .push((seq, subscriber as u32, latency));
        }
        false
    }
}

/// A payload of exactly `size` bytes (at least the header): `seq:sent_ns:` and padding.
fn payload(seq: usize, size: usize) -> String {
    let mut p = format!("{seq}:{}:", clock_ns());
    while p.len() < size {
        p.push('x');
    }
    p
}

/// Runs the fan-out workload against `target`; with `deliveries`, writes every delivery
/// there, one `publish subscriber latency_ns` line each (see [`Delivery`]).
pub fn fanout(target: &Target, w: Fanout, deliveries: Option<&Path>) -> io::Result<FanoutResult> {
    let ex = LocalExecutor::new();
    let tally = Rc::new(Tally {
        deliveries: deliveries.map(|_| RefCell::default()),
        ..Tally::default()
    });
    let mut result = smol::block_on(ex.run(fanout_on(&ex, target, w, &tally)))?;
    if let (Some(path), Some(kept)) = (deliveries, &tally.deliveries) {
        let kept = kept.take();
        result.per_publish = per_publish(&kept);
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        for (seq, subscriber, latency) in kept {
            writeln!(out, "{seq} {subscriber} {latency}")?;
        }
        out.flush()?;
    }
    Ok(result)
}

async fn fanout_on(
    ex: &LocalExecutor<'_>,
    target: &Target,
    w: Fanout,
    tally: &Rc<Tally>,
) -> io::Result<FanoutResult> {
    // How deliveries look: the tidings envelope, or the bare payload.
    let enveloped = target.kind.is_tidings() || w.same_frames;
    let failed = open_clients(
        ex,
        target,
        w.subscribers,
        |_| CHANNEL.into(),
        |i| {
            let (tally, mut warmed) = (tally.clone(), false);
            move |text: &str| {
                if tally.record(enveloped, text, i) && !warmed {
                    warmed = true;
                    tally.warmed.set(tally.warmed.get() + 1);
                }
            }
        },
    )
    .await;
    if let Some(e) = failed.into_iter().next() {
        return Err(e);
    }

    let publisher = target.open(w.subscribers, Some(CHANNEL)).await?;
    let (mut sender, mut receiver) = publisher.split();
    // The publisher is in the room on tidings and gets its own messages: read and drop them.
    ex.spawn(async move { while let Some(Ok(_)) = receiver.next().await {} })
        .detach();
    // The `seq`th message (0 for the warm-up) with payload `body`.
    let frame = |seq: usize, body: String| {
        if target.kind.is_tidings() {
            Message::text(format!(
                r#"{{"type":"publish","channel":"{CHANNEL}","event":"tick","data":"{body}"}}"#
            ))
        } else if w.same_frames {
            // What tidings delivers: its stream position (an offset, and an epoch that is a
            // random number of 16 digits) comes with every publication.
            Message::text(format!(
                r#"{{"type":"event","event":"tick","channel":"{CHANNEL}","offset":{seq},"epoch":{SAME_EPOCH},"data":"{body}"}}"#
            ))
        } else {
            Message::text(body)
        }
    };

    // Warm up until every subscriber has had a message: the baseline registers a socket
    // just after its handshake, so a connected client may not be a listening one yet.
    let deadline = Instant::now() + STALL;
    while tally.warmed.get() < w.subscribers {
        if Instant::now() > deadline {
            return Err(io::Error::other("subscribers never all got the warm-up"));
        }
        sender
            .send(frame(0, "w".into()))
            .await
            .map_err(io::Error::other)?;
        Timer::after(Duration::from_millis(20)).await;
    }

    let generator_before = crate::procfs::usage(std::process::id())?.cpu_seconds;
    let tcp_memory = TcpMemoryWatch::start();
    let start = Instant::now();
    let start_ns = clock_ns();
    let subscribers = w.subscribers as u64;
    for seq in 0..w.messages {
        let allowed = match w.window {
            0 => 0, // open loop: never wait for deliveries
            window => seq.saturating_sub(window) as u64 * subscribers,
        };
        let mut waited = Instant::now();
        let mut seen = tally.delivered.get();
        while tally.delivered.get() < allowed {
            Timer::after(Duration::from_micros(100)).await;
            if tally.delivered.get() != seen {
                (seen, waited) = (tally.delivered.get(), Instant::now());
            } else if waited.elapsed() > STALL {
                break;
            }
        }
        if w.rate > 0 {
            let at = start + Duration::from_secs_f64(seq as f64 / w.rate as f64);
            Timer::at(at).await;
        }
        sender
            .send(frame(seq + 1, payload(seq, w.size)))
            .await
            .map_err(io::Error::other)?;
    }

    let expected = subscribers * w.messages as u64;
    let mut seen = (tally.delivered.get(), Instant::now());
    while tally.delivered.get() < expected && seen.1.elapsed() < STALL {
        Timer::after(Duration::from_millis(1)).await;
        if tally.delivered.get() != seen.0 {
            seen = (tally.delivered.get(), Instant::now());
        }
    }
    let generator_cpu_seconds =
        crate::procfs::usage(std::process::id())?.cpu_seconds - generator_before;
    let peak_tcp_memory_kib = tcp_memory.stop();
    let _ = sender.close(None).await;

    let mut lat = tally.latencies_ns.take();
    lat.sort_unstable();
    let us = |q| quantile(&lat, q) as f64 / 1000.0;
    Ok(FanoutResult {
        received: tally.delivered.get(),
        expected,
        elapsed: Duration::from_nanos(tally.last_ns.get().saturating_sub(start_ns)),
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        generator_cpu_seconds,
        bytes_per_delivery: tally.bytes.get() as f64 / tally.delivered.get().max(1) as f64,
        peak_tcp_memory_kib,
        per_publish: None,
    })
}

/// Opens `connections` sockets (subscribed, on tidings, to one of 100 rooms), then runs
/// `measure(open)` while they stay open, answering pings; `open` is how many succeeded.
pub fn idle<F>(
    target: &Target,
    connections: usize,
    measure: impl FnOnce(usize) -> F,
) -> io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let room = |i| format!("room-{}", i % 100);
        let failed = open_clients(&ex, target, connections, room, |_| |_: &str| {}).await;
        for e in &failed {
            eprintln!("idle: a connection failed: {e}");
        }
        measure(connections - failed.len()).await;
        Ok(())
    }))
}

/// The recovery storm's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Clients, spread over 100 rooms.
    pub clients: usize,
    /// Publications each room gets while its clients are away: what each recovers.
    pub missed: usize,
}

/// What a recovery storm did.
#[derive(Debug)]
pub struct RecoveryResult {
    /// Clients that came back.
    pub reconnected: usize,
    /// Of which told `recovered: true`.
    pub recovered: usize,
    /// Missed publications received, over all clients.
    pub replayed: usize,
    /// From the first reconnect until the last client had all it missed.
    pub all_live: Duration,
}

/// The room of recovery client `i`: 100 rooms, which the bench servers keep history for.
fn storm_room(i: usize) -> String {
    format!("storm:{}", i % 100)
}

/// Runs the recovery storm against `target` (a tidings server keeping `storm:*` history).
/// `before` runs just before the clients come back; `between` once they are back and have
/// all they missed, before they close.
pub fn recovery<F>(
    target: &Target,
    r: Recovery,
    before: impl FnOnce(),
    between: impl FnOnce() -> F,
) -> io::Result<RecoveryResult>
where
    F: std::future::Future<Output = ()>,
{
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        // 1. Everyone subscribes and notes where it stands, then drops.
        let positions = Rc::new(RefCell::new(vec![None; r.clients]));
        let gate = Rc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
        let mut tasks = Vec::new();
        for i in 0..r.clients {
            let (target, gate, positions) = (target.clone(), gate.clone(), positions.clone());
            tasks.push(ex.spawn(async move {
                let permit = gate.acquire().await;
                let mut ws = target.connect(i).await?;
                let ask = format!(r#"{{"type":"subscribe","channel":"{}"}}"#, storm_room(i));
                let answer = subscribed(&mut ws, &ask).await?;
                drop(permit);
                let at = (answer["epoch"].as_u64(), answer["offset"].as_u64());
                positions.borrow_mut()[i] = match at {
                    (Some(epoch), Some(offset)) => Some((epoch, offset)),
                    _ => return Err(io::Error::other(format!("no position in {answer}"))),
                };
                ws.close(None).await.map_err(io::Error::other)
            }));
        }
        for task in tasks {
            task.await?;
        }
        // 2. A publisher in every room publishes `missed` to each, and waits for its own
        // copies: the server has taken them all.
        let mut publisher = target.connect(r.clients).await?;
        for room in 0..100 {
            let ask = format!(r#"{{"type":"subscribe","channel":"{}"}}"#, storm_room(room));
            subscribed(&mut publisher, &ask).await?;
        }
        for n in 0..r.missed {
            for room in 0..100 {
                let frame = format!(
                    r#"{{"type":"publish","channel":"{}","event":"missed","data":{n}}}"#,
                    storm_room(room)
                );
                publisher
                    .send(Message::text(frame))
                    .await
                    .map_err(io::Error::other)?;
            }
        }
        let mut echoed = 0;
        while echoed < 100 * r.missed {
            match publisher.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains(r#""event":"missed""#) => {
                    echoed += 1
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
        // 3. The storm: everyone back at once, each from its position.
        before();
        let started = Instant::now();
        let (done_tx, done) = async_channel::unbounded::<io::Result<(bool, usize)>>();
        let (release_tx, release) = async_channel::bounded::<()>(1);
        let positions = positions.take();
        let expected = positions.iter().flatten().count();
        for (i, at) in positions.into_iter().enumerate() {
            let Some((epoch, since)) = at else { continue };
            let (target, gate, done, release) = (
                target.clone(),
                gate.clone(),
                done_tx.clone(),
                release.clone(),
            );
            ex.spawn(async move {
                let back = async {
                    let permit = gate.acquire().await;
                    let mut ws = target.connect(i).await?;
                    drop(permit);
                    let ask = format!(
                        r#"{{"type":"subscribe","channel":"{}","since":{since},"epoch":{epoch}}}"#,
                        storm_room(i)
                    );
                    let answer = subscribed(&mut ws, &ask).await?;
                    let mut got = 0;
                    while got < r.missed {
                        match ws.next().await {
                            Some(Ok(Message::Text(t)))
                                if t.as_str().contains(r#""event":"missed""#) =>
                            {
                                got += 1
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(io::Error::other(e)),
                            None => return Err(io::ErrorKind::UnexpectedEof.into()),
                        }
                    }
                    Ok((answer["recovered"] == true, got, ws))
                };
                match back.await {
                    Ok((recovered, got, mut ws)) => {
                        let _ = done.send(Ok((recovered, got))).await;
                        let _ = release.recv().await;
                        let _ = ws.close(None).await;
                    }
                    Err(e) => drop(done.send(Err(e)).await),
                }
            })
            .detach();
        }
        drop(done_tx);
        let mut result = RecoveryResult {
            reconnected: 0,
            recovered: 0,
            replayed: 0,
            all_live: Duration::ZERO,
        };
        for _ in 0..expected {
            match done.recv().await.map_err(io::Error::other)? {
                Ok((recovered, got)) => {
                    result.reconnected += 1;
                    result.recovered += usize::from(recovered);
                    result.replayed += got;
                }
                Err(e) => eprintln!("recovery: a client failed: {e}"),
            }
        }
        result.all_live = started.elapsed();
        between().await;
        drop(release_tx);
        Ok(result)
    }))
}

/// Opens `n` clients on `ex`, at most `CONCURRENT_HANDSHAKES` handshakes at a time, client
/// `i` subscribed (on tidings) to `room(i)`. Each then reads until its socket ends, handing
/// every text message to its own `reader(i)`. Returns once every client is open or failed,
/// with the failures.
async fn open_clients<H>(
    ex: &LocalExecutor<'_>,
    target: &Target,
    n: usize,
    room: impl Fn(usize) -> String,
    reader: impl Fn(usize) -> H,
) -> Vec<io::Error>
where
    H: FnMut(&str) + 'static,
{
    let gate = Rc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    let (ready_tx, ready_rx) = async_channel::unbounded::<io::Result<()>>();
    for i in 0..n {
        let (target, gate, ready) = (target.clone(), gate.clone(), ready_tx.clone());
        let (room, mut on_text) = (room(i), reader(i));
        ex.spawn(async move {
            let permit = gate.acquire().await;
            let ws = target.open(i, Some(&room)).await;
            drop(permit);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => return drop(ready.send(Err(e)).await),
            };
            let _ = ready.send(Ok(())).await;
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    on_text(text.as_str());
                }
            }
        })
        .detach();
    }
    let mut failed = Vec::new();
    for _ in 0..n {
        match ready_rx.recv().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(io::Error::other(e)),
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_and_parse_back() {
        let p = payload(7, 128);
        assert_eq!(p.len(), 128);
        let tally = Tally::default();
        assert!(!tally.record(false, &p, 0));
        let framed = format!(r#"{{"type":"event","channel":"bench","data":"{p}"}}"#);
        assert!(!tally.record(true, &framed, 1));
        assert_eq!(tally.delivered.get(), 2);
        assert_eq!(tally.bytes.get(), (p.len() + framed.len()) as u64);
        assert_eq!(tally.latencies_ns.borrow().len(), 2);
        assert!(tally.record(false, "w", 0), "the warm-up is told apart");
        assert!(!tally.record(true, r#"{"type":"pong"}"#, 0));
        assert_eq!(tally.delivered.get(), 2, "neither counts as a delivery");
        assert!(tally.deliveries.is_none(), "kept only when asked");
    }

    #[test]
    fn deliveries_asked_for_keep_publish_and_subscriber() {
        let tally = Tally {
            deliveries: Some(RefCell::default()),
            ..Tally::default()
        };
        assert!(!tally.record(false, &payload(41, 64), 3));
        assert!(!tally.record(false, &payload(42, 64), 9));
        let kept = tally.deliveries.expect("asked").take();
        let who: Vec<_> = kept.iter().map(|&(seq, sub, _)| (seq, sub)).collect();
        assert_eq!(who, [(41, 3), (42, 9)]);
        assert_eq!(kept[1].2, tally.latencies_ns.borrow()[1]);
    }

    #[test]
    fn sources_go_round_robin_from_127_0_0_2() {
        let t = Target {
            url: String::new(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            kind: Kind::Bare,
            sources: 3,
            second: None,
        };
        let got: Vec<_> = (0..4).map(|i| t.source(i).to_string()).collect();
        assert_eq!(got, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]);
    }
}
