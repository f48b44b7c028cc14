//! The live dashboard's feed: once a period the server samples its own hub (the counters
//! and every connection's queue depth) and publishes the sample to the `dashboard` room,
//! which the dashboard page joins like any chat room. The page turns totals into rates and
//! plots the last five minutes.

use std::time::Duration;

use serde::Serialize;
use tidings_smol::{CloseCode, Handle, Message};

/// The room the samples are published to.
pub const ROOM: &str = "dashboard";

/// The dashboard page: it joins [`ROOM`] over `/ws` and plots what arrives.
pub const PAGE: &str = include_str!("../pages/dashboard.html");

/// One sample of the hub, as the page gets it (`event: "sample"`). Totals since the start;
/// the page takes rates from consecutive samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Milliseconds since the feed started.
    pub t_ms: u64,
    /// Connections open now.
    pub connections: usize,
    /// Rooms that exist now.
    pub rooms: usize,
    /// Messages queued for recipients, one per recipient (the samples themselves included).
    pub deliveries: u64,
    /// Volatile messages dropped for readers that were behind, and messages refused for them.
    pub dropped: u64,
    /// Readers cut as slow consumers (4000).
    pub cuts: u64,
    /// Connections closed, for any reason.
    pub closed: u64,
    /// The deepest queue now, in frames.
    pub queue_max: usize,
    /// The 99th percentile of the queue depths now, in frames.
    pub queue_p99: usize,
    /// Milliseconds the hub task has spent working.
    pub busy_ms: u64,
}

/// The depth at or below which `share` of `depths` lie (0 for none); sorts `depths`.
fn percentile(depths: &mut [usize], share: f64) -> usize {
    if depths.is_empty() {
        return 0;
    }
    depths.sort_unstable();
    let rank = (share * depths.len() as f64).ceil() as usize;
    depths[rank.clamp(1, depths.len()) - 1]
}

impl Sample {
    /// Samples the hub behind `handle`; `None` once it has stopped.
    pub async fn take(handle: &Handle, t_ms: u64) -> Option<Sample> {
        let counters = handle.counters().await.ok()?;
        let mut depths = handle.queue_depths().await.ok()?;
        Some(Sample {
            t_ms,
            connections: counters.connections,
            rooms: counters.rooms,
            deliveries: counters.deliveries,
            dropped: counters.dropped + counters.refused,
            cuts: counters
                .closes
                .get(&CloseCode::SLOW_CONSUMER)
                .copied()
                .unwrap_or(0),
            closed: counters.closes.values().sum(),
            queue_max: depths.iter().copied().max().unwrap_or(0),
            queue_p99: percentile(&mut depths, 0.99),
            busy_ms: handle.busy().await.ok()?.as_millis() as u64,
        })
    }
}

/// Publishes a [`Sample`] to [`ROOM`] every `period` until the hub stops. Spawn it.
pub async fn feed(handle: Handle, period: Duration) {
    let start = std::time::Instant::now();
    loop {
        smol::Timer::after(period).await;
        let t_ms = start.elapsed().as_millis() as u64;
        let Some(sample) = Sample::take(&handle, t_ms).await else {
            return;
        };
        // Nobody watching is not an error; a stopped hub ends the feed.
        if let Err(tidings_smol::Error::Stopped) = handle
            .to_room(
                ROOM,
                Message::json("sample", serde_json::to_value(&sample).unwrap_or_default()),
            )
            .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_depth_at_or_below_which_that_share_lies() {
        assert_eq!(percentile(&mut [], 0.99), 0);
        assert_eq!(percentile(&mut [7], 0.99), 7);
        let mut hundred: Vec<usize> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut hundred, 0.99), 99);
        assert_eq!(percentile(&mut hundred, 0.5), 50);
        let mut two = [0, 4096];
        assert_eq!(percentile(&mut two, 0.99), 4096);
        assert_eq!(percentile(&mut two, 0.5), 0);
    }
}
