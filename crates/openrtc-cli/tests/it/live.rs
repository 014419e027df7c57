//! `openrtc top` against real `openrtc-demo` worker processes over their real sockets: the
//! printed `--once` view here, the live view in a real terminal in [`tui`].
//!
//! The demo binary is built by the same `cargo` invocation (the workspace's test command
//! builds every binary) and sits next to the `openrtc` binary.

mod blocked;
mod calls;
mod isolation;
mod tui;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use openrtc_proto::{PoolSnapshot, SessionId, SessionState};

use crate::binary::{run, stderr, stdout};

/// How long a wait may take before the test fails: generous, for busy CI machines.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `openrtc-demo` process; killed if the test ends without stopping it.
pub(crate) struct DemoWorker {
    child: Child,
    stderr_path: PathBuf,
}

fn demo_binary() -> PathBuf {
    let cli = Path::new(env!("CARGO_BIN_EXE_openrtc"));
    let demo = cli.with_file_name("openrtc-demo");
    assert!(
        demo.exists(),
        "{} is missing: build the workspace (cargo build --workspace) before these tests",
        demo.display()
    );
    demo
}

impl DemoWorker {
    /// Starts a demo worker keeping `callers` sessions of `agent` live for ten minutes each,
    /// without HTTP endpoints.
    fn start(
        runtime_dir: &Path,
        name: &str,
        agent: &str,
        callers: u32,
        socket: Option<&Path>,
    ) -> Self {
        Self::start_with_http(runtime_dir, name, agent, callers, socket, "off")
    }

    /// As [`Self::start`], serving the HTTP health endpoints on `http_addr` (`127.0.0.1:0`
    /// for any free port, `off` for none).
    pub(crate) fn start_with_http(
        runtime_dir: &Path,
        name: &str,
        agent: &str,
        callers: u32,
        socket: Option<&Path>,
        http_addr: &str,
    ) -> Self {
        Self::start_with_args(runtime_dir, name, agent, callers, socket, http_addr, &[])
    }

    /// As [`Self::start_with_http`], with more of the demo's arguments.
    pub(crate) fn start_with_args(
        runtime_dir: &Path,
        name: &str,
        agent: &str,
        callers: u32,
        socket: Option<&Path>,
        http_addr: &str,
        more: &[&str],
    ) -> Self {
        let stderr_path = runtime_dir.join(format!("{name}.stderr"));
        let mut command = Command::new(demo_binary());
        command
            .args(["--worker-name", name, "--only", agent, "--threads", "2"])
            .args(["--http-addr", http_addr, "--media-addr", "127.0.0.1:0"])
            // In the test's directory: the demo's default log file is relative to its own.
            .arg("--log-file")
            .arg(runtime_dir.join(format!("{name}.jsonl")))
            .args(["--callers", &callers.to_string(), "--seed", "7"])
            .args([
                "--min-secs",
                "600",
                "--max-secs",
                "600",
                "--drain-timeout-secs",
                "0",
            ])
            // Its log file (`openrtc-demo.jsonl`, relative) goes in the test's directory.
            .current_dir(runtime_dir)
            .env("XDG_RUNTIME_DIR", runtime_dir)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("stderr file"));
        if let Some(socket) = socket {
            command.arg("--socket").arg(socket);
        }
        command.args(more);
        let child = command.spawn().expect("start openrtc-demo");
        Self { child, stderr_path }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(mut self) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&self.stderr_path).expect("stderr");
        (status, stderr)
    }
}

