//! `overhead-instructions`: the cost of introspection and of the tracking allocator as
//! instructions per frame, counted by valgrind's callgrind, instead of CPU time (which swings
//! far more from run to run on a shared machine than the cost being measured).
//!
//! Each configuration (introspection off, on, on with the tracking allocator) runs the
//! workload for exactly F and then 2F frames per session (`throughput --fixed-frames`: frames
//! back to back, no timer, so the work does not depend on how slowly valgrind runs it).
//! Instructions per frame are `(I(2F) − I(F)) / (N·F)`: the difference cancels start-up and
//! shutdown, which both runs share.
//!
//! Callgrind counts every thread (valgrind runs them one at a time), so the watchdog's
//! instructions are in the totals. They follow the clock, not the frames (a scan every 4 ms,
//! housekeeping every second), and valgrind runs ~50x slower, so under valgrind the watchdog
//! scans far more often per frame than it does at full speed: each thread is counted in a
//! file of its own (`--separate-threads=yes`), and the watchdog thread's share is reported
//! apart.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::cli::Report;
use crate::harness::first_row;
use crate::throughput::{self, ThroughputRow, Workload};

/// Options of `overhead-instructions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Sessions on the pool.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// F: frames per session of the shorter run (the longer runs 2F).
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// The work each frame does.
    #[arg(long, value_enum, default_value = "dsp")]
    workload: Workload,
    /// Rounds to run, each the three configurations in turn (interleaved).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The valgrind to run.
    #[arg(long, default_value = "valgrind")]
    valgrind: PathBuf,
}

/// Why counting instructions failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstructionsError {
    /// There is no valgrind to run.
    #[error("valgrind not found: install Debian's valgrind ({0} did not run: {1})")]
    ValgrindMissing(String, std::io::Error),
    /// A callgrind output file without a `totals:` or `summary:` line.
    #[error("no `totals:` or `summary:` line in callgrind's output {0}")]
    NoTotals(String),
    /// The run under valgrind failed.
    #[error("{command} failed: {stderr}")]
    RunFailed { command: String, stderr: String },
    /// Reading callgrind's output files.
    #[error("reading callgrind's output in {0}: {1}")]
    Read(String, std::io::Error),
    /// The run did not do the frames it was asked for.
    #[error("{command} ran {ran} frames, not {expected}")]
    WrongFrames {
        command: String,
        ran: usize,
        expected: usize,
    },
}

/// A configuration measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Config {
    /// Introspection off, system allocator.
    Off,
    /// Introspection on, system allocator.
    On,
    /// Introspection on, tracking allocator.
    Tracked,
}

impl Config {
    const ALL: [Self; 3] = [Self::Off, Self::On, Self::Tracked];

    fn tracking_allocator(self) -> bool {
        self == Self::Tracked
    }

    fn introspection(self) -> bool {
        self != Self::Off
    }
}

/// The function only the watchdog's scanning thread runs: a thread whose callgrind file names
/// it is that thread.
const WATCHDOG_MARK: &str = "openrtc::watchdog::scan::SlotScanner::scan";

/// The instructions of one run under callgrind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counted {
    /// All threads.
    pub(crate) instructions: u64,
    /// The watchdog's scanning thread (0 with introspection off).
    pub(crate) watchdog_instructions: u64,
    /// Threads counted.
    pub(crate) threads: usize,
}

/// One configuration's two runs and the instructions per frame between them.
#[derive(Debug, Serialize)]
pub(crate) struct Measurement {
    config: Config,
    /// The whole run of F frames per session.
    run_f: Counted,
    /// The whole run of 2F frames per session.
    run_2f: Counted,
    /// `(I(2F) − I(F)) / (sessions × frames)`, all threads.
    instructions_per_frame: f64,
    /// The same, of the watchdog's scanning thread alone.
    watchdog_instructions_per_frame: f64,
    /// The two command lines, valgrind's included.
    commands: [String; 2],
}

