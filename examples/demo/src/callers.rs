//! Built-in callers: keep about N sessions live over a mix of agents and three tenants.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use openrtc::{JobRequest, PoolHandle, Rejected};

/// How often the callers top the pool up.
const TOP_UP_INTERVAL: Duration = Duration::from_millis(200);

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// The agent mix: mostly well-behaved `echo`.
const MIX: [(&str, u32); 5] = [
    ("echo", 66),
    ("hot", 10),
    ("blocker", 10),
    ("crashy", 10),
    ("leaky", 4),
];

pub(crate) struct CallerConfig {
    pub(crate) target: u32,
    pub(crate) only: Option<String>,
    pub(crate) min_life: Duration,
    pub(crate) max_life: Duration,
    pub(crate) seed: u64,
    /// Until then, the first tenant's (`acme`'s) calls go to its `flaky` agent, whose
    /// upstream is down: enough failures to open its circuit breaker.
    pub(crate) outage_ends: Option<std::time::Instant>,
}

pub(crate) struct Callers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Callers {
    pub(crate) fn start(handle: PoolHandle, config: CallerConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("demo-callers".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || call(&handle, &config, &stop)
            })
            .map_err(|error| tracing::error!(%error, "cannot start the callers"))
            .ok();
        Self { stop, thread }
    }

    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn call(handle: &PoolHandle, config: &CallerConfig, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let min_ms = u64::try_from(config.min_life.as_millis()).unwrap_or(u64::MAX);
    let max_ms = u64::try_from(config.max_life.as_millis()).unwrap_or(u64::MAX);
    while !stop.load(Ordering::Acquire) {
        let active = handle.runtime_snapshot().worker.active_sessions;
        for _ in active..config.target {
            let tenant = TENANTS[rng.usize(..TENANTS.len())];
            let in_outage = tenant == TENANTS[0]
                && config
                    .outage_ends
                    .is_some_and(|ends| std::time::Instant::now() < ends);
            let agent = match &config.only {
                Some(only) => only.clone(),
                None if in_outage => "flaky".to_owned(),
                None => pick(&mut rng).to_owned(),
            };
            let request =
                JobRequest::new()
                    .agent(agent)
                    .tenant(tenant)
                    .metadata(serde_json::json!({
                        "life_ms": rng.u64(min_ms..=max_ms),
                        "caller": format!("+1555{:07}", rng.u32(..10_000_000)),
                    }));
            match handle.launch(request) {
                Ok(_) => {}
                Err(Rejected::Draining | Rejected::Stopped) => return,
                // The worker is full: try again at the next top-up.
                Err(rejected @ Rejected::WorkerFull { .. }) => {
                    tracing::debug!(%rejected, "demo caller refused");
                    break;
                }
                // A tenant's or agent's limit: the next caller may be of another one.
                Err(rejected) => tracing::debug!(%rejected, "demo caller refused"),
            }
        }
        std::thread::park_timeout(TOP_UP_INTERVAL);
    }
}

fn pick(rng: &mut fastrand::Rng) -> &'static str {
    let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.u32(..total);
    for (agent, weight) in MIX {
        if roll < weight {
            return agent;
        }
        roll -= weight;
    }
    MIX[0].0
}
