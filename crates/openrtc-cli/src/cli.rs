//! The command-line grammar of `openrtc`: every subcommand, option and their help text.
//!
//! The doc comments on these types are the `--help` output, so they are written for operators.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use openrtc_proto::SessionState;

use crate::logs::record::Level;
use crate::logs::since::{Since, parse_since};

/// The exit statuses, shown at the end of `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success (also when the reader of the output goes away, as in `| head`)
  1  no running openrtc worker was found (for the live view: when it starts)
  2  usage error, a worker answered with an error or could not be understood, or the live
     view has no terminal to draw on";

/// The exit statuses of `openrtc logs`, shown at the end of its `--help`.
pub const LOGS_EXIT_STATUS_HELP: &str = "\
Exit status:
  0  at least one record matched (also when the reader of the output goes away, as in
     `| head`, and when --follow is stopped by SIGINT or SIGTERM after a match)
  1  no record matched
  2  usage error, no FILE could be read, or no log file was found through the workers

Each record is printed as one line: its UTC date and time, level, session (`-` for the
worker's own), agent, message, then tenant, event and the other fields as key=value; --json
prints the lines as they are in the file. Bad lines (not JSON, not an object, no ts, level or
message) are skipped; their number is printed on standard error at the end. Files are read in
the order given: pass rotated files oldest first, e.g.
`openrtc logs worker.jsonl.2.gz worker.jsonl.1 worker.jsonl`.";

/// The slowest refresh rate `openrtc top` accepts, in refreshes per second.
pub const MIN_REFRESH_RATE_HZ: f64 = 0.5;

/// The fastest refresh rate `openrtc top` accepts, in refreshes per second.
pub const MAX_REFRESH_RATE_HZ: f64 = 10.0;

/// Inspect the openrtc workers running on this machine as the current user.
#[derive(Debug, Parser)]
#[command(name = "openrtc", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `openrtc`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every live session of the running workers: a live full-screen view (press `?` in
    /// it for the keys), or one printout with --once.
    Top(TopArgs),
    /// Read a worker's JSONL log: filter its records by session, tenant, agent, level, time
    /// or text, print them readably (or as they are, with --json), and follow the file as it
    /// grows and rotates with --follow.
    Logs(LogsArgs),
    /// Ask a worker's HTTP health endpoint (`GET /health`) how it is: a summary, or the
    /// report as JSON; once, or whenever it changes with --continuous.
    Health(HealthArgs),
    /// Load a worker's media WebSocket with simulated phone calls (Twilio Media Streams:
    /// 20 ms chunks of μ-law audio, marks echoed) and measure connect time, refusals, echo
    /// round trip and inbound gaps, with `/health` under load and the worker's CPU, RSS and
    /// stalls beside them.
    Stress(StressArgs),
}

/// The exit statuses of `openrtc stress`, shown at the end of its `--help`.
pub const STRESS_EXIT_STATUS_HELP: &str = "\
Exit status:
  0  every call completed (and the echo round trip's p99 met --max-p99-ms, if given);
     with --find-capacity, some number of calls held
  1  a call failed or was refused, or --max-p99-ms was missed; with --find-capacity, no
     number of calls held
  2  usage error, the URL is unreachable, or --output cannot be written

A call is refused when the worker closes it with a code other than 1000 before any audio
came back, within 2s of its start; it fails when the worker closes it otherwise with a code
other than 1000, the connection breaks, or (agent echo) no audio comes back within 5s. The
echo round trip of the n-th audio frame received is the time since the n-th chunk was sent.
The summary table goes to standard output, a progress line to standard error (a terminal
only), and --output writes one JSON document: config, series (one row a second), summary.";

/// The options of `openrtc stress`.
#[derive(Debug, Args)]
#[command(after_help = STRESS_EXIT_STATUS_HELP)]
pub struct StressArgs {
    /// The worker's media WebSocket: ws://host:port/path (plain ws:// only).
    #[arg(long, value_name = "URL", value_parser = crate::stress::config::parse_media_url)]
    pub url: crate::stress::config::MediaUrl,

    /// How many calls to make.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub calls: u32,

    /// How fast calls start: calls a second (10/s) or a minute (600/m).
    #[arg(long, default_value = "10/s", value_name = "RATE",
          value_parser = crate::stress::config::parse_ramp)]
    pub ramp: crate::stress::config::Ramp,

    /// How long each call streams audio (30s, 2m).
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = crate::health::url::parse_duration)]
    pub duration: std::time::Duration,

    /// Which agents the calls ask for, in whole percentages adding up to 100
    /// (customParameters.agent).
    #[arg(long, default_value = "echo=100", value_name = "AGENT=PCT,...",
          value_parser = crate::stress::config::parse_agent_mix)]
    pub agent_mix: crate::stress::config::AgentMix,

    /// Spread the calls over this many tenants, tenant-1 to tenant-N, in turn
    /// (customParameters.tenant).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub tenants: u32,

    /// Load this health endpoint (http://host:port or the full /health URL) during the run.
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,

    /// Requests a second to --health-url.
    #[arg(long, default_value_t = 50.0, value_name = "RPS", requires = "health_url",
          value_parser = parse_rps)]
    pub health_rps: f64,

    /// Write the results as one JSON document (config, series, summary) to this file.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Fail (exit status 1) when the echo round trip's p99 is over this many milliseconds.
    #[arg(long, value_name = "MS", value_parser = parse_positive_ms, group = "slo")]
    pub max_p99_ms: Option<f64>,

    /// Fail (exit status 1) when the worker's outbound lateness p99 of its worst call (its
    /// own measure of agent audio sent after it was due, sampled each second) is over this
    /// many milliseconds. Needs a local worker to sample (see --worker).
    #[arg(long, value_name = "MS", value_parser = parse_positive_ms, group = "slo")]
    pub max_lateness_p99_ms: Option<f64>,

    /// Find the capacity: run --calls calls, then twice as many, three times... up to
    /// --max-calls, until a run has a failed call or misses an SLO (--max-p99-ms,
    /// --max-lateness-p99-ms); then bisect between the last level that held and the first
    /// that did not, to within 10 %. Reports the largest number of calls that held (exit
    /// status 1 when none did).
    #[arg(long, requires = "slo")]
    pub find_capacity: bool,

    /// The most calls --find-capacity tries.
    #[arg(long, default_value_t = 1000, value_name = "N", requires = "find_capacity",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_calls: u32,

    /// Sample the CPU, RSS and stalls of the local worker of this name (default: the one
    /// whose media address is the URL's, or the only one running).
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,
}

