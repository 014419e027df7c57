//! `AgentPool`: the agent registry, launching (through `admission`), the supervisor loop and
//! drain.

mod builder;
mod drain;
mod failure_budget;
mod handle;
mod prewarm;
mod running;
mod tallies;

pub use builder::AgentPoolBuilder;
pub use handle::PoolHandle;
pub use running::RunningPool;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::admission;
use crate::agent::ErasedAgent;
use crate::error::RefusalCounters;
use crate::events::{Event, EventHub};
use crate::probe::Probe;
use crate::session::{self, CancelReason, KillReason, SessionCell, SessionOutcome, StopRequest};
use crate::tenant_config::cell::TenantConfigCell;
use crate::tenant_config::reload::{Reloader, ReloaderOptions};
use crate::{BreakerConfig, TenantConfig, TenantPolicy};
use crate::{JobRequest, LookupError, Rejected, RunError, SessionHandle, SessionId, lock};

/// How many ended sessions a snapshot keeps, newest first.
pub(crate) const RECENTLY_ENDED_CAPACITY: usize = 64;

/// How long the runtime waits for aborted sessions to unwind before it stops anyway.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// The checked configuration of a pool.
#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    pub(crate) worker_name: String,
    pub(crate) worker_threads: usize,
    pub(crate) max_concurrent_sessions: u32,
    pub(crate) slow_session_threshold: Duration,
    /// A tracked call longer than this is slow.
    pub(crate) slow_call_threshold: Duration,
    pub(crate) slow_status_hold: Duration,
    pub(crate) enable_introspection: bool,
    pub(crate) stack_capture: bool,
    pub(crate) panic_backtraces: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) socket_path: Option<PathBuf>,
    pub(crate) session_memory_limit_bytes: Option<u64>,
    pub(crate) memory_warn_bytes: Option<u64>,
    pub(crate) memory_limit_bytes: Option<u64>,
    pub(crate) consecutive_failure_limit: Option<u32>,
    /// Every tenant's breaker when there is no tenant config file.
    pub(crate) tenant_breaker: Option<BreakerConfig>,
    /// The lifecycle event stream's file, if any.
    pub(crate) event_stream: Option<crate::events::StreamFile>,
    /// How many events the stream's queue holds before it drops them.
    pub(crate) event_queue_capacity: usize,
    /// A poll holding a worker thread this long makes the thread blocked (health: critical).
    pub(crate) blocked_after: Duration,
    /// A poll holding a worker thread this long drains the worker, if set.
    pub(crate) restart_after: Option<Duration>,
    /// Where the HTTP health endpoints are served, if anywhere.
    pub(crate) http_addr: Option<std::net::SocketAddr>,
    /// Where the media WebSocket listener takes calls, if anywhere.
    pub(crate) media_addr: Option<std::net::SocketAddr>,
    /// The media WebSocket's path.
    pub(crate) media_path: String,
    /// The voice webhook beside it, if any.
    pub(crate) voice_webhook: Option<crate::media::VoiceWebhook>,
    /// The LiveKit server the worker takes jobs from, with its control WebSocket's URL.
    #[cfg(feature = "livekit")]
    pub(crate) livekit: Option<(crate::source::livekit::LiveKitOptions, String)>,
    /// When a tenant is moved to process isolation, if ever.
    pub(crate) auto_isolation: Option<crate::AutoIsolation>,
}

pub(crate) struct RegisteredAgent {
    pub(crate) name: Arc<str>,
    pub(crate) agent: Arc<dyn ErasedAgent>,
    pub(crate) memory_limit_bytes: Option<u64>,
}

/// The application's hooks into admission: its router and request filter.
#[derive(Default)]
pub(crate) struct AdmissionHooks {
    pub(crate) router: Option<Box<admission::Router>>,
    pub(crate) filter: Option<Box<admission::RequestFilter>>,
}

impl std::fmt::Debug for RegisteredAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredAgent")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where the pool is in its life; launches consult it under its lock.
enum Lifecycle {
    /// Built, not running yet: launched sessions wait here and start with the runtime.
    NotStarted {
        pending: Vec<(Arc<SessionCell>, Arc<dyn ErasedAgent>)>,
    },
    /// The runtime runs sessions.
    Running(tokio::runtime::Handle),
    /// The runtime is gone.
    Stopped,
}

/// What the supervisor is told by handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    Drain,
    Shutdown,
    MemoryLimit {
        rss_bytes: u64,
        limit_bytes: u64,
    },
    FailureBudget {
        count: u32,
    },
    BlockedWorker {
        worker: u32,
        session_key: u64,
        blocked_ms: u64,
    },
}

/// Lifetime counters of the worker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) started: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) killed: AtomicU64,
    /// Busy time of the sessions that have ended.
    pub(crate) ended_busy_ns: AtomicU64,
    /// Refusals, by reason.
    pub(crate) refused: RefusalCounters,
}

/// A session that has ended, kept for snapshots.
#[derive(Clone, Debug)]
pub(crate) struct EndedSession {
    pub(crate) key: u64,
    pub(crate) agent: Arc<str>,
    pub(crate) tenant: Arc<str>,
    pub(crate) outcome: openrtc_proto::SessionOutcome,
    pub(crate) ended_ns: u64,
    pub(crate) duration_ns: u64,
    pub(crate) busy_ns: u64,
    pub(crate) stall_count: u64,
    pub(crate) mem_peak_bytes: u64,
    /// Its flight recorder, when it failed, panicked, was killed or stalled.
    pub(crate) flight_recorder: Arc<[openrtc_proto::LogRecordSnapshot]>,
}

