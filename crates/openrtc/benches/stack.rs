//! What a stall's stack capture costs the watchdog: the signal round trip to a sleeping thread
//! (the handler's frame walk included), and that plus symbolization once debug info is loaded.
//!
//! Run with `cargo bench -p openrtc --bench stack`. The round trip includes the watchdog's
//! 50 µs polling of the capture's state, so it overstates what the stuck thread itself pays
//! (only the handler: a frame walk of at most 64 words read from its own stack).
#![allow(missing_docs)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn capture(c: &mut Criterion) {
    let sleeper = openrtc::__bench::SleepingThread::start();
    assert!(sleeper.capture() > 1, "the capture walks past the sleep");
    let mut group = c.benchmark_group("stack");
    group.bench_function("capture", |b| b.iter(|| black_box(sleeper.capture())));
    // The first symbolization loads the debug info; time the ones after it.
    assert!(sleeper.capture_and_symbolize() > 0);
    group.bench_function("capture_and_symbolize", |b| {
        b.iter(|| black_box(sleeper.capture_and_symbolize()));
    });
    group.finish();
}

criterion_group!(benches, capture);
criterion_main!(benches);
