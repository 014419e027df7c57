//! Panics inside sessions: the process-wide hook that records them without printing or
//! symbolizing on the worker thread, the one `[session-panic]` line, and the thread that
//! symbolizes the backtraces asked for.
//!
//! std's default hook prints a panic on the panicking thread and, with `RUST_BACKTRACE` set,
//! symbolizes a backtrace there too: the first one loads the binary's debug info into std's
//! own symbol cache, which held a worker thread for most of 200 ms (a stall of every session
//! queued behind it) and kept about 50 MiB live for the rest of the process, charged to the
//! panicking session. Here a panic inside a session's poll costs its worker thread the message,
//! the location and, only when backtraces are asked for, one walk of the unwinder over raw
//! return addresses. The session's catch site logs one line and hands the addresses to a
//! reporter thread of its own, which symbolizes them.
//!
//! The reporter symbolizes with `stack::symbols` (the `backtrace` crate) rather than std's
//! `Backtrace`: std's symbol cache is global and never freed, while the crate's cache is
//! dropped after a quiet minute, so the debug info costs memory only while panics happen. It
//! is loaded on the reporter thread, outside any session, so it is charged to the `runtime`
//! bucket, not to the session that panicked.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::session::{SessionCell, SessionId};
use crate::stack::capture::RawStack;
use crate::stack::symbols::{self, Frame};

/// The name of the thread that symbolizes and logs panic backtraces.
pub(crate) const REPORTER_THREAD_NAME: &str = "openrtc-panics";

/// At most this many return addresses are taken from a panicking thread.
const MAX_ADDRESSES: usize = 128;

/// How many backtraces may wait for the reporter before new ones are dropped (and counted).
const QUEUE_CAPACITY: usize = 64;

/// How long the debug info stays loaded after the last backtrace was symbolized.
const SYMBOLS_KEPT: Duration = Duration::from_secs(60);

/// What the thread is doing, for the hook: polling no session, or polling one (with or
/// without backtraces asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    Outside,
    Session,
    SessionWithBacktrace,
}

impl Mark {
    /// The mark of a session's polls, by whether its pool asks for panic backtraces.
    pub(crate) fn session(backtraces: bool) -> Self {
        if backtraces {
            Self::SessionWithBacktrace
        } else {
            Self::Session
        }
    }
}

thread_local! {
    /// Whether this thread is inside a session's poll: set and restored around each poll by
    /// [`CatchPanic`] (two stores of a const-initialised `Cell`, nothing else).
    static MARK: Cell<Mark> = const { Cell::new(Mark::Outside) };
    /// The last panic the hook saw inside a session on this thread, for the catch site.
    static RECORDED: RefCell<Option<Recorded>> = const { RefCell::new(None) };
}

/// What the hook records of a panic inside a session.
struct Recorded {
    message: String,
    location: Option<String>,
    addresses: Option<Vec<usize>>,
}

/// Whether std's convention asks for panic backtraces: `RUST_BACKTRACE` set to anything but
/// `0` (std's panic hook reads only this variable; `RUST_LIB_BACKTRACE` is for the backtraces
/// libraries capture, not panics).
pub(crate) fn backtraces_asked_for(rust_backtrace: Option<&OsStr>) -> bool {
    rust_backtrace.is_some_and(|value| !value.is_empty() && value != "0")
}

/// Installs the runtime's panic hook, once per process, over whatever hook was there.
///
/// Panics outside a session's poll go to that previous hook unchanged, so an application's own
/// hook (or std's default output) still sees them. A hook set later replaces this one, and
/// session panics then go to it as well.
pub(crate) fn install_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if MARK.get() == Mark::Outside {
                previous(info);
            } else {
                record(info);
            }
        }));
    });
}

/// Records a panic inside a session for its catch site: no printing, no symbolization.
#[cold]
fn record(info: &PanicHookInfo<'_>) {
    let message = payload_message(info.payload());
    let location = info.location().map(|location| {
        format!(
            "{}:{}:{}",
            location.file(),
            location.line(),
            location.column()
        )
    });
    let addresses = (MARK.get() == Mark::SessionWithBacktrace).then(raw_addresses);
    RECORDED.set(Some(Recorded {
        message,
        location,
        addresses,
    }));
}

