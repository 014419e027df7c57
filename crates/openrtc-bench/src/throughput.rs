//! `throughput`: N sessions on a 20 ms frame cadence, each frame a fixed piece of work; how
//! late do frames run, what does it cost, and how many sessions does the worker sustain
//! (against the compute limit: the sessions its cores could hold at the measured CPU per
//! frame)? Sessions pace their frames with the pool's frame clock (`Session::frames`) or
//! with a Tokio interval each (`--clock`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use openrtc::{AgentPool, Frames, JobRequest, Session, agent_fn};
use serde::Serialize;

use crate::cli::{Report, counts};
use crate::harness::{Running, row_from_child};
use crate::quiet::CpuTicks;
use crate::stats::Spread;
use crate::vad_frames::{VadFrames, VadShared};

/// The frame cadence: 50 frames a second.
const FRAME: Duration = Duration::from_millis(20);

/// The pool's worker threads: the cores the compute limit counts.
pub(crate) const WORKER_THREADS: usize = 2;

/// The work each frame does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Workload {
    /// One 96×96 f32 matrix product (with `ndarray`'s optimized kernel, as the reference
    /// uses numpy's).
    Cpu,
    /// A one-pole filter over 320 samples (20 ms of 16 kHz audio).
    Dsp,
    /// 20 ms of speech-like 16 kHz audio into the session's Silero VAD stream, one inference
    /// per 512 samples (the reference's own workload, through its Silero plugin there).
    Vad,
}

impl Workload {
    /// The name the command line takes.
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Dsp => "dsp",
            Self::Vad => "vad",
        }
    }
}

/// What paces each session's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Clock {
    /// The pool's frame clock (`Session::frames`): one timer per millisecond slice.
    Frames,
    /// A `tokio::time::interval` per session (`Burst`), staggered over the period by hand.
    Interval,
}

impl Clock {
    /// The name the command line takes.
    fn name(self) -> &'static str {
        match self {
            Self::Frames => "frames",
            Self::Interval => "interval",
        }
    }
}

/// Options of `throughput`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The work each frame does.
    #[arg(long, value_enum, default_value = "cpu")]
    workload: Workload,
    /// What paces each session's frames.
    #[arg(long, value_enum, default_value = "frames")]
    clock: Clock,
    /// Session counts to measure, comma-separated.
    #[arg(long, default_value = "1,10,100,1000,5000", value_parser = counts)]
    sessions: std::vec::Vec<usize>,
    /// Seconds of frames before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Seconds of frames measured.
    #[arg(long, default_value_t = 5.0)]
    measure_secs: f64,
    /// Run with introspection off (no probe, no watchdog, no socket).
    #[arg(long)]
    no_introspection: bool,
    /// Instead of a cadence: each session runs exactly this many frames back to back,
    /// yielding between them, then ends (one count, no warm-up or window). The work done
    /// then does not depend on time, for counting instructions (`overhead-instructions`).
    #[arg(long, hide = true)]
    fixed_frames: Option<usize>,
}

/// The figures of one session count.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct ThroughputRow {
    pub(crate) sessions: usize,
    /// Frames run inside the measurement window, all sessions together.
    pub(crate) frames: usize,
    /// Actual wake-up minus scheduled wake-up, in ms.
    pub(crate) lateness_ms: Spread,
    /// Process CPU over the measurement window, in % of one core.
    pub(crate) process_cpu_pct: f64,
    /// The machine's CPU over the same window, every process's (`/proc/stat`), in % of one
    /// core: what others used is this minus `process_cpu_pct` (`None`: unreadable).
    #[serde(default)]
    pub(crate) machine_cpu_pct: Option<f64>,
    /// Process CPU seconds per 1,000 frames.
    pub(crate) cpu_seconds_per_1000_frames: f64,
    /// Peak RSS of the process (VmHWM).
    pub(crate) peak_rss_bytes: u64,
}

