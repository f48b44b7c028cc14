//! The hub's counters in the Prometheus text format, rendered at each scrape from one
//! [`Counters`] snapshot: nothing is counted twice, and nothing is added to the fan-out path
//! (the core's counters are plain adds already). The built-in server serves them at the
//! path given to [`Builder::metrics`](crate::Builder::metrics); an application with its own
//! server renders them with [`Handle::metrics`](crate::Handle::metrics).
//!
//! Encoded by prometheus-client, the Prometheus project's own Rust client.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tidings_core::Counters;

use crate::BackplaneStats;

/// What one scrape reads: the hub's counters and what the driver and the server add.
pub(crate) struct Snapshot {
    pub counters: Counters,
    /// The hub task's time spent working.
    pub busy: Duration,
    /// Each connection's queue depth in frames.
    pub depths: Vec<usize>,
    /// Upgrade requests refused, by HTTP status.
    pub refusals: BTreeMap<u16, u64>,
    pub backplane: Option<BackplaneStats>,
}

/// The queue-depth histogram's buckets, in frames: empty, a few, one write window (512),
/// the default bound (4,096) and twice it (where non-waiting publishes stop).
const DEPTH_BUCKETS: [f64; 7] = [0.0, 1.0, 16.0, 128.0, 512.0, 4096.0, 8192.0];

/// An HTTP status, as the label of `tidings_upgrades_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: u16,
}

/// The content type of [`render`]'s text (OpenMetrics, which Prometheus reads).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A close code, as the label of `tidings_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: u16,
}

/// A counter: its name (without the `tidings_` prefix and the `_total` suffix), its help,
/// and its value in a snapshot.
type Total = (&'static str, &'static str, fn(&Counters) -> u64);

/// Every counter tidings exposes besides the gauges and the closes by code.
const COUNTERS: &[Total] = &[
    ("connections_opened", "Connections opened.", |c| {
        c.connections_opened
    }),
    (
        "connections_refused",
        "Connections the hub refused to open (limits, names, shutdown).",
        |c| c.connections_refused,
    ),
    ("frames_in", "WebSocket messages received.", |c| c.frames_in),
    ("bytes_in", "Bytes of WebSocket messages received.", |c| {
        c.bytes_in
    }),
    (
        "deliveries",
        "Messages queued for recipients by publishes and batches, one per recipient.",
        |c| c.deliveries,
    ),
    (
        "frames_out",
        "WebSocket frames handed to the sockets.",
        |c| c.frames_out,
    ),
    (
        "bytes_out",
        "Bytes of WebSocket frames handed to the sockets.",
        |c| c.bytes_out,
    ),
    (
        "dropped",
        "Volatile messages dropped for recipients that were behind.",
        |c| c.dropped,
    ),
    (
        "refused",
        "Messages refused for slow recipients (SlowConsumerPolicy::Refuse).",
        |c| c.refused,
    ),
    (
        "reads_paused",
        "Times a publishing client's reading was paused by flow control.",
        |c| c.reads_paused,
    ),
    ("protocol_errors", "Error frames sent to clients.", |c| {
        c.protocol_errors
    }),
    (
        "acks_replied",
        "Server-to-client acks answered by the client.",
        |c| c.acks_replied,
    ),
    (
        "acks_timed_out",
        "Server-to-client acks that timed out.",
        |c| c.acks_timed_out,
    ),
    (
        "acks_failed",
        "Server-to-client acks failed because the connection closed.",
        |c| c.acks_failed,
    ),
    (
        "acks_unknown",
        "Ack replies for ids that were not pending, ignored.",
        |c| c.acks_unknown,
    ),
    (
        "pings_answered",
        "Pings of Handle::ping whose pong came back.",
        |c| c.pings_answered,
    ),
    (
        "pings_timed_out",
        "Pings of Handle::ping whose pong did not come back in time.",
        |c| c.pings_timed_out,
    ),
    (
        "pings_failed",
        "Pings of Handle::ping ended by the connection's close.",
        |c| c.pings_failed,
    ),
    (
        "answers_timed_out",
        "Client ack requests the server answered with no_answer.",
        |c| c.answers_timed_out,
    ),
    ("batches_flushed", "Batches flushed.", |c| c.batches_flushed),
    (
        "remote_publishes",
        "Publishes received from other nodes.",
        |c| c.remote_publishes,
    ),
];

