//! Built-in callers: keep about N sessions live over a mix of agents and three tenants.
//!
//! With a media listener (the default), each caller is a phone call: a WebSocket client
//! that dials the worker's media endpoint over loopback as Twilio would (`connected`,
//! `start` with `agent`, `tenant`, `life_ms` and `caller` as custom parameters, a 440 Hz tone
//! as μ-law every 20 ms, every `mark` echoed back, `stop` when its life is over: the frames
//! of `openrtc::media::caller`, as `openrtc stress` sends them), so `top`
//! shows real calls. With `--callers-launch`, or without a media listener, sessions are
//! launched from code with the same metadata.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use openrtc::media::caller::{self as frames, StreamIds};
use openrtc::media::protocol::{Inbound, parse_inbound};
use openrtc::{JobRequest, PoolHandle, Rejected};
use tokio_tungstenite::tungstenite::Message;

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
    /// Whether calls dial the media listener (else sessions are launched from code).
    pub(crate) over_media: bool,
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
                move || {
                    if config.over_media {
                        dial(&handle, &config, &stop);
                    } else {
                        launch(&handle, &config, &stop);
                    }
                }
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

/// One caller's choices: its agent, tenant, life and number.
struct Caller {
    agent: String,
    tenant: &'static str,
    life_ms: u64,
    number: String,
}

fn next_caller(rng: &mut fastrand::Rng, config: &CallerConfig) -> Caller {
    let min_ms = u64::try_from(config.min_life.as_millis()).unwrap_or(u64::MAX);
    let max_ms = u64::try_from(config.max_life.as_millis()).unwrap_or(u64::MAX);
    let tenant = TENANTS[rng.usize(..TENANTS.len())];
    // With an outage configured, the first tenant's calls all go to its own agent, `flaky`:
    // failing while its upstream is down, answering after, so the tenant's breaker probes
    // meet its agent and not the mix's misbehaving ones.
    let tenants_own_agent = tenant == TENANTS[0] && config.outage_ends.is_some();
    let agent = match &config.only {
        Some(only) => only.clone(),
        None if tenants_own_agent => "flaky".to_owned(),
        None => pick(rng).to_owned(),
    };
    Caller {
        agent,
        tenant,
        life_ms: rng.u64(min_ms..=max_ms),
        number: format!("+1555{:07}", rng.u32(..10_000_000)),
    }
}

/// Sessions launched from code (no media listener).
fn launch(handle: &PoolHandle, config: &CallerConfig, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    while !stop.load(Ordering::Acquire) {
        let active = handle.runtime_snapshot().worker.active_sessions;
        for _ in active..config.target {
            let caller = next_caller(&mut rng, config);
            let request = JobRequest::new()
                .agent(caller.agent)
                .tenant(caller.tenant)
                .metadata(serde_json::json!({
                    "life_ms": caller.life_ms,
                    "caller": caller.number,
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

/// Phone calls over the media listener, from a runtime of the callers' own thread.
fn dial(handle: &PoolHandle, config: &CallerConfig, stop: &AtomicBool) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the callers' runtime");
            return;
        }
    };
    let live = Arc::new(AtomicU32::new(0));
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut serial = 0_u64;
    runtime.block_on(async {
        while !stop.load(Ordering::Acquire) {
            let snapshot = handle.runtime_snapshot();
            // A draining worker takes no new call, but the live ones go on (a caller does
            // not hang up because the worker drains) until they end or the worker stops.
            if snapshot.worker.draining {
                tokio::time::sleep(TOP_UP_INTERVAL).await;
                continue;
            }
            if let Some(addr) = &snapshot.worker.media_addr {
                let url = format!("ws://{addr}{}", openrtc::media::DEFAULT_PATH);
                for _ in live.load(Ordering::Acquire)..config.target {
                    serial += 1;
                    let caller = next_caller(&mut rng, config);
                    live.fetch_add(1, Ordering::AcqRel);
                    let live = Arc::clone(&live);
                    let url = url.clone();
                    tokio::spawn(async move {
                        if let Err(error) = call(&url, serial, caller).await {
                            tracing::debug!(%error, "demo call ended early");
                        }
                        live.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            }
            tokio::time::sleep(TOP_UP_INTERVAL).await;
        }
    });
    // In-flight calls are dropped with the runtime: their sockets close, their sessions end.
    runtime.shutdown_background();
}

/// One phone call: dial, `start`, a tone every 20 ms for the caller's life with every mark
/// echoed back, then `stop`. Ends early when the worker closes the call.
async fn call(url: &str, serial: u64, caller: Caller) -> Result<(), Box<dyn std::error::Error>> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let ids = StreamIds::new("demo", serial);
    let life_ms = caller.life_ms.to_string();
    let parameters = [
        ("agent", caller.agent.as_str()),
        ("tenant", caller.tenant),
        ("life_ms", life_ms.as_str()),
        ("caller", caller.number.as_str()),
    ];
    for text in [frames::connected(), frames::start(&ids, &parameters)] {
        socket.send(Message::text(text)).await?;
    }
    let tone = frames::tone_payloads();
    let chunks = caller.life_ms / 20;
    let mut sequence = 1_u64;
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut chunk = 0_u64;
    while chunk < chunks {
        tokio::select! {
            _ = ticks.tick() => {
                chunk += 1;
                sequence += 1;
                let payload = &tone[(chunk as usize - 1) % tone.len()];
                socket.send(Message::text(frames::media(&ids, sequence, chunk, payload))).await?;
            }
            received = socket.next() => match received {
                Some(Ok(Message::Text(text))) => {
                    // Played at once: echo each mark back, as the provider does.
                    if let Ok(Inbound::Mark { name }) = parse_inbound(&text) {
                        sequence += 1;
                        socket.send(Message::text(frames::mark(&ids, sequence, &name))).await?;
                    }
                }
                // The worker ended the call (the session ended, or it was refused).
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            },
        }
    }
    sequence += 1;
    socket
        .send(Message::text(frames::stop(&ids, sequence)))
        .await?;
    // The worker closes after `stop`: wait for it (briefly).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    Ok(())
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
