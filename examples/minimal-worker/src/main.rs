//! `minimal-worker`: the smallest openrtc worker, quoted whole by the README ("Using the
//! library"); a test checks that the quote and this file never drift apart.

// README: begin
use std::process::ExitCode;
use std::time::Duration;

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

/// Exact per-session memory and per-session memory caps: every allocation is charged to
/// the session that made it. Without it, memory per session is an equal share of RSS.
#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // The runtime logs through `tracing` ([slow-session], [memory-limit], [session-end],
    // [drain]): this prints them on stderr (RUST_LOG overrides the level) and labels every
    // record with its session for the JSON log file (OPENRTC_LOG_FILE, or `.log_file`).
    openrtc::telemetry::init()?;

    let pool = AgentPool::builder()
        .agent(
            "echo",
            agent_fn(|session: Session| async move {
                // The pool's frame clock: 20 ms frames, however many sessions tick.
                let mut frames = session.frames(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        _ = frames.tick() => { /* one 20 ms audio frame */ }
                        () = session.cancelled() => return Ok(()),
                    }
                }
            }),
        )
        .worker_name("edge-1")
        .max_concurrent_sessions(500)
        .session_memory_limit(64 * 1024 * 1024)
        .drain_timeout(Duration::from_secs(20))
        .cancel_grace(Duration::from_secs(5))
        .build()?;
    let handle = pool.handle(); // cloneable, usable from any thread
    handle.launch(JobRequest::new().agent("echo").tenant("acme"))?;
    // Runs until SIGINT or SIGTERM, then drains. A worker over its memory limit returns an
    // error whose exit code (75) tells its supervisor to restart it.
    Ok(match pool.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("minimal-worker: {error}");
            ExitCode::from(error.exit_code())
        }
    })
}
// README: end
