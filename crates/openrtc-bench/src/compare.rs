//! `compare`: this runtime and the Python reference on the same scenarios, in one run, on one
//! machine, side by side.
//!
//! Each scenario runs here (this binary's own subcommands, in child processes) and then on the
//! reference, through the harness in `bench/peer/` (its own virtual environment, created by
//! `bench/peer/setup`), interleaved scenario by scenario so that drift of the machine touches
//! both sides alike. Throughput also runs the reference on plain asyncio, besides its default
//! uvloop. Every command run is kept in the report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::cli::Report;

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
}

/// One scenario's configuration, the same on both sides.
struct Plan {
    cpu_sessions: &'static str,
    dsp_sessions: &'static str,
    /// A Silero VAD stream per session (the reference's own workload).
    vad_sessions: &'static str,
    /// The session count whose CPU per 1,000 frames and lateness are compared (in every
    /// workload's list).
    cost_at: u64,
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
}

impl Plan {
    fn new(args: &Args) -> Self {
        if args.tiny {
            return Self {
                cpu_sessions: "2",
                dsp_sessions: "2",
                vad_sessions: "2",
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
            };
        }
        Self {
            cpu_sessions: "10,100,200,500,750,1000,1500,2000",
            dsp_sessions: "100,200,500,1000,2000,5000,6000,7000,7500,8000,9000,10000",
            vad_sessions: "50,100,200,400,600,800,1000,1200,1600",
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
        }
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
    ours: Option<f64>,
    reference: Option<f64>,
    /// The reference on plain asyncio (throughput figures only).
    reference_asyncio: Option<f64>,
    /// Ours over the reference's (default loop).
    ratio: Option<f64>,
}

/// The `compare` report.
#[derive(Debug, Serialize)]
pub(crate) struct CompareReport {
    benchmark: &'static str,
    tiny: bool,
    rows: Vec<Row>,
    /// Figures of this runtime alone (no counterpart on the reference).
    ours_only: Vec<OursOnly>,
    runs: Vec<Run>,
}

/// A figure of this runtime alone.
#[derive(Debug, Serialize)]
pub(crate) struct OursOnly {
    figure: &'static str,
    value: Option<f64>,
}

/// The `dsp` figures against the compute limit: the frame clock's and a Tokio interval's
/// sustainable sessions, and the sessions the cores could hold at the measured CPU per frame.
fn ours_only(runs: &[Run]) -> Vec<OursOnly> {
    let pick = |side, key: &str| report(runs, "throughput-dsp", side).and_then(|r| r[key].as_f64());
    let frames = pick(Side::Ours, "sustainable_at_20ms_p99");
    let limit = pick(Side::Ours, "compute_limit_sessions");
    vec![
        OursOnly {
            figure: "dsp: compute limit, sessions (2 cores, CPU per frame of the largest count held)",
            value: limit,
        },
        OursOnly {
            figure: "dsp: sustainable sessions at 20 ms p99, frame clock",
            value: frames,
        },
        OursOnly {
            figure: "dsp: sustainable sessions at 20 ms p99, Tokio interval each",
            value: pick(Side::OursInterval, "sustainable_at_20ms_p99"),
        },
        OursOnly {
            figure: "dsp: frame clock's sustainable sessions / compute limit, %",
            value: frames
                .zip(limit)
                .filter(|&(_, limit)| limit > 0.0)
                .map(|(frames, limit)| frames / limit * 100.0),
        },
    ]
}

pub(crate) fn run(args: &Args) -> anyhow::Result<CompareReport> {
    let plan = Plan::new(args);
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

    for (workload, sessions) in [
        ("cpu", plan.cpu_sessions),
        ("dsp", plan.dsp_sessions),
        ("vad", plan.vad_sessions),
    ] {
        let throughput = strings(&[
            "throughput",
            "--workload",
            workload,
            "--sessions",
            sessions,
            "--warmup-secs",
            &plan.warmup_secs.to_string(),
            "--measure-secs",
            &plan.measure_secs.to_string(),
        ]);
        let scenario = format!("throughput-{workload}");
        sides.ours(&scenario, &throughput)?;
        if workload == "dsp" {
            // Ours again with a Tokio interval per session instead of the frame clock.
            let mut interval = throughput.clone();
            interval.extend(strings(&["--clock", "interval"]));
            sides.ours_as(&scenario, &interval, Side::OursInterval)?;
        }
        let mut reference = throughput.clone();
        reference.push("--stop-after-overload".to_owned());
        sides.reference(&scenario, &reference, Side::Reference)?;
        reference.extend(strings(&["--loop", "asyncio"]));
        sides.reference(&scenario, &reference, Side::ReferenceAsyncio)?;
    }

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

    let rows = figures(&plan, &sides.runs);
    Ok(CompareReport {
        benchmark: "compare",
        tiny: args.tiny,
        rows,
        ours_only: ours_only(&sides.runs),
        runs: sides.runs,
    })
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
        self.ours_as(scenario, args, Side::Ours)
    }

