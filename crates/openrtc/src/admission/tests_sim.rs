//! Simulations of the admission chain over paused time: tenants launching on a fixed
//! schedule through the real chain, the real tenant counters and the real breakers, checked
//! against figures derived from the schedule.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openrtc_proto::{BreakerSnapshot, BreakerState, RefusalReason};
use tokio::time::Instant;

use super::breaker::BreakerSettings;
use super::{
    AgentCounters, BreakerPolicy, Gate, Limits, SessionPlaces, TenantCounters, TenantRegistry,
    admit,
};
use crate::session::Verdict;
use crate::{JobRequest, Rejected, lock};

/// The one agent registered in the simulated worker.
const AGENT_NAMES: [&str; 1] = ["echo"];
/// How often each tenant launches one session.
const TICK: Duration = Duration::from_millis(100);
/// How long each admitted session runs.
const SESSION_LENGTH: Duration = Duration::from_secs(1);
/// Two minutes of launches, one per tick.
const TWO_MINUTES_OF_TICKS: u64 = 1_200;

/// The limits every simulated tenant runs under: the default breaker, an optional tenant
/// cap, no heap budget, no agent cap; the breaker's clock is tokio's (paused in these tests).
struct SimLimits {
    tenant_cap: Mutex<Option<u32>>,
    breaker: BreakerSettings,
}

impl Limits for SimLimits {
    fn tenant_cap(&self) -> Option<u32> {
        *lock(&self.tenant_cap)
    }
    fn tenant_heap_budget(&self) -> Option<u64> {
        None
    }
    fn tenant_live_heap(&self) -> u64 {
        0
    }
    fn agent_cap(&self, _agent: &str) -> Option<u32> {
        None
    }
    fn breaker(&self) -> BreakerPolicy<'_> {
        BreakerPolicy {
            generation: 0,
            settings: Some(&self.breaker),
        }
    }
}

/// One worker's admission state as the pool holds it: its session count and cap, one agent,
/// the tenants' registry and the limits in force.
struct Worker {
    draining: AtomicBool,
    active: AtomicU32,
    max_sessions: u32,
    agent_counters: Vec<Arc<AgentCounters>>,
    registry: TenantRegistry,
    limits: SimLimits,
}

