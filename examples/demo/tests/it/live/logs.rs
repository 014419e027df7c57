//! `openrtc logs`, the real binary, on the log file of real workers.
//!
//! A pool in this process runs 50 `chatty` sessions, each logging from its root task and two
//! child tasks (`Session::spawn`), while the test thread logs worker records in between.
//! `openrtc logs FILE --session X` must print exactly X's records (the agent's, counted one by
//! one, and the runtime's own lines about X), and `--follow`, started before the sessions run,
//! must deliver each of them exactly once while the pool runs. Then a demo worker process,
//! whose log file is relative to its own working directory, is asked for it through its
//! socket (`openrtc logs --socket … --session X`, no FILE).
//!
//! The session layer is installed as this process's global subscriber: nextest runs each test
//! in a process of its own.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use openrtc::{AgentError, AgentPool, JobRequest, RunningPool, Session, SessionOutcome, agent_fn};
use serde_json::Value;
use tokio::sync::watch;

use super::{Demo, PATIENCE, wait_for};

/// Sessions the pool runs.
const SESSIONS: usize = 50;
/// Child tasks each session spawns.
const CHILDREN: usize = 2;
/// Records each child task logs.
const CHILD_RECORDS: usize = 4;
/// Records the root task logs once the gate opens (after its one `ready` record).
const ROOT_RECORDS: usize = 6;
/// The pause between two records of a task. The sessions leave the gate together, so the
/// file grows in bursts with pauses between them: a session's records are spread over many of
/// `--follow`'s 100 ms polls, some of which find the file unchanged, as with a real worker.
const PACE: Duration = Duration::from_millis(250);

/// What one agent record says about itself: `ready`, `root N`, or `child C N`.
type Said = (String, Option<u64>, u64);

/// Every record one session's agent logs, as [`said`] reads them back.
fn expected_said() -> BTreeSet<Said> {
    let mut all = BTreeSet::from([("ready".to_owned(), None, 0)]);
    for n in 0..ROOT_RECORDS as u64 {
        all.insert(("root".to_owned(), None, n));
    }
    for child in 0..CHILDREN as u64 {
        for n in 0..CHILD_RECORDS as u64 {
            all.insert(("child".to_owned(), Some(child), n));
        }
    }
    all
}

/// The `openrtc` binary, built next to the demo's.
fn openrtc() -> PathBuf {
    let cli = Path::new(env!("CARGO_BIN_EXE_openrtc-demo")).with_file_name("openrtc");
    assert!(
        cli.exists(),
        "{} is missing: build the workspace (cargo build --workspace --bins) before these tests",
        cli.display()
    );
    cli
}

/// Runs `openrtc logs ARGS` to its end in `cwd`.
fn logs(cwd: &Path, args: &[&str]) -> Output {
    Command::new(openrtc())
        .arg("logs")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run openrtc logs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Installs the session layer (alone: nothing on stderr) as the global subscriber, once.
fn install_layer() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(openrtc::telemetry::layer());
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    });
}

/// Logs `ready`, waits for the gate, then logs from its root task and [`CHILDREN`] child
/// tasks at once. Each record carries `me` (the id the agent believes it has) and `said`.
async fn chatty(session: Session, mut gate: watch::Receiver<bool>) -> Result<(), AgentError> {
    let me = session.id().to_string();
    tracing::info!(me = %me, said = "ready", n = 0_u64, "ready");
    gate.wait_for(|open| *open)
        .await
        .map_err(|error| AgentError::msg(error.to_string()))?;
    let mut children = Vec::new();
    for child in 0..CHILDREN as u64 {
        let me = me.clone();
        children.push(session.spawn(async move {
            for n in 0..CHILD_RECORDS as u64 {
                tracing::info!(me = %me, said = "child", child, n, "child record");
                tokio::time::sleep(PACE).await;
            }
        }));
    }
    for n in 0..ROOT_RECORDS as u64 {
        tracing::info!(me = %me, said = "root", n, "root record");
        tokio::time::sleep(PACE).await;
    }
    for child in children {
        child
            .await
            .map_err(|error| AgentError::msg(error.to_string()))?;
    }
    Ok(())
}

