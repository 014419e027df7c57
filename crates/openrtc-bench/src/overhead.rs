//! `overhead`: the cost of introspection, as process CPU per 1,000 frames of the same
//! workload with introspection on and off, alternated A/B/A/B in one invocation.

use serde::Serialize;

use crate::cli::Report;
use crate::stats::Spread;
use crate::throughput::{self, ThroughputRow, Workload};

/// Options of `overhead`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Sessions on the pool.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The work each frame does.
    #[arg(long, value_enum, default_value = "dsp")]
    workload: Workload,
    /// A/B pairs to run (on, then off, each in a fresh process).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One A/B pair.
#[derive(Debug, Serialize)]
pub(crate) struct Round {
    on: ThroughputRow,
    off: ThroughputRow,
    /// CPU per 1,000 frames, on over off.
    ratio: f64,
}

/// The `overhead` report.
#[derive(Debug, Serialize)]
pub(crate) struct OverheadReport {
    benchmark: &'static str,
    sessions: usize,
    workload: Workload,
    rounds: Vec<Round>,
    /// The on/off ratios of the rounds: median and spread.
    ratio: Spread,
    /// The lowest ratio of the rounds.
    ratio_min: f64,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<OverheadReport> {
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let on = throughput::measure_in_child(
            &throughput::child_args(args.workload, args.seconds, false),
            args.sessions,
        )?;
        let off = throughput::measure_in_child(
            &throughput::child_args(args.workload, args.seconds, true),
            args.sessions,
        )?;
        let ratio = if off.cpu_seconds_per_1000_frames > 0.0 {
            on.cpu_seconds_per_1000_frames / off.cpu_seconds_per_1000_frames
        } else {
            0.0
        };
        rounds.push(Round { on, off, ratio });
    }
    let ratios: Vec<f64> = rounds.iter().map(|round| round.ratio).collect();
    Ok(OverheadReport {
        benchmark: "overhead",
        sessions: args.sessions,
        workload: args.workload,
        ratio: Spread::of(&ratios),
        ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        rounds,
    })
}

impl Report for OverheadReport {
    fn table(&self) -> String {
        let mut table = format!(
            "overhead: {} sessions, {:?} work per 20 ms frame, introspection on vs off\n{:>6}  {:>17}  {:>17}  {:>7}\n",
            self.sessions, self.workload, "ROUND", "ON CPU s/1k fr", "OFF CPU s/1k fr", "ON/OFF"
        );
        for (index, round) in self.rounds.iter().enumerate() {
            table.push_str(&format!(
                "{:>6}  {:>17.5}  {:>17.5}  {:>7.3}\n",
                index + 1,
                round.on.cpu_seconds_per_1000_frames,
                round.off.cpu_seconds_per_1000_frames,
                round.ratio
            ));
        }
        table.push_str(&format!(
            "on/off ratio: median {:.3}, min {:.3}, max {:.3}\n",
            self.ratio.median, self.ratio_min, self.ratio.max
        ));
        table
    }
}
