//! The `openrtc` command as a library: argument grammar, worker discovery and `top`, so the
//! binary stays a thin shell and tests can reach every piece.
//!
//! This crate talks to workers only through `openrtc-proto`; it never links the runtime.

pub mod cli;
pub mod discover;
pub mod top;

/// How a command ended, which decides the process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was shown (exit status 0).
    Success,
    /// No running worker was found (exit status 1).
    NoWorker,
    /// A worker refused or could not be understood (exit status 2, like usage errors).
    Failure,
}

impl Exit {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::NoWorker => 1,
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
    }
}
