//! A fixed log-bucket histogram of durations in microseconds, written with relaxed atomics.
//!
//! Four buckets per power of two (values under 4 µs exactly), so a percentile is known within
//! 25 % of the value; up to 2^32 µs (71 minutes), longer durations land in the last bucket.
//! 128 counters, 1 KiB. Recording is one `fetch_add`; nothing locks.
//!
//! For `/metrics`, [`export_buckets`] folds the counts into the fixed buckets of
//! [`EXPORT_BOUNDS_US`], each bound an exact edge between two of these buckets.

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

/// The bounds of the buckets `/metrics` exports, in microseconds, from about 1 ms to about
/// 60 s; a last bucket takes the rest (`+Inf`).
///
/// Each is an exact edge of the log buckets (`k·2^m` µs, `k` in 4..=7): the bucket below it
/// ends at `bound - 1` µs and the one above starts at `bound`, so folding the log buckets
/// into these misplaces no call. Durations are counted in whole microseconds truncated from
/// nanoseconds, so the calls under a bound are those that took less than `bound` µs.
pub(crate) const EXPORT_BOUNDS_US: [u64; 15] = [
    1_024,      // 4·2^8: 1.024 ms
    2_560,      // 5·2^9: 2.56 ms
    5_120,      // 5·2^10: 5.12 ms
    10_240,     // 5·2^11: 10.24 ms
    24_576,     // 6·2^12: 24.576 ms
    49_152,     // 6·2^13: 49.152 ms
    98_304,     // 6·2^14: 98.304 ms
    262_144,    // 4·2^16: 262.144 ms
    524_288,    // 4·2^17: 524.288 ms
    1_048_576,  // 4·2^18: 1.048576 s
    2_097_152,  // 4·2^19: 2.097152 s
    5_242_880,  // 5·2^20: 5.24288 s
    10_485_760, // 5·2^21: 10.48576 s
    29_360_128, // 7·2^22: 29.360128 s
    58_720_256, // 7·2^23: 58.720256 s
];

/// The log-bucket counts folded into the [`EXPORT_BOUNDS_US`] buckets (per bucket, not
/// cumulative), the last one `+Inf` (pure).
pub(crate) fn export_buckets(counts: &[u64]) -> [u64; EXPORT_BOUNDS_US.len() + 1] {
    let mut exported = [0; EXPORT_BOUNDS_US.len() + 1];
    for (bucket, &count) in counts.iter().enumerate() {
        // A log bucket's values are at most its upper bound: the first export bound above it.
        let upper_us = bucket_upper_us(bucket);
        let index = EXPORT_BOUNDS_US.partition_point(|&bound_us| bound_us <= upper_us);
        if let Some(slot) = exported.get_mut(index) {
            *slot += count;
        }
    }
    exported
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
    fn every_export_bound_is_an_edge_between_two_log_buckets() {
        for bound in EXPORT_BOUNDS_US {
            let below = bucket_of(bound - 1);
            assert_eq!(
                bucket_upper_us(below),
                bound - 1,
                "{bound}: not a bucket's end"
            );
            assert_eq!(
                bucket_of(bound),
                below + 1,
                "{bound}: not the next bucket's start"
            );
        }
        assert!(EXPORT_BOUNDS_US.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_duration_lands_on_the_right_side_of_each_export_bound() {
        for (index, bound) in EXPORT_BOUNDS_US.into_iter().enumerate() {
            // `upper` is the last whole microsecond under the bound.
            let upper = bound - 1;
            let histogram = Histogram::default();
            for value_us in [upper - 1, upper, upper + 1] {
                histogram.record(value_us);
            }
            // As recorded from nanoseconds: just under the bound, and exactly on it.
            for duration_ns in [bound * 1_000 - 1, bound * 1_000] {
                histogram.record(duration_ns / 1_000);
            }
            let exported = export_buckets(&histogram.counts());
            assert_eq!(exported[index], 3, "under {bound} µs: {exported:?}");
            assert_eq!(exported[index + 1], 2, "from {bound} µs: {exported:?}");
            assert_eq!(exported.iter().sum::<u64>(), 5);
        }
        let histogram = Histogram::default();
        for value_us in [0, 3, 1_023, u64::MAX] {
            histogram.record(value_us);
        }
        let exported = export_buckets(&histogram.counts());
        assert_eq!(exported[0], 3);
        assert_eq!(exported[EXPORT_BOUNDS_US.len()], 1, "+Inf: {exported:?}");
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