/// The state a pool's handles, sessions, watchdog and socket server share.
pub(crate) struct PoolShared {
    pub(crate) config: PoolConfig,
    agents: Vec<RegisteredAgent>,
    /// The registered agents' counters, in registration order.
    agent_counters: Vec<Arc<admission::AgentCounters>>,
    /// Every tenant seen, with its counters.
    pub(crate) tenants: admission::TenantRegistry,
    hooks: AdmissionHooks,
    /// The tenant config file in force, if the pool has one.
    pub(crate) tenant_config: Option<Arc<TenantConfigCell>>,
    /// Bumped on each tenant config reload, so tenants' breakers pick up new settings.
    config_generation: AtomicU64,
    probe: Arc<Probe>,
    /// The worker's logging: its log file and its sessions' flight recorders.
    log: Arc<crate::telemetry::PoolLog>,
    sessions: Mutex<BTreeMap<u64, Arc<SessionCell>>>,
    next_key: AtomicU64,
    active: AtomicU32,
    draining: AtomicBool,
    lifecycle: Mutex<Lifecycle>,
    pub(crate) counters: Counters,
    ended: Mutex<VecDeque<EndedSession>>,
    session_ended: Notify,
    control: mpsc::UnboundedSender<Control>,
    runtime_started_ns: AtomicU64,
    /// Process CPU over the last CPU window, in % of one core (f64 bits; by the watchdog).
    pub(crate) process_cpu_pct_bits: AtomicU64,
    /// Stalls over the last minute (by the watchdog).
    pub(crate) stalls_last_minute: AtomicU64,
    /// Stalls the host caused (class `preempted`; by the watchdog).
    pub(crate) stalls_preempted: AtomicU64,
    /// The prewarm's shared value, once it has loaded.
    prewarmed: OnceLock<prewarm::Prewarmed>,
    /// Sessions failing in a row, and the drain at the limit.
    pub(crate) failure_budget: failure_budget::FailureBudget,
    /// The lifecycle event stream's queue.
    pub(crate) events: Arc<EventHub>,
    /// Tracked calls of every session, by label (outlives the sessions).
    pub(crate) calls: crate::calls::CallTable,
    /// Sessions started and ended per tenant and agent (bounded pairs).
    pub(crate) tallies: tallies::TenantAgentTallies,
    /// The frame clocks of `Session::frames`, one per period in use.
    pub(crate) frame_clocks: crate::frames::FrameClocks,
    /// Child tasks of every session.
    pub(crate) tasks: crate::session::TaskCounters,
    /// Child task ends, blocking calls and CPU steal over the last minute or window (by the
    /// watchdog).
    pub(crate) recent: crate::watchdog::RecentFigures,
    /// The address the HTTP health endpoints were bound to, once they are.
    http_addr: OnceLock<std::net::SocketAddr>,
    /// The address the media listener was bound to, once it is.
    media_addr: OnceLock<std::net::SocketAddr>,
    /// The LiveKit worker's registration, once it has started.
    #[cfg(feature = "livekit")]
    livekit: OnceLock<Arc<crate::source::livekit::LiveKitState>>,
    /// The thread that starts and reaps isolated sessions' processes, from the first.
    spawner: Mutex<Option<Arc<crate::isolation::Spawner>>>,
}

