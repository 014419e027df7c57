//! `openrtc-demo` processes, inspected over their real sockets; [`runbooks`] runs every
//! runbook step against one, and [`logs`] reads real workers' log files with `openrtc logs`.
//!
//! Each worker runs in its test's temporary directory, where it writes its log file.

mod livekit;
mod logs;
mod runbooks;

/// The real LiveKit server as the runtime's tests start it (its fixture, shared by path).
#[path = "../../../../crates/openrtc/tests/it/livekit_server/fixture.rs"]
#[allow(dead_code, reason = "the runtime's tests use the rest of the fixture")]
mod livekit_fixture;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openrtc::proto::{
    KillReason, MemSource, PoolSnapshot, Response, ResponseEnvelope, SessionOutcome,
};

/// How long a wait may take before the test fails: generous, for busy CI machines.
const PATIENCE: Duration = Duration::from_secs(30);

struct Demo {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Demo {
    fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// Starts it with these environment variables too.
    fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let stderr_path = dir.join("demo.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_openrtc-demo"))
            .envs(env.iter().copied())
            .args(["--threads", "2", "--seed", "3", "--drain-timeout-secs", "0"])
            .args(["--http-addr", "off", "--media-addr", "off"])
            .arg("--socket")
            .arg(dir.join("demo.sock"))
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start openrtc-demo");
        Self { child, stderr_path }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).expect("stderr")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One snapshot over the worker's socket, if it answers.
fn snapshot(socket: &Path) -> Option<PoolSnapshot> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"{\"v\":1,\"op\":\"snapshot\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    match serde_json::from_str::<ResponseEnvelope>(&line)
        .ok()?
        .response
    {
        Response::Snapshot { snapshot } => Some(*snapshot),
        _ => None,
    }
}

#[track_caller]
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn leaky_sessions_are_killed_by_the_default_cap_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("demo.sock");
    let demo = Demo::start(dir.path(), &["--only", "leaky", "--callers", "1"]);
    let killed = wait_for("a leaky session to be killed", || {
        let snapshot = snapshot(&socket)?;
        snapshot
            .recently_ended
            .iter()
            .find(|ended| matches!(ended.outcome, SessionOutcome::Killed { .. }))
            .cloned()
            .map(|ended| (snapshot, ended))
    });
    let (snapshot, ended) = killed;
    assert_eq!(snapshot.worker.mem_source, MemSource::Tracked);
    assert_eq!(
        snapshot.worker.session_memory_limit_bytes,
        Some(64 * 1024 * 1024)
    );
    assert_eq!(ended.agent, "leaky");
    let SessionOutcome::Killed {
        reason: KillReason::MemoryLimit {
            live_bytes,
            limit_bytes,
        },
    } = ended.outcome
    else {
        panic!("expected a memory-limit kill, got {:?}", ended.outcome);
    };
    assert_eq!(limit_bytes, 64 * 1024 * 1024);
    assert!(live_bytes >= limit_bytes, "{live_bytes} live");
    assert!(ended.mem_peak_bytes > 64 * 1024 * 1024);
    let log = wait_for("the [memory-limit] line", || {
        let stderr = demo.stderr();
        stderr.contains("[memory-limit]").then_some(stderr)
    });
    let line = log
        .lines()
        .find(|line| line.contains("[memory-limit]"))
        .expect("found above");
    assert!(
        line.contains(&format!("session_id={} ", ended.id)) && line.contains("agent=leaky"),
        "{line}"
    );
}

#[test]
fn a_worker_over_its_memory_limit_drains_and_exits_with_75() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Any running worker has more than 1 MiB of RSS: the limit trips at the first check.
    let mut demo = Demo::start(
        dir.path(),
        &["--only", "echo", "--callers", "3", "--memory-limit-mb", "1"],
    );
    let status = wait_for("the demo to exit", || demo.child.try_wait().expect("wait"));
    assert_eq!(status.code(), Some(75));
    let stderr = demo.stderr();
    assert!(
        stderr.contains("[memory-limit] worker RSS")
            && stderr.contains("crossed its limit of 1.0 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("memory limit"), "{stderr}");
    // At `warn` (the drain's start is `info`): the cancel at the deadline (0 s here; no such
    // line if no session was live yet) and the end.
    let drain: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("[drain]"))
        .collect();
    let (cancel, end) = match drain.as_slice() {
        [cancel, end] => (Some(*cancel), *end),
        [end] => (None, *end),
        _ => panic!("one or two [drain] lines: {stderr}"),
    };
    let cancelling = cancel.map_or(0, |line| {
        assert!(
            line.contains("[drain] deadline reached: cancelling "),
            "{line}"
        );
        field(line, "cancelling")
    });
    assert!(cancelling <= 3, "{stderr}");
    assert!(
        end.contains("[drain] done: 0 ended by themselves, ")
            && end.contains("; run returns an error: ")
            && end.contains("(exit code 75)"),
        "{stderr}"
    );
    assert_eq!(field(end, "ended_on_cancel"), cancelling, "{stderr}");
    assert_eq!(field(end, "dropped"), 0, "{stderr}");
    assert_eq!(field(end, "exit_code"), 75, "{stderr}");
}

