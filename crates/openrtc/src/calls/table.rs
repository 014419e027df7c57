//! Per-label call statistics and the bounded table of labels that holds them.
//!
//! A table has [`MAX_LABELS`] slots filled once each (a `OnceLock`, so a lookup takes no
//! lock); a label that finds every slot taken counts under [`OTHER_LABEL`]. A session has a
//! table of its own, and the pool one for the worker, which outlives its sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use openrtc_proto::{CallBucket, CallStatsSnapshot};

use super::histogram::{EXPORT_BOUNDS_US, Histogram, export_buckets, percentile_us};

/// How many labels a session, and the worker, keep apart; the rest count under
/// [`OTHER_LABEL`].
pub const MAX_LABELS: usize = 64;

/// The label the calls of labels past [`MAX_LABELS`] count under.
pub const OTHER_LABEL: &str = "other";

/// The name of a kind of tracked call: `"llm.openai"`, `"db.query"`.
///
/// From a `&'static str` (no allocation) or an `Arc<str>` / `String` for names made at run
/// time. Keep the set of labels small and fixed (never an id in a label): past 64 labels, calls
/// count under `other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLabel(LabelText);

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelText {
    Static(&'static str),
    Shared(Arc<str>),
}

impl CallLabel {
    /// The label's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            LabelText::Static(text) => text,
            LabelText::Shared(text) => text,
        }
    }
}

impl From<&'static str> for CallLabel {
    fn from(text: &'static str) -> Self {
        Self(LabelText::Static(text))
    }
}

impl From<Arc<str>> for CallLabel {
    fn from(text: Arc<str>) -> Self {
        Self(LabelText::Shared(text))
    }
}

impl From<String> for CallLabel {
    fn from(text: String) -> Self {
        Self(LabelText::Shared(text.into()))
    }
}

/// How one call ended, as recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CallRecord {
    pub(crate) duration_us: u64,
    pub(crate) failed: bool,
    pub(crate) slow: bool,
    pub(crate) blocking: bool,
}

/// One label's counters: relaxed atomics, written once per completed call.
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    count: AtomicU64,
    failed_count: AtomicU64,
    slow_count: AtomicU64,
    blocking_count: AtomicU64,
    max_us: AtomicU64,
    /// The sum of the durations, in whole microseconds.
    sum_us: AtomicU64,
    histogram: Histogram,
}

/// Whether a snapshot carries the duration histogram's buckets: the worker's, for `/metrics`,
/// does; session rows do not, to stay small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Buckets {
    Without,
    With,
}

impl CallStats {
    pub(crate) fn record(&self, call: CallRecord) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.failed_count
            .fetch_add(u64::from(call.failed), Ordering::Relaxed);
        self.slow_count
            .fetch_add(u64::from(call.slow), Ordering::Relaxed);
        self.blocking_count
            .fetch_add(u64::from(call.blocking), Ordering::Relaxed);
        self.max_us.fetch_max(call.duration_us, Ordering::Relaxed);
        self.sum_us.fetch_add(call.duration_us, Ordering::Relaxed);
        self.histogram.record(call.duration_us);
    }

    pub(crate) fn snapshot(&self, buckets: Buckets) -> CallStatsSnapshot {
        let counts = self.histogram.counts();
        let max_us = self.max_us.load(Ordering::Relaxed);
        let mut snapshot = CallStatsSnapshot::default();
        snapshot.count = self.count.load(Ordering::Relaxed);
        snapshot.failed_count = self.failed_count.load(Ordering::Relaxed);
        snapshot.slow_count = self.slow_count.load(Ordering::Relaxed);
        snapshot.blocking_count = self.blocking_count.load(Ordering::Relaxed);
        snapshot.p50_us = percentile_us(&counts, 0.50, max_us);
        snapshot.p95_us = percentile_us(&counts, 0.95, max_us);
        snapshot.p99_us = percentile_us(&counts, 0.99, max_us);
        snapshot.max_us = max_us;
        snapshot.duration_sum_us = self.sum_us.load(Ordering::Relaxed);
        if buckets == Buckets::With {
            snapshot.duration_buckets = wire_buckets(&export_buckets(&counts));
        }
        snapshot
    }
}

/// Exported counts in wire form, each with its bound.
fn wire_buckets(counts: &[u64]) -> Vec<CallBucket> {
    counts
        .iter()
        .enumerate()
        .map(|(index, &count)| {
            let mut bucket = CallBucket::default();
            bucket.le_us = EXPORT_BOUNDS_US.get(index).copied();
            bucket.count = count;
            bucket
        })
        .collect()
}

/// Adds `other`'s counts into `row` (two rows of one label: an application's `other` and the
/// overflow). Percentiles cannot be added: each is the larger of the two.
fn merge(row: &mut CallStatsSnapshot, other: CallStatsSnapshot) {
    row.count += other.count;
    row.failed_count += other.failed_count;
    row.slow_count += other.slow_count;
    row.blocking_count += other.blocking_count;
    row.max_us = row.max_us.max(other.max_us);
    row.p50_us = row.p50_us.max(other.p50_us);
    row.p95_us = row.p95_us.max(other.p95_us);
    row.p99_us = row.p99_us.max(other.p99_us);
    row.duration_sum_us += other.duration_sum_us;
    // Both have the same bounds, or one has none (made without buckets).
    for (bucket, added) in row.duration_buckets.iter_mut().zip(&other.duration_buckets) {
        bucket.count += added.count;
    }
}

#[derive(Debug)]
struct Entry {
    label: Arc<str>,
    stats: CallStats,
}

