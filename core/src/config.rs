//! The hub's configuration: every bound, deadline and policy, with documented defaults.
//!
//! Fields are public for reading and direct assignment; each has a builder method of the same
//! name for chaining (`Config::default().ping_period(None).max_queue_frames(64)`).
//! [`Config::validate`] runs in [`Hub::new`](crate::Hub::new).

use std::time::Duration;

use crate::error::Error;
use crate::history::{History, HistoryRule};
use crate::protocol::{path_matches, Protocol};

/// What happens to a non-volatile message from a source that cannot wait when a recipient's
/// outbound queue is at twice its bound (see [`Config::max_queue_frames`]; what a recovery's
/// replay put past the bound does not count).
///
/// Volatile messages ([`Message::volatile`](crate::Message::volatile)) are always dropped for
/// that recipient instead, whatever the policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the slow reader with [`CloseCode::SLOW_CONSUMER`](crate::CloseCode::SLOW_CONSUMER)
    /// and a reason. Every message it did receive is still in order and none is skipped.
    #[default]
    Disconnect,
    /// Keep the reader; skip this message for it and report it in
    /// [`Delivery::refused`](crate::Delivery::refused).
    Refuse,
}

/// How a client's `subscribe` request is decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum SubscribePolicy {
    /// Any valid channel name is joined at once.
    #[default]
    Open,
    /// Each request becomes [`Event::SubscribeRequest`](crate::Event::SubscribeRequest); the
    /// application answers with [`Hub::approve_subscribe`](crate::Hub::approve_subscribe) or
    /// [`Hub::deny_subscribe`](crate::Hub::deny_subscribe).
    Approve,
}

/// What [`Hub::open`](crate::Hub::open) does when the requested name is already taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum NameConflict {
    /// The older connection is closed with [`CloseCode::REPLACED`](crate::CloseCode::REPLACED)
    /// and the name moves to the new one: a reconnecting user wins over its own stale socket.
    #[default]
    Replace,
    /// The new connection is refused with [`Error::NameTaken`].
    Refuse,
}

/// An application-level heartbeat, for clients that cannot send WebSocket pings (browsers).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppHeartbeat {
    /// A text frame exactly equal to this is a heartbeat, not a protocol message.
    pub ping: String,
    /// The text frame sent back for each heartbeat.
    pub pong: String,
    /// A connection that sends nothing at all for this long is closed
    /// ([`CloseCode::HEARTBEAT_TIMEOUT`](crate::CloseCode::HEARTBEAT_TIMEOUT)).
    pub alive_timeout: Duration,
}

impl Default for AppHeartbeat {
    /// `ping` → `pong`, closed after 60 s of silence.
    fn default() -> Self {
        AppHeartbeat {
            ping: "ping".into(),
            pong: "pong".into(),
            alive_timeout: Duration::from_secs(60),
        }
    }
}

/// Settings for the connections whose path matches `path`: which protocol they speak (unless
/// their subprotocol names one) and their application heartbeat.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PathRule {
    /// `/raw` matches that path only; `/raw/*` every path under it (`/raw/a/b`), as
    /// `Builder::paths` in tidings-net does.
    pub path: String,
    /// The protocol of connections on these paths. Default [`Protocol::Tidings`].
    pub protocol: Protocol,
    /// The application heartbeat on these paths, in place of
    /// [`Config::app_heartbeat`](crate::Config::app_heartbeat); `None` keeps that one.
    pub app_heartbeat: Option<AppHeartbeat>,
}

impl PathRule {
    /// Connections on `path` speak `protocol`, with the hub-wide heartbeat.
    pub fn new(path: impl Into<String>, protocol: Protocol) -> Self {
        PathRule {
            path: path.into(),
            protocol,
            app_heartbeat: None,
        }
    }

    /// Sets this path's application heartbeat.
    #[must_use]
    pub fn app_heartbeat(mut self, heartbeat: AppHeartbeat) -> Self {
        self.app_heartbeat = Some(heartbeat);
        self
    }

