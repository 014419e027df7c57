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
    tracing_subscriber::fmt()
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
