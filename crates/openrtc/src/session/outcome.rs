//! How a session ends: one typed outcome per way, each with its reason.

use std::fmt;

pub use openrtc_proto::{CancelReason, KillReason};

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
            Self::Cancelled(reason) => write!(f, "cancelled ({reason})"),
            Self::Killed(reason) => write!(f, "killed ({reason})"),
        }
    }
}

/// What an ended session says about its agent's health, for the tenant circuit breaker and
/// the worker's failure budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The agent did its job.
    Success,
    /// The agent's own failure: an error, a panic, a kill for the session's own memory cap, or
    /// its isolated process's crash or memory limit.
    Failure,
    /// Says nothing of the agent: stopped by a drain, a shutdown or an operator.
    Ignored,
}

impl SessionOutcome {
    /// What this outcome says about the agent. A drain, shutdown or operator stop is not the
    /// agent's failure (the worker draining for its RSS limit cancels sessions: also not
    /// theirs); a session killed for crossing its own memory cap is, and so is an isolated
    /// session whose process crashed (a death by signal: a segfault, an abort, the OOM
    /// killer) or crossed its memory limit.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Self::Completed => Verdict::Success,
            Self::Failed(_) | Self::Panicked { .. } => Verdict::Failure,
            Self::Killed(
                KillReason::MemoryLimit { .. }
                | KillReason::RssLimit { .. }
                | KillReason::Signal { .. },
            ) => Verdict::Failure,
            Self::Cancelled(_) | Self::Killed(_) => Verdict::Ignored,
        }
    }

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
            Self::Cancelled(reason) => Wire::Cancelled { reason: *reason },
            Self::Killed(reason) => Wire::Killed { reason: *reason },
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
