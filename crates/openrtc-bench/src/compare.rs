//! `compare`: this runtime and the Python reference on the same scenarios, in one run, on one
//! machine, side by side.
//!
//! Each scenario runs here (this binary's own subcommands, in child processes) and then on the
//! reference, through the harness in `bench/peer/` (its own virtual environment, created by
//! `bench/peer/setup`), interleaved so that drift of the machine touches both sides alike.
//! Throughput's sustainable sessions are searched on each side, in repetitions (the
//! `sustained` submodule), and also run the reference on plain asyncio besides its default
//! uvloop. Every command run is kept in the report.

mod sustained;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::cli::Report;
use crate::quiet::QuietRule;
use crate::search::Steps;
use crate::stats::Repeated;
use sustained::{Subject, Sustained};

/// Options of `compare`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The reference's harness directory.
    #[arg(long, default_value = "bench/peer")]
    peer: PathBuf,
    /// The Python of the harness's virtual environment (default: what `<peer>/setup`
    /// prints, after creating it if needed).
    #[arg(long)]
    python: Option<PathBuf>,
    /// A tiny configuration of every scenario (seconds instead of minutes): checks that both
    /// sides run and report, nothing more.
    #[arg(long)]
    tiny: bool,
    /// Attribution trials per scenario and session count.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Seconds measured per throughput count.
    #[arg(long, default_value_t = 3.0)]
    measure_secs: f64,
    /// Repetitions of every throughput search and fixed count, interleaved by side (default:
    /// 3, or 1 with `--tiny`).
    #[arg(long)]
    repetitions: Option<usize>,
    /// Run only these parts (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// The parts of `compare`, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Part {
    Throughput,
    Overhead,
    Attribution,
    Density,
    /// Introspection's overhead in instructions per frame, under callgrind (ours alone).
    Instructions,
}

/// One scenario's configuration, the same on both sides.
struct Plan {
    tiny: bool,
    /// Repetitions of each throughput search and fixed count.
    repetitions: usize,
    /// Attempts at one throughput count while the machine is not quiet.
    attempts: usize,
    /// The wait for a quiet machine before each throughput count.
    quiet: QuietRule,
    /// A search's coarse steps up multiply the count by this.
    growth: f64,
    /// The session count whose CPU per 1,000 frames and lateness are compared.
    cost_at: usize,
    warmup_secs: f64,
    measure_secs: f64,
    /// Overhead: this runtime's session count, then the reference's (the most it sustains).
    overhead_sessions: (u64, u64),
    overhead_secs: f64,
    overhead_rounds: u64,
    attribution_sessions: &'static str,
    /// The session count whose detection latency and duration error are compared.
    attribution_at: u64,
    block_ms: u64,
    trials: usize,
    density_sessions: &'static str,
    density_at: u64,
    hold_mib: u64,
    /// Instructions: sessions, F (frames per session of the shorter run) and rounds.
    instructions_sessions: u64,
    instructions_frames: u64,
    instructions_rounds: u64,
}

impl Plan {
    fn new(args: &Args) -> Self {
        if args.tiny {
            return Self {
                tiny: true,
                repetitions: args.repetitions.unwrap_or(1),
                // A busy machine (a test run) is recorded, not waited for.
                attempts: 1,
                quiet: QuietRule {
                    sample_secs: 0.2,
                    patience_secs: 0.0,
                },
                growth: 2.0,
                cost_at: 2,
                warmup_secs: 0.2,
                measure_secs: 0.5,
                overhead_sessions: (5, 5),
                overhead_secs: 0.5,
                overhead_rounds: 1,
                attribution_sessions: "5",
                attribution_at: 5,
                block_ms: 150,
                trials: 1,
                density_sessions: "2",
                density_at: 2,
                hold_mib: 1,
                // Enough frames (4,000 in all) that start-up's variation, millions of
                // instructions from run to run, cannot turn the difference between the runs
                // of F and 2F negative.
                instructions_sessions: 10,
                instructions_frames: 400,
                instructions_rounds: 1,
            };
        }
        Self {
            tiny: false,
            repetitions: args.repetitions.unwrap_or(3),
            attempts: 3,
            quiet: QuietRule {
                sample_secs: 2.0,
                patience_secs: 60.0,
            },
            growth: 1.5,
            cost_at: 100,
            warmup_secs: 1.0,
            measure_secs: args.measure_secs,
            overhead_sessions: (1000, 200),
            overhead_secs: 5.0,
            overhead_rounds: 3,
            attribution_sessions: "50,100",
            attribution_at: 100,
            block_ms: 300,
            trials: args.trials,
            density_sessions: "16,50,100",
            density_at: 100,
            hold_mib: 5,
            instructions_sessions: 1000,
            instructions_frames: 100,
            instructions_rounds: 3,
        }
    }

