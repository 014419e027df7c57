//! `compare`'s throughput part: each side's sustainable sessions, found by a search (the
//! `search` module) rather than read off a fixed list of counts, repeated and interleaved
//! (repetition 1 ours, repetition 1 the reference's, repetition 2 ours, ...), each figure the
//! median of the repetitions with their spread; and the cost and lateness at one fixed count,
//! repeated too.
//!
//! Every measurement is one session count in a fresh process (ours: `throughput --sessions
//! N`; the reference's: its harness with one count). Before it, the machine must be quiet;
//! after it, the CPU other processes used in its window is the machine's (`/proc/stat`, read
//! by the measured process at its window's edges) minus the measured process's own. A
//! measurement that fails either test is kept, flagged invalid, and repeated (see `quiet`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Plan, Side, Sides, strings};
use crate::quiet::{self, QuietCheck};
use crate::search::{Outcome, Search, Steps};
use crate::stats::Repeated;
use crate::throughput::{WORKER_THREADS, compute_limit};

/// The lateness limits sustainable sessions are found for, in ms of p99.
pub(super) const LIMITS_MS: [u64; 2] = [20, 100];

/// The throughput workloads compared.
pub(super) const WORKLOADS: [&str; 3] = ["cpu", "dsp", "vad"];

/// One side of one workload: what a search measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Subject {
    pub(super) workload: &'static str,
    pub(super) side: Side,
}

impl Subject {
    /// The sides measured for `workload`, in the order they run in each repetition: ours (and
    /// ours with a Tokio interval per session, for `dsp`), then the reference on uvloop and on
    /// asyncio.
    pub(super) fn of(workload: &'static str) -> Vec<Self> {
        let mut sides = vec![Side::Ours];
        if workload == "dsp" {
            sides.push(Side::OursInterval);
        }
        sides.extend([Side::Reference, Side::ReferenceAsyncio]);
        sides
            .into_iter()
            .map(|side| Self { workload, side })
            .collect()
    }

    pub(super) fn scenario(self) -> String {
        format!("throughput-{}", self.workload)
    }

    /// The limits searched: both, except for ours with intervals (20 ms only: a figure of
    /// ours alone, beside the frame clock's).
    fn limits(self) -> &'static [u64] {
        if self.side == Side::OursInterval {
            &LIMITS_MS[..1]
        } else {
            &LIMITS_MS
        }
    }

    /// Whether this side is also measured at the plan's fixed count (cost and lateness rows).
    fn has_fixed_count(self) -> bool {
        self.side != Side::OursInterval
    }

    /// The command line of one count, for either side.
    fn args(self, plan: &Plan, sessions: usize) -> Vec<String> {
        let mut args = strings(&[
            "throughput",
            "--workload",
            self.workload,
            "--sessions",
            &sessions.to_string(),
            "--warmup-secs",
            &plan.warmup_secs.to_string(),
            "--measure-secs",
            &plan.measure_secs.to_string(),
        ]);
        match self.side {
            Side::OursInterval => args.extend(strings(&["--clock", "interval"])),
            Side::ReferenceAsyncio => args.extend(strings(&["--loop", "asyncio"])),
            Side::Ours | Side::Reference => {}
        }
        args
    }
}

/// The first count a full run's search tries for `subject`: somewhat below the figures this
/// side held on a quiet 2-core machine, so that the first step up usually misses and a few
/// bisections finish the search.
pub(super) fn start_count(subject: Subject) -> usize {
    match (subject.workload, subject.side) {
        ("cpu", Side::Ours) => 600,
        ("dsp", Side::Ours) => 6400,
        ("dsp", Side::OursInterval) => 5600,
        ("vad", Side::Ours) => 400,
        ("dsp", Side::ReferenceAsyncio) => 250,
        ("dsp", _) => 400,
        ("vad", _) => 40,
        _ => 200,
    }
}

