//! The demo's command line and its `run`: build the pool, start the callers, serve.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use openrtc::AgentPool;

use crate::agents;
use crate::callers::{CallerConfig, Callers};

/// A demo openrtc worker: agents that behave like the runbooks' cases (a well-behaved `echo`,
/// a CPU-`hot` one, a `blocker` that blocks its worker thread, a `crashy` one), and built-in
/// callers that keep sessions coming so `openrtc top` has something to show.
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Args {
    /// How many calls the callers keep live (0: none). They dial the media WebSocket as
    /// phone calls (a tone every 20 ms, marks echoed), unless `--callers-launch`.
    #[arg(long, default_value_t = 24)]
    pub(crate) callers: u32,
    /// Launch the callers' sessions from code instead of dialling the media WebSocket (no
    /// audio: lighter). Always so without a media listener (`--media-addr off`).
    #[arg(long)]
    pub(crate) callers_launch: bool,
    /// Launch only this agent (echo, hot, blocker, crashy, leaky, flaky) instead of the usual mix.
    #[arg(long, value_parser = ["echo", "hot", "blocker", "crashy", "leaky", "flaky"])]
    pub(crate) only: Option<String>,
    /// The shortest life of a session, in seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) min_secs: u64,
    /// The longest life of a session, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) max_secs: u64,
    /// The worker's name (it names the socket too).
    #[arg(long, default_value = "demo")]
    pub(crate) worker_name: String,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// The hard cap on concurrent sessions.
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_sessions: u32,
    /// Serve the introspection socket here instead of the per-user default.
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
    /// Each session's live-heap cap in MiB; a session over it is killed (the `leaky` agent
    /// reaches the default in about four seconds).
    #[arg(long, default_value_t = 64)]
    pub(crate) session_memory_mb: u64,
    /// Warn when the worker's RSS crosses this many MiB.
    #[arg(long)]
    pub(crate) memory_warn_mb: Option<u64>,
    /// Drain and exit (code 75) when the worker's RSS crosses this many MiB.
    #[arg(long)]
    pub(crate) memory_limit_mb: Option<u64>,
    /// Drain and exit (code 70) when this many sessions in a row fail (errors, panics, kills
    /// for their memory cap).
    #[arg(long)]
    pub(crate) consecutive_failure_limit: Option<u32>,
    /// How long a drain (on SIGINT or SIGTERM) waits for sessions before cancelling them.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_timeout_secs: u64,
    /// The tenant config file (caps, breakers, heap budgets per tenant), reloaded when it
    /// changes or on SIGHUP. `examples/demo/tenants.toml` is the runbooks' one.
    #[arg(long, value_name = "PATH")]
    pub(crate) tenant_config: Option<PathBuf>,
    /// For this many seconds from the start, the upstream of tenant `acme`'s agent `flaky`
    /// is down: its calls (all of acme's, with an outage) fail fast, its breaker opens within
    /// seconds, and it recovers after.
    /// Default: 30 with a tenant config, else 0.
    #[arg(long, value_name = "SECS")]
    pub(crate) outage_secs: Option<u64>,
    /// The JSON-lines log file, every record labelled with its session (read it with
    /// `openrtc logs FILE --session ID`); an empty value or `off` writes none.
    #[arg(long, value_name = "PATH", default_value = "openrtc-demo.jsonl",
          value_parser = log_file_path)]
    pub(crate) log_file: PathBuf,
    /// Append the lifecycle event stream (sessions started, finished, refused, stalled;
    /// breakers, memory limits, the drain, config reloads; a snapshot every second) to this
    /// JSONL file. Default: off.
    #[arg(long, value_name = "PATH")]
    pub(crate) event_stream: Option<PathBuf>,
    /// Serve `GET /health`, `/ready` and `/metrics` over HTTP at this address (port 0: any
    /// free port; the bound address is logged). An empty value or `off` serves none.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:14159")]
    pub(crate) http_addr: String,
    /// Take phone calls over a Twilio-compatible media WebSocket at this address, path
    /// `/media` (port 0: any free port; the bound address is logged). An empty value or
    /// `off` takes none.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) media_addr: String,
    /// How long each blocking call of the `blocker` agent holds its worker thread, in ms
    /// (over 5000, past `blocked_after`, the worker reports the thread blocked: critical).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub(crate) block_ms: u64,
    /// The stall threshold, in ms: a poll at least this long is a stall (default: the
    /// runtime's).
    #[arg(long, value_name = "MS")]
    pub(crate) slow_ms: Option<u64>,
    /// Seed for the callers' random choices (default: random).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Run a real Silero VAD in every `echo` session (one model for the worker, a stream per
    /// session) and log `speech started` and `speech ended` with the session's labels.
    #[arg(long)]
    pub(crate) vad: bool,
    /// Move a tenant whose sessions keep stalling their thread, crashing or hitting their
    /// memory cap to process isolation (3 offences in 30 s; back after 5 minutes without
    /// one): its new sessions, calls included, each run in a process of their own.
    #[arg(long)]
    pub(crate) auto_isolation: bool,
    /// Also take jobs from a LiveKit server: the one `LIVEKIT_URL`, `LIVEKIT_API_KEY` and
    /// `LIVEKIT_API_SECRET` name (and `LIVEKIT_AGENT_NAME`, for explicit dispatch only). A
    /// job's dispatch metadata routes it as a call's parameters do (`agent`, `tenant`), else
    /// the room's name (`echo-…`).
    #[arg(long)]
    pub(crate) livekit: bool,
}

