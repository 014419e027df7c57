//! Tracked calls: `Session::track` and `Session::track_blocking` time a call (an LLM request,
//! a database query) and count it per label, for the session and for the worker.
//!
//! A tracked future is wrapped in `Tracked`, which reads the probe's TSC clock around each
//! of its own polls (two reads a poll, only for tracked futures; the generic poll path is
//! untouched). A poll at or over the stall threshold makes the call a **blocking call**: the
//! call's code held a worker thread (a synchronous client, `std::thread::sleep`), which the
//! whole session's stall record shows too, but here it is pinned on the call's label. It is
//! logged once, as `[blocking-call]`, when the call completes. The counters are written once
//! per completed call (relaxed atomics, no lock): `calls/table` holds them, by label,
//! bounded, with the sum of durations; `calls/histogram` is the duration histogram, which
//! the worker's snapshot folds into fixed buckets at exact edges for `/metrics`.

mod histogram;
mod table;

pub(crate) use table::{Buckets, CallRecord, CallTable};
pub use table::{CallLabel, MAX_LABELS, OTHER_LABEL};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::session::SessionCell;
use crate::units::NS_PER_MS;

/// What a tracked call returns, and whether that is a failure.
///
/// Implemented for `Result` (a failure is an `Err`) and `()` (never a failure). To track a
/// future with any other output, use `Session::track_value`, which counts no failures.
pub trait TrackedOutput {
    /// Whether the call failed.
    fn is_failure(&self) -> bool;
}

impl<T, E> TrackedOutput for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl TrackedOutput for () {
    fn is_failure(&self) -> bool {
        false
    }
}

/// Records one completed call in the session's table and the worker's, and logs it once if it
/// blocked a worker thread. Called in the session's logging scope.
pub(crate) fn finish_call(
    cell: &SessionCell,
    label: &CallLabel,
    duration_ns: u64,
    failed: bool,
    blocked_ns: Option<u64>,
) {
    let call = CallRecord {
        duration_us: duration_ns / 1_000,
        failed,
        slow: duration_ns > cell.slow_call_ns(),
        blocking: blocked_ns.is_some(),
    };
    cell.calls().record(label, call);
    if let Some(pool) = cell.pool() {
        pool.calls.record(label, call);
    }
    if let Some(blocked_ns) = blocked_ns {
        let blocked_ms = blocked_ns / NS_PER_MS;
        tracing::warn!(
            event = "blocking_call",
            label = label.as_str(),
            blocked_ms,
            "[blocking-call] session {} label {} blocked a worker thread for {} ms",
            cell.id(),
            label.as_str(),
            blocked_ms
        );
    }
}

pin_project_lite::pin_project! {
    /// A tracked future: times its own polls with the probe's clock and records the call when
    /// it completes. A call dropped before it completes is not recorded.
    pub(crate) struct Tracked<F, C> {
        #[pin]
        inner: F,
        cell: Arc<SessionCell>,
        label: CallLabel,
        classify: C,
        started_raw: Option<u64>,
        longest_poll_ticks: u64,
    }
}

impl<F, C> Tracked<F, C> {
    pub(crate) fn new(inner: F, cell: Arc<SessionCell>, label: CallLabel, classify: C) -> Self {
        Self {
            inner,
            cell,
            label,
            classify,
            started_raw: None,
            longest_poll_ticks: 0,
        }
    }
}

impl<F, C> Future for Tracked<F, C>
where
    F: Future,
    C: Fn(&F::Output) -> bool,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let probe = this.cell.probe();
        let clock = &probe.clock;
        let poll_started = clock.raw();
        let started = *this.started_raw.get_or_insert(poll_started);
        let result = this.inner.poll(cx);
        let poll_ended = clock.raw();
        let poll_ticks = poll_ended.saturating_sub(poll_started);
        if poll_ticks > *this.longest_poll_ticks {
            *this.longest_poll_ticks = poll_ticks;
        }
        let Poll::Ready(output) = result else {
            return Poll::Pending;
        };
        let blocked_ns = (*this.longest_poll_ticks >= probe.threshold_ticks)
            .then(|| clock.ticks_to_nanos(*this.longest_poll_ticks));
        finish_call(
            this.cell,
            this.label,
            clock.nanos_between(started, poll_ended),
            (this.classify)(&output),
            blocked_ns,
        );
        Poll::Ready(output)
    }
}

/// Times a closure on a blocking thread and records it when it returns or unwinds (a panic
/// counts as a failure).
pub(crate) struct BlockingCall {
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) label: CallLabel,
    pub(crate) started_raw: u64,
    /// Whether the closure's output was a failure, once it has returned.
    pub(crate) failed: Option<bool>,
}

impl Drop for BlockingCall {
    fn drop(&mut self) {
        let clock = &self.cell.probe().clock;
        let duration_ns = clock.nanos_between(self.started_raw, clock.raw());
        finish_call(
            &self.cell,
            &self.label,
            duration_ns,
            self.failed.unwrap_or(true),
            None,
        );
    }
}
