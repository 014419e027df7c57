//! What launching a session costs the caller: a tight loop of 10,000 launches into a running
//! pool, each session idle until the pool shuts down.
//!
//! Run with `cargo bench -p openrtc --bench launch`: it prints the median over several rounds,
//! each on a fresh pool, of the whole loop and of one launch. Without `--bench` (as
//! `cargo test --benches` runs it) it does one small round, to check it still runs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

/// One round of `sessions` launches on a fresh pool; returns how long the loop took.
fn round(sessions: u32) -> Duration {
    let pool = AgentPool::builder()
        .agent(
            "idle",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok(())
            }),
        )
        .max_concurrent_sessions(sessions)
        .worker_threads(2)
        .enable_introspection(false)
        .drain_timeout(Duration::ZERO)
        .build()
        .expect("valid configuration");
    let running = pool.run_in_background().expect("the pool runs");
    let handle = running.handle();
    // `run_in_background` returns once the runtime runs; one launch warms it up untimed.
    std::hint::black_box(handle.launch(JobRequest::new()).expect("room").id());
    let started = Instant::now();
    for _ in 1..sessions {
        let launched = handle.launch(JobRequest::new().tenant("acme"));
        std::hint::black_box(launched.expect("room").id());
    }
    let elapsed = started.elapsed();
    drop(running);
    elapsed
}

fn main() {
    let full_run = std::env::args().any(|argument| argument == "--bench");
    let (sessions, rounds) = if full_run { (10_000, 15) } else { (100, 1) };
    let mut loops: Vec<Duration> = (0..rounds).map(|_| round(sessions)).collect();
    loops.sort();
    let median = loops[loops.len() / 2];
    let launches = sessions - 1;
    println!("launch: {launches} launches into a running pool, median of {rounds} rounds");
    println!(
        "  the loop     {:.2} ms (fastest {:.2} ms, slowest {:.2} ms)",
        median.as_secs_f64() * 1e3,
        loops[0].as_secs_f64() * 1e3,
        loops[loops.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "  one launch   {:.0} ns",
        median.as_secs_f64() * 1e9 / f64::from(launches)
    );
}