    /// Where `subject`'s searches start and how far they go: a tiny run's, one count (2, held or
    /// not); a full run's, from the side's start count, up by the growth factor to 8 times it
    /// or down by halves to an eighth of it.
    fn steps(&self, subject: Subject) -> Steps {
        if self.tiny {
            return Steps {
                start_count: 2,
                growth: self.growth,
                min_count: 2,
                max_count: 2,
            };
        }
        let start_count = sustained::start_count(subject);
        Steps {
            start_count,
            growth: self.growth,
            min_count: (start_count / 8).max(1),
            max_count: start_count * 8,
        }
    }
}

/// A part's expected duration, in seconds, on a quiet 2-core machine (the other parts' as
/// measured there).
fn estimate_secs(plan: &Plan, part: Part) -> f64 {
    match (part, plan.tiny) {
        (Part::Throughput, _) => sustained::estimate_secs(plan),
        (Part::Overhead, false) => 110.0,
        (Part::Attribution, false) => 240.0,
        (Part::Density, false) => 40.0,
        (Part::Instructions, false) => 540.0,
        (Part::Overhead, true) => 12.0,
        (Part::Attribution, true) => 20.0,
        (Part::Density, true) => 12.0,
        (Part::Instructions, true) => 20.0,
    }
}

/// Which side ran a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Side {
    Ours,
    /// Ours with a Tokio interval per session instead of the frame clock (`dsp` only).
    OursInterval,
    Reference,
    ReferenceAsyncio,
}

/// One command run, and what it printed.
#[derive(Debug, Serialize)]
struct Run {
    scenario: String,
    side: Side,
    command: String,
    seconds: f64,
    report: Value,
}

/// One figure, side by side.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    figure: String,
    /// Which way is better: `higher` or `lower`.
    better: &'static str,
    /// Ours (the median of the repetitions, for repeated figures).
    ours: Option<f64>,
    reference: Option<f64>,
    /// The reference on plain asyncio (throughput figures only).
    reference_asyncio: Option<f64>,
    /// Ours over the reference's (default loop).
    ratio: Option<f64>,
    /// Found by a search on each side (sustainable sessions), not measured at a set count.
    searched: bool,
    /// Each repetition's figure with their median, least and most (repeated figures only).
    ours_spread: Option<Repeated>,
    reference_spread: Option<Repeated>,
    reference_asyncio_spread: Option<Repeated>,
}

impl Row {
    /// A figure measured once per side.
    fn once(
        figure: String,
        better: &'static str,
        ours: Option<f64>,
        reference: Option<f64>,
        reference_asyncio: Option<f64>,
    ) -> Self {
        Self {
            figure,
            better,
            ours,
            reference,
            reference_asyncio,
            ratio: ratio(ours, reference),
            searched: false,
            ours_spread: None,
            reference_spread: None,
            reference_asyncio_spread: None,
        }
    }

    /// A figure repeated on each side: the medians, with the spreads beside them.
    fn repeated(
        figure: String,
        better: &'static str,
        searched: bool,
        [ours, reference, reference_asyncio]: [Option<Repeated>; 3],
    ) -> Self {
        let median = |repeated: &Option<Repeated>| repeated.as_ref().map(|r| r.median);
        let (ours_median, reference_median) = (median(&ours), median(&reference));
        Self {
            figure,
            better,
            ours: ours_median,
            reference: reference_median,
            reference_asyncio: median(&reference_asyncio),
            ratio: ratio(ours_median, reference_median),
            searched,
            ours_spread: ours,
            reference_spread: reference,
            reference_asyncio_spread: reference_asyncio,
        }
    }
}

