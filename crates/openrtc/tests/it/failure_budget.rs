//! The failure budget: sessions failing in a row drain the worker once, and `run` returns the
//! error whose exit code tells a supervisor to restart it; a success resets the count, an
//! operator's cancel or kill neither counts nor resets.

use openrtc::{
    AgentError, AgentPool, JobRequest, PoolHandle, RunError, Session, SessionOutcome, agent_fn,
};

use crate::support::{PATIENCE, run_on_thread};

/// A pool whose one agent does what the job's metadata says: `fail`, `panic`, `complete`, or
/// `wait` to be stopped.
fn pool(worker: &str, limit: u32) -> AgentPool {
    let agent = agent_fn(|session: Session| async move {
        match session.metadata().as_str() {
            Some("fail") => Err(AgentError::msg("upstream refused the call")),
            Some("panic") => panic!("frame decoder is broken"),
            Some("complete") => Ok(()),
            _ => {
                session.cancelled().await;
                Ok(())
            }
        }
    });
    AgentPool::builder()
        .agent("caller", agent)
        .worker_name(worker)
        .enable_introspection(false)
        .consecutive_failure_limit(limit)
        // These tests fail one tenant's sessions in a row on purpose: its circuit breaker
        // would refuse the later ones. The budget, not the breaker, is under test.
        .tenant_breaker(None)
        .build()
        .expect("valid")
}

fn job(mode: &str) -> JobRequest {
    JobRequest::new()
        .tenant("acme")
        .metadata(serde_json::json!(mode))
}

/// Launches one session doing `mode` and waits for its end.
#[track_caller]
fn run_one(handle: &PoolHandle, mode: &str) -> SessionOutcome {
    handle
        .launch(job(mode))
        .expect("room")
        .wait_outcome(PATIENCE)
        .unwrap_or_else(|_| panic!("the {mode} session ends"))
}

#[track_caller]
fn check_failures(handle: &PoolHandle, count: u32, draining: bool) {
    let worker = handle.runtime_snapshot().worker;
    assert_eq!(worker.consecutive_failures_count, count);
    assert_eq!(worker.draining, draining);
}

#[track_caller]
fn check_stopped_for_failures(result: Result<(), RunError>) {
    let error = result.expect_err("the failure budget stops the worker");
    assert!(
        matches!(error, RunError::ConsecutiveFailures { count: 3 }),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 70);
    assert_eq!(
        error.to_string(),
        "3 sessions in a row failed: the worker drained so its supervisor restarts it"
    );
}

#[test]
fn failures_in_a_row_drain_the_worker_once_and_run_returns_exit_code_70() {
    crate::drain_log::capture();
    let worker = "budget-drains";
    let pool = pool(worker, 3);
    let handle = pool.handle();
    check_failures(&handle, 0, false);
    assert_eq!(
        handle.runtime_snapshot().worker.consecutive_failure_limit,
        Some(3)
    );
    // Five failures, all queued before the run: the third one drains, once.
    for mode in ["fail", "panic", "fail", "panic", "fail"] {
        handle.launch(job(mode)).expect("queued");
    }
    check_stopped_for_failures(pool.run_until(std::future::pending()));
    check_failures(&handle, 5, true);
    let budget = crate::drain_log::events_with("worker", worker, "failure_budget");
    assert_eq!(budget.len(), 1, "one line: {budget:?}");
    let line = &budget[0];
    assert_eq!(line.level, tracing::Level::ERROR);
    assert!(
        line.message
            .starts_with("[failure-budget] 3 sessions in a row failed (last: session s-")
            && line.message.contains(" tenant acme agent caller: ")
            && line
                .message
                .ends_with("); draining the worker so its supervisor restarts it"),
        "{line:?}"
    );
    assert_eq!(line.fields["count"], "3");
    assert_eq!(line.fields["tenant"], "acme");
    assert_eq!(line.fields["agent"], "caller");
    assert!(
        line.message
            .contains(&format!("session {}", line.fields["session_id"])),
        "{line:?}"
    );
    let starts = crate::drain_log::events_with("worker", worker, "drain_start");
    assert_eq!(starts.len(), 1, "one drain: {starts:?}");
    assert_eq!(starts[0].fields["why"], "failure_budget");
    let ends = crate::drain_log::events_with("worker", worker, "drain_end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].fields["exit_code"], "70");
}

#[test]
fn a_success_in_between_resets_the_count() {
    let pool = pool("budget-resets", 3);
    let handle = pool.handle();
    let (thread, _stop) = run_on_thread(pool);
    for mode in ["fail", "panic"] {
        assert!(!matches!(run_one(&handle, mode), SessionOutcome::Completed));
    }
    check_failures(&handle, 2, false);
    assert!(matches!(
        run_one(&handle, "complete"),
        SessionOutcome::Completed
    ));
    check_failures(&handle, 0, false);
    run_one(&handle, "fail");
    run_one(&handle, "fail");
    check_failures(&handle, 2, false);
    run_one(&handle, "panic");
    check_stopped_for_failures(thread.join().expect("no panic on the pool's thread"));
    check_failures(&handle, 3, true);
}

#[test]
fn an_operator_cancel_or_kill_neither_counts_nor_resets() {
    let pool = pool("budget-operator", 3);
    let handle = pool.handle();
    let (thread, _stop) = run_on_thread(pool);
    run_one(&handle, "fail");
    run_one(&handle, "fail");
    check_failures(&handle, 2, false);
    for kill in [false, true] {
        let session = handle.launch(job("wait")).expect("room");
        if kill {
            handle.kill(session.id()).expect("live");
        } else {
            handle.cancel(session.id()).expect("live");
        }
        let outcome = session
            .wait_outcome(PATIENCE)
            .unwrap_or_else(|_| panic!("the stopped session ends"));
        assert!(
            matches!(
                outcome,
                SessionOutcome::Cancelled(_) | SessionOutcome::Killed(_)
            ),
            "{outcome}"
        );
        check_failures(&handle, 2, false);
    }
    run_one(&handle, "fail");
    check_stopped_for_failures(thread.join().expect("no panic on the pool's thread"));
}
