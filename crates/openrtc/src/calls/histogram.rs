//! A fixed log-bucket histogram of durations in microseconds, written with relaxed atomics.
//!
//! Four buckets per power of two (values under 4 µs exactly), so a percentile is known within
//! 25 % of the value; up to 2^32 µs (71 minutes), longer durations land in the last bucket.
//! 128 counters, 1 KiB. Recording is one `fetch_add`; nothing locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many buckets: four per power of two up to 2^32 µs.
const BUCKETS: usize = 128;

/// The bucket of a duration in microseconds (pure).
pub(crate) fn bucket_of(value_us: u64) -> usize {
    if value_us < 4 {
        return value_us as usize;
    }
    let exponent = 63 - value_us.leading_zeros() as usize; // >= 2
    let sub = ((value_us >> (exponent - 2)) & 3) as usize;
    (4 * (exponent - 1) + sub).min(BUCKETS - 1)
}

/// The largest value in a bucket (pure): what a percentile falling in it reports.
pub(crate) fn bucket_upper_us(bucket: usize) -> u64 {
    if bucket < 4 {
        return bucket as u64;
    }
    let exponent = bucket / 4 + 1;
    let sub = (bucket % 4) as u64;
    ((4 + sub + 1) << (exponent - 2)) - 1
}

/// Counts of durations by bucket.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn record(&self, value_us: u64) {
        self.buckets[bucket_of(value_us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, for percentiles.
    pub(crate) fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed))
    }
}

/// The value at `quantile` (0..=1) of the counted durations: the upper bound of the bucket it
/// falls in, never above `max_us` (pure). 0 when nothing was counted.
pub(crate) fn percentile_us(counts: &[u64], quantile: f64, max_us: u64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    // The rank of the value, 1-based: the smallest rank covering the quantile.
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bucket, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_upper_us(bucket).min(max_us);
        }
    }
    max_us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_a_quarter() {
        for value in (0..100_000_u64).chain([1 << 20, 3_000_000, 10_000_000]) {
            let bucket = bucket_of(value);
            let upper = bucket_upper_us(bucket);
            assert!(upper >= value, "{value} over its bucket's bound {upper}");
            assert!(
                upper as f64 <= value as f64 * 1.25 + 1.0,
                "{value}: bound {upper} too far"
            );
            if bucket > 0 {
                assert!(
                    bucket_upper_us(bucket - 1) < value,
                    "{value} in too high a bucket"
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_known_values() {
        let histogram = Histogram::default();
        for value_ms in 1..=100_u64 {
            histogram.record(value_ms * 1000);
        }
        let counts = histogram.counts();
        let p50 = percentile_us(&counts, 0.50, 100_000);
        let p99 = percentile_us(&counts, 0.99, 100_000);
        assert!((50_000..=62_500).contains(&p50), "p50 {p50}");
        assert!((99_000..=100_000).contains(&p99), "p99 {p99}");
        assert_eq!(percentile_us(&counts, 1.0, 100_000), 100_000);
        assert_eq!(percentile_us(&[0; BUCKETS], 0.5, 0), 0);
    }
}
