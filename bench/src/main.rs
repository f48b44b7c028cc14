//! `tidings-bench`: the end-to-end benchmarks of BENCHMARKS.md.
//!
//! ```text
//! tidings-bench fanout [--servers tokio,bare,smol,async-std,tidings-tokio] [--runs 5] [--subscribers 1000]
//!                      [--messages 2000] [--size 128] [--window 0] [--rate 0] [--sources 8] [--same-frames]
//!                      [--deliveries DIR]
//! tidings-bench idle   [--servers tokio,bare,smol,async-std,tidings-tokio] [--runs 3] [--connections 10000]
//!                      [--sources 16] [--settle 2] [--hold 10]
//! tidings-bench recovery [--servers smol,async-std,tidings-tokio] [--runs 3] [--connections 10000]
//!                      [--messages 100] [--sources 16]
//! tidings-bench server --kind tokio|bare|smol|async-std|tidings-tokio|smol-redis|smol-redis-idle|smol-redis-solo|smol-redis-history [--listen 127.0.0.1:0]
//! ```
//!
//! Each run starts a fresh server process (`server`), drives it from this process, reads
//! the server's CPU time and memory from `/proc`, and stops it. Runs of the servers are
//! interleaved, so a drift in the machine's speed touches all of them alike. The results are
//! printed as Markdown tables: medians with the min–max over runs, and ratios to each
//! baseline taken run by run.

mod load;
mod procfs;
mod server;
mod stats;

use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use smol::Timer;

use load::{Fanout, FanoutResult, Recovery, RecoveryResult, Target};
use procfs::Usage;
use server::Kind;
use stats::{PerPublish, Spread};

fn main() {
    if let Err(e) = run() {
        eprintln!("tidings-bench: {e}");
        std::process::exit(2);
    }
}

/// Options shared by the scenarios, with their defaults.
struct Options {
    servers: Vec<Kind>,
    runs: usize,
    sources: u8,
    fanout: Fanout,
    connections: usize,
    settle: Duration,
    hold: Duration,
    kind: Kind,
    listen: String,
    /// A command the server runs under (a profiler), split on spaces.
    wrap: Vec<String>,
    /// A directory where each fan-out run writes its deliveries (`<server>-<run>.txt`).
    deliveries: Option<PathBuf>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help")) => {
            println!("{}", include_str!("usage.txt"));
            return Ok(());
        }
        _ => return Err("usage: tidings-bench fanout|idle|server [options] (see --help)".into()),
    };
    let idle = command == "idle" || command == "recovery";
    let mut o = Options {
        servers: vec![
            Kind::Tokio,
            Kind::Bare,
            Kind::Smol,
            Kind::AsyncStd,
            Kind::TidingsTokio,
        ],
        runs: if idle { 3 } else { 5 },
        sources: if idle { 16 } else { 8 },
        fanout: Fanout {
            subscribers: 1000,
            messages: 2000,
            size: 128,
            window: 0,
            rate: 0,
            same_frames: false,
        },
        connections: 10_000,
        settle: Duration::from_secs(2),
        hold: Duration::from_secs(10),
        kind: Kind::Smol,
        listen: "127.0.0.1:0".into(),
        wrap: Vec::new(),
        deliveries: None,
    };
    if command == "recovery" {
        o.servers = vec![Kind::Smol, Kind::AsyncStd, Kind::TidingsTokio];
    }
    let mut messages_given = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("servers") => {
                o.servers = parser
                    .value()?
                    .string()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            Long("runs") => o.runs = parser.value()?.parse()?,
            Long("sources") => o.sources = parser.value()?.parse()?,
            Long("subscribers") => o.fanout.subscribers = parser.value()?.parse()?,
            Long("messages") => {
                o.fanout.messages = parser.value()?.parse()?;
                messages_given = true;
            }
            Long("size") => o.fanout.size = parser.value()?.parse()?,
            Long("window") => o.fanout.window = parser.value()?.parse()?,
            Long("rate") => o.fanout.rate = parser.value()?.parse()?,
            Long("same-frames") => o.fanout.same_frames = true,
            Long("connections") => o.connections = parser.value()?.parse()?,
            Long("settle") => o.settle = Duration::from_secs(parser.value()?.parse()?),
            Long("hold") => o.hold = Duration::from_secs(parser.value()?.parse()?),
            Long("kind") => o.kind = parser.value()?.string()?.parse()?,
            Long("listen") => o.listen = parser.value()?.string()?,
            Long("wrap") => {
                o.wrap = parser
                    .value()?
                    .string()?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            }
            Long("deliveries") => o.deliveries = Some(parser.value()?.into()),
            Long("help") => {
                println!("{}", include_str!("usage.txt"));
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match command.as_str() {
        "server" => Ok(server::run(o.kind, &o.listen)?),
        "fanout" => fanout(&o),
        "idle" => idle_scenario(&o),
        "recovery" => recovery_scenario(&o, messages_given),
        other => Err(format!("unknown command {other:?}").into()),
    }
}

/// A server in a child process; dropping it closes its stdin, which stops it.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    target: Target,
    /// The `redis-server` a two-node server started, whose CPU counts as the server's.
    redis: Option<u32>,
}

