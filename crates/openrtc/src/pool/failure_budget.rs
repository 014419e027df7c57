//! The worker's failure budget: sessions failing in a row, across tenants and agents, and the
//! drain once they reach the consecutive failure limit.
//!
//! A failure (an error, a panic, a kill for the session's own memory cap: see
//! [`Verdict`]) adds one; a success resets the count to 0; an outcome that says nothing of the
//! agent (a drain, shutdown or operator stop) leaves it as it is. Reaching the limit logs one
//! `[failure-budget]` error and drains the worker once; `run` then returns
//! [`crate::RunError::ConsecutiveFailures`], whose exit code tells a supervisor to restart it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::pool::{Control, PoolShared};
use crate::session::{SessionCell, SessionOutcome, Verdict};

/// The count of failures in a row, and whether the limit has been reached.
#[derive(Debug)]
pub(crate) struct FailureBudget {
    limit: Option<u32>,
    consecutive: AtomicU32,
    spent: AtomicBool,
}

impl FailureBudget {
    /// A budget of `limit` failures in a row (`None`: only counted, never spent).
    pub(crate) fn new(limit: Option<u32>) -> Self {
        Self {
            limit,
            consecutive: AtomicU32::new(0),
            spent: AtomicBool::new(false),
        }
    }

    /// Counts one ended session's verdict. Returns the count the first time it reaches the
    /// limit, and `None` ever after.
    pub(crate) fn note(&self, verdict: Verdict) -> Option<u32> {
        let count = match verdict {
            Verdict::Ignored => return None,
            Verdict::Success => {
                self.consecutive.store(0, Ordering::Relaxed);
                return None;
            }
            Verdict::Failure => self
                .consecutive
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1),
        };
        let limit = self.limit?;
        (count >= limit && !self.spent.swap(true, Ordering::AcqRel)).then_some(count)
    }

    /// Failures in a row now.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// The limit, if set.
    pub(crate) fn limit(&self) -> Option<u32> {
        self.limit
    }
}

impl PoolShared {
    /// Counts an ended session in the failure budget; the failure that reaches the limit
    /// logs why and begins the drain (once).
    pub(crate) fn note_verdict(&self, cell: &SessionCell, outcome: &SessionOutcome) {
        let Some(count) = self.failure_budget.note(outcome.verdict()) else {
            return;
        };
        tracing::error!(
            event = "failure_budget",
            worker = self.config.worker_name.as_str(),
            count,
            session_id = %cell.id(),
            tenant = cell.tenant(),
            agent = cell.agent(),
            outcome = %outcome,
            "[failure-budget] {count} sessions in a row failed (last: session {} tenant {} agent \
             {}: {outcome}); draining the worker so its supervisor restarts it",
            cell.id(),
            cell.tenant(),
            cell.agent(),
        );
        self.begin_drain(Control::FailureBudget { count });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_spend_the_budget_once_and_a_success_resets_it() {
        let budget = FailureBudget::new(Some(3));
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(budget.note(Verdict::Success), None);
        assert_eq!(budget.consecutive_failures(), 0);
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(budget.note(Verdict::Ignored), None);
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(
            budget.consecutive_failures(),
            2,
            "ignored leaves it as it is"
        );
        assert_eq!(budget.note(Verdict::Failure), Some(3));
        assert_eq!(budget.note(Verdict::Failure), None, "spent once only");
        assert_eq!(budget.consecutive_failures(), 4);
        assert_eq!(budget.note(Verdict::Success), None);
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(budget.note(Verdict::Failure), None);
        assert_eq!(budget.note(Verdict::Failure), None, "still spent");
    }

    #[test]
    fn without_a_limit_failures_are_only_counted() {
        let budget = FailureBudget::new(None);
        for _ in 0..10 {
            assert_eq!(budget.note(Verdict::Failure), None);
        }
        assert_eq!(budget.consecutive_failures(), 10);
        assert_eq!(budget.limit(), None);
    }
}
