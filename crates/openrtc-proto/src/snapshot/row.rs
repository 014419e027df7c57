//! The session row as it is written: [`SessionSnapshotRef`], borrowed, which both the owned
//! [`SessionSnapshot`] and a worker's socket serialize through.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{
    CallMediaSnapshot, CallStatsSnapshot, LiveKitJobSnapshot, ProcessSnapshot, SessionSnapshot,
    SessionState, StallSnapshot, TaskCountsSnapshot,
};
use crate::SessionId;

/// One live session's row, borrowing its text, metadata and stalls: the one definition of
/// how a row is written. [`SessionSnapshot`] serializes through it, and a worker writes its
/// rows straight from its own state with it, without copying each into an owned row first.
/// The fields mean what [`SessionSnapshot`]'s fields of the same names mean.
///
/// Unlike the owned types it is exhaustive on purpose: a new field fails to compile wherever
/// a row is built, so no writer of rows can leave it out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SessionSnapshotRef<'a> {
    /// [`SessionSnapshot::id`].
    pub id: SessionId,
    /// [`SessionSnapshot::agent`].
    pub agent: &'a str,
    /// [`SessionSnapshot::tenant`].
    pub tenant: &'a str,
    /// [`SessionSnapshot::metadata`].
    #[serde(skip_serializing_if = "is_null")]
    pub metadata: &'a serde_json::Value,
    /// [`SessionSnapshot::started_at_unix_ms`].
    pub started_at_unix_ms: u64,
    /// [`SessionSnapshot::duration_ms`].
    pub duration_ms: u64,
    /// [`SessionSnapshot::state`].
    pub state: SessionState,
    /// [`SessionSnapshot::cpu_pct`].
    pub cpu_pct: f64,
    /// [`SessionSnapshot::busy_ns`].
    pub busy_ns: u64,
    /// [`SessionSnapshot::poll_count`].
    pub poll_count: u64,
    /// [`SessionSnapshot::stall_count`].
    pub stall_count: u64,
    /// [`SessionSnapshot::preempted_stall_count`].
    #[serde(skip_serializing_if = "is_zero")]
    pub preempted_stall_count: u64,
    /// [`SessionSnapshot::last_stall`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stall: Option<&'a StallSnapshot>,
    /// [`SessionSnapshot::recent_stalls`].
    #[serde(skip_serializing_if = "is_empty")]
    pub recent_stalls: &'a [StallSnapshot],
    /// [`SessionSnapshot::blocking_for_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking_for_ms: Option<u64>,
    /// [`SessionSnapshot::delayed_by_stalls_ns`].
    pub delayed_by_stalls_ns: u64,
    /// [`SessionSnapshot::delayed_by_stalls_count`].
    pub delayed_by_stalls_count: u64,
    /// [`SessionSnapshot::mem_bytes`].
    pub mem_bytes: u64,
    /// [`SessionSnapshot::mem_peak_bytes`].
    pub mem_peak_bytes: u64,
    /// [`SessionSnapshot::alloc_count`].
    pub alloc_count: u64,
    /// [`SessionSnapshot::children_live_count`].
    pub children_live_count: u64,
    /// [`SessionSnapshot::children_finished_count`].
    pub children_finished_count: u64,
    /// [`SessionSnapshot::tasks`].
    #[serde(skip_serializing_if = "TaskCountsSnapshot::is_empty")]
    pub tasks: TaskCountsSnapshot,
    /// [`SessionSnapshot::calls`].
    #[serde(skip_serializing_if = "is_empty_map")]
    pub calls: &'a BTreeMap<String, CallStatsSnapshot>,
    /// [`SessionSnapshot::media`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<&'a CallMediaSnapshot>,
    /// [`SessionSnapshot::process`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<&'a ProcessSnapshot>,
    /// [`SessionSnapshot::livekit`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub livekit: Option<&'a LiveKitJobSnapshot>,
}

