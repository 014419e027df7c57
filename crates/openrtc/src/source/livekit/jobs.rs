//! Offers, holds and jobs: the worker's side of LiveKit's offer → assignment → run → end.
//!
//! Owned by the connection's task (one thread), so its tables need no lock. An offer runs the
//! admission chain and, admitted, **holds** the places it reserved ([`HeldLaunch`]) while the
//! server mints the job's token: a second offer racing for the last place is refused by the
//! chain itself. The assignment starts the held session; an assignment that does not come
//! within the timeout gives the places back. Jobs outlive connections: a reconnect reports
//! them back (`migrate_job`), and statuses that could not be sent wait for the next
//! connection.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use livekit_protocol::worker_message::Message as WorkerMessage;
use livekit_protocol::{AvailabilityRequest, AvailabilityResponse, Job, JobAssignment, JobStatus};
use tokio::sync::mpsc;

use super::state::{Counted, LiveKitState};
use super::{LiveKitJob, LiveKitOptions, protocol};
use crate::pool::{HeldLaunch, PoolShared, SessionExtras};
use crate::session::{CancelReason, SessionHandle, SessionOutcome, StopRequest};
use crate::{JobRequest, SessionId};

/// The participant attribute naming the agent (LiveKit's workers set it).
const AGENT_NAME_ATTRIBUTE: &str = "lk.agent.name";

/// A job's session has ended: its outcome, for the job's status.
#[derive(Debug)]
pub(crate) struct Ended {
    job_id: String,
    outcome: SessionOutcome,
}

/// An accepted offer waiting for its assignment.
struct Pending {
    held: HeldLaunch,
    job: Job,
    identity: String,
    deadline: Instant,
}

/// The worker's offers and jobs.
pub(crate) struct Jobs {
    pool: Arc<PoolShared>,
    options: Arc<LiveKitOptions>,
    state: Arc<LiveKitState>,
    pending: HashMap<String, Pending>,
    running: HashMap<String, SessionId>,
    /// Statuses that could not be sent yet (no connection), oldest first.
    unsent: VecDeque<WorkerMessage>,
    ended_tx: mpsc::UnboundedSender<Ended>,
}

impl Jobs {
    /// An empty table, and the channel its sessions' ends arrive on.
    pub(crate) fn new(
        pool: Arc<PoolShared>,
        options: Arc<LiveKitOptions>,
        state: Arc<LiveKitState>,
    ) -> (Self, mpsc::UnboundedReceiver<Ended>) {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        let jobs = Self {
            pool,
            options,
            state,
            pending: HashMap::new(),
            running: HashMap::new(),
            unsent: VecDeque::new(),
            ended_tx,
        };
        (jobs, ended_rx)
    }

    /// Answers an offer: routing and admission, whose places are held until the assignment.
    pub(crate) fn offer(
        &mut self,
        request: AvailabilityRequest,
        now: Instant,
    ) -> AvailabilityResponse {
        let answer = self.answer(request, now);
        self.state.count(if answer.available {
            Counted::Accepted
        } else {
            Counted::Refused
        });
        answer
    }

    fn answer(&mut self, request: AvailabilityRequest, now: Instant) -> AvailabilityResponse {
        let Some(job) = request.job else {
            tracing::warn!(target: "openrtc::livekit", "[livekit] an offer without a job: refused");
            return refusal(String::new());
        };
        if self.pending.contains_key(&job.id) || self.running.contains_key(&job.id) {
            tracing::warn!(
                target: "openrtc::livekit",
                job_id = %job.id,
                "[livekit] job {} offered again while it is held or running: refused",
                job.id
            );
            return refusal(job.id);
        }
        let held = match self.pool.hold(job_request(&job)) {
            Ok(held) => held,
            Err(rejected) => {
                tracing::debug!(
                    target: "openrtc::livekit",
                    job_id = %job.id,
                    room = room_name(&job),
                    reason = rejected.reason().as_str(),
                    "[livekit] job {} for room '{}' refused: {rejected}",
                    job.id,
                    room_name(&job),
                );
                return refusal(job.id);
            }
        };
        let identity = format!("agent-{}", job.id);
        let answer = AvailabilityResponse {
            job_id: job.id.clone(),
            available: true,
            participant_identity: identity.clone(),
            participant_name: held.agent_name().to_owned(),
            participant_attributes: HashMap::from([(
                AGENT_NAME_ATTRIBUTE.to_owned(),
                self.options.agent_name.clone(),
            )]),
            ..AvailabilityResponse::default()
        };
        let deadline = now + self.options.assignment_timeout;
        self.pending.insert(
            job.id.clone(),
            Pending {
                held,
                job,
                identity,
                deadline,
            },
        );
        answer
    }

