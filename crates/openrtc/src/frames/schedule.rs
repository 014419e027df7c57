//! The frame clock's arithmetic (pure: time is passed in as durations since the clock's
//! epoch): how many slices a period is cut into, where each slice starts, which round of a
//! slice is the first due at or after an instant, the driver's cursor over (round, slice),
//! and which slice a new registration joins.

use std::time::Duration;

/// The narrowest slice: Tokio's timer resolution, so a slice's wake is one timer tick.
pub(crate) const SLICE_MIN: Duration = Duration::from_millis(1);

/// The most slices a period is cut into (a long period gets wider slices).
pub(crate) const SLICES_MAX: usize = 64;

/// How many slices `period` is cut into: one per millisecond, at least 1, at most
/// [`SLICES_MAX`].
pub(crate) fn slice_count(period: Duration) -> usize {
    let whole_ms = period.as_nanos() / SLICE_MIN.as_nanos();
    usize::try_from(whole_ms)
        .unwrap_or(SLICES_MAX)
        .clamp(1, SLICES_MAX)
}

/// Where slice `slice` of `slices` starts within `period`: `period · slice / slices`,
/// rounded down to the nanosecond, so slice 0 starts at 0 and every offset is under `period`.
pub(crate) fn slice_offset(period: Duration, slices: usize, slice: usize) -> Duration {
    debug_assert!(slice < slices, "slice {slice} of {slices}");
    let slices = u128::try_from(slices).unwrap_or(u128::MAX).max(1);
    let slice = u128::try_from(slice).unwrap_or(0);
    duration_from_nanos(period.as_nanos() * slice / slices)
}

/// The first round `r` of a slice starting at `offset` whose due time, `offset + r · period`
/// after the epoch, is at or after `elapsed` since the epoch.
pub(crate) fn first_round_at_or_after(
    elapsed: Duration,
    period: Duration,
    offset: Duration,
) -> u64 {
    let Some(ahead) = elapsed.checked_sub(offset) else {
        return 0;
    };
    let period_ns = period.as_nanos().max(1);
    let rounds = ahead.as_nanos().div_ceil(period_ns);
    u64::try_from(rounds).unwrap_or(u64::MAX)
}

/// `offset + round · period`: when round `round` of a slice starting at `offset` is due,
/// since the epoch (saturating at the largest duration).
pub(crate) fn due_since_epoch(period: Duration, offset: Duration, round: u64) -> Duration {
    let ns = period
        .as_nanos()
        .saturating_mul(u128::from(round))
        .saturating_add(offset.as_nanos());
    duration_from_nanos(ns)
}

fn duration_from_nanos(ns: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(ns / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is under a billion, so it fits a `u32`.
    let sub_ns = u32::try_from(ns % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub_ns)
}

/// The driver's position: the next (round, slice) to fire. Slices fire in order within a
/// round, rounds in order, so due times only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) round: u64,
    pub(crate) slice: usize,
}

impl Cursor {
    /// The position after this one.
    pub(crate) fn next(self, slices: usize) -> Self {
        if self.slice + 1 < slices {
            Self {
                round: self.round,
                slice: self.slice + 1,
            }
        } else {
            Self {
                round: self.round.saturating_add(1),
                slice: 0,
            }
        }
    }

    /// The first position due at or after `elapsed` since the epoch.
    pub(crate) fn at_or_after(elapsed: Duration, period: Duration, slices: usize) -> Self {
        let round = first_round_at_or_after(elapsed, period, Duration::ZERO).saturating_sub(1);
        let mut cursor = Self { round, slice: 0 };
        // At most two rounds of slices to walk: `round` is the one before `elapsed`.
        while due_since_epoch(
            period,
            slice_offset(period, slices, cursor.slice),
            cursor.round,
        ) < elapsed
        {
            cursor = cursor.next(slices);
        }
        cursor
    }

    /// How many rounds of `slice` have fired once the driver is at this position: the
    /// slices before it have fired this round too.
    pub(crate) fn fired_rounds(self, slice: usize) -> u64 {
        if slice < self.slice {
            self.round.saturating_add(1)
        } else {
            self.round
        }
    }
}