/// Ours over the reference's, when both exist and the reference's is not 0.
fn ratio(ours: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (ours, reference) {
        (Some(ours), Some(reference)) if reference != 0.0 => Some(ours / reference),
        _ => None,
    }
}

/// The `compare` report.
#[derive(Debug, Serialize)]
pub(crate) struct CompareReport {
    benchmark: &'static str,
    tiny: bool,
    /// The parts run (all unless `--only`).
    parts: Vec<Part>,
    repetitions: usize,
    /// The duration expected at the start, and the one it took, in seconds.
    estimated_secs: f64,
    elapsed_secs: f64,
    rows: Vec<Row>,
    /// Figures of this runtime alone (no counterpart on the reference).
    ours_only: Vec<OursOnly>,
    /// The other scenarios' runs: one command each.
    runs: Vec<Run>,
    /// The instruction count's run (ours alone; its figures are in `ours_only`).
    instructions: Option<Run>,
    /// Throughput: every search, every fixed count, and every measurement (invalid attempts
    /// included, flagged).
    throughput: Sustained,
}

/// A figure of this runtime alone.
#[derive(Debug, Serialize)]
pub(crate) struct OursOnly {
    figure: &'static str,
    /// The median of the repetitions.
    value: Option<f64>,
    spread: Option<Repeated>,
    /// A ratio near 1 whose fourth decimal matters (shown with four).
    #[serde(skip)]
    fine: bool,
}

impl OursOnly {
    fn repeated(figure: &'static str, spread: Option<Repeated>) -> Self {
        Self {
            figure,
            value: spread.as_ref().map(|spread| spread.median),
            spread,
            fine: false,
        }
    }

    /// A ratio near 1, repeated: shown with four decimals.
    fn fine_ratio(figure: &'static str, spread: Option<Repeated>) -> Self {
        Self {
            fine: true,
            ..Self::repeated(figure, spread)
        }
    }
}

/// The `dsp` figures against the compute limit: the frame clock's and a Tokio interval's
/// sustainable sessions, and the sessions the cores could hold at the measured CPU per frame.
fn ours_only(sustained: &Sustained) -> Vec<OursOnly> {
    let limit = sustained.compute_limit();
    let frames = sustained.sustainable("dsp", Side::Ours, 20);
    let of_limit = frames
        .as_ref()
        .zip(limit.as_ref())
        .filter(|(_, limit)| limit.median > 0.0)
        .map(|(frames, limit)| frames.median / limit.median * 100.0);
    vec![
        OursOnly::repeated(
            "dsp: compute limit, sessions (2 cores, CPU per frame of the largest count held)",
            limit,
        ),
        OursOnly::repeated(
            "dsp: sustainable sessions at 20 ms p99, frame clock",
            frames,
        ),
        OursOnly::repeated(
            "dsp: sustainable sessions at 20 ms p99, Tokio interval each",
            sustained.sustainable("dsp", Side::OursInterval, 20),
        ),
        OursOnly {
            figure: "dsp: frame clock's sustainable sessions / compute limit, % (medians)",
            value: of_limit,
            spread: None,
            fine: false,
        },
    ]
}

