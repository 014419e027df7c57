//! `openrtc stress`: a load generator of simulated phone calls against a worker's media
//! WebSocket (Twilio Media Streams, as the worker's media listener speaks it).
//!
//! - **The options** ([`config`], pure): the `ws://` URL, `--calls` started at `--ramp`
//!   (`10/s`), each streaming for `--duration`, agents from `--agent-mix` (percentages adding
//!   up to 100) and tenants `tenant-1` to `tenant-<--tenants>` in turn.
//! - **A call** ([`call`]): `connected`, `start` (its agent and tenant in
//!   `customParameters`), a 440 Hz tone as μ-law (`openrtc_media::caller`'s frames)
//!   every 20 ms against absolute deadlines, every `mark` echoed, then `stop` and a 1000
//!   close. It measures connect time, echo round trip, inbound gaps and its outcome.
//! - **The run** ([`runner`]): the calls on a multi-thread Tokio runtime made for the
//!   command, `GET /health` at `--health-rps` beside them (`--health-url`), and once a second
//!   a row of the series, with the worker's CPU, RSS and stalls from its snapshot when a local
//!   worker is found (the one named by `--worker`, else the one whose `media_addr` is the
//!   URL's, else the only one); without one, those figures are left out.
//! - **The results** ([`report`], pure): a progress line on standard error while it runs
//!   (a terminal only), a summary table on standard output, and with `--output` one JSON
//!   document: `config`, `series` (one row a second) and `summary`.
//! - **SLOs:** `--max-p99-ms` against the echo round trip's p99 (as the caller measures it),
//!   `--max-lateness-p99-ms` against the worker's own outbound lateness p99 of its worst call
//!   (what the unluckiest caller heard; needs a sampled worker, and is missed without one).
//! - **Capacity** ([`capacity`]): `--find-capacity` runs `--calls`, twice as many, three
//!   times..., up to `--max-calls`, until a run does not hold (a call failed, or an SLO was
//!   missed), then bisects between the last level that held and the first that did not, to
//!   within 10 %, and reports the largest number of calls that held.
//! - **Exit status:** 0 (with `--find-capacity`: some number of calls held); 1 when a call
//!   failed (refusals included) or an SLO was missed; 2 for bad arguments, an unreachable
//!   URL, or an output file that cannot be written.

pub mod call;
pub mod capacity;
pub mod config;
pub mod report;
pub mod runner;
pub mod stats;

