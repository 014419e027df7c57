//! The runtime's error types: configuration, refusals, agent errors, and running the pool.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use openrtc_proto::RefusalReason;

/// A builder setting that cannot work; returned by [`crate::AgentPoolBuilder::build`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The LiveKit options cannot be used.
    #[cfg(feature = "livekit")]
    #[error(transparent)]
    LiveKit(crate::source::livekit::LiveKitConfigError),
    /// No agent was registered.
    #[error("no agent registered: add one with AgentPoolBuilder::agent")]
    NoAgents,
    /// The media WebSocket's path cannot be served as given.
    #[error(
        "invalid media path {path:?}: it must start with '/' and have no query, fragment, space or '{{' segment"
    )]
    InvalidMediaPath {
        /// The path as given.
        path: String,
    },
    /// The voice webhook's configuration cannot work.
    #[error(transparent)]
    VoiceWebhook(#[from] crate::media::VoiceWebhookError),
    /// A voice webhook was set without a media listener to serve it and its calls.
    #[error("a voice webhook needs a media listener: set AgentPoolBuilder::media_listener")]
    VoiceWebhookWithoutListener,
    /// An agent or worker name has characters or a length that is not allowed.
    #[error(
        "invalid {what} name {name:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.', not starting with '-' or '.'"
    )]
    InvalidName {
        /// What the name is for (`agent` or `worker`).
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// Two agents were registered under one name.
    #[error("agent {name:?} is registered twice")]
    DuplicateAgent {
        /// The repeated name.
        name: String,
    },
    /// A per-agent setting names an agent that is not registered.
    #[error("a setting names agent {name:?}, which is not registered")]
    UnknownAgent {
        /// The name as given.
        name: String,
    },
    /// A setting that must be positive was zero.
    #[error("{setting} must be greater than zero")]
    Zero {
        /// The builder setting.
        setting: &'static str,
    },
    /// The tenant config file cannot be read or is not valid (its line and column are in
    /// the error).
    #[error("invalid tenant config: {0}")]
    TenantConfig(#[from] crate::TenantConfigError),
    /// A socket path that cannot be used.
    #[error("invalid socket path {path:?}: {reason}")]
    InvalidSocketPath {
        /// The path as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The log file (`log_file` or `OPENRTC_LOG_FILE`) cannot be opened for appending.
    #[error("cannot open the log file {path:?}: {reason}")]
    LogFile {
        /// The path as given.
        path: std::path::PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// An event stream path that cannot be used.
    #[error("invalid event stream path {path:?}: {reason}")]
    InvalidEventStreamPath {
        /// The path as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The event stream's snapshot interval is zero or longer than an hour.
    #[error("invalid event stream interval {interval:?}: use more than zero and at most one hour")]
    EventStreamInterval {
        /// The interval as given.
        interval: std::time::Duration,
    },
}

/// Why [`crate::PoolHandle::launch`] refused a job. Each refusal is counted by reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The worker is draining or shutting down and accepts no new session.
    #[error("worker is draining: it accepts no new session")]
    Draining,
    /// The worker already runs its maximum number of concurrent sessions.
    #[error("worker is full: {max} concurrent sessions")]
    WorkerFull {
        /// The configured cap.
        max: u32,
    },
    /// The job names an agent that is not registered (it is never rerouted to another).
    #[error("unknown agent {name:?}")]
    UnknownAgent {
        /// The name the job asked for.
        name: String,
    },
    /// The pool has stopped: its runtime is gone.
    #[error("worker has stopped")]
    Stopped,
    /// The tenant's circuit breaker is open: its sessions failed too often lately.
    #[error(
        "tenant {tenant:?} is refused by its circuit breaker: retry in {} s",
        retry_after.as_secs_f64().ceil()
    )]
    BreakerOpen {
        /// The tenant.
        tenant: String,
        /// How long until the breaker lets probe sessions through (zero while half-open
        /// with every probe taken: retry when one ends).
        retry_after: std::time::Duration,
    },
    /// The tenant already runs its cap of concurrent sessions.
    #[error("tenant {tenant:?} is at its cap of {cap} concurrent sessions")]
    TenantCap {
        /// The tenant.
        tenant: String,
        /// Its cap (`max_sessions` in the tenant config).
        cap: u32,
    },
    /// The routed agent already runs its cap of concurrent sessions.
    #[error("agent {agent:?} is at its cap of {cap} concurrent sessions")]
    AgentCap {
        /// The agent.
        agent: String,
        /// Its cap (`max_sessions_per_agent` in the tenant config).
        cap: u32,
    },
    /// The application's request filter refused the job, for the reason it gave.
    #[error("refused by the request filter: {reason}")]
    Filtered {
        /// What the filter said.
        reason: String,
    },
    /// The tenant's live sessions together hold more heap than its budget.
    #[error(
        "tenant {tenant:?} holds {live_bytes} bytes of live heap, over its budget of {budget_bytes} bytes"
    )]
    TenantHeap {
        /// The tenant.
        tenant: String,
        /// The live heap its sessions hold.
        live_bytes: u64,
        /// Its budget (`max_heap_mb` in the tenant config).
        budget_bytes: u64,
    },
}