/// The slice a new registration joins: the first of the least populated, so sessions spread
/// evenly over the period and their wakes are staggered.
pub(crate) fn least_loaded(counts: impl IntoIterator<Item = usize>) -> usize {
    counts
        .into_iter()
        .enumerate()
        .min_by_key(|&(slice, count)| (count, slice))
        .map_or(0, |(slice, _)| slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_period_is_cut_into_millisecond_slices_within_bounds() {
        assert_eq!(slice_count(Duration::from_millis(20)), 20);
        assert_eq!(slice_count(Duration::from_micros(20_500)), 20);
        assert_eq!(slice_count(Duration::from_micros(300)), 1);
        assert_eq!(slice_count(Duration::ZERO), 1);
        assert_eq!(slice_count(Duration::from_secs(1)), SLICES_MAX);
    }

    #[test]
    fn slice_offsets_split_the_period_evenly_to_the_nanosecond() {
        let period = Duration::from_millis(20);
        assert_eq!(slice_offset(period, 20, 0), Duration::ZERO);
        assert_eq!(slice_offset(period, 20, 1), MS);
        assert_eq!(slice_offset(period, 20, 19), 19 * MS);
        // 10 ms in 3: 0, 3.333333 ms, 6.666666 ms, rounded down.
        let period = Duration::from_millis(10);
        assert_eq!(slice_offset(period, 3, 1), Duration::from_nanos(3_333_333));
        assert_eq!(slice_offset(period, 3, 2), Duration::from_nanos(6_666_666));
    }

    #[test]
    fn the_first_round_due_is_at_or_after_the_instant() {
        let period = Duration::from_millis(20);
        let offset = 5 * MS;
        assert_eq!(first_round_at_or_after(Duration::ZERO, period, offset), 0);
        assert_eq!(first_round_at_or_after(5 * MS, period, offset), 0);
        assert_eq!(
            first_round_at_or_after(5 * MS + Duration::from_nanos(1), period, offset),
            1
        );
        assert_eq!(first_round_at_or_after(25 * MS, period, offset), 1);
        assert_eq!(first_round_at_or_after(26 * MS, period, offset), 2);
        assert_eq!(due_since_epoch(period, offset, 2), 45 * MS);
    }

    #[test]
    fn the_cursor_walks_slices_then_rounds() {
        let cursor = Cursor {
            round: 3,
            slice: 18,
        };
        assert_eq!(
            cursor.next(20),
            Cursor {
                round: 3,
                slice: 19
            }
        );
        assert_eq!(cursor.next(20).next(20), Cursor { round: 4, slice: 0 });
        assert_eq!(
            Cursor { round: 0, slice: 0 }.next(1),
            Cursor { round: 1, slice: 0 }
        );
    }

    #[test]
    fn the_cursor_after_an_instant_is_the_next_slice_due() {
        let period = Duration::from_millis(20);
        assert_eq!(
            Cursor::at_or_after(Duration::ZERO, period, 20),
            Cursor { round: 0, slice: 0 }
        );
        assert_eq!(
            Cursor::at_or_after(3 * MS, period, 20),
            Cursor { round: 0, slice: 3 }
        );
        assert_eq!(
            Cursor::at_or_after(3 * MS + Duration::from_nanos(1), period, 20),
            Cursor { round: 0, slice: 4 }
        );
        assert_eq!(
            Cursor::at_or_after(59 * MS + Duration::from_micros(500), period, 20),
            Cursor { round: 3, slice: 0 }
        );
    }

    #[test]
    fn fired_rounds_count_the_slices_already_behind_the_cursor() {
        let cursor = Cursor { round: 7, slice: 4 };
        assert_eq!(cursor.fired_rounds(0), 8);
        assert_eq!(cursor.fired_rounds(3), 8);
        assert_eq!(cursor.fired_rounds(4), 7);
        assert_eq!(cursor.fired_rounds(19), 7);
    }

    #[test]
    fn a_registration_joins_the_first_least_populated_slice() {
        assert_eq!(least_loaded([3, 1, 2, 1]), 1);
        assert_eq!(least_loaded([0, 0, 0]), 0);
        assert_eq!(least_loaded([2, 2, 0]), 2);
        assert_eq!(least_loaded(std::iter::empty()), 0);
    }
}