    /// Starts the session of an accepted offer; returns the job's status to send (`running`,
    /// or `failed` when the pool stopped meanwhile). An assignment for an offer the worker
    /// holds no place for is logged and ignored.
    pub(crate) fn assign(&mut self, assignment: JobAssignment) -> Option<WorkerMessage> {
        let job_id = assignment
            .job
            .as_ref()
            .map(|job| job.id.clone())
            .unwrap_or_default();
        let Some(pending) = self.pending.remove(&job_id) else {
            tracing::warn!(
                target: "openrtc::livekit",
                job_id = %job_id,
                "[livekit] an assignment for job '{job_id}', which this worker did not accept \
                 or stopped waiting for: told the server it failed"
            );
            // Else the server would count the job as running on this worker until its
            // dispatch is deleted (it has no timeout of its own).
            return Some(protocol::update_job(
                &job_id,
                JobStatus::JsFailed,
                "the worker did not hold this job: its assignment came after the worker stopped \
                 waiting for it, or it was never accepted"
                    .to_owned(),
            ));
        };
        let job = Arc::new(live_kit_job(&pending, &assignment, &self.options.url));
        let extras = SessionExtras {
            livekit: Some(Arc::clone(&job)),
            ..SessionExtras::default()
        };
        match pending.held.start(extras) {
            Ok(cell) => {
                let id = cell.id();
                tracing::info!(
                    target: "openrtc::livekit",
                    job_id = %job_id,
                    session_id = %id,
                    room = %job.room_name,
                    "[livekit] job {job_id} in room '{}' runs as session {id}",
                    job.room_name
                );
                self.running.insert(job_id.clone(), id);
                let ended_tx = self.ended_tx.clone();
                let handle = SessionHandle::new(cell);
                tokio::spawn(async move {
                    let outcome = handle.outcome().await;
                    let _ = ended_tx.send(Ended { job_id, outcome });
                });
                Some(protocol::update_job(
                    &job.job_id,
                    JobStatus::JsRunning,
                    String::new(),
                ))
            }
            Err(rejected) => Some(protocol::update_job(
                &job_id,
                JobStatus::JsFailed,
                format!("the worker could not start it: {rejected}"),
            )),
        }
    }

    /// Cancels a job's session (reason `terminated`), or gives back an accepted offer's
    /// places; an unknown job is logged and ignored.
    pub(crate) fn terminate(&mut self, job_id: &str) {
        if let Some(pending) = self.pending.remove(job_id) {
            tracing::info!(
                target: "openrtc::livekit",
                job_id,
                "[livekit] job {job_id} terminated by the server before its assignment: its \
                 place is released"
            );
            drop(pending);
            return;
        }
        let Some(&id) = self.running.get(job_id) else {
            self.state.count(Counted::UnknownTermination);
            tracing::warn!(
                target: "openrtc::livekit",
                job_id,
                "[livekit] the server terminated job '{job_id}', which this worker does not run: ignored"
            );
            return;
        };
        tracing::info!(
            target: "openrtc::livekit",
            job_id,
            session_id = %id,
            "[livekit] job {job_id} terminated by the server: cancelling session {id}"
        );
        // Ended meanwhile: its status is on its way.
        let _ = self
            .pool
            .stop_session(id, StopRequest::Cancel(CancelReason::Terminated));
    }

    /// Gives back the places of accepted offers waiting for their assignment: all of them
    /// while the worker drains (so that its drain does not wait for them; a late assignment
    /// is then told it failed), else those whose assignment did not come in time.
    pub(crate) fn release_holds(&mut self, now: Instant, draining: bool) {
        if self.pending.is_empty() {
            return;
        }
        if draining {
            self.release_pending();
        } else {
            self.expire(now);
        }
    }

    /// Gives back the places of accepted offers whose assignment did not come in time.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for job_id in &expired {
            if let Some(pending) = self.pending.remove(job_id) {
                self.state.count(Counted::AssignmentTimeout);
                tracing::warn!(
                    target: "openrtc::livekit",
                    job_id = %job_id,
                    room = room_name(&pending.job),
                    "[livekit] job {job_id} for room '{}': no assignment within {:?} of \
                     accepting it; its place is released",
                    room_name(&pending.job),
                    self.options.assignment_timeout
                );
            }
        }
    }

    /// A session's end: the job's final status.
    pub(crate) fn ended(&mut self, ended: Ended) -> WorkerMessage {
        self.running.remove(&ended.job_id);
        let (status, error) = job_status(&ended.outcome);
        protocol::update_job(&ended.job_id, status, error)
    }

    /// Keeps a status for the next connection.
    pub(crate) fn keep_unsent(&mut self, message: WorkerMessage) {
        self.unsent.push_back(message);
    }

    /// Takes the statuses kept for this connection.
    pub(crate) fn take_unsent(&mut self) -> VecDeque<WorkerMessage> {
        std::mem::take(&mut self.unsent)
    }

    /// The jobs running, by id.
    pub(crate) fn running_ids(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// How many jobs run.
    pub(crate) fn running_count(&self) -> u32 {
        u32::try_from(self.running.len()).unwrap_or(u32::MAX)
    }

    /// Gives back the places of every accepted offer still waiting for its assignment.
    fn release_pending(&mut self) {
        for (job_id, pending) in self.pending.drain() {
            tracing::info!(
                target: "openrtc::livekit",
                job_id = %job_id,
                room = room_name(&pending.job),
                "[livekit] job {job_id} for room '{}': the worker is draining; the place held \
                 for its assignment is released",
                room_name(&pending.job)
            );
        }
    }
}