impl std::fmt::Debug for PoolShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolShared")
            .field("config", &self.config)
            .field("agents", &self.agents)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl PoolShared {
    /// The registered agents' names and counters, in registration order.
    pub(crate) fn agents(&self) -> impl Iterator<Item = (&str, &admission::AgentCounters)> {
        self.agents
            .iter()
            .zip(&self.agent_counters)
            .map(|(agent, counters)| (&*agent.name, &**counters))
    }

    pub(crate) fn probe(&self) -> &Arc<Probe> {
        &self.probe
    }

    pub(crate) fn log(&self) -> &Arc<crate::telemetry::PoolLog> {
        &self.log
    }

    pub(crate) fn active_sessions(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// The address the HTTP health endpoints are bound to, once they are.
    pub(crate) fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr.get().copied()
    }

    /// The address the media listener is bound to, once it is.
    pub(crate) fn media_addr(&self) -> Option<std::net::SocketAddr> {
        self.media_addr.get().copied()
    }

    /// The LiveKit worker's registration, as snapshots show it.
    #[cfg(feature = "livekit")]
    pub(crate) fn livekit_state(&self) -> Option<&Arc<crate::source::livekit::LiveKitState>> {
        self.livekit.get()
    }

    /// Records the LiveKit worker's state, when it starts.
    #[cfg(feature = "livekit")]
    pub(crate) fn set_livekit_state(&self, state: Arc<crate::source::livekit::LiveKitState>) {
        let _ = self.livekit.set(state);
    }

    /// Records the address the HTTP health endpoints were bound to.
    pub(crate) fn set_http_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.http_addr.set(addr);
    }

    /// The places taken (live sessions and launches holding a place) and the worker's cap.
    #[cfg(feature = "livekit")]
    pub(crate) fn session_places(&self) -> (u32, u32) {
        (
            self.active.load(Ordering::Acquire),
            self.config.max_concurrent_sessions,
        )
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn runtime_started_ns(&self) -> u64 {
        self.runtime_started_ns.load(Ordering::Relaxed)
    }

    /// The live sessions, in launch order (the lock is held only to clone the pointers).
    pub(crate) fn live_sessions(&self) -> Vec<Arc<SessionCell>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// The runtime's handle while it runs.
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        match &*lock(&self.lifecycle) {
            Lifecycle::Running(runtime) => Some(runtime.clone()),
            Lifecycle::NotStarted { .. } | Lifecycle::Stopped => None,
        }
    }

    pub(crate) fn session(&self, key: u64) -> Option<Arc<SessionCell>> {
        lock(&self.sessions).get(&key).cloned()
    }

    pub(crate) fn recently_ended(&self) -> Vec<EndedSession> {
        lock(&self.ended).iter().cloned().collect()
    }

    /// The live session whose id is `id_or_prefix`, or the only one whose id's text starts
    /// with it (as git takes a unique prefix of a commit).
    pub(crate) fn find_session(&self, id_or_prefix: &str) -> Result<SessionId, FindError> {
        let sessions = lock(&self.sessions);
        if let Ok(exact) = id_or_prefix.parse::<SessionId>() {
            if sessions.contains_key(&exact.as_u64()) {
                return Ok(exact);
            }
        }
        let matching: Vec<SessionId> = sessions
            .keys()
            .map(|&key| session::session_id(key))
            .filter(|id| id.to_string().starts_with(id_or_prefix))
            .collect();
        drop(sessions);
        match matching.as_slice() {
            [] => Err(FindError::NotFound),
            [only] => Ok(*only),
            several => Err(FindError::Ambiguous {
                count: several.len(),
            }),
        }
    }

    fn launch(self: &Arc<Self>, request: JobRequest) -> Result<SessionHandle, Rejected> {
        self.launch_with(request, None).map(SessionHandle::new)
    }

    /// Launches the session of a call from the media listener, its media in place before it
    /// starts.
    pub(crate) fn launch_call(
        self: &Arc<Self>,
        request: JobRequest,
        media: crate::media::CallMedia,
    ) -> Result<Arc<SessionCell>, Rejected> {
        self.launch_with(request, Some(media))
    }

    fn launch_with(
        self: &Arc<Self>,
        request: JobRequest,
        media: Option<crate::media::CallMedia>,
    ) -> Result<Arc<SessionCell>, Rejected> {
        let extras = SessionExtras {
            media,
            ..SessionExtras::default()
        };
        self.hold(request)?.start(extras)
    }

    /// Runs the admission chain for `request` and holds the places it reserved, without
    /// starting a session: [`HeldLaunch::start`] starts it, dropping the hold gives every
    /// place back. A job source that must answer an offer before it gets the job (LiveKit)
    /// holds its places from the answer to the assignment, so two offers racing for the last
    /// place are never both accepted. A refusal is counted and logged like any launch's.
    pub(crate) fn hold(self: &Arc<Self>, request: JobRequest) -> Result<HeldLaunch, Rejected> {
        let tenant = self.tenants.get_or_create(&request.tenant);
        let agent_names: Vec<&str> = self.agents.iter().map(|agent| &*agent.name).collect();
        let limits = self.limits(&tenant);
        let lifecycle = lock(&self.lifecycle);
        let gate = admission::Gate {
            stopped: matches!(*lifecycle, Lifecycle::Stopped),
            draining: &self.draining,
            active: &self.active,
            max_sessions: self.config.max_concurrent_sessions,
            agent_names: &agent_names,
            agent_counters: &self.agent_counters,
            router: self.hooks.router.as_deref(),
            filter: self.hooks.filter.as_deref(),
            tenant: &tenant,
            limits: &limits,
        };
        let admitted = admission::admit(&gate, &request);
        drop(lifecycle);
        match admitted {
            Ok(admitted) => {
                // The worker's place is the hold's now: its drop or its session's end gives
                // it back.
                admitted.reservation.keep();
                Ok(HeldLaunch {
                    pool: Arc::clone(self),
                    tenant: Arc::clone(&tenant),
                    request,
                    agent: admitted.agent,
                    places: Some(admitted.places),
                })
            }
            Err(refused) => {
                log_refusal(&request, &refused.rejected);
                Err(self.count_refusal(&tenant, refused))
            }
        }
    }

    /// Counts a refusal for the worker and emits its event; the chain counted it for the
    /// tenant and agent.
    fn count_refusal(
        &self,
        tenant: &Arc<admission::TenantCounters>,
        refused: admission::Refused,
    ) -> Rejected {
        let admission::Refused { rejected, agent } = refused;
        self.counters.refused.count(rejected.reason());
        self.events.emit(Event::SessionRefused {
            tenant: Arc::clone(&tenant.name),
            agent: agent
                .and_then(|index| self.agents.get(index))
                .map(|agent| Arc::clone(&agent.name)),
            rejected: Box::new(rejected.clone()),
        });
        rejected
    }

    /// Starts the session a hold admitted: registers its cell, gives it its extras, starts
    /// its root task (or queues it until the runtime runs). A pool stopped since the hold
    /// refuses it as `stopped`.
    fn start_held(
        self: &Arc<Self>,
        mut held: HeldLaunch,
        extras: SessionExtras,
    ) -> Result<Arc<SessionCell>, Rejected> {
        let mut lifecycle = lock(&self.lifecycle);
        let runtime = match &*lifecycle {
            Lifecycle::Stopped => {
                drop(lifecycle);
                let rejected = Rejected::Stopped;
                log_refusal(&held.request, &rejected);
                admission::count_refusal(
                    &held.tenant,
                    self.agent_counters.get(held.agent),
                    &rejected,
                );
                let tenant = Arc::clone(&held.tenant);
                return Err(self.count_refusal(
                    &tenant,
                    admission::Refused {
                        rejected,
                        agent: Some(held.agent),
                    },
                ));
            }
            Lifecycle::NotStarted { .. } => None,
            Lifecycle::Running(runtime) => Some(runtime.clone()),
        };
        // Taken only here, from a hold consumed here: always there.
        let Some(places) = held.places.take() else {
            return Err(Rejected::Stopped);
        };
        let tenant = Arc::clone(&held.tenant);
        let request = std::mem::take(&mut held.request);
        let registered = &self.agents[held.agent];
        // The session holds every place from here (the worker's too): the hold, its places
        // taken, gives nothing back.
        drop(held);
        let limits = self.limits(&tenant);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let memory_limit_bytes = min_limit(
            registered.memory_limit_bytes,
            limits.policy().session_memory_limit_bytes,
        );
        let cell = Arc::new(SessionCell::new(
            key,
            Arc::clone(&registered.name),
            Arc::clone(&tenant.name),
            request.metadata,
            memory_limit_bytes,
            Some(places),
            Arc::clone(self),
        ));
        tenant.join(key, cell.account());
        lock(&self.sessions).insert(key, Arc::clone(&cell));
        self.events.emit(Event::SessionStarted {
            key,
            tenant: Arc::clone(&tenant.name),
            agent: Arc::clone(&registered.name),
        });
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        tenant.started.fetch_add(1, Ordering::Relaxed);
        self.tallies.started(&tenant.name, &registered.name);
        if let Some(media) = extras.media {
            cell.set_media(media);
        }
        #[cfg(feature = "livekit")]
        if let Some(job) = extras.livekit {
            cell.set_livekit(job);
        }
        if let Some(why) = self.isolation_for(&request.isolation, &tenant, &limits) {
            cell.set_process(Arc::new(crate::isolation::ProcessState::new(
                why,
                memory_limit_bytes,
            )));
        }
        match runtime {
            Some(runtime) => {
                self.start_root(Arc::clone(&cell), Arc::clone(&registered.agent), &runtime);
            }
            None => {
                if let Lifecycle::NotStarted { pending } = &mut *lifecycle {
                    pending.push((Arc::clone(&cell), Arc::clone(&registered.agent)));
                }
            }
        }
        Ok(cell)
    }

    /// Why a session about to start runs in a process of its own, if it does: its launch
    /// asks for it, its tenant's config does, or its tenant was moved there automatically.
    fn isolation_for(
        &self,
        asked: &Option<crate::Isolation>,
        tenant: &admission::TenantCounters,
        limits: &Limits<'_>,
    ) -> Option<crate::isolation::Why> {
        use crate::Isolation;
        use crate::isolation::Why;
        match asked {
            Some(Isolation::Process) => return Some(Why::Request),
            Some(Isolation::Coroutine) => return None,
            None => {}
        }
        if limits.policy().isolation == Some(Isolation::Process) {
            return Some(Why::Config);
        }
        tenant.is_auto_isolated().then_some(Why::Automatic)
    }

    /// Starts a session's root task: the agent itself, or for an isolated session the
    /// proxy that runs it in a process of its own.
    fn start_root(
        self: &Arc<Self>,
        cell: Arc<SessionCell>,
        agent: Arc<dyn ErasedAgent>,
        runtime: &tokio::runtime::Handle,
    ) {
        let Some(process) = cell.process().map(Arc::clone) else {
            session::spawn_root(cell, agent, runtime);
            return;
        };
        let start = crate::isolation::StartSession {
            key: cell.key(),
            agent: cell.agent().to_owned(),
            tenant: cell.tenant().to_owned(),
            metadata: cell.metadata().clone(),
            memory_limit_bytes: process.heap_limit_bytes(),
            // The call's start frame, set by the proxy when it takes the call's media.
            call_start: None,
        };
        match self.spawner() {
            Ok(spawner) => {
                let proxy =
                    crate::isolation::run_parent(Arc::clone(&cell), spawner, start, process);
                session::spawn_isolated_root(cell, proxy, runtime);
            }
            Err(error) => {
                let outcome = SessionOutcome::Failed(crate::AgentError::msg(format!(
                    "cannot start the spawner thread of isolated sessions: {error}"
                )));
                session::spawn_isolated_root(cell, std::future::ready(outcome), runtime);
            }
        }
    }

    /// The spawner thread of isolated sessions, started with the first.
    fn spawner(&self) -> std::io::Result<Arc<crate::isolation::Spawner>> {
        let mut spawner = lock(&self.spawner);
        if let Some(spawner) = &*spawner {
            return Ok(Arc::clone(spawner));
        }
        let started = Arc::new(crate::isolation::Spawner::start(
            std::path::PathBuf::from("/proc/self/exe"),
            std::env::args_os().skip(1).collect(),
        )?);
        *spawner = Some(Arc::clone(&started));
        Ok(started)
    }

    /// Counts an offence against `tenant` for automatic isolation (a cold path: a stall, a
    /// kill or a panic); at its budget, moves it to process isolation.
    pub(crate) fn note_offence(&self, tenant: &str, offence: crate::isolation::offences::Offence) {
        let Some(budget) = self.config.auto_isolation else {
            return;
        };
        let counters = self.tenants.get_or_create(tenant);
        let now_ns = self.probe.clock.now_ns();
        let change = lock(&counters.offences).offend(&budget, offence, now_ns);
        if let Some(crate::isolation::offences::Change::Isolated(tally)) = change {
            counters.set_auto_isolated(true);
            let why = format!("{tally} in {}s", budget.window.as_secs());
            tracing::warn!(
                event = "tenant_isolation",
                tenant,
                isolation = "process",
                offences = tally.total(),
                window_s = budget.window.as_secs(),
                cooldown_s = budget.cooldown.as_secs(),
                "[isolation] tenant '{tenant}' moved to process isolation after {why}"
            );
            self.events.emit(Event::TenantIsolation {
                tenant: Arc::clone(&counters.name),
                isolated: true,
                why: why.into(),
            });
        }
    }

    /// Returns to coroutines every tenant whose cooldown has passed without offences (the
    /// watchdog's housekeeping, once a second).
    pub(crate) fn release_isolated_tenants(&self) {
        let Some(budget) = self.config.auto_isolation else {
            return;
        };
        let now_ns = self.probe.clock.now_ns();
        for counters in self.tenants.all() {
            if !counters.is_auto_isolated() {
                continue;
            }
            let change = lock(&counters.offences).tick(&budget, now_ns);
            if change == Some(crate::isolation::offences::Change::Released) {
                counters.set_auto_isolated(false);
                let tenant = &*counters.name;
                let why = format!("no offence for {}s", budget.cooldown.as_secs());
                tracing::info!(
                    event = "tenant_isolation",
                    tenant,
                    isolation = "coroutine",
                    "[isolation] tenant '{tenant}' back to coroutines after {why}"
                );
                self.events.emit(Event::TenantIsolation {
                    tenant: Arc::clone(&counters.name),
                    isolated: false,
                    why: why.into(),
                });
            }
        }
    }

    /// The limits in force for `tenant`.
    pub(crate) fn limits<'a>(&self, tenant: &'a admission::TenantCounters) -> Limits<'a> {
        // The generation first: a reload between the two reads gives a newer config under an
        // older generation, which the next launch applies again (to the same effect).
        let generation = self.config_generation.load(Ordering::Acquire);
        let config = self.tenant_config.as_ref().map(|cell| cell.current());
        let policy = config.as_ref().map_or_else(
            || TenantPolicy {
                breaker: self.config.tenant_breaker,
                ..TenantPolicy::default()
            },
            |config| config.policy(&tenant.name),
        );
        Limits {
            tenant,
            generation,
            config,
            policy,
        }
    }

    /// Lists every tenant the config names, so snapshots show them before their first
    /// session.
    fn note_named_tenants(&self) {
        if let Some(cell) = &self.tenant_config {
            for tenant in cell.current().tenants() {
                self.tenants.get_or_create(tenant);
            }
        }
    }

    /// A reload put `config` in force.
    pub(crate) fn tenant_config_reloaded(&self, config: &TenantConfig) {
        self.config_generation.fetch_add(1, Ordering::AcqRel);
        self.note_named_tenants();
        if let Some(cell) = &self.tenant_config {
            self.events.emit(Event::ConfigReloaded {
                path: cell.path().into(),
                version: config.version().into(),
            });
        }
    }

    /// Records a session's end and frees its place (called once per session, by its cell).
    pub(crate) fn session_ended(&self, cell: &SessionCell, outcome: SessionOutcome) {
        let now_ns = self.probe.clock.now_ns();
        let counter = match &outcome {
            SessionOutcome::Completed => &self.counters.completed,
            SessionOutcome::Failed(_) => &self.counters.failed,
            SessionOutcome::Panicked { .. } => &self.counters.panicked,
            SessionOutcome::Cancelled(_) => &self.counters.cancelled,
            SessionOutcome::Killed(_) => &self.counters.killed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tallies
            .ended(cell.tenant_name(), cell.agent_name(), &outcome);
        // An isolated session's figures are its process's, as its child last reported them.
        let (busy_ns, stall_count, mem_peak_bytes) =
            match cell.process().and_then(|process| process.row()) {
                Some(row) => (row.busy_ns, row.stall_count, row.mem_peak_bytes),
                None => (
                    cell.busy_totals().busy_ns,
                    cell.stall_count(),
                    cell.peak_memory_bytes(),
                ),
            };
        self.counters
            .ended_busy_ns
            .fetch_add(busy_ns, Ordering::Relaxed);
        let wire = outcome.to_wire();
        crate::telemetry::current::scope(cell, || log_session_end(cell, &outcome, &wire));
        self.note_verdict(cell, &outcome);
        {
            use crate::isolation::offences::Offence;
            let offence = match &outcome {
                SessionOutcome::Panicked { .. }
                | SessionOutcome::Killed(KillReason::Signal { .. }) => Some(Offence::Crash),
                SessionOutcome::Killed(
                    KillReason::MemoryLimit { .. } | KillReason::RssLimit { .. },
                ) => Some(Offence::MemoryKill),
                _ => None,
            };
            if let Some(offence) = offence {
                self.note_offence(cell.tenant(), offence);
            }
        }
        let ended_badly = matches!(
            outcome,
            SessionOutcome::Failed(_) | SessionOutcome::Panicked { .. } | SessionOutcome::Killed(_)
        );
        let flight_recorder = self.log.session_ended(cell, ended_badly || stall_count > 0);
        let ended = EndedSession {
            key: cell.key(),
            agent: Arc::clone(cell.agent_name()),
            tenant: Arc::clone(cell.tenant_name()),
            outcome: wire,
            ended_ns: now_ns,
            duration_ns: now_ns.saturating_sub(cell.started_ns()),
            busy_ns,
            stall_count,
            mem_peak_bytes,
            flight_recorder: flight_recorder.into(),
        };
        self.events.emit(Event::SessionFinished {
            key: ended.key,
            tenant: Arc::clone(&ended.tenant),
            agent: Arc::clone(&ended.agent),
            outcome: Box::new(ended.outcome.clone()),
            duration_ns: ended.duration_ns,
            busy_ns: ended.busy_ns,
            stall_count: ended.stall_count,
        });
        {
            let mut recent = lock(&self.ended);
            if recent.len() == RECENTLY_ENDED_CAPACITY {
                recent.pop_back();
            }
            recent.push_front(ended);
        }
        if let Some(places) = cell.take_places() {
            places.release(cell.key(), outcome.verdict(), tokio::time::Instant::now());
        }
        if lock(&self.sessions).remove(&cell.key()).is_some() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
        // Whoever receives the outcome finds the session gone and its place free; a drain
        // woken below finds the outcome delivered.
        cell.outcome_slot().put(outcome);
        self.session_ended.notify_waiters();
    }

    /// Asks one session to stop; a cancel is graceful, then firm after the cancel grace.
    pub(crate) fn stop_session(
        &self,
        id: SessionId,
        request: StopRequest,
    ) -> Result<(), LookupError> {
        let cell = self
            .session(id.as_u64())
            .ok_or(LookupError::NotFound { id })?;
        self.stop_cell(cell, request);
        Ok(())
    }

    fn stop_cell(&self, cell: Arc<SessionCell>, request: StopRequest) {
        if !cell.request_stop(request) || matches!(request, StopRequest::Kill(_)) {
            return;
        }
        let grace = self.config.cancel_grace;
        if grace.is_zero() {
            cell.abort_root();
            return;
        }
        if let Lifecycle::Running(runtime) = &*lock(&self.lifecycle) {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                cell.abort_root();
            });
        }
    }

    pub(crate) fn begin_drain(&self, control: Control) {
        self.draining.store(true, Ordering::Release);
        // The supervisor may be gone already; then there is nothing left to drain.
        let _ = self.control.send(control);
    }

    /// Waits until no session is live or `timeout` passes; returns whether none is live.
    async fn wait_until_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.session_ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active_sessions() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active_sessions() == 0;
            }
        }
    }
}

