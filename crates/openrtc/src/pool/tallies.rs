//! Sessions started and ended per (tenant, agent) pair, by outcome: what `/metrics` labels
//! its session counters with (the snapshot's `totals_by_tenant_agent`).
//!
//! Kept as the tenants' own `started` counters are: relaxed atomics in an entry made at the
//! pair's first launch, found under a read lock (a write lock only for a new pair), counted
//! at launch and at the session's end, never on the poll path. Tenants come from requests and
//! are not bounded, so the pairs are: past the cap, a new pair's sessions count under tenant
//! [`OTHER_TENANT`] with their agent (agents are the registered ones, a fixed set). A pair
//! is in or out from its first launch, so its session's end counts where its start did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openrtc_proto::{OTHER_TENANT, SessionTotals, TenantAgentTotals};

use crate::session::SessionOutcome;

/// One pair's sessions: started, and ended by outcome.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    killed: AtomicU64,
}

impl Tally {
    /// Counts a session ended with `outcome`.
    fn count_end(&self, outcome: &SessionOutcome) {
        let counter = match outcome {
            SessionOutcome::Completed => &self.completed,
            SessionOutcome::Failed(_) => &self.failed,
            SessionOutcome::Panicked { .. } => &self.panicked,
            SessionOutcome::Cancelled(_) => &self.cancelled,
            SessionOutcome::Killed(_) => &self.killed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> SessionTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut totals = SessionTotals::default();
        totals.started_count = load(&self.started);
        totals.completed_count = load(&self.completed);
        totals.failed_count = load(&self.failed);
        totals.panicked_count = load(&self.panicked);
        totals.cancelled_count = load(&self.cancelled);
        totals.killed_count = load(&self.killed);
        totals
    }
}

/// A pair: tenant, then agent.
type Pair = (Arc<str>, Arc<str>);

/// Every pair's tally, up to a cap of distinct pairs (the `other` entries past it aside).
#[derive(Debug)]
pub(crate) struct TenantAgentTallies {
    pairs: RwLock<HashMap<Pair, Arc<Tally>>>,
    /// Distinct pairs counted apart; later pairs count under [`OTHER_TENANT`].
    max_pairs: usize,
}

impl TenantAgentTallies {
    /// Tallies that keep `max_pairs` pairs apart.
    pub(crate) fn new(max_pairs: usize) -> Self {
        Self {
            pairs: RwLock::default(),
            max_pairs,
        }
    }

    /// Counts a session of `agent` for `tenant` started.
    pub(crate) fn started(&self, tenant: &Arc<str>, agent: &Arc<str>) {
        self.tally(tenant, agent)
            .started
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session of `agent` for `tenant` ended with `outcome`.
    pub(crate) fn ended(&self, tenant: &Arc<str>, agent: &Arc<str>, outcome: &SessionOutcome) {
        self.tally(tenant, agent).count_end(outcome);
    }

    /// The pair's tally: its own, made on first use while under the cap, else its agent's
    /// under [`OTHER_TENANT`]. The map only grows, so a pair found over the cap at its launch
    /// is still over it at its end.
    fn tally(&self, tenant: &Arc<str>, agent: &Arc<str>) -> Arc<Tally> {
        let pair = (Arc::clone(tenant), Arc::clone(agent));
        if let Some(tally) = read(&self.pairs).get(&pair) {
            return Arc::clone(tally);
        }
        let mut pairs = write(&self.pairs);
        let key = if pairs.contains_key(&pair) || pairs.len() < self.max_pairs {
            pair
        } else {
            (Arc::from(OTHER_TENANT), pair.1)
        };
        Arc::clone(pairs.entry(key).or_default())
    }

    /// Every pair's totals, sorted by tenant then agent.
    pub(crate) fn snapshot(&self) -> Vec<TenantAgentTotals> {
        let mut entries: Vec<TenantAgentTotals> = read(&self.pairs)
            .iter()
            .map(|((tenant, agent), tally)| {
                let mut entry = TenantAgentTotals::default();
                entry.tenant = tenant.to_string();
                entry.agent = agent.to_string();
                entry.totals = tally.totals();
                entry
            })
            .collect();
        entries.sort_by(|a, b| (&a.tenant, &a.agent).cmp(&(&b.tenant, &b.agent)));
        entries
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{CancelReason, KillReason};

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn each_pair_counts_its_starts_and_ends_by_outcome() {
        let tallies = TenantAgentTallies::new(8);
        let (acme, globex, echo) = (name("acme"), name("globex"), name("echo"));
        for _ in 0..3 {
            tallies.started(&acme, &echo);
        }
        tallies.started(&globex, &echo);
        tallies.ended(&acme, &echo, &SessionOutcome::Completed);
        tallies.ended(
            &acme,
            &echo,
            &SessionOutcome::Cancelled(CancelReason::Operator),
        );
        tallies.ended(&acme, &echo, &SessionOutcome::Killed(KillReason::Operator));
        let entries = tallies.snapshot();
        assert_eq!(entries.len(), 2);
        assert_eq!((&*entries[0].tenant, &*entries[0].agent), ("acme", "echo"));
        let acme_totals = &entries[0].totals;
        assert_eq!(
            (
                acme_totals.started_count,
                acme_totals.completed_count,
                acme_totals.cancelled_count,
                acme_totals.killed_count,
                acme_totals.failed_count,
            ),
            (3, 1, 1, 1, 0)
        );
        assert_eq!(entries[1].tenant, "globex");
        assert_eq!(entries[1].totals.started_count, 1);
    }

    #[test]
    fn pairs_past_the_cap_count_under_other_where_they_started() {
        let tallies = TenantAgentTallies::new(2);
        let (echo, hot) = (name("echo"), name("hot"));
        tallies.started(&name("t1"), &echo);
        tallies.started(&name("t2"), &echo);
        // Over the cap: two new tenants of one agent share `other`, a third agent its own.
        tallies.started(&name("t3"), &echo);
        tallies.started(&name("t4"), &echo);
        tallies.started(&name("t5"), &hot);
        tallies.ended(&name("t4"), &echo, &SessionOutcome::Completed);
        // A pair kept apart stays apart.
        tallies.started(&name("t1"), &echo);
        tallies.ended(&name("t1"), &echo, &SessionOutcome::Completed);
        let entries: Vec<(String, String, u64, u64)> = tallies
            .snapshot()
            .into_iter()
            .map(|entry| {
                (
                    entry.tenant,
                    entry.agent,
                    entry.totals.started_count,
                    entry.totals.completed_count,
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("other".into(), "echo".into(), 2, 1),
                ("other".into(), "hot".into(), 1, 0),
                ("t1".into(), "echo".into(), 2, 1),
                ("t2".into(), "echo".into(), 1, 0),
            ]
        );
    }
}
