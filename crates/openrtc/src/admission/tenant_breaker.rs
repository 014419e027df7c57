//! A tenant's circuit breaker in the admission chain: kept in step with the tenant config,
//! consulted on each launch, told each of its sessions' verdicts.

use std::sync::Arc;

use openrtc_proto::{BreakerSnapshot, BreakerState};
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings, BreakerTicket, Transition, log_transition};
use super::tenants::TenantCounters;
use crate::session::Verdict;
use crate::{Rejected, lock};

/// The breaker settings in force for a tenant, and the generation of the configuration they
/// come from (a new generation is applied to the breaker, keeping its state).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BreakerPolicy<'a> {
    /// Bumped on each configuration change.
    pub(crate) generation: u64,
    /// `None`: the tenant has no breaker.
    pub(crate) settings: Option<&'a BreakerSettings>,
}

/// A tenant's breaker, or its absence, and the configuration generation it follows.
#[derive(Debug, Default)]
pub(crate) struct TenantBreaker {
    generation: Option<u64>,
    breaker: Option<Breaker>,
}

impl TenantBreaker {
    /// Applies the policy if it is of a newer generation than the one applied: a breaker is
    /// created, given new settings (keeping its state) or removed.
    pub(crate) fn sync(&mut self, tenant: &TenantCounters, policy: BreakerPolicy<'_>) {
        if self.generation == Some(policy.generation) {
            return;
        }
        self.generation = Some(policy.generation);
        match (policy.settings, &mut self.breaker) {
            (None, breaker) => *breaker = None,
            (Some(settings), Some(breaker)) => {
                if breaker.settings() != settings {
                    if let Some(transition) = breaker.set_settings(*settings) {
                        report(tenant, transition);
                    }
                }
            }
            (Some(settings), breaker @ None) => *breaker = Some(Breaker::new(*settings)),
        }
    }

    /// The breaker's state; `disabled` when the tenant has none.
    pub(crate) fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        self.breaker.as_ref().map_or_else(
            || {
                let mut snapshot = BreakerSnapshot::default();
                snapshot.state = BreakerState::Disabled;
                snapshot
            },
            |breaker| breaker.snapshot(now),
        )
    }
}

/// Logs a change of `tenant`'s breaker and tells the event stream.
fn report(tenant: &TenantCounters, transition: Transition) {
    log_transition(&tenant.name, &transition);
    if let Some(events) = &tenant.events {
        events.emit(crate::events::Event::Breaker {
            tenant: Arc::clone(&tenant.name),
            transition,
        });
    }
}

/// Asks the tenant's breaker (in step with `policy`) to let one session through.
pub(super) fn check(
    tenant: &Arc<TenantCounters>,
    policy: BreakerPolicy<'_>,
    now: Instant,
) -> Result<BreakerPass, Rejected> {
    let mut state = lock(&tenant.breaker);
    state.sync(tenant, policy);
    let ticket = match &mut state.breaker {
        None => None,
        Some(breaker) => {
            let admission = breaker
                .admit(now)
                .map_err(|refusal| refusal.into_rejected(&tenant.name))?;
            if let Some(transition) = admission.transition {
                report(tenant, transition);
            }
            Some(admission.ticket)
        }
    };
    Ok(BreakerPass {
        tenant: Arc::clone(tenant),
        ticket,
    })
}

/// A session's pass through its tenant's breaker. Its verdict is recorded when the session
/// ends ([`BreakerPass::record`]); dropped without one (a later check refused the launch),
/// it gives back the probe place it may hold.
#[derive(Debug)]
pub(crate) struct BreakerPass {
    tenant: Arc<TenantCounters>,
    /// `None` when the tenant has no breaker.
    ticket: Option<BreakerTicket>,
}

impl BreakerPass {
    /// Tells the breaker how the session ended.
    pub(crate) fn record(mut self, verdict: Verdict, now: Instant) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let mut state = lock(&self.tenant.breaker);
        if let Some(breaker) = &mut state.breaker {
            if let Some(transition) = breaker.record(ticket, verdict, now) {
                report(&self.tenant, transition);
            }
        }
    }
}

impl Drop for BreakerPass {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            if let Some(breaker) = &mut lock(&self.tenant.breaker).breaker {
                breaker.release(ticket);
            }
        }
    }
}