pub(crate) fn run(args: &Args) -> anyhow::Result<CompareReport> {
    let started = Instant::now();
    let plan = Plan::new(args);
    let parts = if args.only.is_empty() {
        vec![
            Part::Throughput,
            Part::Overhead,
            Part::Attribution,
            Part::Density,
            Part::Instructions,
        ]
    } else {
        args.only.clone()
    };
    let estimated_secs: f64 = parts.iter().map(|&part| estimate_secs(&plan, part)).sum();
    eprintln!(
        "compare: expect about {:.0} minutes on a quiet 2-core machine (throughput about {:.0}: \
         {} repetitions of every search; more while the machine is not quiet)",
        estimated_secs / 60.0,
        sustained::estimate_secs(&plan) / 60.0,
        plan.repetitions
    );
    let python = match &args.python {
        Some(python) => python.clone(),
        None => set_up_peer(&args.peer)?,
    };
    let harness = args.peer.join("harness.py");
    anyhow::ensure!(
        harness.exists(),
        "{} not found: run from the repository's root, or pass --peer",
        harness.display()
    );
    let mut sides = Sides {
        ours: std::env::current_exe()?,
        python,
        harness,
        runs: Vec::new(),
    };

    let throughput = if parts.contains(&Part::Throughput) {
        Sustained::run(&plan, &sides)?
    } else {
        Sustained::default()
    };

    if parts.contains(&Part::Overhead) {
        let overhead = |sessions: u64| {
            strings(&[
                "overhead",
                "--workload",
                "dsp",
                "--sessions",
                &sessions.to_string(),
                "--seconds",
                &plan.overhead_secs.to_string(),
                "--rounds",
                &plan.overhead_rounds.to_string(),
            ])
        };
        sides.ours("overhead", &overhead(plan.overhead_sessions.0))?;
        sides.reference(
            "overhead",
            &overhead(plan.overhead_sessions.1),
            Side::Reference,
        )?;
    }

    if parts.contains(&Part::Attribution) {
        for (scenario, extra) in ATTRIBUTION_SCENARIOS {
            let mut attribution = strings(&[
                "attribution",
                "--sessions",
                plan.attribution_sessions,
                "--block-ms",
                &plan.block_ms.to_string(),
                "--trials",
                &plan.trials.to_string(),
            ]);
            attribution.extend(strings(extra));
            sides.ours(scenario, &attribution)?;
            sides.reference(scenario, &attribution, Side::Reference)?;
        }
    }

    if parts.contains(&Part::Density) {
        for pattern in ["uniform", "skewed"] {
            let density = strings(&[
                "density",
                "--sessions",
                plan.density_sessions,
                "--hold-mib",
                &plan.hold_mib.to_string(),
                "--hold-pattern",
                pattern,
            ]);
            let scenario = format!("density-{pattern}");
            sides.ours(&scenario, &density)?;
            sides.reference(&scenario, &density, Side::Reference)?;
        }
    }

    let instructions = if parts.contains(&Part::Instructions) {
        let args = strings(&[
            "overhead-instructions",
            "--workload",
            "dsp",
            "--sessions",
            &plan.instructions_sessions.to_string(),
            "--frames",
            &plan.instructions_frames.to_string(),
            "--rounds",
            &plan.instructions_rounds.to_string(),
        ]);
        let (report, command, seconds) = sides.execute(Side::Ours, &args)?;
        Some(Run {
            scenario: "overhead-instructions".to_owned(),
            side: Side::Ours,
            command,
            seconds,
            report,
        })
    } else {
        None
    };

    let mut rows = if parts.contains(&Part::Throughput) {
        throughput_figures(&plan, &throughput)
    } else {
        Vec::new()
    };
    rows.extend(figures(&plan, &parts, &sides.runs));
    let mut ours_only = if parts.contains(&Part::Throughput) {
        ours_only(&throughput)
    } else {
        Vec::new()
    };
    if let Some(run) = &instructions {
        ours_only.extend(instruction_figures(&run.report));
    }
    Ok(CompareReport {
        benchmark: "compare",
        tiny: args.tiny,
        parts,
        repetitions: plan.repetitions,
        estimated_secs,
        elapsed_secs: started.elapsed().as_secs_f64(),
        rows,
        ours_only,
        runs: sides.runs,
        instructions,
        throughput,
    })
}

/// The instruction count's figures, one value per round: introspection on over off (all
/// threads, and the worker threads alone) and the tracking allocator's cost.
fn instruction_figures(report: &Value) -> Vec<OursOnly> {
    let per_round = |key: &str| {
        let values = report["rounds"]
            .as_array()
            .map(|rounds| {
                rounds
                    .iter()
                    .filter_map(|round| round[key].as_f64())
                    .collect()
            })
            .unwrap_or_default();
        Repeated::of(values)
    };
    vec![
        OursOnly::fine_ratio(
            "dsp: introspection on/off, instructions per frame (callgrind, all threads)",
            per_round("ratio"),
        ),
        OursOnly::fine_ratio(
            "dsp: introspection on/off, instructions per frame, worker threads only",
            per_round("ratio_without_watchdog"),
        ),
        OursOnly::fine_ratio(
            "dsp: tracking allocator on/off, instructions per frame",
            per_round("allocator_ratio"),
        ),
    ]
}

