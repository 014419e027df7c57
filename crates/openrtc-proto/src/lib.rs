//! Wire types shared by the openrtc runtime and the `openrtc` CLI.
//!
//! The runtime and the inspector meet only here: the runtime fills a [`PoolSnapshot`] and
//! serves it over a private Unix socket; the CLI asks for it with a [`Request`] and reads a
//! [`Response`]. Every message is one line of JSON. Both sides find the socket with
//! [`socket_dir`] and [`socket_file_name`].

mod event;
mod health;
mod ipc;
mod reason;
mod session_id;
mod snapshot;

pub use event::{
    EVENT_STREAM_SCHEMA_VERSION, MemoryLimitScope, OverflowScope, StreamEvent, StreamLine,
    StreamRecord,
};
pub use health::{
    HEALTH_VERSION, HealthIssue, HealthIssueCode, HealthReport, HealthResources, HealthStatus,
};
pub use ipc::{ErrorCode, Request, RequestEnvelope, Response, ResponseEnvelope};
pub use reason::{CancelReason, KillReason, RefusalReason};
pub use session_id::{ParseSessionIdError, SessionId};
pub use snapshot::{
    AgentSnapshot, AutoIsolationSnapshot, BreakerSnapshot, BreakerState, CallBucket,
    CallMediaSnapshot, CallStatsSnapshot, EndedSessionSnapshot, FrameSnapshot, LiveKitJobSnapshot,
    LiveKitWorkerSnapshot, LogRecordSnapshot, MAX_TENANT_AGENT_PAIRS, MemSource, OTHER_TENANT,
    PoolSnapshot, ProcessSnapshot, SessionOutcome, SessionSnapshot, SessionSnapshotRef,
    SessionState, SessionTotals, StallBucket, StallClass, StallPart, StallSnapshot,
    TaskCountsSnapshot, TenantAgentTotals, TenantConfigSnapshot, TenantSnapshot,
    ThreadTimeSnapshot, VictimSnapshot, WorkerSnapshot, WorkerThreadSnapshot,
};

use std::path::{Path, PathBuf};

/// The version of the request/response protocol carried in every message's `v` field.
pub const PROTOCOL_VERSION: u32 = 1;

/// The version of the [`PoolSnapshot`] layout; bumped on any incompatible change.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The longest request line, newline excluded, that a worker reads; longer lines are refused.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The suffix of every worker socket file.
pub const SOCKET_SUFFIX: &str = ".sock";

/// The per-user directory that holds worker sockets.
///
/// `$XDG_RUNTIME_DIR/openrtc` when `xdg_runtime_dir` is set and absolute, else
/// `/tmp/openrtc-<uid>`. Both sides call this with their own uid, so a worker and the CLI run
/// by the same user agree on it.
#[must_use]
pub fn socket_dir(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if dir.is_absolute() => dir.join("openrtc"),
        _ => PathBuf::from(format!("/tmp/openrtc-{uid}")),
    }
}

/// The socket file name of a worker: `<worker_name>-<pid>.sock`, so two workers never collide.
#[must_use]
pub fn socket_file_name(worker_name: &str, pid: u32) -> String {
    format!("{worker_name}-{pid}{SOCKET_SUFFIX}")
}

/// The worker name and pid in a socket file name shaped as [`socket_file_name`] makes them,
/// or `None` for any other name.
#[must_use]
pub fn parse_socket_file_name(file_name: &str) -> Option<(&str, u32)> {
    let (name, pid) = file_name.strip_suffix(SOCKET_SUFFIX)?.rsplit_once('-')?;
    if name.is_empty() || pid.is_empty() || !pid.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((name, pid.parse().ok()?))
}

/// Whether `name` is a valid worker or agent name: 1 to 64 ASCII letters, digits, `-`, `_`
/// or `.`, not starting with `.` or `-`.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_prefers_an_absolute_xdg_runtime_dir() {
        assert_eq!(
            socket_dir(Some(Path::new("/run/user/7")), 7),
            PathBuf::from("/run/user/7/openrtc")
        );
        assert_eq!(
            socket_dir(Some(Path::new("relative")), 7),
            PathBuf::from("/tmp/openrtc-7")
        );
        assert_eq!(socket_dir(None, 1000), PathBuf::from("/tmp/openrtc-1000"));
    }

    #[test]
    fn socket_file_names_round_trip_and_odd_names_are_not_parsed() {
        assert_eq!(
            parse_socket_file_name(&socket_file_name("edge-eu.1", 4242)),
            Some(("edge-eu.1", 4242))
        );
        for odd in [
            "demo.sock",
            "demo-.sock",
            "-42.sock",
            "demo-4x2.sock",
            "demo-42.socket",
            "demo-99999999999.sock",
        ] {
            assert_eq!(parse_socket_file_name(odd), None, "{odd}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("worker-1.eu_west"));
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "sp ace",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad:?} should be refused");
        }
    }
}
