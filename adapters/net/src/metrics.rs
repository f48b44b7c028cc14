//! The hub's counters in the Prometheus text format, rendered at each scrape from one
//! [`Counters`] snapshot: nothing is counted twice, and nothing is added to the fan-out path
//! (the core's counters are plain adds already). The built-in server serves them at the
//! path given to [`Builder::metrics`](crate::Builder::metrics); an application with its own
//! server renders them with [`Handle::metrics`](crate::Handle::metrics).
//!
//! Encoded by prometheus-client, the Prometheus project's own Rust client.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tidings_core::Counters;

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

/// `counters` in the text format, every metric named `tidings_...`.
pub(crate) fn render(counters: &Counters) -> String {
    let mut registry = Registry::with_prefix("tidings");
    let gauges = [
        ("connections", "Connections open now.", counters.connections),
        (
            "rooms",
            "Rooms that exist now, in every namespace.",
            counters.rooms,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, gauge);
    }
    for (name, help, value) in COUNTERS {
        let counter = Counter::<u64>::default();
        counter.inc_by(value(counters));
        registry.register(*name, *help, counter);
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
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tidings_core::CloseCode;

    use super::*;

    /// The value of the sample line that starts with `sample ` in `text`.
    fn value(text: &str, sample: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map(|v| v.parse().expect("an integer"))
    }

    #[test]
    fn every_counter_is_its_field_and_closes_go_by_code() {
        let mut c = Counters::default();
        c.connections = 3;
        c.rooms = 4;
        // Each total a distinct value, so a name wired to the wrong field shows.
        let fields: [&mut u64; 17] = [
            &mut c.connections_opened,
            &mut c.connections_refused,
            &mut c.frames_in,
            &mut c.bytes_in,
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
            &mut c.answers_timed_out,
            &mut c.batches_flushed,
            &mut c.remote_publishes,
        ];
        for (n, field) in fields.into_iter().enumerate() {
            *field = 100 + n as u64;
        }
        c.closes.insert(CloseCode(1000), 7);
        c.closes.insert(CloseCode::SLOW_CONSUMER, 2);
        let text = render(&c);
        assert_eq!(value(&text, "tidings_connections"), Some(3));
        assert_eq!(value(&text, "tidings_rooms"), Some(4));
        for (n, (name, _, _)) in COUNTERS.iter().enumerate() {
            let sample = format!("tidings_{name}_total");
            assert_eq!(value(&text, &sample), Some(100 + n as u64), "{sample}");
        }
        assert_eq!(
            value(&text, "tidings_connections_closed_total{code=\"1000\"}"),
            Some(7)
        );
        assert_eq!(
            value(&text, "tidings_connections_closed_total{code=\"4000\"}"),
            Some(2)
        );
        assert!(text.contains("# TYPE tidings_connections gauge"), "{text}");
        assert!(text.contains("# TYPE tidings_frames_out counter"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
