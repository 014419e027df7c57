//! Session lifecycle: routing, admission, outcomes, cancel and kill, drain, isolation of failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use openrtc::proto::SessionOutcome as Wire;
use openrtc::{
    AgentError, AgentPool, AgentPoolBuilder, JobRequest, LookupError, Rejected, Session, agent_fn,
};

use crate::support::{RunningPool, TestPool as _, check_stopped, wait_for};

/// Waits for cancellation, then completes.
fn patient() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok(())
    })
}

/// Ignores cancellation: it only ends when dropped.
fn stubborn() -> impl openrtc::Agent {
    agent_fn(|_session: Session| async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Ends on its own after `life_ms` from its metadata.
fn timed() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        let life = session.metadata()["life_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(life)).await;
        Ok(())
    })
}

fn builder(dir: &tempfile::TempDir) -> AgentPoolBuilder {
    AgentPool::builder()
        .worker_threads(2)
        .socket_path(dir.path().join("w.sock"))
}

#[test]
fn routing_uses_the_named_agent_or_the_first_and_never_reroutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("first", patient())
            .agent("second", patient()),
    );
    let default = pool.handle().launch(JobRequest::new()).expect("room").id();
    let named = pool
        .handle()
        .launch(JobRequest::new().agent("second").tenant("acme"))
        .expect("room")
        .id();
    assert_eq!(
        pool.handle().launch(JobRequest::new().agent("third")).err(),
        Some(Rejected::UnknownAgent {
            name: "third".into()
        })
    );
    let snapshot = pool.snapshot();
    let default_row = pool.row(default).expect("live");
    assert_eq!(
        (default_row.agent.as_str(), default_row.tenant.as_str()),
        ("first", "default")
    );
    let named_row = pool.row(named).expect("live");
    assert_eq!(
        (named_row.agent.as_str(), named_row.tenant.as_str()),
        ("second", "acme")
    );
    assert_eq!(
        snapshot.worker.refusals[&openrtc::RefusalReason::UnknownAgent],
        1
    );
    assert_eq!(snapshot.worker.totals.started_count, 2);
    assert_eq!(snapshot.sessions.len(), 2);
}

#[test]
fn the_session_cap_is_exact_and_frees_places_as_sessions_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("patient", patient())
            .max_concurrent_sessions(3),
    );
    let ids: Vec<_> = (0..3)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room").id())
        .collect();
    assert_eq!(
        pool.handle().launch(JobRequest::new()).err(),
        Some(Rejected::WorkerFull { max: 3 })
    );
    pool.handle().cancel(ids[0]).expect("live");
    pool.wait_ended(ids[0]);
    pool.handle()
        .launch(JobRequest::new())
        .expect("a place was freed");
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.worker.active_sessions, 3);
    assert_eq!(
        snapshot.worker.refusals[&openrtc::RefusalReason::WorkerFull],
        1
    );
}

#[test]
fn concurrent_launches_never_overshoot_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("patient", patient())
            .max_concurrent_sessions(50),
    );
    let accepted = Arc::new(AtomicU32::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..20 {
                    if pool.handle().launch(JobRequest::new()).is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let snapshot = pool.snapshot();
    assert_eq!(accepted.load(Ordering::Relaxed), 50);
    assert_eq!(snapshot.worker.active_sessions, 50);
    assert_eq!(snapshot.sessions.len(), 50);
    assert_eq!(
        snapshot.worker.refusals[&openrtc::RefusalReason::WorkerFull],
        110
    );
}

#[test]
fn a_panic_or_an_error_ends_only_its_own_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("patient", patient())
            .agent(
                "panicky",
                agent_fn(|_session: Session| async move {
                    tokio::task::yield_now().await;
                    panic!("bad frame 7");
                }),
            )
            .agent(
                "failing",
                agent_fn(|_session: Session| async move {
                    tokio::task::yield_now().await;
                    Err(AgentError::msg("upstream hung up"))
                }),
            ),
    );
    let siblings: Vec<_> = (0..10)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room").id())
        .collect();
    let panicked = pool
        .handle()
        .launch(JobRequest::new().agent("panicky"))
        .expect("room")
        .id();
    let failed = pool
        .handle()
        .launch(JobRequest::new().agent("failing"))
        .expect("room")
        .id();
    match pool.wait_ended(panicked).outcome {
        Wire::Panicked { message, location } => {
            assert_eq!(message, "bad frame 7");
            let location = location.expect("the hook records where it panicked");
            assert!(
                location.starts_with(concat!(file!(), ":")),
                "{location} is in this file"
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        pool.wait_ended(failed).outcome,
        Wire::Failed {
            error: "upstream hung up".into()
        }
    );
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.worker.totals.panicked_count, 1);
    assert_eq!(snapshot.worker.totals.failed_count, 1);
    assert_eq!(snapshot.sessions.len(), 10, "every sibling is still live");
    // The worker still serves: new sessions start, and the siblings end normally when asked.
    let after = pool
        .handle()
        .launch(JobRequest::new())
        .expect("the worker still accepts")
        .id();
    for id in siblings.iter().chain([&after]) {
        pool.handle().cancel(*id).expect("live");
        assert_eq!(
            pool.wait_ended(*id).outcome,
            Wire::Cancelled {
                reason: openrtc::CancelReason::Operator
            }
        );
    }
}

