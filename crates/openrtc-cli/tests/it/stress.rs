//! `openrtc stress`, the built binary, against the demo worker's real media WebSocket: echo
//! calls complete with plausible round trips and the JSON document has its keys; calls to an
//! agent the worker does not have are counted as refusals by reason; an unreachable URL and a
//! bad mix exit 2.

use std::net::TcpListener;
use std::path::Path;

use serde_json::Value;

use crate::binary::{run, stderr, stdout};
use crate::live::{DemoWorker, wait_for_snapshots};

/// Starts a demo worker without callers, and returns it with its media URL and its health
/// URL.
fn demo(runtime_dir: &Path, name: &str) -> (DemoWorker, String, String) {
    let worker =
        DemoWorker::start_with_args(runtime_dir, name, "echo", 0, None, "127.0.0.1:0", &[]);
    let snapshots = wait_for_snapshots(runtime_dir, &[], "the media address", |all| {
        all.len() == 1 && all[0].worker.media_addr.is_some() && all[0].worker.http_addr.is_some()
    });
    let media = snapshots[0]
        .worker
        .media_addr
        .clone()
        .expect("the demo's media address");
    let http = snapshots[0]
        .worker
        .http_addr
        .clone()
        .expect("the demo's HTTP address");
    (
        worker,
        format!("ws://{media}/media"),
        format!("http://{http}"),
    )
}

#[test]
fn echo_calls_complete_with_round_trips_and_a_json_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_worker, url, health_url) = demo(dir.path(), "stress-echo");
    let output_path = dir.path().join("results.json");
    let output = run(
        dir.path(),
        &[
            "stress",
            "--url",
            &url,
            "--calls",
            "6",
            "--ramp",
            "20/s",
            "--duration",
            "3s",
            "--agent-mix",
            "echo=100",
            "--tenants",
            "3",
            "--max-p99-ms",
            "2000",
            "--health-url",
            &health_url,
            "--health-rps",
            "20",
            "--output",
            output_path.to_str().expect("UTF-8 path"),
        ],
    );
    let shown = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{shown}\n{}",
        stderr(&output)
    );
    assert!(
        shown.contains("6 completed, 0 failed (0 refused)"),
        "{shown}"
    );

    let text = std::fs::read_to_string(&output_path).expect("the --output document");
    let document: Value = serde_json::from_str(&text).expect("one JSON document");
    let keys: Vec<&str> = document
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["config", "series", "summary"]);
    let config = &document["config"];
    assert_eq!(config["url"], url.as_str());
    assert_eq!(config["calls"], 6);
    assert_eq!(config["ramp_per_s"], 20.0);
    assert_eq!(config["duration_s"], 3.0);
    assert_eq!(config["agent_mix"]["echo"], 100);
    assert_eq!(config["tenants"], 3);
    assert_eq!(config["max_p99_ms"], 2000.0);

    let summary = &document["summary"];
    assert_eq!(summary["calls"]["planned"], 6);
    assert_eq!(summary["calls"]["completed"], 6);
    assert_eq!(summary["calls"]["failed"], 0);
    assert_eq!(summary["calls"]["refused"], 0);
    assert_eq!(summary["exit_status"], 0);
    // 3 s of 20 ms chunks against absolute deadlines: exactly 150 a call.
    assert_eq!(summary["chunks_sent"], 900);
    let received = summary["chunks_received"].as_u64().expect("a count");
    assert!(received > 0 && received <= 900, "{received}");
    assert!(
        summary["marks_echoed"].as_u64().expect("a count") > 0,
        "the echo agent marks each 25 chunks: {summary}"
    );
    assert_eq!(summary["connect_ms"]["count"], 6);
    let echo = &summary["echo_rtt_ms"];
    assert_eq!(echo["count"].as_u64(), Some(received));
    for key in ["p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        let figure = echo[key].as_f64().expect("an echo round trip figure");
        assert!(figure > 0.0 && figure < 2000.0, "{key} {figure}");
    }
    assert!(summary["inbound_gap_ms"]["count"].as_u64() > Some(0));
    assert_eq!(summary["slo"]["met"], true);
    assert_eq!(summary["worker"]["name"], "stress-echo");
    let health = &summary["health"];
    assert!(health["requests"].as_u64() > Some(0), "{health}");
    assert_eq!(health["errors"], 0, "{health}");
    assert_eq!(health["latency_ms"]["count"], health["requests"]);
    assert_eq!(config["health_rps"], 20.0);

    let series = document["series"].as_array().expect("the series");
    assert!(series.len() >= 3, "a row a second: {series:?}");
    let last = series.last().expect("a last row");
    assert_eq!(last["completed"], 6);
    assert_eq!(last["dialled"], 6);
    assert!(
        series
            .iter()
            .any(|row| row["worker_sessions"].as_u64() == Some(6)),
        "the worker held the 6 calls: {series:?}"
    );
    // While it held them, it measured their outbound lateness itself.
    assert!(
        series
            .iter()
            .any(|row| row["worker_call_lateness_p99_ms"].is_number()),
        "the worker's own lateness figure: {series:?}"
    );
    assert!(
        summary["worker"]["call_lateness_p99_ms_max"].as_f64() >= Some(0.0),
        "{summary}"
    );
}