/// One round: each configuration once, with the ratios.
#[derive(Debug, Serialize)]
pub(crate) struct Round {
    off: Measurement,
    on: Measurement,
    tracked: Measurement,
    /// Instructions per frame, introspection on over off.
    ratio: f64,
    /// The same without the watchdog thread's instructions: what the worker threads' poll
    /// path costs, which does not depend on time.
    ratio_without_watchdog: f64,
    /// Instructions per frame, tracking allocator over system allocator (introspection on).
    allocator_ratio: f64,
}

/// The range of one figure over the rounds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Range {
    min: f64,
    max: f64,
    /// `(max − min) / min`: how closely the rounds agree.
    relative_spread: f64,
}

impl Range {
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(min, max), value| {
            (min.min(value), max.max(value))
        });
        if min.is_finite() && max.is_finite() {
            Self {
                min,
                max,
                relative_spread: if min > 0.0 { (max - min) / min } else { 0.0 },
            }
        } else {
            Self::default()
        }
    }
}

/// The `overhead-instructions` report.
#[derive(Debug, Serialize)]
pub(crate) struct InstructionsReport {
    benchmark: &'static str,
    sessions: usize,
    /// F (the longer run does 2F).
    frames: usize,
    workload: Workload,
    /// `valgrind --version`.
    valgrind: String,
    rounds: Vec<Round>,
    /// Instructions per frame of each configuration over the rounds.
    off_per_frame: Range,
    on_per_frame: Range,
    tracked_per_frame: Range,
    /// Introspection on/off over the rounds.
    ratio: Range,
    /// Introspection on/off over the rounds, the watchdog thread left out.
    ratio_without_watchdog: Range,
    /// Tracking allocator on/off over the rounds.
    allocator_ratio: Range,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<InstructionsReport> {
    let valgrind = valgrind_version(&args.valgrind)?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let [off, on, tracked] = Config::ALL.map(|config| measure(args, config));
        let (off, on, tracked) = (off?, on?, tracked?);
        rounds.push(Round {
            ratio: ratio(on.instructions_per_frame, off.instructions_per_frame),
            ratio_without_watchdog: ratio(
                on.instructions_per_frame - on.watchdog_instructions_per_frame,
                off.instructions_per_frame - off.watchdog_instructions_per_frame,
            ),
            allocator_ratio: ratio(tracked.instructions_per_frame, on.instructions_per_frame),
            off,
            on,
            tracked,
        });
    }
    Ok(InstructionsReport {
        benchmark: "overhead_instructions",
        sessions: args.sessions,
        frames: args.frames,
        workload: args.workload,
        valgrind,
        off_per_frame: Range::of(rounds.iter().map(|r| r.off.instructions_per_frame)),
        on_per_frame: Range::of(rounds.iter().map(|r| r.on.instructions_per_frame)),
        tracked_per_frame: Range::of(rounds.iter().map(|r| r.tracked.instructions_per_frame)),
        ratio: Range::of(rounds.iter().map(|r| r.ratio)),
        ratio_without_watchdog: Range::of(rounds.iter().map(|r| r.ratio_without_watchdog)),
        allocator_ratio: Range::of(rounds.iter().map(|r| r.allocator_ratio)),
        rounds,
    })
}

fn ratio(over: f64, under: f64) -> f64 {
    if under > 0.0 { over / under } else { 0.0 }
}

/// Instructions per frame between a run of `frames` and one of twice as many, per session, of
/// `sessions` sessions.
pub(crate) fn per_frame(
    instructions_f: u64,
    instructions_2f: u64,
    sessions: usize,
    frames: usize,
) -> f64 {
    let frames_between = (sessions * frames) as f64;
    if frames_between > 0.0 {
        (instructions_2f as f64 - instructions_f as f64) / frames_between
    } else {
        0.0
    }
}

