//! The built-in server's front, shared by its accept loop, its HTTP serving and its
//! upgrades (and by an `Upgrader` on another server's route): the settings an upgrade is
//! checked against, the count of connections still in their HTTP phase, and each remote
//! address's share of the per-address cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The kernel's send buffer of each accepted connection, if the server sets it.
    pub send_buffer: Option<usize>,
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
