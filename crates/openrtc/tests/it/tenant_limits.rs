//! The tenant config file's limits on real pools: exact tenant and agent caps under a storm of
//! concurrent launches, live reloads (by the file watcher and by SIGHUP, valid and invalid),
//! lowered caps, the tenant heap budget with real allocations, breaker settings, and drains.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use openrtc::proto::{BreakerState, RefusalReason};
use openrtc::{
    AgentError, AgentPool, AgentPoolBuilder, CancelReason, JobRequest, Rejected, Session,
    SessionHandle, SessionId, SessionOutcome, agent_fn,
};
use serde_json::json;

use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

const MIB: u64 = 1024 * 1024;

/// Waits for cancellation, then completes.
fn patient() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok(())
    })
}

/// Fails at once.
fn failing() -> impl openrtc::Agent {
    agent_fn(|_session: Session| async move { Err::<(), _>(AgentError::msg("upstream 503")) })
}

/// Holds a buffer of `metadata.mib` MiB (allocated and written while its task is polled, so
/// the tracking allocator charges it to the session) until cancelled.
fn hog() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        let mib = session
            .metadata()
            .get("mib")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let held = vec![7_u8; usize::try_from(mib * MIB).expect("fits")];
        session.cancelled().await;
        drop(std::hint::black_box(held));
        Ok(())
    })
}

/// A tenant config file in a temp dir (the dir is dropped after the pool, which is declared
/// after it in each test).
struct ConfigFile {
    directory: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    #[track_caller]
    fn new(text: &str) -> Self {
        let directory = tempfile::tempdir().expect("a temp dir");
        let path = directory.path().join("tenants.toml");
        std::fs::write(&path, text).expect("the config is written");
        Self { directory, path }
    }

    /// Replaces the file as an operator's tool should: a new file beside it, renamed over it.
    #[track_caller]
    fn replace(&self, text: &str) {
        let temporary = self.directory.path().join(".tenants.toml.new");
        std::fs::write(&temporary, text).expect("the new config is written");
        std::fs::rename(&temporary, &self.path).expect("the new config is renamed over");
    }

    fn builder(&self) -> AgentPoolBuilder {
        AgentPool::builder()
            .worker_threads(2)
            .socket_path(self.directory.path().join("w.sock"))
            .tenant_config(&self.path)
    }
}

fn acme(agent: &str) -> JobRequest {
    JobRequest::new().tenant("acme").agent(agent)
}

/// The tenant's cap as the snapshot shows it (the config in force).
fn tenant_cap_in_force(pool: &RunningPool, tenant: &str) -> Option<u32> {
    pool.snapshot()
        .tenants
        .get(tenant)
        .and_then(|snapshot| snapshot.max_sessions)
}

/// Waits until the snapshot shows `cap` for `tenant`, and returns how long that took.
#[track_caller]
fn wait_for_tenant_cap(pool: &RunningPool, tenant: &str, cap: u32) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{tenant}'s cap of {cap} in force"), || {
        (tenant_cap_in_force(pool, tenant) == Some(cap)).then_some(())
    });
    started.elapsed()
}

#[track_caller]
fn launch(pool: &RunningPool, request: JobRequest) -> SessionId {
    pool.handle().launch(request).expect("admitted").id()
}

#[track_caller]
fn cancel_and_wait(pool: &RunningPool, id: SessionId) {
    pool.handle().cancel(id).expect("live");
    pool.wait_ended(id);
}

#[track_caller]
fn refused_for_tenant_cap(pool: &RunningPool, request: JobRequest, cap: u32) {
    assert_eq!(
        pool.handle().launch(request).err(),
        Some(Rejected::TenantCap {
            tenant: "acme".into(),
            cap
        })
    );
}

/// A count of live sessions as the agents themselves see them, and its peak.
#[derive(Default)]
struct Gauge {
    live: AtomicU32,
    peak: AtomicU32,
}

