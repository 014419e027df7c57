//! The lifecycle event stream's lines: one JSON object per line, written by a worker to its
//! event stream file and to socket subscribers (`{"v":1,"op":"subscribe"}`).
//!
//! Every line is an envelope: `schema_version`, `kind` (`snapshot` or `event`), `seq`,
//! `wall_time_unix` and `payload`. These are the envelope fields of the Python reference's
//! metrics stream, with the same types and the same schema version, so a reader written for
//! its stream reads ours. The payloads are this project's own: a [`PoolSnapshot`], or a
//! [`StreamEvent`] whose `event` key names it.
//!
//! `seq` is one counter for snapshot and event lines alike, starting at 1 and going up by
//! one per line written, so a file has no gap. Events the worker could not keep up with are
//! dropped before they get a number, and a `stream_overflow` event with
//! [`OverflowScope::Stream`] says how many. A socket subscriber too slow for its own stream
//! misses lines that have numbers: the gap before its next line is closed by a
//! `stream_overflow` with [`OverflowScope::Subscriber`], whose `seq` is the last one it
//! missed and whose `dropped_count` is how many it missed.

use serde::{Deserialize, Serialize};

use crate::{BreakerState, PoolSnapshot, RefusalReason, SessionId, SessionOutcome, StallClass};

/// The `schema_version` of every line: the value the reference writes and its reader
/// accepts.
pub const EVENT_STREAM_SCHEMA_VERSION: u32 = 2;

/// One line of the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamLine {
    /// The envelope's version ([`EVENT_STREAM_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The line's number: one counter for snapshots and events, from 1, one more per line.
    pub seq: u64,
    /// When it happened (an event) or was taken (a snapshot): seconds since the Unix epoch,
    /// with a fraction.
    pub wall_time_unix: f64,
    /// `kind` and `payload`.
    #[serde(flatten)]
    pub record: StreamRecord,
}

impl StreamLine {
    /// The line numbered `seq`, at `wall_time_unix`, with the current schema version.
    #[must_use]
    pub fn new(seq: u64, wall_time_unix: f64, record: StreamRecord) -> Self {
        Self {
            schema_version: EVENT_STREAM_SCHEMA_VERSION,
            seq,
            wall_time_unix,
            record,
        }
    }
}

/// What a line carries: its `kind` and its `payload`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamRecord {
    /// The whole pool snapshot, written every interval of the stream (and once more as the
    /// worker stops).
    Snapshot(Box<PoolSnapshot>),
    /// One lifecycle event.
    Event(StreamEvent),
}

/// One lifecycle event, named by its `event` key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// A session was admitted (it starts at once, or with the runtime if it is not running
    /// yet).
    SessionStarted {
        /// The session.
        session_id: SessionId,
        /// Its tenant.
        tenant: String,
        /// The agent it was routed to.
        agent: String,
    },
    /// A session ended.
    SessionFinished {
        /// The session.
        session_id: SessionId,
        /// Its tenant.
        tenant: String,
        /// Its agent.
        agent: String,
        /// How it ended (`{"kind":"failed","error":"…"}`, …).
        outcome: SessionOutcome,
        /// From its start to its end.
        duration_ms: u64,
        /// Wall time inside its polls (0 with introspection off).
        busy_ns: u64,
        /// Its stalls.
        stall_count: u64,
    },
    /// A launch was refused.
    SessionRefused {
        /// The job's tenant.
        tenant: String,
        /// The agent it was routed to, when routing got that far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Why, as counted in snapshots.
        reason: RefusalReason,
        /// The refusal as the launch returned it, in words.
        message: String,
    },
    /// A session blocked its worker thread for at least the slow threshold (written once the
    /// stall is over and explained).
    SessionStalled {
        /// The session.
        session_id: SessionId,
        /// Its tenant.
        tenant: String,
        /// Its agent.
        agent: String,
        /// The worker thread it blocked.
        worker: u32,
        /// How long it blocked it.
        duration_ms: u64,
        /// What the thread was doing, when the watchdog saw the stall in progress.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<StallClass>,
        /// The diagnosis in words, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
        /// How many other sessions it delayed.
        victim_count: u64,
    },
    /// A tenant's circuit breaker changed state.
    BreakerState {
        /// The tenant.
        tenant: String,
        /// Its new state.
        state: BreakerState,
        /// On opening: the failures in the window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failures_count: Option<u32>,
        /// On opening: the outcomes in the window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        samples_count: Option<u32>,
        /// On opening: the window's length.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_ms: Option<u64>,
        /// On opening or reopening: how long it refuses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cooldown_ms: Option<u64>,
        /// On turning half-open: the probe sessions that must succeed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probes_count: Option<u32>,
    },
    /// A memory limit was crossed: a session's cap (it is killed) or the worker's RSS limit
    /// (it drains and exits).
    MemoryLimit {
        /// Whose limit.
        scope: MemoryLimitScope,
        /// The session killed (scope `session`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        /// Its tenant (scope `session`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// Its agent (scope `session`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// What was held: the session's live heap, or the worker's RSS.
        used_bytes: u64,
        /// The limit crossed.
        limit_bytes: u64,
    },
    /// The worker began to drain: it accepts no new session.
    DrainStarted {
        /// What began it: `SIGTERM`, `SIGINT`, `run_until`, `begin_drain`, `shutdown`,
        /// `memory_limit` or `failure_budget`.
        why: String,
        /// Sessions live when it began.
        live_sessions_count: u64,
        /// How long it waits for them before cancelling them (0: a shutdown, at once).
        deadline_ms: u64,
    },
    /// A new version of the tenant config file is in force.
    ConfigReloaded {
        /// The file.
        path: String,
        /// The version now in force.
        version: String,
    },
    /// A tenant was moved to process isolation for its offences, or back to coroutines
    /// after its cooldown.
    TenantIsolation {
        /// The tenant.
        tenant: String,
        /// `process` (moved) or `coroutine` (back).
        isolation: String,
        /// Why, in words: `3 stalls in 30s`, or `no offence for 300s`.
        why: String,
    },
    /// Events were dropped: see [`OverflowScope`].
    StreamOverflow {
        /// Who dropped them.
        scope: OverflowScope,
        /// How many.
        dropped_count: u64,
    },
    /// An event this version does not know (from a newer worker).
    #[serde(other)]
    Unknown,
}