/// The number in a log line's ` name=N` field.
#[track_caller]
fn field(line: &str, name: &str) -> u64 {
    let pattern = format!(" {name}=");
    line.split_once(pattern.as_str())
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// Starts the demo with its standard error redirected to a file, lets it log a stall, and
/// returns that log.
fn log_of_a_redirected_demo(no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("demo.sock");
    let log_path = dir.path().join("demo.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_openrtc-demo"));
    command
        .args(["--threads", "2", "--only", "blocker", "--callers", "1"])
        .args(["--drain-timeout-secs", "0", "--http-addr", "off"])
        .args(["--media-addr", "off"])
        .arg("--socket")
        .arg(&socket)
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"));
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let mut demo = Demo {
        child: command.spawn().expect("start openrtc-demo"),
        stderr_path: log_path,
    };
    let log = wait_for("a [slow-session] line", || {
        let log = demo.stderr();
        log.contains("[slow-session]").then_some(log)
    });
    let _ = demo.child.kill();
    log
}

#[test]
fn the_log_has_no_colour_codes_when_redirected() {
    for no_color in [None, Some("1")] {
        let log = log_of_a_redirected_demo(no_color);
        assert!(
            log.contains(" WARN openrtc::watchdog: [slow-session]"),
            "{log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "an escape code in the log with NO_COLOR={no_color:?}: {log:?}"
        );
    }
}

#[test]
fn a_worker_whose_sessions_keep_failing_drains_and_exits_with_70() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every `crashy` session fails (an error or a panic) within 10 s, before its caller would
    // hang up: the second failure in a row spends the budget.
    let mut demo = Demo::start(
        dir.path(),
        &[
            "--only",
            "crashy",
            "--callers",
            "2",
            "--min-secs",
            "20",
            "--max-secs",
            "20",
            "--consecutive-failure-limit",
            "2",
        ],
    );
    let status = wait_for("the demo to exit", || demo.child.try_wait().expect("wait"));
    assert_eq!(status.code(), Some(70));
    let stderr = demo.stderr();
    let budget: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("[failure-budget]"))
        .collect();
    assert_eq!(budget.len(), 1, "{stderr}");
    assert!(
        budget[0].contains("[failure-budget] 2 sessions in a row failed (last: session s-")
            && budget[0].contains("agent crashy: ")
            && budget[0].contains("draining the worker so its supervisor restarts it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 sessions in a row failed: the worker drained"),
        "run's error is printed: {stderr}"
    );
}

#[test]
fn echo_with_vad_logs_speech_start_and_end_labelled_with_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("demo.jsonl");
    let _demo = Demo::start(
        dir.path(),
        &[
            "--vad",
            "--only",
            "echo",
            "--callers",
            "2",
            "--min-secs",
            "60",
            "--max-secs",
            "60",
            "--log-file",
            "demo.jsonl",
        ],
    );
    let records = |message: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|record| record.to_string().contains(message))
            .collect()
    };
    // The generated audio talks for 1.6 s then is quiet for 0.8 s: an end within seconds.
    let ended = wait_for("a `speech ended` record", || {
        records("speech ended").into_iter().next()
    });
    let text = ended.to_string();
    assert!(
        text.contains("\"echo\""),
        "not labelled with its agent: {text}"
    );
    let session = ["session_id", "session"]
        .iter()
        .find_map(|key| ended.get(*key).and_then(serde_json::Value::as_str))
        .unwrap_or_else(|| panic!("not labelled with its session: {text}"))
        .to_owned();
    assert!(
        records("speech started")
            .iter()
            .any(|record| record.to_string().contains(&format!("\"{session}\""))),
        "no `speech started` of {session} before its end"
    );
}
