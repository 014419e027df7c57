//! openrtc: many voice-agent sessions in one worker process, each measured exactly.
//!
//! Every session is a Tokio task on the pool's own multi-thread runtime. Each poll of a
//! session's tasks is timed with the TSC and charged to that session; a poll that blocks a
//! worker thread past the slow threshold is seen by a watchdog thread while it still blocks
//! and is attributed to exactly that session. A private Unix socket serves snapshots to
//! `openrtc top`.
//!
//! ```no_run
//! use std::time::Duration;
//! use openrtc::{AgentPool, JobRequest, Session, agent_fn};
//!
//! let pool = AgentPool::builder()
//!     .agent("echo", agent_fn(|session: Session| async move {
//!         let mut frames = tokio::time::interval(Duration::from_millis(20));
//!         loop {
//!             tokio::select! {
//!                 _ = frames.tick() => { /* handle one 20 ms audio frame */ }
//!                 () = session.cancelled() => return Ok(()),
//!             }
//!         }
//!     }))
//!     .worker_name("edge-1")
//!     .build()?;
//! let handle = pool.handle();
//! handle.launch(JobRequest::new().tenant("acme"))?;
//! println!("inspect with: openrtc top");
//! pool.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Figures and what they mean
//!
//! - **Busy time** is wall time spent inside the polls of a session's tasks (children
//!   included), measured with the TSC. It is not thread CPU time: if the OS preempts a worker
//!   thread mid-poll, that time counts too.
//! - **`cpu_pct`** is busy time over the last CPU window (1 s) as a percentage of one core.
//! - **A stall** is any poll at or over the slow threshold, counted once, with its exact
//!   duration. A session shows `slow` from the moment the watchdog sees it blocking (within
//!   a few milliseconds of crossing the threshold) until the slow hold after its last stall.
//! - **Worker numbers** are 0-based indexes of the runtime's worker threads, in the order they
//!   first ran a session.

mod admission;
mod agent;
pub mod alloc;
pub mod calls;
mod classify;
mod error;
mod events;
mod frames;
pub mod health;
mod http;
mod introspect;
mod isolation;
/// Phone calls over a Twilio-compatible media WebSocket: the listener, the agent's
/// `CallMedia`, G.711 codecs and the providers' frames.
pub mod media;
mod os;
mod panics;
mod pool;
mod probe;
mod serve;
mod session;
pub mod source;
mod stack;
mod stall_histogram;
pub mod telemetry;
mod tenant_config;
mod units;
mod watchdog;

pub use agent::{Agent, AgentFn, agent_fn};
pub use calls::{CallLabel, TrackedOutput};
pub use error::{AgentError, ConfigError, LookupError, Rejected, RunError};
pub use frames::{Frame, Frames};
pub use isolation::offences::AutoIsolation;
pub use openrtc_proto::{PoolSnapshot, RefusalReason};
pub use pool::{AgentPool, AgentPoolBuilder, PoolHandle, RunningPool};
pub use session::{
    CancelReason, JobRequest, KillReason, OutcomeFuture, ParseSessionIdError, Session,
    SessionHandle, SessionId, SessionOutcome,
};
pub use tenant_config::{BreakerConfig, Isolation, TenantConfig, TenantConfigError, TenantPolicy};

/// Figures of this process, read from `/proc`: what a worker's snapshot header reports, for
/// tools (benchmarks, supervisors) that measure a worker from inside it.
pub mod process {
    use std::time::Duration;

    /// CPU time the process has used so far, all threads, user and system.
    #[must_use]
    pub fn cpu_time() -> Duration {
        crate::os::process_cpu_time()
    }

    /// The process's resident set size, in bytes (0 if `/proc` cannot be read).
    #[must_use]
    pub fn resident_set_bytes() -> u64 {
        crate::os::resident_set_bytes()
    }

    /// The highest resident set size the process has had, in bytes (`VmHWM`).
    #[must_use]
    pub fn peak_resident_set_bytes() -> u64 {
        crate::os::peak_resident_set_bytes()
    }
}

/// The wire types of snapshots and the socket protocol, shared with the `openrtc` CLI.
pub use openrtc_proto as proto;

/// Silero voice activity detection per session (the `openrtc-vad` crate; feature `vad`, off by
/// default since its inference engine takes minutes to build): load one `SileroModel` in the
/// pool's prewarm (`.prewarm(|| async { vad::SileroModel::load() })`), and give each session
/// its own `SileroVad` over it (`session.shared::<vad::SileroModel>()`).
#[cfg(feature = "vad")]
pub use openrtc_vad as vad;

