//! The health report: what `GET /health` answers, a verdict on one snapshot.
//!
//! `status` is the worst severity among `issues`: `ok` with none, `degraded` when something
//! needs a look but the worker still serves, `critical` when it does not (a worker thread
//! blocked, RSS over the memory limit). Each issue names the session or tenant it concerns,
//! if any. Structs are `#[non_exhaustive]` with defaults, as in the snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CallStatsSnapshot, SessionId, SessionState, TaskCountsSnapshot, WorkerThreadSnapshot};

/// The version of the [`HealthReport`] layout; bumped on any incompatible change.
pub const HEALTH_VERSION: u32 = 1;

/// How healthy a worker is; ordered from best to worst.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Nothing to report.
    #[default]
    Ok,
    /// Serving, with something an operator should look at.
    Degraded,
    /// Not serving properly: a load balancer should stop sending work here.
    Critical,
}

impl HealthStatus {
    /// The lowercase name used on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Critical => "critical",
        }
    }
}

/// What a health issue is about.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthIssueCode {
    /// A worker thread has polled one session past `blocked_after` (critical).
    #[default]
    WorkerBlocked,
    /// The worker's RSS is over its memory limit (critical).
    MemoryLimit,
    /// The worker's RSS is over its warning level (degraded).
    MemoryWarn,
    /// A session stalled a worker thread within the last minute (degraded).
    SessionStalls,
    /// Stalls within the last minute of sessions no longer live (degraded).
    RecentStalls,
    /// Stalls the host caused (class `preempted`: the thread was runnable but not run), within
    /// the last minute (degraded): the host's trouble, not a session's.
    HostPreempted,
    /// A tenant's circuit breaker is open (degraded).
    BreakerOpen,
    /// Open file descriptors are over 80 % of the limit (degraded).
    FdsHigh,
    /// Child tasks failed (panicked) over a share of those that ended within the last minute
    /// (degraded).
    ChildTaskFailures,
    /// Tracked calls of one label blocked a worker thread within the last minute (degraded):
    /// a synchronous call made on a worker thread.
    BlockingCalls,
    /// The hypervisor stole CPU time from this host over the last CPU window (degraded): the
    /// host's trouble, not a session's.
    HostSteal,
    /// The worker takes LiveKit jobs but is not registered with the server now (degraded): no
    /// new job comes while it reconnects; running sessions go on.
    LivekitDisconnected,
}

/// One finding of a health evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HealthIssue {
    /// What it is about.
    pub code: HealthIssueCode,
    /// How bad it is (never `ok`).
    pub severity: HealthStatus,
    /// In words, for an operator.
    pub message: String,
    /// The session it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The tenant it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl HealthIssue {
    /// An issue with no session or tenant named.
    #[must_use]
    pub fn new(code: HealthIssueCode, severity: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            code,
            severity,
            message: message.into(),
            session_id: None,
            tenant: None,
        }
    }
}

/// The process's resources at the report's instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HealthResources {
    /// Resident set size.
    pub rss_bytes: u64,
    /// Process CPU over the last window, in % of one core.
    pub cpu_percent: f64,
    /// Open file descriptors.
    pub open_fds: u32,
    /// The soft limit on open file descriptors, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_limit: Option<u64>,
    /// The process's threads.
    pub threads: u32,
}

/// A worker's health: the answer of `GET /health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HealthReport {
    /// The layout version ([`HEALTH_VERSION`]).
    pub schema_version: u32,
    /// The worst severity among `issues`.
    pub status: HealthStatus,
    /// Every finding, worst first.
    pub issues: Vec<HealthIssue>,
    /// Each worker thread: idle, or polling which session for how long.
    pub workers: Vec<WorkerThreadSnapshot>,
    /// Live sessions, by state.
    pub sessions: BTreeMap<SessionState, u64>,
    /// Child tasks (`Session::spawn`) of every session, live and ended.
    pub tasks: TaskCountsSnapshot,
    /// Tracked calls (`Session::track`) of every session, live and ended, by label.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, CallStatsSnapshot>,
    /// The process's resources.
    pub resources: HealthResources,
    /// Seconds since the worker's runtime started.
    pub uptime_s: u64,
    /// The runtime's version (`openrtc` crate version).
    pub version: String,
    /// The worker's name.
    pub worker: String,
    /// When the snapshot it judges was taken.
    pub taken_at_unix_ms: u64,
}