impl Rejected {
    /// The reason, as counted in snapshots' `refusals`.
    #[must_use]
    pub fn reason(&self) -> RefusalReason {
        match self {
            Self::Draining => RefusalReason::Draining,
            Self::WorkerFull { .. } => RefusalReason::WorkerFull,
            Self::UnknownAgent { .. } => RefusalReason::UnknownAgent,
            Self::Stopped => RefusalReason::Stopped,
            Self::BreakerOpen { .. } => RefusalReason::BreakerOpen,
            Self::TenantCap { .. } => RefusalReason::TenantCap,
            Self::AgentCap { .. } => RefusalReason::AgentCap,
            Self::Filtered { .. } => RefusalReason::Filtered,
            Self::TenantHeap { .. } => RefusalReason::TenantHeap,
        }
    }
}

/// A counter per refusal reason, indexed by the reason.
#[derive(Debug, Default)]
pub(crate) struct RefusalCounters([AtomicU64; RefusalReason::ALL.len()]);

impl RefusalCounters {
    /// Counts one refusal.
    pub(crate) fn count(&self, reason: RefusalReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every reason with its count, zeros included.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL
            .into_iter()
            .map(|reason| (reason, self.0[reason.index()].load(Ordering::Relaxed)))
    }
}

/// Why [`crate::PoolHandle::cancel`] or [`crate::PoolHandle::kill`] stopped nothing.
///
/// The library looks sessions up by their whole [`crate::SessionId`]; the socket's cancel also takes
/// a unique prefix of one, and answers a prefix that matches several with its own
/// `ambiguous` error code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// No live session has this id: it never existed in this worker, or it has ended.
    #[error("no live session {id}")]
    NotFound {
        /// The id asked for.
        id: crate::SessionId,
    },
}

/// The error an agent returns from a session; any error type converts into it with `?`.
pub struct AgentError {
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl AgentError {
    /// An error made of a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            source: message.to_string().into(),
        }
    }

    /// The underlying error.
    #[must_use]
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, owned.
    pub(crate) fn into_boxed(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.source
    }
}

impl<E> From<E> for AgentError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        Self {
            source: error.into(),
        }
    }
}

