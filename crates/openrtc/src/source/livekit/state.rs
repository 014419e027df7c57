//! What the LiveKit worker shows of itself in snapshots (the header's `livekit`): written by
//! its thread as things happen, read by snapshots. A plain mutex: never on a worker thread's
//! poll path.

use std::sync::Mutex;

use openrtc_proto::LiveKitWorkerSnapshot;

use super::load::Status;
use crate::lock;

/// The worker's registration and its offers, as snapshots show them.
#[derive(Debug)]
pub(crate) struct LiveKitState(Mutex<LiveKitWorkerSnapshot>);

impl LiveKitState {
    /// Not connected yet, to the server at `url` as `agent_name`.
    pub(crate) fn new(url: &str, agent_name: &str) -> Self {
        let mut snapshot = LiveKitWorkerSnapshot::default();
        snapshot.url = url.to_owned();
        snapshot.agent_name = agent_name.to_owned();
        Self(Mutex::new(snapshot))
    }

    /// The figures now.
    pub(crate) fn snapshot(&self) -> LiveKitWorkerSnapshot {
        lock(&self.0).clone()
    }

    /// Registered as `worker_id` at `unix_ms`.
    pub(crate) fn registered(&self, worker_id: &str, unix_ms: u64) {
        let mut state = lock(&self.0);
        if state.worker_id.is_some() {
            state.reconnect_count += 1;
        }
        state.worker_id = Some(worker_id.to_owned());
        state.registered_at_unix_ms = unix_ms;
        state.connected = true;
        state.failed_attempt_count = 0;
    }

    /// The connection was lost, or an attempt failed: why.
    pub(crate) fn disconnected(&self, why: &str, failed_attempt: bool) {
        let mut state = lock(&self.0);
        state.connected = false;
        state.last_error = Some(why.to_owned());
        if failed_attempt {
            state.failed_attempt_count += 1;
        }
    }

    /// The status just reported.
    pub(crate) fn reported(&self, status: Status) {
        let mut state = lock(&self.0);
        state.status = match status.status {
            livekit_protocol::WorkerStatus::WsFull => "full",
            livekit_protocol::WorkerStatus::WsAvailable => "available",
        }
        .to_owned();
        state.load = f64::from(status.load);
        state.jobs_running_count = u64::from(status.job_count);
    }

    /// Counts an event by what it did to the tally.
    pub(crate) fn count(&self, event: Counted) {
        let mut state = lock(&self.0);
        let counter = match event {
            Counted::Accepted => &mut state.offers_accepted_count,
            Counted::Refused => &mut state.offers_refused_count,
            Counted::AssignmentTimeout => &mut state.assignment_timeout_count,
            Counted::UnknownTermination => &mut state.unknown_termination_count,
        };
        *counter += 1;
    }
}

/// What [`LiveKitState::count`] counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counted {
    /// An offer accepted.
    Accepted,
    /// An offer refused.
    Refused,
    /// An accepted offer whose assignment did not come in time.
    AssignmentTimeout,
    /// A termination for a job the worker does not run.
    UnknownTermination,
}
