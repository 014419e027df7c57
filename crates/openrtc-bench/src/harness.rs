//! What every benchmark needs around a pool: running it on its own thread with its socket in
//! a private directory, waiting on its snapshots, and measuring one session count in a fresh
//! process of this binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openrtc::{AgentPoolBuilder, JobRequest, PoolHandle, PoolSnapshot, RunningPool, SessionId};
use serde::de::DeserializeOwned;

/// Where this process's worker sockets go (removed when each pool stops).
fn socket_dir() -> PathBuf {
    std::env::temp_dir().join(format!("openrtc-bench-{}", std::process::id()))
}

/// A pool running on its own thread (the library's [`RunningPool`]) until stopped, with its
/// socket in this process's socket directory.
pub(crate) struct Running {
    pool: RunningPool,
}

impl Running {
    /// Builds `builder` with its socket named `name` in this process's socket directory
    /// (unless introspection is off) and runs it.
    pub(crate) fn start(
        builder: AgentPoolBuilder,
        name: &str,
        introspection: bool,
    ) -> anyhow::Result<Self> {
        let pool = if introspection {
            let dir = socket_dir();
            std::fs::create_dir_all(&dir)?;
            builder
                .socket_path(dir.join(format!("{name}.sock")))
                .build()?
        } else {
            builder.enable_introspection(false).build()?
        };
        Ok(Self {
            pool: pool.run_in_background()?,
        })
    }

    /// The pool's handle.
    pub(crate) fn handle(&self) -> &PoolHandle {
        self.pool.handle()
    }

    /// Launches a session, or says why the pool refused it.
    pub(crate) fn launch(&self, request: JobRequest) -> anyhow::Result<SessionId> {
        self.handle()
            .launch(request)
            .map(|session| session.id())
            .map_err(|rejected| anyhow::anyhow!("launch refused: {rejected}"))
    }

    /// Drains the pool, waits for its thread, and removes the socket directory.
    pub(crate) fn stop(self) {
        let _ = self.pool.drain_and_join();
        let _ = std::fs::remove_dir_all(socket_dir());
    }

    /// Polls snapshots until `done` likes one, for at most `patience`.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        done: impl Fn(&PoolSnapshot) -> bool,
    ) -> anyhow::Result<PoolSnapshot> {
        let deadline = Instant::now() + patience;
        loop {
            let snapshot = self.handle().runtime_snapshot();
            if done(&snapshot) {
                return Ok(snapshot);
            }
            anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs `exe --json <args>` (this benchmark for one session count) and reads the first row
/// of its report: each count in a fresh process, so RSS and CPU belong to that count alone.
pub(crate) fn row_from_child<Row: DeserializeOwned>(
    exe: &Path,
    args: &[String],
) -> anyhow::Result<Row> {
    let output = std::process::Command::new(exe)
        .arg("--json")
        .args(args)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed: {}",
        exe.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    first_row(&output.stdout)
}

/// The first row of a benchmark's JSON report.
pub(crate) fn first_row<Row: DeserializeOwned>(json: &[u8]) -> anyhow::Result<Row> {
    let mut report: serde_json::Value = serde_json::from_slice(json)?;
    Ok(serde_json::from_value(report["rows"][0].take())?)
}
