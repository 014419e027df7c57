//! Tracked call labels past the limit, and child task counts by how each child ended.

use std::future::pending;

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

use crate::support::{RunningPool, TestPool as _, wait_for};

#[test]
fn labels_past_the_limit_count_under_other() {
    let labels = openrtc::calls::MAX_LABELS + 6;
    let pool = RunningPool::start(AgentPool::builder().agent(
        "many",
        agent_fn(move |session: Session| async move {
            for index in 0..labels {
                session
                    .track(format!("label-{index}"), async { Ok::<_, ()>(()) })
                    .await
                    .ok();
            }
            // A call may borrow, as a query on a borrowed connection pool does.
            let rows = String::from("three");
            let counted = session
                .track("label-0", async { Ok::<_, ()>(rows.len()) })
                .await;
            assert_eq!(counted, Ok(5));
            session.cancelled().await;
            Ok(())
        }),
    ));
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let row = wait_for("every call", || {
        pool.row(id).filter(|row| {
            row.calls.values().map(|stats| stats.count).sum::<u64>() == labels as u64 + 1
        })
    });
    assert_eq!(row.calls.len(), openrtc::calls::MAX_LABELS + 1);
    assert_eq!(row.calls[openrtc::calls::OTHER_LABEL].count, 6);
    assert_eq!(row.calls["label-0"].count, 2);
    let worker = pool.snapshot().calls;
    assert_eq!(worker[openrtc::calls::OTHER_LABEL].count, 6);
}

#[test]
fn child_tasks_are_counted_by_how_they_ended() {
    let pool = RunningPool::start(AgentPool::builder().agent(
        "parent",
        agent_fn(|session: Session| async move {
            // Returns an error: counted as completed (a child's output is not inspected).
            let completed = session.spawn(async { Err::<(), _>("done badly") });
            assert!(completed.await.is_ok());
            let panicked = session.spawn(async {
                panic!("child goes down");
            });
            assert!(panicked.await.is_err_and(|error| error.is_panic()));
            let aborted = session.spawn(pending::<()>());
            aborted.abort();
            assert!(aborted.await.is_err_and(|error| error.is_cancelled()));
            // Left running: cancelled when the session ends.
            let _running = session.spawn(pending::<()>());
            session.cancelled().await;
            Ok(())
        }),
    ));
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let tasks = wait_for("four children", || {
        pool.row(id)
            .map(|row| row.tasks)
            .filter(|tasks| tasks.cancelled_count == 1 && tasks.spawned_count == 4)
    });
    assert_eq!(tasks.running_count, 1, "{tasks:?}");
    assert_eq!(tasks.completed_count, 1, "{tasks:?}");
    assert_eq!(tasks.panicked_count, 1, "{tasks:?}");
    assert_eq!(tasks.failed_count, 1, "{tasks:?}");
    pool.handle().cancel(id).expect("live");
    pool.wait_ended(id);
    let worker = wait_for("the last child's end", || {
        Some(pool.snapshot().worker.tasks).filter(|tasks| tasks.running_count == 0)
    });
    assert_eq!(worker.spawned_count, 4, "{worker:?}");
    assert_eq!(worker.cancelled_count, 2, "{worker:?}");
    assert_eq!(worker.panicked_count, 1, "{worker:?}");
    assert_eq!(worker.completed_count, 1, "{worker:?}");
}

#[test]
fn a_blocking_call_that_errs_or_panics_is_a_failure() {
    let pool = RunningPool::start(AgentPool::builder().agent(
        "sync",
        agent_fn(|session: Session| async move {
            let refused = session
                .track_blocking("db.legacy", || Err::<(), _>("refused"))
                .await;
            assert_eq!(refused.ok(), Some(Err("refused")));
            let panicked = session
                .track_blocking("db.legacy", || -> Result<(), ()> {
                    panic!("driver bug");
                })
                .await;
            assert!(panicked.is_err_and(|error| error.is_panic()));
            let fine = session.track_blocking("db.legacy", || Ok::<_, ()>(1)).await;
            assert_eq!(fine.ok(), Some(Ok(1)));
            session.cancelled().await;
            Ok(())
        }),
    ));
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let legacy = wait_for("three calls", || {
        pool.row(id)?
            .calls
            .get("db.legacy")
            .cloned()
            .filter(|legacy| legacy.count == 3)
    });
    assert_eq!(legacy.failed_count, 2, "{legacy:?}");
    assert_eq!(legacy.blocking_count, 0, "{legacy:?}");
}
