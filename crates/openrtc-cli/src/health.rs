//! `openrtc health`: asks a worker's HTTP health endpoint (`GET /health`, a
//! `HealthReport`) and says how the worker is, for people (a summary) or programs (`--json`,
//! the report as received), once or, with `--continuous`, whenever it changes.
//!
//! - **Where** ([`url`]): `--url` (a base `http://host:port`, `host:port`, or the full
//!   `/health` URL; plain HTTP only). Without it, the `worker.http_addr` of the running
//!   worker's snapshot (through its socket, `--socket`/`--worker` as for `top`), else
//!   [`url::DEFAULT_HEALTH_URL`].
//! - **Asking** ([`client`]): one `GET` through `ureq` (plain HTTP, any status code is an
//!   answer), `--timeout` (2 s) for the whole exchange.
//! - **Judging** ([`judge`]): 200 or 503 with a health report is the report's status; an
//!   answer slower than 2 s adds a `slow_response` issue and is at least `degraded`.
//! - **Exit status:** 0 ok, 1 degraded or critical, 2 unreachable or not a health report;
//!   `--continuous` runs until SIGINT or SIGTERM and then exits 0.

pub mod client;
pub mod format;
pub mod judge;
pub mod url;

use std::io::{self, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Exit;
use crate::cli::HealthArgs;
use crate::discover::{self, Target};
use judge::{Observation, State};
use url::{DEFAULT_HEALTH_URL, Endpoint};

/// How often a `--continuous` wait looks at the stop flag.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `openrtc health` with its arguments.
///
/// # Errors
///
/// Fails only when the signal handlers of `--continuous` cannot be installed; every other
/// failure is reported and ends with its exit status.
pub fn run(args: &HealthArgs) -> anyhow::Result<Exit> {
    let endpoint = match endpoint_of(args) {
        Ok(endpoint) => endpoint,
        Err(message) => {
            report(&message);
            return Ok(Exit::Failure);
        }
    };
    let color = io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    if args.continuous {
        return continuous(args, &endpoint, color);
    }
    let observation = observe(&endpoint, args.timeout);
    let written = if args.json {
        match &observation {
            Observation::Report(verdict) => {
                for issue in &verdict.client_issues {
                    report(&format!("{}: {}", issue.code, issue.message));
                }
                write_out(&format!("{}\n", verdict.raw))
            }
            Observation::Unreachable(message) | Observation::BadAnswer(message) => {
                report(&format!("{}: {message}", observation.state().as_str()));
                Ok(())
            }
        }
    } else {
        write_out(&format::summary(&observation, &endpoint.to_string(), color))
    };
    Ok(match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            report(&format!("cannot write the output: {error}"));
            Exit::Failure
        }
        _ => observation.state().exit(),
    })
}

/// Polls every `--interval` until SIGINT or SIGTERM, printing a line (or the report, with
/// `--json`) the first time and whenever the state changes.
fn continuous(args: &HealthArgs, endpoint: &Endpoint, color: bool) -> anyhow::Result<Exit> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handlers of --continuous")?;
    }
    let mut last: Option<State> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let observation = observe(endpoint, args.timeout);
        let state = observation.state();
        if last != Some(state) {
            last = Some(state);
            let written = match (&observation, args.json) {
                (Observation::Report(verdict), true) => write_out(&format!("{}\n", verdict.raw)),
                (_, true) => {
                    report(&format::change_line(&now_text(), &observation, false));
                    Ok(())
                }
                (_, false) => write_out(&format!(
                    "{}\n",
                    format::change_line(&now_text(), &observation, color)
                )),
            };
            match written {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(Exit::Success);
                }
                Err(error) => {
                    report(&format!("cannot write the output: {error}"));
                    return Ok(Exit::Failure);
                }
            }
        }
        let next = started + args.interval;
        while !stop.load(Ordering::Relaxed) {
            let remaining = next.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            std::thread::sleep(remaining.min(STOP_CHECK_INTERVAL));
        }
    }
    Ok(Exit::Success)
}

/// One look at the endpoint.
fn observe(endpoint: &Endpoint, timeout: Duration) -> Observation {
    let started = Instant::now();
    match client::get(endpoint, timeout) {
        Ok(response) => judge::judge(&response, started.elapsed()),
        Err(error @ (client::HttpError::Malformed(_) | client::HttpError::TooLong)) => {
            Observation::BadAnswer(format!("{endpoint}: {error}"))
        }
        Err(error) => Observation::Unreachable(format!("{endpoint} is unreachable: {error}")),
    }
}

/// The endpoint to ask: `--url`, else the worker's `http_addr`, else the default.
fn endpoint_of(args: &HealthArgs) -> Result<Endpoint, String> {
    let text = match &args.url {
        Some(url) => url.clone(),
        None => worker_http_addr(args).unwrap_or_else(|| DEFAULT_HEALTH_URL.to_owned()),
    };
    url::parse_health_url(&text).map_err(|error| error.to_string())
}

/// The `http_addr` the first worker that answers names in its snapshot, if any.
fn worker_http_addr(args: &HealthArgs) -> Option<String> {
    let target = match &args.socket {
        Some(path) => Target::Socket(path.clone()),
        None => Target::Directory(discover::default_socket_dir().ok()?),
    };
    let found = discover::survey(&target, args.worker.as_deref()).ok()?;
    found
        .snapshots
        .iter()
        .find_map(|snapshot| snapshot.worker.http_addr.clone())
        .filter(|addr| !addr.is_empty())
}

/// The current UTC time, RFC 3339.
fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Writes `text` to standard output and flushes it.
fn write_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Prints one line on standard error, after `openrtc health: `.
fn report(message: &str) {
    let _ = writeln!(io::stderr().lock(), "openrtc health: {message}");
}
