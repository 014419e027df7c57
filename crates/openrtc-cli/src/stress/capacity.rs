//! `--find-capacity`'s steps: the numbers of calls tried, `--calls` apart up to
//! `--max-calls`. Pure.

use std::time::Duration;

/// The pause between two levels, while the previous level's sessions end.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The numbers of calls tried: `step`, `2 × step`, ... up to `max_calls` (at least `step`).
#[must_use]
pub fn levels(step: u32, max_calls: u32) -> Vec<u32> {
    let step = step.max(1);
    let max_calls = max_calls.max(step);
    (1..=max_calls / step)
        .map(|multiple| multiple * step)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_step_by_calls_up_to_the_maximum() {
        assert_eq!(levels(10, 45), [10, 20, 30, 40]);
        assert_eq!(levels(2, 4), [2, 4]);
        assert_eq!(levels(5, 3), [5], "at least one level");
    }
}
