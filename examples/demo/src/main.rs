//! `openrtc-demo`: a worker whose agents behave like the runbooks' cases, with built-in callers.

mod agents;
mod callers;
mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::run(args)
}
