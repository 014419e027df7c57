//! The worker's stall durations as a histogram with fixed bounds, for `/metrics`: observed once
//! per stall (on the probe's cold stall path), read by snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

use openrtc_proto::StallBucket;

/// The buckets' upper bounds in milliseconds; a last bucket takes the rest (`+Inf`).
pub(crate) const BOUNDS_MS: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// Stall counts per bucket (not cumulative) and the sum of their durations.
#[derive(Debug, Default)]
pub(crate) struct StallHistogram {
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_ns: AtomicU64,
}

impl StallHistogram {
    /// Counts one stall of `duration_ns`.
    pub(crate) fn observe(&self, duration_ns: u64) {
        let index = BOUNDS_MS
            .iter()
            .position(|bound_ms| duration_ns <= bound_ms.saturating_mul(crate::units::NS_PER_MS))
            .unwrap_or(BOUNDS_MS.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(duration_ns, Ordering::Relaxed);
    }

    /// The buckets (per bucket, not cumulative; the last one's bound is `None`, `+Inf`) and
    /// the sum of durations.
    pub(crate) fn read(&self) -> (Vec<StallBucket>, u64) {
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(index, count)| {
                let mut bucket = StallBucket::default();
                bucket.le_ms = BOUNDS_MS.get(index).copied();
                bucket.count = count.load(Ordering::Relaxed);
                bucket
            })
            .collect();
        (buckets, self.sum_ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let histogram = StallHistogram::default();
        for ms in [50, 51, 99, 100, 70_000] {
            histogram.observe(ms * 1_000_000);
        }
        let (buckets, sum_ns) = histogram.read();
        let counts: Vec<u64> = buckets.iter().map(|bucket| bucket.count).collect();
        assert_eq!(counts, [1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(buckets[0].le_ms, Some(50));
        assert_eq!(buckets[10].le_ms, None);
        assert_eq!(sum_ns, (50 + 51 + 99 + 100 + 70_000) * 1_000_000);
    }
}