/// The labels of one session or of the worker, each with its counters.
#[derive(Debug)]
pub(crate) struct CallTable {
    slots: [OnceLock<Box<Entry>>; MAX_LABELS],
    other: CallStats,
}

impl Default for CallTable {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
            other: CallStats::default(),
        }
    }
}

impl CallTable {
    /// The counters of `label`: its slot, a new slot, or `other` when every slot is taken.
    pub(crate) fn stats(&self, label: &CallLabel) -> &CallStats {
        let text = label.as_str();
        for slot in &self.slots {
            let entry = match slot.get() {
                Some(entry) => entry,
                None => slot.get_or_init(|| {
                    Box::new(Entry {
                        label: match &label.0 {
                            LabelText::Static(text) => Arc::from(*text),
                            LabelText::Shared(text) => Arc::clone(text),
                        },
                        stats: CallStats::default(),
                    })
                }),
            };
            if &*entry.label == text {
                return &entry.stats;
            }
        }
        &self.other
    }

    /// Records a call under `label`.
    pub(crate) fn record(&self, label: &CallLabel, call: CallRecord) {
        self.stats(label).record(call);
    }

    /// Blocking calls so far of each slot, in slot order, `other` last: the running totals the
    /// watchdog turns into counts of the last minute (a slot keeps its label for good).
    pub(crate) fn blocking_by_slot(&self) -> [u64; MAX_LABELS + 1] {
        std::array::from_fn(|index| {
            let stats = match self.slots.get(index) {
                Some(slot) => slot.get().map(|entry| &entry.stats),
                None => Some(&self.other),
            };
            stats.map_or(0, |stats| stats.blocking_count.load(Ordering::Relaxed))
        })
    }

    /// The label of a slot of [`Self::blocking_by_slot`]; `other` for the last.
    pub(crate) fn label_of_slot(&self, index: usize) -> Option<&str> {
        match self.slots.get(index) {
            Some(slot) => slot.get().map(|entry| &*entry.label),
            None => (index == MAX_LABELS).then_some(OTHER_LABEL),
        }
    }

    /// Every label with calls, in wire form (`other` when any call counted there), with or
    /// without each label's duration buckets.
    pub(crate) fn snapshot(&self, buckets: Buckets) -> BTreeMap<String, CallStatsSnapshot> {
        let mut calls: BTreeMap<String, CallStatsSnapshot> = self
            .slots
            .iter()
            .filter_map(OnceLock::get)
            .map(|entry| (entry.label.to_string(), entry.stats.snapshot(buckets)))
            .filter(|(_, stats)| stats.count > 0)
            .collect();
        let other = self.other.snapshot(buckets);
        if other.count > 0 {
            // An application label named `other` shares the row with the overflow: add them.
            let row = calls.entry(OTHER_LABEL.to_owned()).or_default();
            if row.count == 0 {
                *row = other;
            } else {
                merge(row, other);
            }
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_limit_count_under_other() {
        let table = CallTable::default();
        for index in 0..MAX_LABELS + 6 {
            let label = CallLabel::from(format!("label-{index}"));
            table.record(
                &label,
                CallRecord {
                    duration_us: 10,
                    ..CallRecord::default()
                },
            );
        }
        table.record(&CallLabel::from("label-0"), CallRecord::default());
        let calls = table.snapshot(Buckets::Without);
        assert_eq!(calls.len(), MAX_LABELS + 1);
        assert_eq!(calls["other"].count, 6);
        assert_eq!(calls["label-0"].count, 2);
        assert_eq!(calls["label-0"].max_us, 10);
    }

    #[test]
    fn a_record_counts_what_it_says() {
        let table = CallTable::default();
        let label = CallLabel::from("db.query");
        table.record(
            &label,
            CallRecord {
                duration_us: 5_000,
                failed: true,
                slow: false,
                blocking: true,
            },
        );
        let calls = table.snapshot(Buckets::Without);
        let row = &calls["db.query"];
        assert_eq!(
            (
                row.count,
                row.failed_count,
                row.slow_count,
                row.blocking_count
            ),
            (1, 1, 0, 1)
        );
        assert_eq!((row.p50_us, row.max_us), (5_000, 5_000));
        assert_eq!(row.duration_sum_us, 5_000);
        assert!(
            row.duration_buckets.is_empty(),
            "no buckets in a session's row"
        );
    }

    #[test]
    fn the_worker_s_rows_carry_buckets_and_sums_other_included() {
        let table = CallTable::default();
        let call = |duration_us| CallRecord {
            duration_us,
            ..CallRecord::default()
        };
        // An application label named `other` first, then the overflow past every slot.
        table.record(&CallLabel::from(OTHER_LABEL), call(1_000));
        for index in 1..MAX_LABELS {
            table.record(&CallLabel::from(format!("label-{index}")), call(10));
        }
        table.record(&CallLabel::from("overflow"), call(2_000_000));
        table.record(&CallLabel::from("overflow"), call(3));
        let calls = table.snapshot(Buckets::With);
        let other = &calls[OTHER_LABEL];
        assert_eq!(other.count, 3);
        assert_eq!(other.duration_sum_us, 2_001_003);
        let counts: Vec<u64> = other.duration_buckets.iter().map(|b| b.count).collect();
        // Under 1.024 ms: 1 000 and 3 µs; 2 s is under the 2.097152 s bound.
        assert_eq!(counts, [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(other.duration_buckets[0].le_us, Some(1_024));
        assert_eq!(other.duration_buckets[15].le_us, None);
        let label = &calls["label-1"];
        assert_eq!(
            (label.duration_sum_us, label.duration_buckets[0].count),
            (10, 1)
        );
    }
}
