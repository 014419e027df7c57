//! The `openrtc` command as a library: argument grammar, worker discovery, `top` and `logs`,
//! so the binary stays a thin shell and tests can reach every piece.
//!
//! The commands:
//!
//! - `openrtc top` ([`top`]): every live session of the running workers, from their
//!   snapshots, in a live view or printed once.
//! - `openrtc logs` ([`logs`]): a worker's JSONL log, filtered by session (exact id), tenant,
//!   agent, level, time or text, printed readably or as it is (`--json`), from rotated and
//!   gzip files in the order given, or followed like `tail -F`. Without FILE it asks the
//!   running worker for its log file. Exit status 0 with a match, 1 without, 2 when the input
//!   cannot be read.
//!
//! - `openrtc health` ([`health`]): a worker's HTTP health report (`GET /health`), summarised
//!   or as JSON, once or whenever it changes (`--continuous`). Exit status 0 ok, 1 degraded
//!   or critical, 2 unreachable or not a health report.
//!
//! - `openrtc stress` ([`stress`]): simulated phone calls against a worker's media
//!   WebSocket, with `/health` under load and the worker sampled; a summary table, and a JSON
//!   document with `--output`. Exit status 0, 1 when a call failed or `--max-p99-ms` was
//!   missed, 2 for bad arguments or an unreachable URL.
//!
//! This crate talks to workers only through `openrtc-proto` (and speaks the media protocol
//! through `openrtc-media`); it never links the runtime.

pub mod cli;
pub mod discover;
pub mod health;
pub mod logs;
pub mod stress;
pub mod top;

/// How a command ended, which decides the process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was shown (exit status 0).
    Success,
    /// No running worker was found (exit status 1).
    NoWorker,
    /// A worker refused or could not be understood, or no input could be read (exit status
    /// 2, like usage errors).
    Failure,
    /// `openrtc logs` read its input and no record matched (exit status 1).
    NoMatch,
    /// `openrtc health` got a report saying `degraded` or `critical` (exit status 1).
    Unhealthy,
    /// `openrtc stress` saw a call fail (or be refused), or missed `--max-p99-ms` (exit
    /// status 1).
    StressFailed,
}

impl Exit {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::NoWorker | Self::NoMatch | Self::Unhealthy | Self::StressFailed => 1,
            Self::Failure => 2,
        }
    }
}

/// Runs the command the arguments name.
///
/// # Errors
///
/// Fails when the command cannot do its work at all (an unreadable socket directory, for
/// instance); the binary prints the error and exits with the status
/// [`discover::failure_report`] gives it.
pub fn run(cli: &cli::Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        cli::Command::Top(args) => top::run(args),
        cli::Command::Logs(args) => logs::run(args),
        cli::Command::Health(args) => health::run(args),
        cli::Command::Stress(args) => stress::run(args),
    }
}
