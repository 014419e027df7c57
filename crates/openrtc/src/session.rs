//! Sessions: the handle given to agents, ids, job requests, and the root task's lifecycle.

mod cell;
mod handle;
mod outcome;
mod tasks;

pub(crate) use cell::{KEPT_VICTIMS, SessionCell, StallCause, StallRecord, Victim};
pub use handle::{OutcomeFuture, SessionHandle};
pub use outcome::{CancelReason, KillReason, SessionOutcome};
pub(crate) use outcome::{StopRequest, Verdict};
pub(crate) use tasks::{ChildEnd, TaskCounters};

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::agent::ErasedAgent;
use crate::calls::{CallLabel, TrackedOutput};
use crate::panics::{CatchPanic, Mark};
use crate::probe::Attributed;

pub use openrtc_proto::{ParseSessionIdError, SessionId};

/// The id of the session registered under `key`. Keys are handed out from 1 up, so every key
/// is an id (0, which no session has, would read as `s-1`).
pub(crate) fn session_id(key: u64) -> SessionId {
    debug_assert_ne!(key, 0, "session keys start at 1");
    SessionId::from_u64(key).unwrap_or(SessionId::FIRST)
}

/// A request for a new session: which agent, for which tenant, with what metadata.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobRequest {
    /// The agent to run; `None` routes to the first registered agent. An unknown name is
    /// refused, never rerouted.
    pub agent: Option<String>,
    /// The tenant the session belongs to ([`JobRequest::DEFAULT_TENANT`] unless set).
    pub tenant: String,
    /// Free-form metadata handed to the agent and shown by `openrtc top`.
    pub metadata: serde_json::Value,
    /// Runs the session in a process of its own when `Some(Isolation::Process)`, whatever
    /// its tenant's config says; `None` follows the tenant (its config's `isolation`, or
    /// automatic isolation of a tenant that keeps hurting its neighbours).
    pub isolation: Option<crate::Isolation>,
}

impl JobRequest {
    /// The tenant of a request that names none.
    pub const DEFAULT_TENANT: &'static str = "default";

    /// A request for the default agent and tenant, with no metadata.
    #[must_use]
    pub fn new() -> Self {
        Self {
            agent: None,
            tenant: Self::DEFAULT_TENANT.to_owned(),
            metadata: serde_json::Value::Null,
            isolation: None,
        }
    }

    /// Asks for the agent registered under `name`.
    #[must_use]
    pub fn agent(mut self, name: impl Into<String>) -> Self {
        self.agent = Some(name.into());
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Asks for this isolation, whatever the tenant's: `Isolation::Process` runs the session
    /// in a process of its own (the worker's binary started again in its child mode),
    /// `Isolation::Coroutine` keeps it in the worker even for an isolated tenant.
    #[must_use]
    pub fn isolation(mut self, isolation: crate::Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }
}

impl Default for JobRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// The handle an agent gets for one session.
///
/// Cloning it is cheap; every clone speaks of the same session.
#[derive(Clone)]
pub struct Session {
    cell: Arc<SessionCell>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("agent", &self.agent())
            .field("tenant", &self.tenant())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's id.
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.cell.id()
    }

    /// The name of the agent running it.
    #[must_use]
    pub fn agent(&self) -> &str {
        self.cell.agent()
    }

