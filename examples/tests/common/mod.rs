//! Starting an example program as a person would, and talking HTTP to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running example; killed when dropped.
pub struct Running {
    child: Child,
    /// Its stdout, kept open so it can go on printing.
    stdout: BufReader<ChildStdout>,
    /// The URL it printed: `http://127.0.0.1:PORT/` for a page, `ws://...` for a socket.
    pub url: String,
}

impl Running {
    /// `host:port`.
    pub fn addr(&self) -> String {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        rest.split('/').next().unwrap_or_default().to_owned()
    }

    /// `ws://host:port{path}`.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// Sends the process signal `name` (`INT`, `TERM`) as a person's Ctrl-C or a service
    /// manager would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits up to `limit` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The next line it prints.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read stdout");
        line
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the example binary at `path` on an ephemeral port and waits for the line that
/// says where it listens.
pub fn start(path: &str) -> Running {
    start_with(path, &[])
}

/// [`start`] with more arguments.
pub fn start_with(path: &str, args: &[&str]) -> Running {
    let mut child = Command::new(path)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        // Warnings only: a connection's every opening and closing would drown the test output.
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("stdout");
    // Owned by the guard from here on: a failed start still kills and reaps the child.
    let mut running = Running {
        child,
        stdout: BufReader::new(stdout),
        url: String::new(),
    };
    loop {
        let line = running.line();
        assert!(!line.is_empty(), "{path} exited before printing its URL");
        // `NAME: open http://ADDR/` or `NAME: WebSocket at ws://ADDR/PATH`.
        let printed = ["http://", "ws://"]
            .iter()
            .find_map(|scheme| line.find(scheme).map(|at| line[at..].trim().to_owned()));
        if let Some(url) = printed {
            running.url = url;
            return running;
        }
    }
}

/// One HTTP/1.1 request; returns the status and the body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