/// Runs `valgrind --version`: the version, or why there is no valgrind.
fn valgrind_version(valgrind: &Path) -> Result<String, InstructionsError> {
    let missing = |error| InstructionsError::ValgrindMissing(valgrind.display().to_string(), error);
    let output = Command::new(valgrind)
        .arg("--version")
        .output()
        .map_err(missing)?;
    if !output.status.success() {
        return Err(missing(std::io::Error::other(format!(
            "exit {}",
            output.status
        ))));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// One configuration: F frames, then 2F.
fn measure(args: &Args, config: Config) -> anyhow::Result<Measurement> {
    let exe = throughput::bench_exe(config.tracking_allocator())?;
    let (run_f, command_f) = count(args, &exe, config, args.frames)?;
    let (run_2f, command_2f) = count(args, &exe, config, 2 * args.frames)?;
    Ok(Measurement {
        config,
        instructions_per_frame: per_frame(
            run_f.instructions,
            run_2f.instructions,
            args.sessions,
            args.frames,
        ),
        watchdog_instructions_per_frame: per_frame(
            run_f.watchdog_instructions,
            run_2f.watchdog_instructions,
            args.sessions,
            args.frames,
        ),
        run_f,
        run_2f,
        commands: [command_f, command_2f],
    })
}

/// Runs the workload for `frames` frames per session under callgrind, each thread counted
/// apart: the instructions counted, and the command line.
fn count(
    args: &Args,
    exe: &Path,
    config: Config,
    frames: usize,
) -> anyhow::Result<(Counted, String)> {
    let out_dir = std::env::temp_dir().join(format!(
        "openrtc-bench-callgrind-{}-{config:?}-{frames}",
        std::process::id()
    ));
    std::fs::create_dir_all(&out_dir)?;
    let mut command = Command::new(&args.valgrind);
    command
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!(
            "--callgrind-out-file={}",
            out_dir.join("callgrind.out").display()
        ))
        .arg(exe)
        .arg("--json")
        .args(throughput::fixed_frames_args(
            args.workload,
            args.sessions,
            frames,
            !config.introspection(),
        ));
    // As shown in reports: the temporary directory and the working directory left out, so a
    // report kept in the repository names no path of the machine it ran on.
    let line = command_line(&command)
        .replace(&std::env::temp_dir().display().to_string(), "<temp dir>")
        .replace(&format!("{}/", std::env::current_dir()?.display()), "");
    let output = command.output()?;
    let counted = read_threads(&out_dir);
    let _ = std::fs::remove_dir_all(&out_dir);
    if !output.status.success() {
        return Err(InstructionsError::RunFailed {
            command: line,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
        .into());
    }
    let row: ThroughputRow = first_row(&output.stdout)?;
    let expected = args.sessions * frames;
    if row.frames != expected {
        return Err(InstructionsError::WrongFrames {
            command: line,
            ran: row.frames,
            expected,
        }
        .into());
    }
    Ok((counted?, line))
}

/// Sums callgrind's per-thread output files in `out_dir` (one run's), and tells the
/// watchdog's thread by the function only it runs.
fn read_threads(out_dir: &Path) -> Result<Counted, InstructionsError> {
    let read_error = |error| InstructionsError::Read(out_dir.display().to_string(), error);
    let mut counted = Counted::default();
    for entry in std::fs::read_dir(out_dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        // The threads' files are `callgrind.out-01`, `-02`, …; callgrind leaves the plain
        // name empty.
        if path
            .file_name()
            .is_none_or(|name| !name.to_string_lossy().starts_with("callgrind.out-"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(read_error)?;
        let instructions = total_instructions(&text)
            .ok_or_else(|| InstructionsError::NoTotals(path.display().to_string()))?;
        counted.instructions += instructions;
        counted.threads += 1;
        if runs_function(&text, WATCHDOG_MARK) {
            counted.watchdog_instructions += instructions;
        }
    }
    if counted.threads == 0 {
        return Err(InstructionsError::NoTotals(out_dir.display().to_string()));
    }
    Ok(counted)
}

/// Whether the thread of a callgrind output file ran the function `name`: a `fn=` line (a
/// function with cost of its own) names it, directly or by the number callgrind's name
/// compression gave it in a `fn=(n) name` or `cfn=(n) name` line.
pub(crate) fn runs_function(callgrind_out: &str, name: &str) -> bool {
    let mut id = None;
    for line in callgrind_out.lines() {
        let (is_fn, spec) = match (line.strip_prefix("fn="), line.strip_prefix("cfn=")) {
            (Some(spec), _) => (true, spec),
            (None, Some(spec)) => (false, spec),
            (None, None) => continue,
        };
        let (this_id, this_name) = match spec.strip_prefix('(') {
            Some(rest) => match rest.split_once(')') {
                Some((number, rest)) => (Some(number), rest.strip_prefix(' ')),
                None => (None, None),
            },
            None => (None, Some(spec)),
        };
        if this_name == Some(name) {
            if is_fn {
                return true;
            }
            id = this_id;
        } else if is_fn && this_name.is_none() && this_id.is_some() && this_id == id {
            return true;
        }
    }
    false
}

/// A command as one would type it (arguments with spaces quoted).
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| {
            let part = part.to_string_lossy();
            if part.contains(' ') {
                format!("'{part}'")
            } else {
                part.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The total of the first event (instructions, `Ir`, callgrind's default) in a callgrind
/// output file: its `totals:` line, else its `summary:` line.
pub(crate) fn total_instructions(callgrind_out: &str) -> Option<u64> {
    let first_number = |prefix: &str| {
        callgrind_out
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .find_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    first_number("totals:").or_else(|| first_number("summary:"))
}

impl Report for InstructionsReport {
    fn table(&self) -> String {
        let mut table = format!(
            "overhead-instructions: {} sessions, {:?} work, F = {} frames per session ({})\ninstructions per frame = (I(2F) - I(F)) / (sessions x F), all threads; WATCHDOG: the watchdog thread's share of ON\n{:>6}  {:>11}  {:>11}  {:>9}  {:>13}  {:>8}  {:>13}  {:>8}\n",
            self.sessions,
            self.workload,
            self.frames,
            self.valgrind,
            "ROUND",
            "INTRO OFF",
            "INTRO ON",
            "WATCHDOG",
            "ON + TRACKING",
            "ON/OFF",
            "W/O WATCHDOG",
            "TRACKING"
        );
        for (index, round) in self.rounds.iter().enumerate() {
            table.push_str(&format!(
                "{:>6}  {:>11.1}  {:>11.1}  {:>9.1}  {:>13.1}  {:>8.4}  {:>13.4}  {:>8.4}\n",
                index + 1,
                round.off.instructions_per_frame,
                round.on.instructions_per_frame,
                round.on.watchdog_instructions_per_frame,
                round.tracked.instructions_per_frame,
                round.ratio,
                round.ratio_without_watchdog,
                round.allocator_ratio
            ));
        }
        table.push_str(&format!(
            "introspection on/off: {:.4} to {:.4} ({:.4} to {:.4} without the watchdog thread); tracking allocator on/off: {:.4} to {:.4}\nrounds agree within {:.3}% (off), {:.3}% (on), {:.3}% (on + tracking)\n",
            self.ratio.min,
            self.ratio.max,
            self.ratio_without_watchdog.min,
            self.ratio_without_watchdog.max,
            self.allocator_ratio.min,
            self.allocator_ratio.max,
            self.off_per_frame.relative_spread * 100.0,
            self.on_per_frame.relative_spread * 100.0,
            self.tracked_per_frame.relative_spread * 100.0,
        ));
        if let Some(round) = self.rounds.first() {
            table.push_str("commands (round 1):\n");
            for measurement in [&round.off, &round.on, &round.tracked] {
                for command in &measurement.commands {
                    table.push_str(&format!("  {command}\n"));
                }
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and tail of a real callgrind 3.19 output file: a worker thread's, of
    /// `throughput --sessions 1000 --workload dsp --fixed-frames 20` with
    /// `--separate-threads=yes` (the machine's path left out of `cmd:`).
    const SAMPLE: &str = "# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 18079
cmd:  target/release/openrtc-bench-untracked --json throughput --sessions 1000 --workload dsp --fixed-frames 20
part: 1
thread: 4


desc: I1 cache: 
desc: D1 cache: 
desc: LL cache: 

desc: Timerange: Basic block 0 - 71431839
desc: Trigger: Program termination

positions: line
events: Ir
summary: 804770694


ob=(1) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
fl=(430) ./elf/./elf/dl-open.c
fn=(3384) _dl_find_dso_for_object
214 10
+4 10
+1 8

ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(685) ./nptl/./nptl/nptl_deallocate_tsd.c
fn=(7144) __nptl_deallocate_tsd
28 4
-5 8
380 650
fe=(646)

totals: 804770694
";

    #[test]
    fn the_callgrind_total_is_read_from_totals_or_summary() {
        assert_eq!(total_instructions(SAMPLE), Some(804_770_694));
        let summary_only = SAMPLE.replace("totals: 804770694\n", "");
        assert_eq!(total_instructions(&summary_only), Some(804_770_694));
        let totals_differ = SAMPLE.replace("totals: 804770694", "totals: 7 12");
        assert_eq!(total_instructions(&totals_differ), Some(7));
        assert_eq!(total_instructions("events: Ir\n0 3\n"), None);
        assert_eq!(total_instructions("totals: many\n"), None);
    }

    #[test]
    fn the_watchdog_thread_is_told_by_the_function_it_runs() {
        let watchdog = "fn=(12) openrtc::watchdog::scan::SlotScanner::scan\n0 40\nfn=(12)\n0 2\n";
        assert!(runs_function(watchdog, WATCHDOG_MARK));
        assert!(runs_function(
            "fn=openrtc::watchdog::scan::SlotScanner::scan\n",
            WATCHDOG_MARK
        ));
        // Calling it is not running it; nor is a function whose name only starts the same.
        assert!(!runs_function(
            "cfn=(3) openrtc::watchdog::scan::SlotScanner::scan\n",
            WATCHDOG_MARK
        ));
        assert!(!runs_function(
            "fn=(4) openrtc::watchdog::scan::SlotScanner::scan_one\n",
            WATCHDOG_MARK
        ));
        assert!(!runs_function(SAMPLE, WATCHDOG_MARK));
        // Named first where it is called, then run by its number.
        let compressed = "fn=(2) caller\ncfn=(3) openrtc::watchdog::scan::SlotScanner::scan\ncalls=1 0\n0 9\nfn=(3)\n0 9\n";
        assert!(runs_function(compressed, WATCHDOG_MARK));
        assert!(!runs_function(
            &compressed.replace("fn=(3)\n", "fn=(4)\n"),
            WATCHDOG_MARK
        ));
    }

    #[test]
    fn instructions_per_frame_are_the_difference_over_the_extra_frames() {
        // 1,000 sessions, F = 20: the 2F run did 20,000 frames more.
        assert_eq!(per_frame(5_000_000, 205_000_000, 1000, 20), 10_000.0);
        assert_eq!(per_frame(5, 7, 0, 20), 0.0);
        assert_eq!(ratio(1_010.0, 1_000.0), 1.01);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }

    #[test]
    fn ranges_say_how_closely_rounds_agree() {
        let range = Range::of([100.0, 101.0, 100.5].into_iter());
        assert_eq!((range.min, range.max), (100.0, 101.0));
        assert!((range.relative_spread - 0.01).abs() < 1e-12);
        assert_eq!(Range::of(std::iter::empty()).max, 0.0);
    }

    #[test]
    fn a_missing_valgrind_is_a_clear_error() {
        let error =
            valgrind_version(Path::new("/nonexistent/valgrind")).expect_err("no valgrind there");
        assert!(
            error
                .to_string()
                .starts_with("valgrind not found: install Debian's valgrind"),
            "{error}"
        );
    }
}
