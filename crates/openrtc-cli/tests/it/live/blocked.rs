//! A worker thread blocked for 6 s, seen through `openrtc health` against a real demo worker:
//! the demo's `blocker` agent holds its worker thread for 6 s (`--block-ms 6000`), past the
//! default `blocked_after` of 5 s. While it does, `openrtc health` exits 1 with the worker
//! `critical` and the blocking session named; once the thread is back, it exits 0.
//!
//! The stall threshold is raised over the block (`--slow-ms 10000`): the block is then not a
//! stall, so "after" is `ok` rather than `degraded` by a stall of the last minute.

use std::time::{Duration, Instant};

use openrtc_proto::{HealthIssueCode, HealthReport, HealthStatus};

use crate::binary::{run, stdout};
use crate::live::{DemoWorker, wait_for_snapshots};

/// Long enough for a 6 s block to begin and end on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `openrtc health --json` until `accept` takes its report and exit code.
fn health_until(
    dir: &std::path::Path,
    url: &str,
    what: &str,
    accept: impl Fn(&HealthReport, Option<i32>) -> bool,
) -> (HealthReport, Option<i32>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = run(dir, &["health", "--url", url, "--json"]);
        let code = output.status.code();
        let shown = stdout(&output);
        if let Ok(report) = serde_json::from_str::<HealthReport>(shown.trim()) {
            if accept(&report, code) {
                return (report, code);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in time; last: exit {code:?}: {shown}"
        );
        // `openrtc health` itself takes a few ms: a short pause keeps the loop from
        // hogging a core the worker needs.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thread_blocked_for_six_seconds_is_critical_naming_its_session_then_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _worker = DemoWorker::start_with_args(
        dir.path(),
        "wedged",
        "blocker",
        1,
        None,
        "127.0.0.1:0",
        &["--block-ms", "6000", "--slow-ms", "10000"],
    );
    let snapshots = wait_for_snapshots(dir.path(), &[], "the blocker session", |all| {
        all.len() == 1 && all[0].worker.http_addr.is_some() && all[0].sessions.len() == 1
    });
    let url = snapshots[0].worker.http_addr.clone().expect("an address");
    let session = snapshots[0].sessions[0].id;

    let (report, code) = health_until(dir.path(), &url, "critical report", |report, _| {
        report.status == HealthStatus::Critical
    });
    assert_eq!(code, Some(1), "{report:?}");
    let blocked = &report.issues[0];
    assert_eq!(blocked.code, HealthIssueCode::WorkerBlocked, "{report:?}");
    assert_eq!(blocked.session_id, Some(session), "{report:?}");
    assert!(
        report
            .workers
            .iter()
            .any(|thread| thread.blocked && thread.session_id == Some(session)),
        "{report:?}"
    );

    // Back: ok and exit 0, or degraded by the host alone (CPU steal on a shared machine is
    // the host's, not the session's), never critical.
    let (report, code) = health_until(dir.path(), &url, "report after the block", |report, _| {
        report.status != HealthStatus::Critical
    });
    let hosts_only = report
        .issues
        .iter()
        .all(|issue| issue.code == HealthIssueCode::HostSteal);
    assert!(hosts_only, "only the host's trouble may remain: {report:?}");
    let expected = if report.issues.is_empty() { 0 } else { 1 };
    assert_eq!(code, Some(expected), "{report:?}");
}
