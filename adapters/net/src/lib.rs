//! # tidings-net
//!
//! The runtime-neutral half of the tidings adapters. [`tidings-core`](tidings_core) decides;
//! this crate gives it sockets and a clock, written once over a small [`Runtime`] trait that
//! `tidings-smol` and `tidings-async-std` implement. Applications use those crates, which
//! re-export everything here.
//!
//! - [`Builder`] starts a hub: with its own [`Server`] (hyper for HTTP, the WebSocket
//!   upgrade with origin policy, subprotocols and a connect hook), or without one, for
//!   applications that upgrade requests in their own server and hand the socket to
//!   [`Handle::open`].
//! - [`Handle`]: a `Clone + Send + Sync` way into the hub from any task or thread: publish,
//!   emit, emit-with-ack, send, ping, join, close, receive, batch, shutdown.
//! - Each connection speaks `tidings.v1` (PROTOCOL.md) or raw frames with no envelope, for
//!   clients written for wsm or goWs: chosen by the negotiated subprotocol, the hub's
//!   [`PathRule`](tidings_core::PathRule)s, or the
//!   [`ConnectionInfo::protocol`](tidings_core::ConnectionInfo::protocol) given to
//!   [`Handle::open`].
//! - [`Router`]: handlers by event name, with serde, hooks and subscribe authorization.
//! - [`Client`]: a client that speaks PROTOCOL.md.
//!
//! ## How it runs
//!
//! One hub task owns the [`tidings_core::Hub`] and runs the sans-IO loop: it waits for
//! connection input, an application command or the hub's next deadline, feeds the hub,
//! then routes every output. Each connection is one task (a reader and a writer over one
//! split async-tungstenite stream): the reader feeds whole messages to the hub task, the
//! writer writes what the hub hands out and reports it written, which is what lets the
//! core bound each connection's queue. The router, if any, is one more task.

mod backplane;
mod client;
mod cluster;
mod conn;
mod driver;
mod error;
mod front;
mod handle;
mod hooks;
mod http;
mod link;
mod logs;
mod metrics;
mod origin;
mod reports;
mod router;
mod runtime;
mod server;
pub mod tls;
mod upgrade;
mod wakes;

/// A waker that counts its wakes, for the unit tests of who wakes a task, and when.
#[cfg(test)]
pub(crate) struct CountedWakes(std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl CountedWakes {
    /// A count at zero, and a waker that adds to it.
    pub(crate) fn waker() -> (std::sync::Arc<Self>, std::task::Waker) {
        let count = std::sync::Arc::new(CountedWakes(0.into()));
        (count.clone(), count.into())
    }

    /// The wakes so far.
    pub(crate) fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
impl std::task::Wake for CountedWakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod testkit;

pub use backplane::{Backplane, Link};
pub use client::{Backoff, Client, ClientBuilder, ClientEvent, ServerEvent};
pub use cluster::{
    AckFailure, Answer, BackplaneStats, ClusterEvent, Emit, EmitAck, Member, Presence, Query,
    Question, Request,
};
pub use driver::Incoming;
pub use error::{Error, Result};
pub use handle::Handle;
pub use hooks::{Accept, ConnectRequest, HttpResponse, Refusal, SUBPROTOCOL_V1};
pub use origin::OriginPolicy;
pub use router::{Ctx, Disconnect, Router};
pub use runtime::{Io, Runtime};
pub use server::{Builder, Server};
pub use upgrade::Upgrader;

/// Names this crate's API for one runtime: `builder()`, `client(url)`, `connect(url)`, type
/// aliases (`Handle`, `Router`, `Client`, ...) and the re-exports an application needs. Each
/// adapter crate calls it once with its [`Runtime`]; a new runtime does the same.
#[macro_export]
macro_rules! runtime_api {
    ($runtime:ident, $name:literal) => {
        #[doc = concat!("A hub builder on ", $name, ": add a config, router, hooks, then `bind` or `start`.")]
        pub fn builder() -> Builder {
            $crate::Builder::new($runtime)
        }

        #[doc = concat!("A client builder for `url` on ", $name, ".")]
        pub fn client(url: &str) -> ClientBuilder {
            $crate::ClientBuilder::new($runtime, url)
        }

        /// Connects a client to `url` with the defaults.
        pub async fn connect(url: &str) -> $crate::Result<Client> {
            client(url).connect().await
        }

        #[doc = concat!("[`tidings_net::Builder`] on ", $name, ".")]
        pub type Builder = $crate::Builder<$runtime>;
        #[doc = concat!("[`tidings_net::Server`] on ", $name, ".")]
        pub type Server = $crate::Server<$runtime>;
        #[doc = concat!("[`tidings_net::Handle`] on ", $name, ".")]
        pub type Handle = $crate::Handle<$runtime>;
        #[doc = concat!("[`tidings_net::Router`] on ", $name, ".")]
        pub type Router = $crate::Router<$runtime>;
        #[doc = concat!("[`tidings_net::Ctx`] on ", $name, ".")]
        pub type Ctx = $crate::Ctx<$runtime>;
        #[doc = concat!("[`tidings_net::Disconnect`] on ", $name, ".")]
        pub type Disconnect = $crate::Disconnect<$runtime>;
        #[doc = concat!("[`tidings_net::Client`] on ", $name, ".")]
        pub type Client = $crate::Client<$runtime>;
        #[doc = concat!("[`tidings_net::ClientBuilder`] on ", $name, ".")]
        pub type ClientBuilder = $crate::ClientBuilder<$runtime>;
        #[doc = concat!("[`tidings_net::Upgrader`] on ", $name, ".")]
        pub type Upgrader = $crate::Upgrader<$runtime>;

        pub use $crate::reexports::tidings_core::{
            AppHeartbeat, CloseCode, Config, ConnId, ConnectionInfo, Delivery, History, Message,
            PathRule, Payload, Protocol, Target, RAW_EVENT,
        };
        pub use $crate::{
            reexports, Accept, ClientEvent, ConnectRequest, Error, HttpResponse, Incoming,
            OriginPolicy, Refusal, Result, Runtime, ServerEvent, SUBPROTOCOL_V1,
        };
        pub use $crate::reexports::tidings_core;
        pub use $crate as tidings_net;
    };
}

/// The crates whose types appear in this API, for applications that need to name them.
pub mod reexports {
    pub use async_tungstenite;
    pub use bytes;
    /// TLS (with the `tls` feature): rustls and its futures adapter.
    #[cfg(feature = "tls")]
    pub use futures_rustls;
    pub use http;
    pub use http_body_util;
    pub use hyper;
    pub use socket2;
    pub use tidings_core;
    pub use tungstenite;
}
