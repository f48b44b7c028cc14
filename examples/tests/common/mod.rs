//! Starting an example program as a person would, and talking HTTP to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A running example; killed when dropped.
pub struct Running {
    child: Child,
    /// Its stdout, kept open so it can go on printing.
    stdout: BufReader<ChildStdout>,
    /// The `http://127.0.0.1:PORT/` it printed.
    pub url: String,
}

impl Running {
    /// `host:port`.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    }

    /// `ws://host:port{path}`.
    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
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
    let mut child = Command::new(path)
        .args(["--listen", "127.0.0.1:0"])
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
    let mut line = String::new();
    loop {
        line.clear();
        let n = running.stdout.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "{path} exited before printing its URL");
        if let Some((_, url)) = line.trim().split_once(": open ") {
            running.url = url.to_owned();
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
