//! Tracked calls, timed: a call that blocks its worker thread is a blocking call, one that
//! awaits is not, failures and slow calls count, and the histogram holds the durations.

use std::time::Duration;

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

use crate::support::{RunningPool, TestPool as _, wait_for};
use crate::telemetry::{install_layer, records};

/// Tracks one call of each kind, then waits to be cancelled.
async fn calls_of_each_kind(session: Session) -> Result<(), openrtc::AgentError> {
    session
        .track("blocks", async {
            std::thread::sleep(Duration::from_millis(80));
            Ok::<_, ()>(())
        })
        .await
        .ok();
    session
        .track("awaits", async {
            tokio::time::sleep(Duration::from_millis(80)).await;
            Ok::<_, ()>(())
        })
        .await
        .ok();
    let failed = session
        .track("fails", async { Err::<(), _>("refused") })
        .await;
    assert!(failed.is_err());
    let value = session.track_value("value", async { 42 }).await;
    assert_eq!(value, 42);
    let slept = session
        .track_blocking("blocking.sleep", || {
            std::thread::sleep(Duration::from_millis(80));
            Ok::<_, ()>(7)
        })
        .await;
    assert_eq!(slept.ok(), Some(Ok(7)));
    session.cancelled().await;
    Ok(())
}

#[test]
fn a_call_that_blocks_its_thread_is_a_blocking_call_and_one_that_awaits_is_not() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("worker.jsonl");
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("calls", agent_fn(calls_of_each_kind))
            .worker_threads(2)
            .slow_session_threshold(Duration::from_millis(50))
            .log_file(&log_file),
    );
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let row = wait_for("the five calls", || {
        pool.row(id).filter(|row| row.calls.len() == 5)
    });
    let blocks = &row.calls["blocks"];
    assert_eq!((blocks.count, blocks.blocking_count), (1, 1), "{blocks:?}");
    assert!(blocks.max_us >= 80_000, "{blocks:?}");
    let awaits = &row.calls["awaits"];
    assert_eq!((awaits.count, awaits.blocking_count), (1, 0), "{awaits:?}");
    assert!(awaits.max_us >= 80_000, "{awaits:?}");
    let fails = &row.calls["fails"];
    assert_eq!((fails.count, fails.failed_count), (1, 1), "{fails:?}");
    assert_eq!(row.calls["value"].failed_count, 0);
    let blocking = &row.calls["blocking.sleep"];
    assert_eq!(
        (
            blocking.count,
            blocking.failed_count,
            blocking.blocking_count
        ),
        (1, 0, 0),
        "{blocking:?}"
    );
    assert!(
        (80_000..2_000_000).contains(&blocking.max_us),
        "the closure is timed: {blocking:?}"
    );
    for stats in row.calls.values() {
        assert_eq!(stats.slow_count, 0, "no call took 2 s: {stats:?}");
    }
    // The worker's figures, which outlive the session.
    pool.handle().cancel(id).expect("live");
    pool.wait_ended(id);
    let worker = pool.snapshot().calls;
    assert_eq!(worker["blocks"].blocking_count, 1);
    assert_eq!(worker["fails"].failed_count, 1);
    assert_eq!(worker.len(), 5, "{worker:?}");
    // The blocking call is logged once, as its session's.
    pool.drain_and_join().expect("a clean stop");
    let lines: Vec<serde_json::Value> = records(&log_file)
        .into_iter()
        .filter(|record| record["event"] == "blocking_call")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["session_id"], id.to_string().as_str(), "{line}");
    assert_eq!(line["label"], "blocks", "{line}");
    assert!(
        line["blocked_ms"].as_u64().expect("blocked_ms") >= 80,
        "{line}"
    );
    let message = line["message"].as_str().expect("a message");
    assert!(
        message.starts_with(&format!(
            "[blocking-call] session {id} label blocks blocked a worker thread for"
        )),
        "{message}"
    );
}

#[test]
fn the_histogram_holds_the_durations_of_the_calls() {
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent(
                "timed",
                agent_fn(|session: Session| async move {
                    for duration_ms in [10, 10, 10, 10, 10, 200, 200, 200, 200, 200] {
                        session
                            .track("llm", async move {
                                tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                                Ok::<_, ()>(())
                            })
                            .await
                            .ok();
                    }
                    session.cancelled().await;
                    Ok(())
                }),
            )
            .worker_threads(2)
            .slow_call_threshold(Duration::from_millis(100)),
    );
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let llm = wait_for("ten calls", || {
        pool.row(id)?
            .calls
            .get("llm")
            .cloned()
            .filter(|llm| llm.count == 10)
    });
    assert_eq!(llm.slow_count, 5, "{llm:?}");
    assert_eq!(llm.blocking_count, 0, "{llm:?}");
    assert!((10_000..60_000).contains(&llm.p50_us), "{llm:?}");
    assert!((200_000..2_000_000).contains(&llm.max_us), "{llm:?}");
    assert_eq!(llm.p95_us, llm.max_us, "{llm:?}");
    assert_eq!(llm.p99_us, llm.max_us, "{llm:?}");
}
