//! The results of `openrtc stress`: the summary of a run (calls by outcome, refusals and
//! failures by reason, connect time, echo round trip, inbound gaps, `/health` latency, the
//! worker's figures, the SLO verdict), the JSON document `--output` writes (`config`,
//! `series`, `summary`) and the table printed at the end. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::call::{CallOutcome, CallResult};
use super::runner::{RunOutput, SeriesRow};
use super::stats::{LatencySummary, round_ms};

/// The run's configuration, as the document records it.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigRecord {
    /// `--url`.
    pub url: String,
    /// `--calls`.
    pub calls: u32,
    /// `--ramp`, in calls per second.
    pub ramp_per_s: f64,
    /// `--duration`, of each call, in seconds.
    pub duration_s: f64,
    /// `--agent-mix`, agent to percent.
    pub agent_mix: BTreeMap<String, u32>,
    /// `--tenants`.
    pub tenants: u32,
    /// `--health-url`.
    pub health_url: Option<String>,
    /// `--health-rps`, when `--health-url` is given.
    pub health_rps: Option<f64>,
    /// `--max-p99-ms`.
    pub max_p99_ms: Option<f64>,
    /// `--max-lateness-p99-ms`.
    pub max_lateness_p99_ms: Option<f64>,
    /// `--find-capacity`.
    pub find_capacity: bool,
}

/// Calls by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Calls planned (`--calls`).
    pub planned: u64,
    /// Calls that ran their duration or were hung up with 1000.
    pub completed: u64,
    /// Calls that did not complete: refusals included.
    pub failed: u64,
    /// Of `failed`, the calls the worker refused.
    pub refused: u64,
}

/// `/health` under load.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HealthSummary {
    /// Requests that ended during the run (answered or failed).
    pub requests: u64,
    /// Requests without an answer, or answered with another status than 200 or 503.
    pub errors: u64,
    /// Latencies of the answered requests.
    pub latency_ms: LatencySummary,
}

/// The worker's figures over the run, from its snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkerSummary {
    /// Its name.
    pub name: String,
    /// Mean process CPU over the samples (100 = one core).
    pub cpu_pct_mean: Option<f64>,
    /// Highest process CPU.
    pub cpu_pct_max: Option<f64>,
    /// Highest RSS.
    pub rss_bytes_max: Option<u64>,
    /// Stalls recorded during the run.
    pub stalls: u64,
    /// The worst outbound lateness p99 of any live call at any sample (the worker's own
    /// measure), if it had calls.
    pub call_lateness_p99_ms_max: Option<f64>,
    /// The most calls flagged degrading at one sample.
    pub calls_degrading_max: u64,
}

/// The SLO verdict: `--max-p99-ms` against the echo round trip's p99, and
/// `--max-lateness-p99-ms` against the worker's outbound call lateness p99 (its worst call
/// at any sample: what the unluckiest caller heard).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SloVerdict {
    /// `--max-p99-ms`.
    pub max_p99_ms: Option<f64>,
    /// The echo round trip's p99.
    pub echo_rtt_p99_ms: Option<f64>,
    /// `--max-lateness-p99-ms`.
    pub max_lateness_p99_ms: Option<f64>,
    /// The worker's worst call lateness p99 over the run (none without a sampled worker).
    pub call_lateness_p99_ms: Option<f64>,
    /// Whether both held (true without an SLO; false when a figure it needs was not
    /// measured).
    pub met: bool,
}

/// Whether `figure` meets the SLO `max`: true without one, false without the figure.
fn within(max: Option<f64>, figure: Option<f64>) -> bool {
    match (max, figure) {
        (None, _) => true,
        (Some(max), Some(figure)) => figure <= max,
        (Some(_), None) => false,
    }
}