impl Gauge {
    fn enter(&self) {
        let live = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(live, Ordering::AcqRel);
    }

    fn leave(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    fn peak(&self) -> u32 {
        self.peak.load(Ordering::Acquire)
    }
}

/// The agents' own counts: the tenant's (every storm session is acme's) and each agent's.
#[derive(Default)]
struct Gauges {
    tenant: Gauge,
    hot: Gauge,
    echo: Gauge,
}

/// Leaves the gauges when the agent's future ends or is dropped.
struct Inside(Arc<Gauges>, bool);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.tenant.leave();
        if self.1 {
            self.0.hot.leave()
        } else {
            self.0.echo.leave()
        }
    }
}

/// A patient agent that counts itself in the gauges while it runs. Its count never includes
/// places reserved for sessions not yet started, nor those of sessions that have left the
/// agent and are not yet ended, so it is at most admission's count.
fn counted(gauges: Arc<Gauges>, hot: bool) -> impl openrtc::Agent {
    agent_fn(move |session: Session| {
        let gauges = Arc::clone(&gauges);
        async move {
            gauges.tenant.enter();
            if hot {
                gauges.hot.enter();
            } else {
                gauges.echo.enter();
            }
            let _inside = Inside(gauges, hot);
            session.cancelled().await;
            Ok(())
        }
    })
}

/// What one storm thread saw of its launches.
#[derive(Default)]
struct Observed {
    admitted: u64,
    tenant_cap: u64,
    agent_cap: u64,
    worker_full: u64,
    tenant_cap_by_agent: [u64; 2],
}