/// `snapshot` in the text format, every metric named `tidings_...`.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let counters = &snapshot.counters;
    let mut registry = Registry::with_prefix("tidings");
    let gauges = [
        ("connections", "Connections open now.", counters.connections),
        (
            "rooms",
            "Rooms that exist now, in every namespace.",
            counters.rooms,
        ),
        (
            "members",
            "Room memberships now, every room's members added up.",
            counters.members,
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, gauge(value));
    }
    for (name, help, value) in COUNTERS {
        registry.register(*name, *help, counter(value(counters)));
    }
    let closed = Family::<Code, Counter>::default();
    for (code, n) in &counters.closes {
        closed.get_or_create(&Code { code: code.0 }).inc_by(*n);
    }
    registry.register(
        "connections_closed",
        "Connections closed, by close code (4000: slow consumer, 4001: no pong, 4002: rate limit).",
        closed,
    );
    let refused = Family::<Status, Counter>::default();
    for (status, n) in &snapshot.refusals {
        refused
            .get_or_create(&Status { status: *status })
            .inc_by(*n);
    }
    registry.register(
        "upgrades_refused",
        "WebSocket upgrade requests refused, by HTTP status.",
        refused,
    );
    let depths = Histogram::new(DEPTH_BUCKETS);
    for &depth in &snapshot.depths {
        depths.observe(depth as f64);
    }
    registry.register(
        "queue_depth_frames",
        "Connections by queue depth: frames queued or not yet written, sampled at the scrape.",
        depths,
    );
    let busy: Counter<f64> = Counter::default();
    busy.inc_by(snapshot.busy.as_secs_f64());
    registry.register_with_unit(
        "hub_busy",
        "Time the hub task spent working; its rate is the task's load (1 is saturated).",
        Unit::Seconds,
        busy,
    );
    if let Some(b) = &snapshot.backplane {
        registry.register(
            "backplane_up",
            "Whether the backplane is up (1) or not (0).",
            gauge(usize::from(b.up)),
        );
        let totals = [
            (
                "backplane_sent",
                "Messages sent to the other nodes.",
                b.sent,
            ),
            (
                "backplane_received",
                "Messages from other nodes delivered here.",
                b.received,
            ),
            (
                "backplane_lost",
                "Messages published here that never reached the other nodes.",
                b.lost,
            ),
            (
                "backplane_outages",
                "Times the backplane's transport went down.",
                b.outages,
            ),
        ];
        for (name, help, value) in totals {
            registry.register(name, help, counter(value));
        }
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

fn gauge(value: usize) -> Gauge<i64> {
    let gauge = Gauge::<i64>::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

fn counter(value: u64) -> Counter<u64> {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    counter
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tidings_core::CloseCode;

    use super::*;

    /// The value of the sample line that starts with `sample ` in `text`.
    fn value(text: &str, sample: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map(|v| v.parse().expect("a number"))
    }

    #[test]
    fn every_counter_is_its_field_and_closes_go_by_code() {
        let mut c = Counters::default();
        c.connections = 3;
        c.rooms = 4;
        c.members = 9;
        // Each total a distinct value, so a name wired to the wrong field shows.
        let fields: [&mut u64; 21] = [
            &mut c.connections_opened,
            &mut c.connections_refused,
            &mut c.frames_in,
            &mut c.bytes_in,
            &mut c.deliveries,
            &mut c.frames_out,
            &mut c.bytes_out,
            &mut c.dropped,
            &mut c.refused,
            &mut c.reads_paused,
            &mut c.protocol_errors,
            &mut c.acks_replied,
            &mut c.acks_timed_out,
            &mut c.acks_failed,
            &mut c.acks_unknown,
            &mut c.pings_answered,
            &mut c.pings_timed_out,
            &mut c.pings_failed,
            &mut c.answers_timed_out,
            &mut c.batches_flushed,
            &mut c.remote_publishes,
        ];
        for (n, field) in fields.into_iter().enumerate() {
            *field = 100 + n as u64;
        }
        c.closes.insert(CloseCode(1000), 7);
        c.closes.insert(CloseCode::SLOW_CONSUMER, 2);
        let mut refusals = BTreeMap::new();
        refusals.insert(403, 5);
        let text = render(&Snapshot {
            counters: c,
            busy: Duration::from_millis(1500),
            depths: vec![0, 0, 3, 600],
            refusals,
            backplane: None,
        });
        assert_eq!(value(&text, "tidings_connections"), Some(3.0));
        assert_eq!(value(&text, "tidings_rooms"), Some(4.0));
        assert_eq!(value(&text, "tidings_members"), Some(9.0));
        for (n, (name, _, _)) in COUNTERS.iter().enumerate() {
            let sample = format!("tidings_{name}_total");
            assert_eq!(value(&text, &sample), Some(100.0 + n as f64), "{sample}");
        }
        assert_eq!(
            value(&text, "tidings_connections_closed_total{code=\"1000\"}"),
            Some(7.0)
        );
        assert_eq!(
            value(&text, "tidings_connections_closed_total{code=\"4000\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "tidings_upgrades_refused_total{status=\"403\"}"),
            Some(5.0)
        );
        assert_eq!(value(&text, "tidings_queue_depth_frames_count"), Some(4.0));
        assert_eq!(value(&text, "tidings_queue_depth_frames_sum"), Some(603.0));
        // Cumulative buckets: 2 at 0, 2 up to 1 and 16, 3 up to 128, 4 from 4096.
        assert_eq!(
            value(&text, "tidings_queue_depth_frames_bucket{le=\"0.0\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "tidings_queue_depth_frames_bucket{le=\"16.0\"}"),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "tidings_queue_depth_frames_bucket{le=\"512.0\"}"),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "tidings_queue_depth_frames_bucket{le=\"4096.0\"}"),
            Some(4.0)
        );
        assert!(
            text.contains("tidings_hub_busy_seconds_total 1.5"),
            "{text}"
        );
        assert!(
            !text.contains("backplane"),
            "no backplane, no backplane metrics"
        );
        assert!(text.contains("# TYPE tidings_connections gauge"), "{text}");
        assert!(text.contains("# TYPE tidings_frames_out counter"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