    /// Whether the rule covers `path`.
    pub fn matches(&self, path: &str) -> bool {
        path_matches(&self.path, path)
    }
}

/// Every bound, deadline and policy of a [`Hub`](crate::Hub). See each field for its default.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Open connections at most; [`Hub::open`](crate::Hub::open) refuses more. Default 100,000.
    pub max_connections: usize,
    /// Largest inbound message in bytes; a larger one closes the connection with 1009.
    /// Default 64 KiB.
    pub max_message_size: usize,
    /// The bound on a connection's outbound frames, queued or in flight. A queue past its
    /// bound (in frames or bytes) is *behind*: the sources that feed it are pushed back (a
    /// publishing client's socket is not read, an application publish that waits for room
    /// waits) until it drains to half the bound, and if it stays behind for
    /// `slow_consumer_timeout` the connection is cut as a slow consumer. Sources that cannot
    /// wait may fill a queue to twice its bound, not counting what a recovery's replay put
    /// past the bound; past that, see `slow_consumer`. The frames
    /// share their payload with every recipient, so a deep queue costs a few words per frame.
    /// Default 4,096.
    pub max_queue_frames: usize,
    /// The bound on a connection's outbound bytes, queued or in flight, counted as if no
    /// payload were shared; see `max_queue_frames`. Default 4 MiB.
    pub max_queue_bytes: usize,
    /// How long a queue may stay behind (past its bound, not yet drained to half of it)
    /// before the connection is closed with
    /// [`CloseCode::SLOW_CONSUMER`](crate::CloseCode::SLOW_CONSUMER). Default 5 s.
    pub slow_consumer_timeout: Duration,
    /// Frames handed to the driver (by [`Output::Transmit`](crate::Output::Transmit) or
    /// [`Hub::poll_transmits`](crate::Hub::poll_transmits)) that it has not yet reported
    /// written. Beyond it, frames wait in the core, where volatile ones can still be dropped.
    /// A driver writes what it holds in one burst with one flush, so this is also the largest
    /// burst: 64 cost a reader of a 2,000-message burst thirty round trips through the hub;
    /// 512 and 4,096 measured the same (BENCHMARKS.md). Default 512.
    pub write_window: usize,
    /// What a queue at twice its bound does to a non-volatile message from a source that
    /// cannot wait. Default [`SlowConsumerPolicy::Disconnect`].
    pub slow_consumer: SlowConsumerPolicy,
    /// Rooms (channels) one connection may be in, pending subscribe requests included.
    /// Default 128.
    pub max_rooms_per_connection: usize,
    /// Outstanding acks per connection in each direction. Default 128.
    pub max_pending_acks: usize,
    /// How long a server→client ack may take before it resolves as timed out. Default 5 s.
    pub ack_timeout: Duration,
    /// How long the application has to answer a client `event` that asked for an ack. Past
    /// it the server answers the ack itself, with an `ack` frame whose `error` has code
    /// `no_answer`, and frees its slot (of `max_pending_acks`); a later answer from the
    /// application is refused with [`Error::UnknownAck`].
    /// Default 10 s.
    pub answer_timeout: Duration,
    /// Batches collecting at once, hub-wide. Default 10,000.
    pub max_pending_batches: usize,
    /// A batch flushes early once it holds this many items. Default 256.
    pub max_batch_items: usize,
    /// A batch flushes early once its items reach this many bytes. Default 64 KiB.
    pub max_batch_bytes: usize,
    /// Period of WebSocket pings; `None` sends none. A ping counts against the queue bounds
    /// like any frame, so a connection whose queue is at its bound skips that period's ping. Default
    /// 25 s.
    pub ping_period: Option<Duration>,
    /// With pings on, a connection that sends nothing (no pong, no frame) for this long is
    /// closed with 4001. Must exceed `ping_period`. Default 60 s.
    pub pong_wait: Duration,
    /// An application-level text heartbeat. Default `None`. A [`PathRule`] may set another
    /// for its paths.
    pub app_heartbeat: Option<AppHeartbeat>,
    /// Per-path settings: the wire protocol and application heartbeat of connections on
    /// matching paths; the first rule that matches a connection's path applies. Default
    /// none: every connection speaks `tidings.v1` (unless its subprotocol or its
    /// `ConnectionInfo::protocol` says otherwise) with `app_heartbeat`. Add with
    /// [`Config::path`].
    pub paths: Vec<PathRule>,
    /// How long a closing connection may keep flushing its queue before it is cut. Also the
    /// shutdown grace. Default 5 s.
    pub close_grace: Duration,
    /// After a read/write error, how long before the connection is finally closed and its
    /// state freed. Default 0.
    pub error_close_delay: Duration,
    /// Inbound messages (any frame, pings included) a connection may send per
    /// `rate_window`. Beyond it each one is dropped and answered with `too_many_requests`,
    /// which counts as a protocol error, so a flood ends in 4002. `None`: no limit. Default
    /// 100.
    pub max_inbound_rate: Option<u32>,
    /// The window of `max_inbound_rate`. Default 1 s.
    pub rate_window: Duration,
    /// If set, a connection must be marked authenticated with
    /// [`Hub::authenticate`](crate::Hub::authenticate) within this time of opening, or it is
    /// closed with [`CloseCode::AUTH_TIMEOUT`](crate::CloseCode::AUTH_TIMEOUT) (4005). A peer
    /// that upgrades and then says nothing is closed by it too. Default `None`.
    pub auth_timeout: Option<Duration>,
    /// How client `subscribe` requests are decided. Default [`SubscribePolicy::Open`].
    pub subscribe_policy: SubscribePolicy,
    /// Whether clients may `publish` to channels they are subscribed to. Default `false`:
    /// clients send events and the application decides what to broadcast.
    pub client_publish: bool,
    /// Whether `tidings.v1` clients may send binary frames; if not, one closes the connection
    /// with 1003. (A raw connection's binary frames are its data: always accepted.) Default
    /// `true`.
    pub accept_binary: bool,
    /// Longest room, channel, event or namespace name in bytes. Default 128.
    pub max_name_len: usize,
    /// Protocol errors a connection may cause within `error_window` before it is closed with
    /// 4002. Default 10.
    pub max_errors: u32,
    /// The window over which `max_errors` counts. Default 10 s.
    pub error_window: Duration,
    /// What happens when a connection is opened under a name already in use. Default
    /// [`NameConflict::Replace`].
    pub name_conflict: NameConflict,
    /// Whether each new connection is greeted with a `welcome` frame. Default `true`.
    pub welcome: bool,
    /// Whether publishes are also output as [`Output::Cluster`](crate::Output::Cluster) for a
    /// backplane to carry to other nodes. Default `false`.
    pub cluster: bool,
    /// Whether the backplane numbers and keeps the publications of channels that keep
    /// history, so that every node hands out the same offsets and a client recovers on any
    /// node (only with `cluster`; tidings-net sets it from its backplane: on for one that
    /// numbers streams, tidings-redis, and off otherwise). A publish to such a channel goes out as
    /// [`ClusterMessage::Sequence`](crate::ClusterMessage::Sequence) and is delivered here
    /// when it comes back numbered; a subscribe or `history` request this node cannot answer
    /// from what it saw asks the backplane ([`Output::Fetch`](crate::Output::Fetch)).
    /// Default `false`.
    pub sequenced: bool,
    /// Seed for room epochs: the n-th room created gets epoch `seed + n`. `None` (the
    /// default) counts from 0 here, deterministically (tests, the simulation); tidings-net
    /// gives a hub a random seed at each start instead, so that an epoch changes when a
    /// server restarts (PROTOCOL.md, "Offsets and epochs") and differs between nodes. Set
    /// one for reproducible epochs.
    pub seed: Option<u64>,
    /// Which channels keep history, so that clients can recover what they missed and ask for
    /// a backlog: the first rule whose pattern matches a channel's name applies (add rules
    /// with [`Config::history`]). Default none: no channel keeps history.
    pub history: Vec<HistoryRule>,
    /// The bytes every channel's history may hold together. Past it the kept publications
    /// closest to expiring are dropped first. Default 64 MiB.
    pub max_history_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 100_000,
            max_message_size: 64 * 1024,
            max_queue_frames: 4096,
            max_queue_bytes: 4 * 1024 * 1024,
            slow_consumer_timeout: Duration::from_secs(5),
            write_window: 512,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            max_rooms_per_connection: 128,
            max_pending_acks: 128,
            ack_timeout: Duration::from_secs(5),
            answer_timeout: Duration::from_secs(10),
            max_pending_batches: 10_000,
            max_batch_items: 256,
            max_batch_bytes: 64 * 1024,
            ping_period: Some(Duration::from_secs(25)),
            pong_wait: Duration::from_secs(60),
            app_heartbeat: None,
            paths: Vec::new(),
            close_grace: Duration::from_secs(5),
            error_close_delay: Duration::ZERO,
            auth_timeout: None,
            max_inbound_rate: Some(100),
            rate_window: Duration::from_secs(1),
            subscribe_policy: SubscribePolicy::Open,
            client_publish: false,
            accept_binary: true,
            max_name_len: 128,
            max_errors: 10,
            error_window: Duration::from_secs(10),
            name_conflict: NameConflict::Replace,
            welcome: true,
            cluster: false,
            sequenced: false,
            seed: None,
            history: Vec::new(),
            max_history_bytes: 64 * 1024 * 1024,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        impl Config {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $field(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`Config::max_connections`].
    max_connections: usize;
    /// Sets [`Config::max_message_size`].
    max_message_size: usize;
    /// Sets [`Config::max_queue_frames`].
    max_queue_frames: usize;
    /// Sets [`Config::max_queue_bytes`].
    max_queue_bytes: usize;
    /// Sets [`Config::slow_consumer_timeout`].
    slow_consumer_timeout: Duration;
    /// Sets [`Config::write_window`].
    write_window: usize;
    /// Sets [`Config::slow_consumer`].
    slow_consumer: SlowConsumerPolicy;
    /// Sets [`Config::max_rooms_per_connection`].
    max_rooms_per_connection: usize;
    /// Sets [`Config::max_pending_acks`].
    max_pending_acks: usize;
    /// Sets [`Config::ack_timeout`].
    ack_timeout: Duration;
    /// Sets [`Config::answer_timeout`].
    answer_timeout: Duration;
    /// Sets [`Config::max_pending_batches`].
    max_pending_batches: usize;
    /// Sets [`Config::max_batch_items`].
    max_batch_items: usize;
    /// Sets [`Config::max_batch_bytes`].
    max_batch_bytes: usize;
    /// Sets [`Config::ping_period`].
    ping_period: Option<Duration>;
    /// Sets [`Config::pong_wait`].
    pong_wait: Duration;
    /// Sets [`Config::app_heartbeat`].
    app_heartbeat: Option<AppHeartbeat>;
    /// Sets [`Config::close_grace`].
    close_grace: Duration;
    /// Sets [`Config::error_close_delay`].
    error_close_delay: Duration;
    /// Sets [`Config::auth_timeout`].
    auth_timeout: Option<Duration>;
    /// Sets [`Config::max_inbound_rate`].
    max_inbound_rate: Option<u32>;
    /// Sets [`Config::rate_window`].
    rate_window: Duration;
    /// Sets [`Config::subscribe_policy`].
    subscribe_policy: SubscribePolicy;
    /// Sets [`Config::client_publish`].
    client_publish: bool;
    /// Sets [`Config::accept_binary`].
    accept_binary: bool;
    /// Sets [`Config::max_name_len`].
    max_name_len: usize;
    /// Sets [`Config::max_errors`].
    max_errors: u32;
    /// Sets [`Config::error_window`].
    error_window: Duration;
    /// Sets [`Config::name_conflict`].
    name_conflict: NameConflict;
    /// Sets [`Config::welcome`].
    welcome: bool;
    /// Sets [`Config::cluster`].
    cluster: bool;
    /// Sets [`Config::sequenced`].
    sequenced: bool;
    /// Sets [`Config::seed`].
    seed: Option<u64>;
    /// Sets [`Config::max_history_bytes`].
    max_history_bytes: usize;
}