use std::collections::BTreeMap;
use std::io::{self, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Exit;
use crate::cli::StressArgs;
use crate::health::url::parse_health_url;

use report::{ConfigRecord, Document, Summary};
use runner::{Live, RunOutput, RunPlan};

/// How long the reachability check of the URL may take.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Runs `openrtc stress` with its arguments.
///
/// # Errors
///
/// Fails only when the Tokio runtime cannot be built; every other failure is reported and
/// ends with its exit status.
pub fn run(args: &StressArgs) -> anyhow::Result<Exit> {
    let health = match &args.health_url {
        Some(url) => match parse_health_url(url) {
            Ok(endpoint) => Some((endpoint, args.health_rps)),
            Err(error) => {
                report_line(&error.to_string());
                return Ok(Exit::Failure);
            }
        },
        None => None,
    };
    let config = config_record(args);
    let plan = RunPlan {
        url: args.url.clone(),
        calls: config::plan(args.calls, args.ramp, &args.agent_mix, args.tenants),
        call_duration: args.duration,
        health,
        worker: args.worker.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("openrtc-stress")
        .build()
        .context("cannot start the Tokio runtime")?;
    let exit = runtime.block_on(async move {
        let authority = plan.url.authority();
        if let Err(error) = preflight(&authority).await {
            report_line(&format!("{} is unreachable: {error}", plan.url));
            return Exit::Failure;
        }
        if args.find_capacity {
            find_capacity(args, &config, plan).await
        } else {
            single_run(args, &config, plan).await
        }
    });
    // `/health` requests still in flight on blocking threads are not waited for.
    runtime.shutdown_background();
    Ok(exit)
}

/// One run of `--calls` calls: the table, and the document with `--output`.
async fn single_run(args: &StressArgs, config: &ConfigRecord, plan: RunPlan) -> Exit {
    let (output, summary) = run_level(config, plan).await;
    if let Some(path) = &args.output {
        let document = Document {
            config,
            series: &output.series,
            summary: &summary,
        };
        if let Err(error) = write_document(path, &document) {
            report_line(&format!("cannot write {}: {error}", path.display()));
            return Exit::Failure;
        }
    }
    write_out(&report::table(config, &summary));
    if summary.exit_status == 0 {
        Exit::Success
    } else {
        Exit::StressFailed
    }
}

/// `--find-capacity`: runs of `--calls`, twice as many, three times..., up to `--max-calls`,
/// until one does not hold (a call failed, or an SLO was missed), then bisection to within
/// 10 % ([`capacity::Search`]); the largest number of calls that held is the capacity.
async fn find_capacity(args: &StressArgs, config: &ConfigRecord, plan: RunPlan) -> Exit {
    let mut levels = Vec::new();
    let mut search = capacity::Search::new(args.calls, args.max_calls);
    // The worker's sessions before the first level: its own, not the search's.
    let baseline = runner::worker_sessions(&plan).await;
    while let Some(calls) = search.next() {
        if !levels.is_empty() {
            settle(&plan, baseline).await;
        }
        let mut level_config = config.clone();
        level_config.calls = calls;
        let mut level_plan = plan.clone();
        level_plan.calls = config::plan(calls, args.ramp, &args.agent_mix, args.tenants);
        let (output, summary) = run_level(&level_config, level_plan).await;
        let held = summary.exit_status == 0;
        write_out(&report::level_line(calls, &summary, held));
        search.record(calls, held);
        levels.push(report::LevelRecord {
            calls,
            held,
            series: output.series,
            summary,
        });
    }
    let capacity_calls = search.capacity_calls();
    if let Some(path) = &args.output {
        let document = report::CapacityDocument {
            config,
            levels: &levels,
            capacity_calls,
        };
        if let Err(error) = write_document(path, &document) {
            report_line(&format!("cannot write {}: {error}", path.display()));
            return Exit::Failure;
        }
    }
    if let Some(last) = levels.last() {
        let mut last_config = config.clone();
        last_config.calls = last.calls;
        write_out(&report::table(&last_config, &last.summary));
    }
    write_out(&report::capacity_line(config, capacity_calls));
    if capacity_calls > 0 {
        Exit::Success
    } else {
        Exit::StressFailed
    }
}

/// Between two levels: waits until the previous level's sessions have ended in the worker
/// (its live sessions back to `baseline`), at most [`capacity::SETTLE_LIMIT`]; then
/// [`capacity::SETTLE`] more for its figures to leave the windows. Without a worker to
/// sample, waits [`capacity::SETTLE`].
async fn settle(plan: &RunPlan, baseline: Option<u64>) {
    if let Some(baseline) = baseline {
        let deadline = tokio::time::Instant::now() + capacity::SETTLE_LIMIT;
        while tokio::time::Instant::now() < deadline {
            match runner::worker_sessions(plan).await {
                Some(sessions) if sessions > baseline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => break,
            }
        }
    }
    tokio::time::sleep(capacity::SETTLE).await;
}

/// Runs one set of calls with the progress line, and summarises it.
async fn run_level(config: &ConfigRecord, plan: RunPlan) -> (RunOutput, Summary) {
    let live = Arc::new(Live::default());
    let progress = progress_line(plan.calls.len() as u64, Arc::clone(&live));
    let started = std::time::Instant::now();
    let output = runner::run(plan, Arc::clone(&live)).await;
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let summary = report::summarise(config, &output, elapsed_s);
    (output, summary)
}

/// Writes `text` to standard output (a closed pipe is ignored).
fn write_out(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The configuration as the document records it.
fn config_record(args: &StressArgs) -> ConfigRecord {
    ConfigRecord {
        url: args.url.text.clone(),
        calls: args.calls,
        ramp_per_s: args.ramp.calls_per_s,
        duration_s: args.duration.as_secs_f64(),
        agent_mix: args
            .agent_mix
            .entries()
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>(),
        tenants: args.tenants,
        health_url: args.health_url.clone(),
        health_rps: args.health_url.as_ref().map(|_| args.health_rps),
        max_p99_ms: args.max_p99_ms,
        max_lateness_p99_ms: args.max_lateness_p99_ms,
        find_capacity: args.find_capacity,
    }
}

/// Checks that something accepts TCP connections at the URL's address.
async fn preflight(authority: &str) -> io::Result<()> {
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} s", PREFLIGHT_TIMEOUT.as_secs()),
        )),
    }
}

/// The live progress line on standard error, when it is a terminal, and the task that
/// redraws it.
fn progress_line(
    calls: u64,
    live: Arc<Live>,
) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(calls), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{elapsed} [{bar:20}] {pos}/{len} ended {wide_msg}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                ticks.tick().await;
                let (completed, refused, failed) = (
                    live.completed.load(Ordering::Relaxed),
                    live.refused.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed),
                );
                bar.set_position(completed + refused + failed);
                bar.set_message(format!(
                    "{} live, {completed} done, {} failed ({refused} refused), chunks {} out {} back",
                    live.active.load(Ordering::Relaxed),
                    failed + refused,
                    live.chunks_sent.load(Ordering::Relaxed),
                    live.chunks_received.load(Ordering::Relaxed),
                ));
            }
        }
    });
    Some((bar, ticker))
}

/// Writes the JSON document to `path`.
fn write_document(path: &std::path::Path, document: &impl serde::Serialize) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(document).map_err(io::Error::other)?;
    text.push('\n');
    std::fs::write(path, text)
}

/// Prints one line on standard error, after `openrtc stress: `.
fn report_line(message: &str) {
    let _ = writeln!(io::stderr().lock(), "openrtc stress: {message}");
}
