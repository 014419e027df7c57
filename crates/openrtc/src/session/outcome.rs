//! How a session ends: one typed outcome per way, each with its reason.

use std::fmt;

use crate::AgentError;

/// How a session ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionOutcome {
    /// The agent returned `Ok` without being asked to stop.
    Completed,
    /// The agent returned an error.
    Failed(AgentError),
    /// The agent (its root task) panicked.
    Panicked {
        /// The panic's message (its payload, when that is a string).
        message: String,
        /// Where it panicked, `file:line:column`, when known.
        location: Option<String>,
    },
    /// The session was asked to stop and did (or was dropped after the grace period).
    Cancelled(CancelReason),
    /// The session was stopped at once, without a grace period.
    Killed(KillReason),
}

/// Why a session was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// An operator asked for it (`PoolHandle::cancel`, `k` in `openrtc top`).
    Operator,
    /// The worker was draining and the drain timeout passed.
    DrainTimeout,
    /// The worker was shut down.
    Shutdown,
}

/// Why a session was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KillReason {
    /// An operator asked for it (`PoolHandle::kill`).
    Operator,
    /// Its live heap crossed its memory cap (tracking allocator only).
    MemoryLimit {
        /// Its live bytes when it was seen over the cap.
        live_bytes: u64,
        /// The cap.
        limit_bytes: u64,
    },
}

impl CancelReason {
    /// The stable name of the reason.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::DrainTimeout => "drain_timeout",
            Self::Shutdown => "shutdown",
        }
    }
}

impl KillReason {
    /// The stable name of the reason.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::MemoryLimit { .. } => "memory_limit",
        }
    }
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operator => f.write_str("operator"),
            Self::MemoryLimit {
                live_bytes,
                limit_bytes,
            } => write!(
                f,
                "memory_limit: {} live over its {} cap",
                crate::units::format_mib(*live_bytes),
                crate::units::format_mib(*limit_bytes)
            ),
        }
    }
}

impl fmt::Display for SessionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed => f.write_str("completed"),
            Self::Failed(error) => write!(f, "failed: {error}"),
            Self::Panicked {
                message,
                location: Some(location),
            } => write!(f, "panicked at {location}: {message}"),
            Self::Panicked {
                message,
                location: None,
            } => write!(f, "panicked: {message}"),
            Self::Cancelled(reason) => write!(f, "cancelled ({})", reason.as_str()),
            Self::Killed(reason) => write!(f, "killed ({reason})"),
        }
    }
}

impl SessionOutcome {
    /// The outcome as it travels in snapshots.
    pub(crate) fn to_wire(&self) -> openrtc_proto::SessionOutcome {
        use openrtc_proto::SessionOutcome as Wire;
        match self {
            Self::Completed => Wire::Completed,
            Self::Failed(error) => Wire::Failed {
                error: error.to_string(),
            },
            Self::Panicked { message, location } => Wire::Panicked {
                message: message.clone(),
                location: location.clone(),
            },
            Self::Cancelled(reason) => Wire::Cancelled {
                reason: reason.as_str().to_owned(),
            },
            Self::Killed(reason) => Wire::Killed {
                reason: reason.to_string(),
            },
        }
    }
}

/// A stop that was asked for, remembered so the outcome names it (the first request wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopRequest {
    Cancel(CancelReason),
    Kill(KillReason),
}

impl StopRequest {
    pub(crate) fn outcome(self) -> SessionOutcome {
        match self {
            Self::Cancel(reason) => SessionOutcome::Cancelled(reason),
            Self::Kill(reason) => SessionOutcome::Killed(reason),
        }
    }
}