impl StreamEvent {
    /// The event's name, its `event` key: `session_started`, `stream_overflow`, …
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::SessionStarted { .. } => "session_started",
            Self::SessionFinished { .. } => "session_finished",
            Self::SessionRefused { .. } => "session_refused",
            Self::SessionStalled { .. } => "session_stalled",
            Self::BreakerState { .. } => "breaker_state",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::DrainStarted { .. } => "drain_started",
            Self::ConfigReloaded { .. } => "config_reloaded",
            Self::TenantIsolation { .. } => "tenant_isolation",
            Self::StreamOverflow { .. } => "stream_overflow",
            Self::Unknown => "unknown",
        }
    }
}

/// Whose memory limit a [`StreamEvent::MemoryLimit`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryLimitScope {
    /// One session's live-heap cap: it is killed.
    Session,
    /// The worker's RSS limit: it drains and exits.
    Worker,
}

/// Who dropped the events a [`StreamEvent::StreamOverflow`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverflowScope {
    /// The worker's bounded queue was full: the events never got a number and no reader
    /// sees them. `seq` has no gap for them.
    Stream,
    /// This socket subscriber did not read fast enough: it missed the `dropped_count` lines
    /// numbered just before this line's `seq` (this one included).
    Subscriber,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_has_the_reference_envelope_and_an_event_key() {
        let line = StreamLine::new(
            7,
            1_700_000_000.25,
            StreamRecord::Event(StreamEvent::SessionRefused {
                tenant: "acme".into(),
                agent: None,
                reason: RefusalReason::WorkerFull,
                message: "worker is full: 3 concurrent sessions".into(),
            }),
        );
        let json = serde_json::to_string(&line).expect("serializes");
        assert_eq!(
            json,
            r#"{"schema_version":2,"seq":7,"wall_time_unix":1700000000.25,"kind":"event","payload":{"event":"session_refused","tenant":"acme","reason":"worker_full","message":"worker is full: 3 concurrent sessions"}}"#
        );
        let back: StreamLine = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, line);
    }

    #[test]
    fn a_whole_second_is_still_a_float_and_snapshots_round_trip() {
        let line = StreamLine::new(1, 1_700_000_000.0, StreamRecord::Snapshot(Box::default()));
        let json = serde_json::to_string(&line).expect("serializes");
        assert!(json.contains(r#""wall_time_unix":1700000000.0,"#), "{json}");
        assert!(json.contains(r#""kind":"snapshot","payload":{"#), "{json}");
        let back: StreamLine = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, line);
    }

    #[test]
    fn an_unknown_event_reads_as_unknown() {
        let json = r#"{"schema_version":2,"seq":3,"wall_time_unix":1.5,"kind":"event","payload":{"event":"from_the_future","x":1}}"#;
        let line: StreamLine = serde_json::from_str(json).expect("parses");
        assert_eq!(line.record, StreamRecord::Event(StreamEvent::Unknown));
    }
}
