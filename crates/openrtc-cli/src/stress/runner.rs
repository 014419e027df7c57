//! The run of `openrtc stress` on its Tokio runtime: every planned call started at its
//! ramp offset, the `/health` load beside them, and once a second a row of the series (calls
//! by state, the second's echo round trips and health latencies, the worker's CPU, RSS and
//! stalls from its snapshot). The live figures the progress line and the series read are
//! atomics and short-held mutexes in [`Live`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openrtc_proto::PoolSnapshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::call::{CallOutcome, CallResult, run_call};
use super::config::{MediaUrl, PlannedCall};
use super::stats::{LatencySummary, round_ms};
use crate::discover::{self, Target};
use crate::health::client;
use crate::health::url::Endpoint;
use openrtc_media::caller::tone_payloads;

/// How long one `/health` request may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The figures of a run in progress, shared by the calls, the series and the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Calls dialled.
    pub dialled: AtomicU64,
    /// Calls connected and not yet ended.
    pub active: AtomicU64,
    /// Calls ended, by outcome.
    pub completed: AtomicU64,
    /// Calls refused.
    pub refused: AtomicU64,
    /// Calls failed (refusals not counted).
    pub failed: AtomicU64,
    /// Chunks of audio sent by every call.
    pub chunks_sent: AtomicU64,
    /// `media` frames received by every call.
    pub chunks_received: AtomicU64,
    /// `/health` requests that failed.
    pub health_errors: AtomicU64,
    /// This second's samples, drained by each row of the series.
    second: Mutex<SecondSamples>,
}

/// The samples of the current second.
#[derive(Debug, Default)]
struct SecondSamples {
    echo_rtt_ms: Vec<f64>,
    connect_ms: Vec<f64>,
    health_ms: Vec<f64>,
}

impl Live {
    /// Records a call's connect time.
    pub fn record_connect(&self, connect_ms: f64) {
        self.lock_second().connect_ms.push(connect_ms);
    }

    /// Records an echo round trip.
    pub fn record_echo(&self, rtt_ms: f64) {
        self.lock_second().echo_rtt_ms.push(rtt_ms);
    }

    fn record_health(&self, latency_ms: f64) {
        self.lock_second().health_ms.push(latency_ms);
    }

    fn lock_second(&self) -> std::sync::MutexGuard<'_, SecondSamples> {
        self.second.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_second(&self) -> SecondSamples {
        std::mem::take(&mut *self.lock_second())
    }
}

/// What a run needs.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The media URL.
    pub url: MediaUrl,
    /// Every call.
    pub calls: Vec<PlannedCall>,
    /// How long each call streams.
    pub call_duration: Duration,
    /// The `/health` endpoint to load, and how many requests a second.
    pub health: Option<(Endpoint, f64)>,
    /// Sample the worker of this name only (else the one serving the URL, or the only one).
    pub worker: Option<String>,
}

/// One row of the series: the second ending `t_s` after the run's start.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SeriesRow {
    /// Seconds since the run's start.
    pub t_s: u64,
    /// Calls dialled so far.
    pub dialled: u64,
    /// Calls connected and streaming.
    pub active: u64,
    /// Calls completed so far.
    pub completed: u64,
    /// Calls refused so far.
    pub refused: u64,
    /// Calls failed so far (refusals not counted).
    pub failed: u64,
    /// Connect times of the calls connected this second.
    pub connect_ms: LatencySummary,
    /// Echo round trips measured this second.
    pub echo_rtt_ms: LatencySummary,
    /// `/health` latencies this second.
    pub health_ms: LatencySummary,
    /// `/health` failures so far.
    pub health_errors: u64,
    /// The worker's process CPU (100 = one core), when a worker was sampled.
    pub worker_cpu_pct: Option<f64>,
    /// The worker's RSS.
    pub worker_rss_bytes: Option<u64>,
    /// Stalls the worker recorded this second.
    pub worker_stalls: Option<u64>,
    /// Sessions live in the worker.
    pub worker_sessions: Option<u64>,
    /// The worst outbound lateness p99 among the worker's live calls (its own measure of
    /// audio the agents sent after it was due, over the last 10 s), when it had calls.
    pub worker_call_lateness_p99_ms: Option<f64>,
    /// The worker's live calls flagged degrading.
    pub worker_calls_degrading: Option<u64>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Every call's result, in call order.
    pub calls: Vec<CallResult>,
    /// One row a second.
    pub series: Vec<SeriesRow>,
    /// `/health` over the whole run.
    pub health: HealthTally,
    /// The worker sampled, by name, if one was found.
    pub worker_name: Option<String>,
}