/// The summary of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The run's length, from the first dial to the last call's end.
    pub elapsed_s: f64,
    /// Calls by outcome.
    pub calls: CallCounts,
    /// Refusals by close code and reason (`1008 refused: unknown agent "x"`).
    pub refusals: BTreeMap<String, u64>,
    /// Other failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// WebSocket connect time (dial to handshake answer).
    pub connect_ms: LatencySummary,
    /// Echo round trip: chunk n sent to the n-th audio frame received.
    pub echo_rtt_ms: LatencySummary,
    /// Gaps between consecutive audio frames received by a call.
    pub inbound_gap_ms: LatencySummary,
    /// Audio chunks sent by every call.
    pub chunks_sent: u64,
    /// Audio frames received by every call.
    pub chunks_received: u64,
    /// Marks received and echoed.
    pub marks_echoed: u64,
    /// Frames from the worker that were not understood.
    pub bad_frames: u64,
    /// `/health` under load, with `--health-url`.
    pub health: Option<HealthSummary>,
    /// The worker's figures, when one was found to sample.
    pub worker: Option<WorkerSummary>,
    /// `--max-p99-ms` against the echo round trip.
    pub slo: SloVerdict,
    /// The exit status: 0, or 1 when a call failed or the SLO was missed.
    pub exit_status: u8,
}

/// The document `--output` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Document<'a> {
    /// The run's configuration.
    pub config: &'a ConfigRecord,
    /// One row a second.
    pub series: &'a [SeriesRow],
    /// The summary.
    pub summary: &'a Summary,
}

/// One level of `--find-capacity`.
#[derive(Clone, Debug, Serialize)]
pub struct LevelRecord {
    /// The number of calls.
    pub calls: u32,
    /// Whether it held: every call completed and every SLO was met.
    pub held: bool,
    /// One row a second.
    pub series: Vec<SeriesRow>,
    /// The level's summary.
    pub summary: Summary,
}

/// The document `--output` writes with `--find-capacity`.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityDocument<'a> {
    /// The run's configuration.
    pub config: &'a ConfigRecord,
    /// Each level tried, in order: the coarse steps, then the bisection.
    pub levels: &'a [LevelRecord],
    /// The largest number of calls that held (0: none did).
    pub capacity_calls: u32,
}

