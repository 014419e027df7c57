//! `livekit-dispatch`: what a LiveKit job costs this worker, against the real server.
//!
//! Each round starts a `livekit-server` (the binary `$OPENRTC_LIVEKIT_SERVER` names, which
//! `scripts/livekit-server` builds) and a pool taking its jobs (automatic dispatch: one job
//! per new room), then creates `--jobs` rooms at `--rate` a second through the server's Twirp
//! API. Per job: the time from the
//! dispatch request to the agent's first poll (the server's own scheduling included: it
//! offers a job about 0.2 s after its dispatch), and over the round the CPU time of the
//! worker's `openrtc-livekit` thread (offers, assignments, statuses: the control plane the
//! runtime adds per job) and the worker's resident memory per running job. Rounds run one
//! after another, each with a fresh server and pool; the headline is the median of the
//! rounds' medians, with their range. No room audio (not there yet): each agent waits for its
//! cancel.

use std::time::{Duration, Instant};

use openrtc::source::livekit::LiveKitOptions;
use openrtc::{AgentPool, Session, agent_fn};
use serde::Serialize;

use crate::cli::Report;
use crate::stats::Spread;

#[path = "../../openrtc/tests/it/livekit_server/fixture.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the runtime's tests use the rest of the fixture"
)]
pub(crate) mod fixture;

/// Options of `livekit-dispatch`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Rooms dispatched per round, one after another.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Rounds, each with a fresh server and worker.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Rooms created per second (a burst of hundreds makes the server itself drop job
    /// requests past its own 3 s deadline).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
}

/// One round's figures.
#[derive(Debug, Serialize)]
pub(crate) struct Round {
    /// Dispatch request to the agent's first poll, per job, in ms.
    dispatch_to_session_ms: Spread,
    /// CPU time of the worker's LiveKit thread per job, in microseconds.
    control_cpu_us_per_job: f64,
    /// The worker's resident memory growth per running job, in KiB.
    rss_kib_per_job: f64,
    /// Jobs whose session started (a job the server dropped never comes: see
    /// `offers_accepted` and `offers_refused`).
    jobs_started: usize,
    /// Offers the worker accepted and refused, from its snapshot.
    offers_accepted: u64,
    offers_refused: u64,
}

/// The `livekit-dispatch` report.
#[derive(Debug, Serialize)]
pub(crate) struct DispatchReport {
    benchmark: &'static str,
    jobs: usize,
    /// Rooms created per second.
    rate: f64,
    rounds: Vec<Round>,
    /// Over the rounds: their median dispatch-to-session latencies.
    dispatch_to_session_median_ms: Spread,
    /// Over the rounds: their p99 latencies.
    dispatch_to_session_p99_ms: Spread,
    control_cpu_us_per_job: Spread,
    rss_kib_per_job: Spread,
    /// The load average (1 minute) at the start and at the end.
    load_average: (f64, f64),
}

pub(crate) fn run(args: &Args) -> anyhow::Result<DispatchReport> {
    anyhow::ensure!(
        args.jobs > 0 && args.rounds > 0,
        "--jobs and --rounds must be positive"
    );
    let load_before = load_average();
    let mut rounds = Vec::with_capacity(args.rounds);
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    for _ in 0..args.rounds {
        rounds.push(round(args.jobs, args.rate)?);
    }
    let over =
        |figure: fn(&Round) -> f64| Spread::of(&rounds.iter().map(figure).collect::<Vec<_>>());
    Ok(DispatchReport {
        benchmark: "livekit_dispatch",
        jobs: args.jobs,
        rate: args.rate,
        dispatch_to_session_median_ms: over(|round| round.dispatch_to_session_ms.median),
        dispatch_to_session_p99_ms: over(|round| round.dispatch_to_session_ms.p99),
        control_cpu_us_per_job: over(|round| round.control_cpu_us_per_job),
        rss_kib_per_job: over(|round| round.rss_kib_per_job),
        load_average: (load_before, load_average()),
        rounds,
    })
}