impl fmt::Debug for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut source = self.source.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Why [`crate::AgentPool::run`] could not run the pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The Tokio runtime could not be built.
    #[error("cannot build the tokio runtime")]
    Runtime(#[source] std::io::Error),
    /// The introspection socket could not be set up.
    #[error("cannot serve the introspection socket at {path:?}")]
    Socket {
        /// The socket path.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The media listener ([`crate::AgentPoolBuilder::media_listener`]) cannot listen at its
    /// address.
    #[error("cannot take calls at {addr}")]
    Media {
        /// The address as given.
        addr: std::net::SocketAddr,
        /// What failed (often: the address is in use).
        #[source]
        source: std::io::Error,
    },
    /// The HTTP health endpoints ([`crate::AgentPoolBuilder::http_addr`]) cannot be served
    /// at their address.
    #[error("cannot serve the health endpoints at {addr}")]
    Http {
        /// The address as given.
        addr: std::net::SocketAddr,
        /// What failed (often: the address is in use).
        #[source]
        source: std::io::Error,
    },
    /// The event stream file ([`crate::AgentPoolBuilder::event_stream`]) cannot be opened
    /// for appending.
    #[error("cannot open the event stream file {path:?} for appending")]
    EventStream {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A helper thread (watchdog, socket server) could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `run` was called on a pool whose runtime already ran.
    #[error("the pool has already run")]
    AlreadyRan,
    /// The worker's RSS crossed its memory limit: it drained and stopped.
    #[error("worker RSS {rss_bytes} bytes crossed its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The RSS when the limit was crossed.
        rss_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The pool's prewarm ([`crate::AgentPoolBuilder::prewarm`]) returned an error or
    /// panicked: the worker stopped before starting any session (those queued ended as
    /// `cancelled (shutdown)`). Exit code 1.
    #[error("prewarm failed: {source}")]
    Prewarm {
        /// What the prewarm returned (a panic's message, as `panicked: <message>`).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// As many sessions in a row as the consecutive failure limit
    /// ([`crate::AgentPoolBuilder::consecutive_failure_limit`]) failed: the worker drained
    /// and stopped, so that its supervisor restarts it. Exit code 70 (`EX_SOFTWARE`).
    #[error("{count} sessions in a row failed: the worker drained so its supervisor restarts it")]
    ConsecutiveFailures {
        /// The failures in a row when the limit was reached (the limit).
        count: u32,
    },
    /// A worker thread stayed inside one session's poll past
    /// [`crate::AgentPoolBuilder::restart_after`]: the worker logged the session and its
    /// stack, drained and stopped, so that its supervisor restarts it (a thread stuck in a
    /// poll cannot be taken back from inside the process). Exit code 69 (`EX_UNAVAILABLE`).
    #[error(
        "worker thread {worker} was blocked for {blocked_ms} ms inside session {session_id}: the worker drained so its supervisor restarts it"
    )]
    BlockedWorker {
        /// The worker thread's 0-based index.
        worker: u32,
        /// The session whose poll blocked it.
        session_id: crate::SessionId,
        /// How long the poll had held the thread when the worker gave up.
        blocked_ms: u64,
    },
}

impl RunError {
    /// The exit code a worker binary should end with, so a supervisor can tell why it stopped
    /// and restart it: 75 (`EX_TEMPFAIL`) after the memory limit, a temporary condition; 70
    /// (`EX_SOFTWARE`) after the consecutive failure limit, the agents' software failing; 69
    /// (`EX_UNAVAILABLE`) after a worker thread was blocked past `restart_after`; 1 otherwise
    /// (setup errors and a failed prewarm).
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::MemoryLimit { .. } => 75,
            Self::ConsecutiveFailures { .. } => 70,
            Self::BlockedWorker { .. } => 69,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_errors_convert_and_show_their_causes() {
        let io = std::io::Error::other("socket closed");
        let error = AgentError::from(io);
        assert_eq!(error.to_string(), "socket closed");
        let from_str: AgentError = "bad frame".into();
        assert_eq!(from_str.to_string(), "bad frame");
        assert_eq!(AgentError::msg(42).to_string(), "42");
    }

    #[test]
    fn refusals_are_counted_by_their_typed_reason() {
        let counters = RefusalCounters::default();
        let full = Rejected::WorkerFull { max: 2 };
        assert_eq!(full.reason(), RefusalReason::WorkerFull);
        counters.count(full.reason());
        counters.count(full.reason());
        counters.count(Rejected::Stopped.reason());
        let counts: Vec<(RefusalReason, u64)> = counters.counts().collect();
        assert_eq!(
            counts,
            [
                (RefusalReason::AgentCap, 0),
                (RefusalReason::BreakerOpen, 0),
                (RefusalReason::Draining, 0),
                (RefusalReason::Filtered, 0),
                (RefusalReason::Stopped, 1),
                (RefusalReason::TenantCap, 0),
                (RefusalReason::TenantHeap, 0),
                (RefusalReason::UnknownAgent, 0),
                (RefusalReason::WorkerFull, 2),
            ]
        );
    }
}
