//! `density`: sessions that each hold memory and wait; what the worker pays per session.

use std::time::Duration;

use openrtc::{AgentPool, JobRequest, Session, agent_fn};
use serde::Serialize;

use crate::cli::{Report, counts};
use crate::harness::{Running, row_from_child};

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
        [sessions] => vec![measure(*sessions, hold_bytes)?],
        // Each count in a fresh process: RSS that one count's sessions leave behind in the
        // allocator would otherwise count against the next.
        several => several
            .iter()
            .map(|&sessions| {
                let args = [
                    "density",
                    "--sessions",
                    &sessions.to_string(),
                    "--hold-mib",
                    &args.hold_mib.to_string(),
                ];
                row_from_child(&std::env::current_exe()?, &args.map(str::to_owned))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(DensityReport {
        benchmark: "density",
        hold_bytes,
        rows,
    })
}

fn measure(sessions: usize, hold_bytes: u64) -> anyhow::Result<DensityRow> {
    let builder = AgentPool::builder()
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
        .drain_timeout(Duration::ZERO);
    let running = Running::start(builder, &format!("density-{sessions}"), true)?;
    // The baseline once the runtime runs (it allocates its own state while it starts).
    let before = running.wait_for("the runtime to start", PATIENCE, |snapshot| {
        snapshot.worker.uptime_ms > 0
    })?;
    for _ in 0..sessions {
        running
            .handle
            .launch(JobRequest::new())
            .map_err(|rejected| anyhow::anyhow!("launch refused: {rejected}"))?;
    }
    let during = running.wait_for("every session to hold its memory", PATIENCE, |snapshot| {
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
