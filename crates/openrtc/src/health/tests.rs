use openrtc_proto::{
    BreakerState, CallStatsSnapshot, HealthIssueCode as Code, HealthStatus, PoolSnapshot,
    SessionSnapshot, SessionState, StallClass, StallSnapshot, TenantSnapshot, WorkerThreadSnapshot,
};

use super::{HealthThresholds, evaluate};

const NOW_MS: u64 = 1_000_000_000;

fn thresholds() -> HealthThresholds {
    HealthThresholds {
        blocked_after_ms: 5_000,
        stall_window_ms: 60_000,
        fd_warn_ratio: 0.8,
        task_failure_ratio: 0.05,
        steal_warn_pct: 10.0,
    }
}

fn base() -> PoolSnapshot {
    let mut snapshot = PoolSnapshot::default();
    snapshot.taken_at_unix_ms = NOW_MS;
    snapshot.worker.name = "w".into();
    snapshot.worker.uptime_ms = 61_500;
    snapshot.worker.rss_bytes = 100;
    snapshot.worker.open_fds_count = 10;
    snapshot.worker.open_fds_limit_count = Some(1024);
    snapshot
}

fn thread(worker: u32, session: Option<(u64, &str)>, polling_for_ms: u64) -> WorkerThreadSnapshot {
    let mut state = WorkerThreadSnapshot::default();
    state.worker = worker;
    state.tid = 100 + i32::try_from(worker).expect("small");
    if let Some((key, tenant)) = session {
        state.session_id = Some(crate::session::session_id(key));
        state.tenant = Some(tenant.to_owned());
        state.agent = Some("echo".to_owned());
        state.polling_for_ms = Some(polling_for_ms);
    }
    state
}

fn row(key: u64, tenant: &str, stalls: &[(StallClass, u64, u64)]) -> SessionSnapshot {
    let mut row = SessionSnapshot::default();
    row.id = crate::session::session_id(key);
    row.tenant = tenant.to_owned();
    row.recent_stalls = stalls
        .iter()
        .map(|&(class, ago_ms, duration_ms)| {
            let mut stall = StallSnapshot::default();
            stall.class = Some(class);
            stall.ended_at_unix_ms = NOW_MS - ago_ms;
            stall.duration_ns = duration_ms * 1_000_000;
            stall
        })
        .collect();
    row
}

fn codes(snapshot: &PoolSnapshot) -> Vec<Code> {
    evaluate(snapshot, &thresholds())
        .issues
        .iter()
        .map(|issue| issue.code)
        .collect()
}

#[test]
fn a_quiet_worker_is_ok_with_its_figures() {
    let mut snapshot = base();
    snapshot.worker.worker_thread_states =
        vec![thread(0, None, 0), thread(1, Some((3, "acme")), 2)];
    let mut slow = row(4, "acme", &[]);
    slow.state = SessionState::Slow;
    snapshot.sessions = vec![row(3, "acme", &[]), row(5, "acme", &[]), slow];
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Ok);
    assert!(report.issues.is_empty(), "{:?}", report.issues);
    assert_eq!(report.workers.len(), 2);
    assert_eq!(report.sessions[&SessionState::Active], 2);
    assert_eq!(report.sessions[&SessionState::Slow], 1);
    assert_eq!(report.uptime_s, 61);
    assert_eq!(report.resources.rss_bytes, 100);
    assert_eq!(report.resources.fd_limit, Some(1024));
    assert_eq!(report.schema_version, openrtc_proto::HEALTH_VERSION);
    assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["sessions"]["active"], 2);
}

#[test]
fn a_thread_polling_one_session_past_blocked_after_is_critical_and_names_it() {
    let mut snapshot = base();
    snapshot.worker.worker_thread_states = vec![
        thread(0, Some((7, "acme")), 4_999),
        thread(1, Some((9, "globex")), 5_000),
    ];
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Critical);
    assert_eq!(report.issues.len(), 1, "{:?}", report.issues);
    let issue = &report.issues[0];
    assert_eq!(issue.code, Code::WorkerBlocked);
    assert_eq!(issue.session_id, Some(crate::session::session_id(9)));
    assert_eq!(issue.tenant.as_deref(), Some("globex"));
    assert!(issue.message.contains("session s-9"), "{}", issue.message);
    assert!(
        issue.message.contains("worker thread 1 (tid 101)"),
        "{}",
        issue.message
    );
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["status"], "critical");
    assert_eq!(json["issues"][0]["code"], "worker_blocked");
    assert_eq!(json["issues"][0]["session_id"], "s-9");
}