impl ServerProcess {
    /// Starts `kind`, under the `wrap` command if any (`valgrind --tool=callgrind`, say).
    fn start(kind: Kind, o: &Options) -> io::Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        let mut command = match o.wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["server", "--kind", &kind.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // `ready URL [URL2] [redis=PID]`.
        let words = line
            .strip_prefix("ready ")
            .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
        let mut urls = Vec::new();
        let mut redis = None;
        for word in words.split_whitespace() {
            match word.strip_prefix("redis=") {
                Some(pid) => redis = Some(pid.parse().map_err(io::Error::other)?),
                None => urls.push((word.to_owned(), addr_of(word)?)),
            }
        }
        let mut urls = urls.into_iter();
        let (url, addr) = urls
            .next()
            .ok_or_else(|| io::Error::other(format!("no URL in {line:?}")))?;
        // The idle variant keeps every client on the first node.
        let second = urls.next().filter(|_| kind != Kind::SmolRedisIdle);
        Ok(ServerProcess {
            child,
            stdin,
            target: Target {
                url,
                addr,
                kind,
                sources: o.sources,
                second,
            },
            redis,
        })
    }

    /// The server's CPU and memory, with its Redis's CPU added if it has one.
    fn usage(&self) -> io::Result<Usage> {
        let mut usage = procfs::usage(self.child.id())?;
        if let Some(pid) = self.redis {
            usage.cpu_seconds += procfs::usage(pid)?.cpu_seconds;
        }
        Ok(usage)
    }

    /// Its Redis's CPU seconds so far, if it has one.
    fn redis_cpu(&self) -> io::Result<Option<f64>> {
        self.redis
            .map(|pid| procfs::usage(pid).map(|u| u.cpu_seconds))
            .transpose()
    }
}

/// The socket address in `ws://HOST:PORT/path`.
fn addr_of(url: &str) -> io::Result<std::net::SocketAddr> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    host.parse().map_err(io::Error::other)
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One fan-out run with the server's CPU seconds and peak RSS.
struct FanoutRun {
    result: FanoutResult,
    /// The server's CPU, its Redis's included.
    cpu_seconds: f64,
    /// Of which Redis's, for a two-node server.
    redis_cpu_seconds: Option<f64>,
    peak_rss_kib: u64,
}