/// One storm thread: launches, recording each result, keeping each admitted handle in `held`.
fn storm_launch(
    pool: &RunningPool,
    agent: &'static str,
    held: &mut Vec<(SessionHandle, &'static str)>,
    observed: &mut Observed,
) {
    match pool.handle().launch(acme(agent)) {
        Ok(handle) => {
            observed.admitted += 1;
            held.push((handle, agent));
        }
        Err(Rejected::TenantCap { tenant, cap }) => {
            assert_eq!((tenant.as_str(), cap), ("acme", 20));
            observed.tenant_cap += 1;
            observed.tenant_cap_by_agent[usize::from(agent == "hot")] += 1;
        }
        Err(Rejected::AgentCap { agent: capped, cap }) => {
            assert_eq!((capped.as_str(), cap, agent), ("hot", 10, "hot"));
            observed.agent_cap += 1;
        }
        Err(Rejected::WorkerFull { max }) => {
            assert_eq!(max, 50);
            observed.worker_full += 1;
        }
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

#[track_caller]
fn wait_cancelled(handle: SessionHandle) {
    let outcome = handle
        .wait_outcome(PATIENCE)
        .unwrap_or_else(|_| panic!("a cancelled session ends within {PATIENCE:?}"));
    assert!(
        matches!(outcome, SessionOutcome::Cancelled(CancelReason::Operator)),
        "{outcome}"
    );
}

/// 1,000 launches from 8 threads at once against a worker cap of 50, a tenant cap of 20 and
/// an agent cap of 10 (half the launches for the capped agent): no count ever passes a cap,
/// the caps are reached, every refusal is a cap's and is counted once, and every place comes
/// back.
///
/// Each thread makes 125 launches in three phases, between barriers:
/// 1. 101 launches alternating between the agents, cancelling its oldest session after every
///    third launch (places are reused under contention); at its end it cancels its `echo`
///    sessions and waits for every session it cancelled to end;
/// 2. 12 `hot` launches: no session ends and the tenant holds at most 10 places, so `hot`
///    fills to its cap of 10 (96 launches for at most 10 places);
/// 3. 12 `echo` launches: nothing ends, so the tenant fills to its cap of 20.
///
/// So both caps are reached whatever the interleaving; 500 launches ask for each agent.
#[test]
fn concurrent_launches_on_a_real_pool_reach_the_caps_and_never_pass_them() {
    const THREADS: usize = 8;
    let config =
        ConfigFile::new("[tenants.acme]\nmax_sessions = 20\n[max_sessions_per_agent]\nhot = 10\n");
    let gauges = Arc::new(Gauges::default());
    let pool = RunningPool::start(
        config
            .builder()
            .max_concurrent_sessions(50)
            .agent("echo", counted(Arc::clone(&gauges), false))
            .agent("hot", counted(Arc::clone(&gauges), true)),
    );
    let pool = &pool;
    let barrier = &Barrier::new(THREADS + 1);
    let started = &AtomicBool::new(false);
    let storming = &AtomicBool::new(true);
    let sampled_peaks = Mutex::new((0_u32, 0_u32, 0_u32, 0_u32));
    let (observed, held) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = 0_u32;
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            while storming.load(Ordering::Acquire) || samples == 0 {
                let snapshot = pool.snapshot();
                let tenant = snapshot.tenants.get("acme").map_or(0, |t| t.sessions_count);
                let hot = snapshot.agents["hot"].sessions_count;
                let worker = snapshot.worker.active_sessions;
                assert!(tenant <= 20, "the tenant's count passed its cap: {tenant}");
                assert!(hot <= 10, "hot's count passed its cap: {hot}");
                // The worker's count also holds the places of launches being checked (a launch
                // reserves its worker place before its tenant's) and of sessions ending (their
                // tenant place is given back first): only its own cap bounds it.
                assert!(worker <= 50, "the worker's count passed its cap: {worker}");
                let mut peaks = sampled_peaks.lock().expect("unpoisoned");
                peaks.0 = peaks.0.max(tenant);
                peaks.1 = peaks.1.max(hot);
                peaks.2 = peaks.2.max(worker);
                samples += 1;
                peaks.3 = samples;
            }
        });
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut observed = Observed::default();
                    let mut held = Vec::new();
                    let mut cancelled = Vec::new();
                    barrier.wait();
                    for launch in 0..101 {
                        let agent = if (thread + launch) % 2 == 0 {
                            "hot"
                        } else {
                            "echo"
                        };
                        storm_launch(pool, agent, &mut held, &mut observed);
                        if launch % 3 == 2 && !held.is_empty() {
                            let (oldest, _) = held.remove(0);
                            pool.handle().cancel(oldest.id()).expect("still live");
                            cancelled.push(oldest);
                        }
                    }
                    let (keep, echo): (Vec<_>, Vec<_>) =
                        held.into_iter().partition(|(_, agent)| *agent == "hot");
                    held = keep;
                    for (handle, _) in echo {
                        pool.handle().cancel(handle.id()).expect("still live");
                        cancelled.push(handle);
                    }
                    cancelled.into_iter().for_each(wait_cancelled);
                    barrier.wait();
                    for _ in 0..12 {
                        storm_launch(pool, "hot", &mut held, &mut observed);
                    }
                    barrier.wait();
                    for _ in 0..12 {
                        storm_launch(pool, "echo", &mut held, &mut observed);
                    }
                    let held: Vec<SessionHandle> =
                        held.into_iter().map(|(handle, _)| handle).collect();
                    (observed, held)
                })
            })
            .collect();
        barrier.wait();
        started.store(true, Ordering::Release);
        // Phase 1 ends: every cancelled session has ended, the tenant holds hot's places.
        barrier.wait();
        barrier.wait();
        let results: Vec<(Observed, Vec<SessionHandle>)> = threads
            .into_iter()
            .map(|thread| thread.join().expect("a storm thread"))
            .collect();
        storming.store(false, Ordering::Release);
        sampler.join().expect("the sampler");
        let mut total = Observed::default();
        let mut held = Vec::new();
        for (observed, handles) in results {
            total.admitted += observed.admitted;
            total.tenant_cap += observed.tenant_cap;
            total.agent_cap += observed.agent_cap;
            total.worker_full += observed.worker_full;
            for agent in 0..2 {
                total.tenant_cap_by_agent[agent] += observed.tenant_cap_by_agent[agent];
            }
            held.extend(handles);
        }
        (total, held)
    });

    // Phases 2 and 3 filled both caps; every admitted session runs in its agent.
    assert_eq!(held.len(), 20, "the tenant is at its cap");
    wait_for("the 20 held sessions to run in their agents", || {
        (gauges.tenant.live() == 20).then_some(())
    });
    assert_eq!(gauges.hot.live(), 10, "hot is at its cap");
    assert_eq!(
        gauges.tenant.peak(),
        20,
        "the tenant cap was reached, not passed"
    );
    assert_eq!(
        gauges.hot.peak(),
        10,
        "the agent cap was reached, not passed"
    );
    let (tenant_sampled, hot_sampled, worker_sampled, samples) =
        *sampled_peaks.lock().expect("unpoisoned");
    assert!(samples > 0);
    println!(
        "storm: {} admitted, {} tenant-cap, {} agent-cap refusals; {samples} snapshots sampled \
         (peaks: tenant {tenant_sampled}, hot {hot_sampled}, worker {worker_sampled})",
        observed.admitted, observed.tenant_cap, observed.agent_cap
    );

    assert_eq!(
        observed.admitted + observed.tenant_cap + observed.agent_cap + observed.worker_full,
        1000,
        "every launch was admitted or refused by a cap"
    );
    assert_eq!(
        observed.worker_full, 0,
        "the tenant cap is under the worker's"
    );
    let snapshot = pool.snapshot();
    let count = |refusals: &std::collections::BTreeMap<RefusalReason, u64>, reason| {
        refusals.get(&reason).copied().unwrap_or(0)
    };
    let tenant = &snapshot.tenants["acme"];
    assert_eq!(tenant.started_count, observed.admitted);
    assert_eq!(
        count(&tenant.refusals, RefusalReason::TenantCap),
        observed.tenant_cap
    );
    assert_eq!(
        count(&tenant.refusals, RefusalReason::AgentCap),
        observed.agent_cap
    );
    assert_eq!(
        tenant.refusals.len(),
        usize::from(observed.tenant_cap > 0) + usize::from(observed.agent_cap > 0)
    );
    let hot = &snapshot.agents["hot"];
    assert_eq!(
        count(&hot.refusals, RefusalReason::AgentCap),
        observed.agent_cap
    );
    assert_eq!(
        count(&hot.refusals, RefusalReason::TenantCap),
        observed.tenant_cap_by_agent[1]
    );
    let echo = &snapshot.agents["echo"];
    assert_eq!(count(&echo.refusals, RefusalReason::AgentCap), 0);
    assert_eq!(
        count(&echo.refusals, RefusalReason::TenantCap),
        observed.tenant_cap_by_agent[0]
    );
    assert_eq!(
        count(&snapshot.worker.refusals, RefusalReason::TenantCap),
        observed.tenant_cap
    );
    assert_eq!(
        count(&snapshot.worker.refusals, RefusalReason::AgentCap),
        observed.agent_cap
    );
    assert_eq!(
        count(&snapshot.worker.refusals, RefusalReason::WorkerFull),
        0
    );
    assert_eq!(
        (
            tenant.sessions_count,
            hot.sessions_count,
            echo.sessions_count
        ),
        (20, 10, 10)
    );

    for handle in &held {
        pool.handle().cancel(handle.id()).expect("live");
    }
    held.into_iter().for_each(wait_cancelled);
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.worker.active_sessions, 0);
    assert_eq!(snapshot.tenants["acme"].sessions_count, 0);
    assert_eq!(snapshot.agents["hot"].sessions_count, 0);
    assert_eq!(snapshot.agents["echo"].sessions_count, 0);
    assert_eq!(
        (gauges.tenant.live(), gauges.hot.live(), gauges.echo.live()),
        (0, 0, 0)
    );
}