#[test]
fn rss_over_the_limit_is_critical_and_over_the_warning_degraded() {
    let mut snapshot = base();
    snapshot.worker.memory_warn_bytes = Some(80);
    snapshot.worker.memory_limit_bytes = Some(200);
    assert_eq!(codes(&snapshot), [Code::MemoryWarn]);
    assert_eq!(
        evaluate(&snapshot, &thresholds()).status,
        HealthStatus::Degraded
    );
    snapshot.worker.rss_bytes = 200;
    assert_eq!(
        codes(&snapshot),
        [Code::MemoryLimit],
        "the limit replaces the warning"
    );
    assert_eq!(
        evaluate(&snapshot, &thresholds()).status,
        HealthStatus::Critical
    );
    snapshot.worker.rss_bytes = 79;
    assert!(codes(&snapshot).is_empty());
}

#[test]
fn recent_stalls_are_named_by_session_and_preemption_is_the_hosts() {
    let mut snapshot = base();
    snapshot.sessions = vec![
        row(
            1,
            "acme",
            &[
                (StallClass::Sleep, 1_000, 300),
                (StallClass::Cpu, 2_000, 80),
            ],
        ),
        row(2, "globex", &[(StallClass::Preempted, 500, 60)]),
        // Older than the window: not counted.
        row(3, "initech", &[(StallClass::Io, 61_000, 900)]),
    ];
    snapshot.worker.stalls_last_minute_count = 3;
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Degraded);
    let found: Vec<Code> = report.issues.iter().map(|issue| issue.code).collect();
    assert_eq!(found, [Code::HostPreempted, Code::SessionStalls]);
    let host = &report.issues[0];
    assert!(
        host.message.starts_with("host: 1 stall(s)"),
        "{}",
        host.message
    );
    assert_eq!(host.session_id, None, "the host's, not a session's");
    assert_eq!(host.tenant, None);
    let session = &report.issues[1];
    assert_eq!(session.session_id, Some(crate::session::session_id(1)));
    assert_eq!(session.tenant.as_deref(), Some("acme"));
    assert!(session.message.contains("2 time(s)") && session.message.contains("longest 300 ms"));
}

#[test]
fn stalls_of_ended_sessions_are_summed_up() {
    let mut snapshot = base();
    snapshot.worker.stalls_last_minute_count = 4;
    snapshot.sessions = vec![row(1, "acme", &[(StallClass::Sleep, 1_000, 300)])];
    let report = evaluate(&snapshot, &thresholds());
    let found: Vec<Code> = report.issues.iter().map(|issue| issue.code).collect();
    assert_eq!(found, [Code::SessionStalls, Code::RecentStalls]);
    assert!(report.issues[1].message.starts_with("3 more stall(s)"));
}

#[test]
fn only_the_worst_sessions_are_named() {
    let mut snapshot = base();
    snapshot.sessions = (1..=12)
        .map(|key| row(key, "acme", &[(StallClass::Cpu, 1_000, 100 + key)]))
        .collect();
    snapshot.worker.stalls_last_minute_count = 12;
    let report = evaluate(&snapshot, &thresholds());
    let named: Vec<_> = report
        .issues
        .iter()
        .filter(|issue| issue.code == Code::SessionStalls)
        .map(|issue| issue.session_id.expect("named"))
        .collect();
    assert_eq!(named.len(), super::NAMED_STALLED_SESSIONS);
    assert_eq!(named[0], crate::session::session_id(12), "longest first");
    let rest = report.issues.last().expect("a summary");
    assert_eq!(rest.code, Code::RecentStalls);
    assert!(
        rest.message.starts_with("2 more stall(s)"),
        "{}",
        rest.message
    );
}

