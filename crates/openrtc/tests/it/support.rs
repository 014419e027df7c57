//! Helpers shared by the integration tests: starting a pool on its own thread (the library's
//! `RunningPool`), reading it, and waiting.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) use openrtc::RunningPool;
use openrtc::proto::{
    EndedSessionSnapshot, Response, ResponseEnvelope, SessionSnapshot, StallSnapshot,
};
use openrtc::{AgentPool, AgentPoolBuilder, PoolSnapshot, SessionId};

/// How long any wait in these tests may take before it fails: generous, for busy CI machines.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The tests' side of a [`RunningPool`]: starting one (panicking on a setup error) and
/// reading its snapshots.
pub(crate) trait TestPool: Sized {
    /// Builds `builder` (panics on a config error) and runs it until dropped.
    #[track_caller]
    fn start(builder: AgentPoolBuilder) -> Self {
        Self::run(builder.build().expect("valid test configuration"))
    }

    /// Runs `pool` on its own thread until dropped.
    fn run(pool: AgentPool) -> Self;

    fn snapshot(&self) -> PoolSnapshot;

    /// Waits until the session has ended, and returns its row from the recently ended list.
    #[track_caller]
    fn wait_ended(&self, id: SessionId) -> EndedSessionSnapshot {
        wait_for(&format!("session {id} to end"), || {
            self.snapshot()
                .recently_ended
                .into_iter()
                .find(|ended| ended.id == id)
        })
    }

    /// The live row of a session, if it is live.
    fn row(&self, id: SessionId) -> Option<SessionSnapshot> {
        row_of(&self.snapshot(), id)
    }
}

impl TestPool for RunningPool {
    #[track_caller]
    fn run(pool: AgentPool) -> Self {
        pool.run_in_background().expect("the test pool starts")
    }

    fn snapshot(&self) -> PoolSnapshot {
        self.handle().runtime_snapshot()
    }
}

pub(crate) fn row_of(snapshot: &PoolSnapshot, id: SessionId) -> Option<SessionSnapshot> {
    snapshot.sessions.iter().find(|row| row.id == id).cloned()
}

/// The last stall of a session once it is complete (its cause symbolized and its victims in).
pub(crate) fn complete_last_stall(snapshot: &PoolSnapshot, id: SessionId) -> Option<StallSnapshot> {
    row_of(snapshot, id)?
        .last_stall
        .filter(|stall| stall.pending.is_empty())
}

/// Runs `pool` with `run_until` on a thread of its own, until the returned sender is sent to
/// or dropped (for tests of what `run` returns, which `RunningPool` keeps to itself).
pub(crate) fn run_on_thread(
    pool: AgentPool,
) -> (
    std::thread::JoinHandle<Result<(), openrtc::RunError>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        pool.run_until(async move {
            let _ = stopped.await;
        })
    });
    (thread, stop)
}

/// A pool that has stopped: it refuses launches as `Stopped`, and its socket file is gone.
#[track_caller]
pub(crate) fn check_stopped(handle: &openrtc::PoolHandle, socket: &Path) {
    assert_eq!(
        handle.launch(openrtc::JobRequest::new()).err(),
        Some(openrtc::Rejected::Stopped)
    );
    assert!(!socket.exists(), "the socket file is removed");
}

/// Polls `check` every few milliseconds until it returns `Some`, or fails after [`PATIENCE`].
#[track_caller]
pub(crate) fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A client of a worker's introspection socket, as `openrtc top` is.
pub(crate) struct Client {
    pub(crate) reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    #[track_caller]
    pub(crate) fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Self {
            writer: stream.try_clone().expect("clone"),
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw bytes and reads one response line (`None` if the worker closed instead).
    pub(crate) fn ask_raw(&mut self, bytes: &[u8]) -> Option<ResponseEnvelope> {
        self.writer.write_all(bytes).ok()?;
        self.read()
    }

    pub(crate) fn read(&mut self) -> Option<ResponseEnvelope> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("the worker answers valid JSON")),
        }
    }

    #[track_caller]
    pub(crate) fn ask(&mut self, line: &str) -> Response {
        self.ask_raw(format!("{line}\n").as_bytes())
            .expect("an answer")
            .response
    }
}

/// An executable of the Python tools' venv (`streamdouble`, and `python` with `twilio`):
/// beside `$OPENRTC_STREAMDOUBLE` (set by `scripts/test`), else where `scripts/py-tools` puts
/// them.
#[track_caller]
pub(crate) fn py_tool(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("OPENRTC_STREAMDOUBLE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/py/streamdouble/bin")
                .join(name)
        },
        |streamdouble| std::path::PathBuf::from(streamdouble).with_file_name(name),
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/py-tools (scripts/test does) to install the Python tools",
        path.display()
    );
    path
}
