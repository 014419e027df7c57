//! What launching a session costs the caller: a tight loop of 10,000 launches into a running
//! pool, each session idle until the pool shuts down, over three tenants. Two setups,
//! alternated round by round: `plain` (no tenant config: every tenant gets the default
//! breaker and no cap) and `limits` (a tenant config with a cap per tenant, a heap budget,
//! a breaker and an agent cap, so every check of the admission chain runs).
//!
//! Run with `cargo bench -p openrtc --bench launch`: it prints, per setup, the median over
//! several rounds, each on a fresh pool, of the whole loop and of one launch, and the ratio
//! of the medians. Without `--bench` (as `cargo test --benches` runs it) it does one small
//! round of each, to check they still run.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use openrtc::{AgentPool, JobRequest, Session, agent_fn};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// One round of `sessions` launches on a fresh pool, with the tenant config at `limits` if
/// any; returns how long the loop took.
fn round(sessions: u32, limits: Option<&std::path::Path>) -> Duration {
    let mut builder = AgentPool::builder()
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
        .drain_timeout(Duration::ZERO);
    if let Some(path) = limits {
        builder = builder.tenant_config(path);
    }
    let pool = builder.build().expect("valid configuration");
    let running = pool.run_in_background().expect("the pool runs");
    let handle = running.handle();
    // `run_in_background` returns once the runtime runs; one launch warms it up untimed.
    std::hint::black_box(handle.launch(JobRequest::new()).expect("room").id());
    let started = Instant::now();
    for index in 1..sessions {
        let tenant = TENANTS[index as usize % TENANTS.len()];
        let launched = handle.launch(JobRequest::new().tenant(tenant));
        std::hint::black_box(launched.expect("room").id());
    }
    let elapsed = started.elapsed();
    drop(running);
    elapsed
}

/// The median, fastest and slowest of some durations.
fn spread(mut loops: Vec<Duration>) -> (Duration, Duration, Duration) {
    loops.sort();
    (loops[loops.len() / 2], loops[0], loops[loops.len() - 1])
}

fn main() {
    let full_run = std::env::args().any(|argument| argument == "--bench");
    let (sessions, rounds) = if full_run { (10_000, 15) } else { (100, 1) };
    // Caps no launch reaches (the loop must not be refused), so every check runs to the end.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("tenants.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nmax_sessions = {sessions}\nmax_heap_mb = 4096\n\
             [defaults.breaker]\ncooldown_s = 30\n[max_sessions_per_agent]\nidle = {sessions}\n"
        ),
    )
    .expect("write the tenant config");
    let mut plain = Vec::new();
    let mut limits = Vec::new();
    for _ in 0..rounds {
        plain.push(round(sessions, None));
        limits.push(round(sessions, Some(&config)));
    }
    let launches = sessions - 1;
    println!(
        "launch: {launches} launches into a running pool over 3 tenants, median of {rounds} \
         alternated rounds"
    );
    let mut medians = Vec::new();
    for (name, loops) in [("plain ", plain), ("limits", limits)] {
        let (median, fastest, slowest) = spread(loops);
        medians.push(median);
        println!(
            "  {name}  the loop {:.2} ms (fastest {:.2} ms, slowest {:.2} ms), one launch {:.0} ns",
            median.as_secs_f64() * 1e3,
            fastest.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e9 / f64::from(launches)
        );
    }
    println!(
        "  limits / plain  {:.2}",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}