fn fanout(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let w = o.fanout;
    println!(
        "fanout: {} subscribers, {} messages of {} bytes, window {}, rate {}, {} runs\n",
        w.subscribers,
        w.messages,
        w.size,
        w.window,
        if w.rate == 0 {
            "unpaced".to_owned()
        } else {
            format!("{}/s", w.rate)
        },
        o.runs
    );
    let mut runs: Vec<Vec<FanoutRun>> = o.servers.iter().map(|_| Vec::new()).collect();
    for run in 0..o.runs {
        for (i, &kind) in o.servers.iter().enumerate() {
            let server = ServerProcess::start(kind, o)?;
            let before = server.usage()?;
            let redis_before = server.redis_cpu()?;
            let deliveries = o
                .deliveries
                .as_ref()
                .map(|d| d.join(format!("{kind}-{run}.txt")));
            let result = load::fanout(&server.target, w, deliveries.as_deref())?;
            let after = server.usage()?;
            let redis_after = server.redis_cpu()?;
            eprintln!(
                "run {run} {kind}: {:.0} deliveries/s, last after {:.3} s, p99 {:.0} µs, {}/{}",
                result.rate(),
                result.elapsed.as_secs_f64(),
                result.p99_us,
                result.received,
                result.expected
            );
            runs[i].push(FanoutRun {
                result,
                cpu_seconds: after.cpu_seconds - before.cpu_seconds,
                redis_cpu_seconds: redis_after.zip(redis_before).map(|(a, b)| a - b),
                peak_rss_kib: after.peak_rss_kib,
            });
        }
    }
    println!("| server | deliveries/s | time to last delivery (s) | p50 (µs) | p99 (µs) | p99.9 (µs) | received = expected | server CPU (s) | CPU per delivery (µs) | server peak RSS (MiB) | bytes per delivery | generator CPU (s) | peak TCP memory (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (kind, runs) in o.servers.iter().zip(&runs) {
        let of =
            |f: &dyn Fn(&FanoutRun) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let complete = runs
            .iter()
            .filter(|r| r.result.received == r.result.expected)
            .count();
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {complete} of {} runs | {} | {} | {} | {} | {} | {} |",
            of(&|r| r.result.rate()).show(0),
            of(&|r| r.result.elapsed.as_secs_f64()).show(3),
            of(&|r| r.result.p50_us).show(0),
            of(&|r| r.result.p99_us).show(0),
            of(&|r| r.result.p999_us).show(0),
            runs.len(),
            of(&|r| r.cpu_seconds).show(2),
            of(&FanoutRun::cpu_per_delivery_us).show(3),
            of(&|r| r.peak_rss_kib as f64 / 1024.0).show(1),
            of(&|r| r.result.bytes_per_delivery).show(0),
            of(&|r| r.result.generator_cpu_seconds).show(2),
            of(&|r| r.result.peak_tcp_memory_kib as f64 / 1024.0).show(0),
        );
    }
    for (kind, runs) in o.servers.iter().zip(&runs) {
        let redis: Vec<f64> = runs.iter().filter_map(|r| r.redis_cpu_seconds).collect();
        if !redis.is_empty() {
            println!(
                "\n{kind}: of its server CPU, Redis's own: {} s",
                Spread::of(&redis).show(2)
            );
        }
    }
    if runs
        .iter()
        .flatten()
        .any(|r| r.result.per_publish.is_some())
    {
        println!(
            "\nPublish by publish (from --deliveries; late: the first delivery after {} ms):\n",
            stats::LATE_NS / 1_000_000
        );
        println!("| server | late publishes (%) | of the p99 tail, from late publishes (%) | p99 of the other publishes (µs) | first delivery of a publish, p50 (µs) | last delivery of a publish, p50 (µs) |");
        println!("|---|---|---|---|---|---|");
        for (kind, runs) in o.servers.iter().zip(&runs) {
            let of = |f: fn(&PerPublish) -> f64| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.result.per_publish.as_ref())
                    .map(f)
                    .collect();
                Spread::of(&v)
            };
            println!(
                "| {kind} | {} | {} | {} | {} | {} |",
                of(|p| p.late_pct).show(1),
                of(|p| p.tail_from_late_pct).show(0),
                of(|p| p.p99_on_time_us).show(0),
                of(|p| p.first_p50_us).show(0),
                of(|p| p.last_p50_us).show(0),
            );
        }
    }
    // Ratios are taken run by run (each tidings run against the baseline run beside it),
    // then summarised: a drift of the machine between runs touches both sides of a ratio.
    let index = |k: Kind| o.servers.iter().position(|&s| s == k);
    for baseline in [Kind::Tokio, Kind::Bare] {
        let Some(b) = index(baseline) else { continue };
        println!("\nAgainst the {baseline} baseline (median of per-run ratios, min–max):\n");
        println!("| server | deliveries/s | CPU per delivery | p99 |");
        println!("|---|---|---|---|");
        for (i, kind) in o.servers.iter().enumerate().filter(|(_, k)| k.is_tidings()) {
            let ratio = |f: &dyn Fn(&FanoutRun) -> f64| {
                let r: Vec<f64> = runs[i]
                    .iter()
                    .zip(&runs[b])
                    .map(|(t, b)| f(t) / f(b))
                    .collect();
                Spread::of(&r).show(2)
            };
            println!(
                "| {kind} | {}× | {}× | {}× |",
                ratio(&|r| r.result.rate()),
                ratio(&FanoutRun::cpu_per_delivery_us),
                ratio(&|r| r.result.p99_us),
            );
        }
    }
    Ok(())
}

impl FanoutRun {
    /// The server's CPU time per delivery that arrived, in microseconds.
    fn cpu_per_delivery_us(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.result.received.max(1) as f64
    }
}

/// One idle run's readings of the server.
struct IdleRun {
    open: usize,
    before: Usage,
    settled: Usage,
    held: Usage,
}

