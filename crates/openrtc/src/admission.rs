//! Admission: the ordered chain of checks a launch passes before its session is accepted.
//!
//! [`admit`] runs the checks in this order, and the first refusal wins (it is what the
//! launch returns, and it is counted for the worker, the tenant and, once routed, the agent):
//!
//! 1. `draining`: a stopped worker refuses with `stopped`, then a draining one with
//!    `draining`.
//! 2. `routing`: the agent the job goes to (see the module); an unknown name is refused as
//!    such whatever the load, and reserves nothing.
//! 3. `capacity`: a place among the worker's `max_concurrent_sessions`.
//! 4. the tenant's circuit breaker (`breaker`): refused while open.
//! 5. the tenant's cap (`tenants`): a place among its `max_sessions`.
//! 6. the tenant's heap budget (`heap`): refused while its sessions hold more than it.
//! 7. the agent's cap: a place among its `max_sessions_per_agent`.
//! 8. `filter`: the application's request filter.
//!
//! Every place (worker, tenant, agent, a half-open breaker's probe) is reserved atomically,
//! so caps are exact under concurrent launches. Each check runs holding the places of the
//! checks before it; a refusal drops them, which gives each back exactly once. An admitted
//! launch hands its places to the session (its [`SessionPlaces`]), and the session's end
//! gives them back.

mod breaker;
mod capacity;
mod draining;
mod filter;
mod heap;
mod routing;
mod tenant_breaker;
mod tenants;
#[cfg(test)]
mod tests_sim;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

#[cfg(test)]
use breaker::BreakerSettings;
pub(crate) use breaker::Transition;
pub(crate) use capacity::Reservation;
pub(crate) use filter::RequestFilter;
pub(crate) use routing::Router;
pub(crate) use tenant_breaker::BreakerPolicy;
pub(crate) use tenants::{AgentCounters, TenantCounters, TenantRegistry};

use crate::{JobRequest, Rejected};

/// The limits in force for one launch's tenant and agents, from the tenant config.
pub(crate) trait Limits {
    /// The tenant's cap on concurrent sessions.
    fn tenant_cap(&self) -> Option<u32>;
    /// The tenant's heap budget, in bytes.
    fn tenant_heap_budget(&self) -> Option<u64>;
    /// The live heap the tenant's sessions hold now (asked only when it has a budget).
    fn tenant_live_heap(&self) -> u64;
    /// The cap on an agent's concurrent sessions.
    fn agent_cap(&self, agent: &str) -> Option<u32>;
    /// The tenant's breaker settings.
    fn breaker(&self) -> BreakerPolicy<'_>;
}

/// What the chain is shown of the pool at one launch, taken under the pool's lifecycle lock.
pub(crate) struct Gate<'a> {
    /// Whether the pool's runtime is gone.
    pub(crate) stopped: bool,
    /// Whether the pool is draining (read by the chain, in its turn).
    pub(crate) draining: &'a AtomicBool,
    /// The live sessions, and the places reserved for sessions being launched.
    pub(crate) active: &'a AtomicU32,
    /// The worker's cap on concurrent sessions.
    pub(crate) max_sessions: u32,
    /// The registered agents' names, in registration order.
    pub(crate) agent_names: &'a [&'a str],
    /// Their counters, in the same order.
    pub(crate) agent_counters: &'a [Arc<AgentCounters>],
    /// The application's router, if any.
    pub(crate) router: Option<&'a Router>,
    /// The application's request filter, if any.
    pub(crate) filter: Option<&'a RequestFilter>,
    /// The launch's tenant's counters.
    pub(crate) tenant: &'a Arc<TenantCounters>,
    /// The limits in force.
    pub(crate) limits: &'a dyn Limits,
}

/// A launch that passed every check: the agent it is routed to and its places.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    /// The position of the routed agent among the registered agents.
    pub(crate) agent: usize,
    /// The worker place reserved for the session; released if dropped before it is kept.
    pub(crate) reservation: Reservation<'a>,
    /// The tenant and agent places, for the session to hold until it ends.
    pub(crate) places: SessionPlaces,
}

/// The places an admitted session holds in its tenant's and agent's counts; dropping them
/// (once, when the session ends) gives them back.
#[derive(Debug)]
pub(crate) struct SessionPlaces {
    breaker: tenant_breaker::BreakerPass,
    tenant: tenants::Place<TenantCounters>,
    /// Held only to be given back when dropped.
    _agent: tenants::Place<AgentCounters>,
}

