//! The HTTP health endpoints over real sockets: `/ready` flips on drain, unknown paths and
//! methods are refused, `/metrics` is valid exposition (checked by `promtool` when it is
//! installed) with no session id in any label, tracked calls by label and sessions by
//! tenant, agent and outcome among it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

/// One request over a fresh connection: the status code and the body.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// `GET path`.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path)
}

/// The bound address of a running pool's endpoints, from its snapshot.
pub(crate) fn http_addr(pool: &RunningPool) -> SocketAddr {
    pool.snapshot()
        .worker
        .http_addr
        .expect("the bound address is in the snapshot")
        .parse()
        .expect("an address")
}

fn idle_pool(worker: &str) -> RunningPool {
    let idle = agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok::<(), openrtc::AgentError>(())
    });
    RunningPool::start(
        AgentPool::builder()
            .agent("echo", idle)
            .worker_name(worker)
            .worker_threads(2)
            .max_concurrent_sessions(2)
            .drain_timeout(PATIENCE)
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    )
}

#[test]
fn ready_answers_200_then_503_when_full_and_when_draining() {
    let pool = idle_pool("http-ready");
    let addr = http_addr(&pool);
    assert_ne!(addr.port(), 0, "the bound port, not the asked one");
    let (status, body) = get(addr, "/ready");
    assert_eq!(
        (status, body.as_str()),
        (200, "ready: accepting sessions\n")
    );
    let first = pool.handle().launch(JobRequest::new()).expect("room");
    let _second = pool.handle().launch(JobRequest::new()).expect("room");
    let (status, body) = get(addr, "/ready");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: full: 2 of 2 sessions\n")
    );
    pool.handle().cancel(first.id()).expect("live");
    wait_for("a free place", || {
        (get(addr, "/ready").0 == 200).then_some(())
    });
    pool.handle().begin_drain();
    let (status, body) = get(addr, "/ready");
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready: draining"), "{body}");
    // /health stays up while draining: draining is not unhealthy.
    let (status, body) = get(addr, "/health");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let pool = idle_pool("http-routes");
    let addr = http_addr(&pool);
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(request(addr, "POST", "/health").0, 405);
    assert_eq!(request(addr, "DELETE", "/metrics").0, 405);
    let (status, body) = get(addr, "/health");
    assert_eq!(status, 200);
    let report: openrtc::proto::HealthReport = serde_json::from_str(&body).expect("json");
    assert_eq!(report.status, openrtc::proto::HealthStatus::Ok, "{body}");
    assert_eq!(report.worker, "http-routes");
    assert_eq!(report.schema_version, openrtc::proto::HEALTH_VERSION);
}

/// Whether a line is a valid line of Prometheus text exposition: a comment (`# HELP`,
/// `# TYPE`) or `name{labels} value`.
fn valid_exposition_line(line: &str) -> bool {
    if let Some(comment) = line.strip_prefix("# ") {
        return ["HELP ", "TYPE "]
            .iter()
            .any(|kind| comment.starts_with(kind));
    }
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let labels_ok = name_end == series.len()
        || (series.ends_with('}') && labels(series).iter().all(|(key, _)| !key.is_empty()));
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    name_ok && labels_ok && value_ok
}

/// The `key="value"` pairs of a series.
fn labels(series: &str) -> Vec<(String, String)> {
    let Some(start) = series.find('{') else {
        return Vec::new();
    };
    series[start + 1..series.len() - 1]
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once("=\"").unwrap_or((pair, ""));
            (key.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

/// The value of the series `series` (its name and labels exactly as written) in `text`.
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.parse().ok())
}

/// Agents `echo` (idle until cancelled) and `caller` (two tracked calls of two labels, one
/// failing, then done).
fn metrics_pool(worker: &str) -> RunningPool {
    let idle = agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok::<(), openrtc::AgentError>(())
    });
    let caller = agent_fn(|session: Session| async move {
        let answer = session.track("llm", async { Ok::<_, ()>(42) }).await;
        assert_eq!(answer, Ok(42));
        let row = session
            .track("db.query", async { Err::<(), _>("no row") })
            .await;
        assert!(row.is_err());
        Ok::<(), openrtc::AgentError>(())
    });
    RunningPool::start(
        AgentPool::builder()
            .agent("echo", idle)
            .agent("caller", caller)
            .worker_name(worker)
            .worker_threads(2)
            .max_concurrent_sessions(4)
            .drain_timeout(PATIENCE)
            .http_addr("127.0.0.1:0".parse().expect("addr")),
    )
}

