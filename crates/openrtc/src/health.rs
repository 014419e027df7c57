//! Health evaluation: a pure verdict on one [`PoolSnapshot`] (no I/O, no clock), which the
//! HTTP `/health` endpoint serves and anyone holding a snapshot can compute.
//!
//! Rules, worst first:
//! - `critical`: a worker thread polling one session for at least `blocked_after` (the issue
//!   names the session and its tenant); RSS at or over the worker's memory limit.
//! - `degraded`: stalls within the last minute, named by session for the live ones (with the
//!   sessions they made late) and reported as the host's when classed `preempted` (the thread
//!   was runnable but the host did not run it); CPU steal over 10 % (the host's too); a
//!   tenant's breaker open (named); RSS at or over the warning level; open file descriptors
//!   over 80 % of the limit; child tasks failing (panicking) over 5 % of those that ended in
//!   the last minute; tracked calls that blocked a worker thread in the last minute, per label,
//!   with the live sessions that made them; a worker taking LiveKit jobs that is not
//!   registered with its server (with the last error).
//!
//! `status` is the worst severity among the issues, `ok` with none.

use openrtc_proto::{
    BreakerState, HEALTH_VERSION, HealthIssue, HealthIssueCode, HealthReport, HealthResources,
    HealthStatus, PoolSnapshot, SessionId, StallClass,
};

/// Sessions named one by one for their stalls, at most; the rest are summed up.
const NAMED_STALLED_SESSIONS: usize = 10;

/// The levels a health evaluation applies beyond those the snapshot carries (memory limit
/// and warning level are the worker's own, read from the snapshot).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// A worker thread polling one session this long is blocked.
    pub blocked_after_ms: u64,
    /// Stalls this recent make the worker degraded.
    pub stall_window_ms: u64,
    /// Open file descriptors over this share of the limit make the worker degraded.
    pub fd_warn_ratio: f64,
    /// Child tasks failing at least this share of those that ended in the last minute make the
    /// worker degraded.
    pub task_failure_ratio: f64,
    /// CPU steal at least this high (% of the host's CPU time) makes the worker degraded.
    pub steal_warn_pct: f64,
}

impl HealthThresholds {
    /// The thresholds a worker applies to its own snapshot: its `blocked_after`, a minute of
    /// stalls, 80 % of the fd limit, 5 % of child tasks failing, 10 % CPU steal.
    #[must_use]
    pub fn for_snapshot(snapshot: &PoolSnapshot) -> Self {
        Self {
            blocked_after_ms: snapshot.worker.blocked_after_ms,
            stall_window_ms: 60_000,
            fd_warn_ratio: 0.8,
            task_failure_ratio: 0.05,
            steal_warn_pct: 10.0,
        }
    }
}

