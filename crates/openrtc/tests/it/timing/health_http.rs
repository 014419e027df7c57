//! `/health` and `/metrics` while sessions block worker threads: critical naming the session
//! while one blocks past `blocked_after`, ok again after; both answer while every worker
//! thread is blocked; 50 probes at once during 200 sessions all answer under 100 ms.

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

/// An agent that does a little work on a 20 ms frame clock until cancelled, like a call.
fn framed() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        let mut frames = tokio::time::interval(Duration::from_millis(20));
        let mut state = 0.0_f64;
        loop {
            tokio::select! {
                _ = frames.tick() => {
                    for sample in 0..320 {
                        state = (state + f64::from(sample)).sin();
                    }
                    std::hint::black_box(state);
                }
                () = session.cancelled() => break,
            }
        }
        Ok::<(), openrtc::AgentError>(())
    })
}

/// A fleet's probes arriving at once while the worker carries 200 calls: the burst costs one
/// snapshot (a verdict answers for 100 ms), so every probe answers well under 100 ms.
#[test]
fn fifty_concurrent_health_requests_during_200_sessions_all_answer_under_100_ms() {
    const SESSIONS: usize = 200;
    const REQUESTS: usize = 50;
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("framed", framed())
            .worker_name("health-load")
            .worker_threads(2)
            .max_concurrent_sessions(256)
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    );
    let addr = http_addr(&pool);
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room"))
        .collect();
    wait_for("every session live", || {
        (pool.snapshot().sessions.len() == SESSIONS).then_some(())
    });
    let start = Arc::new(std::sync::Barrier::new(REQUESTS));
    let askers: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let started = Instant::now();
                let (status, report) = health(addr);
                (started.elapsed(), status, report)
            })
        })
        .collect();
    let mut took: Vec<Duration> = Vec::new();
    for asker in askers {
        let (elapsed, status, report) = asker.join().expect("the asker thread");
        assert_eq!(status, 200, "{report:?}");
        assert_ne!(report.status, HealthStatus::Critical, "{report:?}");
        let live: u64 = report.sessions.values().sum();
        assert_eq!(live, SESSIONS as u64, "{report:?}");
        took.push(elapsed);
    }
    took.sort();
    let slowest = took[REQUESTS - 1];
    eprintln!(
        "50 concurrent /health with {SESSIONS} sessions: median {:?}, slowest {slowest:?}",
        took[REQUESTS / 2]
    );
    assert!(
        slowest < Duration::from_millis(100),
        "slowest {slowest:?}; all: {took:?}"
    );
    drop(sessions);
}

/// An agent that makes one tracked call that holds its worker thread for 80 ms (a synchronous
/// client), spawns a child task that panics, then waits to be cancelled.
fn careless() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session
            .track_value("db.query", async {
                std::thread::sleep(Duration::from_millis(80));
            })
            .await;
        let child = session.spawn(async {
            panic!("a child task's bug");
        });
        let _ = child.await;
        session.cancelled().await;
        Ok::<(), openrtc::AgentError>(())
    })
}

#[test]
fn blocking_calls_and_failing_child_tasks_are_degraded_and_name_their_session() {
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("careless", careless())
            .worker_name("health-careless")
            .worker_threads(2)
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    );
    let addr = http_addr(&pool);
    let session = pool
        .handle()
        .launch(JobRequest::new().tenant("acme"))
        .expect("room");
    // The watchdog counts the last minute once a second.
    let report = wait_for("both issues in /health", || {
        let (_, report) = health(addr);
        let codes: Vec<_> = report.issues.iter().map(|issue| issue.code).collect();
        (codes.contains(&HealthIssueCode::BlockingCalls)
            && codes.contains(&HealthIssueCode::ChildTaskFailures))
        .then_some(report)
    });
    assert_eq!(report.status, HealthStatus::Degraded, "{report:?}");
    for code in [
        HealthIssueCode::BlockingCalls,
        HealthIssueCode::ChildTaskFailures,
    ] {
        let issue = report
            .issues
            .iter()
            .find(|issue| issue.code == code)
            .expect("the issue");
        assert_eq!(issue.session_id, Some(session.id()), "{issue:?}");
        assert_eq!(issue.tenant.as_deref(), Some("acme"), "{issue:?}");
    }
    let blocking = report
        .issues
        .iter()
        .find(|issue| issue.code == HealthIssueCode::BlockingCalls)
        .expect("the issue");
    assert!(
        blocking
            .message
            .starts_with("1 tracked call(s) labelled db.query"),
        "{}",
        blocking.message
    );
    assert_eq!(report.calls["db.query"].blocking_count, 1, "{report:?}");
    assert_eq!(report.tasks.panicked_count, 1, "{report:?}");
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.worker.calls_blocking_last_minute["db.query"], 1);
    assert_eq!(snapshot.worker.tasks_failed_last_minute_count, 1);
    assert_eq!(snapshot.worker.tasks_ended_last_minute_count, 1);
}