const ACME_3: &str = "[defaults]\nmax_sessions = 100\n[tenants.acme]\nmax_sessions = 3\n";

/// A valid edit is applied by the file watcher while the pool runs, within a second or so
/// (the watcher's debounce is 200 ms; the bound is 2 s for busy machines).
#[test]
fn a_raised_cap_applies_live_to_the_next_launches() {
    let config = ConfigFile::new(ACME_3);
    let pool = RunningPool::start(config.builder().agent("echo", patient()));
    let first_version = pool.snapshot().tenant_config.expect("a config").version;
    for _ in 0..3 {
        launch(&pool, acme("echo"));
    }
    refused_for_tenant_cap(&pool, acme("echo"), 3);

    config.replace(&ACME_3.replace("= 3", "= 5"));
    let latency = wait_for_tenant_cap(&pool, "acme", 5);
    println!("reload latency (rename to the new cap in the snapshot): {latency:?}");
    assert!(latency < Duration::from_secs(2), "applied in {latency:?}");
    let shown = pool.snapshot().tenant_config.expect("a config");
    assert_ne!(shown.version, first_version);
    assert_eq!((shown.reloads_count, shown.last_error), (2, None));

    launch(&pool, acme("echo"));
    launch(&pool, acme("echo"));
    refused_for_tenant_cap(&pool, acme("echo"), 5);
    assert_eq!(pool.snapshot().tenants["acme"].sessions_count, 5);
}

