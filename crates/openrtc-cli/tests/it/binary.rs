//! The built `openrtc` binary, run as an operator would: help text, exit statuses, the
//! no-worker hint, stale sockets, stand-in workers, JSON output and closed pipes.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use insta::assert_snapshot;
use openrtc_cli::cli::SortKey;
use openrtc_cli::top::table::{ViewOptions, filtered_snapshot, render_workers};
use openrtc_proto::{PROTOCOL_VERSION, PoolSnapshot, Response, ResponseEnvelope};

use crate::fixtures::{busy_worker, idle_worker};
use crate::stand_in_worker::StandInWorker;

/// The binary, with `$XDG_RUNTIME_DIR` pointing at `runtime_dir` so that workers running on
/// the machine are never found, and without forced colors.
pub(crate) fn openrtc(runtime_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openrtc"));
    command
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_BACKTRACE");
    command
}

/// Runs the binary with `args` to completion.
pub(crate) fn run(runtime_dir: &Path, args: &[&str]) -> Output {
    openrtc(runtime_dir)
        .args(args)
        .output()
        .expect("run the openrtc binary")
}

/// Standard output as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

/// Standard error as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// The answer line of a worker sending `snapshot`.
pub(crate) fn snapshot_line(snapshot: PoolSnapshot) -> String {
    response_line(Response::Snapshot {
        snapshot: Box::new(snapshot),
    })
}

/// The answer line of a worker sending `response`.
fn response_line(response: Response) -> String {
    serde_json::to_string(&ResponseEnvelope {
        v: PROTOCOL_VERSION,
        response,
    })
    .expect("serialize a response")
}

/// The socket directory the binary derives from a `$XDG_RUNTIME_DIR`, created.
pub(crate) fn socket_dir(runtime_dir: &Path) -> std::path::PathBuf {
    let dir = runtime_dir.join("openrtc");
    std::fs::create_dir_all(&dir).expect("create the socket dir");
    dir
}

#[test]
fn top_help_lists_the_options_and_exit_statuses() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let output = run(runtime_dir.path(), &["top", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(help.contains("Exit status:"));
    assert_snapshot!(help);
}

#[test]
fn no_worker_in_the_socket_directory_exits_1_with_a_hint() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let output = run(runtime_dir.path(), &["top", "--once"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "no running openrtc worker found in {}/openrtc\n",
            runtime_dir.path().display()
        )
    );
}

#[test]
fn a_missing_socket_exits_1_with_a_hint() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let output = run(
        runtime_dir.path(),
        &["top", "--once", "--socket", "/nonexistent"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "no running openrtc worker found at /nonexistent\n"
    );
}

#[test]
fn a_stale_socket_file_is_skipped() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let stale = socket_dir(runtime_dir.path()).join("dead-999.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists(), "the socket file outlives its listener");
    let output = run(runtime_dir.path(), &["top", "--once"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "no running openrtc worker found in {}/openrtc\n",
            runtime_dir.path().display()
        )
    );
}

#[test]
fn an_out_of_range_refresh_rate_is_a_usage_error() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let output = run(runtime_dir.path(), &["top", "--refresh-rate", "20"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--refresh-rate") && message.contains("0.5") && message.contains("10"),
        "{message}"
    );
}

#[test]
fn a_worker_socket_is_shown_as_text() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-4242.sock");
    let worker = StandInWorker::spawn(&path, snapshot_line(busy_worker()), 1, None);
    let output = run(
        runtime_dir.path(),
        &[
            "top",
            "--once",
            "--socket",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    assert_eq!(
        stdout(&output),
        render_workers(&[&busy_worker()], &ViewOptions::default())
    );
    assert_eq!(worker.join(), vec!["{\"v\":1,\"op\":\"snapshot\"}\n"]);
}

#[test]
fn json_output_is_the_snapshot_filtered_and_sorted() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-4242.sock");
    let worker = StandInWorker::spawn(&path, snapshot_line(busy_worker()), 1, None);
    let output = run(
        runtime_dir.path(),
        &[
            "top",
            "--once",
            "--format",
            "json",
            "--tenant",
            "acme",
            "--sort",
            "dur",
            "--socket",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "one line per worker: {text}");
    let parsed: PoolSnapshot = serde_json::from_str(&text).expect("the line is a snapshot");
    let options = ViewOptions {
        sort: SortKey::Dur,
        tenant: Some("acme".into()),
        ..ViewOptions::default()
    };
    assert_eq!(parsed, filtered_snapshot(&busy_worker(), &options));
    let ids: Vec<String> = parsed
        .sessions
        .iter()
        .map(|row| row.id.to_string())
        .collect();
    assert_eq!(ids, ["s-1", "s-10"], "acme's sessions, longest first");
    assert_eq!(parsed.worker, busy_worker().worker);
    worker.join();
}

#[test]
fn every_worker_in_the_directory_is_shown_in_name_then_pid_order() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let dir = socket_dir(runtime_dir.path());
    // The file names sort demo-10 before demo-9; the output must sort by pid.
    let ten = StandInWorker::spawn(
        &dir.join("demo-10.sock"),
        snapshot_line(idle_worker("demo", 10)),
        1,
        None,
    );
    let nine = StandInWorker::spawn(
        &dir.join("demo-9.sock"),
        snapshot_line(idle_worker("demo", 9)),
        1,
        None,
    );
    drop(UnixListener::bind(dir.join("demo-8.sock")).expect("bind"));
    let output = run(runtime_dir.path(), &["top", "--once"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "",
        "the stale demo-8 socket is skipped silently"
    );
    assert_eq!(
        stdout(&output),
        render_workers(
            &[&idle_worker("demo", 9), &idle_worker("demo", 10)],
            &ViewOptions::default()
        )
    );
    let text = stdout(&output);
    let pid_9 = text.find("worker demo pid 9 ").expect("pid 9 shown");
    let pid_10 = text.find("worker demo pid 10 ").expect("pid 10 shown");
    assert!(pid_9 < pid_10);
    ten.join();
    nine.join();
}

#[test]
fn a_refusing_worker_exits_2_with_its_message() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-1.sock");
    let worker = StandInWorker::spawn(
        &path,
        r#"{"v":1,"type":"error","code":"too_many_clients","message":"too many clients; try again"}"#
            .to_owned(),
        1,
        None,
    );
    let output = run(
        runtime_dir.path(),
        &[
            "top",
            "--once",
            "--socket",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "error from worker {}: too many clients; try again\n",
            path.display()
        )
    );
    worker.join();
}