impl SessionSnapshotRef<'_> {
    /// The row as owned data (its text, metadata and stalls copied).
    #[must_use]
    pub fn to_snapshot(&self) -> SessionSnapshot {
        let Self {
            id,
            agent,
            tenant,
            metadata,
            started_at_unix_ms,
            duration_ms,
            state,
            cpu_pct,
            busy_ns,
            poll_count,
            stall_count,
            preempted_stall_count,
            last_stall,
            recent_stalls,
            blocking_for_ms,
            delayed_by_stalls_ns,
            delayed_by_stalls_count,
            mem_bytes,
            mem_peak_bytes,
            alloc_count,
            children_live_count,
            children_finished_count,
            tasks,
            calls,
            media,
            process,
            livekit,
        } = *self;
        SessionSnapshot {
            id,
            agent: agent.to_owned(),
            tenant: tenant.to_owned(),
            metadata: metadata.clone(),
            started_at_unix_ms,
            duration_ms,
            state,
            cpu_pct,
            busy_ns,
            poll_count,
            stall_count,
            preempted_stall_count,
            last_stall: last_stall.cloned(),
            recent_stalls: recent_stalls.to_vec(),
            blocking_for_ms,
            delayed_by_stalls_ns,
            delayed_by_stalls_count,
            mem_bytes,
            mem_peak_bytes,
            alloc_count,
            children_live_count,
            children_finished_count,
            tasks,
            calls: calls.clone(),
            media: media.cloned(),
            process: process.cloned(),
            livekit: livekit.cloned(),
        }
    }
}

impl SessionSnapshot {
    /// The row borrowed, as it is written.
    #[must_use]
    pub fn as_row_ref(&self) -> SessionSnapshotRef<'_> {
        let Self {
            id,
            agent,
            tenant,
            metadata,
            started_at_unix_ms,
            duration_ms,
            state,
            cpu_pct,
            busy_ns,
            poll_count,
            stall_count,
            preempted_stall_count,
            last_stall,
            recent_stalls,
            blocking_for_ms,
            delayed_by_stalls_ns,
            delayed_by_stalls_count,
            mem_bytes,
            mem_peak_bytes,
            alloc_count,
            children_live_count,
            children_finished_count,
            tasks,
            calls,
            media,
            process,
            livekit,
        } = self;
        SessionSnapshotRef {
            id: *id,
            agent,
            tenant,
            metadata,
            started_at_unix_ms: *started_at_unix_ms,
            duration_ms: *duration_ms,
            state: *state,
            cpu_pct: *cpu_pct,
            busy_ns: *busy_ns,
            poll_count: *poll_count,
            stall_count: *stall_count,
            preempted_stall_count: *preempted_stall_count,
            last_stall: last_stall.as_ref(),
            recent_stalls,
            blocking_for_ms: *blocking_for_ms,
            delayed_by_stalls_ns: *delayed_by_stalls_ns,
            delayed_by_stalls_count: *delayed_by_stalls_count,
            mem_bytes: *mem_bytes,
            mem_peak_bytes: *mem_peak_bytes,
            alloc_count: *alloc_count,
            children_live_count: *children_live_count,
            children_finished_count: *children_finished_count,
            tasks: *tasks,
            calls,
            media: media.as_ref(),
            process: process.as_ref(),
            livekit: livekit.as_ref(),
        }
    }
}

impl Serialize for SessionSnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_row_ref().serialize(serializer)
    }
}

/// Whether the metadata is absent (left out of rows to keep snapshots small).
fn is_null(value: &&serde_json::Value) -> bool {
    value.is_null()
}

/// Whether a counter is zero (left out of rows to keep snapshots small).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// Whether a session has no tracked calls (left out of rows to keep snapshots small).
fn is_empty_map(calls: &&BTreeMap<String, CallStatsSnapshot>) -> bool {
    calls.is_empty()
}