    /// Its tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        self.cell.tenant()
    }

    /// The metadata of the request that started it.
    #[must_use]
    pub fn metadata(&self) -> &serde_json::Value {
        self.cell.metadata()
    }

    /// The state the pool's prewarm loaded ([`crate::AgentPoolBuilder::prewarm`]): the same
    /// `Arc` for every session of the worker. `None` if the pool has no prewarm, or its value
    /// is not a `T`.
    #[must_use]
    pub fn shared<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.cell.pool()?.shared_value::<T>()
    }

    /// The session's phone call, when it came from the media listener (`.media_listener`):
    /// the first call takes it, later ones (and sessions launched from code) get `None`.
    #[must_use]
    pub fn media(&self) -> Option<crate::media::CallMedia> {
        self.cell.take_media()
    }

    /// The LiveKit job this session runs (room, participant, dispatch metadata, the token to
    /// join the room with), when a LiveKit server dispatched it (`AgentPoolBuilder::livekit`).
    #[cfg(feature = "livekit")]
    #[must_use]
    pub fn livekit(&self) -> Option<&crate::source::livekit::LiveKitJob> {
        self.cell.livekit().map(|job| &**job)
    }

    /// Joins the room of this session's LiveKit job with the job's token, and runs the room
    /// (signalling, peer connections, Opus) as a child task of this session, so its CPU and
    /// stalls are the session's. `None` when no LiveKit server dispatched the session.
    #[cfg(feature = "livekit")]
    pub async fn livekit_room(
        &self,
    ) -> Option<
        Result<crate::source::livekit::room::RoomAudio, crate::source::livekit::room::RoomError>,
    > {
        let job = self.livekit()?;
        let spawn = |room| {
            self.spawn(room);
        };
        Some(
            crate::source::livekit::room::RoomAudio::connect_with(&job.url, &job.token, spawn)
                .await,
        )
    }

    /// Spawns a child task on the pool's runtime, attributed to this session: its polls count
    /// in the session's busy time and stalls. It is aborted when the session ends.
    ///
    /// A panic in it is logged once as the session's (`[session-panic] … child task
    /// panicked`), like the root task's, and its join handle yields it as a
    /// [`tokio::task::JoinError`]; the session goes on.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (child, stats) = self.cell.register_child();
        let attributed = Attributed::new(future, Arc::clone(&self.cell), stats);
        let caught = CatchPanic::new(attributed, Mark::session(self.cell.panic_backtraces()));
        let mut guard = ChildGuard {
            cell: Arc::clone(&self.cell),
            child,
            end: ChildEnd::Cancelled,
        };
        let join = self.runtime.spawn(async move {
            match caught.await {
                Ok(output) => {
                    guard.end = ChildEnd::Completed;
                    drop(guard);
                    output
                }
                Err(mut panic) => {
                    panic.report(&guard.cell, "child");
                    guard.end = ChildEnd::Panicked;
                    drop(guard);
                    // Passed on as it came, so the join handle yields it; the hook does not
                    // run again for a resumed panic.
                    std::panic::resume_unwind(panic.payload)
                }
            }
        });
        self.cell.set_child_abort(child, join.abort_handle());
        join
    }

    /// Runs blocking work (a synchronous client, file I/O, a CPU-heavy step) on the pool's
    /// blocking threads, off the worker threads, as this session's: its log records carry
    /// the session, and its allocations are charged to it. Not aborted when the session
    /// ends (a blocking call cannot be interrupted); await the handle before returning.
    pub fn spawn_blocking<F, R>(&self, work: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let cell = Arc::clone(&self.cell);
        self.runtime.spawn_blocking(move || {
            let account = cell.account();
            let previous = (account != 0).then(|| crate::alloc::enter_account(account));
            /// Gives the thread its own account back, on unwind too.
            struct Leave(Option<u32>);
            impl Drop for Leave {
                fn drop(&mut self) {
                    if let Some(previous) = self.0 {
                        crate::alloc::leave_account(previous);
                    }
                }
            }
            let _leave = Leave(previous);
            crate::telemetry::current::scope(&cell, work)
        })
    }

    /// Runs `future` as a tracked call under `label` and returns its output: counted per label
    /// for the session and the worker (calls, failures, a duration histogram, slow calls and
    /// blocking calls; see [`crate::calls`]). A failure is an `Err` output
    /// ([`TrackedOutput`]); use [`Session::track_value`] for other outputs.
    ///
    /// Its duration runs from its first poll to its completion. A call during one of whose
    /// polls the worker thread was held at least the stall threshold is a blocking call, and
    /// is logged once (`[blocking-call]`). A call dropped before it completes is not counted.
    /// Cost: two clock reads per poll of the tracked future, and a few relaxed atomic adds
    /// when it completes. The future may borrow (a query on a borrowed pool); the returned
    /// future is `Send` when `future` is.
    pub fn track<F, L>(&self, label: L, future: F) -> impl Future<Output = F::Output> + use<F, L>
    where
        F: Future,
        F::Output: TrackedOutput,
        L: Into<CallLabel>,
    {
        crate::calls::Tracked::new(
            future,
            Arc::clone(&self.cell),
            label.into(),
            TrackedOutput::is_failure as fn(&F::Output) -> bool,
        )
    }

    /// [`Session::track`] for a future whose output says nothing of failure: no call of it
    /// counts as failed.
    pub fn track_value<F, L>(
        &self,
        label: L,
        future: F,
    ) -> impl Future<Output = F::Output> + use<F, L>
    where
        F: Future,
        L: Into<CallLabel>,
    {
        crate::calls::Tracked::new(
            future,
            Arc::clone(&self.cell),
            label.into(),
            (|_| false) as fn(&F::Output) -> bool,
        )
    }

    /// Runs `work` on the pool's blocking threads as [`Session::spawn_blocking`] does (in the
    /// session's logging and allocation scope), as a tracked call under `label`: timed on
    /// the blocking thread from the closure's start to its return (the wait for a free
    /// blocking thread is not counted). A failure is an `Err` output, or a panic, which the
    /// returned `JoinError` carries. Never a blocking call: it does not run on a worker
    /// thread. Counted even if the returned future is dropped first (the closure runs on).
    pub fn track_blocking<F, R>(
        &self,
        label: impl Into<CallLabel>,
        work: F,
    ) -> impl Future<Output = Result<R, tokio::task::JoinError>> + Send + 'static
    where
        F: FnOnce() -> R + Send + 'static,
        R: TrackedOutput + Send + 'static,
    {
        let cell = Arc::clone(&self.cell);
        let label = label.into();
        self.spawn_blocking(move || {
            let mut call = crate::calls::BlockingCall {
                started_raw: cell.probe().clock.raw(),
                cell,
                label,
                failed: None,
            };
            let output = work();
            call.failed = Some(output.is_failure());
            drop(call);
            output
        })
    }

    /// Resolves when the session is asked to stop: cancelled by an operator, past the drain
    /// deadline, or shut down. The agent should say goodbye and return; after the cancel
    /// grace period the runtime drops it at its next poll boundary.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + '_ {
        self.cell.cancellation().cancelled()
    }

    /// A cadence of frames every `period` on the pool's frame clock: frame `k` is due
    /// exactly `k` periods after the first, which comes within one period; a consumer that
    /// falls behind gets every missed frame at once, in order (like `tokio::time::interval`
    /// with `MissedTickBehavior::Burst`).
    ///
    /// Every session of the pool with the same period shares one clock, which wakes its
    /// sessions in millisecond slices spread over the period: one timer a millisecond
    /// however many sessions tick. Use it for a session's own fixed cadence (a synthetic
    /// source, a mixer, a detector); a call's audio is paced by its media socket instead,
    /// and a one-off timer or a sub-millisecond period is `tokio::time`'s. Dropping the
    /// `Frames` releases its place in the clock. A period under a millisecond (Tokio's timer
    /// resolution) is taken as one millisecond.
    ///
    /// ```no_run
    /// # async fn agent(session: openrtc::Session) -> Result<(), openrtc::AgentError> {
    /// let mut frames = session.frames(std::time::Duration::from_millis(20));
    /// loop {
    ///     tokio::select! {
    ///         frame = frames.tick() => { /* 20 ms of work for frame.index() */ }
    ///         () = session.cancelled() => return Ok(()),
    ///     }
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn frames(&self, period: std::time::Duration) -> crate::Frames {
        match self.cell.pool() {
            Some(pool) => crate::Frames::new(&pool.frame_clocks, period, &self.runtime),
            // The pool is gone (the session is being torn down): a clock of its own.
            None => crate::Frames::new(
                &crate::frames::FrameClocks::default(),
                period,
                &self.runtime,
            ),
        }
    }

    /// Whether the session has been asked to stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cell.cancellation().is_cancelled()
    }
}

