//! The supervisor loop and drain: what stops a pool (a signal, `run_until`'s future, a
//! handle's drain or shutdown, the memory limit, the failure budget), and the drain that
//! follows, with its `[drain]` log lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{ABORT_WAIT, Control, PoolShared};
use crate::RunError;
use crate::session::{CancelReason, StopRequest};
use crate::units::duration_ms;

/// Why a drain began, as its log line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DrainCause {
    /// SIGINT or SIGTERM (its name).
    Signal(&'static str),
    /// The future given to `run_until` resolved.
    RunUntil,
    /// `PoolHandle::begin_drain`.
    BeginDrain,
    /// `PoolHandle::shutdown`: no wait for sessions.
    Shutdown,
    /// The worker's RSS crossed its memory limit.
    MemoryLimit,
    /// Sessions failed in a row up to the consecutive failure limit.
    FailureBudget,
    /// A worker thread was blocked in one poll past `restart_after`.
    BlockedWorker,
}

impl DrainCause {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Signal(name) => name,
            Self::RunUntil => "run_until",
            Self::BeginDrain => "begin_drain",
            Self::Shutdown => "shutdown",
            Self::MemoryLimit => "memory_limit",
            Self::FailureBudget => "failure_budget",
            Self::BlockedWorker => "blocked_worker",
        }
    }
}

/// What a drain did, counted by when each session ended.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DrainCounts {
    /// Sessions that ended before the deadline, whatever their outcome.
    ended_by_themselves: u64,
    /// Sessions that ended after they were cancelled, within the cancel grace.
    ended_on_cancel: u64,
    /// Sessions still running when the cancel grace ran out, dropped at their next poll.
    dropped: u64,
    /// Dropped sessions that had still not ended when the runtime stopped (stuck inside a
    /// synchronous call).
    still_running: u64,
}

/// The supervisor loop: waits for a stop, then drains. Returns what stopped it and what the
/// drain did.
pub(super) async fn supervise(
    shared: &PoolShared,
    control: &mut mpsc::UnboundedReceiver<Control>,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    signals: Option<Signals>,
) -> (Control, DrainCounts) {
    let mut stop = stop;
    let mut signals = signals;
    let (first, cause) = next_input(control, &mut stop, signals.as_mut()).await;
    shared.draining.store(true, Ordering::Release);
    let config = &shared.config;
    let worker = config.worker_name.as_str();
    // The sessions live at the start, those cancelled and those dropped are counted from the
    // same lists, so the end line's figures add up to the start line's.
    let at_start = shared.live_sessions();
    let live = at_start.len() as u64;
    let mut counts = DrainCounts::default();
    shared.events.emit(crate::events::Event::DrainStarted {
        why: cause.as_str(),
        live_sessions: live,
        deadline: if first == Control::Shutdown {
            std::time::Duration::ZERO
        } else {
            config.drain_timeout
        },
    });
    let (reason, to_cancel) = if first == Control::Shutdown {
        tracing::info!(
            event = "drain_start",
            worker,
            why = cause.as_str(),
            live_sessions = live,
            deadline_ms = 0_u64,
            cancel_grace_ms = duration_ms(config.cancel_grace),
            "[drain] {why}: accepting no new session; cancelling the {live} live sessions now, \
             dropping any still running {grace:?} later",
            why = cause.as_str(),
            grace = config.cancel_grace,
        );
        (CancelReason::Shutdown, at_start)
    } else {
        drop(at_start);
        tracing::info!(
            event = "drain_start",
            worker,
            why = cause.as_str(),
            live_sessions = live,
            deadline_ms = duration_ms(config.drain_timeout),
            cancel_grace_ms = duration_ms(config.cancel_grace),
            "[drain] {why}: accepting no new session; waiting up to {deadline:?} for the {live} \
             live sessions to end, then cancelling the rest",
            why = cause.as_str(),
            deadline = config.drain_timeout,
        );
        let reason = tokio::select! {
            empty = shared.wait_until_empty(config.drain_timeout) => {
                (!empty).then_some(CancelReason::DrainTimeout)
            }
            () = next_shutdown(control, signals.as_mut()) => Some(CancelReason::Shutdown),
        };
        let Some(reason) = reason else {
            counts.ended_by_themselves = live;
            return (first, counts);
        };
        let to_cancel = shared.live_sessions();
        counts.ended_by_themselves = live.saturating_sub(to_cancel.len() as u64);
        let left = to_cancel.len();
        let why = match reason {
            CancelReason::Shutdown => "shutdown requested",
            _ => "deadline reached",
        };
        tracing::warn!(
            event = "drain_cancel",
            worker,
            why,
            cancelling = left,
            cancel_grace_ms = duration_ms(config.cancel_grace),
            "[drain] {why}: cancelling {left} sessions; any still running {grace:?} later is \
             dropped",
            grace = config.cancel_grace,
        );
        (reason, to_cancel)
    };
    let cancelled = to_cancel.len() as u64;
    for cell in to_cancel {
        cell.request_stop(StopRequest::Cancel(reason));
    }
    shared.wait_until_empty(config.cancel_grace).await;
    let remaining = shared.live_sessions();
    counts.dropped = remaining.len() as u64;
    counts.ended_on_cancel = cancelled.saturating_sub(counts.dropped);
    for cell in remaining {
        cell.abort_root();
    }
    if !shared.wait_until_empty(ABORT_WAIT).await {
        counts.still_running = u64::from(shared.active_sessions());
    }
    (first, counts)
}

