//! Launch handles (each way a session ends reaches its handle, once), lookups by id for cancel
//! and kill, and the library's `RunningPool` guard.

use std::sync::mpsc;
use std::time::Duration;

use openrtc::{
    AgentError, AgentPool, AgentPoolBuilder, CancelReason, JobRequest, KillReason, LookupError,
    Rejected, RunError, Session, SessionHandle, SessionId, SessionOutcome, agent_fn,
};

use crate::support::{PATIENCE, RunningPool, TestPool as _, check_stopped, wait_for};

/// A pool with one agent per way a session can end by itself or be stopped.
fn builder(dir: &tempfile::TempDir) -> AgentPoolBuilder {
    AgentPool::builder()
        .worker_threads(2)
        .socket_path(dir.path().join("w.sock"))
        .agent(
            "patient",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok(())
            }),
        )
        .agent(
            "complete",
            agent_fn(|_session: Session| async move { Ok(()) }),
        )
        .agent(
            "fail",
            agent_fn(|_session: Session| async move {
                tokio::task::yield_now().await;
                Err(AgentError::msg("caller hung up"))
            }),
        )
        .agent(
            "panic",
            agent_fn(|_session: Session| async move {
                tokio::task::yield_now().await;
                panic!("bad frame 9");
            }),
        )
        .agent(
            "stubborn",
            agent_fn(|_session: Session| async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }),
        )
}

#[track_caller]
fn launch(pool: &RunningPool, agent: &str) -> SessionHandle {
    pool.handle()
        .launch(JobRequest::new().agent(agent))
        .expect("room")
}

/// Waits for the outcome, failing the test after [`PATIENCE`].
#[track_caller]
fn outcome(handle: SessionHandle) -> SessionOutcome {
    let id = handle.id();
    handle
        .wait_outcome(PATIENCE)
        .unwrap_or_else(|_| panic!("session {id} did not end"))
}

/// A current-thread runtime of the test's own, to await handles from async code.
fn async_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_launch_handle_yields_each_outcome_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir));
    let completed = launch(&pool, "complete");
    let failed = launch(&pool, "fail");
    let panicked = launch(&pool, "panic");
    let cancelled = launch(&pool, "patient");
    let killed = launch(&pool, "stubborn");
    pool.handle().cancel(cancelled.id()).expect("live");
    pool.handle().kill(killed.id()).expect("live");

    // Awaited from async code: the handle itself is a future, and so is `outcome()`.
    let runtime = async_runtime();
    assert!(matches!(
        runtime.block_on(async { completed.await }),
        SessionOutcome::Completed
    ));
    match runtime.block_on(failed.outcome()) {
        SessionOutcome::Failed(error) => assert_eq!(error.to_string(), "caller hung up"),
        other => panic!("expected a failure, got {other}"),
    }
    // Waited for from a plain thread.
    match outcome(panicked) {
        SessionOutcome::Panicked { message, location } => {
            assert_eq!(message, "bad frame 9");
            let location = location.expect("the hook records where it panicked");
            assert!(
                location.starts_with(concat!(file!(), ":")),
                "{location} is in this file"
            );
        }
        other => panic!("expected a panic, got {other}"),
    }
    assert!(matches!(
        outcome(cancelled),
        SessionOutcome::Cancelled(CancelReason::Operator)
    ));
    assert!(matches!(
        outcome(killed),
        SessionOutcome::Killed(KillReason::Operator)
    ));
    // Each end was recorded once by the pool too.
    let snapshot = pool.snapshot();
    let totals = &snapshot.worker.totals;
    assert_eq!(
        (
            totals.completed_count,
            totals.failed_count,
            totals.panicked_count,
            totals.cancelled_count,
            totals.killed_count
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(snapshot.recently_ended.len(), 5);
    assert_eq!(snapshot.worker.active_sessions, 0);
}

#[test]
fn a_handle_waited_on_after_its_session_ended_still_gets_the_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir));
    let completed = launch(&pool, "complete");
    let failed = launch(&pool, "fail");
    pool.wait_ended(completed.id());
    pool.wait_ended(failed.id());
    assert!(matches!(outcome(completed), SessionOutcome::Completed));
    assert!(matches!(
        async_runtime().block_on(failed.outcome()),
        SessionOutcome::Failed(_)
    ));
    // A wait that times out gives the handle back; it still gets the outcome later.
    let patient = launch(&pool, "patient");
    let patient = patient
        .wait_outcome(Duration::ZERO)
        .expect_err("the session is live");
    pool.handle().cancel(patient.id()).expect("live");
    assert!(matches!(
        outcome(patient),
        SessionOutcome::Cancelled(CancelReason::Operator)
    ));
}