/// Locks one of the runtime's mutexes, going on past poison: they guard plain counters and
/// lists that a panic elsewhere cannot leave in a state worth refusing to read.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entry points for the crate's own benchmarks; not a stable API. Built only with the `bench`
/// feature, which the crate's benchmarks enable (a dev-dependency on itself): they time
/// internals (the probe on one poll, allocator accounts, the socket's snapshot writer, the
/// stack capture) that no public API reaches alone.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod __bench {
    use std::future::Future;

    use crate::AgentPool;

    /// Wraps `future` in the attribution probe of `pool`, as a session's root future would be,
    /// attributed to a session that is not registered anywhere.
    pub fn attributed<F: Future>(pool: &AgentPool, future: F) -> impl Future<Output = F::Output> {
        pool.bench_attributed(future, false)
    }

    /// Like [`attributed`], with the session's memory tracked (an allocator account to enter
    /// and a cap to check on every poll), as when the tracking allocator is installed.
    pub fn attributed_tracked<F: Future>(
        pool: &AgentPool,
        future: F,
    ) -> impl Future<Output = F::Output> {
        pool.bench_attributed(future, true)
    }

    /// Wraps `future` as a session's task is polled: the attribution probe inside the guard
    /// that catches a panic and marks the thread as inside a session for the panic hook.
    pub fn session_task<F: Future>(
        pool: &AgentPool,
        future: F,
    ) -> impl Future<Output = impl Sized> {
        crate::panics::CatchPanic::new(
            pool.bench_attributed(future, false),
            crate::panics::Mark::session(false),
        )
    }

    /// A session registered nowhere, whose calls can be tracked as `Session::track` does.
    pub struct TrackingSession(std::sync::Arc<crate::session::SessionCell>);

    impl TrackingSession {
        /// A session of `pool`, whose tracked calls count in its tables.
        #[must_use]
        pub fn new(pool: &AgentPool) -> Self {
            Self(pool.unregistered_cell(u64::MAX, "bench"))
        }

        /// `future` as a tracked call under `label`, as `Session::track` wraps it.
        pub fn track<F>(&self, label: &'static str, future: F) -> impl Future<Output = F::Output>
        where
            F: Future,
            F::Output: crate::TrackedOutput,
        {
            crate::calls::Tracked::new(
                future,
                std::sync::Arc::clone(&self.0),
                label.into(),
                crate::TrackedOutput::is_failure as fn(&F::Output) -> bool,
            )
        }
    }

    /// Writes the socket's answer to a snapshot request into `out`, as the socket thread does.
    pub fn write_snapshot_response(handle: &crate::PoolHandle, out: &mut Vec<u8>) {
        handle.bench_write_snapshot_response(out);
    }

    /// Runs `work` with this thread's allocations charged to a fresh session account (as
    /// during a session's poll), then frees the account (or retires it, if `work` left
    /// blocks charged to it).
    pub fn in_session_account<R>(work: impl FnOnce() -> R) -> R {
        let account = crate::alloc::accounts::claim(0).unwrap_or(0);
        let previous = crate::alloc::enter_account(account);
        let result = work();
        crate::alloc::leave_account(previous);
        if account != 0 {
            crate::alloc::accounts::release(account);
        }
        result
    }

    /// A thread as the watchdog's stack capture sees it: its kernel thread id and its stack's
    /// bounds. The benchmark runs the thread itself.
    #[derive(Clone, Copy, Debug)]
    pub struct CaptureTarget {
        tid: i32,
        stack: Option<(usize, usize)>,
    }

    impl CaptureTarget {
        /// The calling thread.
        #[must_use]
        pub fn current() -> Self {
            Self {
                tid: crate::os::current_tid(),
                stack: crate::os::current_thread_stack(),
            }
        }

        /// Captures the thread's stack as the watchdog does; returns the number of frames.
        #[must_use]
        pub fn capture(&self) -> usize {
            crate::stack::capture::capture(self.tid, self.stack, std::time::Duration::from_secs(1))
                .map_or(0, |raw| raw.addresses.len())
        }

        /// Captures and symbolizes the thread's stack; returns the number of frames kept.
        #[must_use]
        pub fn capture_and_symbolize(&self) -> usize {
            crate::stack::capture::capture(self.tid, self.stack, std::time::Duration::from_secs(1))
                .map_or(0, |raw| crate::stack::symbols::symbolize(&raw).frames.len())
        }
    }
}
