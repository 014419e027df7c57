//! `AgentPoolBuilder`: the by-value builder that checks a pool's configuration.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::ErasedAgent;
use crate::pool::prewarm::Prewarm;
use crate::pool::{AdmissionHooks, AgentPool, PoolConfig, RegisteredAgent};
use crate::tenant_config::cell::TenantConfigCell;
use crate::{Agent, AgentError, BreakerConfig, ConfigError, JobRequest};

/// Configures an [`AgentPool`]; every setter has a documented default.
#[must_use]
pub struct AgentPoolBuilder {
    agents: Vec<(String, Arc<dyn ErasedAgent>)>,
    worker_name: String,
    worker_threads: Option<usize>,
    max_concurrent_sessions: u32,
    slow_session_threshold: Duration,
    slow_call_threshold: Duration,
    slow_status_hold: Duration,
    enable_introspection: bool,
    stack_capture: bool,
    panic_backtraces: Option<bool>,
    drain_timeout: Duration,
    cancel_grace: Duration,
    socket_path: Option<PathBuf>,
    log_file: Option<PathBuf>,
    session_memory_limit: Option<u64>,
    agent_memory_limits: Vec<(String, u64)>,
    memory_warn_mb: Option<u64>,
    memory_limit_mb: Option<u64>,
    hooks: AdmissionHooks,
    tenant_config: Option<PathBuf>,
    tenant_breaker: Option<BreakerConfig>,
    prewarm: Option<Prewarm>,
    consecutive_failure_limit: Option<u32>,
    event_stream: Option<(PathBuf, Duration)>,
    event_queue_capacity: usize,
    blocked_after: Duration,
    restart_after: Option<Duration>,
    http_addr: Option<std::net::SocketAddr>,
    media_addr: Option<std::net::SocketAddr>,
    media_path: String,
    voice_webhook: Option<crate::media::VoiceWebhook>,
    #[cfg(feature = "livekit")]
    livekit: Option<crate::source::livekit::LiveKitOptions>,
    auto_isolation: Option<crate::AutoIsolation>,
    /// Set in an isolated session's child: the worker's key of its one session.
    isolated_session_key: Option<u64>,
}

impl std::fmt::Debug for AgentPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPoolBuilder")
            .field(
                "agents",
                &self.agents.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("worker_name", &self.worker_name)
            .field("worker_threads", &self.worker_threads)
            .field("max_concurrent_sessions", &self.max_concurrent_sessions)
            .field("slow_session_threshold", &self.slow_session_threshold)
            .field("slow_call_threshold", &self.slow_call_threshold)
            .field("slow_status_hold", &self.slow_status_hold)
            .field("enable_introspection", &self.enable_introspection)
            .field("stack_capture", &self.stack_capture)
            .field("panic_backtraces", &self.panic_backtraces)
            .field("drain_timeout", &self.drain_timeout)
            .field("cancel_grace", &self.cancel_grace)
            .field("socket_path", &self.socket_path)
            .field("log_file", &self.log_file)
            .field("session_memory_limit", &self.session_memory_limit)
            .field("agent_memory_limits", &self.agent_memory_limits)
            .field("memory_warn_mb", &self.memory_warn_mb)
            .field("memory_limit_mb", &self.memory_limit_mb)
            .field("tenant_config", &self.tenant_config)
            .field("tenant_breaker", &self.tenant_breaker)
            .field("router", &self.hooks.router.is_some())
            .field("request_filter", &self.hooks.filter.is_some())
            .field("prewarm", &self.prewarm)
            .field("consecutive_failure_limit", &self.consecutive_failure_limit)
            .field("event_stream", &self.event_stream)
            .field("event_queue_capacity", &self.event_queue_capacity)
            .field("blocked_after", &self.blocked_after)
            .field("restart_after", &self.restart_after)
            .field("http_addr", &self.http_addr)
            .field("media_addr", &self.media_addr)
            .field("media_path", &self.media_path)
            .field("voice_webhook", &self.voice_webhook)
            .field("auto_isolation", &self.auto_isolation)
            .finish()
    }
}