/// A running pool of `chatty` sessions writing `worker.jsonl` in `dir`, and its closed gate.
fn start_pool(dir: &Path) -> (RunningPool, watch::Sender<bool>, PathBuf) {
    install_layer();
    let log_file = dir.join("worker.jsonl");
    let (gate, receiver) = watch::channel(false);
    let pool = AgentPool::builder()
        .agent(
            "chatty",
            agent_fn(move |session: Session| chatty(session, receiver.clone())),
        )
        .worker_name("logs-live")
        .worker_threads(2)
        .socket_path(dir.join("worker.sock"))
        .log_file(&log_file)
        .build()
        .expect("a valid pool")
        .run_in_background()
        .expect("the pool runs");
    (pool, gate, log_file)
}

/// Launches [`SESSIONS`] sessions over three tenants, logging a worker record (marked with
/// `test`) after each; returns their handles, whose ids must be `s-1` to `s-50` in order.
///
/// A worker record goes to every log file open in the process: the mark tells this test's
/// from another's, should tests share a process (`cargo test`).
fn launch_all(pool: &RunningPool, test: &str) -> Vec<openrtc::SessionHandle> {
    let handles: Vec<openrtc::SessionHandle> = (0..SESSIONS)
        .map(|n| {
            let handle = pool
                .handle()
                .launch(
                    JobRequest::new()
                        .agent("chatty")
                        .tenant(format!("tenant-{}", n % 3)),
                )
                .expect("room for every session");
            tracing::info!(test, launched = n, "worker record");
            handle
        })
        .collect();
    let ids: Vec<String> = handles.iter().map(|h| h.id().to_string()).collect();
    let expected: Vec<String> = (1..=SESSIONS).map(|n| format!("s-{n}")).collect();
    assert_eq!(ids, expected, "a fresh pool numbers its sessions from s-1");
    handles
}

/// Waits for every session's outcome: each completed.
fn wait_all_completed(handles: Vec<openrtc::SessionHandle>) {
    for handle in handles {
        let id = handle.id();
        match handle.wait_outcome(PATIENCE) {
            Ok(SessionOutcome::Completed) => {}
            Ok(other) => panic!("{id} ended {other:?}"),
            Err(_) => panic!("{id} still runs after {PATIENCE:?}"),
        }
    }
}

/// The file's lines (each a JSON object, or the test fails), as they are and parsed.
fn file_lines(path: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(path)
        .expect("the log file")
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            assert!(value.is_object(), "not an object: {line}");
            (line.to_owned(), value)
        })
        .collect()
}

/// What an agent record of `chatty` says about itself, if it is one.
fn said(record: &Value) -> Option<Said> {
    let kind = record.get("said")?.as_str()?.to_owned();
    let child = record.get("child").and_then(Value::as_u64);
    let n = record.get("n").and_then(Value::as_u64)?;
    Some((kind, child, n))
}

/// The file's lines of session `id`, as they are, after checking them against what its agent
/// logged: each of its agent records exactly once, the rest the runtime's own lines about it.
#[track_caller]
fn lines_of(all: &[(String, Value)], id: &str) -> Vec<String> {
    let mine: Vec<&(String, Value)> = all
        .iter()
        .filter(|(_, record)| record["session_id"] == id)
        .collect();
    let mut said_by_agent: Vec<Said> = Vec::new();
    let mut session_end_count = 0;
    for (line, record) in &mine {
        if let Some(said) = said(record) {
            assert_eq!(record["me"], id, "mislabelled: {line}");
            assert_eq!(record["agent"], "chatty", "{line}");
            said_by_agent.push(said);
        } else {
            let target = record["target"].as_str().unwrap_or_default();
            assert!(
                target.starts_with("openrtc"),
                "not the agent's, not the runtime's: {line}"
            );
            if record["event"] == "session_end" {
                session_end_count += 1;
            }
        }
    }
    let expected = expected_said();
    assert_eq!(
        said_by_agent.len(),
        expected.len(),
        "{id}: every agent record once: {said_by_agent:?}"
    );
    assert_eq!(
        said_by_agent.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "{id}"
    );
    assert_eq!(session_end_count, 1, "{id}'s end, once");
    mine.into_iter().map(|(line, _)| line.clone()).collect()
}