impl SessionPlaces {
    /// Gives the places back, telling the tenant's breaker and counters how the session
    /// ended.
    /// `key` is the session's.
    pub(crate) fn release(
        self,
        key: u64,
        verdict: crate::session::Verdict,
        now: tokio::time::Instant,
    ) {
        if let Some(tenant) = self.tenant.counters() {
            tenant.leave(key);
            if verdict == crate::session::Verdict::Failure {
                tenant
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.breaker.record(verdict, now);
    }
}

/// A launch the chain refused: why, and the agent it was routed to if routing got that far.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The refusal, as the launch returns it.
    pub(crate) rejected: Rejected,
    /// The position of the routed agent among the registered agents.
    pub(crate) agent: Option<usize>,
}

/// Runs the admission chain for `request`, and counts a refusal against its tenant and (once
/// routed) its agent; the caller counts it for the worker.
pub(crate) fn admit<'a>(gate: &Gate<'a>, request: &JobRequest) -> Result<Admitted<'a>, Refused> {
    let mut routed = None;
    chain(gate, request, &mut routed).map_err(|rejected| {
        count_refusal(
            gate.tenant,
            routed.and_then(|agent: usize| gate.agent_counters.get(agent)),
            &rejected,
        );
        Refused {
            rejected,
            agent: routed,
        }
    })
}

/// Counts a refusal against its tenant and, once routed, its agent (the caller counts it for
/// the worker).
pub(crate) fn count_refusal(
    tenant: &TenantCounters,
    agent: Option<&Arc<AgentCounters>>,
    rejected: &Rejected,
) {
    let reason = rejected.reason();
    tenant.refused.count(reason);
    if let Some(agent) = agent {
        agent.refused.count(reason);
    }
}

