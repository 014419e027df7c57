//! What a stall's stack capture costs the watchdog: the signal round trip to a sleeping thread
//! (the handler's frame walk included), and that plus symbolization once debug info is loaded.
//!
//! Run with `cargo bench -p openrtc --bench stack`. The round trip includes the watchdog's
//! 50 µs polling of the capture's state, so it overstates what the stuck thread itself pays
//! (only the handler: a frame walk of at most 64 words read from its own stack).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use openrtc::__bench::CaptureTarget;

/// A thread asleep in `std::thread::sleep`, as a stuck worker thread would be, until dropped.
struct SleepingThread {
    target: CaptureTarget,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SleepingThread {
    /// Starts the thread and waits until it has said who it is.
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let _ = sender.send(CaptureTarget::current());
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        let target = receiver.recv().expect("the sleeping thread started");
        Self {
            target,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SleepingThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture(c: &mut Criterion) {
    let sleeper = SleepingThread::start();
    let target = sleeper.target;
    assert!(target.capture() > 1, "the capture walks past the sleep");
    let mut group = c.benchmark_group("stack");
    group.bench_function("capture", |b| b.iter(|| black_box(target.capture())));
    // The first symbolization loads the debug info; time the ones after it.
    assert!(target.capture_and_symbolize() > 0);
    group.bench_function("capture_and_symbolize", |b| {
        b.iter(|| black_box(target.capture_and_symbolize()));
    });
    group.finish();
}

criterion_group!(benches, capture);
criterion_main!(benches);