/// A cap lowered under the live count stops no session: new ones are refused until the count
/// is under the new cap.
#[test]
fn a_lowered_cap_never_stops_a_live_session() {
    let config = ConfigFile::new(&ACME_3.replace("= 3", "= 5"));
    let pool = RunningPool::start(config.builder().agent("echo", patient()));
    let live: Vec<SessionId> = (0..5).map(|_| launch(&pool, acme("echo"))).collect();

    config.replace(&ACME_3.replace("= 3", "= 2"));
    wait_for_tenant_cap(&pool, "acme", 2);
    let snapshot = pool.snapshot();
    for id in &live {
        assert!(
            crate::support::row_of(&snapshot, *id).is_some(),
            "session {id} is still live"
        );
    }
    assert!(snapshot.recently_ended.is_empty(), "none ended");
    assert_eq!(snapshot.tenants["acme"].sessions_count, 5);
    refused_for_tenant_cap(&pool, acme("echo"), 2);

    for id in &live[..3] {
        cancel_and_wait(&pool, *id);
    }
    refused_for_tenant_cap(&pool, acme("echo"), 2);
    cancel_and_wait(&pool, live[3]);
    // One live: one place under the cap.
    launch(&pool, acme("echo"));
    refused_for_tenant_cap(&pool, acme("echo"), 2);
    assert_eq!(pool.snapshot().tenants["acme"].sessions_count, 2);
}