/// Judges `snapshot`: its issues, worst first, and the status they add up to.
#[must_use]
pub fn evaluate(snapshot: &PoolSnapshot, thresholds: &HealthThresholds) -> HealthReport {
    let worker = &snapshot.worker;
    let mut issues = Vec::new();
    blocked_threads(snapshot, thresholds, &mut issues);
    memory(snapshot, &mut issues);
    stalls(snapshot, thresholds, &mut issues);
    host_steal(snapshot, thresholds, &mut issues);
    child_task_failures(snapshot, thresholds, &mut issues);
    blocking_calls(snapshot, &mut issues);
    for (tenant, figures) in &snapshot.tenants {
        if figures.breaker.state == BreakerState::Open {
            let retry = figures
                .breaker
                .retry_after_ms
                .map_or_else(String::new, |ms| {
                    format!("; retry in {} s", ms.div_ceil(1000))
                });
            let mut issue = HealthIssue::new(
                HealthIssueCode::BreakerOpen,
                HealthStatus::Degraded,
                format!(
                    "tenant {tenant}: circuit breaker open after {} failures of {} sessions; its new sessions are refused{retry}",
                    figures.breaker.window_failures_count, figures.breaker.window_samples_count
                ),
            );
            issue.tenant = Some(tenant.clone());
            issues.push(issue);
        }
    }
    if let Some(livekit) = worker.livekit.as_ref().filter(|livekit| !livekit.connected) {
        let why = livekit
            .last_error
            .as_deref()
            .map_or_else(String::new, |error| format!(": {error}"));
        issues.push(HealthIssue::new(
            HealthIssueCode::LivekitDisconnected,
            HealthStatus::Degraded,
            format!(
                "not registered with the LiveKit server at {} ({} failed attempts in a row{why}); \
                 no new LiveKit job comes until it is",
                livekit.url, livekit.failed_attempt_count
            ),
        ));
    }
    if let Some(limit) = worker.open_fds_limit_count.filter(|limit| *limit > 0) {
        let open = u64::from(worker.open_fds_count);
        if open as f64 > limit as f64 * thresholds.fd_warn_ratio {
            issues.push(HealthIssue::new(
                HealthIssueCode::FdsHigh,
                HealthStatus::Degraded,
                format!(
                    "{open} open file descriptors, over {:.0} % of the limit of {limit}",
                    thresholds.fd_warn_ratio * 100.0
                ),
            ));
        }
    }
    // Stable: issues of one severity keep the order of the rules above.
    issues.sort_by_key(|issue| std::cmp::Reverse(issue.severity));
    let status = issues
        .iter()
        .map(|issue| issue.severity)
        .max()
        .unwrap_or(HealthStatus::Ok);
    let mut report = HealthReport::default();
    report.schema_version = HEALTH_VERSION;
    report.status = status;
    report.issues = issues;
    report.workers.clone_from(&worker.worker_thread_states);
    for row in &snapshot.sessions {
        *report.sessions.entry(row.state).or_default() += 1;
    }
    report.tasks = worker.tasks;
    report.calls.clone_from(&snapshot.calls);
    let mut resources = HealthResources::default();
    resources.rss_bytes = worker.rss_bytes;
    resources.cpu_percent = worker.process_cpu_pct;
    resources.open_fds = worker.open_fds_count;
    resources.fd_limit = worker.open_fds_limit_count;
    resources.threads = worker.threads_count;
    report.resources = resources;
    report.uptime_s = worker.uptime_ms / 1000;
    report.version = env!("CARGO_PKG_VERSION").to_owned();
    report.worker.clone_from(&worker.name);
    report.taken_at_unix_ms = snapshot.taken_at_unix_ms;
    report
}

/// A worker thread polling one session past `blocked_after`: critical, naming the session.
fn blocked_threads(
    snapshot: &PoolSnapshot,
    thresholds: &HealthThresholds,
    issues: &mut Vec<HealthIssue>,
) {
    for state in &snapshot.worker.worker_thread_states {
        let (Some(session_id), Some(polling_for_ms)) = (state.session_id, state.polling_for_ms)
        else {
            continue;
        };
        if polling_for_ms < thresholds.blocked_after_ms {
            continue;
        }
        let tenant = state.tenant.as_deref().unwrap_or("?");
        let agent = state.agent.as_deref().unwrap_or("?");
        let mut issue = HealthIssue::new(
            HealthIssueCode::WorkerBlocked,
            HealthStatus::Critical,
            format!(
                "worker thread {} (tid {}) blocked for {polling_for_ms} ms inside a poll of session {session_id} (agent {agent}, tenant {tenant}), past blocked_after {} ms",
                state.worker, state.tid, thresholds.blocked_after_ms
            ),
        );
        issue.session_id = Some(session_id);
        issue.tenant.clone_from(&state.tenant);
        issues.push(issue);
    }
}

