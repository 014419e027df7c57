//! `--find-capacity`'s search for the largest number of calls that holds: coarse steps of
//! `--calls` (`step`, `2 × step`, ... up to `--max-calls`) until a level does not hold, then
//! bisection between the last level that held and the first that did not, until the two are
//! within [`PRECISION_PCT`] of each other. So the figure is found by a search, not decided by
//! the step: a step of 100 that held at 300 and not at 400 still finds 350 if 350 holds.
//! Pure: the runs are the caller's.

use std::time::Duration;

/// The pause between two levels, once the previous level's sessions have ended.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The longest wait for the previous level's sessions to end before the next level starts.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The bisection stops when the first level that did not hold is within this many percent
/// above the last that held.
pub const PRECISION_PCT: u32 = 10;

/// The search: ask [`Search::next`] for the number of calls to run, run it, tell
/// [`Search::record`] whether it held, and repeat until `next` says `None`.
#[derive(Clone, Debug)]
pub struct Search {
    step: u32,
    max_calls: u32,
    /// The largest level that held (0: none yet).
    held: u32,
    /// The smallest level that did not hold, once one has failed.
    failed: Option<u32>,
}

impl Search {
    /// A search stepping by `step` calls (at least 1) up to `max_calls` (at least `step`).
    #[must_use]
    pub fn new(step: u32, max_calls: u32) -> Self {
        let step = step.max(1);
        Self {
            step,
            max_calls: max_calls.max(step),
            held: 0,
            failed: None,
        }
    }

    /// The next number of calls to try, or `None` when the search is over.
    #[must_use]
    pub fn next(&self) -> Option<u32> {
        match self.failed {
            // Coarse: the next multiple of the step, while it fits under the maximum.
            None => {
                let next = self.held.checked_add(self.step)?;
                (next <= self.max_calls).then_some(next)
            }
            // Bisection: halfway between the last held and the first failed level, until
            // they are close enough (or adjacent).
            Some(failed) => {
                let gap = failed - self.held;
                let close = u64::from(gap) * 100 <= u64::from(self.held) * u64::from(PRECISION_PCT);
                (gap > 1 && !close).then_some(self.held + gap / 2)
            }
        }
    }

    /// Records whether a run of `calls` calls held.
    pub fn record(&mut self, calls: u32, held: bool) {
        if held {
            self.held = self.held.max(calls);
        } else {
            self.failed = Some(self.failed.map_or(calls, |failed| failed.min(calls)));
        }
    }

    /// The largest number of calls that held (0: none did).
    #[must_use]
    pub const fn capacity_calls(&self) -> u32 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a worker that holds `limit` calls; returns the levels tried.
    fn run(step: u32, max_calls: u32, limit: u32) -> (Vec<u32>, u32) {
        let mut search = Search::new(step, max_calls);
        let mut tried = Vec::new();
        while let Some(calls) = search.next() {
            assert!(tried.len() < 100, "the search ends");
            tried.push(calls);
            search.record(calls, calls <= limit);
        }
        (tried, search.capacity_calls())
    }

    #[test]
    fn steps_up_to_the_maximum_when_every_level_holds() {
        assert_eq!(run(10, 45, 1000), (vec![10, 20, 30, 40], 40));
        assert_eq!(run(5, 3, 1000), (vec![5], 5), "at least one level");
    }

    #[test]
    fn bisects_between_the_last_held_and_the_first_failed_level_to_within_ten_percent() {
        let (tried, capacity) = run(100, 1000, 357);
        assert_eq!(tried, [100, 200, 300, 400, 350, 375]);
        assert_eq!(capacity, 350);
        // The answer is within 10 % of the true limit, from below.
        assert!(capacity <= 357 && 357 * 100 <= capacity * 110);
    }

    #[test]
    fn a_first_level_that_fails_is_bisected_down_to_one_call() {
        let (tried, capacity) = run(8, 100, 2);
        assert_eq!(tried, [8, 4, 2, 3]);
        assert_eq!(capacity, 2);
        let (tried, capacity) = run(8, 100, 0);
        assert_eq!(tried, [8, 4, 2, 1]);
        assert_eq!(capacity, 0, "none held");
    }
}
