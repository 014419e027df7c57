//! The log file under time pressure: a stall writes the session's flight recorder to the file,
//! and a log file nobody can write (a pipe nobody reads) costs sessions no poll time: records
//! are dropped and counted instead.

use std::time::Duration;

use openrtc::{AgentPool, JobRequest, Session, agent_fn};
use serde_json::Value;

use crate::support::{RunningPool, TestPool as _, wait_for};
use crate::telemetry::{install_layer, records};

#[test]
fn a_stall_writes_what_led_up_to_it_from_the_flight_recorder() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("worker.jsonl");
    let agent = agent_fn(|_session: Session| async move {
        for frame in 0..3 {
            tracing::debug!(frame, "buffering audio");
            tokio::task::yield_now().await;
        }
        // A synchronous call inside the async agent: it blocks its worker thread.
        std::thread::sleep(Duration::from_millis(300));
        tracing::info!("after the block");
        Ok(())
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("blocky", agent)
            .slow_session_threshold(Duration::from_millis(50))
            .socket_path(dir.path().join("w.sock"))
            .log_file(&log_file),
    );
    let id = pool.handle().launch(JobRequest::new()).expect("room").id();
    let ended = pool.wait_ended(id);
    assert!(ended.stall_count >= 1);
    // The stall's line comes from the reporter once the stall is explained.
    wait_for("the stall's record", || {
        pool.snapshot()
            .recently_ended
            .iter()
            .find(|row| row.id == id)
            .filter(|row| {
                row.flight_recorder
                    .iter()
                    .any(|record| record.event.as_deref() == Some("slow_session"))
            })
            .map(|_| ())
            .or_else(|| {
                records(&log_file)
                    .iter()
                    .any(|r| r["event"] == "slow_session")
                    .then_some(())
            })
    });
    pool.drain_and_join().expect("a clean stop");
    let records = records(&log_file);
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["session_id"] == id.to_string().as_str())
        .collect();
    let stall = mine
        .iter()
        .find(|r| r["event"] == "slow_session")
        .expect("the stall is in the file, labelled with its session");
    assert!(
        stall["stall_ms"].as_u64().expect("stall_ms") >= 250,
        "{stall}"
    );
    let buffering: Vec<&&Value> = mine
        .iter()
        .filter(|r| r["message"] == "buffering audio")
        .collect();
    assert_eq!(buffering.len(), 3, "each DEBUG record once: {mine:?}");
    assert!(buffering.iter().all(|r| r["from_flight_recorder"] == true));
}

#[test]
fn a_log_file_nobody_reads_drops_records_and_costs_sessions_no_poll_time() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("stuck.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // A reader that never reads: the pipe's buffer fills, then every write waits forever.
    let reader = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nonblock())
            .open(&fifo)
            .expect("open the read end")
    };
    const SESSIONS: usize = 8;
    const RECORDS: usize = 6_000;
    let agent = agent_fn(|session: Session| async move {
        for n in 0..RECORDS {
            tracing::info!(n, padding = "x".repeat(64), "a chatty frame");
            if n % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(session);
        Ok(())
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("chatty", agent)
            .slow_session_threshold(Duration::from_millis(100))
            .socket_path(dir.path().join("w.sock"))
            .log_file(&fifo),
    );
    let ids: Vec<_> = (0..SESSIONS)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room").id())
        .collect();
    for id in &ids {
        pool.wait_ended(*id);
    }
    let worker = pool.snapshot().worker;
    assert!(
        worker.log_records_dropped_count > 0,
        "{} records into a pipe nobody reads: some must be dropped",
        SESSIONS * RECORDS
    );
    assert!(
        worker.log_records_written_count + worker.log_records_dropped_count
            <= (SESSIONS * RECORDS) as u64 + 100,
        "{worker:?}"
    );
    // Logging never made a poll wait: any stall here is the host's (preempted), not ours.
    assert_eq!(
        worker.stalls_total_count, worker.stalls_preempted_count,
        "a session's poll waited on the log file"
    );
    drop(pool);
    drop(reader);
}

/// `O_NONBLOCK`, so opening a FIFO's read end does not wait for a writer.
fn libc_o_nonblock() -> i32 {
    0o4000
}