/// Runs every call of `plan` and the side loads, until the last call has ended.
pub async fn run(plan: RunPlan, live: Arc<Live>) -> RunOutput {
    let started = Instant::now();
    // Tells this run's stream ids apart from another's in the worker's logs.
    let run_id = (u64::from(std::process::id()) << 16) ^ (crate::discover::unix_now_ms() & 0xffff);
    let payloads: Arc<[String]> = tone_payloads().into();
    let url: Arc<str> = plan.url.text.as_str().into();
    let mut calls = JoinSet::new();
    for planned in plan.calls.iter().cloned() {
        let (live, payloads, url) = (Arc::clone(&live), Arc::clone(&payloads), Arc::clone(&url));
        let duration = plan.call_duration;
        calls.spawn(async move {
            tokio::time::sleep_until(started + planned.start_offset).await;
            live.dialled.fetch_add(1, Ordering::Relaxed);
            let result = run_call(&url, planned, duration, &payloads, run_id, &live).await;
            let counter = match result.outcome {
                CallOutcome::Completed => &live.completed,
                CallOutcome::Refused { .. } => &live.refused,
                CallOutcome::Failed { .. } => &live.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            result
        });
    }
    let health_all = Arc::new(Mutex::new(HealthTally::default()));
    let health = plan.health.clone().map(|(endpoint, rps)| {
        tokio::spawn(load_health(
            endpoint,
            rps,
            Arc::clone(&live),
            Arc::clone(&health_all),
        ))
    });
    let series = Arc::new(Series::new(plan.url.authority(), plan.worker.clone()));
    let ticker = tokio::spawn(series_loop(started, Arc::clone(&live), Arc::clone(&series)));
    let mut results = Vec::with_capacity(plan.calls.len());
    while let Some(joined) = calls.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    results.sort_by_key(|result| result.planned.index);
    if let Some(health) = health {
        health.abort();
    }
    ticker.abort();
    let _ = ticker.await;
    // The last, partial second.
    let t_s = started.elapsed().as_secs_f64().ceil() as u64;
    series.push_row(t_s, &live).await;
    // Requests still in flight are left out: the tally is closed here.
    let health = {
        let mut tally = health_all.lock().unwrap_or_else(PoisonError::into_inner);
        tally.closed = true;
        std::mem::take(&mut *tally)
    };
    let worker_name = series.worker_name();
    RunOutput {
        calls: results,
        series: series.take_rows(),
        health,
        worker_name,
    }
}

/// The live sessions of the worker a run of `plan` samples, when one is found.
pub async fn worker_sessions(plan: &RunPlan) -> Option<u64> {
    let mut sampler = WorkerSampler::new(plan.url.authority(), plan.worker.clone());
    tokio::task::spawn_blocking(move || sampler.sample().map(|sample| sample.sessions))
        .await
        .ok()
        .flatten()
}

/// Adds a row to the series every second, until aborted.
async fn series_loop(started: Instant, live: Arc<Live>, series: Arc<Series>) {
    let mut t_s = 0;
    loop {
        t_s += 1;
        tokio::time::sleep_until(started + Duration::from_secs(t_s)).await;
        series.push_row(t_s, &live).await;
    }
}

/// The rows of the series, and the worker they sample.
#[derive(Debug)]
struct Series {
    rows: Mutex<Vec<SeriesRow>>,
    worker: Arc<Mutex<WorkerSampler>>,
}

impl Series {
    fn new(media_authority: String, worker_name: Option<String>) -> Self {
        Self {
            rows: Mutex::new(Vec::new()),
            worker: Arc::new(Mutex::new(WorkerSampler::new(media_authority, worker_name))),
        }
    }

    /// Adds the row of the second ending at `t_s`: the live counters, the second's samples
    /// and a look at the worker.
    async fn push_row(&self, t_s: u64, live: &Live) {
        let worker = Arc::clone(&self.worker);
        let sample = tokio::task::spawn_blocking(move || {
            worker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sample()
        })
        .await
        .ok()
        .flatten();
        let mut second = live.take_second();
        let mut row = SeriesRow {
            t_s,
            dialled: live.dialled.load(Ordering::Relaxed),
            active: live.active.load(Ordering::Relaxed),
            completed: live.completed.load(Ordering::Relaxed),
            refused: live.refused.load(Ordering::Relaxed),
            failed: live.failed.load(Ordering::Relaxed),
            connect_ms: LatencySummary::of(&mut second.connect_ms),
            echo_rtt_ms: LatencySummary::of(&mut second.echo_rtt_ms),
            health_ms: LatencySummary::of(&mut second.health_ms),
            health_errors: live.health_errors.load(Ordering::Relaxed),
            ..SeriesRow::default()
        };
        if let Some(sample) = sample {
            row.worker_cpu_pct = Some(round_ms(sample.cpu_pct));
            row.worker_rss_bytes = Some(sample.rss_bytes);
            row.worker_stalls = sample.stalls;
            row.worker_sessions = Some(sample.sessions);
            row.worker_call_lateness_p99_ms = sample.call_lateness_p99_ms;
            row.worker_calls_degrading = Some(sample.calls_degrading);
        }
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(row);
    }

    fn take_rows(&self) -> Vec<SeriesRow> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn worker_name(&self) -> Option<String> {
        self.worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .found
            .clone()
    }
}

/// One look at the worker.
#[derive(Clone, Copy, Debug)]
struct WorkerSample {
    cpu_pct: f64,
    rss_bytes: u64,
    /// Stalls since the previous look (none at the first).
    stalls: Option<u64>,
    sessions: u64,
    /// The worst outbound lateness p99 among its live calls; `None` without calls.
    call_lateness_p99_ms: Option<f64>,
    /// Its live calls flagged degrading.
    calls_degrading: u64,
}

/// Finds the worker to sample through its socket, and samples it.
#[derive(Debug)]
struct WorkerSampler {
    /// The URL's `host:port`, to recognise the worker serving it.
    media_authority: String,
    /// `--worker`.
    wanted: Option<String>,
    /// The worker chosen at the first look.
    found: Option<String>,
    last_stalls: Option<u64>,
    /// No worker at the first look: no more looks.
    gave_up: bool,
}

impl WorkerSampler {
    const fn new(media_authority: String, wanted: Option<String>) -> Self {
        Self {
            media_authority,
            wanted,
            found: None,
            last_stalls: None,
            gave_up: false,
        }
    }

    /// Asks the worker for its snapshot (blocking); `None` when there is none to ask.
    fn sample(&mut self) -> Option<WorkerSample> {
        if self.gave_up {
            return None;
        }
        let snapshot = self.snapshot();
        if snapshot.is_none() && self.found.is_none() {
            self.gave_up = true;
        }
        let snapshot = snapshot?;
        self.found = Some(snapshot.worker.name.clone());
        let total = snapshot.worker.stalls_total_count;
        let stalls = self
            .last_stalls
            .replace(total)
            .map(|last| total.saturating_sub(last));
        let calls = snapshot
            .sessions
            .iter()
            .filter_map(|row| row.media.as_ref());
        let (mut call_lateness_p99_ms, mut calls_degrading) = (None::<f64>, 0_u64);
        for media in calls {
            let worst = call_lateness_p99_ms.unwrap_or(0.0);
            call_lateness_p99_ms = Some(worst.max(media.outbound_lateness_p99_ms));
            calls_degrading += u64::from(media.degrading);
        }
        Some(WorkerSample {
            cpu_pct: snapshot.worker.process_cpu_pct,
            rss_bytes: snapshot.worker.rss_bytes,
            stalls,
            sessions: u64::from(snapshot.worker.active_sessions),
            call_lateness_p99_ms,
            calls_degrading,
        })
    }

    /// The snapshot of the worker named by `--worker` (or chosen before), else of the worker
    /// whose media listener is the URL's, else of the only worker.
    fn snapshot(&self) -> Option<PoolSnapshot> {
        let target = Target::Directory(discover::default_socket_dir().ok()?);
        let name = self.found.as_deref().or(self.wanted.as_deref());
        let mut snapshots = discover::survey(&target, name).ok()?.snapshots;
        if name.is_some() || snapshots.len() == 1 {
            return snapshots.pop();
        }
        snapshots.into_iter().find(|snapshot| {
            snapshot.worker.media_addr.as_deref() == Some(self.media_authority.as_str())
        })
    }
}

/// The `/health` requests of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthTally {
    /// Latencies of the requests answered (200 or 503).
    pub latencies_ms: Vec<f64>,
    /// Requests without an answer, or answered with another status.
    pub errors: u64,
    /// The run is over: answers arriving now are not counted.
    closed: bool,
}

/// Loads `/health` at `rps` requests a second, each on a blocking thread, until aborted.
async fn load_health(
    endpoint: Endpoint,
    rps: f64,
    live: Arc<Live>,
    tally: Arc<Mutex<HealthTally>>,
) {
    let endpoint = Arc::new(endpoint);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (endpoint, live, tally) =
            (Arc::clone(&endpoint), Arc::clone(&live), Arc::clone(&tally));
        tokio::task::spawn_blocking(move || {
            let asked = std::time::Instant::now();
            let answer = client::get(&endpoint, HEALTH_TIMEOUT);
            let latency_ms = asked.elapsed().as_secs_f64() * 1000.0;
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            if tally.closed {
                return;
            }
            match answer {
                Ok(response) if matches!(response.status, 200 | 503) => {
                    live.record_health(latency_ms);
                    tally.latencies_ms.push(latency_ms);
                }
                _ => {
                    live.health_errors.fetch_add(1, Ordering::Relaxed);
                    tally.errors += 1;
                }
            }
        });
    }
}