fn chain<'a>(
    gate: &Gate<'a>,
    request: &JobRequest,
    routed: &mut Option<usize>,
) -> Result<Admitted<'a>, Rejected> {
    draining::check(gate.stopped, gate.draining)?;
    let agent = routing::route(request, gate.router, gate.agent_names)?;
    *routed = Some(agent);
    let reservation = capacity::reserve(gate.active, gate.max_sessions)?;
    let breaker = tenant_breaker::check(
        gate.tenant,
        gate.limits.breaker(),
        // Tokio's clock, as the session's end reads it: paused time in tests.
        tokio::time::Instant::now(),
    )?;
    let tenant = tenants::reserve(gate.tenant, gate.limits.tenant_cap()).map_err(|cap| {
        Rejected::TenantCap {
            tenant: request.tenant.clone(),
            cap,
        }
    })?;
    heap::check(&request.tenant, gate.limits)?;
    let agent_name = gate.agent_names[agent];
    let agent_place = tenants::reserve(
        &gate.agent_counters[agent],
        gate.limits.agent_cap(agent_name),
    )
    .map_err(|cap| Rejected::AgentCap {
        agent: agent_name.to_owned(),
        cap,
    })?;
    filter::check(gate.filter, request)?;
    Ok(Admitted {
        agent,
        reservation,
        places: SessionPlaces {
            breaker,
            tenant,
            _agent: agent_place,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    use openrtc_proto::RefusalReason;

    use super::*;

    const AGENTS: [&str; 2] = ["echo", "hot"];

    #[derive(Default)]
    struct TestLimits {
        tenant_cap: std::sync::Mutex<Option<u32>>,
        heap_budget: Option<u64>,
        live_heap: std::sync::atomic::AtomicU64,
        agent_caps: HashMap<&'static str, u32>,
        breaker: Option<BreakerSettings>,
    }

    impl Limits for TestLimits {
        fn tenant_cap(&self) -> Option<u32> {
            *crate::lock(&self.tenant_cap)
        }
        fn tenant_heap_budget(&self) -> Option<u64> {
            self.heap_budget
        }
        fn tenant_live_heap(&self) -> u64 {
            self.live_heap.load(Ordering::Relaxed)
        }
        fn agent_cap(&self, agent: &str) -> Option<u32> {
            self.agent_caps.get(agent).copied()
        }
        fn breaker(&self) -> BreakerPolicy<'_> {
            BreakerPolicy {
                generation: 0,
                settings: self.breaker.as_ref(),
            }
        }
    }

    /// A pool's counters, as the chain sees them.
    struct Pool {
        stopped: bool,
        draining: AtomicBool,
        active: AtomicU32,
        max: u32,
        agents: Vec<Arc<AgentCounters>>,
        tenant: Arc<TenantCounters>,
        limits: TestLimits,
        filter: Option<Box<RequestFilter>>,
    }

    impl Pool {
        fn new(max: u32) -> Self {
            Self {
                stopped: false,
                draining: AtomicBool::new(false),
                active: AtomicU32::new(0),
                max,
                agents: vec![Arc::default(), Arc::default()],
                tenant: Arc::default(),
                limits: TestLimits::default(),
                filter: None,
            }
        }

        fn gate(&self) -> Gate<'_> {
            Gate {
                stopped: self.stopped,
                draining: &self.draining,
                active: &self.active,
                max_sessions: self.max,
                agent_names: &AGENTS,
                agent_counters: &self.agents,
                router: None,
                filter: self.filter.as_deref(),
                tenant: &self.tenant,
                limits: &self.limits,
            }
        }

        fn admit(&self, request: &JobRequest) -> Result<Admitted<'_>, Rejected> {
            admit(&self.gate(), request).map_err(|refused| refused.rejected)
        }

        /// Places taken: worker, tenant, and each agent's.
        fn taken(&self) -> (u32, u32, [u32; 2]) {
            (
                self.active.load(Ordering::Acquire),
                self.tenant.active.load(Ordering::Acquire),
                [0, 1].map(|agent| self.agents[agent].active.load(Ordering::Acquire)),
            )
        }

        fn refused(&self, reason: RefusalReason) -> (u64, [u64; 2]) {
            let count = |counters: &crate::error::RefusalCounters| {
                counters
                    .counts()
                    .find(|(counted, _)| *counted == reason)
                    .map_or(0, |(_, count)| count)
            };
            (
                count(&self.tenant.refused),
                [0, 1].map(|agent| count(&self.agents[agent].refused)),
            )
        }
    }

    fn job(agent: &str) -> JobRequest {
        JobRequest::new().tenant("acme").agent(agent)
    }

    #[track_caller]
    fn refused(result: Result<Admitted<'_>, Rejected>) -> Rejected {
        result.map(|admitted| admitted.agent).expect_err("refused")
    }

    #[test]
    fn stopped_wins_over_draining_and_draining_over_routing_and_capacity() {
        let mut pool = Pool::new(0);
        pool.draining.store(true, Ordering::Release);
        assert_eq!(refused(pool.admit(&job("nope"))), Rejected::Draining);
        pool.stopped = true;
        assert_eq!(refused(pool.admit(&job("nope"))), Rejected::Stopped);
        assert_eq!(pool.taken(), (0, 0, [0, 0]));
        assert_eq!(pool.refused(RefusalReason::Draining), (1, [0, 0]));
    }

    #[test]
    fn an_unknown_agent_is_refused_before_capacity_and_reserves_nothing() {
        let pool = Pool::new(0);
        assert_eq!(
            refused(pool.admit(&job("nope"))),
            Rejected::UnknownAgent {
                name: "nope".into()
            }
        );
        assert_eq!(pool.taken(), (0, 0, [0, 0]));
        assert_eq!(pool.refused(RefusalReason::UnknownAgent), (1, [0, 0]));
    }

    #[test]
    fn each_cap_refuses_in_its_turn_and_counts_against_the_tenant_and_agent() {
        let mut pool = Pool::new(3);
        *crate::lock(&pool.limits.tenant_cap) = Some(2);
        pool.limits.agent_caps.insert("hot", 1);
        let first = pool.admit(&job("hot")).expect("room");
        assert_eq!(pool.taken(), (1, 1, [0, 1]));
        assert_eq!(
            refused(pool.admit(&job("hot"))),
            Rejected::AgentCap {
                agent: "hot".into(),
                cap: 1
            }
        );
        assert_eq!(pool.refused(RefusalReason::AgentCap), (1, [0, 1]));
        let second = pool.admit(&job("echo")).expect("room");
        assert_eq!(
            refused(pool.admit(&job("echo"))),
            Rejected::TenantCap {
                tenant: "acme".into(),
                cap: 2
            }
        );
        assert_eq!(pool.refused(RefusalReason::TenantCap), (1, [1, 0]));
        let other = JobRequest::new().tenant("beta").agent("echo");
        let full = Pool::new(1);
        let _only = full.admit(&other).expect("room");
        *crate::lock(&full.limits.tenant_cap) = Some(0);
        assert_eq!(
            refused(full.admit(&other)),
            Rejected::WorkerFull { max: 1 },
            "the worker's cap comes before the tenant's"
        );
        // Every refusal gave back what it had reserved: only the two admitted hold places.
        assert_eq!(pool.taken(), (2, 2, [1, 1]));
        drop((first, second));
        assert_eq!(pool.taken(), (0, 0, [0, 0]));
    }

    #[test]
    fn a_tenant_over_its_heap_budget_is_refused_and_one_at_it_is_not() {
        let mut pool = Pool::new(10);
        pool.limits.heap_budget = Some(1000);
        pool.limits.live_heap.store(1000, Ordering::Relaxed);
        let admitted = pool
            .admit(&job("echo"))
            .expect("at the budget, not over it");
        pool.limits.live_heap.store(1001, Ordering::Relaxed);
        assert_eq!(
            refused(pool.admit(&job("echo"))),
            Rejected::TenantHeap {
                tenant: "acme".into(),
                live_bytes: 1001,
                budget_bytes: 1000
            }
        );
        assert_eq!(pool.taken(), (1, 1, [1, 0]));
        drop(admitted);
        assert_eq!(pool.taken(), (0, 0, [0, 0]));
    }

    #[test]
    fn the_filter_runs_last_and_its_refusal_gives_every_place_back() {
        let mut pool = Pool::new(10);
        pool.filter = Some(Box::new(|request: &JobRequest| {
            if request.metadata.get("vip").is_some() {
                Ok(())
            } else {
                Err("vip only".to_owned())
            }
        }));
        assert_eq!(
            refused(pool.admit(&job("hot"))),
            Rejected::Filtered {
                reason: "vip only".into()
            }
        );
        assert_eq!(pool.taken(), (0, 0, [0, 0]));
        assert_eq!(pool.refused(RefusalReason::Filtered), (1, [0, 1]));
        let vip = job("hot").metadata(serde_json::json!({"vip": true}));
        let admitted = pool.admit(&vip).expect("a vip");
        assert_eq!(admitted.agent, 1);
        assert_eq!(pool.taken(), (1, 1, [0, 1]));
    }

    #[test]
    fn a_kept_worker_place_stays_taken_while_the_session_places_are_held() {
        let pool = Pool::new(2);
        let admitted = pool.admit(&job("echo")).expect("room");
        admitted.reservation.keep();
        assert_eq!(pool.taken(), (1, 1, [1, 0]));
        drop(admitted.places);
        assert_eq!(
            pool.taken(),
            (1, 0, [0, 0]),
            "the worker place is the pool's to free"
        );
    }

    /// 1,000 launches from 8 threads at once against a worker cap of 50, a tenant cap of 20
    /// and an agent cap of 10: no cap is ever passed, and every place comes back.
    #[test]
    fn concurrent_launches_never_pass_a_cap_and_every_place_comes_back() {
        let mut pool = Pool::new(50);
        *crate::lock(&pool.limits.tenant_cap) = Some(20);
        pool.limits.agent_caps.insert("hot", 10);
        let pool = &pool;
        let peaks = [&AtomicU32::new(0), &AtomicU32::new(0), &AtomicU32::new(0)];
        let admitted_count = AtomicU32::new(0);
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for thread in 0..8_u32 {
                let (start, admitted_count) = (&start, &admitted_count);
                scope.spawn(move || {
                    start.wait();
                    let mut held = Vec::new();
                    for launch in 0..125_u32 {
                        let agent = if (thread + launch) % 2 == 0 {
                            "hot"
                        } else {
                            "echo"
                        };
                        if let Ok(admitted) = pool.admit(&job(agent)) {
                            admitted_count.fetch_add(1, Ordering::Relaxed);
                            held.push(admitted);
                        }
                        let (worker, tenant, agents) = pool.taken();
                        peaks[0].fetch_max(worker, Ordering::Relaxed);
                        peaks[1].fetch_max(tenant, Ordering::Relaxed);
                        peaks[2].fetch_max(agents[1], Ordering::Relaxed);
                        // Sessions end now and then, so places are reused under contention.
                        if launch % 3 == 2 {
                            held.pop();
                        }
                    }
                });
            }
        });
        // The worker place is reserved before the tenant cap is checked, so a launch the
        // tenant cap then refuses holds one for a moment: 20 admitted, plus at most one
        // launch under way per thread.
        assert!(
            peaks[0].load(Ordering::Relaxed) <= 20 + 8,
            "the tenant cap bounds the worker here, but for launches under way"
        );
        assert_eq!(
            peaks[1].load(Ordering::Relaxed),
            20,
            "the tenant cap was reached, not passed"
        );
        assert_eq!(
            peaks[2].load(Ordering::Relaxed),
            10,
            "the agent cap was reached, not passed"
        );
        assert!(admitted_count.load(Ordering::Relaxed) > 20);
        assert_eq!(pool.taken(), (0, 0, [0, 0]), "every place came back");
        let (tenant_refusals, _) = pool.refused(RefusalReason::TenantCap);
        let (_, agent_refusals) = pool.refused(RefusalReason::AgentCap);
        assert_eq!(
            u64::from(admitted_count.load(Ordering::Relaxed)) + tenant_refusals + agent_refusals[1],
            1000,
            "every launch was admitted or refused by a cap, and counted once"
        );
    }
}