/// Spawns `future` on the current runtime as a task of the session of `cell`: its polls are
/// the session's (busy time, stalls, allocations), and it counts as one of its child tasks.
/// Unlike `Session::spawn`, it is not aborted when the session ends: it watches for that
/// itself (a call's media pump closes its socket properly).
pub(crate) fn spawn_task_of<F>(cell: &Arc<SessionCell>, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (child, stats) = cell.register_child();
    let attributed = Attributed::new(future, Arc::clone(cell), stats);
    let caught = CatchPanic::new(attributed, Mark::session(cell.panic_backtraces()));
    let mut guard = ChildGuard {
        cell: Arc::clone(cell),
        child,
        end: ChildEnd::Cancelled,
    };
    tokio::spawn(async move {
        guard.end = match caught.await {
            Ok(()) => ChildEnd::Completed,
            Err(mut panic) => {
                panic.report(&guard.cell, "child");
                ChildEnd::Panicked
            }
        };
        drop(guard);
    });
}

/// Marks a child task finished when its future completes or is dropped, and counts how it
/// ended (`Cancelled` unless the task set another end before dropping it).
struct ChildGuard {
    cell: Arc<SessionCell>,
    child: u64,
    end: ChildEnd,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.cell.child_finished(self.child, self.end);
    }
}