/// The limits in force for one tenant, read from the tenant config (its defaults without
/// one: no caps, the default circuit breaker).
pub(crate) struct Limits<'a> {
    tenant: &'a admission::TenantCounters,
    generation: u64,
    config: Option<Arc<TenantConfig>>,
    policy: TenantPolicy,
}

impl Limits<'_> {
    /// The tenant's policy.
    pub(crate) fn policy(&self) -> &TenantPolicy {
        &self.policy
    }
}

impl admission::Limits for Limits<'_> {
    fn tenant_cap(&self) -> Option<u32> {
        self.policy.max_sessions
    }

    fn tenant_heap_budget(&self) -> Option<u64> {
        self.policy.max_heap_bytes
    }

    fn tenant_live_heap(&self) -> u64 {
        self.tenant.live_heap()
    }

    fn agent_cap(&self, agent: &str) -> Option<u32> {
        self.config
            .as_ref()
            .and_then(|config| config.agent_cap(agent))
    }

    fn breaker(&self) -> admission::BreakerPolicy<'_> {
        admission::BreakerPolicy {
            generation: self.generation,
            settings: self.policy.breaker.as_ref(),
        }
    }
}

/// The stricter of two optional limits.
fn min_limit(first: Option<u64>, second: Option<u64>) -> Option<u64> {
    match (first, second) {
        (Some(first), Some(second)) => Some(first.min(second)),
        (one, other) => one.or(other),
    }
}

