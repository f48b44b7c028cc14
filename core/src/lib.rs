//! # tidings-core
//!
//! The sans-IO heart of tidings: a state machine that owns every decision of a WebSocket
//! messaging server (who is subscribed where, what goes to whom, when a batch flushes, when an
//! ack times out, when a silent peer is dead, what a slow reader gets) and touches no socket,
//! no clock and no thread. Time comes in as `now: Instant` on each call; frames, closes,
//! events and the next deadline come out.
//!
//! ## The drive loop
//!
//! Mutate the hub (an input, an application command, a timeout), then drain
//! [`Hub::poll_output`] until it returns `None`, then sleep until [`Hub::poll_timeout`] or the
//! next input, whichever comes first. Repeat.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use serde_json::json;
//! use tidings_core::{Config, ConnectionInfo, Event, Frame, Hub, Input, Message, Output, Target};
//!
//! let mut now = Instant::now(); // a driver reads its clock; a test advances a virtual one
//! let mut hub = Hub::new(Config::default()).expect("valid config");
//!
//! // The driver accepted and upgraded a socket: tell the hub.
//! let alice = hub.open(now, ConnectionInfo::new("/ws")).expect("room for a connection");
//! // A frame arrived from it.
//! let subscribe = Frame::text(r#"{"type":"subscribe","channel":"news"}"#);
//! hub.handle(now, Input::Frame { conn: alice, frame: subscribe });
//! // The application publishes.
//! let report = hub.publish(now, Target::room("/", "news"), Message::json("headline", json!({"title": "hi"})))
//!     .expect("valid names");
//! assert_eq!(report.queued, 1);
//!
//! let mut sent = Vec::new();
//! for _ in 0..3 {
//!     while let Some(output) = hub.poll_output() {
//!         match output {
//!             Output::Transmit { conn, frame } => {
//!                 // Write `frame` to the socket of `conn`; once written, say so.
//!                 sent.push(frame);
//!                 hub.handle(now, Input::Written { conn, frames: 1 });
//!             }
//!             Output::Close { conn, code, reason } => { /* send a close frame, drop the socket */ }
//!             Output::Event(event) => match *event {
//!                 Event::Message { conn, event, .. } => { /* application logic */ }
//!                 _ => {}
//!             },
//!             Output::Cluster(_) | _ => {}
//!         }
//!     }
//!     // Sleep until the next deadline (or an input arrives), then run the timers.
//!     let Some(deadline) = hub.poll_timeout() else { break };
//!     now = deadline;
//!     hub.handle_timeout(now);
//! }
//! // welcome, subscribed, the headline, then a WebSocket ping when the ping period elapsed.
//! assert!(sent[2].as_text().unwrap().contains(r#""event":"headline""#));
//! assert!(matches!(sent[3], Frame::Ping(_)));
//! ```
//!
//! ## Shape
//!
//! - [`Hub`]: rooms, namespaces, names, routing, timers; created with a [`Config`].
//! - Inputs from the driver: [`Hub::open`], [`Hub::handle`] with an [`Input`],
//!   [`Hub::handle_timeout`], [`Hub::handle_remote`] for other nodes' publishes.
//! - Application commands: [`Hub::publish`], [`Hub::emit`], [`Hub::emit_with_ack`],
//!   [`Hub::publish_batched`], [`Hub::join`], [`Hub::close`], [`Hub::ping`],
//!   [`Hub::shutdown`], ...
//! - Outputs: [`Output::Transmit`], [`Output::Close`], [`Output::PauseReading`] /
//!   [`Output::ResumeReading`], [`Output::Event`], [`Output::Cluster`];
//!   [`Hub::poll_transmits`] hands out a connection's frames together, as [`Chunk`]s: a
//!   room's publications are written once and shared by its members' queues as runs, and
//!   [`Chunk::encode`] keeps a driver's encoding of a shared frame for every writer.
//! - Flow control: a queue past its bound is *behind*; the clients feeding it are paused,
//!   application publishes wait for [`Hub::can_take`], and a queue behind for
//!   `Config::slow_consumer_timeout` is closed with 4000 (see `Config::max_queue_frames`).
//!
//! With the `sim` feature, `tidings_core::sim` runs a hub against many simulated clients and a faulty
//! network from one seed, checking delivery, ack, heartbeat, batching and bound invariants as
//! it goes; applications can simulate their own configurations with it.
//!
//! Each connection speaks one wire [`Protocol`]: `tidings.v1` (PROTOCOL.md), or raw frames
//! with no envelope for clients written for wsm or goWs, chosen by subprotocol or by
//! [`PathRule`]. Rooms, bounds, heartbeats and closes work the same for both, and a room
//! whose members speak both gets each message encoded once per protocol.
//!
//! A peer's misbehaviour is never an `Err`: it is answered on the wire (an `error` frame or a
//! close with the matching code) and shows up as events and [`Counters`]. `Err` ([`Error`]) is
//! for the application's calls. The wire protocol is specified in PROTOCOL.md.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod codec;
mod config;
mod error;
mod frame;
mod history;
mod hub;
mod ids;
mod info;
mod io;
mod message;
mod metrics;
mod outbound;
mod protocol;
mod raw;
mod request;
mod rooms;
mod session;
#[cfg(feature = "sim")]
pub mod sim;
mod timers;
mod wire;

pub use config::{
    AppHeartbeat, Config, NameConflict, PathRule, SlowConsumerPolicy, SubscribePolicy,
};
pub use error::Error;
pub use frame::{CloseCode, Frame, Text};
pub use history::{Fetch, History, HistoryRule, Position, Recovery, Stream, Unrecoverable};
pub use hub::{Footprint, Hub, QueueDepth};
pub use ids::{AckId, ConnId, ParseConnIdError};
pub use info::ConnectionInfo;
pub use io::{AckOutcome, Event, Initiator, Input, Output};
pub use message::{ClusterMessage, Delivery, Message, Payload, Scope, Target};
pub use metrics::Counters;
pub use outbound::Chunk;
pub use protocol::{path_matches, Protocol, RAW_EVENT};
pub use request::ErrorCode;
pub use wire::PROTOCOL_VERSION;

/// A driver owns the hub in one task and may move it between threads; the application
/// sends it values from anywhere.
#[cfg(test)]
mod send_sync {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn the_hub_moves_between_threads_and_its_values_are_shared() {
        send::<crate::Hub>();
        send::<crate::Output>();
        send_sync::<crate::Input>();
        send_sync::<crate::Chunk>();
        send_sync::<crate::Message>();
        send_sync::<crate::Config>();
        send_sync::<crate::Error>();
    }
}
