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
    /// Rounds to run: introspection on, off (system allocator), then on with the tracking
    /// allocator, each in a fresh process.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One round: introspection on and off (on the system allocator), then on with the tracking
/// allocator.
#[derive(Debug, Serialize)]
pub(crate) struct Round {
    on: ThroughputRow,
    off: ThroughputRow,
    tracked: ThroughputRow,
    /// CPU per 1,000 frames, introspection on over off.
    ratio: f64,
    /// CPU per 1,000 frames, tracking allocator over system allocator (introspection on).
    allocator_ratio: f64,
}

/// The `overhead` report.
#[derive(Debug, Serialize)]
pub(crate) struct OverheadReport {
    benchmark: &'static str,
    sessions: usize,
    workload: Workload,
    rounds: Vec<Round>,
    /// The introspection on/off ratios of the rounds: median and spread.
    ratio: Spread,
    /// The lowest introspection ratio of the rounds.
    ratio_min: f64,
    /// The tracking-allocator on/off ratios of the rounds.
    allocator_ratio: Spread,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<OverheadReport> {
    let (tracked_exe, untracked_exe) =
        (throughput::bench_exe(true)?, throughput::bench_exe(false)?);
    let per_1000 = |row: &ThroughputRow| row.cpu_seconds_per_1000_frames;
    let ratio = |over: f64, under: f64| if under > 0.0 { over / under } else { 0.0 };
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let on_args = throughput::child_args(args.workload, args.seconds, false);
        let off_args = throughput::child_args(args.workload, args.seconds, true);
        let on = throughput::measure_in(&untracked_exe, &on_args, args.sessions)?;
        let off = throughput::measure_in(&untracked_exe, &off_args, args.sessions)?;
        let tracked = throughput::measure_in(&tracked_exe, &on_args, args.sessions)?;
        rounds.push(Round {
            ratio: ratio(per_1000(&on), per_1000(&off)),
            allocator_ratio: ratio(per_1000(&tracked), per_1000(&on)),
            on,
            off,
            tracked,
        });
    }
    let ratios: Vec<f64> = rounds.iter().map(|round| round.ratio).collect();
    let allocator_ratios: Vec<f64> = rounds.iter().map(|round| round.allocator_ratio).collect();
    Ok(OverheadReport {
        benchmark: "overhead",
        sessions: args.sessions,
        workload: args.workload,
        ratio: Spread::of(&ratios),
        ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        allocator_ratio: Spread::of(&allocator_ratios),
        rounds,
    })
}

impl Report for OverheadReport {
    fn table(&self) -> String {
        let mut table = format!(
            "overhead: {} sessions, {:?} work per 20 ms frame; CPU s per 1,000 frames\n{:>6}  {:>14}  {:>14}  {:>14}  {:>9}  {:>9}\n",
            self.sessions,
            self.workload,
            "ROUND",
            "INTRO ON",
            "INTRO OFF",
            "ON + TRACKING",
            "ON/OFF",
            "TRACKING"
        );
        for (index, round) in self.rounds.iter().enumerate() {
            table.push_str(&format!(
                "{:>6}  {:>14.5}  {:>14.5}  {:>14.5}  {:>9.3}  {:>9.3}\n",
                index + 1,
                round.on.cpu_seconds_per_1000_frames,
                round.off.cpu_seconds_per_1000_frames,
                round.tracked.cpu_seconds_per_1000_frames,
                round.ratio,
                round.allocator_ratio
            ));
        }
        table.push_str(&format!(
            "introspection on/off: median {:.3} (min {:.3}, max {:.3}); tracking allocator on/off: median {:.3} (max {:.3})\n",
            self.ratio.median, self.ratio_min, self.ratio.max, self.allocator_ratio.median, self.allocator_ratio.max
        ));
        table
    }
}
