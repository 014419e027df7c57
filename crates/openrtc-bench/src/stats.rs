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

/// One figure measured in several repetitions: each repetition's value, their median, least
/// and most.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Repeated {
    /// The middle value (of an even count, the lower of the two middle ones: always a value
    /// that was measured).
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// Each repetition's value, in the order they ran.
    pub(crate) values: Vec<f64>,
}

impl Repeated {
    /// The repetitions' `values`; `None` when there are none.
    pub(crate) fn of(values: Vec<f64>) -> Option<Self> {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            median: *sorted.get(sorted.len().checked_sub(1)? / 2)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_figures_keep_their_order_and_take_a_measured_median() {
        let repeated = Repeated::of(vec![8500.0, 8000.0, 8250.0]).expect("three values");
        assert_eq!(
            (repeated.median, repeated.min, repeated.max),
            (8250.0, 8000.0, 8500.0)
        );
        assert_eq!(repeated.values, [8500.0, 8000.0, 8250.0]);
        assert_eq!(Repeated::of(vec![3.0, 1.0]).map(|r| r.median), Some(1.0));
        assert_eq!(Repeated::of(Vec::new()), None);
    }

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
