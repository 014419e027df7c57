//! `density`: sessions that each hold memory and wait; what the worker pays per session.

use std::time::{Duration, Instant};

use openrtc::{AgentPool, JobRequest, PoolHandle, PoolSnapshot, Session, agent_fn};
use serde::Serialize;

use crate::cli::{Report, counts};

const MIB: u64 = 1024 * 1024;

/// How long to wait for sessions to start before giving up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Options of `density`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Session counts to measure, comma-separated.
    #[arg(long, default_value = "16,50,100,1000", value_parser = counts)]
    sessions: std::vec::Vec<usize>,
    /// MiB each session allocates, touches and holds.
    #[arg(long, default_value_t = 5)]
    hold_mib: u64,
}

/// The figures of one session count.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct DensityRow {
    sessions: usize,
    /// Process RSS with every session live.
    rss_bytes: u64,
    /// Growth of RSS per session, from before the sessions started.
    rss_per_session_bytes: u64,
    /// Tracked heap per session beyond the memory it holds on purpose: the runtime's own
    /// state for a session (cell, task, timers) plus the agent future's small state.
    overhead_per_session_bytes: i64,
    /// What the snapshot attributes to the sessions, against what they really hold.
    attributed_bytes: u64,
    held_bytes: u64,
}

/// The `density` report.
#[derive(Debug, Serialize)]
pub(crate) struct DensityReport {
    benchmark: &'static str,
    hold_bytes: u64,
    rows: Vec<DensityRow>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<DensityReport> {
    let hold_bytes = args.hold_mib * MIB;
    let rows = match args.sessions.as_slice() {
        [sessions] => {
            let row = measure(*sessions, hold_bytes);
            let _ = std::fs::remove_dir_all(bench_dir());
            vec![row?]
        }
        // Each count in a fresh process: RSS that one count's sessions leave behind in the
        // allocator would otherwise count against the next.
        several => several
            .iter()
            .map(|&sessions| measure_in_child(sessions, args.hold_mib))
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(DensityReport {
        benchmark: "density",
        hold_bytes,
        rows,
    })
}

fn measure_in_child(sessions: usize, hold_mib: u64) -> anyhow::Result<DensityRow> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--json", "density", "--sessions", &sessions.to_string()])
        .args(["--hold-mib", &hold_mib.to_string()])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "density for {sessions} sessions failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(serde_json::from_value(report["rows"][0].take())?)
}

fn measure(sessions: usize, hold_bytes: u64) -> anyhow::Result<DensityRow> {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let pool = AgentPool::builder()
        .agent(
            "holder",
            agent_fn(move |session: Session| async move {
                let held = vec![1_u8; usize::try_from(hold_bytes).unwrap_or(usize::MAX)];
                session.cancelled().await;
                drop(held);
                Ok(())
            }),
        )
        .max_concurrent_sessions(u32::try_from(sessions).unwrap_or(u32::MAX))
        .worker_threads(2)
        .drain_timeout(Duration::ZERO)
        .socket_path(dir.join(format!("density-{sessions}.sock")))
        .build()?;
    let handle = pool.handle();
    let running = Running::start(pool);
    // The baseline once the runtime runs (it allocates its own state while it starts).
    wait_for(&handle, |snapshot| snapshot.worker.uptime_ms > 0)?;
    let before = handle.runtime_snapshot();
    for _ in 0..sessions {
        handle
            .launch(JobRequest::new())
            .map_err(|rejected| anyhow::anyhow!("launch refused: {rejected}"))?;
    }
    let during = wait_for(&handle, |snapshot| {
        snapshot.sessions.len() == sessions
            && snapshot
                .sessions
                .iter()
                .all(|row| row.mem_bytes >= hold_bytes)
    })?;
    running.stop();
    let held_bytes = hold_bytes * sessions as u64;
    let count = sessions as u64;
    let tracked_growth = during.worker.tracked_bytes as i64 - before.worker.tracked_bytes as i64;
    Ok(DensityRow {
        sessions,
        rss_bytes: during.worker.rss_bytes,
        rss_per_session_bytes: during
            .worker
            .rss_bytes
            .saturating_sub(before.worker.rss_bytes)
            / count,
        overhead_per_session_bytes: (tracked_growth - held_bytes as i64) / sessions as i64,
        attributed_bytes: during.sessions.iter().map(|row| row.mem_bytes).sum(),
        held_bytes,
    })
}

/// Where this run's worker sockets go.
pub(crate) fn bench_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("openrtc-bench-{}", std::process::id()))
}

/// Polls snapshots until `done` likes one.
fn wait_for(
    handle: &PoolHandle,
    done: impl Fn(&PoolSnapshot) -> bool,
) -> anyhow::Result<PoolSnapshot> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot = handle.runtime_snapshot();
        if done(&snapshot) {
            return Ok(snapshot);
        }
        anyhow::ensure!(Instant::now() < deadline, "sessions did not start in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pool running on its own thread until stopped.
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), openrtc::RunError>>,
}

impl Running {
    pub(crate) fn start(pool: AgentPool) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            pool.run_until(async move {
                let _ = stopped.await;
            })
        });
        Self { stop, thread }
    }

    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

impl Report for DensityReport {
    fn table(&self) -> String {
        let mut table = format!(
            "density: sessions holding {} MiB each and waiting\n{:>9}  {:>10}  {:>14}  {:>20}  {:>17}\n",
            self.hold_bytes / MIB,
            "SESSIONS",
            "RSS(MiB)",
            "RSS/SESSION",
            "OVERHEAD/SESSION(B)",
            "ATTRIBUTED/HELD"
        );
        for row in &self.rows {
            table.push_str(&format!(
                "{:>9}  {:>10.1}  {:>11.2} MiB  {:>20}  {:>16.4}\n",
                row.sessions,
                row.rss_bytes as f64 / MIB as f64,
                row.rss_per_session_bytes as f64 / MIB as f64,
                row.overhead_per_session_bytes,
                row.attributed_bytes as f64 / row.held_bytes.max(1) as f64,
            ));
        }
        table
    }
}
