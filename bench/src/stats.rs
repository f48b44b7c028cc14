//! Summaries: latency percentiles of one run, what its deliveries say publish by publish, and
//! the median with its range over runs.

use std::collections::BTreeMap;

/// The value at quantile `q` (0..=1) of `sorted`, nearest rank; 0 for no samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One delivery, as `--deliveries` keeps it: the publish's number (from 0), the
/// subscriber's, and its latency in nanoseconds.
pub type Delivery = (u32, u32, u64);

/// A publish is *late* when its first delivery took longer than this: on an idle server the
/// first of 1,000 arrives within a few hundred microseconds.
pub const LATE_NS: u64 = 1_000_000;

/// What one run's deliveries say publish by publish: whether a latency tail is every
/// publish's last readers or a few publishes that start late.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerPublish {
    /// Publishes whose first delivery took longer than [`LATE_NS`], in percent.
    pub late_pct: f64,
    /// Of the deliveries at or over the run's p99, those of late publishes, in percent.
    pub tail_from_late_pct: f64,
    /// The p99 of the other publishes' deliveries, in microseconds.
    pub p99_on_time_us: f64,
    /// The median over publishes of the first delivery's latency, in microseconds.
    pub first_p50_us: f64,
    /// The median over publishes of the last delivery's latency, in microseconds.
    pub last_p50_us: f64,
}

/// Sums up `deliveries` publish by publish; `None` for none.
pub fn per_publish(deliveries: &[Delivery]) -> Option<PerPublish> {
    // (first, last) latency of each publish.
    let mut spans: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for &(publish, _, latency) in deliveries {
        let span = spans.entry(publish).or_insert((latency, latency));
        *span = (span.0.min(latency), span.1.max(latency));
    }
    let starts_late = |span: &(u64, u64)| span.0 > LATE_NS;
    let late = |publish: u32| spans.get(&publish).is_some_and(starts_late);
    let mut all: Vec<u64> = deliveries.iter().map(|d| d.2).collect();
    all.sort_unstable();
    let p99 = quantile(&all, 0.99);
    let (tail, tail_late) = deliveries
        .iter()
        .filter(|d| d.2 >= p99)
        .fold((0, 0), |(all, late_ones), d| {
            (all + 1, late_ones + usize::from(late(d.0)))
        });
    let mut on_time: Vec<u64> = deliveries
        .iter()
        .filter(|d| !late(d.0))
        .map(|d| d.2)
        .collect();
    on_time.sort_unstable();
    let median = |f: fn(&(u64, u64)) -> u64| {
        let v: Vec<f64> = spans.values().map(|s| f(s) as f64 / 1000.0).collect();
        Spread::of(&v).median
    };
    let percent = |part: usize, whole: usize| 100.0 * part as f64 / whole.max(1) as f64;
    (!spans.is_empty()).then(|| PerPublish {
        late_pct: percent(
            spans.values().filter(|s| starts_late(s)).count(),
            spans.len(),
        ),
        tail_from_late_pct: percent(tail_late, tail),
        p99_on_time_us: quantile(&on_time, 0.99) as f64 / 1000.0,
        first_p50_us: median(|s| s.0),
        last_p50_us: median(|s| s.1),
    })
}

/// The median of several runs' figures, with their minimum and maximum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest figure.
    pub min: f64,
    /// The largest figure.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; all zero for none.
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let Some((&min, &max)) = v.first().zip(v.last()) else {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        };
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 0 {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Spread { median, min, max }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            self.median, self.min, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn median_and_range() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(&[]).median, 0.0);
        assert_eq!(Spread::of(&[1.0, 2.0]).show(1), "1.5 (1.0–2.0)");
    }

    #[test]
    fn per_publish_tells_late_publishes_from_last_readers() {
        // 100 publishes to 10 readers: reader r of publish p after (100 + 10 r) µs, except
        // publishes 7 and 8, which start after 2 and 3 ms and take 100 µs a reader.
        let mut d = Vec::new();
        for p in 0..100u32 {
            for r in 0..10u32 {
                let us = match p {
                    7 => 2_000 + 100 * r,
                    8 => 3_000 + 100 * r,
                    _ => 100 + 10 * r,
                };
                d.push((p, r, u64::from(us) * 1000));
            }
        }
        let s = per_publish(&d).expect("deliveries");
        assert_eq!(s.late_pct, 2.0);
        // The p99 (the 990th of 1,000) is publish 7's last delivery: it and publish 8's ten
        // are the tail, all late.
        assert_eq!(s.tail_from_late_pct, 100.0);
        assert_eq!(s.p99_on_time_us, 190.0);
        assert_eq!(s.first_p50_us, 100.0);
        assert_eq!(s.last_p50_us, 190.0);
        assert_eq!(per_publish(&[]), None);
    }
}
