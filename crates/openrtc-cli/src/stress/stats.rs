//! Latency figures of a stress run: a set of samples in milliseconds summarised as count,
//! p50, p95, p99 and max (nearest-rank percentiles). Pure.

use serde::Serialize;

/// A summary of latency samples, in milliseconds rounded to the microsecond; every figure is
/// `None` without samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// How many samples.
    pub count: u64,
    /// The median.
    pub p50_ms: Option<f64>,
    /// The 95th percentile.
    pub p95_ms: Option<f64>,
    /// The 99th percentile.
    pub p99_ms: Option<f64>,
    /// The largest.
    pub max_ms: Option<f64>,
}

impl LatencySummary {
    /// Summarises `samples_ms` (sorted in place).
    #[must_use]
    pub fn of(samples_ms: &mut [f64]) -> Self {
        samples_ms.sort_by(f64::total_cmp);
        Self {
            count: samples_ms.len() as u64,
            p50_ms: percentile(samples_ms, 50.0).map(round_ms),
            p95_ms: percentile(samples_ms, 95.0).map(round_ms),
            p99_ms: percentile(samples_ms, 99.0).map(round_ms),
            max_ms: samples_ms.last().copied().map(round_ms),
        }
    }
}

/// The nearest-rank `pct`th percentile of `sorted_ms`: the smallest sample at or above
/// `pct` percent of them.
#[must_use]
pub fn percentile(sorted_ms: &[f64], pct: f64) -> Option<f64> {
    if sorted_ms.is_empty() {
        return None;
    }
    let rank = (pct / 100.0 * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms.get(rank.clamp(1, sorted_ms.len()) - 1).copied()
}

/// Rounds a figure to three decimals for the report (microsecond resolution in ms).
#[must_use]
pub fn round_ms(value_ms: f64) -> f64 {
    (value_ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let summary = LatencySummary::of(&mut samples);
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, Some(50.0));
        assert_eq!(summary.p95_ms, Some(95.0));
        assert_eq!(summary.p99_ms, Some(99.0));
        assert_eq!(summary.max_ms, Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(LatencySummary::of(&mut []), LatencySummary::default());
        assert_eq!(round_ms(1.234_567), 1.235);
    }
}