/// One process run for one count: what it printed, and how quiet the machine was.
#[derive(Debug, Serialize)]
pub(super) struct Measurement {
    scenario: String,
    side: Side,
    /// 1-based.
    repetition: usize,
    sessions: usize,
    /// 1-based: an invalid attempt is repeated, up to the plan's attempts.
    attempt: usize,
    valid: bool,
    invalid_because: Option<String>,
    /// The wait for a quiet machine before it.
    quiet: QuietCheck,
    loadavg_1m_before: Option<f64>,
    loadavg_1m_after: Option<f64>,
    /// The measured process's CPU over its window (its row's `process_cpu_pct`), % of a core.
    process_cpu_pct: Option<f64>,
    /// Every process's CPU over that window (its row's `machine_cpu_pct`), % of a core.
    machine_cpu_pct: Option<f64>,
    /// The machine's minus the measured process's: what others used, % of a core.
    others_cpu_pct: Option<f64>,
    command: String,
    seconds: f64,
    /// The count's row, as the process reported it.
    row: Value,
}

impl Measurement {
    pub(super) fn is_valid(&self) -> bool {
        self.valid
    }

    /// Whether the count held `limit_ms`: frames ran, and their p99 lateness stayed under it.
    fn held(&self, limit_ms: u64) -> bool {
        let frames = self.row["frames"].as_u64().unwrap_or(0);
        let p99 = self.row["lateness_ms"]["p99"].as_f64();
        frames > 0 && p99.is_some_and(|p99| p99 < limit_ms as f64)
    }
}

/// One count a search tried: whether it held, and the measurement it was judged on.
#[derive(Debug, Serialize)]
struct TriedCount {
    sessions: usize,
    held: bool,
    /// The index in `measurements` (the valid attempt, or the last).
    measurement: usize,
    /// Measured for an earlier search of the same side and repetition.
    reused: bool,
}

/// One search: a side, a repetition, a limit, the counts tried and the figure found.
#[derive(Debug, Serialize)]
pub(super) struct SearchRecord {
    scenario: String,
    side: Side,
    repetition: usize,
    limit_ms: u64,
    steps: Steps,
    tried: Vec<TriedCount>,
    outcome: Outcome,
    /// Counts whose every attempt was invalid (judged on the last anyway).
    invalid_counts: usize,
}

/// One measurement at the plan's fixed count (cost and lateness rows).
#[derive(Debug, Serialize)]
pub(super) struct FixedRecord {
    scenario: String,
    side: Side,
    repetition: usize,
    sessions: usize,
    measurement: usize,
}

/// Everything the throughput part measured.
#[derive(Debug, Default, Serialize)]
pub(super) struct Sustained {
    pub(super) searches: Vec<SearchRecord>,
    pub(super) fixed: Vec<FixedRecord>,
    /// Every attempt of every count, invalid ones included.
    pub(super) measurements: Vec<Measurement>,
}

impl Sustained {
    /// Runs every workload's searches and fixed counts, repetitions interleaved by side.
    pub(super) fn run(plan: &Plan, sides: &Sides) -> anyhow::Result<Self> {
        let mut sustained = Self::default();
        for workload in WORKLOADS {
            for repetition in 1..=plan.repetitions {
                for subject in Subject::of(workload) {
                    sustained.run_subject(plan, sides, subject, repetition)?;
                }
            }
        }
        Ok(sustained)
    }

