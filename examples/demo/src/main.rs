//! `openrtc-demo`: a worker whose agents behave like the runbooks' cases, with built-in callers.

mod agents;
mod callers;
mod cli;

use std::io::IsTerminal as _;

use clap::Parser;

/// Exact per-session memory: every allocation is charged to the session that made it.
#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    // Colours only on a terminal, and never with NO_COLOR set (to any value but empty).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("openrtc-demo: {error:#}");
            let code = error
                .downcast_ref::<openrtc::RunError>()
                .map_or(1, openrtc::RunError::exit_code);
            std::process::ExitCode::from(code)
        }
    }
}