/// Summarises a run.
#[must_use]
pub fn summarise(config: &ConfigRecord, output: &RunOutput, elapsed_s: f64) -> Summary {
    let mut summary = Summary {
        elapsed_s: round_ms(elapsed_s),
        ..Summary::default()
    };
    summary.calls.planned = u64::from(config.calls);
    let (mut connect, mut echo, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for call in &output.calls {
        count_outcome(&mut summary, call);
        connect.extend(call.connect_ms);
        echo.extend_from_slice(&call.echo_rtt_ms);
        gaps.extend_from_slice(&call.inbound_gap_ms);
        summary.chunks_sent += call.chunks_sent;
        summary.chunks_received += call.chunks_received;
        summary.marks_echoed += call.marks_received;
        summary.bad_frames += call.bad_frames;
    }
    summary.connect_ms = LatencySummary::of(&mut connect);
    summary.echo_rtt_ms = LatencySummary::of(&mut echo);
    summary.inbound_gap_ms = LatencySummary::of(&mut gaps);
    if config.health_url.is_some() {
        let mut latencies = output.health.latencies_ms.clone();
        summary.health = Some(HealthSummary {
            requests: latencies.len() as u64 + output.health.errors,
            errors: output.health.errors,
            latency_ms: LatencySummary::of(&mut latencies),
        });
    }
    summary.worker = output
        .worker_name
        .as_ref()
        .map(|name| worker_summary(name, &output.series));
    let p99 = summary.echo_rtt_ms.p99_ms;
    let lateness = summary
        .worker
        .as_ref()
        .and_then(|worker| worker.call_lateness_p99_ms_max);
    summary.slo = SloVerdict {
        max_p99_ms: config.max_p99_ms,
        echo_rtt_p99_ms: p99,
        max_lateness_p99_ms: config.max_lateness_p99_ms,
        call_lateness_p99_ms: lateness,
        met: within(config.max_p99_ms, p99) && within(config.max_lateness_p99_ms, lateness),
    };
    summary.exit_status = u8::from(summary.calls.failed > 0 || !summary.slo.met);
    summary
}

/// Counts a call's outcome.
fn count_outcome(summary: &mut Summary, call: &CallResult) {
    match &call.outcome {
        CallOutcome::Completed => summary.calls.completed += 1,
        CallOutcome::Refused { code, reason } => {
            summary.calls.failed += 1;
            summary.calls.refused += 1;
            *summary
                .refusals
                .entry(format!("{code} {reason}"))
                .or_insert(0) += 1;
        }
        CallOutcome::Failed { reason } => {
            summary.calls.failed += 1;
            *summary.failures.entry(reason.clone()).or_insert(0) += 1;
        }
    }
}

/// The worker's figures over the series.
fn worker_summary(name: &str, series: &[SeriesRow]) -> WorkerSummary {
    let cpu: Vec<f64> = series.iter().filter_map(|row| row.worker_cpu_pct).collect();
    WorkerSummary {
        name: name.to_owned(),
        cpu_pct_mean: (!cpu.is_empty())
            .then(|| round_ms(cpu.iter().sum::<f64>() / cpu.len() as f64)),
        cpu_pct_max: cpu.iter().copied().reduce(f64::max),
        rss_bytes_max: series.iter().filter_map(|row| row.worker_rss_bytes).max(),
        stalls: series.iter().filter_map(|row| row.worker_stalls).sum(),
        call_lateness_p99_ms_max: series
            .iter()
            .filter_map(|row| row.worker_call_lateness_p99_ms)
            .reduce(f64::max),
        calls_degrading_max: series
            .iter()
            .filter_map(|row| row.worker_calls_degrading)
            .max()
            .unwrap_or(0),
    }
}

/// The table printed at the end of a run.
#[must_use]
pub fn table(config: &ConfigRecord, summary: &Summary) -> String {
    let mut out = String::new();
    let calls = &summary.calls;
    let _ = writeln!(
        out,
        "openrtc stress: {} calls to {} over {:.1}s",
        calls.planned, config.url, summary.elapsed_s
    );
    let _ = writeln!(
        out,
        "calls        {} completed, {} failed ({} refused)",
        calls.completed, calls.failed, calls.refused
    );
    for (reason, count) in &summary.refusals {
        let _ = writeln!(out, "  refused    {count} × {reason}");
    }
    for (reason, count) in &summary.failures {
        let _ = writeln!(out, "  failed     {count} × {reason}");
    }
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    latency_line(&mut out, "connect", &summary.connect_ms);
    latency_line(&mut out, "echo rtt", &summary.echo_rtt_ms);
    latency_line(&mut out, "inbound gap", &summary.inbound_gap_ms);
    if let Some(health) = &summary.health {
        latency_line(&mut out, "/health", &health.latency_ms);
        let _ = writeln!(
            out,
            "/health      {} requests, {} errors",
            health.requests, health.errors
        );
    }
    let _ = writeln!(
        out,
        "audio        {} chunks sent, {} received, {} marks echoed",
        summary.chunks_sent, summary.chunks_received, summary.marks_echoed
    );
    match &summary.worker {
        Some(worker) => {
            let _ = writeln!(
                out,
                "worker       {}: cpu mean {} max {}, rss max {}, {} stalls",
                worker.name,
                percent(worker.cpu_pct_mean),
                percent(worker.cpu_pct_max),
                worker.rss_bytes_max.map_or_else(|| "-".to_owned(), mib),
                worker.stalls
            );
            if let Some(lateness) = worker.call_lateness_p99_ms_max {
                let _ = writeln!(
                    out,
                    "worker calls outbound lateness p99 worst {lateness:.1} ms, at most {} degrading at once",
                    worker.calls_degrading_max
                );
            }
        }
        None => {
            let _ = writeln!(out, "worker       not sampled (no local worker found)");
        }
    }
    let slo = &summary.slo;
    if let Some(max) = slo.max_p99_ms {
        let met = within(Some(max), slo.echo_rtt_p99_ms);
        let _ = writeln!(
            out,
            "slo          echo rtt p99 {} ms against {max} ms: {}",
            figure(slo.echo_rtt_p99_ms),
            if met { "met" } else { "MISSED" }
        );
    }
    if let Some(max) = slo.max_lateness_p99_ms {
        let verdict = match slo.call_lateness_p99_ms {
            None => "NOT MEASURED (no local worker with calls was sampled)",
            Some(lateness) if lateness <= max => "met",
            Some(_) => "MISSED",
        };
        let _ = writeln!(
            out,
            "slo          worst call lateness p99 {} ms against {max} ms: {verdict}",
            figure(slo.call_lateness_p99_ms),
        );
    }
    out
}

/// The line printed after each level of `--find-capacity`.
#[must_use]
pub fn level_line(calls: u32, summary: &Summary, held: bool) -> String {
    format!(
        "level {calls} calls: {} completed, {} failed, echo rtt p99 {} ms, worst call lateness p99 {} ms: {}\n",
        summary.calls.completed,
        summary.calls.failed,
        figure(summary.echo_rtt_ms.p99_ms),
        figure(summary.slo.call_lateness_p99_ms),
        if held { "held" } else { "did not hold" }
    )
}

/// The verdict of `--find-capacity`.
#[must_use]
pub fn capacity_line(config: &ConfigRecord, capacity_calls: u32) -> String {
    let mut slo = String::new();
    if let Some(max) = config.max_p99_ms {
        let _ = write!(slo, ", echo rtt p99 <= {max} ms");
    }
    if let Some(max) = config.max_lateness_p99_ms {
        let _ = write!(slo, ", worst call lateness p99 <= {max} ms");
    }
    if capacity_calls == 0 {
        format!("capacity     no level held (every call completed{slo})\n")
    } else {
        format!("capacity     {capacity_calls} calls held (every call completed{slo})\n")
    }
}

/// One row of the latency table.
fn latency_line(out: &mut String, label: &str, summary: &LatencySummary) {
    let _ = writeln!(
        out,
        "{label:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
        summary.count,
        figure(summary.p50_ms),
        figure(summary.p95_ms),
        figure(summary.p99_ms),
        figure(summary.max_ms)
    );
}

/// A figure in ms with one decimal, or `-`.
fn figure(value_ms: Option<f64>) -> String {
    value_ms.map_or_else(|| "-".to_owned(), |value| format!("{value:.1}"))
}

/// A percentage with one decimal, or `-`.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.1}%"))
}

