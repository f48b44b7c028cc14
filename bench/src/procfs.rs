//! What a process costs, read from `/proc/<pid>`: CPU seconds (user + system, all threads)
//! and resident memory now and at its peak; and the kernel's memory in TCP socket buffers,
//! from `/proc/net/sockstat`, watched for its peak.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The size of the pages `/proc/net/sockstat` counts in: 4 KiB on the x86-64 machines this
/// bench runs on.
const PAGE_KIB: u64 = 4;

/// How often [`TcpMemoryWatch`] reads the kernel's TCP memory.
const WATCH_EVERY: Duration = Duration::from_millis(2);

/// Linux reports CPU times in `/proc/<pid>/stat` in USER_HZ ticks, which the kernel fixes at
/// 100 per second on every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User plus system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// The largest resident set size so far (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn usage(pid: u32) -> io::Result<Usage> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Usage {
        cpu_seconds: cpu_ticks(&stat).ok_or_else(|| bad("stat"))? as f64 / TICKS_PER_SECOND,
        rss_kib: status_kib(&status, "VmRSS:").ok_or_else(|| bad("VmRSS"))?,
        peak_rss_kib: status_kib(&status, "VmHWM:").ok_or_else(|| bad("VmHWM"))?,
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("no {what} in /proc"))
}

/// utime + stime: fields 14 and 15 of `stat`, counted after the command name, which is in
/// parentheses and may itself hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   1234 kB` line of `status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The kernel's memory in TCP socket buffers now, in KiB: every socket of this network
/// namespace, both ends of a loopback connection alike.
pub fn tcp_memory_kib() -> io::Result<u64> {
    let sockstat = fs::read_to_string("/proc/net/sockstat")?;
    Ok(sockstat_tcp_pages(&sockstat).ok_or_else(|| bad("TCP mem in sockstat"))? * PAGE_KIB)
}

/// The `mem` field (pages) of the `TCP:` line of `/proc/net/sockstat`.
fn sockstat_tcp_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    fields.find(|&f| f == "mem")?;
    fields.next()?.parse().ok()
}

/// The peak of [`tcp_memory_kib`] while it runs, read every [`WATCH_EVERY`] on a thread of
/// its own (off the load generator's one thread). Where both ends of every connection are on
/// this machine, it is the bytes a run has in flight, written by the server and not yet read
/// by the generator.
pub struct TcpMemoryWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl TcpMemoryWatch {
    /// Starts watching.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(tcp_memory_kib().unwrap_or(0));
                thread::sleep(WATCH_EVERY);
            }
            peak
        });
        TcpMemoryWatch { stop, thread }
    }

    /// Stops watching; returns the peak seen, in KiB (0 if `/proc/net/sockstat` could not be
    /// read).
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(281));
    }

    #[test]
    fn reads_status_lines() {
        let status = "Name:\tx\nVmHWM:\t   9000 kB\nVmRSS:\t   8000 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(8000));
        assert_eq!(status_kib(status, "VmHWM:"), Some(9000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_tcp_memory_from_sockstat() {
        let sockstat =
            "sockets: used 9\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 65\nUDP: inuse 0 mem 7\n";
        assert_eq!(sockstat_tcp_pages(sockstat), Some(65));
        assert_eq!(sockstat_tcp_pages("UDP: inuse 0 mem 7\n"), None);
        assert_eq!(sockstat_tcp_pages("TCP: inuse 1 mem\n"), None);
    }

    #[test]
    fn watches_the_peak_of_tcp_memory() {
        use std::io::Write;
        let watch = TcpMemoryWatch::start();
        // Loopback connections holding 8 MiB that nobody reads: the kernel counts it, give or
        // take what each CPU keeps in reserve (`net.core.mem_pcpu_rsv`, 1 MiB by default).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let chunk = vec![0u8; 64 * 1024];
        let (mut sent, mut held) = (0, Vec::new());
        for _ in 0..8 {
            let mut writer = std::net::TcpStream::connect(addr).expect("connect");
            let (reader, _) = listener.accept().expect("accept");
            writer.set_nonblocking(true).expect("nonblocking");
            let mut this = 0;
            while this < 1024 * 1024 {
                match writer.write(&chunk) {
                    Ok(n) => this += n,
                    Err(_) => break, // its buffers are full
                }
            }
            sent += this;
            held.push((writer, reader));
        }
        assert!(
            sent >= 4 * 1024 * 1024,
            "the sockets took only {sent} bytes"
        );
        thread::sleep(WATCH_EVERY * 10);
        let peak = watch.stop();
        assert!(
            peak >= sent as u64 / 1024 / 2,
            "{sent} bytes unread, peak seen {peak} KiB"
        );
    }

    #[test]
    fn reads_this_process() {
        let u = usage(std::process::id()).expect("own /proc");
        assert!(u.rss_kib > 0 && u.peak_rss_kib >= u.rss_kib);
    }
}
