//! A throwaway `redis-server` for tests: started on a free loopback port without
//! persistence, stopped when dropped. Needs `redis-server` on the PATH (Debian package
//! `redis-server`). The project's tests use it; so can an application's.
//!
//! [`RedisServer::start_or_skip`] lets a test pass with a loud note where `redis-server` is
//! not installed, unless `TIDINGS_REQUIRE_REDIS` is set (as `.ci/run` sets it): then a missing
//! `redis-server` fails the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` of a test's own; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// [`RedisServer::start`], or `None` (with a note on stderr) if `redis-server` is not
    /// installed and `TIDINGS_REQUIRE_REDIS` is not set.
    ///
    /// # Panics
    /// If `TIDINGS_REQUIRE_REDIS` is set and `redis-server` is missing, or as
    /// [`RedisServer::start`].
    pub fn start_or_skip() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let required = std::env::var_os("TIDINGS_REQUIRE_REDIS").is_some();
            assert!(
                !required,
                "TIDINGS_REQUIRE_REDIS is set but redis-server is missing"
            );
            eprintln!(
                "\n*** SKIPPED: install redis-server (Debian package) to run this test ***\n"
            );
            return None;
        }
        Some(Self::start())
    }

    /// Starts one on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` cannot be run or does not answer within 10 s: a test cannot go on.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        Self::start_on(port)
    }

    /// Starts one on `port` (to restart a killed one where its clients look for it).
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (Debian package redis-server): {e}")
            });
        let mut server = RedisServer { child, port };
        let until = Instant::now() + Duration::from_secs(10);
        while !server.answers_ping() {
            if Instant::now() > until {
                server.kill();
                panic!("redis-server did not answer on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut answer = [0u8; 7];
        tcp.write_all(b"PING\r\n").is_ok()
            && tcp.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Its process id (to measure its CPU).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops it at once (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