    fn ours_as(&mut self, scenario: &str, args: &[String], side: Side) -> anyhow::Result<()> {
        let mut command = Command::new(&self.ours);
        command.arg("--json").args(args);
        let shown = format!("openrtc-bench --json {}", args.join(" "));
        self.run(scenario, side, command, shown)
    }

    fn reference(&mut self, scenario: &str, args: &[String], side: Side) -> anyhow::Result<()> {
        let mut command = Command::new(&self.python);
        command.arg(&self.harness).args(args);
        let shown = format!("python bench/peer/harness.py {}", args.join(" "));
        self.run(scenario, side, command, shown)
    }

    fn run(
        &mut self,
        scenario: &str,
        side: Side,
        mut command: Command,
        shown: String,
    ) -> anyhow::Result<()> {
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
        self.runs.push(Run {
            scenario: scenario.to_owned(),
            side,
            command: shown,
            seconds: started.elapsed().as_secs_f64(),
            report,
        });
        Ok(())
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

/// Builds the side-by-side figures from the runs.
fn figures(plan: &Plan, runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut add = |figure: String,
                   better: &'static str,
                   pick: &dyn Fn(&Value) -> Option<f64>,
                   scenario: &str| {
        let of = |side| report(runs, scenario, side).and_then(pick);
        let (ours, reference) = (of(Side::Ours), of(Side::Reference));
        rows.push(Row {
            figure,
            better,
            ours,
            reference,
            reference_asyncio: of(Side::ReferenceAsyncio),
            ratio: match (ours, reference) {
                (Some(ours), Some(reference)) if reference != 0.0 => Some(ours / reference),
                _ => None,
            },
        });
    };
    let cost_at = plan.cost_at;
    for workload in ["cpu", "dsp", "vad"] {
        let scenario = format!("throughput-{workload}");
        for limit in [20, 100] {
            add(
                format!("{workload}: sustainable sessions (p99 lateness < {limit} ms)"),
                "higher",
                &|report| report[&format!("sustainable_at_{limit}ms_p99")].as_f64(),
                &scenario,
            );
        }
        add(
            format!("{workload}: CPU s per 1,000 frames, {cost_at} sessions"),
            "lower",
            &|report| row_at(report, cost_at)?["cpu_seconds_per_1000_frames"].as_f64(),
            &scenario,
        );
        add(
            format!("{workload}: p99 lateness, {cost_at} sessions, ms"),
            "lower",
            &|report| row_at(report, cost_at)?["lateness_ms"]["p99"].as_f64(),
            &scenario,
        );
    }
    add(
        format!(
            "introspection on/off CPU (dsp; {} vs {} sessions)",
            plan.overhead_sessions.0, plan.overhead_sessions.1
        ),
        "lower",
        &|report| report["ratio"]["median"].as_f64(),
        "overhead",
    );
    for (scenario, _) in ATTRIBUTION_SCENARIOS {
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

impl Report for CompareReport {
    fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|row| row.figure.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut table = format!(
            "compare: openrtc (ours) and the Python reference, same machine, same run{}\n{:<width$}  {:>6}  {:>10}  {:>11}  {:>11}  {:>9}\n",
            if self.tiny {
                " (tiny configuration: not figures to quote)"
            } else {
                ""
            },
            "FIGURE",
            "BETTER",
            "OURS",
            "REF uvloop",
            "REF asyncio",
            "OURS/REF",
        );
        for row in &self.rows {
            table.push_str(&format!(
                "{:<width$}  {:>6}  {:>10}  {:>11}  {:>11}  {:>9}\n",
                row.figure,
                row.better,
                shown(row.ours),
                shown(row.reference),
                shown(row.reference_asyncio),
                row.ratio
                    .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}×")),
            ));
        }
        table.push_str("openrtc alone:\n");
        for figure in &self.ours_only {
            table.push_str(&format!(
                "{:<width$}  {:>6}  {:>10}\n",
                figure.figure,
                "",
                shown(figure.value)
            ));
        }
        table
    }
}