/// Parses `--health-rps`: more than zero, at most 10000.
fn parse_rps(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rps) if rps > 0.0 && rps <= 10_000.0 => Ok(rps),
        _ => Err(format!(
            "`{text}` must be a number of requests a second, from 0 to 10000"
        )),
    }
}

/// Parses `--max-p99-ms`: a number of milliseconds over zero.
fn parse_positive_ms(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        _ => Err(format!(
            "`{text}` must be a number of milliseconds over zero"
        )),
    }
}

/// The exit statuses of `openrtc health`, shown at the end of its `--help`.
pub const HEALTH_EXIT_STATUS_HELP: &str = "\
Exit status:
  0  ok (and when --continuous is stopped by SIGINT or SIGTERM)
  1  degraded or critical; an answer slower than 2s counts as degraded (slow_response)
  2  usage error, the endpoint is unreachable, or its answer is not a health report (not
     JSON, not a HealthReport, or an HTTP status other than 200 and 503)

--continuous prints one line the first time and one whenever the status changes (ok,
degraded, critical, unreachable, bad_answer), polling every --interval, and keeps going
through worker restarts. With --json each changed report is printed as one line of JSON.";

/// The options of `openrtc health`.
#[derive(Debug, Args)]
#[command(after_help = HEALTH_EXIT_STATUS_HELP)]
pub struct HealthArgs {
    /// The health endpoint: a base (`http://host:port`, or `host:port`) or the full URL
    /// (`http://host:port/health`); plain http:// only. Without it, the address the running
    /// worker's snapshot names (`worker.http_addr`), else http://127.0.0.1:14159/health.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Keep polling every --interval and print a line whenever the status changes, until
    /// SIGINT or SIGTERM (exit status 0).
    #[arg(long)]
    pub continuous: bool,

    /// How often --continuous polls (100ms, 30s, 5m).
    #[arg(
        long,
        default_value = "30s",
        value_parser = crate::health::url::parse_duration,
        value_name = "DURATION",
        requires = "continuous"
    )]
    pub interval: std::time::Duration,

    /// Print the report as received, one line of JSON (NDJSON with --continuous), instead of
    /// a summary.
    #[arg(long)]
    pub json: bool,

    /// How long the whole exchange may take, from connecting to the answer's last byte.
    #[arg(
        long,
        default_value = "2s",
        value_parser = crate::health::url::parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: std::time::Duration,

    /// Without --url: ask only the worker listening on this socket for its health address.
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub socket: Option<PathBuf>,

    /// Without --url: ask only the worker with this name for its health address.
    #[arg(long, value_name = "NAME", conflicts_with = "url")]
    pub worker: Option<String>,
}

