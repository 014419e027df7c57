//! `openrtc-bench`: benchmarks of the runtime that print figures (a table, or JSON).

mod attribution;
mod cli;
mod density;
mod overhead;
mod stats;
mod throughput;

use clap::Parser;

/// Exact per-session memory, as a worker would install it (the density figures need it).
#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

fn main() -> anyhow::Result<()> {
    cli::run(cli::Cli::parse())
}
