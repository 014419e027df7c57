//! Every step of every runbook in `docs/runbooks/`, run with `bash` against a real demo
//! worker, as an operator would type it: `openrtc` on `PATH`, the worker's log in `demo.log`
//! and its JSON log file in `openrtc-demo.jsonl` (the demo's default, relative to the working
//! directory it shares with the steps).
//!
//! A step is a fenced `bash` block. It passes when it exits 0 (with `pipefail`) and prints
//! something; when the block is followed by `<!-- expect: TEXT -->`, its output must also
//! contain TEXT. A step that does not pass yet is run again until it does or the deadline
//! passes, as an operator repeats a command while the worker gets there.
//!
//! A runbook's `<!-- demo: ARGS -->` line gives the demo worker more arguments, as the
//! runbook's own start command does; the working directory holds a copy of the demo's
//! `tenants.toml`, which steps may edit. With `--livekit` among them, the worker takes its
//! jobs from a real LiveKit server started for the runbook (the runtime's test fixture), and
//! three rooms (`lobby-1` to `lobby-3`) are created once it has registered (automatic dispatch).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::livekit_fixture;

/// The rooms dispatched to a LiveKit runbook's worker.
const LIVEKIT_ROOMS: [&str; 3] = ["lobby-1", "lobby-2", "lobby-3"];

/// How long one step may take to pass: the demo's crashes, kills and drains take seconds.
const STEP_PATIENCE: Duration = Duration::from_secs(60);

/// How long one run of a step may take before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// One runnable step of a runbook.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    /// The line of the opening fence, for messages.
    line: usize,
    script: String,
    expect: Option<String>,
}

/// The demo arguments a runbook asks for with `<!-- demo: ARGS -->` (none without one).
fn demo_args(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("<!-- demo:")
                .and_then(|rest| rest.strip_suffix("-->"))
        })
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The `bash` blocks of a Markdown text, each with the `<!-- expect: … -->` that follows it.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut script = String::new();
        for (_, body) in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
            script.push_str(body);
            script.push('\n');
        }
        if info.trim() != "bash" {
            continue;
        }
        let expect = lines.peek().and_then(|(_, next)| {
            next.trim()
                .strip_prefix("<!-- expect:")
                .and_then(|rest| rest.strip_suffix("-->"))
                .map(|text| text.trim().to_owned())
        });
        steps.push(Step {
            line: index + 1,
            script,
            expect,
        });
    }
    steps
}

#[test]
fn a_runbook_names_its_demo_arguments_in_a_comment() {
    assert_eq!(
        demo_args("# Title\n<!-- demo: --tenant-config tenants.toml --max-secs 8 -->\ntext\n"),
        ["--tenant-config", "tenants.toml", "--max-secs", "8"]
    );
    assert!(demo_args("# Title\n```bash\nopenrtc top\n```\n").is_empty());
}

#[test]
fn steps_are_bash_blocks_with_their_expectations() {
    let markdown = "intro\n```bash\nopenrtc top --once\n```\n<!-- expect: worker demo -->\n\
                    ```sh\ncargo run\n```\n```text\nkeys\n```\n```bash\na\nb\n```\ntext\n";
    assert_eq!(
        steps(markdown),
        [
            Step {
                line: 2,
                script: "openrtc top --once\n".into(),
                expect: Some("worker demo".into()),
            },
            Step {
                line: 12,
                script: "a\nb\n".into(),
                expect: None,
            },
        ]
    );
}

/// The repository's runbooks, in name order.
fn runbooks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/runbooks");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    found.sort();
    found
}

/// A demo worker for one runbook: its own socket directory, its log in `demo.log` and its JSON
/// log in `openrtc-demo.jsonl` of the working directory, and a `bin` directory with `openrtc`
/// to put on `PATH`.
struct Worker {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// The LiveKit server the worker takes jobs from, for a runbook that asks for one.
    livekit: Option<livekit_fixture::LiveKitServer>,
}