impl Default for AgentPoolBuilder {
    fn default() -> Self {
        Self {
            agents: Vec::new(),
            worker_name: Self::DEFAULT_WORKER_NAME.to_owned(),
            worker_threads: None,
            max_concurrent_sessions: Self::DEFAULT_MAX_CONCURRENT_SESSIONS,
            slow_session_threshold: Self::DEFAULT_SLOW_SESSION_THRESHOLD,
            slow_call_threshold: Self::DEFAULT_SLOW_CALL_THRESHOLD,
            slow_status_hold: Self::DEFAULT_SLOW_STATUS_HOLD,
            enable_introspection: true,
            stack_capture: true,
            panic_backtraces: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            cancel_grace: Self::DEFAULT_CANCEL_GRACE,
            socket_path: None,
            log_file: None,
            session_memory_limit: None,
            agent_memory_limits: Vec::new(),
            memory_warn_mb: None,
            memory_limit_mb: None,
            hooks: AdmissionHooks::default(),
            tenant_config: None,
            tenant_breaker: Some(BreakerConfig::default()),
            prewarm: None,
            consecutive_failure_limit: None,
            event_stream: None,
            event_queue_capacity: crate::events::DEFAULT_QUEUE_CAPACITY,
            blocked_after: Self::DEFAULT_BLOCKED_AFTER,
            restart_after: None,
            http_addr: None,
            media_addr: None,
            media_path: crate::media::DEFAULT_PATH.to_owned(),
            voice_webhook: None,
            #[cfg(feature = "livekit")]
            livekit: None,
            auto_isolation: None,
            isolated_session_key: None,
        }
    }
}