/// The return addresses on this thread's stack, innermost first, unresolved: the unwinder
/// reads the unwind tables and no debug info (a few microseconds), and takes no lock that a
/// symbolization elsewhere could hold (see `stack::capture::own_return_addresses`).
fn raw_addresses() -> Vec<usize> {
    crate::stack::capture::own_return_addresses(MAX_ADDRESSES)
}

/// A panic's message: its payload when that is a string.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// A panic caught at the end of a session's poll.
pub(crate) struct CaughtPanic {
    /// The payload, for a catch site that passes the panic on (a child task's join handle).
    pub(crate) payload: Box<dyn Any + Send>,
    pub(crate) message: String,
    /// `file:line:column`, when the hook recorded it.
    pub(crate) location: Option<String>,
    addresses: Option<Vec<usize>>,
}

impl std::fmt::Debug for CaughtPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaughtPanic")
            .field("message", &self.message)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl CaughtPanic {
    /// The caught payload, with what the hook recorded of the same panic on this thread.
    #[cold]
    fn new(payload: Box<dyn Any + Send>) -> Self {
        let message = payload_message(payload.as_ref());
        // A record with another message is of a panic the agent caught itself: not this one.
        let recorded = RECORDED
            .take()
            .filter(|recorded| recorded.message == message);
        let (location, addresses) = recorded.map_or((None, None), |recorded| {
            (recorded.location, recorded.addresses)
        });
        Self {
            payload,
            message,
            location,
            addresses,
        }
    }

    /// Logs the one `[session-panic]` line, and sends the backtrace (if one was taken) to the
    /// reporter thread. `task` is `root` or `child`.
    #[cold]
    pub(crate) fn report(&mut self, cell: &SessionCell, task: &'static str) {
        let at = self
            .location
            .as_deref()
            .map_or_else(String::new, |location| format!(" at {location}"));
        tracing::warn!(
            event = "session_panic",
            session_id = %cell.id(),
            tenant = cell.tenant(),
            agent = cell.agent(),
            task,
            location = self.location.as_deref().unwrap_or(""),
            panic_message = self.message.as_str(),
            "[session-panic] session_id={} tenant={} agent={} {task} task panicked{at}: {}",
            cell.id(),
            cell.tenant(),
            cell.agent(),
            self.message
        );
        if let Some(addresses) = self.addresses.take() {
            send(BacktraceJob {
                session_id: cell.id(),
                tenant: cell.tenant().to_owned(),
                agent: cell.agent().to_owned(),
                message: self.message.clone(),
                location: self.location.clone(),
                addresses,
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// Marks the thread as inside the session for each poll of the inner future, and catches a
    /// panic in it with what the hook recorded.
    pub(crate) struct CatchPanic<F> {
        #[pin]
        inner: F,
        mark: Mark,
    }
}

impl<F> CatchPanic<F> {
    pub(crate) fn new(inner: F, mark: Mark) -> Self {
        Self { inner, mark }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, CaughtPanic>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let outer = MARK.replace(*this.mark);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
        MARK.set(outer);
        match result {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(CaughtPanic::new(payload))),
        }
    }
}

/// A backtrace on its way to the reporter thread.
struct BacktraceJob {
    session_id: SessionId,
    tenant: String,
    agent: String,
    message: String,
    location: Option<String>,
    addresses: Vec<usize>,
}

/// Backtraces dropped because the reporter's queue was full (or it could not start).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Hands a backtrace to the reporter thread, started by the first one; drops and counts it
/// when the queue is full.
fn send(job: BacktraceJob) {
    static REPORTER: OnceLock<Option<mpsc::SyncSender<BacktraceJob>>> = OnceLock::new();
    let reporter = REPORTER.get_or_init(|| {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name(REPORTER_THREAD_NAME.to_owned())
            .spawn(move || report_backtraces(&receiver))
            .ok()
            .map(|_| sender)
    });
    let sent = reporter
        .as_ref()
        .is_some_and(|sender| sender.try_send(job).is_ok());
    if !sent {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The reporter thread: symbolizes and logs each backtrace, and unloads the debug info once
/// none has been symbolized for [`SYMBOLS_KEPT`]. It lives as long as the process.
fn report_backtraces(jobs: &mpsc::Receiver<BacktraceJob>) {
    let mut symbolized_at: Option<Instant> = None;
    loop {
        let wait = symbolized_at.map_or(Duration::MAX, |at| {
            SYMBOLS_KEPT.saturating_sub(at.elapsed())
        });
        match jobs.recv_timeout(wait) {
            Ok(job) => {
                log_backtrace(&job);
                symbolized_at = Some(Instant::now());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if symbolized_at.is_some_and(|at| at.elapsed() >= SYMBOLS_KEPT) {
            symbolized_at = None;
            symbols::unload();
        }
    }
}

/// Symbolizes one backtrace and logs it as one event.
fn log_backtrace(job: &BacktraceJob) {
    let frames = after_panic_machinery(symbols::resolve(&RawStack {
        addresses: job.addresses.clone(),
    }));
    let stack = symbols::trim(frames);
    let mut text = format!(
        "[session-panic-backtrace] session_id={} tenant={} agent={} panicked",
        job.session_id, job.tenant, job.agent
    );
    if let Some(location) = &job.location {
        text.push_str(" at ");
        text.push_str(location);
    }
    text.push_str(": ");
    text.push_str(&job.message);
    for (index, frame) in stack.frames.iter().enumerate() {
        text.push_str(&format!("\n  {index:>2}: {frame}"));
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        text.push_str(&format!(
            "\n  ({dropped} earlier backtraces dropped: the queue was full)"
        ));
    }
    tracing::warn!(
        event = "session_panic_backtrace",
        session_id = %job.session_id,
        tenant = job.tenant.as_str(),
        agent = job.agent.as_str(),
        "{text}"
    );
}

/// The frames under the panic machinery (the unwinder walk, the hook, std's panic entry
/// points): the first is the code that panicked, or the library function it called that did.
///
/// Like std's short backtraces, it cuts at std's `__rust_end_short_backtrace` marker (or the
/// `rust_begin_unwind` under it), then at the panic functions right under that.
fn after_panic_machinery(mut frames: Vec<Frame>) -> Vec<Frame> {
    let marker = frames.iter().position(|frame| {
        frame.function.contains("__rust_end_short_backtrace")
            || frame.function.contains("rust_begin_unwind")
    });
    let Some(marker) = marker else {
        return frames;
    };
    let panic_functions = frames[marker + 1..]
        .iter()
        .take_while(|frame| {
            let function = frame.function.as_str();
            function.contains("rust_begin_unwind")
                || function.starts_with("core::panicking::")
                || function.starts_with("std::panicking::")
                || function.starts_with("std::panic::panic_any")
        })
        .count();
    frames.drain(..=marker + panic_functions);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::symbols::Origin;

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.to_owned(),
            file: None,
            line: None,
            origin: Origin::Library,
        }
    }

    #[test]
    fn backtraces_follow_rust_backtrace() {
        assert!(!backtraces_asked_for(None));
        assert!(!backtraces_asked_for(Some(OsStr::new("0"))));
        assert!(!backtraces_asked_for(Some(OsStr::new(""))));
        assert!(backtraces_asked_for(Some(OsStr::new("1"))));
        assert!(backtraces_asked_for(Some(OsStr::new("full"))));
    }

    #[test]
    fn the_panic_machinery_is_cut_off_the_top() {
        let frames = after_panic_machinery(vec![
            frame("backtrace::backtrace::trace"),
            frame("openrtc::panics::record"),
            frame("std::panicking::rust_panic_with_hook"),
            frame("std::sys::backtrace::__rust_end_short_backtrace"),
            frame("__rustc::rust_begin_unwind"),
            frame("core::panicking::panic_fmt"),
            frame("core::option::expect_failed"),
            frame("app::agent::run"),
            frame("openrtc::probe::poll"),
            frame("std::panicking::catch_unwind::do_call"),
        ]);
        let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(
            names,
            [
                "core::option::expect_failed",
                "app::agent::run",
                "openrtc::probe::poll",
                "std::panicking::catch_unwind::do_call"
            ]
        );
        // Without any machinery (an unknown unwinder), nothing is cut.
        assert_eq!(after_panic_machinery(vec![frame("app::x")]).len(), 1);
    }

    #[test]
    fn payload_messages_are_read_from_both_string_kinds() {
        assert_eq!(payload_message(&"static"), "static");
        assert_eq!(payload_message(&String::from("owned")), "owned");
        assert_eq!(payload_message(&42_u32), "panic with a non-string payload");
    }
}