    /// One side's searches (20 ms, then 100 ms from the same counts) and its fixed count, in
    /// one repetition.
    fn run_subject(
        &mut self,
        plan: &Plan,
        sides: &Sides,
        subject: Subject,
        repetition: usize,
    ) -> anyhow::Result<()> {
        // This side's counts measured in this repetition: each count runs once per repetition.
        let mut measured: BTreeMap<usize, usize> = BTreeMap::new();
        for &limit_ms in subject.limits() {
            let steps = plan.steps(subject);
            let mut search = Search::new(steps);
            let mut tried = Vec::new();
            for (&sessions, &index) in &measured {
                let held = self.measurements[index].held(limit_ms);
                search.record(sessions, held);
                tried.push((sessions, index, true));
            }
            while let Some(sessions) = search.next() {
                let index = self.measure(plan, sides, subject, repetition, sessions)?;
                measured.insert(sessions, index);
                search.record(sessions, self.measurements[index].held(limit_ms));
                tried.push((sessions, index, false));
            }
            let tried: Vec<TriedCount> = tried
                .into_iter()
                .map(|(sessions, measurement, reused)| TriedCount {
                    sessions,
                    held: self.measurements[measurement].held(limit_ms),
                    measurement,
                    reused,
                })
                .collect();
            let outcome = search.outcome();
            eprintln!(
                "compare: {} {:?} repetition {repetition}: {} sessions held p99 < {limit_ms} ms",
                subject.scenario(),
                subject.side,
                outcome.held_count
            );
            self.searches.push(SearchRecord {
                scenario: subject.scenario(),
                side: subject.side,
                repetition,
                limit_ms,
                steps,
                invalid_counts: tried
                    .iter()
                    .filter(|tried| !self.measurements[tried.measurement].valid)
                    .count(),
                tried,
                outcome,
            });
        }
        if subject.has_fixed_count() {
            let sessions = plan.cost_at;
            let measurement = match measured.get(&sessions) {
                Some(&index) => index,
                None => self.measure(plan, sides, subject, repetition, sessions)?,
            };
            self.fixed.push(FixedRecord {
                scenario: subject.scenario(),
                side: subject.side,
                repetition,
                sessions,
                measurement,
            });
        }
        Ok(())
    }

    /// Measures one count, repeating an invalid attempt up to the plan's attempts; returns the
    /// index of the valid attempt's measurement, or of the last.
    fn measure(
        &mut self,
        plan: &Plan,
        sides: &Sides,
        subject: Subject,
        repetition: usize,
        sessions: usize,
    ) -> anyhow::Result<usize> {
        let args = subject.args(plan, sessions);
        for attempt in 1..=plan.attempts.max(1) {
            let quiet = quiet::wait_until_quiet(plan.quiet);
            let loadavg_1m_before = quiet::load_average_1m();
            let (report, command, seconds) = sides.execute(subject.side, &args)?;
            let loadavg_1m_after = quiet::load_average_1m();
            let row = report["rows"][0].clone();
            let process_cpu_pct = row["process_cpu_pct"].as_f64();
            let machine_cpu_pct = row["machine_cpu_pct"].as_f64();
            let others_cpu_pct = machine_cpu_pct
                .zip(process_cpu_pct)
                .map(|(machine, process)| machine - process);
            let invalid_because = quiet::invalid_because(&quiet, others_cpu_pct);
            let valid = invalid_because.is_none();
            if let Some(why) = &invalid_because {
                eprintln!("compare: attempt {attempt} of {sessions} sessions is invalid: {why}");
            }
            self.measurements.push(Measurement {
                scenario: subject.scenario(),
                side: subject.side,
                repetition,
                sessions,
                attempt,
                valid,
                invalid_because,
                quiet,
                loadavg_1m_before,
                loadavg_1m_after,
                process_cpu_pct,
                machine_cpu_pct,
                others_cpu_pct,
                command,
                seconds,
                row,
            });
            if valid {
                break;
            }
        }
        Ok(self.measurements.len() - 1)
    }

    /// The sustainable sessions of each repetition of `side` in `workload` at `limit_ms`.
    pub(super) fn sustainable(
        &self,
        workload: &str,
        side: Side,
        limit_ms: u64,
    ) -> Option<Repeated> {
        let scenario = format!("throughput-{workload}");
        Repeated::of(
            self.searches
                .iter()
                .filter(|search| {
                    search.scenario == scenario
                        && search.side == side
                        && search.limit_ms == limit_ms
                })
                .map(|search| search.outcome.held_count as f64)
                .collect(),
        )
    }

    /// A figure of each repetition's fixed-count row of `side` in `workload`.
    pub(super) fn at_fixed_count(
        &self,
        workload: &str,
        side: Side,
        pick: impl Fn(&Value) -> Option<f64>,
    ) -> Option<Repeated> {
        let scenario = format!("throughput-{workload}");
        Repeated::of(
            self.fixed
                .iter()
                .filter(|fixed| fixed.scenario == scenario && fixed.side == side)
                .filter_map(|fixed| pick(&self.measurements[fixed.measurement].row))
                .collect(),
        )
    }