#[test]
fn cancel_is_graceful_then_firm_and_kill_is_immediate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("patient", patient())
            .agent("stubborn", stubborn())
            .cancel_grace(Duration::from_millis(100)),
    );
    let graceful = pool.handle().launch(JobRequest::new()).expect("room").id();
    let ignoring = pool
        .handle()
        .launch(JobRequest::new().agent("stubborn"))
        .expect("room")
        .id();
    let killed = pool
        .handle()
        .launch(JobRequest::new().agent("stubborn"))
        .expect("room")
        .id();
    let operator = Wire::Cancelled {
        reason: openrtc::CancelReason::Operator,
    };
    pool.handle().cancel(graceful).expect("live");
    assert_eq!(pool.wait_ended(graceful).outcome, operator);
    pool.handle().cancel(ignoring).expect("live");
    assert_eq!(
        pool.wait_ended(ignoring).outcome,
        operator,
        "dropped after the grace"
    );
    pool.handle().kill(killed).expect("live");
    assert_eq!(
        pool.wait_ended(killed).outcome,
        Wire::Killed {
            reason: openrtc::KillReason::Operator
        }
    );
    assert_eq!(
        pool.handle().cancel(graceful),
        Err(LookupError::NotFound { id: graceful }),
        "an ended session cannot be cancelled"
    );
    let totals = pool.snapshot().worker.totals;
    assert_eq!((totals.cancelled_count, totals.killed_count), (2, 1));
}

#[test]
fn child_tasks_are_counted_and_end_with_their_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir).agent(
        "parent",
        agent_fn(|session: Session| async move {
            let quick = session.spawn(async { 7 });
            assert_eq!(quick.await?, 7);
            let _forever = session.spawn(std::future::pending::<()>());
            session.cancelled().await;
            Ok(())
        }),
    ));
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let row = wait_for("the child tasks", || {
        pool.row(id)
            .filter(|row| row.children_finished_count == 1 && row.children_live_count == 1)
    });
    assert!(row.poll_count >= 2);
    pool.handle().cancel(id).expect("live");
    assert_eq!(pool.wait_ended(id).outcome.kind(), "cancelled");
}

#[test]
fn launches_before_run_wait_for_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = builder(&dir)
        .agent("timed", timed())
        .build()
        .expect("valid configuration");
    let id = pool
        .handle()
        .launch(JobRequest::new().metadata(serde_json::json!({ "life_ms": 10 })))
        .expect("queued until the runtime starts")
        .id();
    assert_eq!(pool.handle().runtime_snapshot().worker.active_sessions, 1);
    let running = RunningPool::run(pool);
    assert_eq!(running.wait_ended(id).outcome, Wire::Completed);
}

#[test]
fn drain_refuses_new_sessions_lets_live_ones_finish_then_cancels_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("timed", timed())
            .agent("stubborn", stubborn())
            .drain_timeout(Duration::from_millis(300))
            .cancel_grace(Duration::from_millis(50)),
    );
    let handle = pool.handle().clone();
    let finishing = handle
        .launch(JobRequest::new().metadata(serde_json::json!({ "life_ms": 100 })))
        .expect("room")
        .id();
    let overstaying = handle
        .launch(JobRequest::new().agent("stubborn"))
        .expect("room")
        .id();
    handle.begin_drain();
    assert!(handle.is_draining());
    assert_eq!(
        handle.launch(JobRequest::new()).err(),
        Some(Rejected::Draining)
    );
    pool.drain_and_join().expect("the pool ran");
    let snapshot = handle.runtime_snapshot();
    let outcome_of = |id: openrtc::SessionId| {
        snapshot
            .recently_ended
            .iter()
            .find(|ended| ended.id == id)
            .map(|ended| ended.outcome.clone())
    };
    assert_eq!(outcome_of(finishing), Some(Wire::Completed));
    assert_eq!(
        outcome_of(overstaying),
        Some(Wire::Cancelled {
            reason: openrtc::CancelReason::DrainTimeout
        })
    );
    assert_eq!(snapshot.worker.active_sessions, 0);
    assert_eq!(
        snapshot.worker.refusals[&openrtc::RefusalReason::Draining],
        1
    );
    check_stopped(&handle, &dir.path().join("w.sock"));
}

#[test]
fn shutdown_cancels_every_session_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        builder(&dir)
            .agent("patient", patient())
            .drain_timeout(Duration::from_secs(3600)),
    );
    let handle = pool.handle().clone();
    let ids: Vec<_> = (0..5)
        .map(|_| handle.launch(JobRequest::new()).expect("room").id())
        .collect();
    handle.shutdown();
    pool.drain_and_join().expect("the pool ran");
    let snapshot = handle.runtime_snapshot();
    for id in ids {
        let ended = snapshot
            .recently_ended
            .iter()
            .find(|ended| ended.id == id)
            .expect("ended");
        assert_eq!(
            ended.outcome,
            Wire::Cancelled {
                reason: openrtc::CancelReason::Shutdown
            }
        );
    }
}