/// The `throughput` report.
#[derive(Debug, Serialize)]
pub(crate) struct ThroughputReport {
    benchmark: &'static str,
    workload: Workload,
    clock: Clock,
    introspection: bool,
    rows: Vec<ThroughputRow>,
    /// The largest session count whose p99 lateness stayed under 20 ms (0: none).
    sustainable_at_20ms_p99: usize,
    /// The largest session count whose p99 lateness stayed under 100 ms (0: none).
    sustainable_at_100ms_p99: usize,
    /// CPU seconds per 1,000 frames of the largest count that held a 20 ms p99 (0: none
    /// held): what a frame costs while every session keeps its cadence.
    cpu_seconds_per_1000_frames_held: f64,
    /// The sessions the worker's cores could hold at that cost, 50 frames a second each,
    /// with every core busy: the compute limit (0: no count held).
    compute_limit_sessions: usize,
    /// The least CPU seconds per 1,000 frames of any row. An overloaded count runs late
    /// frames back to back, which costs less per frame than keeping the cadence: this is a
    /// floor, not what a held count costs.
    cpu_seconds_per_1000_frames_min: f64,
}

/// The sessions `cores` could hold at `cpu_seconds_per_1000_frames`, 50 frames a second each.
pub(crate) fn compute_limit(cores: usize, cpu_seconds_per_1000_frames: f64) -> usize {
    let frames_per_second = 1.0 / FRAME.as_secs_f64();
    let cpu_per_session = cpu_seconds_per_1000_frames / 1000.0 * frames_per_second;
    if cpu_per_session > 0.0 {
        (cores as f64 / cpu_per_session).floor() as usize
    } else {
        0
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ThroughputReport> {
    let rows: Vec<ThroughputRow> = match (args.sessions.as_slice(), args.fixed_frames) {
        ([sessions], Some(frames)) => vec![measure_fixed(args, *sessions, frames)?],
        (_, Some(_)) => anyhow::bail!("--fixed-frames measures one session count"),
        ([sessions], None) => vec![measure(args, *sessions)?],
        // Each count in a fresh process, so peak RSS belongs to that count alone.
        (several, None) => several
            .iter()
            .map(|&sessions| measure_in_child(args, sessions))
            .collect::<anyhow::Result<_>>()?,
    };
    let largest_held = |limit_ms: f64| {
        rows.iter()
            .filter(|row| row.frames > 0 && row.lateness_ms.p99 < limit_ms)
            .max_by_key(|row| row.sessions)
    };
    let sustainable = |limit_ms: f64| largest_held(limit_ms).map_or(0, |row| row.sessions);
    let cost_held = largest_held(20.0).map_or(0.0, |row| row.cpu_seconds_per_1000_frames);
    let cost_min = rows
        .iter()
        .filter(|row| row.frames > 0)
        .map(|row| row.cpu_seconds_per_1000_frames)
        .fold(f64::INFINITY, f64::min);
    let cost_min = if cost_min.is_finite() { cost_min } else { 0.0 };
    Ok(ThroughputReport {
        benchmark: "throughput",
        workload: args.workload,
        clock: args.clock,
        introspection: !args.no_introspection,
        sustainable_at_20ms_p99: sustainable(20.0),
        sustainable_at_100ms_p99: sustainable(100.0),
        cpu_seconds_per_1000_frames_held: cost_held,
        compute_limit_sessions: compute_limit(WORKER_THREADS, cost_held),
        cpu_seconds_per_1000_frames_min: cost_min,
        rows,
    })
}

/// The benchmark binary with (`tracked`) or without the tracking allocator, beside this one.
pub(crate) fn bench_exe(tracked: bool) -> anyhow::Result<std::path::PathBuf> {
    let current = std::env::current_exe()?;
    let name = if tracked {
        "openrtc-bench"
    } else {
        "openrtc-bench-untracked"
    };
    Ok(current.with_file_name(name))
}

/// Options for one run of `throughput` in a child process, as `overhead` starts them.
pub(crate) fn child_args(workload: Workload, seconds: f64, no_introspection: bool) -> Args {
    Args {
        workload,
        clock: Clock::Frames,
        sessions: Vec::new(),
        warmup_secs: 1.0,
        measure_secs: seconds,
        no_introspection,
        fixed_frames: None,
    }
}

/// The command line of one `throughput` run of exactly `frames` frames per session, back to
/// back (`--fixed-frames`), on the `workload`, with or without introspection.
pub(crate) fn fixed_frames_args(
    workload: Workload,
    sessions: usize,
    frames: usize,
    no_introspection: bool,
) -> Vec<String> {
    let mut args = vec![
        "throughput".to_owned(),
        "--sessions".to_owned(),
        sessions.to_string(),
        "--workload".to_owned(),
        workload.name().to_owned(),
        "--fixed-frames".to_owned(),
        frames.to_string(),
    ];
    if no_introspection {
        args.push("--no-introspection".to_owned());
    }
    args
}

/// Runs one session count in a fresh process and reads its row.
pub(crate) fn measure_in_child(args: &Args, sessions: usize) -> anyhow::Result<ThroughputRow> {
    measure_in(&std::env::current_exe()?, args, sessions)
}

/// Runs one session count in a fresh process of `exe` and reads its row.
pub(crate) fn measure_in(
    exe: &std::path::Path,
    args: &Args,
    sessions: usize,
) -> anyhow::Result<ThroughputRow> {
    let mut child_args = vec![
        "throughput".to_owned(),
        "--sessions".to_owned(),
        sessions.to_string(),
        "--workload".to_owned(),
        args.workload.name().to_owned(),
        "--clock".to_owned(),
        args.clock.name().to_owned(),
        "--warmup-secs".to_owned(),
        args.warmup_secs.to_string(),
        "--measure-secs".to_owned(),
        args.measure_secs.to_string(),
    ];
    if args.no_introspection {
        child_args.push("--no-introspection".to_owned());
    }
    row_from_child(exe, &child_args)
}

/// One frame of work; returns something so the optimizer keeps it.
fn frame_work(workload: Workload, state: &mut FrameState) -> f32 {
    match workload {
        Workload::Cpu => {
            ndarray::linalg::general_mat_mul(
                1.0,
                &state.left,
                &state.right,
                0.0,
                &mut state.product,
            );
            state.product[[1, 1]]
        }
        Workload::Dsp => {
            let mut energy = 0.0_f32;
            for sample in 0..320 {
                let input = ((state.phase + sample) as f32 * 0.172).sin();
                state.filtered += 0.1 * (input - state.filtered);
                energy += state.filtered * state.filtered;
            }
            state.phase += 320;
            energy
        }
        Workload::Vad => state.vad.as_mut().map_or(0.0, VadFrames::run),
    }
}

/// A session's working memory for its frames.
struct FrameState {
    left: ndarray::Array2<f32>,
    right: ndarray::Array2<f32>,
    product: ndarray::Array2<f32>,
    filtered: f32,
    phase: usize,
    vad: Option<VadFrames>,
}

impl FrameState {
    fn new(seed: usize) -> Self {
        const SIDE: usize = 96;
        let cell = |row: usize, column: usize| row * SIDE + column;
        Self {
            left: ndarray::Array2::from_shape_fn((SIDE, SIDE), |(row, column)| {
                ((cell(row, column) + seed) % 7) as f32 * 0.5
            }),
            right: ndarray::Array2::from_shape_fn((SIDE, SIDE), |(row, column)| {
                ((cell(row, column) * 3 + seed) % 5) as f32 * 0.25
            }),
            product: ndarray::Array2::zeros((SIDE, SIDE)),
            filtered: 0.0,
            phase: seed,
            vad: None,
        }
    }
}

fn measure(args: &Args, sessions: usize) -> anyhow::Result<ThroughputRow> {
    let (workload, clock) = (args.workload, args.clock);
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let window = Duration::from_secs_f64(args.measure_secs);
    let lateness: Arc<Mutex<Vec<f64>>> = Arc::default();
    // Every session measures the same window, from a common start.
    let start = Instant::now() + Duration::from_millis(200);
    let (measure_from, measure_until) = (start + warmup, start + warmup + window);
    let builder = framer_pool(
        workload,
        sessions,
        agent_fn({
            let lateness = Arc::clone(&lateness);
            move |session: Session| {
                let lateness = Arc::clone(&lateness);
                async move {
                    let seed = session.id().as_u64() as usize;
                    let mut state = FrameState::new(seed);
                    state.vad = VadFrames::for_session(workload == Workload::Vad, &session, seed)?;
                    let mut mine = Vec::new();
                    let mut frames = Pacer::new(clock, &session, start, seed);
                    loop {
                        let scheduled = frames.tick().await;
                        let now = Instant::now();
                        if scheduled >= measure_until {
                            break;
                        }
                        // Frames that run inside the window count, however late, so CPU per
                        // frame stays true when the worker is overloaded.
                        if now >= measure_from && now < measure_until {
                            mine.push(now.saturating_duration_since(scheduled).as_secs_f64() * 1e3);
                        }
                        std::hint::black_box(frame_work(workload, &mut state));
                    }
                    lateness
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(mine);
                    vad_outcome(&mut state)
                }
            }
        }),
    );
    let running = Running::start(
        builder,
        &format!("throughput-{sessions}"),
        !args.no_introspection,
    )?;
    for _ in 0..sessions {
        running.launch(JobRequest::new())?;
    }
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let (cpu_before, machine_before) = (openrtc::process::cpu_time(), CpuTicks::now());
    std::thread::sleep(measure_until.saturating_duration_since(Instant::now()));
    let cpu_used = openrtc::process::cpu_time()
        .saturating_sub(cpu_before)
        .as_secs_f64();
    let machine_cpu_pct = machine_before
        .zip(CpuTicks::now())
        .and_then(|(before, after)| before.busy_pct_until(after));
    // Sessions end by themselves after the window (handing over their figures); wait for them.
    running.wait_for(
        "the sessions to end",
        Duration::from_secs(120),
        |snapshot| snapshot.worker.active_sessions == 0,
    )?;
    running.stop();
    let values = std::mem::take(&mut *lateness.lock().unwrap_or_else(PoisonError::into_inner));
    let frames = values.len();
    Ok(ThroughputRow {
        sessions,
        frames,
        lateness_ms: Spread::of(&values),
        process_cpu_pct: cpu_used / window.as_secs_f64() * 100.0,
        machine_cpu_pct,
        cpu_seconds_per_1000_frames: if frames == 0 {
            0.0
        } else {
            cpu_used / frames as f64 * 1000.0
        },
        peak_rss_bytes: openrtc::process::peak_resident_set_bytes(),
    })
}

/// The pool every variant runs: the `framer` agent, room for `sessions`, the worker threads,
/// and the VAD model loaded once when the workload needs it.
fn framer_pool<A: openrtc::Agent>(
    workload: Workload,
    sessions: usize,
    framer: A,
) -> openrtc::AgentPoolBuilder {
    let builder = AgentPool::builder()
        .agent("framer", framer)
        .max_concurrent_sessions(u32::try_from(sessions).unwrap_or(u32::MAX))
        .worker_threads(WORKER_THREADS)
        .drain_timeout(Duration::from_secs(60));
    match workload {
        Workload::Vad => builder.prewarm(|| async { VadShared::load() }),
        Workload::Cpu | Workload::Dsp => builder,
    }
}

/// A session's result: the first error its VAD stream met, if any.
fn vad_outcome(state: &mut FrameState) -> Result<(), openrtc::AgentError> {
    match state.vad.as_mut().and_then(VadFrames::take_error) {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// The stall threshold of `--fixed-frames` runs. Under valgrind a poll takes ~50x as long and
/// threads run one at a time, so polls that take microseconds at full speed would cross the
/// default 50 ms and send the probe and the watchdog down their stall paths, which a worker
/// whose polls are short never takes: counted, that work would be valgrind's, not the
/// runtime's.
const FIXED_FRAMES_SLOW_THRESHOLD: Duration = Duration::from_secs(60);

/// `--fixed-frames`: every session waits at a gate until all are launched, then runs exactly
/// `frames` frames back to back, yielding to the scheduler between them (`yield_now`, no
/// timer), and ends. The main thread waits on the sessions' outcomes (parked, no polling), so
/// what runs does not depend on how fast it runs: under valgrind too. No poll is a stall
/// (see [`FIXED_FRAMES_SLOW_THRESHOLD`]).
fn measure_fixed(args: &Args, sessions: usize, frames: usize) -> anyhow::Result<ThroughputRow> {
    let workload = args.workload;
    let (open, gate) = tokio::sync::watch::channel(false);
    let frames_run = Arc::new(AtomicUsize::new(0));
    let builder = framer_pool(
        workload,
        sessions,
        agent_fn({
            let frames_run = Arc::clone(&frames_run);
            move |session: Session| {
                let (frames_run, mut gate) = (Arc::clone(&frames_run), gate.clone());
                async move {
                    let seed = session.id().as_u64() as usize;
                    let mut state = FrameState::new(seed);
                    state.vad = VadFrames::for_session(workload == Workload::Vad, &session, seed)?;
                    // Closed only if the main thread gave up: run the frames anyway.
                    let _ = gate.wait_for(|&open| open).await;
                    for _ in 0..frames {
                        std::hint::black_box(frame_work(workload, &mut state));
                        tokio::task::yield_now().await;
                    }
                    frames_run.fetch_add(frames, Ordering::Relaxed);
                    vad_outcome(&mut state)
                }
            }
        }),
    )
    .slow_session_threshold(FIXED_FRAMES_SLOW_THRESHOLD)
    .blocked_after(2 * FIXED_FRAMES_SLOW_THRESHOLD);
    let started = Instant::now();
    let cpu_before = openrtc::process::cpu_time();
    let running = Running::start(
        builder,
        &format!("throughput-fixed-{sessions}"),
        !args.no_introspection,
    )?;
    let handles = (0..sessions)
        .map(|_| {
            running
                .handle()
                .launch(JobRequest::new())
                .map_err(|rejected| anyhow::anyhow!("launch refused: {rejected}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    open.send_replace(true);
    for handle in handles {
        let id = handle.id();
        match handle.wait_outcome(Duration::MAX) {
            Ok(openrtc::SessionOutcome::Completed) => {}
            Ok(outcome) => anyhow::bail!("session {id} ended {outcome}"),
            Err(_) => anyhow::bail!("session {id} did not end"),
        }
    }
    running.stop();
    let cpu_used = openrtc::process::cpu_time()
        .saturating_sub(cpu_before)
        .as_secs_f64();
    let frames = frames_run.load(Ordering::Relaxed);
    Ok(ThroughputRow {
        sessions,
        frames,
        lateness_ms: Spread::default(),
        process_cpu_pct: cpu_used / started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE) * 100.0,
        // The whole run's CPU, start-up and shutdown included.
        cpu_seconds_per_1000_frames: if frames == 0 {
            0.0
        } else {
            cpu_used / frames as f64 * 1000.0
        },
        peak_rss_bytes: openrtc::process::peak_resident_set_bytes(),
        // Counted instructions, not time: the machine's other work does not touch them.
        machine_cpu_pct: None,
    })
}

/// A session's frame cadence, from the clock under test.
enum Pacer {
    Frames(Frames),
    Interval(tokio::time::Interval),
}

impl Pacer {
    /// The frame clock staggers sessions itself; intervals are staggered over the period by
    /// hand (20 phases, by session), from `start`.
    fn new(clock: Clock, session: &Session, start: Instant, seed: usize) -> Self {
        match clock {
            Clock::Frames => Self::Frames(session.frames(FRAME)),
            Clock::Interval => {
                let offset = FRAME.mul_f64((seed % 20) as f64 / 20.0);
                let mut interval = tokio::time::interval_at((start + offset).into(), FRAME);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                Self::Interval(interval)
            }
        }
    }

    /// Waits for the next frame; returns when it was due.
    async fn tick(&mut self) -> Instant {
        match self {
            Self::Frames(frames) => frames.tick().await.due().into(),
            Self::Interval(interval) => interval.tick().await.into(),
        }
    }
}

impl Report for ThroughputReport {
    fn table(&self) -> String {
        let mut table = format!(
            "throughput: {:?} work per 20 ms frame, {} clock, introspection {}\n{:>9}  {:>8}  {:>20}  {:>8}  {:>14}  {:>10}\n",
            self.workload,
            self.clock.name(),
            if self.introspection { "on" } else { "off" },
            "SESSIONS",
            "FRAMES",
            "LATENESS ms med/p99",
            "CPU%",
            "CPU s/1k frames",
            "PEAK RSS"
        );
        for row in &self.rows {
            table.push_str(&format!(
                "{:>9}  {:>8}  {:>20}  {:>8.1}  {:>14.4}  {:>6.1} MiB\n",
                row.sessions,
                row.frames,
                format!("{:.2} / {:.2}", row.lateness_ms.median, row.lateness_ms.p99),
                row.process_cpu_pct,
                row.cpu_seconds_per_1000_frames,
                row.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            ));
        }
        table.push_str(&format!(
            "sustainable sessions: {} at p99 < 20 ms, {} at p99 < 100 ms\n",
            self.sustainable_at_20ms_p99, self.sustainable_at_100ms_p99
        ));
        table.push_str(&format!(
            "compute limit: {} sessions on {WORKER_THREADS} cores at {:.4} CPU s/1k frames (the largest count held at 20 ms; least of any count {:.4})\n",
            self.compute_limit_sessions,
            self.cpu_seconds_per_1000_frames_held,
            self.cpu_seconds_per_1000_frames_min
        ));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compute_limit_is_the_cores_over_the_cpu_per_session() {
        // 0.0048 CPU s per 1,000 frames at 50 frames a second: 0.00024 CPU s a second per
        // session, so 2 cores hold 8,333.
        assert_eq!(compute_limit(2, 0.0048), 8333);
        assert_eq!(compute_limit(2, 0.0), 0);
    }
}