/// RSS over the memory limit (critical) or over the warning level (degraded).
fn memory(snapshot: &PoolSnapshot, issues: &mut Vec<HealthIssue>) {
    let worker = &snapshot.worker;
    let rss = worker.rss_bytes;
    if let Some(limit) = worker.memory_limit_bytes.filter(|limit| rss >= *limit) {
        issues.push(HealthIssue::new(
            HealthIssueCode::MemoryLimit,
            HealthStatus::Critical,
            format!("worker RSS {rss} bytes is over its memory limit of {limit} bytes"),
        ));
    } else if let Some(warn) = worker.memory_warn_bytes.filter(|warn| rss >= *warn) {
        issues.push(HealthIssue::new(
            HealthIssueCode::MemoryWarn,
            HealthStatus::Degraded,
            format!("worker RSS {rss} bytes is over its warning level of {warn} bytes"),
        ));
    }
}

/// Stalls within the window: the host's (preempted) apart, the live sessions' named, the
/// rest summed up.
fn stalls(snapshot: &PoolSnapshot, thresholds: &HealthThresholds, issues: &mut Vec<HealthIssue>) {
    let since_ms = snapshot
        .taken_at_unix_ms
        .saturating_sub(thresholds.stall_window_ms);
    let mut host_count = 0_u64;
    // Per live session: (stalls, longest in ns, id, tenant, sessions delayed).
    let mut stalled: Vec<(u64, u64, SessionId, &str, u64)> = Vec::new();
    for row in &snapshot.sessions {
        let mut count = 0_u64;
        let mut longest_ns = 0_u64;
        let mut delayed = 0_u64;
        for stall in row
            .recent_stalls
            .iter()
            .filter(|stall| stall.ended_at_unix_ms >= since_ms)
        {
            if stall.class == Some(StallClass::Preempted) {
                host_count += 1;
            } else {
                count += 1;
                longest_ns = longest_ns.max(stall.duration_ns);
                delayed += stall.victim_count;
            }
        }
        if count > 0 {
            stalled.push((count, longest_ns, row.id, &row.tenant, delayed));
        }
    }
    let window_s = thresholds.stall_window_ms / 1000;
    if host_count > 0 {
        issues.push(HealthIssue::new(
            HealthIssueCode::HostPreempted,
            HealthStatus::Degraded,
            format!(
                "host: {host_count} stall(s) in the last {window_s} s were preemption: worker threads were runnable but the host did not run them (CPU contention or steal), not a session's code"
            ),
        ));
    }
    stalled.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let named: u64 = stalled
        .iter()
        .take(NAMED_STALLED_SESSIONS)
        .map(|(count, ..)| count)
        .sum();
    let beyond: u64 = stalled
        .iter()
        .skip(NAMED_STALLED_SESSIONS)
        .map(|(count, ..)| count)
        .sum();
    for (count, longest_ns, id, tenant, delayed) in stalled.iter().take(NAMED_STALLED_SESSIONS) {
        let late = if *delayed > 0 {
            format!("; other sessions were made late {delayed} time(s)")
        } else {
            String::new()
        };
        let mut issue = HealthIssue::new(
            HealthIssueCode::SessionStalls,
            HealthStatus::Degraded,
            format!(
                "session {id} (tenant {tenant}) blocked a worker thread {count} time(s) in the last {window_s} s, longest {} ms{late}",
                longest_ns / 1_000_000
            ),
        );
        issue.session_id = Some(*id);
        issue.tenant = Some((*tenant).to_owned());
        issues.push(issue);
    }
    // The worker's count of the last minute includes stalls of sessions that have ended
    // since (and is refreshed once a second, so it may lag the rows).
    let rest = snapshot
        .worker
        .stalls_last_minute_count
        .saturating_sub(named + host_count)
        .max(beyond);
    if rest > 0 {
        issues.push(HealthIssue::new(
            HealthIssueCode::RecentStalls,
            HealthStatus::Degraded,
            format!(
                "{rest} more stall(s) in the last minute, of sessions not named above (ended since, or past the {NAMED_STALLED_SESSIONS} worst)"
            ),
        ));
    }
}