/// Starts a session's root task on `runtime`; its end, however it comes, finishes the cell.
pub(crate) fn spawn_root(
    cell: Arc<SessionCell>,
    agent: Arc<dyn ErasedAgent>,
    runtime: &tokio::runtime::Handle,
) {
    let session = Session {
        cell: Arc::clone(&cell),
        runtime: runtime.clone(),
    };
    let future = agent.start(session);
    spawn_root_of(
        cell,
        async move {
            match future.await {
                Ok(()) => SessionOutcome::Completed,
                Err(error) => SessionOutcome::Failed(error),
            }
        },
        runtime,
    );
}

/// Starts an isolated session's root task on `runtime`: the proxy that runs the agent in a
/// process of its own and resolves to the session's outcome.
pub(crate) fn spawn_isolated_root(
    cell: Arc<SessionCell>,
    proxy: impl Future<Output = SessionOutcome> + Send + 'static,
    runtime: &tokio::runtime::Handle,
) {
    spawn_root_of(cell, proxy, runtime);
}

/// Spawns a root task, timed and caught like every session's: an end without error after a
/// stop was asked for is that stop; every other end (a failure, a crash, a limit) is the
/// outcome itself; a panic is `Panicked`.
fn spawn_root_of(
    cell: Arc<SessionCell>,
    root: impl Future<Output = SessionOutcome> + Send + 'static,
    runtime: &tokio::runtime::Handle,
) {
    let attributed = Attributed::new(root, Arc::clone(&cell), cell.root_stats());
    let caught = CatchPanic::new(attributed, Mark::session(cell.panic_backtraces()));
    let mut guard = RootGuard {
        cell: Arc::clone(&cell),
        outcome: None,
    };
    let join = runtime.spawn(async move {
        let result = caught.await;
        guard.set_outcome(match result {
            Ok(SessionOutcome::Completed) => guard
                .cell
                .stop_request()
                .map_or(SessionOutcome::Completed, StopRequest::outcome),
            Ok(outcome) => outcome,
            Err(mut panic) => {
                panic.report(&guard.cell, "root");
                SessionOutcome::Panicked {
                    message: panic.message,
                    location: panic.location,
                }
            }
        });
    });
    cell.set_abort(join.abort_handle());
}

/// Finishes the session when its root task ends or is dropped (aborted, runtime shut down).
struct RootGuard {
    cell: Arc<SessionCell>,
    outcome: Option<SessionOutcome>,
}

impl RootGuard {
    fn set_outcome(&mut self, outcome: SessionOutcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| {
            self.cell.stop_request().map_or(
                SessionOutcome::Cancelled(CancelReason::Shutdown),
                StopRequest::outcome,
            )
        });
        self.cell.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_print_and_parse_as_s_n() {
        assert_eq!(session_id(42).to_string(), "s-42");
        assert_eq!("s-42".parse(), Ok(session_id(42)));
        assert_eq!(session_id(42).as_u64(), 42);
        let error = "s-0".parse::<SessionId>().expect_err("not an id");
        assert_eq!(
            error.to_string(),
            "\"s-0\" is not a session id: ids look like s-42"
        );
    }
}
