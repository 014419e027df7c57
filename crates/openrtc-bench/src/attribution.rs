//! `attribution`: one random session among N blocks its worker thread per trial; does the
//! runtime name exactly that session, while it blocks, with the right duration?

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openrtc::{AgentPool, JobRequest, PoolHandle, Session, SessionId, agent_fn};
use serde::Serialize;

use crate::cli::{BlockKind, Report, counts};
use crate::harness::Running;
use crate::stats::Spread;

/// How long one trial may take before it is given up as missed.
const TRIAL_PATIENCE: Duration = Duration::from_secs(10);

/// Options of `attribution`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Session counts to measure, comma-separated.
    #[arg(long, default_value = "50,100", value_parser = counts)]
    sessions: std::vec::Vec<usize>,
    /// How the chosen session blocks.
    #[arg(long, value_enum, default_value = "sleep")]
    block: BlockKind,
    /// How long each block lasts.
    #[arg(long, default_value_t = 300)]
    block_ms: u64,
    /// Trials per session count.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Block inside a child task of the session instead of its root task.
    #[arg(long)]
    in_child_task: bool,
    /// Add a CPU-hot (but yielding) session beside the well-behaved ones.
    #[arg(long)]
    with_hot: bool,
    /// The stall threshold.
    #[arg(long, default_value_t = 50)]
    threshold_ms: u64,
    /// Seed for the choice of sessions (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

/// One session's cue: block now, and what happened when it did; and how late its frames
/// were during the trial.
#[derive(Default)]
struct Cue {
    go: AtomicBool,
    started_ns: AtomicU64,
    blocked_ns: AtomicU64,
    /// The worst lateness (wake-up minus schedule) of its frames since the trial began, in ns;
    /// frames right after its own block do not count.
    worst_late_ns: AtomicU64,
}

/// A frame this late (one frame period) is a frame the caller hears as a gap.
const LATE_FRAME: Duration = Duration::from_millis(20);

/// The figures of one session count.
#[derive(Debug, Serialize)]
pub(crate) struct AttributionRow {
    sessions: usize,
    trials: usize,
    /// Trials where the only session seen blocking was the one that blocked.
    right: usize,
    /// Trials where another session was seen blocking.
    wrong: usize,
    /// Trials where the block was never seen while it lasted.
    missed: usize,
    /// From the start of the block to a snapshot showing its session `slow`, in ms (includes
    /// this benchmark's 1 ms polling of snapshots).
    detection_latency_ms: Spread,
    /// |recorded stall duration − measured block duration|, in ms.
    duration_error_ms: Spread,
    /// From the end of the block to the first snapshot holding its stall record, in ms
    /// (includes this benchmark's 1 ms polling of snapshots).
    record_latency_ms: Spread,
    /// Per trial, the latest frame of any other session during the trial, in ms.
    others_worst_late_ms: Spread,
    /// Per trial, how many other sessions had a frame at least 20 ms late.
    others_late_sessions: Spread,
}

/// The `attribution` report.
#[derive(Debug, Serialize)]
pub(crate) struct AttributionReport {
    benchmark: &'static str,
    block: BlockKind,
    block_ms: u64,
    threshold_ms: u64,
    in_child_task: bool,
    with_hot: bool,
    rows: Vec<AttributionRow>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<AttributionReport> {
    let mut rng = fastrand::Rng::with_seed(args.seed.unwrap_or_else(|| fastrand::u64(..)));
    let rows = args
        .sessions
        .iter()
        .map(|&sessions| measure(args, sessions, &mut rng))
        .collect::<anyhow::Result<_>>()?;
    Ok(AttributionReport {
        benchmark: "attribution",
        block: args.block,
        block_ms: args.block_ms,
        threshold_ms: args.threshold_ms,
        in_child_task: args.in_child_task,
        with_hot: args.with_hot,
        rows,
    })
}

/// Nanoseconds since `epoch`.
fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn block(kind: BlockKind, length: Duration) {
    match kind {
        BlockKind::Sleep => std::thread::sleep(length),
        BlockKind::Spin => {
            let started = Instant::now();
            while started.elapsed() < length {
                std::hint::spin_loop();
            }
        }
    }
}

/// A well-behaved session's frame loop (20 ms cadence, a little work per frame, starting
/// `phase` into the period as calls that began at different times do) that blocks its thread
/// when its cue says so.
async fn frames(
    session: Session,
    cue: Arc<Cue>,
    (kind, length): (BlockKind, Duration),
    phase: Duration,
    epoch: Instant,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, LATE_FRAME);
    let mut energy = 0.0_f32;
    // The frames due during its own block are late by its own doing.
    let mut own_block_ended = None;
    loop {
        tokio::select! {
            due = ticks.tick() => {
                let due = due.into_std();
                if own_block_ended.is_none_or(|ended| due > ended) {
                    let late = since(due);
                    cue.worst_late_ns.fetch_max(late, Ordering::AcqRel);
                }
                for sample in 0..320_u16 {
                    energy += f32::from(sample).sin().abs();
                }
                std::hint::black_box(energy);
                if cue.go.swap(false, Ordering::AcqRel) {
                    cue.started_ns.store(since(epoch), Ordering::Release);
                    let started = Instant::now();
                    block(kind, length);
                    cue.blocked_ns.store(since(started), Ordering::Release);
                    own_block_ended = Some(Instant::now());
                }
            }
            () = session.cancelled() => return,
        }
    }
}

