//! `isolation-startup`: what one process-isolated session costs to start, in time and memory.
//!
//! A pool with one idle agent launches isolated sessions one after another; for each, the
//! time from the worker asking its spawner for a process to the child's session running
//! (the child's `started` message: the binary loaded, its `main` run up to the pool builder,
//! a small pool with its runtime and probe built, the session launched), and the child's
//! resident memory then, read from `/proc/<pid>/status` by the worker. Each session is
//! cancelled and its process reaped before the next, so the figures are one child's alone.
//! A coroutine session's launch on the same pool is timed beside it, for scale.
//!
//! The children are this binary started again (with these arguments), which builds the same
//! pool and turns into the one session at `build`: nothing of the subcommand before the
//! pool's build may have an effect a second copy must not repeat.

use std::time::{Duration, Instant};

use openrtc::{AgentPool, Isolation, JobRequest, Session, agent_fn};
use serde::Serialize;

use crate::cli::Report;
use crate::stats::Spread;

/// Options of `isolation-startup`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Isolated sessions to start, one after another.
    #[arg(long, default_value_t = 30)]
    sessions: usize,
    /// Memory the idle agent holds in its session (to see the session's own share), in KiB.
    #[arg(long, default_value_t = 0)]
    hold_kib: usize,
}

/// One isolated session's start.
#[derive(Debug, Serialize)]
pub(crate) struct Start {
    /// From the spawn request to the child's session running, in ms.
    start_ms: f64,
    /// The child's resident memory when its session started, in MiB.
    rss_at_start_mib: f64,
    /// The child's resident memory once its session has run a second, in MiB.
    rss_mib: f64,
    /// Of that, what is the child's own (`RssAnon`: its heap, stacks and data; not the
    /// binary's pages, which it shares with the worker and every other child), in MiB.
    private_mib: f64,
    pid: u32,
}

/// The `isolation-startup` report.
#[derive(Debug, Serialize)]
pub(crate) struct StartupReport {
    benchmark: &'static str,
    sessions: usize,
    hold_kib: usize,
    /// The worker's resident memory before the first isolated session, in MiB.
    worker_rss_mib: f64,
    starts: Vec<Start>,
    start_ms: Spread,
    rss_at_start_mib: Spread,
    rss_mib: Spread,
    private_mib: Spread,
    /// A coroutine session's launch until its first poll, in ms, for scale.
    coroutine_start_ms: Spread,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<StartupReport> {
    let hold = args.hold_kib * 1024;
    let (first_poll, polled) = std::sync::mpsc::channel::<Instant>();
    let first_poll = std::sync::Arc::new(std::sync::Mutex::new(first_poll));
    let pool = AgentPool::builder()
        .worker_name("isolation-startup")
        .worker_threads(2)
        .agent(
            "idle",
            agent_fn(move |session: Session| {
                let first_poll = std::sync::Arc::clone(&first_poll);
                async move {
                    let held = vec![1_u8; hold];
                    // In an isolated session's child, nobody listens: the send fails, unseen.
                    {
                        if let Ok(sender) = first_poll.lock() {
                            let _ = sender.send(Instant::now());
                        }
                    }
                    session.cancelled().await;
                    drop(held);
                    Ok(())
                }
            }),
        )
        .build()?
        .run_in_background()?;
    let handle = pool.handle();
    let worker_rss_mib = mib(openrtc::process::resident_set_bytes());
    let mut starts = Vec::with_capacity(args.sessions);
    let mut coroutine_ms = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let asked = Instant::now();
        let session = handle.launch(JobRequest::new().agent("idle"))?;
        let polled_at = polled.recv_timeout(Duration::from_secs(10))?;
        coroutine_ms.push(polled_at.saturating_duration_since(asked).as_secs_f64() * 1e3);
        handle.cancel(session.id())?;
        session
            .wait_outcome(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("a coroutine session did not end"))?;

        let session = handle.launch(
            JobRequest::new()
                .agent("idle")
                .isolation(Isolation::Process),
        )?;
        let id = session.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Started (the worker reads the RSS as the child says so), then past a second and
        // one more reading of `/proc` (every 200 ms).
        let started = row_after(handle, id, 0, deadline)?;
        let settled = row_after(handle, id, 1_250, deadline)?;
        let private_mib = private_resident_bytes(settled.pid).map_or(0.0, mib);
        starts.push(Start {
            start_ms: started.start_us as f64 / 1e3,
            rss_at_start_mib: mib(started.rss_bytes),
            rss_mib: mib(settled.rss_bytes),
            private_mib,
            pid: started.pid,
        });
        handle.cancel(id)?;
        session
            .wait_outcome(Duration::from_secs(20))
            .map_err(|_| anyhow::anyhow!("isolated session {id} did not end"))?;
    }
    drop(pool);
    let start_ms: Vec<f64> = starts.iter().map(|start| start.start_ms).collect();
    let rss_mib: Vec<f64> = starts.iter().map(|start| start.rss_mib).collect();
    let rss_at_start_mib: Vec<f64> = starts.iter().map(|start| start.rss_at_start_mib).collect();
    let private_mib: Vec<f64> = starts.iter().map(|start| start.private_mib).collect();
    Ok(StartupReport {
        benchmark: "isolation_startup",
        sessions: args.sessions,
        hold_kib: args.hold_kib,
        worker_rss_mib,
        start_ms: Spread::of(&start_ms),
        rss_at_start_mib: Spread::of(&rss_at_start_mib),
        rss_mib: Spread::of(&rss_mib),
        private_mib: Spread::of(&private_mib),
        coroutine_start_ms: Spread::of(&coroutine_ms),
        starts,
    })
}