/// The attribution scenarios: a name and the options that make it.
const ATTRIBUTION_SCENARIOS: [(&str, &[&str]); 3] = [
    ("attribution-sleep", &["--block", "sleep"]),
    ("attribution-spin", &["--block", "spin"]),
    (
        "attribution-sleep-in-child-beside-hot",
        &["--block", "sleep", "--in-child-task", "--with-hot"],
    ),
];

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// Creates (or checks) the reference's virtual environment; returns its Python.
fn set_up_peer(peer: &Path) -> anyhow::Result<PathBuf> {
    let setup = peer.join("setup");
    eprintln!("compare: setting up the reference with {}", setup.display());
    let output = Command::new(&setup)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({})",
        setup.display(),
        output.status
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    let python = printed
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| PathBuf::from(line.trim()))
        .ok_or_else(|| anyhow::anyhow!("{} printed no Python path", setup.display()))?;
    Ok(python)
}

/// Runs both sides' commands and keeps what they print.
struct Sides {
    ours: PathBuf,
    python: PathBuf,
    harness: PathBuf,
    runs: Vec<Run>,
}

impl Sides {
    fn ours(&mut self, scenario: &str, args: &[String]) -> anyhow::Result<()> {
        self.record(scenario, Side::Ours, args)
    }

    fn reference(&mut self, scenario: &str, args: &[String], side: Side) -> anyhow::Result<()> {
        self.record(scenario, side, args)
    }

    /// Runs `args` on `side` and keeps the run.
    fn record(&mut self, scenario: &str, side: Side, args: &[String]) -> anyhow::Result<()> {
        let (report, command, seconds) = self.execute(side, args)?;
        self.runs.push(Run {
            scenario: scenario.to_owned(),
            side,
            command,
            seconds,
            report,
        });
        Ok(())
    }

    /// Runs `args` on `side`: returns its JSON report, the command as shown, and its seconds.
    fn execute(&self, side: Side, args: &[String]) -> anyhow::Result<(Value, String, f64)> {
        let (mut command, shown) = match side {
            Side::Ours | Side::OursInterval => {
                let mut command = Command::new(&self.ours);
                command.arg("--json").args(args);
                (command, format!("openrtc-bench --json {}", args.join(" ")))
            }
            Side::Reference | Side::ReferenceAsyncio => {
                let mut command = Command::new(&self.python);
                command.arg(&self.harness).args(args);
                let shown = format!("python bench/peer/harness.py {}", args.join(" "));
                (command, shown)
            }
        };
        eprintln!("compare: {shown}");
        let started = Instant::now();
        let output = command.stderr(std::process::Stdio::inherit()).output()?;
        anyhow::ensure!(
            output.status.success(),
            "{shown} failed ({})",
            output.status
        );
        let report: Value = serde_json::from_slice(&output.stdout)
            .map_err(|error| anyhow::anyhow!("{shown} printed no JSON report: {error}"))?;
        Ok((report, shown, started.elapsed().as_secs_f64()))
    }
}

/// The report of `scenario` from `side`.
fn report<'a>(runs: &'a [Run], scenario: &str, side: Side) -> Option<&'a Value> {
    runs.iter()
        .find(|run| run.scenario == scenario && run.side == side)
        .map(|run| &run.report)
}

/// The row of a report whose `sessions` is `sessions`.
fn row_at(report: &Value, sessions: u64) -> Option<&Value> {
    report["rows"]
        .as_array()?
        .iter()
        .find(|row| row["sessions"].as_u64() == Some(sessions))
}

/// Attribution accuracy over every row: right trials over all trials, in %.
fn right_pct(report: &Value) -> Option<f64> {
    let rows = report["rows"].as_array()?;
    let (right, trials) = rows.iter().fold((0, 0), |(right, trials), row| {
        (
            right + row["right"].as_u64().unwrap_or(0),
            trials + row["trials"].as_u64().unwrap_or(0),
        )
    });
    (trials > 0).then(|| right as f64 * 100.0 / trials as f64)
}