    /// Ours in `dsp` against the compute limit, per repetition: the sessions the worker's
    /// cores could hold at the CPU per frame of the largest count that held a 20 ms p99
    /// (each repetition's search's figure; 0 when no count held).
    pub(super) fn compute_limit(&self) -> Option<Repeated> {
        Repeated::of(
            self.searches
                .iter()
                .filter(|search| {
                    search.scenario == "throughput-dsp"
                        && search.side == Side::Ours
                        && search.limit_ms == LIMITS_MS[0]
                })
                .map(|search| {
                    let cost = search
                        .tried
                        .iter()
                        .find(|tried| tried.sessions == search.outcome.held_count)
                        .and_then(|held| {
                            self.measurements[held.measurement].row["cpu_seconds_per_1000_frames"]
                                .as_f64()
                        })
                        .unwrap_or(0.0);
                    compute_limit(WORKER_THREADS, cost) as f64
                })
                .collect(),
        )
    }
}

/// What a side's process costs beyond its warm-up and window, in seconds: starting (the
/// reference imports its agents framework, about 2 s, and starts and closes its pool) and
/// ending (ours runs the backlog of an overloaded count).
fn process_secs(side: Side) -> f64 {
    match side {
        Side::Ours | Side::OursInterval => 1.5,
        Side::Reference | Side::ReferenceAsyncio => 4.0,
    }
}

/// The measurements a search is expected to make: a full run's first search about 4 (start,
/// one step up, two bisections), the 100 ms search about 1 more; a tiny run's searches are
/// one count, measured once.
fn expected_measurements(plan: &Plan, subject: Subject) -> f64 {
    if plan.steps(subject).max_count <= plan.steps(subject).start_count {
        return 1.0;
    }
    let searches = if subject.limits().len() > 1 { 5.0 } else { 4.0 };
    let fixed = if subject.has_fixed_count() { 1.0 } else { 0.0 };
    searches + fixed
}

/// The expected duration of the throughput part, in seconds (valid attempts only).
pub(super) fn estimate_secs(plan: &Plan) -> f64 {
    let per_measurement =
        |side| plan.quiet.sample_secs + plan.warmup_secs + plan.measure_secs + process_secs(side);
    WORKLOADS
        .iter()
        .flat_map(|&workload| Subject::of(workload))
        .map(|subject| expected_measurements(plan, subject) * per_measurement(subject.side))
        .sum::<f64>()
        * plan.repetitions as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sustained_sides_run_in_order_and_dsp_adds_ours_with_intervals() {
        let sides = |workload| {
            Subject::of(workload)
                .into_iter()
                .map(|subject| subject.side)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sides("cpu"),
            [Side::Ours, Side::Reference, Side::ReferenceAsyncio]
        );
        assert_eq!(
            sides("dsp"),
            [
                Side::Ours,
                Side::OursInterval,
                Side::Reference,
                Side::ReferenceAsyncio
            ]
        );
    }

    #[test]
    fn sustained_counts_hold_with_frames_and_a_p99_under_the_limit() {
        let measurement = |row: Value| Measurement {
            scenario: "throughput-dsp".to_owned(),
            side: Side::Ours,
            repetition: 1,
            sessions: 100,
            attempt: 1,
            valid: true,
            invalid_because: None,
            quiet: QuietCheck {
                idle_pct: Some(99.0),
                samples: 1,
                waited_secs: 2.0,
                quiet: true,
            },
            loadavg_1m_before: None,
            loadavg_1m_after: None,
            process_cpu_pct: None,
            machine_cpu_pct: None,
            others_cpu_pct: None,
            command: String::new(),
            seconds: 0.0,
            row,
        };
        let late = measurement(serde_json::json!({"frames": 10, "lateness_ms": {"p99": 50.0}}));
        assert!(!late.held(20) && late.held(100));
        let idle = measurement(serde_json::json!({"frames": 0, "lateness_ms": {"p99": 0.0}}));
        assert!(!idle.held(20), "no frame ran: nothing held");
    }
}