/// An edit of the wrong type keeps the config in force, and the snapshot says where the
/// problem is; fixing the file clears the error.
#[test]
fn an_invalid_edit_keeps_the_caps_in_force_and_says_where() {
    let config = ConfigFile::new(ACME_3);
    let pool = RunningPool::start(config.builder().agent("echo", patient()));
    let first_version = pool.snapshot().tenant_config.expect("a config").version;

    // Line 4 is `max_sessions = "many"`: the value starts at column 16.
    config.replace(&ACME_3.replace("= 3", "= \"many\""));
    let error = wait_for("the reload's error", || {
        pool.snapshot().tenant_config.expect("a config").last_error
    });
    assert!(
        error.starts_with(&format!("{}:4:16: ", config.path.display())),
        "{error}"
    );
    let shown = pool.snapshot().tenant_config.expect("a config");
    assert_eq!(shown.version, first_version, "the old version stays");
    assert_eq!(shown.reloads_count, 1);
    assert_eq!(tenant_cap_in_force(&pool, "acme"), Some(3));
    for _ in 0..3 {
        launch(&pool, acme("echo"));
    }
    refused_for_tenant_cap(&pool, acme("echo"), 3);

    config.replace(&ACME_3.replace("= 3", "= 4"));
    wait_for_tenant_cap(&pool, "acme", 4);
    let shown = pool.snapshot().tenant_config.expect("a config");
    assert_eq!(
        (shown.last_error, shown.last_error_at_unix_ms),
        (None, None)
    );
    assert_eq!(shown.reloads_count, 2);
    launch(&pool, acme("echo"));
    refused_for_tenant_cap(&pool, acme("echo"), 4);
}

/// SIGHUP reloads the file on a running pool. The file is changed through a hard link in
/// another directory: inotify reports a change only to watches on the directory it was made
/// through, so the pool's watcher (on the file's directory) does not see it, and only the
/// signal can reload it. Under nextest the signal reaches this test's process alone; under
/// plain `cargo test` other pools of the process reload their (unchanged) files too.
#[test]
fn sighup_reloads_a_change_the_watcher_does_not_see() {
    let config = ConfigFile::new(ACME_3);
    let alias_directory = config.directory.path().join("alias");
    std::fs::create_dir(&alias_directory).expect("the alias dir");
    let alias = alias_directory.join("tenants.toml");
    std::fs::hard_link(&config.path, &alias).expect("the hard link");
    let pool = RunningPool::start(config.builder().agent("echo", patient()));

    // Written in place through the link: the same file, seen from another directory.
    std::fs::write(&alias, ACME_3.replace("= 3", "= 6")).expect("written through the link");
    assert_eq!(
        std::fs::read_to_string(&config.path).expect("read"),
        ACME_3.replace("= 3", "= 6"),
        "the link is the same file"
    );
    // Not a synchronisation: five debounces for the watcher to (wrongly) act on the change.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        tenant_cap_in_force(&pool, "acme"),
        Some(3),
        "the watcher did not see the change"
    );

    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).expect("SIGHUP is raised");
    wait_for_tenant_cap(&pool, "acme", 6);
    assert_eq!(
        pool.snapshot()
            .tenant_config
            .expect("a config")
            .reloads_count,
        2
    );
}

/// A tenant whose sessions hold more live heap than its budget is refused new sessions; its
/// running session and other tenants are untouched.
#[test]
fn a_tenant_over_its_heap_budget_is_refused_new_sessions_only() {
    let config =
        ConfigFile::new("[tenants.acme]\nmax_heap_mb = 8\n[tenants.beta]\nmax_heap_mb = 8\n");
    let pool = RunningPool::start(config.builder().agent("hog", hog()));
    let big = launch(&pool, acme("hog").metadata(json!({"mib": 10})));
    let live_bytes = wait_for("acme's sessions to hold 10 MiB", || {
        let live = pool.snapshot().tenants["acme"].heap_live_bytes;
        (live >= 10 * MIB).then_some(live)
    });
    assert_eq!(
        pool.snapshot().tenants["acme"].max_heap_bytes,
        Some(8 * MIB)
    );

    let refused = pool
        .handle()
        .launch(acme("hog").metadata(json!({"mib": 0})))
        .expect_err("over the budget");
    let Rejected::TenantHeap {
        tenant,
        live_bytes: refused_at,
        budget_bytes,
    } = refused
    else {
        panic!("refused for another reason: {refused}");
    };
    assert_eq!((tenant.as_str(), budget_bytes), ("acme", 8 * MIB));
    assert!(
        refused_at >= 10 * MIB,
        "{refused_at} (snapshot: {live_bytes})"
    );

    let beta = launch(
        &pool,
        JobRequest::new()
            .tenant("beta")
            .agent("hog")
            .metadata(json!({"mib": 1})),
    );
    let snapshot = pool.snapshot();
    assert!(
        crate::support::row_of(&snapshot, big).is_some(),
        "untouched"
    );
    assert!(crate::support::row_of(&snapshot, beta).is_some());
    assert!(snapshot.recently_ended.is_empty());
    assert_eq!(
        snapshot.tenants["acme"].refusals[&RefusalReason::TenantHeap],
        1
    );
    assert!(snapshot.tenants["beta"].refusals.is_empty());

    // Its memory gone, the tenant is admitted again.
    cancel_and_wait(&pool, big);
    launch(&pool, acme("hog").metadata(json!({"mib": 0})));
}

