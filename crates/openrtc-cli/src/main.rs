//! The `openrtc` binary: parses the arguments, runs the command, turns the outcome into an
//! exit status. Everything else lives in the `openrtc_cli` library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use openrtc_cli::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match openrtc_cli::run(&cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let (message, exit) = openrtc_cli::discover::failure_report(&error);
            let _ = writeln!(std::io::stderr().lock(), "openrtc: {message}");
            ExitCode::from(exit.code())
        }
    }
}