fn idle_scenario(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "idle: {} connections from {} source addresses, settle {} s, hold {} s, {} runs\n",
        o.connections,
        o.sources,
        o.settle.as_secs(),
        o.hold.as_secs(),
        o.runs
    );
    let mut runs: Vec<Vec<IdleRun>> = o.servers.iter().map(|_| Vec::new()).collect();
    for run in 0..o.runs {
        for (i, &kind) in o.servers.iter().enumerate() {
            let server = ServerProcess::start(kind, o)?;
            let before = server.usage()?;
            let readings = std::cell::RefCell::new(None);
            let (server_ref, readings_ref) = (&server, &readings);
            load::idle(&server.target, o.connections, |open| async move {
                Timer::after(o.settle).await;
                let settled = server_ref.usage();
                Timer::after(o.hold).await;
                *readings_ref.borrow_mut() = Some((open, settled, server_ref.usage()));
            })?;
            let (open, settled, held) = readings.take().ok_or("the idle run ended early")?;
            let r = IdleRun {
                open,
                before,
                settled: settled?,
                held: held?,
            };
            eprintln!(
                "run {run} {kind}: {} open, {:.2} KiB each, peak {} KiB",
                r.open,
                per_connection(&r),
                r.held.peak_rss_kib
            );
            runs[i].push(r);
        }
    }
    println!("| server | open | RSS before (MiB) | RSS with all open (MiB) | per connection (KiB) | peak RSS (MiB) | CPU to connect (s) | CPU while idle (s) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (kind, runs) in o.servers.iter().zip(&runs) {
        let of = |f: &dyn Fn(&IdleRun) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {} | {} |",
            of(&|r| r.open as f64).show(0),
            of(&|r| r.before.rss_kib as f64 / 1024.0).show(1),
            of(&|r| r.settled.rss_kib as f64 / 1024.0).show(1),
            of(&per_connection).show(2),
            of(&|r| r.held.peak_rss_kib as f64 / 1024.0).show(1),
            of(&|r| r.settled.cpu_seconds - r.before.cpu_seconds).show(2),
            of(&|r| r.held.cpu_seconds - r.settled.cpu_seconds).show(2),
        );
    }
    Ok(())
}

/// One recovery storm with the server's usage before it (everyone away, the missed
/// publications kept) and once everyone is back.
struct RecoveryRun {
    result: RecoveryResult,
    before: Usage,
    after: Usage,
}

fn recovery_scenario(o: &Options, messages_given: bool) -> Result<(), Box<dyn std::error::Error>> {
    let storm = Recovery {
        clients: o.connections,
        missed: if messages_given {
            o.fanout.messages
        } else {
            100
        },
    };
    println!(
        "recovery: {} clients in 100 rooms, {} publications missed by each, {} source addresses, {} runs\n",
        storm.clients, storm.missed, o.sources, o.runs
    );
    if let Some(kind) = o.servers.iter().find(|k| !k.is_tidings()) {
        return Err(
            format!("{kind} has no recovery: only tidings servers run this scenario").into(),
        );
    }
    let mut runs: Vec<Vec<RecoveryRun>> = o.servers.iter().map(|_| Vec::new()).collect();
    for run in 0..o.runs {
        for (i, &kind) in o.servers.iter().enumerate() {
            let server = ServerProcess::start(kind, o)?;
            let before = std::cell::RefCell::new(None);
            let after = std::cell::RefCell::new(None);
            let (server_ref, after_ref) = (&server, &after);
            let result = load::recovery(
                &server.target,
                storm,
                || *before.borrow_mut() = Some(server_ref.usage()),
                || async move {
                    *after_ref.borrow_mut() = Some(server_ref.usage());
                },
            )?;
            let r = RecoveryRun {
                result,
                before: before.take().ok_or("the run ended early")??,
                after: after.take().ok_or("the run ended early")??,
            };
            eprintln!(
                "run {run} {kind}: {} back, {} recovered, {} replayed, all live in {:.2} s",
                r.result.reconnected,
                r.result.recovered,
                r.result.replayed,
                r.result.all_live.as_secs_f64()
            );
            runs[i].push(r);
        }
    }
    println!("| server | back | recovered | replayed | time until all live (s) | server CPU (s) | RSS before (MiB) | RSS with all back (MiB) | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (kind, runs) in o.servers.iter().zip(&runs) {
        let of =
            |f: &dyn Fn(&RecoveryRun) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {} | {} | {} |",
            of(&|r| r.result.reconnected as f64).show(0),
            of(&|r| r.result.recovered as f64).show(0),
            of(&|r| r.result.replayed as f64).show(0),
            of(&|r| r.result.all_live.as_secs_f64()).show(2),
            of(&|r| r.after.cpu_seconds - r.before.cpu_seconds).show(2),
            of(&|r| r.before.rss_kib as f64 / 1024.0).show(1),
            of(&|r| r.after.rss_kib as f64 / 1024.0).show(1),
            of(&|r| r.after.peak_rss_kib as f64 / 1024.0).show(1),
        );
    }
    Ok(())
}

/// Resident memory the open connections added, per connection, in KiB.
fn per_connection(r: &IdleRun) -> f64 {
    (r.settled.rss_kib as f64 - r.before.rss_kib as f64) / r.open.max(1) as f64
}
