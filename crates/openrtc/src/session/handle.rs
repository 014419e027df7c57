//! `SessionHandle`: what a launch gives back, the session's id and, once it ends, its outcome.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::{SessionCell, SessionId, SessionOutcome};
use crate::lock;

/// The launcher's handle to one session: its id, and its outcome once it has ended.
///
/// [`crate::PoolHandle::launch`] returns it. Callers that only want the id take
/// [`SessionHandle::id`] and drop the handle: dropping it leaves the session running and
/// throws its outcome away when it comes. Otherwise the outcome is delivered to the handle
/// exactly once, however the session ends (it completes, fails, panics, is cancelled or
/// killed, or the pool shuts down or is dropped with it live or still queued), and this
/// handle is its only receiver: the outcome holds the agent's own error, which cannot be
/// copied. Snapshots keep the outcome of recently ended sessions as text for everyone else.
/// Until it is dropped, the handle keeps the session's shared record (its counters and last
/// stalls, not its tasks) in memory.
///
/// Await it in async code (it is [`IntoFuture`]: `handle.await`, or
/// [`SessionHandle::outcome`]); block on it from a plain thread, such as the one that runs a
/// [`crate::RunningPool`], with [`SessionHandle::wait_outcome`].
///
/// ```no_run
/// use std::time::Duration;
/// use openrtc::{AgentPool, JobRequest, Session, SessionOutcome, agent_fn};
///
/// let pool = AgentPool::builder()
///     .agent("greeter", agent_fn(|_session: Session| async move { Ok(()) }))
///     .build()?
///     .run_in_background()?;
/// let session = pool.handle().launch(JobRequest::new())?;
/// println!("launched {}", session.id());
/// match session.wait_outcome(Duration::from_secs(5)) {
///     Ok(SessionOutcome::Completed) => println!("done"),
///     Ok(other) => println!("ended otherwise: {other}"),
///     Err(_still_running) => println!("still running after 5 s"),
/// }
/// pool.drain_and_join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SessionHandle {
    // The handle holds the session's cell, whose outcome slot the session's end fills: a
    // launch pays one reference count for the handle, and no allocation or channel of its
    // own. The cell is freed when the session has ended and the handle is gone.
    cell: Arc<SessionCell>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(crate) fn new(cell: Arc<SessionCell>) -> Self {
        Self { cell }
    }

    /// The session's id (for `PoolHandle::cancel`, `kill`, snapshots and logs).
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.cell.id()
    }

    /// A future that resolves to the session's outcome when it ends (at once if it has
    /// ended already). The same as awaiting the handle itself.
    pub fn outcome(self) -> OutcomeFuture {
        OutcomeFuture { cell: self.cell }
    }

    /// Blocks this thread until the session ends, for at most `timeout`, and returns its
    /// outcome; after the timeout it gives the handle back, to wait again or drop.
    /// `Duration::MAX` waits for as long as it takes; `Duration::ZERO` only looks.
    ///
    /// For plain threads: in async code, await the handle instead (this would block a
    /// runtime's thread).
    ///
    /// # Errors
    ///
    /// The handle itself, when the session is still live after `timeout`.
    pub fn wait_outcome(self, timeout: Duration) -> Result<SessionOutcome, Self> {
        let deadline = Instant::now().checked_add(timeout);
        let waker = Waker::from(Arc::new(UnparkThread(std::thread::current())));
        let context = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(outcome) = self.cell.outcome_slot().poll_take(&context) {
                return Ok(outcome);
            }
            match deadline {
                None => std::thread::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self);
                    }
                    std::thread::park_timeout(left);
                }
            }
        }
    }
}

impl IntoFuture for SessionHandle {
    type Output = SessionOutcome;
    type IntoFuture = OutcomeFuture;

    fn into_future(self) -> OutcomeFuture {
        self.outcome()
    }
}

/// The outcome of one session, once it ends: see [`SessionHandle::outcome`]. Polled again
/// after it has resolved, it stays pending.
#[must_use = "futures do nothing unless awaited"]
pub struct OutcomeFuture {
    cell: Arc<SessionCell>,
}

impl fmt::Debug for OutcomeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeFuture")
            .field("id", &self.cell.id())
            .finish_non_exhaustive()
    }
}

impl Future for OutcomeFuture {
    type Output = SessionOutcome;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<SessionOutcome> {
        self.cell.outcome_slot().poll_take(context)
    }
}

/// Where a session's outcome waits for its launch handle, in the session's cell.
///
/// The outcome is not `Clone` (it holds the agent's own error), so it is moved, not copied:
/// the pool puts it here once, when it records the end, and the handle takes it once. A
/// plain mutex, locked only at the end and by the waiting side, never on the poll path.
#[derive(Debug, Default)]
pub(crate) struct OutcomeSlot(Mutex<SlotState>);

#[derive(Debug, Default)]
enum SlotState {
    /// Not ended, and nobody waits yet.
    #[default]
    Live,
    /// Not ended; whoever waits is woken by this waker.
    Awaited(Waker),
    /// Ended; the outcome waits for the handle.
    Ended(SessionOutcome),
    /// The handle has taken the outcome.
    Taken,
}

impl OutcomeSlot {
    /// Puts the session's outcome (once: a second one is ignored) and wakes its awaiter.
    pub(crate) fn put(&self, outcome: SessionOutcome) {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, SlotState::Ended(outcome)) {
            SlotState::Live => {}
            SlotState::Awaited(waker) => {
                drop(state);
                waker.wake();
            }
            first @ (SlotState::Ended(_) | SlotState::Taken) => *state = first,
        }
    }

    /// Takes the outcome if the session has ended; otherwise wakes `context` when it does.
    fn poll_take(&self, context: &Context<'_>) -> Poll<SessionOutcome> {
        let mut state = lock(&self.0);
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Ended(outcome) => Poll::Ready(outcome),
            SlotState::Live => {
                *state = SlotState::Awaited(context.waker().clone());
                Poll::Pending
            }
            SlotState::Awaited(waker) => {
                *state = SlotState::Awaited(if waker.will_wake(context.waker()) {
                    waker
                } else {
                    context.waker().clone()
                });
                Poll::Pending
            }
            SlotState::Taken => Poll::Pending,
        }
    }
}

/// Wakes a thread blocked in [`SessionHandle::wait_outcome`].
struct UnparkThread(std::thread::Thread);

impl Wake for UnparkThread {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