impl AgentPoolBuilder {
    /// The worker name when none is set.
    pub const DEFAULT_WORKER_NAME: &'static str = "openrtc";
    /// The concurrent-session cap when none is set.
    pub const DEFAULT_MAX_CONCURRENT_SESSIONS: u32 = 1000;
    /// The stall threshold when none is set.
    pub const DEFAULT_SLOW_SESSION_THRESHOLD: Duration = Duration::from_millis(50);
    /// The slow call threshold when none is set.
    pub const DEFAULT_SLOW_CALL_THRESHOLD: Duration = Duration::from_secs(2);
    /// How long a session shows `slow` after a stall, when not set.
    pub const DEFAULT_SLOW_STATUS_HOLD: Duration = Duration::from_secs(5);
    /// The drain timeout when none is set.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The cancel grace period when none is set.
    pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);
    /// How long one poll may hold a worker thread before the thread counts as blocked, when
    /// not set.
    pub const DEFAULT_BLOCKED_AFTER: Duration = Duration::from_secs(5);
    /// The longest snapshot interval [`Self::event_stream`] takes.
    pub const MAX_EVENT_STREAM_INTERVAL: Duration = Duration::from_secs(3600);

    /// Registers an agent under `name`. The first one registered is the default route for
    /// jobs that name no agent. Names are 1 to 64 of `[A-Za-z0-9._-]`.
    pub fn agent(mut self, name: impl Into<String>, agent: impl Agent) -> Self {
        self.agents.push((name.into(), Arc::new(agent)));
        self
    }

    /// Names the worker (default [`Self::DEFAULT_WORKER_NAME`]); the name appears in
    /// snapshots and in the socket's file name.
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker_name = name.into();
        self
    }

    /// The number of Tokio worker threads that run sessions (default: the number of CPUs).
    /// More threads let more sessions run while one blocks, at the cost of contention.
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = Some(threads);
        self
    }

    /// The hard cap on concurrent sessions (default
    /// [`Self::DEFAULT_MAX_CONCURRENT_SESSIONS`]); over it `launch` is refused with
    /// [`crate::Rejected::WorkerFull`].
    pub fn max_concurrent_sessions(mut self, max: u32) -> Self {
        self.max_concurrent_sessions = max;
        self
    }

    /// A worker thread polling one session for this long is **blocked** (default 5 s): the
    /// health report (`/health`) turns `critical` and names the session. Must be more than
    /// zero.
    pub fn blocked_after(mut self, after: Duration) -> Self {
        self.blocked_after = after;
        self
    }

    /// A worker thread blocked in one poll for this long makes the worker give up (default
    /// off): it logs the stuck session with its stack (`[blocked-worker]`, event
    /// `worker_blocked`), drains, and `run` returns [`crate::RunError::BlockedWorker`] (exit
    /// code 69) for its supervisor to restart it. A thread stuck inside a poll cannot be taken
    /// back from inside the process; restarting the worker is the only cure. Must be more
    /// than zero. Both this and [`Self::blocked_after`] read the probe's poll slots, so they
    /// need introspection on (the default).
    pub fn restart_after(mut self, after: Option<Duration>) -> Self {
        self.restart_after = after;
        self
    }

    /// Serves `GET /health`, `/ready` and `/metrics` over HTTP at this address (default off),
    /// on a thread of its own, never on a worker thread. Port 0 picks a free port: the bound
    /// address is logged and shown in snapshots (`worker.http_addr`).
    pub fn http_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.http_addr = Some(addr);
        self
    }

    /// Takes phone calls over a Twilio-compatible media WebSocket at this address (default
    /// off), path [`Self::media_path`]: each connection's `start` launches a session routed
    /// by its `agent` and `tenant` custom parameters, whose agent reaches the call through
    /// `Session::media`. Served on the pool's runtime; port 0 picks a free port, shown in
    /// snapshots (`worker.media_addr`). See [`crate::media`].
    pub fn media_listener(mut self, addr: std::net::SocketAddr) -> Self {
        self.media_addr = Some(addr);
        self
    }

    /// Takes jobs from a LiveKit server (default off; cargo feature `livekit`): the worker
    /// registers with its agent service, answers its offers through the admission chain (an
    /// accepted offer holds its places until the assignment), and runs each assigned job as
    /// a session whose agent finds its room, participant, dispatch metadata and token in
    /// `Session::livekit`. Reports its load as sessions over capacity. See
    /// [`crate::source::livekit`].
    #[cfg(feature = "livekit")]
    pub fn livekit(mut self, options: crate::source::livekit::LiveKitOptions) -> Self {
        self.livekit = Some(options);
        self
    }

    /// The media WebSocket's path (default `/media`): it must start with `/` and carry no
    /// query string (Twilio refuses stream URLs with one).
    pub fn media_path(mut self, path: impl Into<String>) -> Self {
        self.media_path = path.into();
        self
    }

    /// Answers Twilio's voice webhook at `POST /voice` on the media listener's address with
    /// TwiML that streams each call to the media WebSocket, routed by the number called, its
    /// `X-Twilio-Signature` checked when an auth token is set (default: no webhook). Needs
    /// [`Self::media_listener`].
    pub fn voice_webhook(mut self, webhook: crate::media::VoiceWebhook) -> Self {
        self.voice_webhook = Some(webhook);
        self
    }

    /// A poll at least this long is a stall and makes its session `slow` (default 50 ms).
    /// Lower it to catch smaller stalls while hunting; every stall is logged.
    pub fn slow_session_threshold(mut self, threshold: Duration) -> Self {
        self.slow_session_threshold = threshold;
        self
    }

    /// A tracked call (`Session::track`, `Session::track_blocking`) longer than this counts
    /// as slow for its label (default 2 s). Zero counts every call as slow.
    pub fn slow_call_threshold(mut self, threshold: Duration) -> Self {
        self.slow_call_threshold = threshold;
        self
    }

    /// How long a session keeps showing `slow` after its last stall ended (default 5 s; zero
    /// shows `slow` only while the stall lasts).
    pub fn slow_status_hold(mut self, hold: Duration) -> Self {
        self.slow_status_hold = hold;
        self
    }

    /// Whether sessions are measured and the introspection socket is served (default true).
    /// Off, polls are not timed, no watchdog runs and no socket is created.
    pub fn enable_introspection(mut self, enable: bool) -> Self {
        self.enable_introspection = enable;
        self
    }

    /// Whether the watchdog captures the stack of a thread a session is blocking (default
    /// true), to name the agent's function, file and line in the stall's record and log line.
    ///
    /// Capture signals the one stuck thread (a real-time signal; a blocking call it is in is
    /// restarted) and walks its frame pointers; it happens only while a stall lasts, at most
    /// 20 times a second, sharing the watchdog's diagnosis budget. Off, stalls are still
    /// classified from `/proc`.
    pub fn stack_capture(mut self, enable: bool) -> Self {
        self.stack_capture = enable;
        self
    }

    /// Whether a session's panic is logged with a backtrace (default: as std decides for its
    /// own panic output, from `RUST_BACKTRACE` when the pool is built: set and not `0`).
    ///
    /// Either way a panic inside a session prints nothing of std's on the worker thread: it is
    /// logged as one `[session-panic]` line. With backtraces, the panicking thread only walks
    /// its stack for raw return addresses (microseconds); a thread of the runtime symbolizes
    /// them and logs a `[session-panic-backtrace]` line. The first one loads the binary's
    /// debug info there (tens of MiB, in the `runtime` memory bucket), dropped again after a
    /// minute without backtraces. Panics outside sessions go to the previous panic hook.
    pub fn panic_backtraces(mut self, enable: bool) -> Self {
        self.panic_backtraces = Some(enable);
        self
    }

    /// How long a drain waits for sessions to end by themselves before cancelling them
    /// (default 30 s; zero cancels at once).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a cancelled session may take to return before it is dropped at its next poll
    /// boundary (default 5 s; zero drops it at once).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Serves the introspection socket at this path instead of the per-user default
    /// (`$XDG_RUNTIME_DIR/openrtc/<worker>-<pid>.sock`, else `/tmp/openrtc-<uid>/…`).
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket_path = Some(path.into());
        self
    }

    /// Writes the worker's log to `path` as JSON lines (default: the file named by
    /// `OPENRTC_LOG_FILE`, else none), every record of a session labelled with its
    /// `session_id`, `tenant` and `agent`: `openrtc logs --session ID` reads it. The file is
    /// appended to, and reopened when a log rotator moves it away or on SIGHUP; writing never
    /// makes a worker thread wait (records the writer cannot keep up with are dropped,
    /// counted in the snapshot, and the count is written to the file). Needs the
    /// [`crate::telemetry`] layer in the process's subscriber ([`crate::telemetry::init`]).
    ///
    /// `build` opens it: a path that cannot be opened for appending is
    /// [`ConfigError::LogFile`].
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Caps every session's live heap at `bytes` (default: no cap). A session whose live bytes
    /// cross it is dropped at its next poll boundary with the outcome `killed
    /// (memory_limit …)`; its siblings are untouched. Needs the tracking allocator
    /// ([`crate::alloc::TrackingAllocator`]) and introspection; without them it is inert.
    pub fn session_memory_limit(mut self, bytes: u64) -> Self {
        self.session_memory_limit = Some(bytes);
        self
    }

    /// Caps the sessions of one agent at `bytes`, overriding
    /// [`AgentPoolBuilder::session_memory_limit`] for it.
    pub fn agent_memory_limit(mut self, agent: impl Into<String>, bytes: u64) -> Self {
        self.agent_memory_limits.push((agent.into(), bytes));
        self
    }

    /// Logs a warning when the worker's RSS crosses `megabytes` (once per crossing; re-armed
    /// when it falls back below). Checked every second. Default: off.
    pub fn memory_warn_mb(mut self, megabytes: u64) -> Self {
        self.memory_warn_mb = Some(megabytes);
        self
    }

    /// When the worker's RSS crosses `megabytes`, it stops accepting sessions, lets live ones
    /// finish up to the drain timeout, and `run` returns [`crate::RunError::MemoryLimit`]
    /// (exit with [`crate::RunError::exit_code`] so a supervisor restarts the worker).
    /// Checked every second. Default: off.
    pub fn memory_limit_mb(mut self, megabytes: u64) -> Self {
        self.memory_limit_mb = Some(megabytes);
        self
    }

    /// Reads per-tenant limits from a TOML file (default: none; every tenant then has the
    /// default circuit breaker and no cap): `max_sessions`, `breaker` (or `breaker = false`),
    /// `memory_limit_mb` per session, `max_heap_mb` per tenant and `isolation`, under
    /// `[defaults]` and `[tenants.<name>]`, and agent caps under `[max_sessions_per_agent]`.
    ///
    /// The file is read by `build` (a bad file is [`ConfigError::TenantConfig`], with its
    /// line and column), then again while the pool runs whenever it changes (a file watcher)
    /// or the process gets SIGHUP. A bad edit keeps the limits in force and is logged once
    /// (`[tenant-config] …`), with its line and column, and shown in the snapshot. A lowered
    /// cap never stops a live session: it refuses new ones until the count is under it.
    pub fn tenant_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.tenant_config = Some(path.into());
        self
    }

    /// Moves a tenant to process isolation when its sessions keep hurting their neighbours
    /// (default off): `budget.offences` offences within `budget.window` (a stall over the
    /// threshold that was its own, not the host's; a kill for its memory cap; a panic; its
    /// isolated process's crash) run its new sessions each in a process of its own, until
    /// `budget.cooldown` passes without one; then it returns to coroutines. Each move is
    /// logged (`[isolation] tenant 'acme' moved to process isolation after 3 stalls in 30s`),
    /// is an event (`tenant_isolation`) and shows in snapshots. [`crate::AutoIsolation`]'s
    /// default: 3 offences in 30 s, 5 minutes of cooldown. Running sessions are never moved.
    /// Isolated sessions are the worker's own binary started again, so its `main` must build
    /// the same pool whatever else it does (see [`crate::Isolation::Process`]).
    pub fn auto_isolation(mut self, budget: Option<crate::AutoIsolation>) -> Self {
        self.auto_isolation = budget;
        self
    }

    /// The circuit breaker every tenant gets when the pool has no tenant config file
    /// (default: [`BreakerConfig::default`]: 3 failures of 5 sessions within a minute refuse
    /// the tenant's new sessions for 30 s); `None` gives tenants no breaker. With a tenant
    /// config, its `breaker` keys decide instead.
    pub fn tenant_breaker(mut self, breaker: Option<BreakerConfig>) -> Self {
        self.tenant_breaker = breaker;
        self
    }

    /// Routes jobs that name no agent (default: none). It runs after a job's explicit agent
    /// and before the job's metadata (`agent`, then the longest registered `<agent>-` prefix
    /// of `room`) and the default agent (the first registered): `Some(name)` sends the job
    /// to that agent (an unregistered name is refused as [`crate::Rejected::UnknownAgent`]),
    /// `None` leaves it to the rest of the order. A router that panics refuses that job as
    /// [`crate::Rejected::Filtered`]; the worker goes on.
    pub fn router(
        mut self,
        router: impl Fn(&JobRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.router = Some(Box::new(router));
        self
    }

    /// The last check of admission (default: none): `Err(reason)` refuses the job with
    /// [`crate::Rejected::Filtered`] carrying the reason. It sees the request as the job
    /// sent it, after every cap has let it through, and runs on the launching thread: keep
    /// it quick. A filter that panics refuses that job; the worker goes on.
    pub fn request_filter(
        mut self,
        filter: impl Fn(&JobRequest) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.filter = Some(Box::new(filter));
        self
    }

    /// Loads state once per worker, before any session starts, for every session to share
    /// (default: none). Sessions read it with [`crate::Session::shared`]`::<T>()`, all the
    /// same `Arc<T>`. One value per pool: calling this again replaces the earlier prewarm.
    ///
    /// `run` calls `prewarm` and runs its future as a task on the pool's runtime, after the
    /// runtime, socket and watchdog are up and before any session starts: sessions launched
    /// before (or while it loads) stay queued until it has loaded. It logs `[prewarm] loaded
    /// in <ms> ms; <MiB> shared`. If it returns an error or panics, `run` logs `[prewarm]
    /// failed: <error>` and returns [`crate::RunError::Prewarm`] at once; the queued
    /// sessions end as `cancelled (shutdown)`. SIGINT or SIGTERM (when `run` owns them), a
    /// drain or a shutdown while it loads aborts it the same way, and `run` returns `Ok`.
    ///
    /// With the tracking allocator, the prewarm's polls are charged to an account of their
    /// own: what they allocated and still hold is the snapshot's `shared_bytes`, also counted
    /// in `runtime_bytes`. Work handed to other tasks or threads (`tokio::spawn`,
    /// `spawn_blocking`) is in `runtime_bytes` only: load inside the future itself to have it
    /// measured (blocking there is fine: no session runs yet).
    pub fn prewarm<F, Fut, T, E>(mut self, prewarm: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: Into<AgentError>,
    {
        self.prewarm = Some(Prewarm::new(prewarm));
        self
    }

    /// Drains the worker when `count` sessions in a row fail (default: off), so that its
    /// supervisor restarts it: [`crate::AgentPool::run`] then returns
    /// [`crate::RunError::ConsecutiveFailures`] (exit code 70). A failure is an error, a panic
    /// or a kill for the session's own memory cap; a completed session resets the count;
    /// cancels and kills by a drain, a shutdown or an operator leave it as it is. Too low a
    /// limit restarts a worker for a few bad calls; too high one keeps a broken worker (a
    /// dead dependency, a corrupted shared state) refusing no call for long.
    pub fn consecutive_failure_limit(mut self, count: u32) -> Self {
        self.consecutive_failure_limit = Some(count);
        self
    }

    /// Writes the lifecycle event stream to the file at `path` (default: off), as JSON lines:
    /// an event for each session started, finished (with its outcome and duration), refused
    /// (with the reason) or stalled, each change of a tenant's circuit breaker, each memory
    /// limit crossed, the drain's start and each tenant config reload; and a snapshot line
    /// every `interval` (more than zero, at most [`Self::MAX_EVENT_STREAM_INTERVAL`]), plus
    /// one as the worker stops.
    ///
    /// Each line is an envelope `{"schema_version":2,"seq":…,"wall_time_unix":…,"kind":
    /// "event"|"snapshot","payload":{…}}` ([`crate::proto::StreamLine`]); an event's payload
    /// names it in its `event` key. `seq` counts every line from 1 without a gap. The file is
    /// appended to (created with mode 0600), so a restarted worker's lines follow the last
    /// run's, `seq` starting again at 1; `run` fails with [`crate::RunError::EventStream`] if
    /// it cannot be opened.
    ///
    /// Emitting an event never blocks a worker thread: events go through a bounded queue to
    /// a thread of their own (`openrtc-events`), and when it is full they are dropped,
    /// counted in the snapshot's `event_stream_dropped_count` and reported in the stream by
    /// a `stream_overflow` event with the number dropped. The same lines are served live
    /// over the introspection socket to clients that send `{"v":1,"op":"subscribe"}`, with
    /// or without a file.
    pub fn event_stream(mut self, path: impl Into<PathBuf>, interval: Duration) -> Self {
        self.event_stream = Some((path.into(), interval));
        self
    }

    /// How many events the stream's queue holds before it drops them (default 4096); for
    /// tests of the overflow.
    #[doc(hidden)]
    pub fn event_stream_queue_capacity(mut self, events: usize) -> Self {
        self.event_queue_capacity = events;
        self
    }

    /// Checks the configuration and builds the pool (nothing runs until [`AgentPool::run`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work.
    pub fn build(self) -> Result<AgentPool, ConfigError> {
        // Started by a worker to run one isolated session: this process runs that session
        // with the agents registered here, and exits.
        if let Some(parent) = crate::isolation::parent_from_env() {
            crate::isolation::run_child(self, parent);
        }
        self.build_pool()
    }

    /// The settings of an isolated session's child pool: one worker thread, the session's
    /// heap cap, and none of the worker's listeners, socket, tenant config, log file, event
    /// stream or worker-wide limits (the worker keeps all of those).
    pub(crate) fn for_isolated_session(mut self, start: &crate::isolation::StartSession) -> Self {
        self.worker_threads = Some(1);
        self.max_concurrent_sessions = 1;
        self.session_memory_limit = start.memory_limit_bytes;
        self.agent_memory_limits.clear();
        self.memory_warn_mb = None;
        self.memory_limit_mb = None;
        self.consecutive_failure_limit = None;
        self.restart_after = None;
        self.tenant_config = None;
        self.tenant_breaker = None;
        self.event_stream = None;
        self.http_addr = None;
        self.media_addr = None;
        self.voice_webhook = None;
        #[cfg(feature = "livekit")]
        {
            self.livekit = None;
        }
        self.socket_path = None;
        self.log_file = None;
        self.auto_isolation = None;
        self.hooks = AdmissionHooks::default();
        self.isolated_session_key = Some(start.key);
        self
    }

    /// Checks the settings and builds the pool (what [`Self::build`] does in a worker).
    pub(crate) fn build_pool(self) -> Result<AgentPool, ConfigError> {
        if !openrtc_proto::is_valid_name(&self.worker_name) {
            return Err(ConfigError::InvalidName {
                what: "worker",
                name: self.worker_name,
            });
        }
        if self.agents.is_empty() {
            return Err(ConfigError::NoAgents);
        }
        if !self.media_path.starts_with('/')
            || self.media_path.contains(['?', '#', ' '])
            || self.media_path.contains("/{")
        {
            return Err(ConfigError::InvalidMediaPath {
                path: self.media_path,
            });
        }
        #[cfg(feature = "livekit")]
        let livekit = match &self.livekit {
            Some(options) => {
                let url = options.validate().map_err(ConfigError::LiveKit)?;
                Some((options.clone(), url))
            }
            None => None,
        };
        if let Some(webhook) = &self.voice_webhook {
            webhook.validate()?;
            if self.media_addr.is_none() {
                return Err(ConfigError::VoiceWebhookWithoutListener);
            }
        }
        let mut seen = HashSet::new();
        for (name, _) in &self.agents {
            if !openrtc_proto::is_valid_name(name) {
                return Err(ConfigError::InvalidName {
                    what: "agent",
                    name: name.clone(),
                });
            }
            if !seen.insert(name.as_str()) {
                return Err(ConfigError::DuplicateAgent { name: name.clone() });
            }
        }
        let worker_threads = match self.worker_threads {
            Some(0) => {
                return Err(ConfigError::Zero {
                    setting: "worker_threads",
                });
            }
            Some(threads) => threads,
            None => std::thread::available_parallelism().map_or(2, usize::from),
        };
        if self.max_concurrent_sessions == 0 {
            return Err(ConfigError::Zero {
                setting: "max_concurrent_sessions",
            });
        }
        if self.slow_session_threshold.is_zero() {
            return Err(ConfigError::Zero {
                setting: "slow_session_threshold",
            });
        }
        for (setting, value) in [
            ("session_memory_limit", self.session_memory_limit),
            ("memory_warn_mb", self.memory_warn_mb),
            ("memory_limit_mb", self.memory_limit_mb),
        ] {
            if value == Some(0) {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.blocked_after.is_zero() {
            return Err(ConfigError::Zero {
                setting: "blocked_after",
            });
        }
        if self.restart_after.is_some_and(|after| after.is_zero()) {
            return Err(ConfigError::Zero {
                setting: "restart_after",
            });
        }
        if self.consecutive_failure_limit == Some(0) {
            return Err(ConfigError::Zero {
                setting: "consecutive_failure_limit",
            });
        }
        if self.event_queue_capacity == 0 {
            return Err(ConfigError::Zero {
                setting: "event_stream_queue_capacity",
            });
        }
        let event_stream = match self.event_stream {
            None => None,
            Some((path, interval)) => {
                // `file_name` reads `/var/log/` as `log`: a trailing slash names a directory.
                let text = path.as_os_str().as_encoded_bytes();
                if text.is_empty() || text.ends_with(b"/") || path.file_name().is_none() {
                    return Err(ConfigError::InvalidEventStreamPath {
                        path,
                        reason: "it names no file",
                    });
                }
                if interval.is_zero() || interval > Self::MAX_EVENT_STREAM_INTERVAL {
                    return Err(ConfigError::EventStreamInterval { interval });
                }
                Some(crate::events::StreamFile { path, interval })
            }
        };
        for (agent, bytes) in &self.agent_memory_limits {
            if *bytes == 0 {
                return Err(ConfigError::Zero {
                    setting: "agent_memory_limit",
                });
            }
            if !seen.contains(agent.as_str()) {
                return Err(ConfigError::UnknownAgent {
                    name: agent.clone(),
                });
            }
        }
        let tenant_config = match &self.tenant_config {
            None => None,
            Some(path) => {
                let registered: Vec<&str> = self.agents.iter().map(|(name, _)| &**name).collect();
                Some(Arc::new(TenantConfigCell::load(path.clone(), &registered)?))
            }
        };
        let socket_path = match (self.enable_introspection, self.socket_path) {
            (false, _) => None,
            (true, None) if self.isolated_session_key.is_some() => None,
            (true, Some(path)) => {
                if path.file_name().is_none() || path.as_os_str().is_empty() {
                    return Err(ConfigError::InvalidSocketPath {
                        path,
                        reason: "it names no file",
                    });
                }
                Some(path)
            }
            (true, None) => Some(crate::serve::default_socket_path(&self.worker_name)),
        };
        let isolated_session_key = self.isolated_session_key;
        let log_file = self.log_file.or_else(|| {
            if isolated_session_key.is_some() {
                // The worker's log file is the worker's: the child logs to stderr only.
                return None;
            }
            std::env::var_os(crate::telemetry::LOG_FILE_ENV)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
        });
        let log = crate::telemetry::PoolLog::new(&self.worker_name, log_file.as_deref()).map_err(
            |error| ConfigError::LogFile {
                path: log_file.clone().unwrap_or_default(),
                reason: error.to_string(),
            },
        )?;
        let session_memory_limit = self.session_memory_limit;
        let agent_memory_limits = self.agent_memory_limits;
        let agents = self
            .agents
            .into_iter()
            .map(|(name, agent)| RegisteredAgent {
                memory_limit_bytes: agent_memory_limits
                    .iter()
                    .rev()
                    .find(|(agent_name, _)| *agent_name == name)
                    .map(|(_, bytes)| *bytes)
                    .or(session_memory_limit),
                name: name.into(),
                agent,
            })
            .collect();
        let config = PoolConfig {
            worker_name: self.worker_name,
            worker_threads,
            max_concurrent_sessions: self.max_concurrent_sessions,
            slow_session_threshold: self.slow_session_threshold,
            slow_call_threshold: self.slow_call_threshold,
            slow_status_hold: self.slow_status_hold,
            enable_introspection: self.enable_introspection,
            stack_capture: self.stack_capture,
            panic_backtraces: self.panic_backtraces.unwrap_or_else(|| {
                crate::panics::backtraces_asked_for(std::env::var_os("RUST_BACKTRACE").as_deref())
            }),
            drain_timeout: self.drain_timeout,
            cancel_grace: self.cancel_grace,
            socket_path,
            session_memory_limit_bytes: session_memory_limit,
            memory_warn_bytes: self.memory_warn_mb.map(crate::units::mib_to_bytes),
            memory_limit_bytes: self.memory_limit_mb.map(crate::units::mib_to_bytes),
            consecutive_failure_limit: self.consecutive_failure_limit,
            tenant_breaker: self.tenant_breaker,
            event_stream,
            event_queue_capacity: self.event_queue_capacity,
            blocked_after: self.blocked_after,
            restart_after: self.restart_after,
            http_addr: self.http_addr,
            media_addr: self.media_addr,
            media_path: self.media_path,
            voice_webhook: self.voice_webhook,
            auto_isolation: self.auto_isolation,
            #[cfg(feature = "livekit")]
            livekit,
        };
        let mut pool = AgentPool::new(config, agents, self.hooks, tenant_config, log);
        pool.prewarm = self.prewarm;
        if let Some(key) = isolated_session_key {
            pool.first_key(key);
        }
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentError, Session, agent_fn};

    fn idle() -> impl Agent {
        agent_fn(|session: Session| async move {
            session.cancelled().await;
            Ok::<(), AgentError>(())
        })
    }

    #[track_caller]
    fn check_refused(builder: AgentPoolBuilder, expected: &ConfigError, message: &str) {
        let error = builder
            .build()
            .expect_err("the configuration must be refused");
        assert_eq!(&error, expected);
        assert_eq!(error.to_string(), message);
    }

    #[test]
    fn bad_configurations_are_typed_errors_with_clear_messages() {
        check_refused(
            AgentPool::builder(),
            &ConfigError::NoAgents,
            "no agent registered: add one with AgentPoolBuilder::agent",
        );
        check_refused(
            AgentPool::builder()
                .agent("echo", idle())
                .agent("echo", idle()),
            &ConfigError::DuplicateAgent {
                name: "echo".into(),
            },
            "agent \"echo\" is registered twice",
        );
        check_refused(
            AgentPool::builder().agent("bad name", idle()),
            &ConfigError::InvalidName {
                what: "agent",
                name: "bad name".into(),
            },
            "invalid agent name \"bad name\": use 1 to 64 ASCII letters, digits, '-', '_' or '.', not starting with '-' or '.'",
        );
        check_refused(
            AgentPool::builder()
                .agent("echo", idle())
                .worker_name("../etc"),
            &ConfigError::InvalidName {
                what: "worker",
                name: "../etc".into(),
            },
            "invalid worker name \"../etc\": use 1 to 64 ASCII letters, digits, '-', '_' or '.', not starting with '-' or '.'",
        );
        for (builder, setting) in [
            (
                AgentPool::builder().agent("echo", idle()).worker_threads(0),
                "worker_threads",
            ),
            (
                AgentPool::builder()
                    .agent("echo", idle())
                    .max_concurrent_sessions(0),
                "max_concurrent_sessions",
            ),
            (
                AgentPool::builder()
                    .agent("echo", idle())
                    .slow_session_threshold(Duration::ZERO),
                "slow_session_threshold",
            ),
            (
                AgentPool::builder()
                    .agent("echo", idle())
                    .consecutive_failure_limit(0),
                "consecutive_failure_limit",
            ),
            (
                AgentPool::builder()
                    .agent("echo", idle())
                    .blocked_after(Duration::ZERO),
                "blocked_after",
            ),
            (
                AgentPool::builder()
                    .agent("echo", idle())
                    .restart_after(Some(Duration::ZERO)),
                "restart_after",
            ),
        ] {
            check_refused(
                builder,
                &ConfigError::Zero { setting },
                &format!("{setting} must be greater than zero"),
            );
        }
    }

    #[test]
    fn a_bad_event_stream_is_a_typed_error() {
        for interval in [Duration::ZERO, Duration::from_secs(3601)] {
            check_refused(
                AgentPool::builder()
                    .agent("echo", idle())
                    .event_stream("/tmp/events.jsonl", interval),
                &ConfigError::EventStreamInterval { interval },
                &format!(
                    "invalid event stream interval {interval:?}: use more than zero and at most \
                     one hour"
                ),
            );
        }
        for path in ["/tmp/", "", "/", "logs/.."] {
            check_refused(
                AgentPool::builder()
                    .agent("echo", idle())
                    .event_stream(path, Duration::from_secs(1)),
                &ConfigError::InvalidEventStreamPath {
                    path: path.into(),
                    reason: "it names no file",
                },
                &format!("invalid event stream path {path:?}: it names no file"),
            );
        }
        check_refused(
            AgentPool::builder()
                .agent("echo", idle())
                .event_stream_queue_capacity(0),
            &ConfigError::Zero {
                setting: "event_stream_queue_capacity",
            },
            "event_stream_queue_capacity must be greater than zero",
        );
        let hour = AgentPool::builder()
            .agent("echo", idle())
            .event_stream(
                "/tmp/events.jsonl",
                AgentPoolBuilder::MAX_EVENT_STREAM_INTERVAL,
            )
            .build()
            .expect("an hour is allowed");
        assert_eq!(
            hour.handle()
                .runtime_snapshot()
                .worker
                .event_stream
                .as_deref(),
            Some("/tmp/events.jsonl")
        );
    }

    #[test]
    fn a_good_configuration_builds_with_documented_defaults() {
        let pool = AgentPool::builder()
            .agent("echo", idle())
            .worker_name("edge-1")
            .socket_path("/tmp/openrtc-test/edge-1.sock")
            .build()
            .expect("valid configuration");
        assert_eq!(
            pool.socket_path(),
            Some(std::path::Path::new("/tmp/openrtc-test/edge-1.sock"))
        );
        let snapshot = pool.handle().runtime_snapshot();
        assert_eq!(snapshot.worker.name, "edge-1");
        assert_eq!(snapshot.worker.max_sessions, 1000);
        assert_eq!(snapshot.worker.slow_threshold_ms, 50);
        assert_eq!(snapshot.worker.slow_hold_ms, 5000);
        assert_eq!(snapshot.worker.consecutive_failure_limit, None);
        assert_eq!(snapshot.worker.shared_bytes, None);
        assert_eq!(snapshot.worker.event_stream, None, "off by default");
        assert_eq!(snapshot.worker.event_stream_dropped_count, 0);
        let quiet = AgentPool::builder()
            .agent("echo", idle())
            .enable_introspection(false)
            .build()
            .expect("valid configuration");
        assert_eq!(quiet.socket_path(), None);
    }
}
