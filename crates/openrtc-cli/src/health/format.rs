//! The readable text of `openrtc health`: the summary of one report ([`summary`]: status,
//! issues, busiest sessions, resources, child tasks and tracked calls) and the one line per
//! change of `--continuous` ([`change_line`]). Pure: colour is decided by the caller.

use std::fmt::Write as _;

use openrtc_proto::{HealthIssueCode, HealthStatus};

use super::judge::{Observation, State, Verdict};
use crate::top::format::clean_text;

/// How many busy worker threads the summary lists at most.
const MAX_BUSY_LISTED: usize = 5;

/// How many tracked call labels the summary lists at most.
const MAX_CALLS_LISTED: usize = 8;

/// A state's name, in colour when `color` (green ok, yellow degraded, red otherwise).
#[must_use]
pub fn paint(state: State, color: bool) -> String {
    let name = state.as_str();
    if !color {
        return name.to_owned();
    }
    let code = match state {
        State::Health(HealthStatus::Ok) => "32",
        State::Health(HealthStatus::Degraded) => "33",
        _ => "1;31",
    };
    format!("\x1b[{code}m{name}\x1b[0m")
}

/// The wire name of an issue code (`session_stalls`).
#[must_use]
pub fn code_name(code: HealthIssueCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// The full summary of one observation, each line ending in a newline: status, worker and
/// uptime; the issues; the busiest worker threads; resources and sessions. Unreachable or bad
/// answers are one line.
#[must_use]
pub fn summary(observation: &Observation, url: &str, color: bool) -> String {
    let verdict = match observation {
        Observation::Report(verdict) => verdict,
        Observation::Unreachable(message) | Observation::BadAnswer(message) => {
            return format!(
                "status: {}  ({url}): {}\n",
                paint(observation.state(), color),
                clean_text(message, usize::MAX)
            );
        }
    };
    let report = &verdict.report;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "status: {}  worker {} (openrtc {}), up {}  ({url})",
        paint(State::Health(verdict.status), color),
        clean_text(&report.worker, 64),
        clean_text(&report.version, 32),
        uptime(report.uptime_s)
    );
    let issue_count = report.issues.len() + verdict.client_issues.len();
    if issue_count > 0 {
        let _ = writeln!(text, "issues ({issue_count}):");
    }
    for issue in &verdict.client_issues {
        let _ = writeln!(
            text,
            "  {}  {}",
            issue.code,
            clean_text(&issue.message, 200)
        );
    }
    for issue in &report.issues {
        let mut about = String::new();
        if let Some(session) = issue.session_id {
            let _ = write!(about, " session {session}");
        }
        if let Some(tenant) = &issue.tenant {
            let _ = write!(about, " tenant {}", clean_text(tenant, 64));
        }
        let _ = writeln!(
            text,
            "  {} {}{about}: {}",
            code_name(issue.code),
            issue.severity.as_str(),
            clean_text(&issue.message, 200)
        );
    }
    let mut busy: Vec<_> = report
        .workers
        .iter()
        .filter(|thread| thread.session_id.is_some())
        .collect();
    busy.sort_by_key(|thread| std::cmp::Reverse(thread.polling_for_ms.unwrap_or(0)));
    if !busy.is_empty() {
        let _ = writeln!(text, "busiest sessions:");
    }
    for thread in busy.iter().take(MAX_BUSY_LISTED) {
        let session = thread
            .session_id
            .map(|session| session.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  {session} tenant {} agent {}: polled for {} ms on worker thread {}{}",
            clean_text(thread.tenant.as_deref().unwrap_or("-"), 64),
            clean_text(thread.agent.as_deref().unwrap_or("-"), 64),
            thread.polling_for_ms.unwrap_or(0),
            thread.worker,
            if thread.blocked { ", blocked" } else { "" }
        );
    }
    let resources = &report.resources;
    let fds = match resources.fd_limit {
        Some(limit) => format!("{}/{limit}", resources.open_fds),
        None => resources.open_fds.to_string(),
    };
    let sessions = if report.sessions.is_empty() {
        "none".to_owned()
    } else {
        report
            .sessions
            .iter()
            .map(|(state, count)| format!("{} {count}", state_name(state)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        text,
        "resources: rss {:.1} MiB, cpu {:.1}%, fds {fds}, threads {}; sessions: {sessions}",
        mib(resources.rss_bytes),
        resources.cpu_percent,
        resources.threads
    );
    let tasks = &report.tasks;
    if !tasks.is_empty() {
        let _ = writeln!(
            text,
            "child tasks: {} spawned, {} running, {} completed, {} failed, {} cancelled",
            tasks.spawned_count,
            tasks.running_count,
            tasks.completed_count,
            tasks.failed_count,
            tasks.cancelled_count
        );
    }
    calls(&mut text, report);
    text
}

/// The tracked calls, worst first (blocking, then failed, then most made), at most
/// [`MAX_CALLS_LISTED`] labels.
fn calls(text: &mut String, report: &openrtc_proto::HealthReport) {
    let mut labels: Vec<_> = report.calls.iter().collect();
    labels.sort_by_key(|(_, stats)| {
        std::cmp::Reverse((stats.blocking_count, stats.failed_count, stats.count))
    });
    if !labels.is_empty() {
        let _ = writeln!(text, "tracked calls:");
    }
    for (label, stats) in labels.iter().take(MAX_CALLS_LISTED) {
        let _ = writeln!(
            text,
            "  {}: {} calls, {} failed, {} slow, {} blocking; p50 {} p99 {} max {}",
            clean_text(label, 64),
            stats.count,
            stats.failed_count,
            stats.slow_count,
            stats.blocking_count,
            duration_us(stats.p50_us),
            duration_us(stats.p99_us),
            duration_us(stats.max_us)
        );
    }
    if labels.len() > MAX_CALLS_LISTED {
        let _ = writeln!(
            text,
            "  and {} more label(s)",
            labels.len() - MAX_CALLS_LISTED
        );
    }
}

/// `850 µs`, `12 ms`, `2.5 s`.
#[expect(clippy::cast_precision_loss, reason = "a figure for people")]
fn duration_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 10_000_000 {
        format!("{} ms", us / 1_000)
    } else {
        format!("{:.1} s", us as f64 / 1e6)
    }
}

/// The one line `--continuous` prints when the state changes (without newline): the time
/// (`at`, already formatted), the state, and the issue codes or the reason.
#[must_use]
pub fn change_line(at: &str, observation: &Observation, color: bool) -> String {
    let state = paint(observation.state(), color);
    match observation {
        Observation::Report(verdict) => {
            format!("{at} {state} {}", issue_codes(verdict))
        }
        Observation::Unreachable(message) | Observation::BadAnswer(message) => {
            format!("{at} {state} {}", clean_text(message, 200))
        }
    }
}

/// `worker NAME: N issues (code session, …)`, or `no issues`.
fn issue_codes(verdict: &Verdict) -> String {
    let name = clean_text(&verdict.report.worker, 64);
    let mut codes: Vec<String> = verdict
        .client_issues
        .iter()
        .map(|issue| issue.code.to_owned())
        .collect();
    codes.extend(verdict.report.issues.iter().map(|issue| {
        match (issue.session_id, &issue.tenant) {
            (Some(session), _) => format!("{} {session}", code_name(issue.code)),
            (None, Some(tenant)) => format!("{} {}", code_name(issue.code), clean_text(tenant, 64)),
            (None, None) => code_name(issue.code),
        }
    }));
    match codes.len() {
        0 => format!("worker {name}: no issues"),
        1 => format!("worker {name}: 1 issue ({})", codes.join(", ")),
        count => format!("worker {name}: {count} issues ({})", codes.join(", ")),
    }
}

/// A session state's wire name.
fn state_name(state: &openrtc_proto::SessionState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// Bytes in MiB.
#[expect(clippy::cast_precision_loss, reason = "a figure for people")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `3d 4h`, `2h 5m`, `5m 3s`, `42s`.
#[must_use]
pub fn uptime(seconds: u64) -> String {
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use openrtc_proto::{
        CallStatsSnapshot, HEALTH_VERSION, HealthIssue, HealthReport, SessionId, SessionState,
        WorkerThreadSnapshot,
    };

    use super::super::judge::ClientIssue;
    use super::*;

    fn verdict() -> Verdict {
        let mut report = HealthReport::default();
        report.schema_version = HEALTH_VERSION;
        report.status = HealthStatus::Critical;
        report.worker = "edge".to_owned();
        report.version = "0.1.0".to_owned();
        report.uptime_s = 3725;
        let mut blocked = HealthIssue::new(
            HealthIssueCode::WorkerBlocked,
            HealthStatus::Critical,
            "worker thread 1 has polled s-7 for 6000 ms",
        );
        blocked.session_id = Some(SessionId::from_u64(7).expect("a session id"));
        blocked.tenant = Some("acme".to_owned());
        report.issues.push(blocked);
        let mut thread = WorkerThreadSnapshot::default();
        thread.worker = 1;
        thread.session_id = Some(SessionId::from_u64(7).expect("a session id"));
        thread.tenant = Some("acme".to_owned());
        thread.agent = Some("stall".to_owned());
        thread.polling_for_ms = Some(6000);
        thread.blocked = true;
        report.workers.push(thread);
        report.workers.push(WorkerThreadSnapshot::default());
        report.sessions.insert(SessionState::Active, 3);
        report.resources.rss_bytes = 64 * 1024 * 1024;
        report.resources.cpu_percent = 12.5;
        report.resources.open_fds = 20;
        report.resources.fd_limit = Some(1024);
        report.resources.threads = 9;
        report.tasks.spawned_count = 5;
        report.tasks.running_count = 2;
        report.tasks.completed_count = 1;
        report.tasks.failed_count = 1;
        report.tasks.cancelled_count = 1;
        for (label, count, blocking, p50_us) in [("llm", 40, 0, 850), ("db.query", 3, 2, 81_000)] {
            let mut stats = CallStatsSnapshot::default();
            stats.count = count;
            stats.blocking_count = blocking;
            stats.p50_us = p50_us;
            stats.p99_us = p50_us * 2;
            stats.max_us = 12_500_000;
            report.calls.insert(label.to_owned(), stats);
        }
        Verdict {
            report,
            raw: String::new(),
            client_issues: vec![ClientIssue {
                code: "slow_response",
                message: "took 2500 ms".to_owned(),
            }],
            status: HealthStatus::Critical,
        }
    }

    #[test]
    fn the_summary_names_status_issues_sessions_and_resources() {
        let text = summary(
            &Observation::Report(Box::new(verdict())),
            "http://h:1/health",
            false,
        );
        assert_eq!(
            text,
            "status: critical  worker edge (openrtc 0.1.0), up 1h 2m  (http://h:1/health)\n\
             issues (2):\n  \
             slow_response  took 2500 ms\n  \
             worker_blocked critical session s-7 tenant acme: worker thread 1 has polled s-7 for 6000 ms\n\
             busiest sessions:\n  \
             s-7 tenant acme agent stall: polled for 6000 ms on worker thread 1, blocked\n\
             resources: rss 64.0 MiB, cpu 12.5%, fds 20/1024, threads 9; sessions: active 3\n\
             child tasks: 5 spawned, 2 running, 1 completed, 1 failed, 1 cancelled\n\
             tracked calls:\n  \
             db.query: 3 calls, 0 failed, 0 slow, 2 blocking; p50 81 ms p99 162 ms max 12.5 s\n  \
             llm: 40 calls, 0 failed, 0 slow, 0 blocking; p50 850 µs p99 1 ms max 12.5 s\n"
        );
    }

    #[test]
    fn colour_only_when_asked_and_failures_are_one_line() {
        assert_eq!(paint(State::Health(HealthStatus::Ok), false), "ok");
        assert_eq!(
            paint(State::Health(HealthStatus::Degraded), true),
            "\x1b[33mdegraded\x1b[0m"
        );
        let down = Observation::Unreachable("cannot connect to h:1: refused".to_owned());
        assert_eq!(
            summary(&down, "http://h:1/health", false),
            "status: unreachable  (http://h:1/health): cannot connect to h:1: refused\n"
        );
    }

    #[test]
    fn change_lines_are_one_line_each() {
        let line = change_line("T", &Observation::Report(Box::new(verdict())), false);
        assert_eq!(
            line,
            "T critical worker edge: 2 issues (slow_response, worker_blocked s-7)"
        );
        let mut ok = verdict();
        ok.report.issues.clear();
        ok.client_issues.clear();
        ok.status = HealthStatus::Ok;
        assert_eq!(
            change_line("T", &Observation::Report(Box::new(ok)), false),
            "T ok worker edge: no issues"
        );
        assert_eq!(
            change_line("T", &Observation::BadAnswer("not json".to_owned()), false),
            "T bad_answer not json"
        );
    }

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m 3s");
        assert_eq!(uptime(7500), "2h 5m");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600), "3d 4h");
    }
}
