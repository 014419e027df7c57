//! `openrtc-bench`: benchmarks of the runtime that print figures (a table, or JSON), with
//! exact per-session memory (the tracking allocator), as a worker would run.

#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

fn main() -> anyhow::Result<()> {
    openrtc_bench::main_from_args()
}