impl Worker {
    fn start(extra_args: &[String]) -> Self {
        let demo = PathBuf::from(env!("CARGO_BIN_EXE_openrtc-demo"));
        let cli = demo.with_file_name("openrtc");
        assert!(
            cli.exists(),
            "{} is missing: build the workspace (cargo build --workspace --bins) before these \
             tests",
            cli.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        let runtime = dir.path().join("runtime");
        for made in [&bin, &runtime] {
            std::fs::create_dir(made).expect("create a directory");
        }
        std::os::unix::fs::symlink(&cli, bin.join("openrtc")).expect("link openrtc");
        let log = std::fs::File::create(dir.path().join("demo.log")).expect("demo.log");
        let tenants = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants.toml");
        std::fs::copy(&tenants, dir.path().join("tenants.toml")).expect("copy tenants.toml");
        let livekit = extra_args
            .iter()
            .any(|arg| arg == "--livekit")
            .then(livekit_fixture::LiveKitServer::start);
        let mut command = Command::new(demo);
        if let Some(server) = &livekit {
            command
                .env("LIVEKIT_URL", server.url())
                .env("LIVEKIT_API_KEY", server.api_key())
                .env("LIVEKIT_API_SECRET", server.api_secret());
        }
        // The seed's first sessions include every agent the runbooks look for.
        let child = command
            .args(["--threads", "2", "--seed", "2"])
            // Any free port: the runbooks find it in the snapshot (`worker.http_addr`).
            .args(["--http-addr", "127.0.0.1:0"])
            // The same for calls (`worker.media_addr`).
            .args(["--media-addr", "127.0.0.1:0"])
            .args(extra_args)
            .current_dir(dir.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start openrtc-demo");
        if let Some(server) = &livekit {
            dispatch_rooms(server);
        }
        Self {
            child,
            dir,
            livekit,
        }
    }

    /// Runs one step with bash, as the operator's shell would, killed after [`RUN_LIMIT`].
    fn run(&self, step: &Step) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.dir.path().join("bin")];
        paths.extend(std::env::split_paths(&path));
        let mut child = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &step.script])
            .current_dir(self.dir.path())
            .env("PATH", std::env::join_paths(paths).expect("a PATH"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("runtime"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bash");
        let deadline = Instant::now() + RUN_LIMIT;
        while child.try_wait().expect("wait for bash").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("the step's output")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("demo.log")).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.livekit.take());
    }
}

/// Once the worker has registered with `server`, dispatches [`LIVEKIT_ROOMS`] to it (rooms
/// dispatched before any worker registers find none, and are dropped).
fn dispatch_rooms(server: &livekit_fixture::LiveKitServer) {
    let deadline = Instant::now() + STEP_PATIENCE;
    while !server.log_contains("worker registered") {
        assert!(
            Instant::now() < deadline,
            "the demo worker did not register with the LiveKit server; its log ends:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for room in LIVEKIT_ROOMS {
        server.create_room(room);
    }
}

/// Whether a run of `step` passed: exit 0, some output, and the expected text if any.
fn passed(step: &Step, output: &Output) -> bool {
    let stdout = String::from_utf8_lossy(&output.stdout);
    output.status.success()
        && !stdout.trim().is_empty()
        && step
            .expect
            .as_ref()
            .is_none_or(|expected| stdout.contains(expected.as_str()))
}

#[test]
fn every_runbook_step_works_against_the_demo_worker() {
    let mut ran = 0;
    for runbook in runbooks() {
        let markdown = std::fs::read_to_string(&runbook).expect("read the runbook");
        let steps = steps(&markdown);
        if steps.is_empty() {
            continue;
        }
        let name = runbook
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let worker = Worker::start(&demo_args(&markdown));
        for step in &steps {
            let deadline = Instant::now() + STEP_PATIENCE;
            loop {
                let output = worker.run(step);
                if passed(step, &output) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}:{}: the step did not pass within {STEP_PATIENCE:?}\n--- step\n{}\
                     --- expected in its output: {:?}\n--- exit: {}\n--- stdout\n{}\n--- stderr\n{}\
                     \n--- worker log (last lines)\n{}",
                    step.line,
                    step.script,
                    step.expect,
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr),
                    last_lines(&worker.log(), 20),
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} runbook steps were found");
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
