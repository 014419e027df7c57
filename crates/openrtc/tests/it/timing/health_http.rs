//! `/health` and `/metrics` while sessions block worker threads: critical naming the session
//! while one blocks past `blocked_after`, ok again after; both answer while every worker
//! thread is blocked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openrtc::proto::{HealthIssueCode, HealthReport, HealthStatus};
use openrtc::{AgentPool, JobRequest, Session, agent_fn};

use crate::http::{get, http_addr};
use crate::support::{RunningPool, TestPool as _, wait_for};

/// An agent that blocks its worker thread (a `std::thread::sleep`) until `release` is set,
/// then waits to be cancelled.
fn blocker(release: Arc<AtomicBool>) -> impl openrtc::Agent {
    agent_fn(move |session: Session| {
        let release = Arc::clone(&release);
        async move {
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            session.cancelled().await;
            Ok::<(), openrtc::AgentError>(())
        }
    })
}

fn health(addr: std::net::SocketAddr) -> (u16, HealthReport) {
    let (status, body) = get(addr, "/health");
    let report = serde_json::from_str(&body).unwrap_or_else(|error| panic!("{error}: {body}"));
    (status, report)
}

#[test]
fn health_is_critical_naming_the_session_while_it_blocks_a_thread_and_ok_after() {
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("blocker", blocker(Arc::clone(&release)))
            .worker_name("health-blocked")
            .worker_threads(2)
            .blocked_after(Duration::from_millis(300))
            // No stall is recorded for the block: "ok after" is then ok, not degraded by a
            // stall of the last minute.
            .slow_session_threshold(Duration::from_secs(600))
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    );
    let addr = http_addr(&pool);
    assert_eq!(health(addr).1.status, HealthStatus::Ok);
    let session = pool
        .handle()
        .launch(JobRequest::new().tenant("acme"))
        .expect("room");
    let (status, report) = wait_for("health to turn critical", || {
        let (status, report) = health(addr);
        (report.status == HealthStatus::Critical).then_some((status, report))
    });
    assert_eq!(status, 503);
    let issue = &report.issues[0];
    assert_eq!(issue.code, HealthIssueCode::WorkerBlocked);
    assert_eq!(issue.session_id, Some(session.id()));
    assert_eq!(issue.tenant.as_deref(), Some("acme"));
    assert!(
        report
            .workers
            .iter()
            .any(|worker| worker.blocked && worker.session_id == Some(session.id())),
        "{report:?}"
    );
    release.store(true, Ordering::Release);
    let (status, report) = wait_for("health to be ok again", || {
        let (status, report) = health(addr);
        (report.status == HealthStatus::Ok).then_some((status, report))
    });
    assert_eq!(status, 200);
    assert!(report.issues.is_empty(), "{report:?}");
}

#[test]
fn health_and_metrics_answer_while_every_worker_thread_is_blocked() {
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("blocker", blocker(Arc::clone(&release)))
            .worker_name("health-all-blocked")
            .worker_threads(2)
            .blocked_after(Duration::from_millis(200))
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    );
    let addr = http_addr(&pool);
    let sessions: Vec<_> = (0..2)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room"))
        .collect();
    // Both worker threads inside a session's poll, past blocked_after.
    wait_for("both worker threads to be blocked", || {
        let states = pool.snapshot().worker.worker_thread_states;
        (states.iter().filter(|state| state.blocked).count() == 2).then_some(())
    });
    let started = Instant::now();
    let (status, report) = health(addr);
    let health_took = started.elapsed();
    assert_eq!(status, 503);
    let named: Vec<_> = report
        .issues
        .iter()
        .filter(|issue| issue.code == HealthIssueCode::WorkerBlocked)
        .filter_map(|issue| issue.session_id)
        .collect();
    for session in &sessions {
        assert!(named.contains(&session.id()), "{report:?}");
    }
    let started = Instant::now();
    let (status, text) = get(addr, "/metrics");
    let metrics_took = started.elapsed();
    assert_eq!(status, 200);
    assert!(text.contains("openrtc_worker_threads_blocked 2"), "{text}");
    // Generous bounds for busy CI machines; they answer in milliseconds.
    assert!(health_took < Duration::from_secs(2), "{health_took:?}");
    assert!(metrics_took < Duration::from_secs(2), "{metrics_took:?}");
    release.store(true, Ordering::Release);
}