/// The row of session `id`'s process once its session has run `ran_ms` past its start.
fn row_after(
    handle: &openrtc::PoolHandle,
    id: openrtc::SessionId,
    ran_ms: u64,
    deadline: Instant,
) -> anyhow::Result<openrtc::proto::ProcessSnapshot> {
    loop {
        let row = handle
            .runtime_snapshot()
            .sessions
            .into_iter()
            .find(|row| row.id == id);
        if let Some((process, duration_ms)) =
            row.and_then(|row| row.process.map(|process| (process, row.duration_ms)))
        {
            if process.start_us > 0 && duration_ms * 1000 >= process.start_us + ran_ms * 1000 {
                return Ok(process);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "isolated session {id} did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A process's private resident memory (`RssAnon` of `/proc/<pid>/status`), in bytes.
fn private_resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report for StartupReport {
    fn table(&self) -> String {
        format!(
            "isolation-startup: {} isolated sessions started one after another (idle agent, {} KiB held)\n\
             {:<34} {:>8} {:>8} {:>8}\n\
             {:<34} {:>8.2} {:>8.2} {:>8.2}\n\
             {:<34} {:>8.2} {:>8.2} {:>8.2}\n\
             {:<34} {:>8.2} {:>8.2} {:>8.2}\n\
             {:<34} {:>8.2} {:>8.2} {:>8.2}\n\
             {:<34} {:>8.3} {:>8.3} {:>8.3}\n\
             worker RSS before: {:.1} MiB\n",
            self.sessions,
            self.hold_kib,
            "",
            "MEDIAN",
            "P99",
            "MAX",
            "start, spawn to session running (ms)",
            self.start_ms.median,
            self.start_ms.p99,
            self.start_ms.max,
            "child RSS at its start (MiB)",
            self.rss_at_start_mib.median,
            self.rss_at_start_mib.p99,
            self.rss_at_start_mib.max,
            "child RSS after 1 s (MiB)",
            self.rss_mib.median,
            self.rss_mib.p99,
            self.rss_mib.max,
            "  of which its own, RssAnon (MiB)",
            self.private_mib.median,
            self.private_mib.p99,
            self.private_mib.max,
            "coroutine launch to first poll (ms)",
            self.coroutine_start_ms.median,
            self.coroutine_start_ms.p99,
            self.coroutine_start_ms.max,
            self.worker_rss_mib,
        )
    }
}