#[test]
fn calls_to_an_unknown_agent_are_counted_as_refusals_by_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_worker, url, _) = demo(dir.path(), "stress-refused");
    let output_path = dir.path().join("results.json");
    let output = run(
        dir.path(),
        &[
            "stress",
            "--url",
            &url,
            "--calls",
            "3",
            "--ramp",
            "20/s",
            "--duration",
            "2s",
            "--agent-mix",
            "nobody=100",
            "--output",
            output_path.to_str().expect("UTF-8 path"),
        ],
    );
    let shown = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("3 × 1008 refused: unknown agent \"nobody\""),
        "{shown}"
    );
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(&output_path).expect("the --output document"),
    )
    .expect("JSON");
    let summary = &document["summary"];
    assert_eq!(summary["calls"]["completed"], 0);
    assert_eq!(summary["calls"]["failed"], 3);
    assert_eq!(summary["calls"]["refused"], 3);
    assert_eq!(
        summary["refusals"],
        serde_json::json!({"1008 refused: unknown agent \"nobody\"": 3})
    );
    assert_eq!(summary["failures"], serde_json::json!({}));
    assert_eq!(summary["exit_status"], 1);
}

#[test]
fn an_unreachable_url_or_a_bad_mix_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("ws://127.0.0.1:{port}/media");
    let output = run(
        dir.path(),
        &["stress", "--url", &url, "--calls", "2", "--duration", "1s"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!("openrtc stress: {url} is unreachable")),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty(), "no table for a run not made");

    let output = run(
        dir.path(),
        &["stress", "--url", &url, "--agent-mix", "echo=80,hot=15"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("the percentages add up to 95, not 100"),
        "{}",
        stderr(&output)
    );
    let output = run(dir.path(), &["stress", "--url", "wss://example.com/media"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("only ws:// URLs are supported"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn find_capacity_steps_up_until_a_level_does_not_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_worker, url, _) = demo(dir.path(), "stress-capacity");
    let output_path = dir.path().join("capacity.json");
    let output = run(
        dir.path(),
        &[
            "stress",
            "--url",
            &url,
            "--calls",
            "2",
            "--ramp",
            "20/s",
            "--duration",
            "1s",
            "--find-capacity",
            "--max-calls",
            "4",
            "--max-p99-ms",
            "2000",
            "--output",
            output_path.to_str().expect("UTF-8 path"),
        ],
    );
    let shown = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("level 2 calls: 2 completed, 0 failed"),
        "{shown}"
    );
    assert!(
        shown.contains("level 4 calls: 4 completed, 0 failed"),
        "{shown}"
    );
    assert!(shown.contains("capacity     4 calls held"), "{shown}");
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(&output_path).expect("the --output document"),
    )
    .expect("JSON");
    assert_eq!(document["capacity_calls"], 4);
    let levels: Vec<(u64, bool)> = document["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|level| {
            (
                level["calls"].as_u64().expect("calls"),
                level["held"].as_bool().expect("held"),
            )
        })
        .collect();
    assert_eq!(levels, [(2, true), (4, true)]);
    assert_eq!(document["levels"][1]["summary"]["calls"]["completed"], 4);

    // A level whose calls are refused does not hold: no capacity, exit status 1.
    let output = run(
        dir.path(),
        &[
            "stress",
            "--url",
            &url,
            "--calls",
            "2",
            "--duration",
            "1s",
            "--agent-mix",
            "nobody=100",
            "--find-capacity",
            "--max-p99-ms",
            "2000",
        ],
    );
    let shown = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("level 2 calls: 0 completed, 2 failed"),
        "{shown}"
    );
    assert!(shown.contains("capacity     no level held"), "{shown}");

    let output = run(dir.path(), &["stress", "--url", &url, "--find-capacity"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "--find-capacity needs an SLO (--max-p99-ms or --max-lateness-p99-ms)"
    );
}