#[test]
fn an_open_breaker_is_degraded_and_names_its_tenant() {
    let mut snapshot = base();
    for (tenant, state) in [
        ("acme", BreakerState::Open),
        ("globex", BreakerState::HalfOpen),
        ("initech", BreakerState::Closed),
    ] {
        let mut figures = TenantSnapshot::default();
        figures.breaker.state = state;
        figures.breaker.retry_after_ms = Some(1_500);
        snapshot.tenants.insert(tenant.to_owned(), figures);
    }
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.issues.len(), 1, "{:?}", report.issues);
    assert_eq!(report.issues[0].code, Code::BreakerOpen);
    assert_eq!(report.issues[0].tenant.as_deref(), Some("acme"));
    assert!(
        report.issues[0].message.ends_with("retry in 2 s"),
        "{}",
        report.issues[0].message
    );
}

#[test]
fn fds_over_80_percent_of_the_limit_are_degraded() {
    let mut snapshot = base();
    snapshot.worker.open_fds_limit_count = Some(100);
    snapshot.worker.open_fds_count = 80;
    assert!(codes(&snapshot).is_empty(), "80 % is not over 80 %");
    snapshot.worker.open_fds_count = 81;
    assert_eq!(codes(&snapshot), [Code::FdsHigh]);
    snapshot.worker.open_fds_limit_count = None;
    assert!(codes(&snapshot).is_empty(), "no limit known, no verdict");
}

#[test]
fn critical_issues_come_first_and_set_the_status() {
    let mut snapshot = base();
    snapshot.worker.open_fds_limit_count = Some(10);
    snapshot.worker.open_fds_count = 9;
    snapshot.worker.memory_limit_bytes = Some(50);
    snapshot.worker.worker_thread_states = vec![thread(0, Some((5, "acme")), 6_000)];
    let mut figures = TenantSnapshot::default();
    figures.breaker.state = BreakerState::Open;
    snapshot.tenants.insert("acme".into(), figures);
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Critical);
    let found: Vec<Code> = report.issues.iter().map(|issue| issue.code).collect();
    assert_eq!(
        found,
        [
            Code::WorkerBlocked,
            Code::MemoryLimit,
            Code::BreakerOpen,
            Code::FdsHigh
        ]
    );
    assert!(HealthStatus::Critical > HealthStatus::Degraded);
    assert!(HealthStatus::Degraded > HealthStatus::Ok);
}

#[test]
fn thresholds_for_a_snapshot_use_its_blocked_after() {
    let mut snapshot = base();
    snapshot.worker.blocked_after_ms = 300;
    let thresholds = HealthThresholds::for_snapshot(&snapshot);
    assert_eq!(thresholds.blocked_after_ms, 300);
    snapshot.worker.worker_thread_states = vec![thread(0, Some((5, "acme")), 300)];
    assert_eq!(
        evaluate(&snapshot, &thresholds).status,
        HealthStatus::Critical
    );
}

#[test]
fn child_task_failures_over_the_ratio_are_degraded_and_name_the_worst_session() {
    let mut snapshot = base();
    snapshot.worker.tasks_ended_last_minute_count = 100;
    snapshot.worker.tasks_failed_last_minute_count = 4;
    assert!(codes(&snapshot).is_empty(), "4 % is under 5 %");
    snapshot.worker.tasks_failed_last_minute_count = 5;
    let mut quiet = row(1, "acme", &[]);
    quiet.tasks.failed_count = 1;
    let mut worst = row(2, "globex", &[]);
    worst.tasks.failed_count = 3;
    snapshot.sessions = vec![quiet, worst];
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Degraded);
    let issue = &report.issues[0];
    assert_eq!(issue.code, Code::ChildTaskFailures);
    assert_eq!(issue.session_id, Some(crate::session::session_id(2)));
    assert_eq!(issue.tenant.as_deref(), Some("globex"));
    assert!(
        issue.message.starts_with("5 of 100 child task(s)"),
        "{}",
        issue.message
    );
    assert!(
        issue
            .message
            .contains("s-2 (tenant globex, 3 failed child task(s)), s-1"),
        "{}",
        issue.message
    );
    // A failure with nothing else ended is 100 %.
    let mut lone = base();
    lone.worker.tasks_ended_last_minute_count = 1;
    lone.worker.tasks_failed_last_minute_count = 1;
    assert_eq!(codes(&lone), vec![Code::ChildTaskFailures]);
}