/// Why a session id or prefix matched no single live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FindError {
    NotFound,
    Ambiguous { count: usize },
}

/// A pool of agents hosting many sessions in one worker process.
///
/// ```no_run
/// use openrtc::{AgentPool, JobRequest, Session, agent_fn};
///
/// let pool = AgentPool::builder()
///     .agent("echo", agent_fn(|session: Session| async move {
///         session.cancelled().await;
///         Ok(())
///     }))
///     .build()?;
/// let handle = pool.handle();
/// handle.launch(JobRequest::new().tenant("acme")).expect("room for one session");
/// pool.run()?; // until SIGINT or SIGTERM, then drains
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AgentPool {
    shared: Arc<PoolShared>,
    control: mpsc::UnboundedReceiver<Control>,
    prewarm: Option<prewarm::Prewarm>,
}

impl AgentPool {
    /// A builder with every setting at its default.
    pub fn builder() -> AgentPoolBuilder {
        AgentPoolBuilder::default()
    }

    fn new(
        config: PoolConfig,
        agents: Vec<RegisteredAgent>,
        hooks: AdmissionHooks,
        tenant_config: Option<Arc<TenantConfigCell>>,
        log: crate::telemetry::PoolLog,
    ) -> Self {
        let probe = Arc::new(Probe::new(
            config.worker_threads,
            config.slow_session_threshold,
            config.slow_status_hold,
            config.enable_introspection,
        ));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let failure_budget = failure_budget::FailureBudget::new(config.consecutive_failure_limit);
        let events = Arc::new(EventHub::new(config.event_queue_capacity));
        let shared = Arc::new(PoolShared {
            config,
            agent_counters: agents.iter().map(|_| Arc::default()).collect(),
            agents,
            tenants: admission::TenantRegistry::new(Arc::clone(&events)),
            hooks,
            tenant_config,
            config_generation: AtomicU64::new(0),
            probe,
            log: Arc::new(log),
            sessions: Mutex::default(),
            next_key: AtomicU64::new(1),
            active: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            lifecycle: Mutex::new(Lifecycle::NotStarted {
                pending: Vec::new(),
            }),
            counters: Counters::default(),
            ended: Mutex::default(),
            session_ended: Notify::new(),
            control: control_tx,
            runtime_started_ns: AtomicU64::new(0),
            process_cpu_pct_bits: AtomicU64::new(0),
            stalls_last_minute: AtomicU64::new(0),
            stalls_preempted: AtomicU64::new(0),
            prewarmed: OnceLock::new(),
            failure_budget,
            events,
            calls: crate::calls::CallTable::default(),
            tallies: tallies::TenantAgentTallies::new(openrtc_proto::MAX_TENANT_AGENT_PAIRS),
            frame_clocks: crate::frames::FrameClocks::default(),
            tasks: crate::session::TaskCounters::default(),
            recent: crate::watchdog::RecentFigures::default(),
            http_addr: OnceLock::new(),
            media_addr: OnceLock::new(),
            #[cfg(feature = "livekit")]
            livekit: OnceLock::new(),
            spawner: Mutex::new(None),
        });
        shared.note_named_tenants();
        Self {
            shared,
            control: control_rx,
            prewarm: None,
        }
    }