impl Drop for DemoWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The permission bits of a file.
#[track_caller]
fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Polls `top --once --format json` until `accept` likes every worker's snapshot.
#[track_caller]
pub(crate) fn wait_for_snapshots(
    runtime_dir: &Path,
    extra: &[&str],
    what: &str,
    accept: impl Fn(&[PoolSnapshot]) -> bool,
) -> Vec<PoolSnapshot> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut args = vec!["top", "--once", "--format", "json"];
        args.extend_from_slice(extra);
        let output = run(runtime_dir, &args);
        if output.status.success() {
            let snapshots: Vec<PoolSnapshot> = stdout(&output)
                .lines()
                .map(|line| serde_json::from_str(line).expect("a snapshot per line"))
                .collect();
            if accept(&snapshots) {
                return snapshots;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_once_shows_a_live_worker_in_text_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("custom.sock");
    let worker = DemoWorker::start(dir.path(), "live1", "echo", 5, Some(&socket));
    let socket_arg = socket.to_str().expect("UTF-8 path");
    let snapshots =
        wait_for_snapshots(dir.path(), &["--socket", socket_arg], "5 sessions", |all| {
            all.len() == 1 && all[0].worker.active_sessions == 5
        });
    let snapshot = &snapshots[0];
    assert_eq!(snapshot.worker.name, "live1");
    assert_eq!(snapshot.worker.pid, worker.pid());
    assert_eq!(snapshot.worker.worker_threads, 2);
    assert!(snapshot.sessions.iter().all(|row| row.agent == "echo"));
    assert!(
        snapshot
            .sessions
            .iter()
            .all(|row| ["acme", "globex", "initech"].contains(&row.tenant.as_str()))
    );
    assert_eq!(mode_of(&socket), 0o600);

    let output = run(
        dir.path(),
        &["top", "--once", "--socket", socket_arg, "--sort", "session"],
    );
    assert!(output.status.success());
    let shown = stdout(&output);
    assert!(
        shown.starts_with(&format!("worker live1 pid {}", worker.pid())),
        "{shown}"
    );
    let log_line = shown.lines().nth(2).unwrap_or_default();
    assert!(
        log_line.starts_with("log: ") && log_line.contains("live1.jsonl ("),
        "the worker's log file, under the header:\n{shown}"
    );
    let rows: Vec<&str> = shown
        .lines()
        .filter(|line| line.starts_with("s-"))
        .collect();
    assert_eq!(rows.len(), 5, "{shown}");
    assert!(rows.iter().all(|row| row.contains(" echo ")), "{shown}");
    let ids: Vec<&str> = rows
        .iter()
        .map(|row| row.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["s-1", "s-2", "s-3", "s-4", "s-5"]);

    // The JSON view filters and sorts as the text does: the sessions of one tenant, by id.
    let tenant = snapshot.sessions[0].tenant.clone();
    let mut expected: Vec<SessionId> = snapshot
        .sessions
        .iter()
        .filter(|row| row.tenant == tenant)
        .map(|row| row.id)
        .collect();
    expected.sort();
    let json = run(
        dir.path(),
        &[
            "top", "--once", "--format", "json", "--socket", socket_arg, "--tenant", &tenant,
            "--sort", "session",
        ],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let filtered: PoolSnapshot =
        serde_json::from_str(stdout(&json).trim_end()).expect("one snapshot line");
    let ids: Vec<SessionId> = filtered.sessions.iter().map(|row| row.id).collect();
    assert_eq!(ids, expected, "only {tenant}'s sessions, in id order");
    assert_eq!(
        filtered.worker.active_sessions, 5,
        "the worker's figures stay whole"
    );

    let filtered = run(
        dir.path(),
        &["top", "--once", "--socket", socket_arg, "--agent", "hot"],
    );
    assert!(filtered.status.success());
    let filtered = stdout(&filtered);
    assert!(filtered.contains("(no matching sessions"), "{filtered}");
    assert!(
        !filtered.lines().any(|line| line.starts_with("s-")),
        "{filtered}"
    );

    let (status, _) = worker.terminate();
    assert!(
        status.success(),
        "the demo exits cleanly on SIGTERM: {status}"
    );
    assert!(!socket.exists(), "the socket file is removed on exit");
    let gone = run(dir.path(), &["top", "--once", "--socket", socket_arg]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        stderr(&gone).trim(),
        format!("no running openrtc worker found at {socket_arg}")
    );
}

#[test]
fn top_finds_every_worker_in_the_private_per_user_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let beta = DemoWorker::start(dir.path(), "beta", "echo", 2, None);
    let alpha = DemoWorker::start(dir.path(), "alpha", "echo", 3, None);
    let snapshots = wait_for_snapshots(dir.path(), &[], "two workers", |all| {
        all.len() == 2
            && all
                .iter()
                .map(|one| one.worker.active_sessions)
                .sum::<u32>()
                == 5
    });
    let names: Vec<&str> = snapshots
        .iter()
        .map(|one| one.worker.name.as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    let socket_dir = dir.path().join("openrtc");
    assert_eq!(mode_of(&socket_dir), 0o700);
    for (name, pid) in [("alpha", alpha.pid()), ("beta", beta.pid())] {
        let socket = socket_dir.join(format!("{name}-{pid}.sock"));
        assert_eq!(mode_of(&socket), 0o600);
    }

    let output = run(dir.path(), &["top", "--once"]);
    assert!(output.status.success());
    let stdout = stdout(&output);
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("worker "))
        .collect();
    assert_eq!(headers.len(), 2, "{stdout}");
    assert!(headers[0].starts_with(&format!("worker alpha pid {}", alpha.pid())));
    assert!(headers[1].starts_with(&format!("worker beta pid {}", beta.pid())));
    assert_eq!(
        stdout.lines().filter(|line| line.starts_with("s-")).count(),
        5
    );
}

#[test]
fn a_refused_symlinked_socket_directory_stops_the_worker_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("openrtc")).expect("symlink");
    let mut worker = DemoWorker::start(dir.path(), "trap", "echo", 1, None);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = worker.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo should refuse to start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&worker.stderr_path).expect("stderr");
    assert!(stderr.contains("it is a symlink"), "{stderr}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).expect("dir").count(), 0);
}