/// The options of `openrtc logs`.
#[derive(Debug, Args)]
#[command(after_help = LOGS_EXIT_STATUS_HELP)]
pub struct LogsArgs {
    /// The log files to read, in this order (plain or gzip-compressed, recognised by content).
    /// Without any, the log file of the running worker, asked through its socket.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Show only the records of this session: its exact id (`s-12`; `s-1` does not match
    /// s-10 to s-19). The worker's own records, without a session, are left out.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,

    /// Show only the records of this tenant (exact match).
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Show only the records of this agent (exact match).
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,

    /// Show only records at least this severe (error > warn > info > debug > trace; any
    /// case).
    #[arg(long, value_enum, ignore_case = true, value_name = "LEVEL")]
    pub level: Option<Level>,

    /// Show only records written at or after this time: a time ago (90s, 10m, 2h, 1d) or an
    /// RFC 3339 time (2026-12-06T23:00:00Z).
    #[arg(long, value_parser = parse_since, value_name = "WHEN")]
    pub since: Option<Since>,

    /// Show only records with this text (case-sensitive) in the message or in any field's
    /// value.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// After the last FILE's end, wait for more, like `tail -F`: follows the path across
    /// rotation and truncation, until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Print the matching lines exactly as they are in the file (JSON), instead of readable
    /// text.
    #[arg(long)]
    pub json: bool,

    /// Without FILE: ask only the worker listening on this socket for its log file, instead
    /// of every worker in the socket directory.
    #[arg(long, value_name = "PATH", conflicts_with = "files")]
    pub socket: Option<PathBuf>,

    /// Without FILE: ask only the worker with this name for its log file.
    #[arg(long, value_name = "NAME", conflicts_with = "files")]
    pub worker: Option<String>,
}

/// The options of `openrtc top`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct TopArgs {
    /// Print one snapshot of every worker and exit, instead of refreshing the screen.
    #[arg(long)]
    pub once: bool,

    /// Ask only the worker listening on this socket, instead of every worker in the socket
    /// directory ($XDG_RUNTIME_DIR/openrtc, or /tmp/openrtc-UID without it).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The column sessions are sorted by: numbers descending, text ascending, ties by session id.
    #[arg(long, value_enum, default_value_t = SortKey::Cpu, value_name = "KEY")]
    pub sort: SortKey,

    /// Show only sessions in this state.
    #[arg(long, value_enum, value_name = "STATE")]
    pub status: Option<StatusFilter>,

    /// Show only sessions of this tenant (exact match), with its caps, heap, refusals and
    /// breaker; also filters the recently ended list and the tenant table.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Show only sessions of this agent (exact match); also filters the recently ended list.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,

    /// Show only the worker with this name, when several run on this machine.
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,

    /// The output format. `json` prints each worker's snapshot as one line of JSON, with only
    /// the sessions that pass --status, --tenant and --agent, in the --sort order (the worker's
    /// own figures stay whole); without --once it prints new lines on every refresh instead of
    /// redrawing.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub format: OutputFormat,

    /// How many times per second the live view asks the workers for a new snapshot (0.5 to
    /// 10).
    #[arg(
        long,
        default_value_t = 1.0,
        value_parser = parse_refresh_rate,
        value_name = "HZ"
    )]
    pub refresh_rate: f64,
}

/// The column `openrtc top` sorts sessions by.
///
/// The variants are in the order the columns appear in the table, which is the order the
/// live view's `<` and `>` keys move through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum)]
pub enum SortKey {
    /// Session id, in numeric order (s-2 before s-10).
    Session,
    /// Agent name, alphabetically.
    Agent,
    /// Tenant name, alphabetically.
    Tenant,
    /// Time since the session started, longest first.
    Dur,
    /// CPU% over the worker's CPU window, highest first.
    #[default]
    Cpu,
    /// Live memory, largest first.
    Mem,
    /// Peak memory, largest first.
    Peak,
    /// Stalls the session caused, most first.
    Stalls,
    /// A phone call's outbound audio lateness p99, latest first (sessions that are not calls
    /// last).
    Late,
    /// Most urgent first: blocking a thread now (longest first), then slow, draining, active.
    Status,
}

impl SortKey {
    /// Every sort key, in table column order.
    pub const ALL: [Self; 10] = [
        Self::Session,
        Self::Agent,
        Self::Tenant,
        Self::Dur,
        Self::Cpu,
        Self::Mem,
        Self::Peak,
        Self::Stalls,
        Self::Late,
        Self::Status,
    ];

    /// Whether the column holds numbers (sorted descending) rather than text (ascending).
    /// Status counts as a number: its order is urgency, most urgent first.
    #[must_use]
    pub fn is_numeric(self) -> bool {
        !matches!(self, Self::Session | Self::Agent | Self::Tenant)
    }
}