    /// A handle to launch, inspect and stop sessions, usable from any thread, before and
    /// while the pool runs.
    #[must_use]
    pub fn handle(&self) -> PoolHandle {
        PoolHandle::new(Arc::clone(&self.shared))
    }

    /// Its first session gets the key (and so the id) `key`: in an isolated session's
    /// child, the worker's, so that the child's log lines name the same session.
    pub(crate) fn first_key(&self, key: u64) {
        self.shared.next_key.store(key.max(1), Ordering::Relaxed);
    }

    /// Where the introspection socket is served (`None` with introspection off).
    #[must_use]
    pub fn socket_path(&self) -> Option<&Path> {
        self.shared.config.socket_path.as_deref()
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &PoolShared {
        &self.shared
    }

    /// A session cell of this pool registered nowhere and running nothing, named `name` for
    /// its agent and tenant: for unit tests and benchmarks of what reads or runs in cells.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn unregistered_cell(&self, key: u64, name: &str) -> Arc<SessionCell> {
        Arc::new(SessionCell::new(
            key,
            name.into(),
            name.into(),
            serde_json::Value::Null,
            None,
            None,
            Arc::clone(&self.shared),
        ))
    }

    #[cfg(feature = "bench")]
    pub(crate) fn bench_attributed<F: Future>(
        &self,
        future: F,
        tracked: bool,
    ) -> impl Future<Output = F::Output> {
        let mut cell = SessionCell::new(
            u64::MAX,
            "bench".into(),
            "bench".into(),
            serde_json::Value::Null,
            None,
            None,
            Arc::clone(&self.shared),
        );
        if tracked {
            cell.set_account_for_bench(crate::alloc::accounts::claim(0).unwrap_or(0));
        }
        let cell = Arc::new(cell);
        let stats = cell.root_stats();
        crate::probe::Attributed::new(future, cell, stats)
    }

    /// Runs the pool until SIGINT or SIGTERM, then drains: stops accepting, waits for live
    /// sessions up to the drain timeout, cancels the rest (then drops them after the cancel
    /// grace). A second signal skips the wait.
    ///
    /// # Errors
    ///
    /// A [`RunError`] if the runtime, the watchdog or the socket cannot be set up, or the
    /// prewarm fails ([`RunError::Prewarm`]); after a drain the worker began by itself,
    /// [`RunError::MemoryLimit`] or [`RunError::ConsecutiveFailures`].
    pub fn run(self) -> Result<(), RunError> {
        self.run_inner(None)
    }