/// The drain's last line: what it did, and what `run` returns.
pub(super) fn log_drain_end(worker: &str, counts: DrainCounts, result: &Result<(), RunError>) {
    let exit_code = result.as_ref().map_or_else(RunError::exit_code, |()| 0);
    let returns = match result {
        Ok(()) => "Ok".to_owned(),
        Err(error) => format!("an error: {error}"),
    };
    let DrainCounts {
        ended_by_themselves,
        ended_on_cancel,
        dropped,
        still_running,
    } = counts;
    let stuck = if still_running == 0 {
        String::new()
    } else {
        format!(" ({still_running} of them still stuck in a synchronous call at exit)")
    };
    let clean = result.is_ok() && dropped == 0;
    macro_rules! drain_end {
        ($level:ident) => {
            tracing::$level!(
                event = "drain_end",
                worker,
                ended_by_themselves,
                ended_on_cancel,
                dropped,
                still_running,
                exit_code,
                "[drain] done: {ended_by_themselves} ended by themselves, {ended_on_cancel} on \
                 cancel, {dropped} dropped after the cancel grace{stuck}; run returns {returns} \
                 (exit code {exit_code})"
            )
        };
    }
    if clean {
        drain_end!(info);
    } else {
        drain_end!(warn);
    }
}

/// SIGINT and SIGTERM, when the pool owns the process's signals.
pub(super) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime's context).
    pub(super) fn install() -> Option<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let installed = signal(SignalKind::interrupt())
            .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
        match installed {
            Ok((interrupt, terminate)) => Some(Self {
                interrupt,
                terminate,
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot install signal handlers: stop the pool through its handle");
                None
            }
        }
    }

    /// The next SIGINT or SIGTERM, by name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The next signal's name, if the pool owns them; never otherwise.
async fn next_signal(signals: Option<&mut Signals>) -> &'static str {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn next_input(
    control: &mut mpsc::UnboundedReceiver<Control>,
    stop: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    signals: Option<&mut Signals>,
) -> (Control, DrainCause) {
    let stop_future = async {
        match stop {
            Some(stop) => stop.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        received = control.recv() => {
            let received = received.unwrap_or(Control::Drain);
            let cause = match received {
                Control::Drain => DrainCause::BeginDrain,
                Control::Shutdown => DrainCause::Shutdown,
                Control::MemoryLimit { .. } => DrainCause::MemoryLimit,
                Control::FailureBudget { .. } => DrainCause::FailureBudget,
                Control::BlockedWorker { .. } => DrainCause::BlockedWorker,
            };
            (received, cause)
        }
        () = stop_future => (Control::Drain, DrainCause::RunUntil),
        name = next_signal(signals) => (Control::Drain, DrainCause::Signal(name)),
    }
}

async fn next_shutdown(
    control: &mut mpsc::UnboundedReceiver<Control>,
    signals: Option<&mut Signals>,
) {
    let control_future = async {
        while let Some(received) = control.recv().await {
            if received == Control::Shutdown {
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = next_signal(signals) => {}
        () = control_future => {}
    }
}