/// The throughput figures: each workload's sustainable sessions at both limits (searched),
/// and its CPU per 1,000 frames and p99 lateness at the fixed count, each repeated.
fn throughput_figures(plan: &Plan, sustained: &Sustained) -> Vec<Row> {
    let sides = [Side::Ours, Side::Reference, Side::ReferenceAsyncio];
    let cost_at = plan.cost_at;
    let mut rows = Vec::new();
    for workload in sustained::WORKLOADS {
        for limit_ms in sustained::LIMITS_MS {
            rows.push(Row::repeated(
                format!("{workload}: sustainable sessions (p99 lateness < {limit_ms} ms)"),
                "higher",
                true,
                sides.map(|side| sustained.sustainable(workload, side, limit_ms)),
            ));
        }
        rows.push(Row::repeated(
            format!("{workload}: CPU s per 1,000 frames, {cost_at} sessions"),
            "lower",
            false,
            sides.map(|side| {
                sustained.at_fixed_count(workload, side, |row| {
                    row["cpu_seconds_per_1000_frames"].as_f64()
                })
            }),
        ));
        rows.push(Row::repeated(
            format!("{workload}: p99 lateness, {cost_at} sessions, ms"),
            "lower",
            false,
            sides.map(|side| {
                sustained.at_fixed_count(workload, side, |row| row["lateness_ms"]["p99"].as_f64())
            }),
        ));
    }
    rows
}

/// Builds the other parts' side-by-side figures from their runs.
fn figures(plan: &Plan, parts: &[Part], runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut add = |figure: String,
                   better: &'static str,
                   pick: &dyn Fn(&Value) -> Option<f64>,
                   scenario: &str| {
        let of = |side| report(runs, scenario, side).and_then(pick);
        rows.push(Row::once(
            figure,
            better,
            of(Side::Ours),
            of(Side::Reference),
            of(Side::ReferenceAsyncio),
        ));
    };
    if parts.contains(&Part::Overhead) {
        add(
            format!(
                "introspection on/off CPU (dsp; {} vs {} sessions)",
                plan.overhead_sessions.0, plan.overhead_sessions.1
            ),
            "lower",
            &|report| report["ratio"]["median"].as_f64(),
            "overhead",
        );
    }
    let attribution: &[(&str, &[&str])] = if parts.contains(&Part::Attribution) {
        &ATTRIBUTION_SCENARIOS
    } else {
        &[]
    };
    for &(scenario, _) in attribution {
        let name = scenario
            .trim_start_matches("attribution-")
            .replace('-', " ");
        add(
            format!("attribution, {name}: right, %"),
            "higher",
            &right_pct,
            scenario,
        );
        add(
            format!(
                "attribution, {name}: detection median, {} sessions, ms",
                plan.attribution_at
            ),
            "lower",
            &|report| {
                row_at(report, plan.attribution_at)?["detection_latency_ms"]["median"].as_f64()
            },
            scenario,
        );
        add(
            format!(
                "attribution, {name}: duration error median, {} sessions, ms",
                plan.attribution_at
            ),
            "lower",
            &|report| {
                let error = &row_at(report, plan.attribution_at)?["duration_error_ms"];
                (error["count"].as_u64() > Some(0)).then(|| error["median"].as_f64())?
            },
            scenario,
        );
    }
    if !parts.contains(&Part::Density) {
        return rows;
    }
    let at = plan.density_at;
    add(
        format!(
            "memory: RSS growth per session holding {} MiB, at {at}, bytes",
            plan.hold_mib
        ),
        "lower",
        &|report| {
            let row = row_at(report, at)?;
            // The reference reports rss/N as rss_per_session_bytes and the growth apart.
            row["rss_growth_per_session_bytes"]
                .as_f64()
                .or_else(|| row["rss_per_session_bytes"].as_f64())
        },
        "density-uniform",
    );
    add(
        format!("memory: runtime overhead per idle session, {at} sessions, B"),
        "lower",
        &|report| row_at(report, at)?["overhead_per_session_bytes"].as_f64(),
        "density-uniform",
    );
    for pattern in ["uniform", "skewed"] {
        add(
            format!("memory: per-session figure's error, {pattern} holdings, {at} sessions, %"),
            "lower",
            &|report| row_at(report, at)?["attribution_error"]["mean_abs_pct"].as_f64(),
            &format!("density-{pattern}"),
        );
    }
    rows
}