    /// Runs the pool like [`AgentPool::run`], but drains when `stop` resolves instead of on
    /// a signal (for embedding and tests).
    ///
    /// # Errors
    ///
    /// A [`RunError`] if the runtime, the watchdog or the socket cannot be set up.
    pub fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        self.run_inner(Some(Box::pin(stop)))
    }

    fn run_inner(
        mut self,
        stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> Result<(), RunError> {
        let shared = Arc::clone(&self.shared);
        crate::panics::install_hook();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(shared.config.worker_threads)
            .thread_name(format!("{}-worker", shared.config.worker_name))
            .enable_all()
            .build()
            .map_err(RunError::Runtime)?;
        // The pool owns SIGINT and SIGTERM from here (unless `run_until` stops it), before
        // its socket shows it to anyone and before the prewarm: a signal, a drain or a
        // shutdown while it loads stops the worker cleanly.
        let mut signals = match stop {
            Some(_) => None,
            None => {
                let _context = runtime.enter();
                drain::Signals::install()
            }
        };
        shared.log.announce();
        let mut helpers = HelperThreads::default();
        // First, so that the socket's subscribers and every other helper find it running.
        helpers.events = Some(crate::events::EventsThread::start(Arc::clone(&shared))?);
        if let Some(path) = &shared.config.socket_path {
            helpers.server = Some(crate::serve::SocketServer::start(
                Arc::clone(&shared),
                path,
            )?);
        }
        if let Some(addr) = shared.config.http_addr {
            helpers.http = Some(crate::http::HttpServer::start(Arc::clone(&shared), addr)?);
        }
        // Bound now, so a taken port fails `run` before any session starts; served once the
        // runtime runs.
        let media_listener = match shared.config.media_addr {
            Some(addr) => {
                let listener = crate::media::listener::bind(addr)?;
                if let Ok(bound) = listener.local_addr() {
                    let _ = shared.media_addr.set(bound);
                }
                Some(listener)
            }
            None => None,
        };
        if shared.config.enable_introspection {
            helpers.watchdog = Some(crate::watchdog::Watchdog::start(Arc::clone(&shared))?);
        }
        if let Some(cell) = &shared.tenant_config {
            let pool = Arc::downgrade(&shared);
            let on_reload = Box::new(move |config: &TenantConfig| {
                if let Some(pool) = pool.upgrade() {
                    pool.tenant_config_reloaded(config);
                }
            });
            helpers.reloader = Some(
                Reloader::spawn(Arc::clone(cell), on_reload, ReloaderOptions::default()).map_err(
                    |source| RunError::Thread {
                        name: "openrtc-config",
                        source,
                    },
                )?,
            );
        }
        // Sessions launched until it has loaded stay queued; if it fails or is interrupted,
        // dropping the pool ends them as `cancelled (shutdown)`.
        let interrupted = shared.run_prewarm(
            self.prewarm.take(),
            &runtime,
            // `run_until`'s future is first polled once the prewarm has loaded: it may say
            // that the pool runs (`run_in_background` does).
            drain::next_input(&mut self.control, &mut None, signals.as_mut()),
        )?;
        if let Some(first) = interrupted {
            // No session started: dropping the pool ends the queued ones as `cancelled
            // (shutdown)`, and nothing is left to drain. The prewarm's task was aborted; if
            // it is inside a blocking call, the runtime stops without it.
            shared.draining.store(true, Ordering::Release);
            runtime.shutdown_timeout(ABORT_WAIT);
            drop(helpers);
            shared.log.flush();
            return run_result(first);
        }
        let pending = {
            let mut lifecycle = lock(&shared.lifecycle);
            match std::mem::replace(
                &mut *lifecycle,
                Lifecycle::Running(runtime.handle().clone()),
            ) {
                Lifecycle::NotStarted { pending } => pending,
                previous @ (Lifecycle::Running(_) | Lifecycle::Stopped) => {
                    *lifecycle = previous;
                    return Err(RunError::AlreadyRan);
                }
            }
        };
        shared
            .runtime_started_ns
            .store(shared.probe.clock.now_ns(), Ordering::Relaxed);
        for (cell, agent) in pending {
            shared.start_root(cell, agent, runtime.handle());
        }
        if let Some(listener) = media_listener {
            crate::media::listener::spawn(Arc::clone(&shared), listener, runtime.handle());
        }
        #[cfg(feature = "livekit")]
        if let Some((options, url)) = &shared.config.livekit {
            helpers.livekit = Some(
                crate::source::livekit::LiveKitWorker::start(
                    Arc::clone(&shared),
                    options.clone(),
                    url.clone(),
                )
                .map_err(|source| RunError::Thread {
                    name: "openrtc-livekit",
                    source,
                })?,
            );
        }
        let (first, counts) =
            runtime.block_on(drain::supervise(&shared, &mut self.control, stop, signals));
        *lock(&shared.lifecycle) = Lifecycle::Stopped;
        shared.draining.store(true, Ordering::Release);
        runtime.shutdown_timeout(ABORT_WAIT);
        drop(helpers);
        let result = run_result(first);
        drain::log_drain_end(&shared.config.worker_name, counts, &result);
        shared.log.flush();
        result
    }
}

/// What `run` returns after the stop that came first.
fn run_result(first: Control) -> Result<(), RunError> {
    match first {
        Control::MemoryLimit {
            rss_bytes,
            limit_bytes,
        } => Err(RunError::MemoryLimit {
            rss_bytes,
            limit_bytes,
        }),
        Control::FailureBudget { count } => Err(RunError::ConsecutiveFailures { count }),
        Control::BlockedWorker {
            worker,
            session_key,
            blocked_ms,
        } => Err(RunError::BlockedWorker {
            worker,
            session_id: crate::session::session_id(session_key),
            blocked_ms,
        }),
        Control::Drain | Control::Shutdown => Ok(()),
    }
}