/// A refusal that lets the server offer the job to another worker.
fn refusal(job_id: String) -> AvailabilityResponse {
    AvailabilityResponse {
        job_id,
        available: false,
        terminate: false,
        ..AvailabilityResponse::default()
    }
}

fn room_name(job: &Job) -> &str {
    job.room.as_ref().map_or("", |room| room.name.as_str())
}

/// The launch request of a job: the dispatch metadata's fields when it is a JSON object (its
/// `agent` and `tenant` route it, as a call's parameters do), else the metadata under
/// `dispatch_metadata`; with the room's name under `room` (the routing's room prefix) and the
/// job's id under `livekit_job`.
pub(crate) fn job_request(job: &Job) -> JobRequest {
    let mut fields = match serde_json::from_str::<serde_json::Value>(&job.metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        _ if job.metadata.is_empty() => serde_json::Map::new(),
        _ => serde_json::Map::from_iter([(
            "dispatch_metadata".to_owned(),
            serde_json::Value::String(job.metadata.clone()),
        )]),
    };
    fields
        .entry("room")
        .or_insert_with(|| serde_json::Value::String(room_name(job).to_owned()));
    fields.insert(
        "livekit_job".to_owned(),
        serde_json::Value::String(job.id.clone()),
    );
    let tenant = fields
        .get("tenant")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let mut request = JobRequest::new().metadata(serde_json::Value::Object(fields));
    if let Some(tenant) = tenant {
        request = request.tenant(tenant);
    }
    request
}

fn live_kit_job(pending: &Pending, assignment: &JobAssignment, url: &str) -> LiveKitJob {
    let job = &pending.job;
    let room = job.room.clone().unwrap_or_default();
    LiveKitJob {
        job_id: job.id.clone(),
        dispatch_id: job.dispatch_id.clone(),
        room_name: room.name,
        room_sid: room.sid,
        participant_identity: pending.identity.clone(),
        target_identity: job.participant.as_ref().map(|p| p.identity.clone()),
        agent_name: job.agent_name.clone(),
        metadata: job.metadata.clone(),
        url: assignment
            .url
            .clone()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| url.to_owned()),
        token: assignment.token.clone(),
    }
}

/// A job's final status from its session's outcome: `success` when it completed or the
/// server terminated it, `failed` with the outcome's words otherwise.
pub(crate) fn job_status(outcome: &SessionOutcome) -> (JobStatus, String) {
    match outcome {
        SessionOutcome::Completed | SessionOutcome::Cancelled(CancelReason::Terminated) => {
            (JobStatus::JsSuccess, String::new())
        }
        other => (JobStatus::JsFailed, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use livekit_protocol::Room;

    use super::*;
    use crate::KillReason;

    fn job(metadata: &str) -> Job {
        Job {
            id: "AJ_1".into(),
            metadata: metadata.into(),
            room: Some(Room {
                name: "support-42".into(),
                ..Room::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn a_json_object_metadata_routes_by_its_agent_and_tenant_and_names_the_room() {
        let request = job_request(&job(r#"{"agent":"echo","tenant":"acme"}"#));
        assert_eq!(request.tenant, "acme");
        assert_eq!(request.metadata["agent"], "echo");
        assert_eq!(request.metadata["room"], "support-42");
        assert_eq!(request.metadata["livekit_job"], "AJ_1");
    }

    #[test]
    fn other_metadata_is_kept_as_a_string_under_the_default_tenant() {
        let request = job_request(&job("plain words"));
        assert_eq!(request.tenant, JobRequest::DEFAULT_TENANT);
        assert_eq!(request.metadata["dispatch_metadata"], "plain words");
        let empty = job_request(&job(""));
        assert!(empty.metadata.get("dispatch_metadata").is_none());
        assert_eq!(empty.metadata["room"], "support-42");
    }

    #[test]
    fn outcomes_map_to_job_statuses() {
        assert_eq!(
            job_status(&SessionOutcome::Completed).0,
            JobStatus::JsSuccess
        );
        assert_eq!(
            job_status(&SessionOutcome::Cancelled(CancelReason::Terminated)).0,
            JobStatus::JsSuccess
        );
        let (status, error) = job_status(&SessionOutcome::Cancelled(CancelReason::DrainTimeout));
        assert_eq!(status, JobStatus::JsFailed);
        assert!(error.contains("drain_timeout"), "{error}");
        let (status, error) = job_status(&SessionOutcome::Killed(KillReason::Operator));
        assert_eq!(status, JobStatus::JsFailed);
        assert!(error.contains("killed"), "{error}");
    }
}
