//! Order statistics of measured figures.

use serde::Serialize;

/// The median, 99th percentile and maximum of a set of figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) count: usize,
}

impl Spread {
    /// `median / max` with `decimals` digits after the point, for tables.
    pub(crate) fn median_max(&self, decimals: usize) -> String {
        format!("{:.*} / {:.*}", decimals, self.median, decimals, self.max)
    }

    /// The spread of `values` (all zero when there are none).
    pub(crate) fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least `fraction` of the values at or
        // below it (as the reference's harness computes it).
        let at = |fraction: f64| {
            let rank = (sorted.len() as f64 * fraction).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        Self {
            median: at(0.5),
            p99: at(0.99),
            max: sorted[sorted.len() - 1],
            count: sorted.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_pick_ranks_from_sorted_values() {
        let spread = Spread::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            (spread.median, spread.p99, spread.max, spread.count),
            (3.0, 5.0, 5.0, 5)
        );
        assert_eq!(spread.median_max(1), "3.0 / 5.0");
        assert_eq!(spread.median_max(0), "3 / 5");
        assert_eq!(Spread::of(&[]), Spread::default());
        // Nearest rank: of four values, the median is the second.
        assert_eq!(Spread::of(&[4.0, 3.0, 2.0, 1.0]).median, 2.0);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Spread::of(&hundred).p99, 99.0);
    }
}
