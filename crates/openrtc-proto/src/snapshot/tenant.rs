//! The per-tenant and per-agent parts of a snapshot: sessions, caps, refusals, the tenant's
//! circuit breaker and heap, and the tenant config file in force.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::RefusalReason;

/// One tenant: what it runs, what it may run, what it was refused, and its breaker.
///
/// A snapshot lists every tenant that has had a session or a refusal since the worker
/// started, and every tenant the config file names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TenantSnapshot {
    /// Its sessions live now (places reserved for sessions being launched included).
    pub sessions_count: u32,
    /// Its cap on concurrent sessions, if any (`max_sessions` in the config).
    pub max_sessions: Option<u32>,
    /// Live heap its live sessions hold together (exact with the tracking allocator; 0
    /// without it).
    pub heap_live_bytes: u64,
    /// Its heap budget, if any (`max_heap_mb`): over it, new sessions are refused.
    pub max_heap_bytes: Option<u64>,
    /// Each of its sessions' memory cap, if any (`memory_limit_mb`).
    pub session_memory_limit_bytes: Option<u64>,
    /// Its sessions started since the worker started.
    pub started_count: u64,
    /// Its sessions that ended as the agent's own failure (an error, a panic, or a kill for
    /// the session's own memory cap): what its breaker counts.
    pub failed_count: u64,
    /// Its launches refused, by reason (only reasons with at least one refusal).
    pub refusals: BTreeMap<RefusalReason, u64>,
    /// Inbound audio frames missing from its phone calls' sequences since the worker
    /// started.
    pub call_frames_missing_count: u64,
    /// Inbound events its phone calls' sessions were too slow to take (dropped) since the
    /// worker started.
    pub call_frames_dropped_count: u64,
    /// Its circuit breaker.
    pub breaker: BreakerSnapshot,
    /// The isolation the config asks for (`coroutine` or `process`), if it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// Automatic isolation: whether it has been moved to process isolation for its offences,
    /// and its offences counted towards a move. Absent when the worker does not move tenants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_isolation: Option<AutoIsolationSnapshot>,
}

/// A tenant under automatic isolation: offences within the window move it to process
/// isolation until a cooldown passes without one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AutoIsolationSnapshot {
    /// Whether its new sessions run each in a process of its own now.
    pub isolated: bool,
    /// Since when, while it is isolated (milliseconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolated_since_unix_ms: Option<u64>,
    /// In how long it returns to coroutines if it commits no more offences, while it is
    /// isolated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_in_ms: Option<u64>,
    /// Its offences in the current window (while it is not isolated).
    pub offences_count: u32,
    /// The offences within the window that move it.
    pub offences_limit: u32,
    /// The window, in seconds.
    pub window_s: u64,
    /// How many times it has been moved since the worker started.
    pub moves_count: u64,
}

/// One registered agent: its sessions, its cap and its refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AgentSnapshot {
    /// Its sessions live now (places reserved for sessions being launched included).
    pub sessions_count: u32,
    /// Its cap on concurrent sessions, if any (`max_sessions_per_agent` in the config).
    pub max_sessions: Option<u32>,
    /// Its launches refused, by reason (only reasons with at least one refusal).
    pub refusals: BTreeMap<RefusalReason, u64>,
}

/// Where a tenant's circuit breaker is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Sessions are admitted; outcomes are counted.
    #[default]
    Closed,
    /// New sessions are refused until the cooldown ends.
    Open,
    /// A few probe sessions are admitted; their outcome closes or reopens the breaker.
    HalfOpen,
    /// The tenant has no breaker (`breaker = false`).
    Disabled,
}

impl BreakerState {
    /// The lowercase name used on the wire and in tables.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
        }
    }
}

/// A tenant's circuit breaker at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// Its state.
    pub state: BreakerState,
    /// Outcomes counted in the sliding window (successes and failures).
    pub window_samples_count: u32,
    /// Of those, failures.
    pub window_failures_count: u32,
    /// The sliding window's length.
    pub window_ms: u64,
    /// While open: how long until it lets probes through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The cooldown it opens (or last opened) for; doubles on each failed probe, up to a cap.
    pub cooldown_ms: u64,
    /// While half-open: probe sessions admitted and not yet ended.
    pub probes_in_flight_count: u32,
    /// How many times it opened since the worker started.
    pub opened_count: u64,
}

/// The tenant config file in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TenantConfigSnapshot {
    /// The file's path, as given to the pool.
    pub path: String,
    /// The version in force: a hash of the loaded file's bytes (16 hex digits).
    pub version: String,
    /// When the version in force was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_unix_ms: u64,
    /// Successful loads since the worker started (the first one included).
    pub reloads_count: u64,
    /// The last reload's error, if the last attempt failed (the old config stays in force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last failed attempt was, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at_unix_ms: Option<u64>,
}