impl Config {
    /// Adds a [`PathRule`] after those already set
    /// (`Config::default().path(PathRule::new("/raw/*", Protocol::Raw))`).
    #[must_use]
    pub fn path(mut self, rule: PathRule) -> Self {
        self.paths.push(rule);
        self
    }

    /// The index in `paths` of the first rule that covers `path`.
    pub(crate) fn rule_for(&self, path: &str) -> Option<usize> {
        self.paths.iter().position(|rule| rule.matches(path))
    }

    /// The application heartbeat of connections under rule `rule` (an index in `paths`).
    pub(crate) fn heartbeat_of(&self, rule: Option<usize>) -> Option<&AppHeartbeat> {
        rule.and_then(|i| self.paths.get(i))
            .and_then(|r| r.app_heartbeat.as_ref())
            .or(self.app_heartbeat.as_ref())
    }

    /// Checks that the bounds are usable together.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |why: &'static str| Err(Error::InvalidConfig(why));
        if let Some(period) = self.ping_period {
            if period.is_zero() {
                return fail("ping_period must be greater than zero");
            }
            if period >= self.pong_wait {
                return fail("ping_period must be shorter than pong_wait");
            }
        }
        let rules = self.paths.iter().filter_map(|r| r.app_heartbeat.as_ref());
        for hb in self.app_heartbeat.iter().chain(rules) {
            if hb.alive_timeout.is_zero() {
                return fail("app_heartbeat.alive_timeout must be greater than zero");
            }
            if hb.ping.is_empty() {
                return fail("app_heartbeat.ping must not be empty");
            }
        }
        if self.paths.iter().any(|r| !r.path.starts_with('/')) {
            return fail("a path rule's path must start with /");
        }
        if self.max_connections == 0 || self.max_connections >= u32::MAX as usize {
            return fail("max_connections must be between 1 and u32::MAX - 1");
        }
        if self.max_message_size == 0 {
            return fail("max_message_size must be greater than zero");
        }
        if self.max_queue_frames == 0 || self.max_queue_bytes == 0 {
            return fail("max_queue_frames and max_queue_bytes must be greater than zero");
        }
        if self.slow_consumer_timeout.is_zero() {
            return fail("slow_consumer_timeout must be greater than zero");
        }
        if self.answer_timeout.is_zero() {
            return fail("answer_timeout must be greater than zero");
        }
        if self.write_window == 0 {
            return fail("write_window must be at least 1");
        }
        if self.max_batch_items == 0 || self.max_batch_bytes == 0 {
            return fail("max_batch_items and max_batch_bytes must be greater than zero");
        }
        if self.max_name_len == 0 {
            return fail("max_name_len must be greater than zero");
        }
        if self.max_errors == 0 {
            return fail("max_errors must be at least 1");
        }
        if self.max_inbound_rate == Some(0) || self.rate_window.is_zero() {
            return fail("max_inbound_rate and rate_window must be greater than zero");
        }
        if self.auth_timeout.is_some_and(|t| t.is_zero()) {
            return fail("auth_timeout must be greater than zero");
        }
        for rule in &self.history {
            if rule.pattern.is_empty() || rule.history.max_len == 0 || rule.history.ttl.is_zero() {
                return fail("a history rule needs a pattern, a max_len and a ttl above zero");
            }
        }
        if self.max_history_bytes == 0 {
            return fail("max_history_bytes must be greater than zero");
        }
        Ok(())
    }

    /// Channels whose name matches `pattern` (a name, or a prefix followed by `*`) keep
    /// `history`, unless an earlier rule matched them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidings_core::{Config, History};
    /// let config = Config::default()
    ///     .history("chat:*", History::new(100, Duration::from_secs(120)))
    ///     .history("user:*", History::new(20, Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn history(mut self, pattern: &str, history: History) -> Self {
        self.history.push(HistoryRule {
            pattern: pattern.to_owned(),
            history,
        });
        self
    }

    /// What the channel `name` keeps in the backplane, if it keeps history and the backplane
    /// numbers it ([`Config::sequenced`]).
    pub(crate) fn sequenced_history(&self, name: &str) -> Option<History> {
        if self.cluster && self.sequenced {
            self.history_of(name)
        } else {
            None
        }
    }

    /// What the channel `name` keeps, if anything.
    pub(crate) fn history_of(&self, name: &str) -> Option<History> {
        self.history
            .iter()
            .find(|rule| rule.matches(name))
            .map(|rule| rule.history)
    }

    /// The queue bound of every connection.
    pub(crate) fn bound(&self) -> crate::session::Bound {
        crate::session::Bound {
            frames: self.max_queue_frames,
            bytes: self.max_queue_bytes,
        }
    }

    /// How long a connection under rule `rule` (an index in `paths`) may stay silent before
    /// it is closed, if anything limits it.
    pub(crate) fn silence_limit(&self, rule: Option<usize>) -> Option<Duration> {
        let pong = self.ping_period.map(|_| self.pong_wait);
        let alive = self.heartbeat_of(rule).map(|hb| hb.alive_timeout);
        match (pong, alive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("default config");
    }

    #[test]
    fn ping_period_must_be_shorter_than_pong_wait() {
        let c = Config::default()
            .ping_period(Some(Duration::from_secs(10)))
            .pong_wait(Duration::from_secs(10));
        assert!(matches!(c.validate(), Err(Error::InvalidConfig(_))));
        let c = c.pong_wait(Duration::from_secs(11));
        assert!(c.validate().is_ok());
        // Without pings, pong_wait is not constrained.
        let c = Config::default()
            .ping_period(None)
            .pong_wait(Duration::ZERO);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zero_bounds_are_rejected() {
        for c in [
            Config::default().max_queue_frames(0),
            Config::default().write_window(0),
            Config::default().max_message_size(0),
            Config::default().max_connections(0),
            Config::default().max_errors(0),
            Config::default().max_batch_items(0),
            Config::default().max_name_len(0),
            Config::default().max_inbound_rate(Some(0)),
            Config::default().rate_window(Duration::ZERO),
            Config::default().auth_timeout(Some(Duration::ZERO)),
            Config::default().max_history_bytes(0),
            Config::default().history("", History::new(1, Duration::from_secs(1))),
            Config::default().history("a", History::new(0, Duration::from_secs(1))),
            Config::default().history("a", History::new(1, Duration::ZERO)),
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn silence_limit_takes_the_tighter_heartbeat() {
        let c = Config::default().app_heartbeat(Some(AppHeartbeat {
            alive_timeout: Duration::from_secs(30),
            ..AppHeartbeat::default()
        }));
        assert_eq!(c.silence_limit(None), Some(Duration::from_secs(30)));
        let c = c.ping_period(None);
        assert_eq!(c.silence_limit(None), Some(Duration::from_secs(30)));
        let c = c.app_heartbeat(None);
        assert_eq!(c.silence_limit(None), None);
        assert_eq!(
            Config::default().silence_limit(None),
            Some(Duration::from_secs(60))
        );
    }
}
