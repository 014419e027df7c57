//! Without the tracking allocator: memory falls back to an equal share of RSS, and says so.
//!
//! A test binary of its own because the other one installs the tracking allocator.

use std::time::Duration;

use openrtc::proto::MemSource;
use openrtc::{AgentPool, JobRequest, Session, agent_fn};

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use support::{RunningPool, TestPool as _, wait_for};

#[test]
fn memory_is_an_equal_share_of_rss_and_is_marked_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = AgentPool::builder()
        .agent(
            "idle",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok(())
            }),
        )
        .session_memory_limit(1024)
        .drain_timeout(Duration::ZERO)
        .worker_threads(2)
        .socket_path(dir.path().join("w.sock"))
        .build()
        .expect("valid configuration");
    // Launched before the pool runs: the sessions start with it.
    let handle = pool.handle();
    for _ in 0..4 {
        handle.launch(JobRequest::new()).expect("room");
    }
    let running = RunningPool::run(pool);
    let snapshot = wait_for("the sessions to start", || {
        let snapshot = running.snapshot();
        (snapshot.worker.uptime_ms > 0 && snapshot.sessions.iter().all(|row| row.poll_count > 0))
            .then_some(snapshot)
    });
    assert_eq!(snapshot.worker.mem_source, MemSource::RssShare);
    assert!(!snapshot.worker.mem_source.is_exact());
    assert_eq!(snapshot.worker.tracked_bytes, 0);
    let share = snapshot.worker.rss_bytes / 4;
    for row in &snapshot.sessions {
        assert_eq!(
            row.mem_bytes, share,
            "each session shows an equal share of RSS"
        );
        assert!(row.mem_peak_bytes >= share);
        assert_eq!(
            row.alloc_count, 0,
            "allocations are not counted without tracking"
        );
    }
    assert_eq!(
        serde_json::to_value(snapshot.worker.mem_source).expect("serializes"),
        "rss_share"
    );
    // The cap needs the tracking allocator: without it nothing is killed.
    assert_eq!(snapshot.worker.totals.killed_count, 0);
    running.drain_and_join().expect("the pool ran");
}
