//! The cost of the tracking allocator: one alloc + free pair, with and without it.
//!
//! Run with `cargo bench -p openrtc --bench alloc`. The allocators are called directly (not
//! installed globally), so criterion's own allocations do not disturb the figures. Pairs are
//! charged to the `runtime` bucket (outside any session) and to a session's account (as
//! during a poll); the two-thread runs do the same on two threads at once, each on its own
//! blocks, and report the time per pair on one thread.
#![allow(missing_docs)]
// Calling an allocator directly is unsafe by nature; each call site says why it is sound.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::{Duration, Instant};

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use openrtc::alloc::TrackingAllocator;

fn pair<A: GlobalAlloc>(allocator: &A, layout: Layout) {
    // SAFETY: the layout has a non-zero size; the block is freed with the same layout.
    unsafe {
        let block = allocator.alloc(layout);
        black_box(block);
        allocator.dealloc(block, layout);
    }
}

/// Times `iterations` pairs on each of `threads` threads and returns the slowest thread's time.
fn timed_pairs<A: GlobalAlloc + Sync>(
    allocator: &A,
    layout: Layout,
    iterations: u64,
    threads: usize,
    in_session: bool,
) -> Duration {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let run = || {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            pair(allocator, layout);
                        }
                        started.elapsed()
                    };
                    if in_session {
                        openrtc::__bench::in_session_account(run)
                    } else {
                        run()
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn alloc_free_pairs(c: &mut Criterion) {
    let tracking = TrackingAllocator::system();
    let sizes = [("small_32B", 32_usize), ("large_64KiB", 64 * 1024)];
    for (size_name, size) in sizes {
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        let mut group = c.benchmark_group(format!("alloc_free/{size_name}"));
        for threads in [1_usize, 2] {
            group.bench_function(format!("system/{threads}t"), |b| {
                b.iter_custom(|iterations| {
                    timed_pairs(&System, layout, iterations, threads, false)
                });
            });
            group.bench_function(format!("tracking_runtime/{threads}t"), |b| {
                b.iter_custom(|iterations| {
                    timed_pairs(&tracking, layout, iterations, threads, false)
                });
            });
            group.bench_function(format!("tracking_session/{threads}t"), |b| {
                b.iter_custom(|iterations| {
                    timed_pairs(&tracking, layout, iterations, threads, true)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, alloc_free_pairs);
criterion_main!(benches);