#[test]
fn shutting_down_ends_live_sessions_as_cancelled_by_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir).cancel_grace(Duration::from_millis(50)));
    let patient = launch(&pool, "patient");
    // It ignores the cancel: it is dropped after the cancel grace, with the same outcome.
    let stubborn = launch(&pool, "stubborn");
    wait_for("both sessions to run", || {
        let snapshot = pool.snapshot();
        (snapshot.sessions.len() == 2 && snapshot.sessions.iter().all(|row| row.poll_count > 0))
            .then_some(())
    });
    pool.handle().shutdown();
    for handle in [patient, stubborn] {
        assert!(matches!(
            outcome(handle),
            SessionOutcome::Cancelled(CancelReason::Shutdown)
        ));
    }
    pool.drain_and_join().expect("the pool ran");
}

#[test]
fn a_pool_dropped_before_it_ran_ends_its_queued_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = builder(&dir).build().expect("valid configuration");
    let handle = pool.handle();
    let queued = handle
        .launch(JobRequest::new().agent("patient"))
        .expect("queued until the runtime starts");
    drop(pool);
    assert!(matches!(
        queued.wait_outcome(Duration::ZERO),
        Ok(SessionOutcome::Cancelled(CancelReason::Shutdown))
    ));
    assert_eq!(
        handle.launch(JobRequest::new()).err(),
        Some(Rejected::Stopped)
    );
    let snapshot = handle.runtime_snapshot();
    assert_eq!(snapshot.worker.active_sessions, 0);
    assert_eq!(snapshot.worker.totals.cancelled_count, 1);
}

#[test]
fn a_pool_that_cannot_start_says_why_and_ends_its_queued_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("missing").join("w.sock");
    let pool = builder(&dir)
        .socket_path(&socket)
        .build()
        .expect("valid configuration");
    let queued = pool
        .handle()
        .launch(JobRequest::new().agent("patient"))
        .expect("queued");
    match pool.run_in_background() {
        Err(RunError::Socket { path, .. }) => assert_eq!(path, socket),
        Err(other) => panic!("expected a socket error, got {other}"),
        Ok(_) => panic!("the socket's directory does not exist"),
    }
    assert!(matches!(
        queued.wait_outcome(Duration::ZERO),
        Ok(SessionOutcome::Cancelled(CancelReason::Shutdown))
    ));
}

#[test]
fn cancel_and_kill_of_an_unknown_or_ended_session_are_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir));
    let unknown: SessionId = "s-999999".parse().expect("an id");
    let not_found = Err(LookupError::NotFound { id: unknown });
    assert_eq!(pool.handle().cancel(unknown), not_found);
    assert_eq!(pool.handle().kill(unknown), not_found);
    assert_eq!(
        LookupError::NotFound { id: unknown }.to_string(),
        "no live session s-999999"
    );
    let ended = launch(&pool, "complete");
    let id = ended.id();
    assert!(matches!(outcome(ended), SessionOutcome::Completed));
    // The outcome is delivered after the session has left the registry.
    assert_eq!(pool.handle().cancel(id), Err(LookupError::NotFound { id }));
    assert_eq!(pool.handle().kill(id), Err(LookupError::NotFound { id }));
    assert_eq!(pool.snapshot().worker.totals.completed_count, 1);
}

#[test]
fn dropping_a_running_pool_shuts_it_down_and_joins_its_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (saw_cancel, cancels) = mpsc::channel::<SessionId>();
    let pool = RunningPool::start(builder(&dir).agent(
        "reporting",
        agent_fn(move |session: Session| {
            let saw_cancel = saw_cancel.clone();
            async move {
                session.cancelled().await;
                let _ = saw_cancel.send(session.id());
                Ok(())
            }
        }),
    ));
    let handle = pool.handle().clone();
    let session = launch(&pool, "reporting");
    let id = session.id();
    drop(pool);
    // The drop returned after the pool's thread: the session had seen its cancel and ended.
    assert_eq!(cancels.try_recv(), Ok(id));
    assert!(matches!(
        outcome(session),
        SessionOutcome::Cancelled(CancelReason::Shutdown)
    ));
    check_stopped(&handle, &dir.path().join("w.sock"));
}

#[test]
fn drain_and_join_drains_and_returns_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir).drain_timeout(Duration::ZERO));
    let handle = pool.handle().clone();
    let session = launch(&pool, "patient");
    assert!(pool.drain_and_join().is_ok());
    // Past the drain timeout (zero here) the drain cancels what is left.
    assert!(matches!(
        outcome(session),
        SessionOutcome::Cancelled(CancelReason::DrainTimeout)
    ));
    assert_eq!(
        handle.launch(JobRequest::new()).err(),
        Some(Rejected::Stopped)
    );
}