impl Drop for AgentPool {
    /// A pool dropped before its runtime ran (never run, or `run` failed to start) ends the
    /// sessions queued for it, with the outcome `cancelled (shutdown)`, so their places,
    /// allocator accounts and launch handles are not left waiting for a runtime that will
    /// never come; later launches are refused as `Stopped`. After `run`, there are none.
    fn drop(&mut self) {
        let pending = {
            let mut lifecycle = lock(&self.shared.lifecycle);
            match std::mem::replace(&mut *lifecycle, Lifecycle::Stopped) {
                Lifecycle::NotStarted { pending } => pending,
                previous @ (Lifecycle::Running(_) | Lifecycle::Stopped) => {
                    *lifecycle = previous;
                    return;
                }
            }
        };
        self.shared.draining.store(true, Ordering::Release);
        for (cell, _agent) in pending {
            cell.finish(SessionOutcome::Cancelled(CancelReason::Shutdown));
        }
    }
}

/// What a session gets from its source besides its request, before it starts.
#[derive(Default)]
pub(crate) struct SessionExtras {
    /// A phone call's media (the media listener's sessions).
    pub(crate) media: Option<crate::media::CallMedia>,
    /// A LiveKit job (the LiveKit worker's sessions).
    #[cfg(feature = "livekit")]
    pub(crate) livekit: Option<Arc<crate::source::livekit::LiveKitJob>>,
}

/// A launch that passed admission and holds its places (the worker's, its tenant's, its
/// agent's, a half-open breaker's probe) until it starts its session or is dropped, which
/// gives each back exactly once.
pub(crate) struct HeldLaunch {
    pool: Arc<PoolShared>,
    tenant: Arc<admission::TenantCounters>,
    request: JobRequest,
    /// The routed agent's position among the registered agents.
    agent: usize,
    /// The tenant and agent places, taken by the session when it starts; while the hold has
    /// them, it also has a worker place, which its drop gives back.
    places: Option<admission::SessionPlaces>,
}

impl std::fmt::Debug for HeldLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLaunch")
            .field("tenant", &self.tenant.name)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl HeldLaunch {
    /// The name of the agent the launch was routed to.
    #[cfg_attr(
        not(feature = "livekit"),
        allow(dead_code, reason = "the LiveKit worker's")
    )]
    pub(crate) fn agent_name(&self) -> &str {
        self.pool
            .agents
            .get(self.agent)
            .map_or("", |agent| &*agent.name)
    }

    /// Starts the session, with what its source gives it.
    pub(crate) fn start(self, extras: SessionExtras) -> Result<Arc<SessionCell>, Rejected> {
        let pool = Arc::clone(&self.pool);
        pool.start_held(self, extras)
    }
}

impl Drop for HeldLaunch {
    fn drop(&mut self) {
        if self.places.is_some() {
            self.pool.active.fetch_sub(1, Ordering::AcqRel);
            // A drain waits for the worker's places to empty: a released hold is one less.
            self.pool.session_ended.notify_waiters();
        }
    }
}

/// The socket server, the watchdog, the tenant config's reloader and the event stream of a
/// running pool, stopped when dropped (also when `run` returns early on an error).
#[derive(Default)]
struct HelperThreads {
    /// The LiveKit worker: stopped first, once the sessions have ended, so that their jobs'
    /// last statuses reach the server.
    #[cfg(feature = "livekit")]
    livekit: Option<crate::source::livekit::LiveKitWorker>,
    server: Option<crate::serve::SocketServer>,
    /// The HTTP health endpoints.
    http: Option<crate::http::HttpServer>,
    watchdog: Option<crate::watchdog::Watchdog>,
    /// Reloads the tenant config; stopped when dropped.
    reloader: Option<Reloader>,
    /// Writes the event stream.
    events: Option<crate::events::EventsThread>,
}

impl Drop for HelperThreads {
    fn drop(&mut self) {
        #[cfg(feature = "livekit")]
        if let Some(livekit) = self.livekit.take() {
            livekit.stop();
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Some(http) = self.http.take() {
            http.stop();
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        drop(self.reloader.take());
        // Last: the others emit events (a stall's report, a reload) until they stop.
        if let Some(events) = self.events.take() {
            events.stop();
        }
    }
}

/// The `[session-end]` line: at warn level for a failure or a kill, else at debug level (a
/// panic was logged when it was caught, `[session-panic]`: one warning per panic). Its figures
/// are fields too: `outcome` (the wire's kind), `reason` (a cancel's or kill's name), `error`,
/// and a memory-limit kill's `live_bytes` and `limit_bytes`.
/// The `[refused]` line: `DEBUG`, so stderr stays quiet through a flood of refusals while the
/// log file (which takes the runtime's `DEBUG` records) has each one.
fn log_refusal(request: &JobRequest, rejected: &Rejected) {
    tracing::debug!(
        event = "session_refused",
        reason = rejected.reason().as_str(),
        tenant = request.tenant.as_str(),
        agent = request.agent.as_deref(),
        "[refused] tenant={} {rejected}",
        request.tenant
    );
}

fn log_session_end(
    cell: &SessionCell,
    outcome: &SessionOutcome,
    wire: &openrtc_proto::SessionOutcome,
) {
    let (reason, live_bytes, limit_bytes) = match outcome {
        SessionOutcome::Cancelled(reason) => (Some(reason.as_str()), None, None),
        SessionOutcome::Killed(reason) => match *reason {
            KillReason::MemoryLimit {
                live_bytes,
                limit_bytes,
            } => (Some(reason.as_str()), Some(live_bytes), Some(limit_bytes)),
            _ => (Some(reason.as_str()), None, None),
        },
        _ => (None, None, None),
    };
    let error = match outcome {
        SessionOutcome::Failed(error) => Some(tracing::field::display(error)),
        _ => None,
    };
    macro_rules! session_end {
        ($level:ident) => {
            tracing::$level!(
                event = "session_end",
                session_id = %cell.id(),
                tenant = cell.tenant(),
                agent = cell.agent(),
                outcome = wire.kind(),
                reason,
                error,
                live_bytes,
                limit_bytes,
                "[session-end] session_id={} tenant={} agent={} {outcome}",
                cell.id(),
                cell.tenant(),
                cell.agent()
            )
        };
    }
    if matches!(
        outcome,
        SessionOutcome::Failed(_) | SessionOutcome::Killed(_)
    ) {
        session_end!(warn);
    } else {
        session_end!(debug);
    }
}
