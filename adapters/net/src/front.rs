//! The built-in server's front, shared by its accept loop, its HTTP serving and its
//! upgrades (and by an `Upgrader` on another server's route): the settings an upgrade is
//! checked against, the count of connections still in their HTTP phase, each remote
//! address's share of the per-address cap, and the kernel options of each socket the
//! server accepts.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::SockRef;

use crate::hooks::{ConnectHook, HttpHandler};
use crate::{Handle, OriginPolicy, Runtime};

/// The HTTP side of the server: what an upgrade is checked against.
pub(crate) struct Front<R: Runtime> {
    pub paths: Vec<String>,
    pub origin: OriginPolicy,
    pub subprotocols: Vec<String>,
    pub connect: Option<ConnectHook>,
    pub http: Option<HttpHandler<R>>,
    pub handshake_timeout: Duration,
    pub keep_headers: Vec<String>,
    /// Where the counters are served in the Prometheus text format, if anywhere.
    pub metrics: Option<String>,
    pub per_address: usize,
    pub pending_handshakes: usize,
    /// The kernel options of each accepted connection.
    pub socket: SocketOptions,
    #[cfg(feature = "tls")]
    pub tls: Option<futures_rustls::TlsAcceptor>,
}

pub(crate) struct Shared<R: Runtime> {
    pub handle: Handle<R>,
    pub front: Front<R>,
    /// Connections in their HTTP phase.
    pub pending: AtomicUsize,
    /// WebSocket connections per remote address.
    pub per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl<R: Runtime> Shared<R> {
    pub fn new(handle: Handle<R>, front: Front<R>) -> Self {
        Shared {
            handle,
            front,
            pending: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more connection from `ip`, unless it is at its limit.
    pub fn claim_address(self: &Arc<Self>, ip: IpAddr) -> Option<AddressClaim<R>> {
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.front.per_address {
            return None;
        }
        *count += 1;
        Some(AddressClaim(self.clone(), ip))
    }
}

/// One connection's share of its address's limit, given back when dropped.
pub(crate) struct AddressClaim<R: Runtime>(Arc<Shared<R>>, IpAddr);

impl<R: Runtime> Drop for AddressClaim<R> {
    fn drop(&mut self) {
        let mut counts = self.0.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// What the server asks of the kernel for each socket it accepts (`Builder::send_buffer`,
/// `Builder::unsent_limit`); `None` leaves an option at the kernel's default.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SocketOptions {
    /// `SO_SNDBUF`, in bytes as asked (Linux doubles it).
    pub send_buffer: Option<usize>,
    /// `TCP_NOTSENT_LOWAT`, in bytes (Linux and Android; elsewhere not set).
    pub unsent_limit: Option<usize>,
}

impl SocketOptions {
    /// Sets the options on `socket`; the first that fails is the error, and the options
    /// before it stay set.
    pub fn apply(&self, socket: &SockRef<'_>) -> io::Result<()> {
        if let Some(bytes) = self.send_buffer {
            socket.set_send_buffer_size(bytes)?;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(bytes) = self.unsent_limit {
            // The kernel takes an int: a limit past its largest is as good as none.
            socket.set_tcp_notsent_lowat(bytes.min(i32::MAX as usize) as u32)?;
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (server, client)
    }

    #[test]
    fn the_options_asked_for_are_set_and_the_others_left_alone() {
        let (server, _client) = socket_pair();
        let socket = SockRef::from(&server);
        let (kernel_buffer, kernel_unsent) = (
            socket.send_buffer_size().expect("get"),
            socket.tcp_notsent_lowat().expect("get"),
        );
        let none = SocketOptions {
            send_buffer: None,
            unsent_limit: None,
        };
        none.apply(&socket).expect("apply");
        assert_eq!(socket.send_buffer_size().expect("get"), kernel_buffer);
        assert_eq!(socket.tcp_notsent_lowat().expect("get"), kernel_unsent);

        let both = SocketOptions {
            send_buffer: Some(64 * 1024),
            unsent_limit: Some(16 * 1024),
        };
        both.apply(&socket).expect("apply");
        // Linux doubles the send buffer for its bookkeeping.
        assert_eq!(socket.send_buffer_size().expect("get"), 2 * 64 * 1024);
        assert_eq!(socket.tcp_notsent_lowat().expect("get"), 16 * 1024);
    }
}