#[test]
fn metrics_are_valid_exposition_without_session_ids() {
    let pool = metrics_pool("http-metrics");
    let addr = http_addr(&pool);
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            pool.handle()
                .launch(JobRequest::new().tenant("acme"))
                .expect("room")
        })
        .chain([pool
            .handle()
            .launch(JobRequest::new().tenant("globex").agent("caller"))
            .expect("room")])
        .collect();
    let ids: Vec<String> = sessions.iter().map(|s| s.id().to_string()).collect();
    let ended =
        "openrtc_sessions_ended_total{tenant=\"globex\",agent=\"caller\",outcome=\"completed\"}";
    let text = wait_for(
        "both live sessions and the caller's end in the metrics",
        || {
            let (status, text) = get(addr, "/metrics");
            assert_eq!(status, 200);
            (text.contains("openrtc_sessions_active{tenant=\"acme\",agent=\"echo\"} 2")
                && value_of(&text, ended) == Some(1.0))
            .then_some(text)
        },
    );
    for line in text.lines() {
        assert!(
            valid_exposition_line(line),
            "invalid line {line:?} in:\n{text}"
        );
        for (key, value) in labels(line.split(' ').next().unwrap_or("")) {
            assert!(
                !ids.contains(&value) && !value.starts_with("s-"),
                "label {key}={value} is a session id"
            );
        }
    }
    // Tracked calls of two labels, each with its counters and its histogram.
    for (series, expected) in [
        ("openrtc_calls_total{label=\"llm\"}", 1.0),
        ("openrtc_calls_total{label=\"db.query\"}", 1.0),
        ("openrtc_calls_failed_total{label=\"db.query\"}", 1.0),
        ("openrtc_calls_failed_total{label=\"llm\"}", 0.0),
        ("openrtc_calls_blocking_total{label=\"llm\"}", 0.0),
        ("openrtc_calls_slow_total{label=\"llm\"}", 0.0),
        ("openrtc_call_duration_seconds_count{label=\"llm\"}", 1.0),
        (
            "openrtc_call_duration_seconds_count{label=\"db.query\"}",
            1.0,
        ),
        (
            "openrtc_call_duration_seconds_bucket{le=\"+Inf\",label=\"db.query\"}",
            1.0,
        ),
        (
            "openrtc_sessions_started_total{tenant=\"acme\",agent=\"echo\"}",
            2.0,
        ),
        (
            "openrtc_sessions_started_total{tenant=\"globex\",agent=\"caller\"}",
            1.0,
        ),
        (
            "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"echo\",outcome=\"completed\"}",
            0.0,
        ),
        (
            "openrtc_sessions_ended_total{tenant=\"globex\",agent=\"caller\",outcome=\"failed\"}",
            0.0,
        ),
    ] {
        assert_eq!(
            value_of(&text, series),
            Some(expected),
            "{series} in:\n{text}"
        );
    }
    let llm_buckets = text
        .lines()
        .filter(|line| {
            line.starts_with("openrtc_call_duration_seconds_bucket{")
                && line.contains("label=\"llm\"")
        })
        .count();
    assert_eq!(llm_buckets, 16, "15 bounds and +Inf:\n{text}");
    // The ended series add up to the worker's totals (nothing is ending now: the echo
    // sessions wait to be cancelled).
    let ended_sum: f64 = text
        .lines()
        .filter(|line| line.starts_with("openrtc_sessions_ended_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    let totals = pool.snapshot().worker.totals;
    let ended_total = totals.completed_count
        + totals.failed_count
        + totals.panicked_count
        + totals.cancelled_count
        + totals.killed_count;
    assert_eq!((ended_sum, ended_total), (1.0, 1));
    for family in [
        "openrtc_sessions_ended_total",
        "openrtc_refusals_total",
        "openrtc_stalls_total",
        "openrtc_stall_duration_seconds_bucket",
        "openrtc_busy_seconds_total",
        "openrtc_tenant_breaker_state",
        "openrtc_resident_memory_bytes",
        "openrtc_tenant_heap_bytes",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
    promtool_check(&text);
}

/// Checks `text` with `promtool check metrics`. Skipped only when promtool is missing and
/// `OPENRTC_REQUIRE_PROMTOOL` is unset (the test script installs it and sets the variable).
fn promtool_check(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var_os("OPENRTC_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("promtool not run ({error}): the exposition check is skipped");
            return;
        }
        Err(error) => panic!("promtool is required (OPENRTC_REQUIRE_PROMTOOL): {error}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writes");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_taken_address_fails_run_with_a_typed_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = taken.local_addr().expect("addr");
    let pool = AgentPool::builder()
        .agent(
            "echo",
            agent_fn(|_: Session| async { Ok::<(), openrtc::AgentError>(()) }),
        )
        .worker_name("http-taken")
        .http_addr(addr)
        .build()
        .expect("valid");
    let error = pool
        .run_until(std::future::ready(()))
        .expect_err("the address is taken");
    assert!(matches!(error, openrtc::RunError::Http { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("cannot serve the health endpoints at {addr}")
    );
}