#[test]
fn a_blocking_session_shows_slow_in_top_and_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = DemoWorker::start(dir.path(), "blocky", "blocker", 1, None);
    // The stall is counted when the poll returns and its details kept by the watchdog a
    // scan later: wait for the details.
    let snapshots = wait_for_snapshots(dir.path(), &[], "the blocker's stall", |all| {
        all.len() == 1
            && all[0]
                .sessions
                .first()
                .is_some_and(|row| row.last_stall.is_some())
    });
    let row = &snapshots[0].sessions[0];
    assert_eq!(
        (row.id.to_string().as_str(), row.agent.as_str()),
        ("s-1", "blocker")
    );
    assert_eq!(
        row.state,
        SessionState::Slow,
        "slow for the hold after its stall"
    );
    let stall_ms = row
        .last_stall
        .as_ref()
        .map_or(0, |stall| stall.duration_ns / 1_000_000);
    assert!(
        (300..600).contains(&stall_ms),
        "a 300 ms sleep stalled for {stall_ms} ms"
    );

    let output = run(dir.path(), &["top", "--once", "--status", "slow"]);
    let stdout = stdout(&output);
    assert!(
        stdout.lines().any(|line| line.starts_with("s-1 ")
            && line.contains("blocker")
            && line.contains("slow")),
        "{stdout}"
    );
    let (status, stderr) = worker.terminate();
    assert!(status.success());
    let line = stderr
        .lines()
        .find(|line| line.contains("[slow-session]"))
        .unwrap_or_else(|| panic!("no [slow-session] line in {stderr}"));
    let expected = format!(
        "[slow-session] session_id=s-1 tenant={} agent=blocker blocked worker ",
        row.tenant
    );
    assert!(line.contains(&expected), "{line}");
    // The watchdog saw the stall in progress and says what the thread was doing.
    assert!(line.contains("ms (sleep in "), "{line}");
    let stall = row.last_stall.as_ref().expect("recorded");
    assert_eq!(stall.class, Some(openrtc_proto::StallClass::Sleep));
}
