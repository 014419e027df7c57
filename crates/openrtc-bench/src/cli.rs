//! The command line: one subcommand per benchmark, each printing a table or, with `--json`,
//! one JSON document.

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::{
    attribution, compare, density, instructions, isolation, livekit, livekit_audio, overhead,
    throughput,
};

/// Benchmarks of the openrtc runtime. Each prints a human table, or with `--json` one JSON
/// document on standard output. Figures are measured, never timed-test assertions: run them on
/// a quiet machine and compare figures from one run.
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Cli {
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Among N well-behaved sessions, one random session blocks its worker thread per trial:
    /// count trials where the stall is attributed to the right session, a wrong one, or
    /// missed, with the detection latency and the duration error.
    Attribution(attribution::Args),
    /// Sessions that each hold some memory and wait: peak RSS, RSS per session, and the
    /// runtime's own tracked overhead per idle session.
    Density(density::Args),
    /// N sessions at a 20 ms frame cadence doing fixed work per frame: frame lateness
    /// (median, p99), process CPU, peak RSS, and the sustainable session count.
    Throughput(throughput::Args),
    /// The cost of introspection: CPU per 1,000 frames with it on and off, alternated in
    /// fresh processes, with the on/off ratio and its spread.
    Overhead(overhead::Args),
    /// The cost of introspection and of the tracking allocator in instructions per frame,
    /// counted by valgrind's callgrind over runs of F and 2F frames per session (repeatable
    /// where CPU time is not).
    OverheadInstructions(instructions::Args),
    /// What one process-isolated session costs to start: the time from the spawn to its
    /// session running, and the child's resident memory then.
    IsolationStartup(isolation::Args),
    /// What a LiveKit job costs this worker against the real server
    /// (`$OPENRTC_LIVEKIT_SERVER`): dispatch to session latency, the LiveKit thread's CPU
    /// per job, and resident memory per running job.
    LivekitDispatch(livekit::Args),
    /// Sessions with real Opus audio in and out of LiveKit rooms against the real server: frame
    /// lateness on the 20 ms clock, CPU and memory per session, at each session count.
    LivekitAudio(livekit_audio::Args),
    /// The callers `livekit-audio` starts in a process of their own (not for direct use).
    #[command(hide = true)]
    LivekitCallers(livekit_audio::CallersArgs),
    /// Every scenario on this runtime and on the Python reference (`bench/peer/`), in one
    /// run, interleaved, with one side-by-side table of figures and ratios.
    Compare(compare::Args),
}

/// How a session blocks its worker thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BlockKind {
    /// `std::thread::sleep`.
    Sleep,
    /// A CPU spin.
    Spin,
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Attribution(args) => print(cli.json, &attribution::run(&args)?),
        Command::Density(args) => print(cli.json, &density::run(&args)?),
        Command::Throughput(args) => print(cli.json, &throughput::run(&args)?),
        Command::Overhead(args) => print(cli.json, &overhead::run(&args)?),
        Command::OverheadInstructions(args) => print(cli.json, &instructions::run(&args)?),
        Command::IsolationStartup(args) => print(cli.json, &isolation::run(&args)?),
        Command::LivekitDispatch(args) => print(cli.json, &livekit::run(&args)?),
        Command::LivekitAudio(args) => print(cli.json, &livekit_audio::run(&args)?),
        Command::LivekitCallers(args) => livekit_audio::callers(&args),
        Command::Compare(args) => print(cli.json, &compare::run(&args)?),
    }
}

/// A benchmark's results: printable as a table, serializable as JSON.
pub(crate) trait Report: Serialize {
    fn table(&self) -> String;
}

fn print(json: bool, report: &impl Report) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Parses a comma-separated list of counts: `50,100`.
pub(crate) fn counts(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<usize>()
                .ok()
                .filter(|&count| count > 0)
                .ok_or_else(|| format!("{part:?} is not a positive count"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_are_positive_and_comma_separated() {
        assert_eq!(counts("16, 50,100"), Ok(vec![16, 50, 100]));
        assert_eq!(counts("0"), Err("\"0\" is not a positive count".to_owned()));
        assert!(counts("ten").is_err());
    }
}
