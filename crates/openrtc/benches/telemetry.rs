//! The cost of one log record emitted inside a session, by where it goes.
//!
//! Run with `cargo bench -p openrtc --bench telemetry`. Each iteration is one poll of a
//! session's future (the attribution probe included) that emits one `tracing::info!` record
//! with two fields. The subscribers compared: none interested (the floor), the plain
//! `tracing-subscriber` fmt layer writing to a sink (what a worker pays for human output), the
//! session layer with no log file (labels and the flight recorder), and the session layer
//! writing the JSONL file through its queue. The file's writer thread runs beside; the figure
//! printed at the end says how many records it wrote and dropped, so a fast figure bought by
//! dropping is visible. A second group compares the two ways the layer could learn the
//! session: the thread-local scope the runtime sets on every poll, and a span entered around
//! each poll.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use openrtc::{AgentPool, Session, agent_fn};
use tracing_subscriber::layer::SubscriberExt as _;

/// A layer that wants every span and does nothing with it.
struct SpansOn;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpansOn {
    fn register_callsite(
        &self,
        _metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
}

/// A future that is never ready and logs nothing.
struct AlwaysPending;

impl Future for AlwaysPending {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A future that logs one record per poll and stays pending.
struct LogsOnce(u64);

impl Future for LogsOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        self.0 += 1;
        tracing::info!(frame = self.0, energy = 0.25_f64, "decoded a frame");
        Poll::Pending
    }
}

fn pool(log_file: Option<&std::path::Path>) -> AgentPool {
    let mut builder = AgentPool::builder()
        .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
        .worker_threads(1);
    if let Some(path) = log_file {
        builder = builder.log_file(path);
    }
    builder.build().expect("valid configuration")
}

fn per_record(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_file = dir.path().join("bench.jsonl");
    let plain = pool(None);
    let writing = pool(Some(&log_file));
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("record");

    // Nobody listens: the callsite is disabled, the poll is the probe alone.
    let mut quiet = Box::pin(openrtc::__bench::attributed(&plain, LogsOnce(0)));
    group.bench_function("no_subscriber", |b| {
        b.iter(|| black_box(quiet.as_mut().poll(&mut cx)));
    });

    let fmt = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
    tracing::subscriber::with_default(fmt, || {
        let mut future = Box::pin(openrtc::__bench::attributed(&plain, LogsOnce(0)));
        group.bench_function("fmt_layer", |b| {
            b.iter(|| black_box(future.as_mut().poll(&mut cx)));
        });
    });

    let session = tracing_subscriber::registry().with(openrtc::telemetry::layer());
    tracing::subscriber::with_default(session, || {
        let mut future = Box::pin(openrtc::__bench::attributed(&plain, LogsOnce(0)));
        group.bench_function("session_layer_recorder_only", |b| {
            b.iter(|| black_box(future.as_mut().poll(&mut cx)));
        });
    });

    let session = tracing_subscriber::registry().with(openrtc::telemetry::layer());
    tracing::subscriber::with_default(session, || {
        let mut future = Box::pin(openrtc::__bench::attributed(&writing, LogsOnce(0)));
        group.bench_function("session_layer_jsonl_file", |b| {
            b.iter(|| black_box(future.as_mut().poll(&mut cx)));
        });
    });
    group.finish();

    // How the layer learns the session: the runtime's thread-local scope (set on every poll,
    // measured here with no record emitted) against the alternative, a `tracing` span entered
    // around each poll, with the same subscriber.
    let mut group = c.benchmark_group("session_context_per_poll");
    // `SpansOn` makes the registry keep spans (the session layer asks for events only), so
    // entering one costs what the span approach would: the registry's span stack and lookups.
    let session = tracing_subscriber::registry()
        .with(openrtc::telemetry::layer())
        .with(SpansOn);
    tracing::subscriber::with_default(session, || {
        let mut scoped = Box::pin(openrtc::__bench::attributed(&plain, AlwaysPending));
        group.bench_function("thread_local_scope", |b| {
            b.iter(|| black_box(scoped.as_mut().poll(&mut cx)));
        });
        let span = tracing::info_span!("session", session_id = "s-1", tenant = "t", agent = "a");
        let mut spanned = Box::pin(openrtc::__bench::attributed(&plain, AlwaysPending));
        group.bench_function("span_entered", |b| {
            b.iter(|| {
                let _entered = span.enter();
                black_box(spanned.as_mut().poll(&mut cx))
            });
        });
    });
    group.finish();

    let worker = writing.handle().runtime_snapshot().worker;
    let total = worker.log_records_written_count + worker.log_records_dropped_count;
    println!(
        "log file: {} records written, {} dropped ({:.1}% of {total})",
        worker.log_records_written_count,
        worker.log_records_dropped_count,
        100.0 * worker.log_records_dropped_count as f64 / total.max(1) as f64
    );
}

criterion_group!(benches, per_record);
criterion_main!(benches);