/// Bytes in MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stress::config::PlannedCall;
    use crate::stress::runner::HealthTally;

    fn config(max_p99_ms: Option<f64>) -> ConfigRecord {
        ConfigRecord {
            url: "ws://127.0.0.1:8080/media".to_owned(),
            calls: 3,
            ramp_per_s: 10.0,
            duration_s: 1.0,
            agent_mix: BTreeMap::from([("echo".to_owned(), 100)]),
            tenants: 1,
            health_url: None,
            health_rps: None,
            max_p99_ms,
            max_lateness_p99_ms: None,
            find_capacity: false,
        }
    }

    fn call(index: u32, outcome: CallOutcome, echo_rtt_ms: Vec<f64>) -> CallResult {
        CallResult {
            planned: PlannedCall {
                index,
                agent: "echo".to_owned(),
                tenant: "tenant-1".to_owned(),
                start_offset: Duration::ZERO,
            },
            outcome,
            connect_ms: Some(1.0),
            chunks_sent: 50,
            chunks_received: echo_rtt_ms.len() as u64,
            marks_received: 2,
            bad_frames: 0,
            echo_rtt_ms,
            inbound_gap_ms: vec![20.0],
        }
    }

    fn output(calls: Vec<CallResult>) -> RunOutput {
        RunOutput {
            calls,
            series: Vec::new(),
            health: HealthTally::default(),
            worker_name: None,
        }
    }

    #[test]
    fn outcomes_are_counted_and_refusals_keyed_by_code_and_reason() {
        let refused = CallOutcome::Refused {
            code: 1013,
            reason: "refused: worker full".to_owned(),
        };
        let failed = CallOutcome::Failed {
            reason: "no audio back within 5 s".to_owned(),
        };
        let run = output(vec![
            call(0, CallOutcome::Completed, vec![5.0, 7.0]),
            call(1, refused, Vec::new()),
            call(2, failed, Vec::new()),
        ]);
        let summary = summarise(&config(None), &run, 1.5);
        assert_eq!(
            summary.calls,
            CallCounts {
                planned: 3,
                completed: 1,
                failed: 2,
                refused: 1
            }
        );
        assert_eq!(
            summary.refusals,
            BTreeMap::from([("1013 refused: worker full".to_owned(), 1)])
        );
        assert_eq!(
            summary.failures,
            BTreeMap::from([("no audio back within 5 s".to_owned(), 1)])
        );
        assert_eq!(summary.echo_rtt_ms.count, 2);
        assert_eq!(summary.echo_rtt_ms.max_ms, Some(7.0));
        assert_eq!((summary.chunks_sent, summary.marks_echoed), (150, 6));
        assert_eq!(summary.exit_status, 1);
        let shown = table(&config(None), &summary);
        assert!(
            shown.contains("1 completed, 2 failed (1 refused)"),
            "{shown}"
        );
        assert!(shown.contains("1 × 1013 refused: worker full"), "{shown}");
    }

    #[test]
    fn the_slo_is_the_echo_round_trip_p99() {
        let run = output(vec![call(
            0,
            CallOutcome::Completed,
            (1..=100).map(f64::from).collect(),
        )]);
        let held = summarise(&config(Some(99.0)), &run, 1.0);
        assert!(held.slo.met);
        assert_eq!(held.exit_status, 0);
        let missed = summarise(&config(Some(98.5)), &run, 1.0);
        assert!(!missed.slo.met);
        assert_eq!(missed.exit_status, 1);
        assert!(table(&config(Some(98.5)), &missed).contains("MISSED"));
        let nothing = summarise(&config(Some(50.0)), &output(Vec::new()), 1.0);
        assert!(
            !nothing.slo.met,
            "no round trip measured cannot meet an SLO"
        );
    }

    #[test]
    fn the_worker_summary_keeps_the_worst_call_lateness_of_the_run() {
        let row = |lateness: Option<f64>, degrading: u64| SeriesRow {
            worker_cpu_pct: Some(50.0),
            worker_call_lateness_p99_ms: lateness,
            worker_calls_degrading: Some(degrading),
            ..SeriesRow::default()
        };
        let series = [
            row(None, 0),
            row(Some(12.5), 0),
            row(Some(41.0), 2),
            row(Some(3.0), 1),
        ];
        let worker = worker_summary("demo", &series);
        assert_eq!(worker.call_lateness_p99_ms_max, Some(41.0));
        assert_eq!(worker.calls_degrading_max, 2);
        let quiet = worker_summary("demo", &[row(None, 0)]);
        assert_eq!(quiet.call_lateness_p99_ms_max, None);
    }

    #[test]
    fn the_lateness_slo_is_the_worst_call_lateness_the_worker_measured() {
        let sampled = |lateness: f64| {
            let mut run = output(vec![call(0, CallOutcome::Completed, vec![5.0])]);
            run.worker_name = Some("demo".to_owned());
            run.series = vec![SeriesRow {
                worker_call_lateness_p99_ms: Some(lateness),
                ..SeriesRow::default()
            }];
            run
        };
        let mut slo = config(None);
        slo.max_lateness_p99_ms = Some(20.0);
        let held = summarise(&slo, &sampled(19.5), 1.0);
        assert!(held.slo.met);
        assert_eq!(held.slo.call_lateness_p99_ms, Some(19.5));
        assert_eq!(held.exit_status, 0);
        let missed = summarise(&slo, &sampled(20.5), 1.0);
        assert!(!missed.slo.met);
        assert_eq!(missed.exit_status, 1);
        assert!(
            table(&slo, &missed).contains("worst call lateness p99 20.5 ms against 20 ms: MISSED"),
            "{}",
            table(&slo, &missed)
        );
        // Without a worker to sample, the lateness cannot be measured: not met, and said so.
        let unmeasured = output(vec![call(0, CallOutcome::Completed, vec![5.0])]);
        let unmeasured = summarise(&slo, &unmeasured, 1.0);
        assert!(!unmeasured.slo.met);
        assert!(table(&slo, &unmeasured).contains("NOT MEASURED"));
        assert_eq!(
            capacity_line(&slo, 40),
            "capacity     40 calls held (every call completed, worst call lateness p99 <= 20 ms)\n"
        );
    }
}
