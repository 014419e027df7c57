//! The per-poll cost of the attribution wrapper, against the same future polled bare.
//!
//! Run with `cargo bench -p openrtc --bench probe`. Each iteration is one `poll` of a future
//! that is always pending, so the difference between the two figures is what the probe adds
//! to every poll: two clock reads, the slot publication and the busy-time update; with memory
//! tracked, also entering the session's allocator account and checking its cap. The
//! `wake_and_poll` pair measures a poll whose future wakes its own task: the wake's cost too.
//! `tracked_call_*` time a tracked call (`Session::track`): a poll of it, and its completion.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use openrtc::{AgentPool, Session, agent_fn};

/// A future that is never ready: every poll does the least work a poll can do.
struct AlwaysPending;

impl Future for AlwaysPending {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// [`AlwaysPending`] with a `Result` output, as a tracked call's.
struct AlwaysPendingResult;

impl Future for AlwaysPendingResult {
    type Output = Result<(), ()>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Pending
    }
}

/// A future that wakes its task and stays pending, every poll.
struct WakesItself;

impl Future for WakesItself {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn per_poll(c: &mut Criterion) {
    let pool = AgentPool::builder()
        .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
        .worker_threads(1)
        .build()
        .expect("valid configuration");
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("poll");

    let mut bare = Box::pin(AlwaysPending);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(bare.as_mut().poll(&mut cx)));
    });

    let mut attributed = Box::pin(openrtc::__bench::attributed(&pool, AlwaysPending));
    group.bench_function("attributed", |b| {
        b.iter(|| black_box(attributed.as_mut().poll(&mut cx)));
    });

    // What a session's task polls: the probe inside the panic guard, whose thread-local mark
    // tells the panic hook that the thread is inside a session.
    let mut session_task = Box::pin(openrtc::__bench::session_task(&pool, AlwaysPending));
    group.bench_function("attributed_in_panic_guard", |b| {
        b.iter(|| black_box(session_task.as_mut().poll(&mut cx)));
    });

    let mut tracked = Box::pin(openrtc::__bench::attributed_tracked(&pool, AlwaysPending));
    group.bench_function("attributed_memory_tracked", |b| {
        b.iter(|| black_box(tracked.as_mut().poll(&mut cx)));
    });

    // A future that wakes itself on every poll: the wake and the poll together, as a task
    // woken by a timer or a socket pays them (with victim tracking, the wake is timed too).
    let mut bare_waking = Box::pin(WakesItself);
    group.bench_function("bare_wake_and_poll", |b| {
        b.iter(|| black_box(bare_waking.as_mut().poll(&mut cx)));
    });
    let mut attributed_waking = Box::pin(openrtc::__bench::attributed(&pool, WakesItself));
    group.bench_function("attributed_wake_and_poll", |b| {
        b.iter(|| black_box(attributed_waking.as_mut().poll(&mut cx)));
    });

    // A tracked call (`Session::track`) adds two clock reads to each of its own polls...
    let tracking = openrtc::__bench::TrackingSession::new(&pool);
    let mut tracked_call = Box::pin(tracking.track("bench.pending", AlwaysPendingResult));
    group.bench_function("tracked_call_pending_poll", |b| {
        b.iter(|| black_box(tracked_call.as_mut().poll(&mut cx)));
    });
    // ...and, once, the record of its completion: the label's lookup, the session's and the
    // worker's counters and histograms (a fresh call each iteration, ready at its first poll).
    group.bench_function("tracked_call_completed", |b| {
        b.iter(|| {
            let mut call = std::pin::pin!(tracking.track("bench.ready", async { Ok::<_, ()>(1) }));
            black_box(call.as_mut().poll(&mut cx))
        });
    });

    // The floor: the two clock reads every measured poll needs, and nothing else.
    let clock = quanta::Clock::new();
    group.bench_function("two_tsc_reads", |b| {
        b.iter(|| {
            let start = clock.raw();
            black_box(clock.delta_as_nanos(start, clock.raw()))
        });
    });
    group.finish();
}

criterion_group!(benches, per_poll);
criterion_main!(benches);