fn measure(
    args: &Args,
    sessions: usize,
    rng: &mut fastrand::Rng,
) -> anyhow::Result<AttributionRow> {
    let epoch = Instant::now();
    let cues: Arc<Vec<Arc<Cue>>> = Arc::new((0..sessions).map(|_| Arc::default()).collect());
    let (kind, length, in_child) = (
        args.block,
        Duration::from_millis(args.block_ms),
        args.in_child_task,
    );
    let builder = AgentPool::builder()
        .agent(
            "caller",
            agent_fn({
                let cues = Arc::clone(&cues);
                move |session: Session| {
                    let index = session.metadata()["index"].as_u64().unwrap_or(0) as usize;
                    let cue = Arc::clone(&cues[index.min(cues.len() - 1)]);
                    let phase = LATE_FRAME.mul_f64(index as f64 / cues.len() as f64);
                    async move {
                        if in_child {
                            let child = session.spawn(frames(
                                session.clone(),
                                cue,
                                (kind, length),
                                phase,
                                epoch,
                            ));
                            session.cancelled().await;
                            child.abort();
                        } else {
                            frames(session, cue, (kind, length), phase, epoch).await;
                        }
                        Ok(())
                    }
                }
            }),
        )
        .agent(
            "hot",
            agent_fn(|session: Session| async move {
                let mut energy = 0.0_f32;
                while !session.is_cancelled() {
                    for sample in 0..20_000_u32 {
                        energy += (sample as f32).sqrt();
                    }
                    std::hint::black_box(energy);
                    tokio::task::yield_now().await;
                }
                Ok(())
            }),
        )
        .max_concurrent_sessions(u32::try_from(sessions + 1).unwrap_or(u32::MAX))
        .worker_threads(2)
        .slow_session_threshold(Duration::from_millis(args.threshold_ms))
        .slow_status_hold(Duration::ZERO)
        .drain_timeout(Duration::ZERO);
    let running = Running::start(builder, &format!("attribution-{sessions}"), true)?;
    let handle = running.handle().clone();
    let ids: Vec<SessionId> = (0..sessions)
        .map(|index| {
            running.launch(
                JobRequest::new()
                    .agent("caller")
                    .metadata(serde_json::json!({ "index": index })),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    if args.with_hot {
        running.launch(JobRequest::new().agent("hot"))?;
    }
    let (mut right, mut wrong, mut missed) = (0, 0, 0);
    let (mut latencies, mut errors, mut record_latencies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut others_worst, mut others_late) = (Vec::new(), Vec::new());
    for _ in 0..args.trials {
        let chosen = rng.usize(..sessions);
        for cue in cues.iter() {
            cue.worst_late_ns.store(0, Ordering::Release);
        }
        let outcome = trial(&handle, &cues[chosen], ids[chosen], epoch);
        let others = cues
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != chosen)
            .map(|(_, cue)| Duration::from_nanos(cue.worst_late_ns.load(Ordering::Acquire)));
        others_worst.push(others.clone().max().unwrap_or_default().as_secs_f64() * 1e3);
        others_late.push(others.filter(|late| *late >= LATE_FRAME).count() as f64);
        match outcome {
            Outcome::Right {
                latency_ms,
                error_ms,
                record_ms,
            } => {
                right += 1;
                latencies.push(latency_ms);
                errors.push(error_ms);
                record_latencies.push(record_ms);
            }
            Outcome::Wrong => wrong += 1,
            Outcome::Missed => missed += 1,
        }
    }
    running.stop();
    Ok(AttributionRow {
        sessions,
        trials: args.trials,
        right,
        wrong,
        missed,
        detection_latency_ms: Spread::of(&latencies),
        duration_error_ms: Spread::of(&errors),
        record_latency_ms: Spread::of(&record_latencies),
        others_worst_late_ms: Spread::of(&others_worst),
        others_late_sessions: Spread::of(&others_late),
    })
}

enum Outcome {
    Right {
        latency_ms: f64,
        error_ms: f64,
        record_ms: f64,
    },
    Wrong,
    Missed,
}

/// The last recorded stall of session `id`.
fn last_stall(
    snapshot: &openrtc::PoolSnapshot,
    id: SessionId,
) -> Option<openrtc::proto::StallSnapshot> {
    snapshot
        .sessions
        .iter()
        .find(|row| row.id == id)
        .and_then(|row| row.last_stall.clone())
}

/// Cues one session to block, watches snapshots every millisecond until the block is over and
/// recorded, and judges what they showed.
fn trial(handle: &PoolHandle, cue: &Cue, chosen: SessionId, epoch: Instant) -> Outcome {
    // The chosen session's last recorded stall before this trial: the trial's own stall is
    // the next one recorded (its details reach snapshots a watchdog scan after it ends).
    let last_before = last_stall(&handle.runtime_snapshot(), chosen);
    cue.started_ns.store(0, Ordering::Release);
    cue.blocked_ns.store(0, Ordering::Release);
    cue.go.store(true, Ordering::Release);
    let deadline = Instant::now() + TRIAL_PATIENCE;
    let mut seen_ns = None;
    let mut someone_else = false;
    while Instant::now() < deadline {
        let snapshot = handle.runtime_snapshot();
        let seen_at = since(epoch);
        for row in snapshot
            .sessions
            .iter()
            .filter(|row| row.blocking_for_ms.is_some())
        {
            if row.id == chosen {
                seen_ns.get_or_insert(seen_at);
            } else {
                someone_else = true;
            }
        }
        let blocked_ns = cue.blocked_ns.load(Ordering::Acquire);
        let recorded =
            last_stall(&snapshot, chosen).filter(|stall| Some(stall) != last_before.as_ref());
        if blocked_ns != 0 {
            if let Some(stall) = recorded {
                let started_ns = cue.started_ns.load(Ordering::Acquire);
                return match (someone_else, seen_ns) {
                    (true, _) => Outcome::Wrong,
                    (false, None) => Outcome::Missed,
                    (false, Some(seen_ns)) => Outcome::Right {
                        latency_ms: seen_ns.saturating_sub(started_ns) as f64 / 1e6,
                        error_ms: stall.duration_ns.abs_diff(blocked_ns) as f64 / 1e6,
                        record_ms: seen_at.saturating_sub(started_ns + blocked_ns) as f64 / 1e6,
                    },
                };
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Outcome::Missed
}

impl Report for AttributionReport {
    fn table(&self) -> String {
        let mut table = format!(
            "attribution: one {:?} block of {} ms per trial{}{}, threshold {} ms\n{:>9}  {:>6}  {:>5}  {:>5}  {:>6}  {:>22}  {:>22}  {:>17}  {:>22}  {:>18}\n",
            self.block,
            self.block_ms,
            if self.in_child_task {
                ", in a child task"
            } else {
                ""
            },
            if self.with_hot {
                ", beside a hot session"
            } else {
                ""
            },
            self.threshold_ms,
            "SESSIONS",
            "TRIALS",
            "RIGHT",
            "WRONG",
            "MISSED",
            "DETECTION ms med/max",
            "DURATION ERR ms med/max",
            "RECORD ms med/max",
            "OTHERS' LATE ms med/max",
            "LATE OTHERS med/max"
        );
        for row in &self.rows {
            table.push_str(&format!(
                "{:>9}  {:>6}  {:>5}  {:>5}  {:>6}  {:>22}  {:>22}  {:>17}  {:>22}  {:>18}\n",
                row.sessions,
                row.trials,
                row.right,
                row.wrong,
                row.missed,
                row.detection_latency_ms.median_max(1),
                row.duration_error_ms.median_max(2),
                row.record_latency_ms.median_max(1),
                row.others_worst_late_ms.median_max(1),
                row.others_late_sessions.median_max(0),
            ));
        }
        table
    }
}
