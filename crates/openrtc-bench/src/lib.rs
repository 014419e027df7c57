//! Benchmarks of the openrtc runtime that print figures: the library behind the
//! `openrtc-bench` binary (with the tracking allocator) and `openrtc-bench-untracked` (without
//! it, for the allocator's on/off comparison).

mod attribution;
mod cli;
mod compare;
mod density;
mod harness;
mod instructions;
mod isolation;
mod livekit;
mod livekit_audio;
mod overhead;
mod quiet;
mod search;
mod stats;
mod throughput;
mod vad_frames;

/// Parses the command line and runs the benchmark it names.
///
/// # Errors
///
/// Any failure to set up or run a benchmark.
pub fn main_from_args() -> anyhow::Result<()> {
    use clap::Parser;
    cli::run(cli::Cli::parse())
}
