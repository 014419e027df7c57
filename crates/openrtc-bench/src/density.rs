//! `density`: sessions that each hold memory and wait; what the worker pays per session.

use std::time::Duration;

use openrtc::{AgentPool, JobRequest, Session, SessionId, agent_fn};
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
    /// MiB each session allocates, touches and holds (the mean, with a skewed pattern).
    #[arg(long, default_value_t = 5)]
    hold_mib: u64,
    /// How much each session holds: all the same, or skewed (session k holds
    /// `hold × (1 + k mod 4) × 2 / 5`, 0.4 to 1.6 times the mean), which an equal share of
    /// RSS cannot attribute right.
    #[arg(long, value_enum, default_value = "uniform")]
    hold_pattern: HoldPattern,
}

/// How much each session holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HoldPattern {
    /// Every session holds the same.
    Uniform,
    /// Session k holds `hold × (1 + k mod 4) × 2 / 5`.
    Skewed,
}

impl HoldPattern {
    /// What session `k` holds.
    fn held_by(self, hold_bytes: u64, k: u64) -> u64 {
        match self {
            Self::Uniform => hold_bytes,
            Self::Skewed => hold_bytes * (1 + k % 4) * 2 / 5,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Skewed => "skewed",
        }
    }
}

/// How far the per-session memory figures are from what each session holds, in % of it.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub(crate) struct AttributionError {
    mean_abs_pct: f64,
    max_abs_pct: f64,
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
    /// Each session's `mem_bytes` against what it holds.
    attribution_error: AttributionError,
}

/// The `density` report.
#[derive(Debug, Serialize)]
pub(crate) struct DensityReport {
    benchmark: &'static str,
    hold_bytes: u64,
    hold_pattern: HoldPattern,
    rows: Vec<DensityRow>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<DensityReport> {
    let hold_bytes = args.hold_mib * MIB;
    let rows = match args.sessions.as_slice() {
        [sessions] => vec![measure(*sessions, hold_bytes, args.hold_pattern)?],
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
                    "--hold-pattern",
                    args.hold_pattern.name(),
                ];
                row_from_child(&std::env::current_exe()?, &args.map(str::to_owned))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(DensityReport {
        benchmark: "density",
        hold_bytes,
        hold_pattern: args.hold_pattern,
        rows,
    })
}

/// Session `k`'s index: sessions are launched in order and numbered from 1, so no metadata
/// (which would count as the session's own memory) is needed to tell them apart.
fn index_of(id: SessionId) -> u64 {
    id.as_u64() - 1
}

/// The index of the session a snapshot row shows.
fn row_index(row: &openrtc::proto::SessionSnapshot) -> u64 {
    index_of(row.id)
}

fn measure(sessions: usize, hold_bytes: u64, pattern: HoldPattern) -> anyhow::Result<DensityRow> {
    let builder = AgentPool::builder()
        .agent(
            "holder",
            agent_fn(move |session: Session| async move {
                let hold = pattern.held_by(hold_bytes, index_of(session.id()));
                let held = vec![1_u8; usize::try_from(hold).unwrap_or(usize::MAX)];
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
        running.launch(JobRequest::new())?;
    }
    let during = running.wait_for("every session to hold its memory", PATIENCE, |snapshot| {
        snapshot.sessions.len() == sessions
            && snapshot
                .sessions
                .iter()
                .all(|row| row.mem_bytes >= pattern.held_by(hold_bytes, row_index(row)))
    })?;
    running.stop();
    let held_bytes: u64 = (0..sessions as u64)
        .map(|k| pattern.held_by(hold_bytes, k))
        .sum();
    let errors: Vec<f64> = during
        .sessions
        .iter()
        .map(|row| {
            let held = pattern.held_by(hold_bytes, row_index(row)).max(1);
            row.mem_bytes.abs_diff(held) as f64 * 100.0 / held as f64
        })
        .collect();
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
        attribution_error: AttributionError {
            mean_abs_pct: errors.iter().sum::<f64>() / errors.len().max(1) as f64,
            max_abs_pct: errors.iter().copied().fold(0.0, f64::max),
        },
    })
}

impl Report for DensityReport {
    fn table(&self) -> String {
        let mut table = format!(
            "density: sessions holding {} MiB each ({}) and waiting\n{:>9}  {:>10}  {:>14}  {:>20}  {:>17}  {:>14}\n",
            self.hold_bytes / MIB,
            self.hold_pattern.name(),
            "SESSIONS",
            "RSS(MiB)",
            "RSS/SESSION",
            "OVERHEAD/SESSION(B)",
            "ATTRIBUTED/HELD",
            "MEM ERROR %"
        );
        for row in &self.rows {
            table.push_str(&format!(
                "{:>9}  {:>10.1}  {:>11.2} MiB  {:>20}  {:>16.4}  {:>14}\n",
                row.sessions,
                row.rss_bytes as f64 / MIB as f64,
                row.rss_per_session_bytes as f64 / MIB as f64,
                row.overhead_per_session_bytes,
                row.attributed_bytes as f64 / row.held_bytes.max(1) as f64,
                format!(
                    "{:.3} / {:.3}",
                    row.attribution_error.mean_abs_pct, row.attribution_error.max_abs_pct
                ),
            ));
        }
        table
    }
}
