//! `openrtc logs`: reads a worker's JSONL log (the format the runtime's `.log_file(path)` /
//! `OPENRTC_LOG_FILE` writes, one JSON object per line), keeps the records the options ask
//! for, and prints them as readable lines ([`mod@format`]) or as they are (`--json`).
//!
//! - **Input.** The FILEs in the order given, plain or gzip ([`read`]); pass rotated files
//!   oldest first: `openrtc logs worker.jsonl.1.gz worker.jsonl`. Without FILE, the log file
//!   of the running worker, asked through its socket ([`locate`]; `--socket`, `--worker` as
//!   for `top`). Files are streamed through a 1 MiB buffer, never loaded whole.
//! - **Filters** ([`filter`]), all of which must hold: `--session ID` is an exact session id
//!   (`s-1` never matches `s-10`..`s-19`: a prefix is not a session), `--tenant` and
//!   `--agent` exact, `--level` a minimum severity, `--since` a time ago (`10m`) or an RFC
//!   3339 time ([`since`]), `--grep` case-sensitive text in the message or any field's value.
//!   With `--session`, `--tenant`, `--agent` or `--grep`, raw lines are pre-checked for the
//!   text before any JSON parsing, which lets a gigabyte be filtered at about disk speed.
//! - **Bad lines** (not JSON, not an object, no `ts`, `level` or `message`) are skipped and
//!   counted ([`scan`]); the count is printed on standard error at the end
//!   (`openrtc logs: skipped 3 bad lines`). A last line cut short is a bad line, except under
//!   `--follow`, which waits for the rest of it. Under the pre-check, a line that cannot match
//!   is not parsed: it counts as bad only when plainly not a record (not `{` … `}`).
//! - **`--follow`** follows the last FILE like `tail -F`, polling every 100 ms, across
//!   rotation (the path's inode changes) and truncation, until SIGINT or SIGTERM.
//! - **Exit status:** 0 when at least one record matched (also when the output's reader goes
//!   away, as in `| head`), 1 when none did, 2 on a usage error, when no FILE could be read
//!   (a missing FILE among readable ones is reported and skipped), or when no log file was
//!   found through the workers.

pub mod filter;
pub mod format;
pub mod locate;
pub mod read;
pub mod record;
pub mod scan;
pub mod since;

use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use time::OffsetDateTime;

use crate::Exit;
use crate::cli::LogsArgs;
use crate::discover::{self, Target};
use filter::Filter;
use read::ReadError;
use scan::Scan;

/// The size of the buffer in front of standard output.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;

/// The filter the arguments ask for, with `--since` taken from `now`.
#[must_use]
pub fn filter_of(args: &LogsArgs, now: OffsetDateTime) -> Filter {
    Filter {
        session: args.session.clone(),
        tenant: args.tenant.clone(),
        agent: args.agent.clone(),
        min_level: args.level,
        since: args.since.map(|since| since.cutoff(now)),
        grep: args.grep.clone(),
    }
}

/// Runs `openrtc logs` with its arguments: to the end of the files, or with `--follow` until
/// SIGINT or SIGTERM.
///
/// # Errors
///
/// Fails only when the signal handlers of `--follow` cannot be installed; every other
/// failure is reported on standard error and ends with its exit status.
pub fn run(args: &LogsArgs) -> anyhow::Result<Exit> {
    let filter = filter_of(args, OffsetDateTime::now_utc());
    let files = if args.files.is_empty() {
        match worker_log_file(args) {
            Ok(path) => vec![path],
            Err(message) => {
                report(&message);
                return Ok(Exit::Failure);
            }
        }
    } else {
        args.files.clone()
    };
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("cannot install the signal handlers of --follow")?;
        }
    }

    let out = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, io::stdout().lock());
    let mut scan = Scan::new(filter, args.json, out);
    let mut readable_count = 0_usize;
    let mut output_error = None;
    for (index, path) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let result = if args.follow && is_last {
            read::follow_file(path, &mut scan, &stop, read::FOLLOW_POLL_INTERVAL)
        } else {
            read::read_file(path, &mut scan)
        };
        match result {
            Ok(()) => readable_count += 1,
            Err(ReadError::Output(error)) => {
                output_error = Some(error);
                break;
            }
            Err(error) => report(&error.to_string()),
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    if output_error.is_none() {
        output_error = scan.flush().err();
    }

    if scan.bad_count() > 0 {
        let noun = if scan.bad_count() == 1 {
            "line"
        } else {
            "lines"
        };
        report(&format!("skipped {} bad {noun}", scan.bad_count()));
    }
    match output_error {
        // The reader went away (`| head`): it has all it wanted.
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(Exit::Success),
        Some(error) => {
            report(&format!("cannot write the output: {error}"));
            return Ok(Exit::Failure);
        }
        None => {}
    }
    Ok(if readable_count == 0 {
        Exit::Failure
    } else if scan.matched_count() > 0 {
        Exit::Success
    } else {
        Exit::NoMatch
    })
}

/// The log file of the running worker the arguments point at, or the message saying why
/// there is none.
fn worker_log_file(args: &LogsArgs) -> Result<PathBuf, String> {
    let target = match &args.socket {
        Some(path) => Target::Socket(path.clone()),
        None => {
            Target::Directory(discover::default_socket_dir().map_err(|error| error.to_string())?)
        }
    };
    locate::find_log_file(&target, args.worker.as_deref(), report)
        .map_err(|error| error.to_string())
}

/// Prints one line on standard error, after `openrtc logs: `; if even that fails there is
/// nobody left to tell.
fn report(message: &str) {
    let _ = writeln!(io::stderr().lock(), "openrtc logs: {message}");
}