impl Worker {
    fn new(max_sessions: u32, tenant_cap: Option<u32>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            active: AtomicU32::new(0),
            max_sessions,
            agent_counters: vec![Arc::default()],
            registry: TenantRegistry::default(),
            limits: SimLimits {
                tenant_cap: Mutex::new(tenant_cap),
                breaker: BreakerSettings::default(),
            },
        }
    }

    fn tenant(&self, tenant: &str) -> Arc<TenantCounters> {
        self.registry.get_or_create(tenant)
    }

    /// Runs `tenant`'s launch through the chain; an admitted session keeps its worker place
    /// as the pool does, and [`Worker::end`] gives it back.
    fn launch(&self, tenant: &str) -> Result<SessionPlaces, Rejected> {
        let counters = self.tenant(tenant);
        let gate = Gate {
            stopped: false,
            draining: &self.draining,
            active: &self.active,
            max_sessions: self.max_sessions,
            agent_names: &AGENT_NAMES,
            agent_counters: &self.agent_counters,
            router: None,
            filter: None,
            tenant: &counters,
            limits: &self.limits,
        };
        let admitted = admit(
            &gate,
            &JobRequest::new().tenant(tenant).agent(AGENT_NAMES[0]),
        )
        .map_err(|refused| refused.rejected)?;
        admitted.reservation.keep();
        Ok(admitted.places)
    }

    /// Ends a session now with `verdict`, as the pool's `session_ended` does.
    fn end(&self, places: SessionPlaces, verdict: Verdict) {
        places.release(0, verdict, Instant::now());
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    fn breaker(&self, tenant: &str) -> BreakerSnapshot {
        lock(&self.tenant(tenant).breaker).snapshot(Instant::now())
    }

    fn set_tenant_cap(&self, cap: Option<u32>) {
        *lock(&self.limits.tenant_cap) = cap;
    }

    /// The tenant's refusals the chain counted, by reason, leaving out the reasons at zero.
    fn refused(&self, tenant: &str) -> Vec<(RefusalReason, u64)> {
        self.tenant(tenant)
            .refused
            .counts()
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// Places taken: the worker's, the tenant's and the agent's.
    fn taken(&self, tenant: &str) -> (u32, u32, u32) {
        (
            self.active.load(Ordering::Acquire),
            self.tenant(tenant).active.load(Ordering::Acquire),
            self.agent_counters[0].active.load(Ordering::Acquire),
        )
    }
}

/// A simulated tenant: its name, and the verdict of its `n`th admitted session (from 0).
#[derive(Clone, Copy)]
struct SimTenant {
    name: &'static str,
    verdict: fn(u64) -> Verdict,
}

/// What one tenant saw over a simulation, with times in milliseconds since its start.
#[derive(Debug, Default, PartialEq)]
struct TenantTrace {
    /// Each launch's refusal, `None` when admitted, one per tick.
    results: Vec<Option<Rejected>>,
    /// Its sessions that ended, by verdict.
    successes: u64,
    failures: u64,
    /// Each change of the breaker's state, sampled after each tick, from the first tick.
    states: Vec<(u64, BreakerState)>,
    /// The breaker's cooldown each time it was seen entering open.
    open_cooldowns_ms: Vec<u64>,
    /// The breaker at the end, once every session ended.
    last: BreakerSnapshot,
}

impl TenantTrace {
    fn admitted(&self) -> usize {
        self.results
            .iter()
            .filter(|result| result.is_none())
            .count()
    }

    /// The breaker's refusals: each one's launch time and retry-after, in milliseconds.
    fn breaker_refusals(&self) -> Vec<(u64, u64)> {
        (0_u64..)
            .zip(&self.results)
            .filter_map(|(tick, result)| match result {
                Some(Rejected::BreakerOpen { retry_after, .. }) => {
                    Some((tick * 100, millis(*retry_after)))
                }
                _ => None,
            })
            .collect()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).expect("a test duration fits in u64 milliseconds")
}

/// A simulated session: when it ends, its tenant's position, its places and its verdict.
struct RunningSession {
    end: Instant,
    tenant: usize,
    places: SessionPlaces,
    verdict: Verdict,
}

/// Ends the sessions due at `now`, counting their verdicts in their tenants' traces.
fn end_due(
    worker: &Worker,
    running: &mut VecDeque<RunningSession>,
    traces: &mut [TenantTrace],
    now: Instant,
) {
    while running.front().is_some_and(|session| session.end <= now) {
        let session = running.pop_front().expect("a session is due");
        worker.end(session.places, session.verdict);
        let trace = &mut traces[session.tenant];
        match session.verdict {
            Verdict::Success => trace.successes += 1,
            Verdict::Failure => trace.failures += 1,
            Verdict::Ignored => {}
        }
    }
}

/// Runs `ticks` ticks of [`TICK`]: at each, the sessions due end first (each [`SESSION_LENGTH`]
/// after its launch), then each tenant, in order, launches one session. Once the launches are
/// over, the sessions still running end at their time. Time must be paused.
async fn simulate(worker: &Worker, tenants: &[SimTenant], ticks: u64) -> Vec<TenantTrace> {
    let start = Instant::now();
    let since_start = |now: Instant| millis(now - start);
    let mut traces: Vec<TenantTrace> = tenants.iter().map(|_| TenantTrace::default()).collect();
    let mut admitted_counts = vec![0_u64; tenants.len()];
    // Every session lasts as long, so launch order is end order.
    let mut running: VecDeque<RunningSession> = VecDeque::new();
    for _ in 0..ticks {
        let now = Instant::now();
        end_due(worker, &mut running, &mut traces, now);
        for (index, tenant) in tenants.iter().enumerate() {
            let result = worker.launch(tenant.name);
            traces[index].results.push(result.as_ref().err().cloned());
            if let Ok(places) = result {
                let verdict = (tenant.verdict)(admitted_counts[index]);
                admitted_counts[index] += 1;
                running.push_back(RunningSession {
                    end: now + SESSION_LENGTH,
                    tenant: index,
                    places,
                    verdict,
                });
            }
        }
        for (index, tenant) in tenants.iter().enumerate() {
            let snapshot = worker.breaker(tenant.name);
            let trace = &mut traces[index];
            if trace.states.last().map(|(_, state)| *state) != Some(snapshot.state) {
                trace.states.push((since_start(now), snapshot.state));
                if snapshot.state == BreakerState::Open {
                    trace.open_cooldowns_ms.push(snapshot.cooldown_ms);
                }
            }
        }
        tokio::time::advance(TICK).await;
    }
    while let Some(session) = running.front() {
        let now = Instant::now();
        if session.end > now {
            tokio::time::advance(session.end - now).await;
        }
        end_due(worker, &mut running, &mut traces, Instant::now());
    }
    for (index, tenant) in tenants.iter().enumerate() {
        traces[index].last = worker.breaker(tenant.name);
    }
    traces
}

fn always_succeeds(_: u64) -> Verdict {
    Verdict::Success
}

fn always_fails(_: u64) -> Verdict {
    Verdict::Failure
}

/// One session in three fails: never more than half of any window of five or more.
fn every_third_fails(admitted: u64) -> Verdict {
    if admitted % 3 == 2 {
        Verdict::Failure
    } else {
        Verdict::Success
    }
}

/// The breaker refusals the failing tenant of the main scenario must see, derived from the
/// schedule (see [`a_failing_tenant_cycles_its_breaker_and_three_healthy_ones_never_notice`]):
/// open phases refuse with the cooldown left, half-open phases with every probe place taken
/// refuse with zero.
fn expected_failing_refusals() -> Vec<(u64, u64)> {
    open_phase(1_400, 30_000, 31_300)
        .chain(half_open_full(31_600, 32_300))
        .chain(open_phase(32_400, 60_000, 92_300))
        .chain(half_open_full(92_600, 93_300))
        .chain(open_phase(93_400, 120_000, 119_900))
        .collect()
}

/// The refusals of launches from `since` to `until` (ms) by a breaker open since `since`.
fn open_phase(since: u64, cooldown: u64, until: u64) -> impl Iterator<Item = (u64, u64)> {
    (since..=until)
        .step_by(100)
        .map(move |time| (time, cooldown - (time - since)))
}

/// The refusals of launches from `from` to `to` (ms) by a half-open breaker with no place.
fn half_open_full(from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> {
    (from..=to).step_by(100).map(|time| (time, 0))
}

/// A tenant whose every session fails, among three healthy ones, for two minutes: one launch
/// per tenant every 100 ms, each session 1 s long.
///
/// The failing tenant, derived from the schedule (times in seconds from the start):
/// - launches at 0.0 to 1.3 are admitted (14); the session launched at 0.4 ends at 1.4, the
///   fifth failure of five, so the breaker opens at 1.4 (ends run before launches) for 30 s.
///   The 9 sessions launched at 0.5 to 1.3 end while it is open and decide nothing.
/// - 1.4 to 31.3: 300 launches refused, with 30 s down to 0.1 s left.
/// - 31.4: the cooldown is over (30.0 s exactly): half-open, first probe; 31.5: second probe.
///   31.6 to 32.3: 8 launches refused with a zero retry-after (both probe places taken).
/// - 32.4: the first probe fails, it reopens for 60 s (the second probe's failure at 32.5,
///   of a round no longer current, decides nothing). 32.4 to 92.3: 600 refused.
/// - 92.4 and 92.5: two probes; 92.6 to 93.3: 8 refused; 93.4: reopened for 120 s, beyond
///   the end: 93.4 to 119.9, 266 refused.
///
/// So 1,200 launches: 18 admitted, 300 + 8 + 600 + 8 + 266 = 1,182 refused by the breaker;
/// states closed, open, half-open, open, half-open, open; cooldowns 30 s, 60 s, 120 s.
///
/// Each healthy tenant holds at most 10 sessions (the 9 launched in the last 0.9 s and the
/// new one), so a tenant cap of 10 and a worker cap of 40 are met exactly and never passed:
/// every one of their 1,200 launches is admitted and succeeds.
#[tokio::test(start_paused = true)]
async fn a_failing_tenant_cycles_its_breaker_and_three_healthy_ones_never_notice() {
    let worker = Worker::new(40, Some(10));
    let tenants = [
        SimTenant {
            name: "flaky",
            verdict: always_fails,
        },
        SimTenant {
            name: "acme",
            verdict: always_succeeds,
        },
        SimTenant {
            name: "globex",
            verdict: always_succeeds,
        },
        SimTenant {
            name: "initech",
            verdict: always_succeeds,
        },
    ];
    let traces = simulate(&worker, &tenants, TWO_MINUTES_OF_TICKS).await;

    for (tenant, trace) in tenants.iter().zip(&traces).skip(1) {
        assert_eq!(trace.results.len(), 1_200, "{}", tenant.name);
        assert_eq!(
            trace.admitted(),
            1_200,
            "{}: every launch admitted",
            tenant.name
        );
        assert_eq!(
            (trace.successes, trace.failures),
            (1_200, 0),
            "{}",
            tenant.name
        );
        assert_eq!(worker.refused(tenant.name), [], "{}", tenant.name);
        assert_eq!(trace.states, [(0, BreakerState::Closed)], "{}", tenant.name);
        assert_eq!(trace.last.opened_count, 0, "{}", tenant.name);
        let started = worker.tenant(tenant.name).started.load(Ordering::Relaxed);
        let failed = worker.tenant(tenant.name).failed.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "{}", tenant.name);
        // The pool counts starts itself; the chain never does.
        assert_eq!(started, 0, "{}", tenant.name);
    }

    let flaky = &traces[0];
    assert_eq!(flaky.results.len(), 1_200);
    assert_eq!(flaky.admitted(), 18);
    assert_eq!((flaky.successes, flaky.failures), (0, 18));
    assert_eq!(
        worker.tenant("flaky").failed.load(Ordering::Relaxed),
        18,
        "each failure counted for the tenant"
    );
    let refusals = flaky.breaker_refusals();
    assert_eq!(refusals.len(), 1_182, "every refusal is the breaker's");
    assert_eq!(refusals, expected_failing_refusals());
    assert_eq!(
        worker.refused("flaky"),
        [(RefusalReason::BreakerOpen, 1_182)],
        "the chain counted each refusal once, as the breaker's"
    );
    assert_eq!(
        flaky.states,
        [
            (0, BreakerState::Closed),
            (1_400, BreakerState::Open),
            (31_400, BreakerState::HalfOpen),
            (32_400, BreakerState::Open),
            (92_400, BreakerState::HalfOpen),
            (93_400, BreakerState::Open),
        ]
    );
    assert_eq!(flaky.open_cooldowns_ms, [30_000, 60_000, 120_000]);
    // The first refusal of each open phase waits the whole cooldown.
    let first_of_each_open_phase: Vec<u64> = [1_400, 32_400, 93_400]
        .iter()
        .filter_map(|time| refusals.iter().find(|(at, _)| at == time))
        .map(|(_, retry_after)| *retry_after)
        .collect();
    assert_eq!(first_of_each_open_phase, [30_000, 60_000, 120_000]);
    assert_eq!(flaky.last.state, BreakerState::Open);
    assert_eq!(flaky.last.opened_count, 3);
    assert_eq!(flaky.last.cooldown_ms, 120_000);
    assert_eq!(flaky.last.probes_in_flight_count, 0);
    // The window counted only the five failures before it opened (at 1.0 to 1.4 s), long
    // out of it by the end; the failures while open or half-open were never counted.
    assert_eq!(
        (
            flaky.last.window_samples_count,
            flaky.last.window_failures_count
        ),
        (0, 0)
    );

    for tenant in &tenants {
        assert_eq!(
            worker.taken(tenant.name).1,
            0,
            "{}: every tenant place came back",
            tenant.name
        );
    }
    assert_eq!(worker.taken("acme"), (0, 0, 0), "every place came back");
}

/// Ends `places` in order with `verdicts`, a second apart.
async fn end_all(worker: &Worker, places: Vec<SessionPlaces>, verdicts: &[Verdict]) {
    assert_eq!(places.len(), verdicts.len());
    for (places, verdict) in places.into_iter().zip(verdicts) {
        tokio::time::advance(Duration::from_secs(1)).await;
        worker.end(places, *verdict);
    }
}

/// Launches `count` sessions of `tenant` that the chain must admit.
#[track_caller]
fn launch_all(worker: &Worker, tenant: &str, count: usize) -> Vec<SessionPlaces> {
    (0..count)
        .map(|_| worker.launch(tenant).expect("the chain admits this launch"))
        .collect()
}

#[track_caller]
fn window(snapshot: &BreakerSnapshot) -> (BreakerState, u32, u32) {
    (
        snapshot.state,
        snapshot.window_samples_count,
        snapshot.window_failures_count,
    )
}

/// The default breaker's threshold through the chain: 3 failures of 5 outcomes open it and
/// refuse the next launch for the cooldown; 3 of 6 do not, and a fourth failure (4 of 7) does.
#[tokio::test(start_paused = true)]
async fn three_failures_of_five_open_it_through_the_chain_and_three_of_six_do_not() {
    use Verdict::{Failure as F, Success as S};
    let worker = Worker::new(100, None);

    let four = launch_all(&worker, "five", 4);
    end_all(&worker, four, &[S, S, F, F]).await;
    assert_eq!(
        window(&worker.breaker("five")),
        (BreakerState::Closed, 4, 2)
    );
    let fifth = launch_all(&worker, "five", 1);
    end_all(&worker, fifth, &[F]).await;
    assert_eq!(window(&worker.breaker("five")), (BreakerState::Open, 5, 3));
    assert_eq!(
        worker.launch("five").map(drop),
        Err(Rejected::BreakerOpen {
            tenant: "five".into(),
            retry_after: Duration::from_secs(30),
        })
    );
    assert_eq!(worker.refused("five"), [(RefusalReason::BreakerOpen, 1)]);

    let six = launch_all(&worker, "six", 6);
    end_all(&worker, six, &[S, S, S, F, F, F]).await;
    assert_eq!(window(&worker.breaker("six")), (BreakerState::Closed, 6, 3));
    let seventh = launch_all(&worker, "six", 1);
    end_all(&worker, seventh, &[F]).await;
    assert_eq!(window(&worker.breaker("six")), (BreakerState::Open, 7, 4));
    assert!(matches!(
        worker.launch("six"),
        Err(Rejected::BreakerOpen { .. })
    ));
    assert_eq!(worker.taken("six"), (0, 0, 0));
}

/// A half-open probe that a later check (the tenant cap) refuses gives its probe place back:
/// three such launches in a row are each refused by the cap, never by the breaker, and once
/// the cap has room the next launches are admitted as the two probes, which close it.
#[tokio::test(start_paused = true)]
async fn a_probe_refused_by_a_later_check_gives_its_place_back() {
    use Verdict::{Failure as F, Success as S};
    let worker = Worker::new(100, None);
    let long_session = worker.launch("acme").expect("closed, no cap");
    let opening = launch_all(&worker, "acme", 5);
    end_all(&worker, opening, &[S, S, F, F, F]).await;
    assert_eq!(worker.breaker("acme").state, BreakerState::Open);

    // The long session holds the only place the cap now allows.
    worker.set_tenant_cap(Some(1));
    tokio::time::advance(Duration::from_secs(30)).await;
    for attempt in 0..3 {
        assert_eq!(
            worker.launch("acme").map(drop),
            Err(Rejected::TenantCap {
                tenant: "acme".into(),
                cap: 1,
            }),
            "attempt {attempt}: the breaker let it through, the cap refused it"
        );
        let snapshot = worker.breaker("acme");
        assert_eq!(snapshot.state, BreakerState::HalfOpen);
        assert_eq!(snapshot.probes_in_flight_count, 0, "attempt {attempt}");
    }
    assert_eq!(worker.taken("acme"), (1, 1, 1));

    // Not a probe: its end while half-open decides nothing, and frees the tenant place.
    worker.end(long_session, S);
    assert_eq!(worker.breaker("acme").state, BreakerState::HalfOpen);
    let first_probe = worker
        .launch("acme")
        .expect("the cap has room: the first probe");
    assert_eq!(worker.breaker("acme").probes_in_flight_count, 1);
    worker.set_tenant_cap(Some(3));
    let second_probe = worker.launch("acme").expect("the second probe");
    assert_eq!(
        worker.launch("acme").map(drop),
        Err(Rejected::BreakerOpen {
            tenant: "acme".into(),
            retry_after: Duration::ZERO,
        }),
        "both probe places are taken"
    );
    assert_eq!(
        worker.refused("acme"),
        [
            (RefusalReason::BreakerOpen, 1),
            (RefusalReason::TenantCap, 3)
        ]
    );
    end_all(&worker, vec![first_probe, second_probe], &[S, S]).await;
    let snapshot = worker.breaker("acme");
    assert_eq!(window(&snapshot), (BreakerState::Closed, 0, 0));
    assert_eq!(snapshot.cooldown_ms, 30_000);
    assert_eq!(worker.taken("acme"), (0, 0, 0));
}

/// Tenant B's admission is the same, launch for launch, whether tenant A's breaker opens
/// (every session of A fails) or not (none does): two minutes of the same schedule each.
#[tokio::test(start_paused = true)]
async fn one_tenants_open_breaker_changes_nothing_for_another() {
    let tenant_b = SimTenant {
        name: "b",
        verdict: every_third_fails,
    };
    let failing = Worker::new(40, Some(10));
    let with_a_failing = simulate(
        &failing,
        &[
            SimTenant {
                name: "a",
                verdict: always_fails,
            },
            tenant_b,
        ],
        TWO_MINUTES_OF_TICKS,
    )
    .await;
    let healthy = Worker::new(40, Some(10));
    let with_a_healthy = simulate(
        &healthy,
        &[
            SimTenant {
                name: "a",
                verdict: always_succeeds,
            },
            tenant_b,
        ],
        TWO_MINUTES_OF_TICKS,
    )
    .await;

    assert_eq!(with_a_failing[0].last.opened_count, 3, "a's breaker opened");
    assert_eq!(with_a_healthy[0].last.opened_count, 0);
    assert_eq!(with_a_healthy[0].admitted(), 1_200);
    assert_eq!(
        with_a_failing[1], with_a_healthy[1],
        "b saw the same, launch for launch"
    );
    let b = &with_a_failing[1];
    assert_eq!(b.admitted(), 1_200);
    assert_eq!((b.successes, b.failures), (800, 400));
    assert_eq!(b.states, [(0, BreakerState::Closed)]);
    assert_eq!(failing.refused("b"), []);
    assert_eq!(healthy.refused("b"), []);
}
