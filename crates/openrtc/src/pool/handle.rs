//! `PoolHandle`: the cloneable handle that launches, inspects and stops sessions.

use std::path::Path;
use std::sync::Arc;

use crate::pool::{Control, PoolShared};
use crate::session::StopRequest;
use crate::{
    CancelReason, JobRequest, KillReason, LookupError, PoolSnapshot, Rejected, SessionHandle,
    SessionId,
};

/// A cloneable handle to a pool, usable from any thread.
///
/// Before the pool runs, launched sessions are queued (their places are reserved and counted)
/// and start when the runtime starts; once it has stopped, launches are refused with
/// [`Rejected::Stopped`].
#[derive(Clone, Debug)]
pub struct PoolHandle {
    shared: Arc<PoolShared>,
}

impl PoolHandle {
    pub(crate) fn new(shared: Arc<PoolShared>) -> Self {
        Self { shared }
    }

    /// Starts a session for `request`, and gives back its [`SessionHandle`]: its id
    /// (`launch(request)?.id()`), and its outcome to await or wait for when it ends. Dropping
    /// the handle leaves the session running.
    ///
    /// Routing: the agent the request names, else the first registered agent.
    ///
    /// # Errors
    ///
    /// [`Rejected`] says why the session was refused: an unknown agent name (never rerouted),
    /// a full worker, a draining or stopped one. Every refusal is counted by reason.
    pub fn launch(&self, request: JobRequest) -> Result<SessionHandle, Rejected> {
        self.shared.launch(request)
    }

    /// A snapshot of the worker and every live session. It never needs a worker thread, so it
    /// answers even while every worker thread is blocked.
    #[must_use]
    pub fn runtime_snapshot(&self) -> PoolSnapshot {
        crate::introspect::snapshot(&self.shared)
    }

    /// Cancels a session gracefully: `Session::cancelled` resolves at once and the session is
    /// dropped at its next poll boundary if it has not ended after the cancel grace. Its
    /// outcome is `cancelled (operator)`, unless it was asked to stop before.
    ///
    /// # Errors
    ///
    /// [`LookupError::NotFound`] if no session with this id is live: it never existed in
    /// this worker, or it has ended.
    pub fn cancel(&self, id: SessionId) -> Result<(), LookupError> {
        self.shared
            .stop_session(id, StopRequest::Cancel(CancelReason::Operator))
    }

    /// Kills a session: it is dropped at its next poll boundary, without a grace period, with
    /// the outcome `killed (operator)`, unless it was asked to stop before.
    ///
    /// # Errors
    ///
    /// [`LookupError::NotFound`] if no session with this id is live: it never existed in
    /// this worker, or it has ended.
    pub fn kill(&self, id: SessionId) -> Result<(), LookupError> {
        self.shared
            .stop_session(id, StopRequest::Kill(KillReason::Operator))
    }

    /// Launches the session of a phone call with its media in place (an isolated call's
    /// process).
    pub(crate) fn launch_call(
        &self,
        request: JobRequest,
        media: crate::media::CallMedia,
    ) -> Result<SessionHandle, Rejected> {
        self.shared
            .launch_call(request, media)
            .map(SessionHandle::new)
    }

    /// Stops a session with this request (a cancel with its own reason, for an isolated
    /// session's process passing on the worker's).
    pub(crate) fn stop_with(&self, id: SessionId, request: StopRequest) -> Result<(), LookupError> {
        self.shared.stop_session(id, request)
    }

    /// Stops accepting sessions and lets live ones finish, up to the drain timeout; then
    /// cancels the rest. The pool's `run` returns when no session is left.
    pub fn begin_drain(&self) {
        self.shared.begin_drain(Control::Drain);
    }

    /// Stops accepting sessions and cancels every live one now (reason `shutdown`); the
    /// pool's `run` returns when they have ended or been dropped after the cancel grace.
    pub fn shutdown(&self) {
        self.shared.begin_drain(Control::Shutdown);
    }

    /// How many `Frames` (`Session::frames`) are registered with the pool's frame clocks:
    /// each live one counts once, and a dropped one no longer.
    #[must_use]
    pub fn frame_registrations(&self) -> usize {
        self.shared.frame_clocks.registrations()
    }

    /// Whether the worker accepts no new session.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    #[cfg(feature = "bench")]
    pub(crate) fn bench_write_snapshot_response(&self, out: &mut Vec<u8>) {
        out.clear();
        let _ = crate::introspect::write_snapshot_response(&self.shared, out);
    }

    /// Where the introspection socket is served (`None` with introspection off).
    #[must_use]
    pub fn socket_path(&self) -> Option<&Path> {
        self.shared.config.socket_path.as_deref()
    }
}