/// Lines joined, each with its newline: what `--json` prints for them.
fn joined(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[test]
fn logs_session_prints_exactly_the_session_s_records_of_a_real_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, gate, log_file) = start_pool(dir.path());
    gate.send_replace(true);
    let handles = launch_all(&pool, "exact");
    wait_all_completed(handles);
    pool.drain_and_join().expect("a clean stop");

    let all = file_lines(&log_file);
    let worker_records = all
        .iter()
        .filter(|(_, record)| record["message"] == "worker record" && record["test"] == "exact")
        .inspect(|(line, record)| assert!(record.get("session_id").is_none(), "{line}"))
        .count();
    assert_eq!(worker_records, SESSIONS);
    let file = log_file.to_str().expect("a UTF-8 path");
    // s-5 is a prefix of s-50, s-1 of s-10 to s-19: an exact id must not match them.
    for id in ["s-1", "s-5", "s-17", "s-50"] {
        let expected = lines_of(&all, id);
        let json = logs(dir.path(), &[file, "--session", id, "--json"]);
        assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
        assert_eq!(text(&json.stdout), joined(&expected), "{id} as JSON");
        assert_eq!(text(&json.stderr), "", "no bad lines");

        let readable = logs(dir.path(), &[file, "--session", id]);
        assert_eq!(
            readable.status.code(),
            Some(0),
            "{}",
            text(&readable.stderr)
        );
        let printed = text(&readable.stdout);
        let rows: Vec<&str> = printed.lines().collect();
        assert_eq!(
            rows.len(),
            expected.len(),
            "{id}: one line per record\n{printed}"
        );
        for row in &rows {
            // `date time LEVEL session agent message …`
            let columns: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(columns.get(3), Some(&id), "{row}");
            assert_eq!(columns.get(4), Some(&"chatty"), "{row}");
        }
    }
}

/// `openrtc logs … --follow` running, with its output lines as they come.
struct Following {
    child: Child,
    lines: Receiver<String>,
}

