//! The search for the largest session count that holds a lateness limit, so a sustainable
//! figure is found, not decided by the steps of a fixed list of counts: a first count, then
//! coarse steps growing by a factor until a count misses (or down by halves from a first count
//! that missed, until one holds), then bisection between the largest count that held and the
//! smallest that missed until the two are within [`PRECISION_PCT`] of the one that held. The
//! shape of the CLI's `stress --find-capacity` search, with geometric steps.
//!
//! Pure: the state is the counts tried and whether each held, so a search can start from
//! measurements made for another one (the 100 ms limit's from the 20 ms limit's); running a
//! count is the caller's.

use serde::Serialize;

/// The bisection stops when the smallest count that missed is at most this many percent
/// above the largest that held.
pub(crate) const PRECISION_PCT: usize = 10;

/// Where a search starts and how far it may go.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Steps {
    /// The first count tried.
    pub(crate) start_count: usize,
    /// Each coarse step up multiplies the largest count that held by this (at least one more).
    pub(crate) growth: f64,
    /// The smallest count tried on the way down from a first count that missed.
    pub(crate) min_count: usize,
    /// The largest count tried: a search that holds there ends there.
    pub(crate) max_count: usize,
}

/// One count tried, and whether it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Tried {
    pub(crate) sessions: usize,
    pub(crate) held: bool,
}

/// What a search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    /// The largest count that held below the smallest that missed (0: none held, down to
    /// the smallest count tried).
    pub(crate) held_count: usize,
    /// The smallest count that missed (`None`: every count held, up to the largest allowed).
    pub(crate) missed_count: Option<usize>,
}

/// A search: ask [`Search::next`] for the count to run, run it, tell [`Search::record`]
/// whether it held, and repeat until `next` says `None`; then read [`Search::outcome`].
#[derive(Clone, Debug)]
pub(crate) struct Search {
    steps: Steps,
    tried: Vec<Tried>,
}

impl Search {
    /// A search with these steps (counts at least 1, the maximum at least the start).
    pub(crate) fn new(steps: Steps) -> Self {
        let start_count = steps.start_count.max(1);
        Self {
            steps: Steps {
                start_count,
                growth: if steps.growth > 1.0 {
                    steps.growth
                } else {
                    2.0
                },
                min_count: steps.min_count.clamp(1, start_count),
                max_count: steps.max_count.max(start_count),
            },
            tried: Vec::new(),
        }
    }

    /// Records whether `sessions` held.
    pub(crate) fn record(&mut self, sessions: usize, held: bool) {
        self.tried.push(Tried { sessions, held });
    }

    /// The smallest count that missed, and the largest that held below it (0: none).
    fn bounds(&self) -> (usize, Option<usize>) {
        let missed = self
            .tried
            .iter()
            .filter(|tried| !tried.held)
            .map(|tried| tried.sessions)
            .min();
        let held = self
            .tried
            .iter()
            .filter(|tried| tried.held && missed.is_none_or(|missed| tried.sessions < missed))
            .map(|tried| tried.sessions)
            .max()
            .unwrap_or(0);
        (held, missed)
    }

    /// The next count to run, or `None` when the search is over.
    pub(crate) fn next(&self) -> Option<usize> {
        if self.tried.is_empty() {
            return Some(self.steps.start_count);
        }
        let steps = &self.steps;
        match self.bounds() {
            // Coarse, up: every count held so far.
            (held, None) => {
                let grown = ((held as f64) * steps.growth).round() as usize;
                (held < steps.max_count).then(|| grown.max(held + 1).min(steps.max_count))
            }
            // Coarse, down: nothing held yet below the smallest count that missed.
            (0, Some(missed)) => {
                let half = missed / 2;
                (half >= steps.min_count).then_some(half)
            }
            // Bisection, until the two are close enough (or adjacent).
            (held, Some(missed)) => {
                let gap = missed - held;
                let close = gap * 100 <= held * PRECISION_PCT;
                (gap > 1 && !close).then_some(held + gap / 2)
            }
        }
    }

