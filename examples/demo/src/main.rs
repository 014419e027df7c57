//! `openrtc-demo`: a worker whose agents behave like the runbooks' cases, with built-in callers.

mod agents;
mod callers;
mod cli;

use clap::Parser;

/// Exact per-session memory: every allocation is charged to the session that made it.
#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    // Readable lines on stderr (RUST_LOG, colours only on a terminal and without NO_COLOR)
    // and the session layer that labels records and writes the log file.
    if let Err(error) = openrtc::telemetry::init() {
        eprintln!("openrtc-demo: cannot set up logging: {error}");
    }
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