/// `--log-file`: a path, or the empty path (none) for an empty value or `off`.
fn log_file_path(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(if value == "off" {
        PathBuf::new()
    } else {
        PathBuf::from(value)
    })
}

/// `--http-addr` or `--media-addr` (`flag`): an address, or none for an empty value or
/// `off`.
fn listen_addr(flag: &str, value: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if value.is_empty() || value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).with_context(|| {
        format!("invalid {flag} {value:?}: use IP:PORT (127.0.0.1:8080), '' or off")
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.min_secs <= args.max_secs,
        "--min-secs ({}) must not exceed --max-secs ({})",
        args.min_secs,
        args.max_secs
    );
    let outage_secs = args
        .outage_secs
        .unwrap_or(if args.tenant_config.is_some() { 30 } else { 0 });
    let outage_ends =
        (outage_secs > 0).then(|| std::time::Instant::now() + Duration::from_secs(outage_secs));
    // Loaded once here (tens of ms), before any session; every echo session shares it.
    let silero = args
        .vad
        .then(openrtc::vad::SileroModel::load)
        .transpose()
        .context("loading the Silero VAD model")?;
    let mut builder = AgentPool::builder()
        .agent("echo", agents::Echo { silero })
        .agent("hot", agents::Hot)
        .agent(
            "blocker",
            agents::Blocker {
                block: Duration::from_millis(args.block_ms),
            },
        )
        .agent("crashy", agents::Crashy)
        .agent("leaky", agents::Leaky)
        .agent(
            "flaky",
            agents::Flaky {
                outage_ends: outage_ends.unwrap_or_else(std::time::Instant::now),
            },
        )
        // Every session shares one model, loaded before the first session starts.
        .prewarm(|| async { Ok::<_, openrtc::AgentError>(agents::VadModel::load()) })
        .session_memory_limit(args.session_memory_mb.saturating_mul(1024 * 1024))
        .worker_name(&args.worker_name)
        .max_concurrent_sessions(args.max_sessions)
        .drain_timeout(Duration::from_secs(args.drain_timeout_secs))
        .cancel_grace(Duration::from_secs(2));
    if args.auto_isolation {
        builder = builder.auto_isolation(Some(openrtc::AutoIsolation::default()));
    }
    if args.livekit {
        let options = openrtc::source::livekit::LiveKitOptions::from_env()
            .context("--livekit takes the LiveKit server from the environment")?;
        builder = builder.livekit(options);
    }
    if let Some(slow_ms) = args.slow_ms {
        builder = builder.slow_session_threshold(Duration::from_millis(slow_ms));
    }
    if let Some(threads) = args.threads {
        builder = builder.worker_threads(threads);
    }
    if let Some(megabytes) = args.memory_warn_mb {
        builder = builder.memory_warn_mb(megabytes);
    }
    if let Some(megabytes) = args.memory_limit_mb {
        builder = builder.memory_limit_mb(megabytes);
    }
    if let Some(count) = args.consecutive_failure_limit {
        builder = builder.consecutive_failure_limit(count);
    }
    if let Some(socket) = &args.socket {
        builder = builder.socket_path(socket);
    }
    if let Some(path) = &args.tenant_config {
        builder = builder.tenant_config(path);
    }
    if !args.log_file.as_os_str().is_empty() {
        builder = builder.log_file(&args.log_file);
    }
    if let Some(path) = &args.event_stream {
        builder = builder.event_stream(path, Duration::from_secs(1));
    }
    if let Some(addr) = listen_addr("--http-addr", &args.http_addr)? {
        builder = builder.http_addr(addr);
    }
    let media_addr = listen_addr("--media-addr", &args.media_addr)?;
    if let Some(addr) = media_addr {
        builder = builder.media_listener(addr);
    }
    let pool = builder.build().context("invalid demo configuration")?;
    if let Some(socket) = pool.socket_path() {
        println!(
            "openrtc-demo: worker {} (pid {}) keeps {} callers live ({})",
            args.worker_name,
            std::process::id(),
            args.callers,
            match media_addr {
                Some(addr) if !args.callers_launch && addr.port() != 0 => {
                    format!("phone calls to ws://{addr}/media")
                }
                Some(_) if !args.callers_launch => "phone calls to the media WebSocket".to_owned(),
                _ => "sessions launched from code".to_owned(),
            }
        );
        println!("socket: {}", socket.display());
        if !args.log_file.as_os_str().is_empty() {
            let log_file = std::path::absolute(&args.log_file).unwrap_or(args.log_file.clone());
            println!(
                "log: {} (cargo run -p openrtc-cli -- logs {} --session ID)",
                log_file.display(),
                log_file.display()
            );
        }
        println!(
            "inspect: cargo run -p openrtc-cli -- top --socket {}",
            socket.display()
        );
    }
    let callers = Callers::start(
        pool.handle(),
        CallerConfig {
            target: args.callers,
            only: args.only,
            min_life: Duration::from_secs(args.min_secs),
            max_life: Duration::from_secs(args.max_secs),
            seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
            outage_ends,
            over_media: media_addr.is_some() && !args.callers_launch,
        },
    );
    let result = pool.run();
    callers.stop();
    Ok(result?)
}