#[test]
fn blocking_calls_of_the_last_minute_are_degraded_per_label() {
    let mut snapshot = base();
    snapshot
        .worker
        .calls_blocking_last_minute
        .insert("db.query".into(), 3);
    snapshot
        .worker
        .calls_blocking_last_minute
        .insert("llm.openai".into(), 1);
    let mut blocking = CallStatsSnapshot::default();
    blocking.count = 5;
    blocking.blocking_count = 3;
    let mut offender = row(7, "acme", &[]);
    offender.calls.insert("db.query".into(), blocking);
    let mut clean = CallStatsSnapshot::default();
    clean.count = 9;
    let mut bystander = row(8, "acme", &[]);
    bystander.calls.insert("db.query".into(), clean);
    snapshot.sessions = vec![bystander, offender];
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(
        codes(&snapshot),
        vec![Code::BlockingCalls, Code::BlockingCalls]
    );
    let db = &report.issues[0];
    assert!(
        db.message
            .starts_with("3 tracked call(s) labelled db.query"),
        "{}",
        db.message
    );
    assert_eq!(db.session_id, Some(crate::session::session_id(7)));
    assert!(!db.message.contains("s-8"), "{}", db.message);
    // The session that made the other label's call has ended: none is named.
    let llm = &report.issues[1];
    assert_eq!(llm.session_id, None);
    assert!(!llm.message.contains("live sessions"), "{}", llm.message);
}

#[test]
fn cpu_steal_over_ten_percent_is_the_hosts_trouble() {
    let mut snapshot = base();
    snapshot.worker.host_steal_pct = Some(9.9);
    assert!(codes(&snapshot).is_empty());
    snapshot.worker.host_steal_pct = Some(12.5);
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.issues[0].code, Code::HostSteal);
    assert!(
        report.issues[0].message.starts_with("host: "),
        "{}",
        report.issues[0].message
    );
    assert!(
        report.issues[0].message.contains("12.5 %"),
        "{}",
        report.issues[0].message
    );
    assert_eq!(report.issues[0].session_id, None);
}

#[test]
fn a_stall_issue_counts_the_sessions_it_made_late() {
    let mut snapshot = base();
    let mut offender = row(
        3,
        "acme",
        &[(StallClass::Cpu, 1_000, 300), (StallClass::Cpu, 2_000, 200)],
    );
    offender.recent_stalls[0].victim_count = 4;
    offender.recent_stalls[1].victim_count = 2;
    snapshot.sessions = vec![offender];
    let report = evaluate(&snapshot, &thresholds());
    assert!(
        report.issues[0]
            .message
            .ends_with("longest 300 ms; other sessions were made late 6 time(s)"),
        "{}",
        report.issues[0].message
    );
}

#[test]
fn the_report_carries_the_workers_tasks_and_calls() {
    let mut snapshot = base();
    snapshot.worker.tasks.spawned_count = 4;
    snapshot.worker.tasks.running_count = 1;
    let mut stats = CallStatsSnapshot::default();
    stats.count = 2;
    snapshot.calls.insert("llm".into(), stats);
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.tasks, snapshot.worker.tasks);
    assert_eq!(report.calls, snapshot.calls);
}

#[test]
fn a_worker_not_registered_with_its_livekit_server_is_degraded_with_the_reason() {
    let mut snapshot = base();
    let mut livekit = openrtc_proto::LiveKitWorkerSnapshot::default();
    livekit.url = "ws://127.0.0.1:7880/agent".into();
    livekit.connected = true;
    snapshot.worker.livekit = Some(livekit.clone());
    assert!(codes(&snapshot).is_empty(), "registered: no issue");
    livekit.connected = false;
    livekit.failed_attempt_count = 3;
    livekit.last_error = Some("the server refused the worker's token (HTTP 401)".into());
    snapshot.worker.livekit = Some(livekit);
    let report = evaluate(&snapshot, &thresholds());
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.issues[0].code, Code::LivekitDisconnected);
    assert_eq!(
        report.issues[0].message,
        "not registered with the LiveKit server at ws://127.0.0.1:7880/agent (3 failed attempts \
         in a row: the server refused the worker's token (HTTP 401)); no new LiveKit job comes \
         until it is"
    );
}