impl Following {
    fn start(cwd: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(openrtc())
            .arg("logs")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openrtc logs --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, waiting until `deadline`.
    #[track_caller]
    fn next_line(&self, deadline: Instant, waiting_for: &str) -> String {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {waiting_for}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the output ended before {waiting_for}")
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns its status code, the lines printed
    /// since the last [`Self::next_line`], and standard error.
    fn terminate(mut self) -> (Option<i32>, Vec<String>, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for openrtc") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "openrtc logs --follow did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
        }
        (status.code(), rest, stderr)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a `--json` line is the agent record `said` of session `id`.
fn is_said(line: &str, id: &str, kind: &str) -> bool {
    let record: Value = serde_json::from_str(line).unwrap_or_default();
    record["session_id"] == id && record["said"] == kind
}

/// `got` is `expected`, line for line; otherwise says briefly what differs.
#[track_caller]
fn assert_same_lines(id: &str, got: &[String], expected: &[String]) {
    if got == expected {
        return;
    }
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = got.iter().filter(|line| !seen.insert(*line)).collect();
    let missing: Vec<&String> = expected.iter().filter(|line| !got.contains(line)).collect();
    panic!(
        "{id}: {} lines printed, {} expected; {} printed more than once (first: {:?}); {} \
         missing (first: {:?}); or out of order",
        got.len(),
        expected.len(),
        twice.len(),
        twice.first(),
        missing.len(),
        missing.first()
    );
}

#[test]
fn logs_follow_delivers_each_record_of_a_session_once_while_the_pool_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, gate, log_file) = start_pool(dir.path());
    let file = log_file.to_str().expect("a UTF-8 path");
    let followed = ["s-5", "s-50"];
    // Started before any session runs: the file has only the pool's start-up lines.
    let followers: Vec<Following> = followed
        .iter()
        .map(|id| Following::start(dir.path(), &[file, "--follow", "--json", "--session", id]))
        .collect();
    let handles = launch_all(&pool, "follow");

    // Each follower prints its session's `ready` while the sessions wait at the gate: what
    // follows is written after the follower has read that far, and reaches it as the file
    // grows.
    let mut received: Vec<Vec<String>> = vec![Vec::new(); followed.len()];
    let deadline = Instant::now() + PATIENCE;
    for ((id, follower), got) in followed.iter().zip(&followers).zip(&mut received) {
        while !got.last().is_some_and(|line| is_said(line, id, "ready")) {
            got.push(follower.next_line(deadline, &format!("{id}'s ready record")));
        }
    }
    gate.send_replace(true);
    wait_all_completed(handles);

    // While the pool still runs: every agent record of the session, and its end.
    let agent_records = expected_said().len();
    let deadline = Instant::now() + PATIENCE;
    for ((id, follower), got) in followed.iter().zip(&followers).zip(&mut received) {
        let complete = |got: &[String]| {
            let said = got
                .iter()
                .filter(|line| {
                    let record: Value = serde_json::from_str(line).unwrap_or_default();
                    record.get("said").is_some()
                })
                .count();
            let ended = got
                .iter()
                .any(|line| line.contains("\"event\":\"session_end\""));
            said >= agent_records && ended
        };
        while !complete(got) {
            got.push(follower.next_line(deadline, &format!("{id}'s records while running")));
        }
    }
    pool.drain_and_join().expect("a clean stop");

    // The file is complete now: each follower has printed exactly the session's lines, once
    // each, in the file's order, and nothing after them.
    let all = file_lines(&log_file);
    let deadline = Instant::now() + PATIENCE;
    for (follower, (id, mut got)) in followers.into_iter().zip(followed.iter().zip(received)) {
        let expected = lines_of(&all, id);
        while got.len() < expected.len() {
            got.push(follower.next_line(deadline, &format!("the rest of {id}'s lines")));
        }
        let (code, rest, stderr) = follower.terminate();
        assert_same_lines(id, &got, &expected);
        assert_eq!(
            rest,
            Vec::<String>::new(),
            "{id}: nothing more, nothing twice"
        );
        assert_eq!(code, Some(0), "SIGTERM after matches: {stderr}");
        assert_eq!(stderr, "", "no bad lines");
    }
}

#[test]
fn logs_without_a_file_reads_the_log_file_a_demo_worker_names_on_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("demo.sock");
    let socket_arg = socket.to_str().expect("a UTF-8 path");
    // The demo writes `openrtc-demo.jsonl` relative to its working directory, `dir`; the
    // command runs elsewhere and must find it through the worker.
    let _demo = Demo::start(dir.path(), &["--only", "crashy", "--callers", "2"]);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let top = wait_for("the worker's snapshot", || {
        let output = Command::new(openrtc())
            .args(["top", "--once", "--format", "json", "--socket", socket_arg])
            .current_dir(elsewhere.path())
            .output()
            .expect("run openrtc top");
        output.status.success().then(|| text(&output.stdout))
    });
    let snapshot: Value = serde_json::from_str(top.trim_end()).expect("a snapshot");
    assert_eq!(snapshot["worker"]["log_file"], "openrtc-demo.jsonl");

    // s-1 is a crashy session: once it has failed or panicked, its lines (the flight
    // recorder's among them) stop changing, and the worker's file read through the socket
    // must print what the file read by name does.
    let file = dir.path().join("openrtc-demo.jsonl");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let printed = wait_for("s-1's lines through the socket, as in the file", || {
        let through_socket = logs(
            elsewhere.path(),
            &["--socket", socket_arg, "--session", "s-1", "--json"],
        );
        let by_name = logs(elsewhere.path(), &[file_arg, "--session", "s-1", "--json"]);
        let printed = text(&through_socket.stdout);
        let done = through_socket.status.success()
            && printed == text(&by_name.stdout)
            && printed.contains("\"from_flight_recorder\":true")
            && printed.contains("decoding frame");
        done.then_some(printed)
    });
    for line in printed.lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(record["session_id"], "s-1", "{line}");
        assert_eq!(record["agent"], "crashy", "{line}");
    }
}