    /// What the search has found so far (final once [`Search::next`] says `None`).
    pub(crate) fn outcome(&self) -> Outcome {
        let (held_count, missed_count) = self.bounds();
        Outcome {
            held_count,
            missed_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(start_count: usize, growth: f64, min_count: usize, max_count: usize) -> Steps {
        Steps {
            start_count,
            growth,
            min_count,
            max_count,
        }
    }

    /// Runs a search whose measure is `holds`; returns the counts tried and the outcome.
    fn run(steps: Steps, holds: impl Fn(usize) -> bool) -> (Vec<usize>, Outcome) {
        let mut search = Search::new(steps);
        let mut tried = Vec::new();
        while let Some(sessions) = search.next() {
            assert!(tried.len() < 100, "the search ends");
            assert!(!tried.contains(&sessions), "no count is tried twice");
            tried.push(sessions);
            search.record(sessions, holds(sessions));
        }
        (tried, search.outcome())
    }

    #[test]
    fn search_steps_up_then_bisects_to_within_ten_percent() {
        let (tried, outcome) = run(steps(1000, 2.0, 100, 100_000), |n| n <= 8_300);
        assert_eq!(
            tried,
            [1000, 2000, 4000, 8000, 16_000, 12_000, 10_000, 9000, 8500]
        );
        assert_eq!(
            outcome,
            Outcome {
                held_count: 8000,
                missed_count: Some(8500)
            }
        );
        // The stop rule: the first count that missed is within 10 % above the figure, and the
        // figure is the true limit or below it.
        let missed = outcome.missed_count.expect("a count missed");
        assert!((missed - outcome.held_count) * 100 <= outcome.held_count * PRECISION_PCT);
        assert!(outcome.held_count <= 8_300);
    }

    #[test]
    fn search_stops_only_once_the_gap_is_within_ten_percent_of_the_count_held() {
        // 100 held and 111 missed: 11 % apart, so 105 is tried; then 105..111 is within 10 %.
        let mut search = Search::new(steps(100, 2.0, 10, 1000));
        search.record(100, true);
        search.record(111, false);
        assert_eq!(search.next(), Some(105));
        search.record(105, true);
        assert_eq!(search.next(), None);
        assert_eq!(search.outcome().held_count, 105);
        // Adjacent counts end a search of small counts.
        let (tried, outcome) = run(steps(2, 2.0, 1, 100), |n| n <= 2);
        assert_eq!((tried, outcome.held_count), (vec![2, 4, 3], 2));
    }

    #[test]
    fn search_finds_a_figure_above_the_steps_of_a_list() {
        // Steps of 1.5 from 6,000: 6,000 held, 9,000 missed; the search still finds 8,250.
        let (tried, outcome) = run(steps(6000, 1.5, 750, 48_000), |n| n <= 8_400);
        assert_eq!(tried, [6000, 9000, 7500, 8250]);
        assert_eq!(outcome.held_count, 8250);
    }

    #[test]
    fn search_ends_at_the_maximum_when_every_count_holds() {
        let (tried, outcome) = run(steps(10, 2.0, 1, 45), |_| true);
        assert_eq!(tried, [10, 20, 40, 45]);
        assert_eq!(
            outcome,
            Outcome {
                held_count: 45,
                missed_count: None
            }
        );
        let (tried, _) = run(steps(2, 2.0, 1, 2), |_| true);
        assert_eq!(tried, [2], "a search of one count");
    }

    #[test]
    fn search_from_a_first_count_that_misses_halves_down_then_bisects() {
        let (tried, outcome) = run(steps(400, 1.5, 50, 3200), |n| n <= 130);
        assert_eq!(tried, [400, 200, 100, 150, 125, 137]);
        assert_eq!(outcome.held_count, 125);
        // Nothing holds down to the smallest count allowed: the figure is 0, below it.
        let (tried, outcome) = run(steps(400, 1.5, 50, 3200), |_| false);
        assert_eq!(tried, [400, 200, 100, 50]);
        assert_eq!(
            outcome,
            Outcome {
                held_count: 0,
                missed_count: Some(50)
            }
        );
    }

    #[test]
    fn search_with_a_blip_keeps_the_largest_count_held_below_the_smallest_missed() {
        // 300 misses once (a noisy moment) though 350 would hold: the figure stays below the
        // blip, a held count, and the search ends.
        let (tried, outcome) = run(steps(100, 2.0, 10, 1000), |n| n <= 357 && n != 300);
        assert_eq!(tried, [100, 200, 400, 300, 250, 275]);
        assert_eq!(
            outcome,
            Outcome {
                held_count: 275,
                missed_count: Some(300)
            }
        );
        // A count that held above one that missed does not count.
        let mut search = Search::new(steps(100, 2.0, 10, 1000));
        for (sessions, held) in [(100, true), (200, false), (300, true)] {
            search.record(sessions, held);
        }
        assert_eq!(search.outcome().held_count, 100);
        assert_eq!(search.next(), Some(150));
    }

    #[test]
    fn search_seeded_with_another_limits_counts_measures_only_what_is_missing() {
        // The 100 ms limit's search, from the 20 ms search's counts judged at 100 ms.
        let mut search = Search::new(steps(6000, 1.5, 750, 48_000));
        for (sessions, held) in [(6000, true), (9000, true), (13_500, false)] {
            search.record(sessions, held);
        }
        assert_eq!(search.next(), Some(11_250));
    }
}