/// A session state to filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum StatusFilter {
    /// Running normally.
    Active,
    /// Blocking a worker thread now, or did so recently.
    Slow,
    /// Finishing while the worker drains.
    Draining,
}

impl StatusFilter {
    /// Every filter, in the order the live view's `f` key cycles through them after "all".
    pub const ALL: [Self; 3] = [Self::Active, Self::Slow, Self::Draining];

    /// The session state this filter selects.
    #[must_use]
    pub fn state(self) -> SessionState {
        match self {
            Self::Active => SessionState::Active,
            Self::Slow => SessionState::Slow,
            Self::Draining => SessionState::Draining,
        }
    }
}

/// How `openrtc top` prints what it learns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A header and a table per worker, for people.
    #[default]
    Text,
    /// Each worker's snapshot as one line of JSON, for programs.
    Json,
}

/// Parses `--refresh-rate`: a number of refreshes per second within the accepted range.
fn parse_refresh_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of refreshes per second"))?;
    if (MIN_REFRESH_RATE_HZ..=MAX_REFRESH_RATE_HZ).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "must be between {MIN_REFRESH_RATE_HZ} and {MAX_REFRESH_RATE_HZ} refreshes per second"
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn refresh_rates_outside_the_range_are_refused() {
        assert_eq!(parse_refresh_rate("0.5"), Ok(0.5));
        assert_eq!(parse_refresh_rate("10"), Ok(10.0));
        for refused in ["0.49", "10.01", "0", "-1", "NaN", "inf", "fast"] {
            assert!(
                parse_refresh_rate(refused).is_err(),
                "{refused} should be refused"
            );
        }
        let message = parse_refresh_rate("20").expect_err("20 is out of range");
        assert!(
            message.contains("0.5") && message.contains("10"),
            "{message}"
        );
    }

    #[test]
    fn top_defaults_to_cpu_order_text_and_one_hertz() {
        let cli = Cli::try_parse_from(["openrtc", "top"]).expect("valid arguments");
        let Command::Top(args) = cli.command else {
            panic!("top parses as top");
        };
        assert_eq!(args.sort, SortKey::Cpu);
        assert_eq!(args.format, OutputFormat::Text);
        assert!((args.refresh_rate - 1.0).abs() < f64::EPSILON);
        assert!(!args.once);
    }

    #[test]
    fn health_defaults_to_a_two_second_timeout_and_thirty_second_interval() {
        let cli = Cli::try_parse_from(["openrtc", "health"]).expect("valid arguments");
        let Command::Health(args) = cli.command else {
            panic!("health parses as health");
        };
        assert_eq!(args.timeout, std::time::Duration::from_secs(2));
        assert_eq!(args.interval, std::time::Duration::from_secs(30));
        assert!(args.url.is_none() && !args.continuous && !args.json);
        let cli = Cli::try_parse_from([
            "openrtc",
            "health",
            "--url",
            "127.0.0.1:9",
            "--continuous",
            "--interval",
            "100ms",
        ])
        .expect("valid arguments");
        let Command::Health(args) = cli.command else {
            panic!("health parses as health");
        };
        assert_eq!(args.interval, std::time::Duration::from_millis(100));
        assert_eq!(args.url.as_deref(), Some("127.0.0.1:9"));
    }

    #[test]
    fn logs_takes_files_and_filters() {
        let cli = Cli::try_parse_from([
            "openrtc",
            "logs",
            "a.jsonl.1.gz",
            "a.jsonl",
            "--session",
            "s-7",
            "--level",
            "WARN",
            "--since",
            "10m",
            "-f",
        ])
        .expect("valid arguments");
        let Command::Logs(args) = cli.command else {
            panic!("logs parses as logs");
        };
        assert_eq!(
            args.files,
            [PathBuf::from("a.jsonl.1.gz"), PathBuf::from("a.jsonl")]
        );
        assert_eq!(args.session.as_deref(), Some("s-7"));
        assert_eq!(args.level, Some(Level::Warn));
        assert_eq!(
            args.since,
            Some(Since::Ago(std::time::Duration::from_secs(600)))
        );
        assert!(args.follow && !args.json);
        for refused in [
            &["openrtc", "health", "--interval", "1s"][..],
            &["openrtc", "health", "--timeout", "0s"],
            &["openrtc", "health", "--url", "h:1", "--worker", "demo"],
            &["openrtc", "logs", "--since", "soon"],
            &["openrtc", "logs", "--level", "loud"],
            &["openrtc", "logs", "f.jsonl", "--socket", "/s.sock"],
            &["openrtc", "logs", "f.jsonl", "--worker", "demo"],
        ] {
            assert!(Cli::try_parse_from(refused).is_err(), "{refused:?}");
        }
    }
}