/// `breaker = false` in a tenant's section: its failures never open a breaker, while another
/// tenant with the default breaker is refused after 5 failures.
#[test]
fn a_tenant_without_a_breaker_is_never_refused_for_failures() {
    let config = ConfigFile::new("[tenants.acme]\nbreaker = false\n");
    let pool = RunningPool::start(
        config
            .builder()
            .agent("failing", failing())
            .agent("echo", patient()),
    );
    for _ in 0..10 {
        let id = launch(&pool, acme("failing"));
        pool.wait_ended(id);
    }
    let beta = || JobRequest::new().tenant("beta").agent("failing");
    for _ in 0..5 {
        let id = launch(&pool, beta());
        pool.wait_ended(id);
    }
    let refused = pool
        .handle()
        .launch(beta())
        .expect_err("beta's breaker is open");
    assert!(
        matches!(&refused, Rejected::BreakerOpen { tenant, .. } if tenant == "beta"),
        "{refused}"
    );
    launch(&pool, acme("echo"));
    let snapshot = pool.snapshot();
    let acme_snapshot = &snapshot.tenants["acme"];
    assert_eq!(acme_snapshot.breaker.state, BreakerState::Disabled);
    assert_eq!(acme_snapshot.failed_count, 10);
    assert!(acme_snapshot.refusals.is_empty());
    assert_eq!(snapshot.tenants["beta"].breaker.state, BreakerState::Open);
    assert_eq!(snapshot.tenants["beta"].failed_count, 5);
}

/// Sessions cancelled by a drain are not failures of their tenant.
#[test]
fn drain_cancellations_are_not_counted_against_the_tenant() {
    let config = ConfigFile::new("[tenants.acme]\nmax_sessions = 10\n");
    let pool = RunningPool::start(
        config
            .builder()
            .drain_timeout(Duration::ZERO)
            .agent("echo", patient()),
    );
    let handles: Vec<SessionHandle> = (0..8)
        .map(|_| pool.handle().launch(acme("echo")).expect("admitted"))
        .collect();
    wait_for("the 8 sessions to run", || {
        (pool.snapshot().sessions.len() == 8).then_some(())
    });
    let handle = pool.handle().clone();
    pool.drain_and_join().expect("a clean drain");
    for session in handles {
        let outcome = session
            .wait_outcome(Duration::ZERO)
            .unwrap_or_else(|_| panic!("ended by the drain"));
        assert!(
            matches!(
                outcome,
                SessionOutcome::Cancelled(CancelReason::DrainTimeout)
            ),
            "{outcome}"
        );
    }
    let snapshot = handle.runtime_snapshot();
    let acme_snapshot = &snapshot.tenants["acme"];
    assert_eq!(acme_snapshot.sessions_count, 0);
    assert_eq!(acme_snapshot.started_count, 8);
    assert_eq!(acme_snapshot.failed_count, 0);
    assert_eq!(acme_snapshot.breaker.state, BreakerState::Closed);
    assert_eq!(acme_snapshot.breaker.window_samples_count, 0);
    assert_eq!(snapshot.worker.totals.cancelled_count, 8);
}
