//! Counters of what the hub did, readable as a [`Counters`] snapshot.

use std::collections::BTreeMap;

use crate::frame::CloseCode;

/// A snapshot of the hub's counters. Totals only grow; `connections` and `rooms` are current.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Connections open now.
    pub connections: usize,
    /// Rooms that exist now (in every namespace).
    pub rooms: usize,
    /// Room memberships now: the members of every room, added up.
    pub members: usize,
    /// Connections ever opened.
    pub connections_opened: u64,
    /// Connections refused by `Hub::open`.
    pub connections_refused: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Messages queued for their recipients by publishes and batch flushes, one per
    /// recipient (replies, notices, pings and the like are not counted here; they are in
    /// `frames_out`).
    pub deliveries: u64,
    /// Frames handed to the driver to write.
    pub frames_out: u64,
    /// Bytes handed to the driver to write.
    pub bytes_out: u64,
    /// Volatile messages dropped for slow recipients.
    pub dropped: u64,
    /// Messages refused for slow recipients (`SlowConsumerPolicy::Refuse`).
    pub refused: u64,
    /// Times a publishing client's reading was paused because a queue it fed was behind.
    pub reads_paused: u64,
    /// Closes, by close code.
    pub closes: BTreeMap<CloseCode, u64>,
    /// Error frames sent to clients.
    pub protocol_errors: u64,
    /// Server→client acks answered by the client (pings are counted apart).
    pub acks_replied: u64,
    /// Server→client acks that timed out.
    pub acks_timed_out: u64,
    /// Server→client acks failed because the connection closed.
    pub acks_failed: u64,
    /// Ack replies for ids that were not pending (unknown or duplicate), ignored.
    pub acks_unknown: u64,
    /// Pings of `Hub::ping` whose pong came back.
    pub pings_answered: u64,
    /// Pings of `Hub::ping` whose pong did not come back in time.
    pub pings_timed_out: u64,
    /// Pings of `Hub::ping` ended by the connection's close.
    pub pings_failed: u64,
    /// Client ack requests the application did not answer in time, which the server
    /// answered with `no_answer` (`Config::answer_timeout`).
    pub answers_timed_out: u64,
    /// Batches flushed.
    pub batches_flushed: u64,
    /// Publishes received from other nodes.
    pub remote_publishes: u64,
}
