//! LiveKit in a snapshot: a session's job (its row's `livekit`), and the worker's connection
//! to the server (the header's `livekit`).

use serde::{Deserialize, Serialize};

/// The LiveKit job a session runs, when a LiveKit server dispatched it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LiveKitJobSnapshot {
    /// The job's id (`AJ_…`).
    pub job_id: String,
    /// The dispatch that created it (`AD_…`).
    pub dispatch_id: String,
    /// The room's name.
    pub room: String,
    /// The room's id (`RM_…`).
    pub room_sid: String,
    /// The identity the agent joins the room as.
    pub participant_identity: String,
    /// The agent name it was dispatched to (empty: automatic dispatch).
    pub agent_name: String,
}

/// The worker's registration with a LiveKit server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LiveKitWorkerSnapshot {
    /// The control WebSocket's URL.
    pub url: String,
    /// The agent name it registers (empty: automatic dispatch).
    pub agent_name: String,
    /// Whether it is connected and registered now.
    pub connected: bool,
    /// Its worker id from the last registration (`AW_…`), if it ever registered.
    pub worker_id: Option<String>,
    /// When it last registered, in milliseconds since the Unix epoch (0: never).
    pub registered_at_unix_ms: u64,
    /// Registrations after the first (reconnects that succeeded).
    pub reconnect_count: u64,
    /// Connection attempts that failed in a row (0 while connected).
    pub failed_attempt_count: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// The status it last reported: `available` or `full`.
    pub status: String,
    /// The load it last reported (sessions over capacity).
    pub load: f64,
    /// Offers it accepted.
    pub offers_accepted_count: u64,
    /// Offers it refused (admission's refusals, counted by reason in `refused`, and
    /// duplicates).
    pub offers_refused_count: u64,
    /// Accepted offers whose assignment never came in time (their places were released).
    pub assignment_timeout_count: u64,
    /// Jobs running now.
    pub jobs_running_count: u64,
    /// Terminations the server sent for jobs this worker does not run.
    pub unknown_termination_count: u64,
}