fn round(jobs: usize, rate: f64) -> anyhow::Result<Round> {
    let server = fixture::LiveKitServer::start();
    let (first_poll, polled) = std::sync::mpsc::channel::<(String, Instant)>();
    let first_poll = std::sync::Arc::new(std::sync::Mutex::new(first_poll));
    let pool = AgentPool::builder()
        .worker_name("livekit-dispatch")
        .worker_threads(2)
        .max_concurrent_sessions(u32::try_from(jobs + 8)?)
        .agent(
            "idle",
            agent_fn(move |session: Session| {
                let first_poll = std::sync::Arc::clone(&first_poll);
                async move {
                    let room = session
                        .livekit()
                        .map(|job| job.room_name.clone())
                        .unwrap_or_default();
                    if let Ok(sender) = first_poll.lock() {
                        let _ = sender.send((room, Instant::now()));
                    }
                    session.cancelled().await;
                    Ok(())
                }
            }),
        )
        .livekit(
            // Automatic dispatch: every new room comes to it, one job per room.
            LiveKitOptions::new(server.url(), server.api_key(), server.api_secret()),
        )
        .build()?
        .run_in_background()?;
    let handle = pool.handle();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handle
        .runtime_snapshot()
        .worker
        .livekit
        .is_some_and(|livekit| livekit.connected)
    {
        anyhow::ensure!(Instant::now() < deadline, "the worker did not register");
        std::thread::sleep(Duration::from_millis(5));
    }
    let thread_cpu_before = livekit_thread_cpu()?;
    let rss_before = openrtc::process::resident_set_bytes();
    let mut asked = std::collections::HashMap::with_capacity(jobs);
    let started = Instant::now();
    for index in 0..jobs {
        let due = started + Duration::from_secs_f64(index as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let room = format!("bench-{index}");
        asked.insert(room.clone(), Instant::now());
        server.create_room(&room);
    }
    // Every job, or none more for 10 s (the server dropped the rest).
    let mut latencies = Vec::with_capacity(jobs);
    while latencies.len() < jobs {
        let Ok((room, at)) = polled.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        if let Some(asked_at) = asked.get(&room) {
            latencies.push(at.saturating_duration_since(*asked_at).as_secs_f64() * 1e3);
        }
    }
    anyhow::ensure!(!latencies.is_empty(), "no job started");
    // The last status reports of the round (every job running) are part of its cost.
    std::thread::sleep(Duration::from_millis(200));
    let control_cpu = livekit_thread_cpu()?.saturating_sub(thread_cpu_before);
    let rss_growth = openrtc::process::resident_set_bytes().saturating_sub(rss_before);
    let header = handle.runtime_snapshot().worker.livekit.unwrap_or_default();
    drop(pool);
    drop(server);
    Ok(Round {
        control_cpu_us_per_job: control_cpu.as_secs_f64() * 1e6 / latencies.len() as f64,
        rss_kib_per_job: rss_growth as f64 / 1024.0 / latencies.len() as f64,
        jobs_started: latencies.len(),
        offers_accepted: header.offers_accepted_count,
        offers_refused: header.offers_refused_count,
        dispatch_to_session_ms: Spread::of(&latencies),
    })
}

/// CPU time of this process's `openrtc-livekit` thread, in nanoseconds: the first field of
/// its `schedstat` (time on a CPU, as the scheduler counts it; `stat`'s ticks are too coarse
/// for a few hundred microseconds per job).
fn livekit_thread_cpu() -> anyhow::Result<Duration> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.trim_end() != "openrtc-livekit" {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat"))?;
        let ns: u64 = schedstat
            .split_whitespace()
            .next()
            .ok_or_else(|| anyhow::anyhow!("an empty {}", path.display()))?
            .parse()?;
        return Ok(Duration::from_nanos(ns));
    }
    anyhow::bail!("no openrtc-livekit thread in this process")
}

pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

impl Report for DispatchReport {
    fn table(&self) -> String {
        let mut text = format!(
            "livekit-dispatch: {} rooms created at {}/s, one job each, for one worker, {} rounds \
             (fresh server and worker each; jobs started {:?}); load average {:.2} -> {:.2}\n\
             {:<46} {:>9} {:>9} {:>9}\n",
            self.jobs,
            self.rate,
            self.rounds.len(),
            self.rounds
                .iter()
                .map(|round| round.jobs_started)
                .collect::<Vec<_>>(),
            self.load_average.0,
            self.load_average.1,
            "over the rounds",
            "MEDIAN",
            "MIN",
            "MAX",
        );
        let min = |figure: fn(&Round) -> f64| {
            self.rounds.iter().map(figure).fold(f64::INFINITY, f64::min)
        };
        for (name, spread, figure) in [
            (
                "dispatch to session, median (ms)",
                &self.dispatch_to_session_median_ms,
                (|round: &Round| round.dispatch_to_session_ms.median) as fn(&Round) -> f64,
            ),
            (
                "dispatch to session, p99 (ms)",
                &self.dispatch_to_session_p99_ms,
                |round: &Round| round.dispatch_to_session_ms.p99,
            ),
            (
                "LiveKit thread CPU per job (us)",
                &self.control_cpu_us_per_job,
                |round: &Round| round.control_cpu_us_per_job,
            ),
            (
                "worker RSS per running job (KiB)",
                &self.rss_kib_per_job,
                |round: &Round| round.rss_kib_per_job,
            ),
        ] {
            text.push_str(&format!(
                "{name:<46} {:>9.1} {:>9.1} {:>9.1}\n",
                spread.median,
                min(figure),
                spread.max
            ));
        }
        text
    }
}