/// CPU steal over the threshold: the host's trouble.
fn host_steal(
    snapshot: &PoolSnapshot,
    thresholds: &HealthThresholds,
    issues: &mut Vec<HealthIssue>,
) {
    let Some(steal_pct) = snapshot
        .worker
        .host_steal_pct
        .filter(|pct| *pct >= thresholds.steal_warn_pct)
    else {
        return;
    };
    issues.push(HealthIssue::new(
        HealthIssueCode::HostSteal,
        HealthStatus::Degraded,
        format!(
            "host: the hypervisor stole {steal_pct:.1} % of this host's CPU time over the last second (at or over {:.0} %): every session runs late, through no fault of its own",
            thresholds.steal_warn_pct
        ),
    ));
}

/// Child tasks failing (panicking) over the threshold share of those that ended in the last
/// minute; names the live sessions with the most failed child tasks.
fn child_task_failures(
    snapshot: &PoolSnapshot,
    thresholds: &HealthThresholds,
    issues: &mut Vec<HealthIssue>,
) {
    let worker = &snapshot.worker;
    let (failed, ended) = (
        worker.tasks_failed_last_minute_count,
        worker.tasks_ended_last_minute_count,
    );
    if failed == 0 || (failed as f64) < ended as f64 * thresholds.task_failure_ratio {
        return;
    }
    let mut sessions: Vec<(u64, SessionId, &str)> = snapshot
        .sessions
        .iter()
        .filter(|row| row.tasks.failed_count > 0)
        .map(|row| (row.tasks.failed_count, row.id, row.tenant.as_str()))
        .collect();
    sessions.sort_by_key(|session| std::cmp::Reverse(session.0));
    let mut issue = HealthIssue::new(
        HealthIssueCode::ChildTaskFailures,
        HealthStatus::Degraded,
        format!(
            "{failed} of {ended} child task(s) that ended in the last minute failed (panicked), at or over {:.0} %{}",
            thresholds.task_failure_ratio * 100.0,
            named_sessions(&sessions, "failed child task(s)")
        ),
    );
    if let Some((_, id, tenant)) = sessions.first() {
        issue.session_id = Some(*id);
        issue.tenant = Some((*tenant).to_owned());
    }
    issues.push(issue);
}

/// Tracked calls that blocked a worker thread in the last minute, one issue per label; names
/// the live sessions with the most blocking calls of it.
fn blocking_calls(snapshot: &PoolSnapshot, issues: &mut Vec<HealthIssue>) {
    for (label, count) in &snapshot.worker.calls_blocking_last_minute {
        let mut sessions: Vec<(u64, SessionId, &str)> = snapshot
            .sessions
            .iter()
            .filter_map(|row| {
                let blocking = row.calls.get(label)?.blocking_count;
                (blocking > 0).then_some((blocking, row.id, row.tenant.as_str()))
            })
            .collect();
        sessions.sort_by_key(|session| std::cmp::Reverse(session.0));
        let mut issue = HealthIssue::new(
            HealthIssueCode::BlockingCalls,
            HealthStatus::Degraded,
            format!(
                "{count} tracked call(s) labelled {label} blocked a worker thread in the last minute: synchronous work on a worker thread (move it to track_blocking or spawn_blocking){}",
                named_sessions(&sessions, "blocking call(s)")
            ),
        );
        if let Some((_, id, tenant)) = sessions.first() {
            issue.session_id = Some(*id);
            issue.tenant = Some((*tenant).to_owned());
        }
        issues.push(issue);
    }
}

/// "; live sessions: s-1 (tenant acme, 3 what), …" for the first three, or nothing.
fn named_sessions(sessions: &[(u64, SessionId, &str)], what: &str) -> String {
    if sessions.is_empty() {
        return String::new();
    }
    let named: Vec<String> = sessions
        .iter()
        .take(3)
        .map(|(count, id, tenant)| format!("{id} (tenant {tenant}, {count} {what})"))
        .collect();
    let more = sessions.len().saturating_sub(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("; live sessions: {}{more}", named.join(", "))
}

#[cfg(test)]
mod tests;