#[test]
fn find_capacity_bisects_to_the_worker_cap_and_judges_the_worker_lateness() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A worker that holds 3 sessions: the 4th call of a level is refused (1013).
    let worker = DemoWorker::start_with_args(
        dir.path(),
        "stress-bisect",
        "echo",
        0,
        None,
        "off",
        &["--max-sessions", "3"],
    );
    let snapshots = wait_for_snapshots(dir.path(), &[], "the media address", |all| {
        all.len() == 1 && all[0].worker.media_addr.is_some()
    });
    let url = format!(
        "ws://{}/media",
        snapshots[0].worker.media_addr.as_deref().expect("media")
    );
    let output_path = dir.path().join("bisect.json");
    let output = run(
        dir.path(),
        &[
            "stress",
            "--url",
            &url,
            "--calls",
            "2",
            "--ramp",
            "50/s",
            // Long enough that every call of a level is live at once.
            "--duration",
            "2s",
            "--find-capacity",
            "--max-calls",
            "8",
            // Generous: this is about the search and the figure's source, not the machine.
            "--max-lateness-p99-ms",
            "1000",
            "--output",
            output_path.to_str().expect("UTF-8 path"),
        ],
    );
    let shown = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(&output_path).expect("the --output document"),
    )
    .expect("JSON");
    let levels: Vec<(u64, bool)> = document["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|level| {
            (
                level["calls"].as_u64().expect("calls"),
                level["held"].as_bool().expect("held"),
            )
        })
        .collect();
    // Coarse steps 2, 4 (refused: over the cap), then bisection finds 3.
    assert_eq!(levels, [(2, true), (4, false), (3, true)], "{shown}");
    assert_eq!(document["capacity_calls"], 3);
    assert_eq!(
        document["levels"][1]["summary"]["refusals"]["1013 refused: worker is full: 3 concurrent sessions"],
        1,
        "{shown}"
    );
    // The lateness judged is the worker's own figure, sampled through its socket.
    let held = &document["levels"][2]["summary"];
    assert_eq!(held["worker"]["name"], "stress-bisect");
    let lateness = held["slo"]["call_lateness_p99_ms"]
        .as_f64()
        .expect("the worker's call lateness was measured");
    assert!((0.0..=1000.0).contains(&lateness), "{lateness}");
    assert!(
        shown.contains(
            "capacity     3 calls held (every call completed, worst call lateness p99 <= 1000 ms)"
        ),
        "{shown}"
    );
    drop(worker);
}