/// A figure as the table shows it.
fn shown(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(value) if value.abs() >= 100.0 || value == value.trunc() => format!("{value:.0}"),
        Some(value) if value.abs() >= 1.0 => format!("{value:.2}"),
        Some(value) => format!("{value:.4}"),
    }
}

/// A repeated figure as the table shows it: the median, and the least and most when they
/// differ (`8250 (8000–8500)`).
fn shown_repeated(value: Option<f64>, spread: Option<&Repeated>) -> String {
    match spread {
        Some(spread) if spread.min != spread.max => format!(
            "{} ({}–{})",
            shown(Some(spread.median)),
            shown(Some(spread.min)),
            shown(Some(spread.max))
        ),
        _ => shown(value),
    }
}

/// A repeated ratio near 1 with four decimals: the median, and the least and most when they
/// differ (`1.0085 (1.0065–1.0098)`).
fn shown_fine(value: Option<f64>, spread: Option<&Repeated>) -> String {
    match (value, spread) {
        (_, Some(spread)) if spread.min != spread.max => {
            format!("{:.4} ({:.4}–{:.4})", spread.median, spread.min, spread.max)
        }
        (Some(value), _) => format!("{value:.4}"),
        (None, _) => "–".to_owned(),
    }
}

impl Report for CompareReport {
    fn table(&self) -> String {
        let mut lines = vec![[
            "FIGURE".to_owned(),
            "BETTER".to_owned(),
            "OURS".to_owned(),
            "REF uvloop".to_owned(),
            "REF asyncio".to_owned(),
            "OURS/REF".to_owned(),
        ]];
        for row in &self.rows {
            lines.push([
                row.figure.clone(),
                row.better.to_owned(),
                shown_repeated(row.ours, row.ours_spread.as_ref()),
                shown_repeated(row.reference, row.reference_spread.as_ref()),
                shown_repeated(row.reference_asyncio, row.reference_asyncio_spread.as_ref()),
                row.ratio
                    .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}×")),
            ]);
        }
        let mut widths = [0; 6];
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for figure in &self.ours_only {
            widths[0] = widths[0].max(figure.figure.chars().count());
        }
        let pad = |cell: &str, width: usize, left: bool| {
            let fill = " ".repeat(width.saturating_sub(cell.chars().count()));
            if left {
                format!("{cell}{fill}")
            } else {
                format!("{fill}{cell}")
            }
        };
        let mut table = format!(
            "compare: openrtc (ours) and the Python reference, same machine, same run{}\n\
             throughput: sustainable sessions searched on each side, median (least–most) of {} \
             repetition(s); other throughput rows at a fixed count, median of as many\n",
            if self.tiny {
                " (tiny configuration: not figures to quote)"
            } else {
                ""
            },
            self.repetitions,
        );
        for line in &lines {
            let cells: Vec<String> = line
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(column, (cell, width))| pad(cell, width, column == 0))
                .collect();
            table.push_str(&cells.join("  "));
            table.push('\n');
        }
        if !self.ours_only.is_empty() {
            table.push_str("openrtc alone:\n");
        }
        for figure in &self.ours_only {
            let value = if figure.fine {
                shown_fine(figure.value, figure.spread.as_ref())
            } else {
                shown_repeated(figure.value, figure.spread.as_ref())
            };
            table.push_str(&format!(
                "{}  {value}\n",
                pad(figure.figure, widths[0], true)
            ));
        }
        let invalid = self
            .throughput
            .measurements
            .iter()
            .filter(|measurement| !measurement.is_valid())
            .count();
        if invalid > 0 {
            table.push_str(&format!(
                "{invalid} throughput measurement(s) invalid (the machine was not quiet): see the JSON report\n"
            ));
        }
        table.push_str(&format!(
            "took {:.1} minutes (expected {:.1})\n",
            self.elapsed_secs / 60.0,
            self.estimated_secs / 60.0
        ));
        table
    }
}