/// Whether a list of stalls is empty (left out of rows to keep snapshots small).
fn is_empty(stalls: &&[StallSnapshot]) -> bool {
    stalls.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StallClass, VictimSnapshot};

    /// A row with every field set to a value no other field has.
    fn full_row() -> SessionSnapshot {
        let stall = StallSnapshot {
            duration_ns: 41_000_000,
            class: Some(StallClass::Sleep),
            victims: vec![VictimSnapshot {
                session_id: SessionId::from_u64(9).expect("an id"),
                delay_ns: 17,
            }],
            victim_count: 1,
            ..StallSnapshot::default()
        };
        let mut older = stall.clone();
        older.duration_ns = 40_000_000;
        SessionSnapshot {
            id: SessionId::from_u64(1).expect("an id"),
            agent: "echo".into(),
            tenant: "acme".into(),
            metadata: serde_json::json!({"caller": "+1555"}),
            started_at_unix_ms: 2,
            duration_ms: 3,
            state: SessionState::Slow,
            cpu_pct: 4.5,
            busy_ns: 5,
            poll_count: 6,
            stall_count: 7,
            preempted_stall_count: 8,
            last_stall: Some(stall.clone()),
            recent_stalls: vec![older, stall],
            blocking_for_ms: Some(9),
            delayed_by_stalls_ns: 10,
            delayed_by_stalls_count: 11,
            mem_bytes: 12,
            mem_peak_bytes: 13,
            alloc_count: 14,
            children_live_count: 15,
            children_finished_count: 16,
            tasks: TaskCountsSnapshot {
                spawned_count: 17,
                running_count: 18,
                completed_count: 19,
                failed_count: 20,
                panicked_count: 20,
                cancelled_count: 21,
            },
            calls: BTreeMap::from([(
                "db.query".to_owned(),
                CallStatsSnapshot {
                    count: 22,
                    failed_count: 23,
                    slow_count: 24,
                    blocking_count: 25,
                    p50_us: 26,
                    p95_us: 27,
                    p99_us: 28,
                    max_us: 29,
                    duration_sum_us: 30,
                    duration_buckets: Vec::new(),
                },
            )]),
            media: Some(CallMediaSnapshot {
                provider: "twilio".into(),
                stream_id: "MZ1".into(),
                frames_in_count: 31,
                outbound_lateness_p99_ms: 32.5,
                degrading: true,
                ..CallMediaSnapshot::default()
            }),
            livekit: Some(LiveKitJobSnapshot {
                job_id: "AJ_1".into(),
                room: "support-42".into(),
                ..LiveKitJobSnapshot::default()
            }),
            process: Some(ProcessSnapshot {
                pid: 33,
                why: "automatic".into(),
                rss_bytes: 34,
                rss_limit_bytes: Some(35),
                cpu_ns: 36,
                cpu_pct: 37.5,
                start_us: 38,
            }),
        }
    }

    #[test]
    fn a_row_goes_to_its_reference_and_back_unchanged() {
        let row = full_row();
        assert_eq!(row.as_row_ref().to_snapshot(), row);
        let empty = SessionSnapshot::default();
        assert_eq!(empty.as_row_ref().to_snapshot(), empty);
    }

    #[test]
    fn a_written_row_reads_back_as_the_same_row() {
        let row = full_row();
        let json = serde_json::to_value(&row).expect("serializes");
        assert_eq!(json["mem_peak_bytes"], 13);
        assert_eq!(json["recent_stalls"][1]["victims"][0]["session_id"], "s-9");
        assert_eq!(json["calls"]["db.query"]["blocking_count"], 25);
        assert_eq!(json["tasks"]["cancelled_count"], 21);
        assert_eq!(json["media"]["outbound_lateness_p99_ms"], 32.5);
        assert_eq!(json["process"]["pid"], 33);
        assert_eq!(json["process"]["rss_limit_bytes"], 35);
        assert_eq!(json["livekit"]["room"], "support-42");
        let read: SessionSnapshot = serde_json::from_value(json).expect("reads");
        assert_eq!(read, row);
    }

    #[test]
    fn empty_optional_fields_are_left_out() {
        let row = SessionSnapshot {
            id: SessionId::from_u64(2).expect("an id"),
            ..SessionSnapshot::default()
        };
        let json = serde_json::to_value(&row).expect("serializes");
        let object = json.as_object().expect("an object");
        for absent in [
            "metadata",
            "preempted_stall_count",
            "last_stall",
            "recent_stalls",
            "blocking_for_ms",
            "tasks",
            "calls",
            "media",
            "process",
            "livekit",
        ] {
            assert!(!object.contains_key(absent), "{absent} in {json}");
        }
        assert_eq!(object.len(), 17, "{json}");
        let read: SessionSnapshot = serde_json::from_value(json).expect("reads");
        assert_eq!(read, row);
    }
}
