//! What a process costs, read from `/proc/<pid>`: CPU seconds (user + system, all threads)
//! and resident memory now and at its peak.

use std::fs;
use std::io;

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
    fn reads_this_process() {
        let u = usage(std::process::id()).expect("own /proc");
        assert!(u.rss_kib > 0 && u.peak_rss_kib >= u.rss_kib);
    }
}
