//! Blocked worker threads: a poll holding a worker thread past `blocked_after` shows in the
//! snapshot's worker thread states, and past `restart_after` drains the worker, whose `run`
//! returns `BlockedWorker` (exit code 69) after a `[blocked-worker]` line naming the session.

use std::time::Duration;

use openrtc::{AgentPool, JobRequest, RunError, Session, agent_fn};

use crate::support::{run_on_thread, wait_for};

/// How long the blocker holds its worker thread: longer than the test needs.
const BLOCK: Duration = Duration::from_secs(3);

#[test]
fn a_thread_blocked_past_restart_after_drains_the_worker_with_exit_code_69() {
    crate::drain_log::capture();
    let worker = "blocked-restarts";
    let blocker = agent_fn(|session: Session| async move {
        std::thread::sleep(BLOCK);
        session.cancelled().await;
        Ok::<(), openrtc::AgentError>(())
    });
    let pool = AgentPool::builder()
        .agent("blocker", blocker)
        .worker_name(worker)
        .worker_threads(2)
        .blocked_after(Duration::from_millis(100))
        .restart_after(Some(Duration::from_millis(600)))
        .drain_timeout(Duration::from_millis(100))
        .cancel_grace(Duration::from_millis(100))
        .build()
        .expect("valid");
    let handle = pool.handle();
    let (thread, _stop) = run_on_thread(pool);
    let launched = handle
        .launch(JobRequest::new().tenant("acme"))
        .expect("room");
    let id = launched.id();
    let state = wait_for("the blocker's thread to be blocked", || {
        let snapshot = handle.runtime_snapshot();
        snapshot
            .worker
            .worker_thread_states
            .into_iter()
            .find(|state| state.blocked)
    });
    assert_eq!(state.session_id, Some(id));
    assert_eq!(state.tenant.as_deref(), Some("acme"));
    assert_eq!(state.agent.as_deref(), Some("blocker"));
    assert!(state.polling_for_ms >= Some(100), "{state:?}");
    assert!(state.tid > 0, "{state:?}");
    let snapshot = handle.runtime_snapshot();
    assert_eq!(snapshot.worker.blocked_after_ms, 100);
    assert_eq!(snapshot.worker.restart_after_ms, Some(600));

    let error = thread
        .join()
        .expect("no panic on the pool's thread")
        .expect_err("a blocked thread stops the worker");
    assert!(
        matches!(&error, RunError::BlockedWorker { session_id, blocked_ms, .. }
            if *session_id == id && *blocked_ms >= 600),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 69);
    let lines = crate::drain_log::events_with("worker", worker, "worker_blocked");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let line = &lines[0];
    assert_eq!(line.level, tracing::Level::ERROR);
    assert!(
        line.message.starts_with("[blocked-worker] worker thread ")
            && line
                .message
                .contains(&format!("session {id} (agent blocker, tenant acme)")),
        "{line:?}"
    );
    assert_eq!(line.fields["session_id"], id.to_string());
    // The stall was diagnosed while it blocked (stack capture is on by default): the stack
    // names the sleep.
    assert!(line.fields["stack"].contains("sleep"), "{line:?}");
    let starts = crate::drain_log::events_with("worker", worker, "drain_start");
    assert_eq!(starts.len(), 1, "one drain: {starts:?}");
    assert_eq!(starts[0].fields["why"], "blocked_worker");
    let ends = crate::drain_log::events_with("worker", worker, "drain_end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].fields["exit_code"], "69");
}