#[test]
fn a_garbled_answer_exits_2_with_a_clear_error() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-1.sock");
    let worker = StandInWorker::spawn(&path, "HTTP/1.1 400 Bad Request".to_owned(), 1, None);
    let output = run(
        runtime_dir.path(),
        &[
            "top",
            "--once",
            "--socket",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "cannot read worker {}: malformed answer",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains("HTTP/1.1 400 Bad Request"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    worker.join();
}

#[test]
fn a_closed_stdout_ends_cleanly() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-4242.sock");
    let (release, released) = std::sync::mpsc::channel();
    let worker = StandInWorker::spawn(&path, snapshot_line(busy_worker()), 1, Some(released));
    let mut child = openrtc(runtime_dir.path())
        .args([
            "top",
            "--once",
            "--socket",
            path.to_str().expect("UTF-8 path"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openrtc");
    // Close the reading end before the worker answers, so the CLI writes into a dead pipe.
    drop(child.stdout.take());
    release.send(()).expect("release the answer");
    let output = child.wait_with_output().expect("wait for openrtc");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    worker.join();
}

#[test]
fn the_live_view_with_no_worker_exits_1_with_the_hint() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let output = run(runtime_dir.path(), &["top", "--refresh-rate", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "", "the screen is never taken over");
    assert_eq!(
        stderr(&output),
        format!(
            "no running openrtc worker found in {}/openrtc\n",
            runtime_dir.path().display()
        )
    );
}

#[test]
fn the_live_view_needs_a_terminal() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-4242.sock");
    let worker = StandInWorker::spawn(&path, snapshot_line(busy_worker()), 1, None);
    let output = run(
        runtime_dir.path(),
        &["top", "--socket", path.to_str().expect("UTF-8 path")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "", "no escape sequences reach a pipe");
    let message = stderr(&output);
    assert!(
        message.starts_with("openrtc: the live view needs a terminal")
            && message.contains("--once"),
        "{message}"
    );
    worker.join();
}

#[test]
fn the_worker_flag_picks_one_worker_by_name() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let dir = socket_dir(runtime_dir.path());
    let alpha = StandInWorker::spawn(
        &dir.join("alpha-10.sock"),
        snapshot_line(idle_worker("alpha", 10)),
        1,
        None,
    );
    // A listener that never answers: asking it would end in a timeout on standard error, so
    // the empty standard error below shows that another worker's socket is not asked.
    let _beta = UnixListener::bind(dir.join("beta-11.sock")).expect("bind");
    let output = run(runtime_dir.path(), &["top", "--once", "--worker", "alpha"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    assert_eq!(
        stdout(&output),
        render_workers(&[&idle_worker("alpha", 10)], &ViewOptions::default())
    );
    alpha.join();

    let missing = run(runtime_dir.path(), &["top", "--once", "--worker", "gamma"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        format!(
            "no running openrtc worker named gamma found in {}/openrtc\n",
            runtime_dir.path().display()
        )
    );
    let live_missing = run(runtime_dir.path(), &["top", "--worker", "gamma"]);
    assert_eq!(live_missing.status.code(), Some(1));
}

#[test]
fn json_without_once_prints_a_line_per_refresh() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let path = runtime_dir.path().join("demo-4242.sock");
    let worker = StandInWorker::spawn(&path, snapshot_line(busy_worker()), 2, None);
    let mut child = openrtc(runtime_dir.path())
        .args([
            "top",
            "--format",
            "json",
            "--refresh-rate",
            "10",
            "--socket",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openrtc");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    for _ in 0..2 {
        let line = lines
            .next()
            .expect("a line per refresh")
            .expect("UTF-8 line");
        let parsed: PoolSnapshot = serde_json::from_str(&line).expect("a snapshot");
        assert_eq!(
            parsed,
            filtered_snapshot(&busy_worker(), &ViewOptions::default()),
            "every session, by CPU"
        );
    }
    assert_eq!(worker.join().len(), 2);
    child.kill().expect("stop the view");
    child.wait().expect("reap the view");
}
