//! A stand-in for a LiveKit server's agent service: the server side of the worker protocol
//! (`GET <prefix>/agent`, protobuf `WorkerMessage`/`ServerMessage` frames), faithful to what a
//! conforming worker can observe, so the runtime's LiveKit worker can be tested offline.
//!
//! It runs on its own thread with its own Tokio runtime (the tests are plain `#[test]`
//! functions, and the runtime under test owns its own runtime); its API is blocking and
//! `&self`, so a test can offer jobs from several threads at once. Dropping it stops the thread
//! and closes every socket at once (no close frame: to a worker, a server that went away).
//!
//! What it does, as the real server does: authenticates before upgrading (HS256 JWT with the
//! agent grant, else 401; a request that is not an upgrade gets 404), requires `register` first
//! (only `ping` may come before it) within the register timeout, keeps a registry of workers by
//! `(agent_name, namespace, type, deployment)` with the status and load they report, offers
//! jobs to a worker chosen at random weighted by `max(0, 1 - load)` (seeded, so tests are
//! deterministic), tries the next worker on a refusal or a closed socket, mints the job's room
//! token as the server does, sends WebSocket pings, and closes a connection on an
//! undecodable, empty, text or oversized frame. What it adds for tests: a log of every message
//! each registration sent and received, controls over the assignment (send, drop, delay, or
//! send later), terminations, raw frames, `go_away`, and closes.
//!
//! Not modelled: protojson text frames (closed with 1003), the Twirp dispatch API, deployment
//! name validation, and the room itself (no SFU: the job token can be verified, not used).

// The self-tests use part of this API; the LiveKit worker's tests use the rest.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_protocol::{
    AvailabilityRequest, AvailabilityResponse, Job, JobAssignment, JobState, JobStatus,
    JobTermination, JobType, ParticipantInfo, ParticipantPermission, RegisterWorkerRequest,
    RegisterWorkerResponse, Room, ServerInfo, ServerMessage, UpdateJobStatus, UpdateWorkerStatus,
    WorkerMessage, WorkerPong, WorkerStatus, agent_http::GoAway, server_info, server_message,
    worker_message,
};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse as _;
use tokio_tungstenite::tungstenite::handshake::server::{Request, create_response, write_response};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

/// The attribute the server adds to every job token: the agent name of the registration.
pub(crate) const AGENT_NAME_ATTRIBUTE: &str = "lk.agent_name";
/// The error a job ends with when its agent left the room (`AGENT_LEFT_ROOM`).
pub(crate) const AGENT_LEFT_ROOM_ERROR: &str = "agent worker left the room";
/// The region the stand-in reports in `server_info`.
pub(crate) const REGION: &str = "test";
/// The server protocol version it reports (`ServerInfo.protocol`).
pub(crate) const SERVER_PROTOCOL: i32 = 16;
/// The worker protocol version it speaks (`ServerInfo.agent_protocol`).
pub(crate) const AGENT_PROTOCOL: i32 = 1;
/// How long a job token is valid, as the server mints it.
const JOB_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest HTTP request head it reads before the upgrade.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long it waits for the peer's close frame after sending its own.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// How a [`StandIn`] is set up. The durations are the real server's defaults.
#[derive(Debug, Clone)]
pub(crate) struct StandInOptions {
    /// The API key workers authenticate with (the token's `iss`).
    pub(crate) api_key: String,
    /// The API secret tokens are signed with.
    pub(crate) api_secret: String,
    /// A path before `/agent`, without a trailing slash ("" for none, or "/prefix").
    pub(crate) path_prefix: String,
    /// How long a new connection has to send `register` before it is closed.
    pub(crate) register_timeout: Duration,
    /// How long an offer waits for the worker's availability answer.
    pub(crate) availability_timeout: Duration,
    /// How often WebSocket ping frames go to every connection.
    pub(crate) ping_interval: Duration,
    /// The largest message (and frame) a worker may send; a larger one closes it with 1009.
    pub(crate) max_frame_bytes: usize,
    /// Seeds worker and job ids and the choice of worker.
    pub(crate) seed: u64,
}

impl Default for StandInOptions {
    fn default() -> Self {
        Self {
            api_key: "devkey".to_owned(),
            api_secret: "secret-of-the-livekit-stand-in-server".to_owned(),
            path_prefix: String::new(),
            register_timeout: Duration::from_secs(10),
            availability_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            max_frame_bytes: 2 * 1024 * 1024,
            seed: 7,
        }
    }
}

/// A job to offer: what a room (or a participant in it) asks of an agent.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    /// The room's name (its sid is made up).
    pub(crate) room: String,
    /// The agent name the job is for ("" = automatic dispatch).
    pub(crate) agent_name: String,
    pub(crate) job_type: JobType,
    pub(crate) namespace: String,
    pub(crate) deployment: String,
    /// The dispatch metadata (`Job.metadata`).
    pub(crate) metadata: String,
    /// The participant a publisher or participant job is for.
    pub(crate) participant: Option<ParticipantInfo>,
    /// `Job.attributes`.
    pub(crate) attributes: HashMap<String, String>,
    /// A job id to reuse (a resumed job); `None` makes a new `AJ_…` id.
    pub(crate) job_id: Option<String>,
    /// `AvailabilityRequest.resuming`.
    pub(crate) resuming: bool,
    /// `JobAssignment.url` (unset on the open-source server).
    pub(crate) url: Option<String>,
}

impl Dispatch {
    /// A room job for `room`, for workers registered with no agent name.
    pub(crate) fn room(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            agent_name: String::new(),
            job_type: JobType::JtRoom,
            namespace: String::new(),
            deployment: String::new(),
            metadata: String::new(),
            participant: None,
            attributes: HashMap::new(),
            job_id: None,
            resuming: false,
            url: None,
        }
    }

    /// The same job, for workers registered as `agent_name`.
    pub(crate) fn for_agent(mut self, agent_name: &str) -> Self {
        agent_name.clone_into(&mut self.agent_name);
        self
    }

    /// The same job, with dispatch metadata.
    pub(crate) fn with_metadata(mut self, metadata: &str) -> Self {
        metadata.clone_into(&mut self.metadata);
        self
    }
}

/// What a successful [`StandIn::dispatch`] did.
#[derive(Debug, Clone)]
pub(crate) struct Dispatched {
    pub(crate) job_id: String,
    /// The worker that answered last (and took the job, unless it terminated it).
    pub(crate) worker_id: String,
    /// That worker's answer.
    pub(crate) answer: AvailabilityResponse,
    /// The job token minted on accept (`None` when the worker answered `terminate`).
    pub(crate) token: Option<String>,
    /// The job's state when the dispatch returned.
    pub(crate) state: JobState,
}

/// What a worker answered to [`StandIn::offer`].
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    pub(crate) job_id: String,
    pub(crate) worker_id: String,
    pub(crate) answer: AvailabilityResponse,
}

/// Why a dispatch, offer, assignment or termination failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("no workers available for agent {agent_name:?} ({job_type:?}); tried {tried:?}")]
    NoWorkersAvailable {
        agent_name: String,
        job_type: JobType,
        tried: Vec<String>,
    },
    #[error("no workers with sufficient capacity for agent {agent_name:?}; tried {tried:?}")]
    NoCapacity {
        agent_name: String,
        tried: Vec<String>,
    },
    #[error("agent worker availability timeout (worker {worker_id})")]
    AvailabilityTimeout { worker_id: String },
    #[error("worker {worker_id} closed while the offer was pending")]
    WorkerClosed { worker_id: String },
    #[error("no connected worker {0}")]
    UnknownWorker(String),
    #[error("duplicate job assignment: {0} is already pending on that worker")]
    Duplicate(String),
    #[error("no job {0} in the state this needs")]
    UnknownJob(String),
    #[error("the job token could not be built: {0}")]
    Token(String),
    #[error("the stand-in has stopped")]
    Stopped,
}

/// What happens to the assignment after a worker accepts a dispatched job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AssignmentPolicy {
    /// Sent at once, as the server does.
    #[default]
    Send,
    /// Never sent (the job stays accepted; [`StandIn::assign`] can still send it).
    Drop,
    /// Sent after this long.
    Delay(Duration),
}

/// Why the server ends a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TerminationReason {
    /// The dispatch was deleted: the job ends `JS_SUCCESS`.
    Requested,
    /// The agent's participant left the room: the job ends `JS_FAILED`.
    AgentLeftRoom,
}

/// Where a job is in the stand-in's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobPhase {
    /// Offered to a worker; no answer yet.
    Offered,
    /// Accepted by a worker; its assignment is not sent yet.
    Accepted,
    /// Assigned: a running job of its worker (until it ends).
    Running,
    /// Ended by the worker's `update_job`, a termination, or a `terminate` answer.
    Ended,
    /// Never placed: refused, timed out, or no worker.
    Failed,
}

/// A registered, connected worker as the server sees it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerView {
    pub(crate) worker_id: String,
    /// The number of the connection it registered on (1 for the first upgrade).
    pub(crate) connection: u32,
    pub(crate) agent_name: String,
    pub(crate) namespace: String,
    pub(crate) deployment: String,
    pub(crate) version: String,
    pub(crate) job_type: JobType,
    pub(crate) status: WorkerStatus,
    pub(crate) load: f32,
    /// The last `job_count` it reported.
    pub(crate) job_count: u32,
    /// The last `draining` it reported.
    pub(crate) draining: bool,
    /// Its permissions (the server's default when it sent none).
    pub(crate) permissions: ParticipantPermission,
    /// The jobs the server counts as running on it.
    pub(crate) running_jobs: Vec<String>,
    /// The `worker_token` query parameter, if any.
    pub(crate) worker_token: Option<String>,
    /// The `protocol` query parameter, if any.
    pub(crate) protocol: Option<String>,
    /// WebSocket pongs it answered the server's pings with.
    pub(crate) ws_pong_count: u32,
}

/// A message a worker sent, with when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    /// Since the stand-in started.
    pub(crate) at: Duration,
    pub(crate) message: WorkerMessage,
}

/// A message the stand-in sent to a worker, with when it was written.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Since the stand-in started.
    pub(crate) at: Duration,
    pub(crate) message: ServerMessage,
}

/// A job as the server sees it.
#[derive(Debug, Clone)]
pub(crate) struct JobView {
    pub(crate) job_id: String,
    pub(crate) dispatch_id: String,
    /// The worker it was last offered to.
    pub(crate) worker_id: String,
    pub(crate) room: String,
    pub(crate) agent_name: String,
    pub(crate) phase: JobPhase,
    pub(crate) status: JobStatus,
    pub(crate) error: String,
    /// The identity the worker accepted it with.
    pub(crate) participant_identity: String,
    pub(crate) token: Option<String>,
    /// The whole job, state included.
    pub(crate) job: Job,
}

/// The stand-in server. See the module documentation.
pub(crate) struct StandIn {
    shared: Arc<Shared>,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Starts listening on 127.0.0.1, on a free port.
    pub(crate) fn start(options: StandInOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("livekit-standin")
            .enable_all()
            .build()
            .expect("the stand-in's runtime starts");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("the stand-in binds a loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let prefix = options.path_prefix.trim_end_matches('/').to_owned();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(options.seed)),
            changed: Condvar::new(),
            started: Instant::now(),
            runtime: runtime.handle().clone(),
            options,
        });
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("livekit-standin".to_owned())
            .spawn(move || {
                runtime.block_on(accept_until(serving.clone(), listener, stopped));
                serving.lock().stopped = true;
                serving.changed.notify_all();
                // Dropping the tasks drops every socket.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("the stand-in's thread starts");
        Self {
            shared,
            url: format!("http://127.0.0.1:{port}{prefix}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL a worker is given (`LIVEKIT_URL`): it turns `http` into `ws` and adds `/agent`.
    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// The control WebSocket's own URL (`ws://…/agent`).
    pub(crate) fn agent_ws_url(&self) -> String {
        format!("{}/agent", self.url.replacen("http://", "ws://", 1))
    }

    pub(crate) fn api_key(&self) -> &str {
        &self.shared.options.api_key
    }

    pub(crate) fn api_secret(&self) -> &str {
        &self.shared.options.api_secret
    }

    /// A worker token as the SDKs mint one (HS256, `video.agent`, 6 h), for raw clients.
    pub(crate) fn worker_token(&self) -> String {
        let grants = VideoGrants {
            agent: true,
            ..VideoGrants::default()
        };
        AccessToken::with_api_key(self.api_key(), self.api_secret())
            .with_grants(grants)
            .to_jwt()
            .expect("a worker token signs")
    }

    /// The registered, connected workers, in registration order.
    pub(crate) fn workers(&self) -> Vec<WorkerView> {
        self.shared.lock().worker_views()
    }

    /// Waits until at least `count` workers are registered, and returns them; panics with
    /// what is registered after `timeout`.
    #[track_caller]
    pub(crate) fn wait_for_workers(&self, count: usize, timeout: Duration) -> Vec<WorkerView> {
        let found = self.shared.wait(timeout, |state| {
            (state.workers.len() >= count).then(|| state.worker_views())
        });
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {count} workers; registered: {:#?}",
                self.workers()
            )
        })
    }

    /// Every registration so far (including closed ones): connection number and worker id.
    pub(crate) fn registrations(&self) -> Vec<(u32, String)> {
        let state = self.shared.lock();
        let mut all: Vec<(u32, String)> = state
            .registrations
            .iter()
            .map(|(worker_id, connection)| (*connection, worker_id.clone()))
            .collect();
        all.sort();
        all
    }

    /// The full server flow for one job: choose a worker, offer, and on accept mint the token
    /// and assign (per the assignment policy). Blocks until the flow is done.
    pub(crate) fn dispatch(&self, dispatch: Dispatch) -> Result<Dispatched, DispatchError> {
        self.shared.dispatch(dispatch)
    }

    /// Offers a job to one worker only and returns its answer; an accepted job stays pending
    /// until [`StandIn::assign`].
    pub(crate) fn offer(
        &self,
        worker_id: &str,
        dispatch: Dispatch,
    ) -> Result<Offered, DispatchError> {
        let job_id = self.shared.new_job(&dispatch)?;
        let answer = self.shared.offer_and_wait(&job_id, worker_id, &dispatch)?;
        self.shared.settle_answer(&job_id, &answer, false)?;
        Ok(Offered {
            job_id,
            worker_id: worker_id.to_owned(),
            answer,
        })
    }

    /// Sends the assignment of an accepted job that has not been assigned yet.
    pub(crate) fn assign(&self, job_id: &str) -> Result<(), DispatchError> {
        self.shared.assign(job_id)
    }

    /// What happens to the assignment of jobs [`StandIn::dispatch`] places from now on.
    pub(crate) fn set_assignment_policy(&self, policy: AssignmentPolicy) {
        self.shared.lock().policy = policy;
    }

    /// Ends a running job from the server's side: sends `termination` and records the end.
    pub(crate) fn terminate(
        &self,
        job_id: &str,
        reason: TerminationReason,
    ) -> Result<JobView, DispatchError> {
        let mut state = self.shared.lock();
        let job = state
            .jobs
            .get_mut(job_id)
            .filter(|job| job.phase == JobPhase::Running)
            .ok_or_else(|| DispatchError::UnknownJob(job_id.to_owned()))?;
        let worker_id = job.worker_id.clone();
        let (status, error) = match reason {
            TerminationReason::Requested => (JobStatus::JsSuccess, ""),
            TerminationReason::AgentLeftRoom => (JobStatus::JsFailed, AGENT_LEFT_ROOM_ERROR),
        };
        job.end(status, error);
        let view = job.view();
        let termination = JobTermination {
            job_id: job_id.to_owned(),
        };
        // A gone worker's job still ends; only the message is lost, as on the real server.
        let _ = state.send(
            &worker_id,
            Outgoing::Proto(Box::new(server(server_message::Message::Termination(
                termination,
            )))),
        );
        drop(state);
        self.shared.changed.notify_all();
        Ok(view)
    }

    /// Sends any message to a worker (fault injection: an unknown assignment or termination).
    pub(crate) fn send(
        &self,
        worker_id: &str,
        message: ServerMessage,
    ) -> Result<(), DispatchError> {
        self.shared
            .lock()
            .send(worker_id, Outgoing::Proto(Box::new(message)))
    }

    /// Sends a raw binary frame (an oversized or undecodable one).
    pub(crate) fn send_binary(&self, worker_id: &str, bytes: Vec<u8>) -> Result<(), DispatchError> {
        self.shared.lock().send(worker_id, Outgoing::Binary(bytes))
    }

    /// Sends `go_away{reason}` (the connection stays open).
    pub(crate) fn go_away(&self, worker_id: &str, reason: &str) -> Result<(), DispatchError> {
        let mut go_away = GoAway::default();
        reason.clone_into(&mut go_away.reason);
        self.send(worker_id, server(server_message::Message::GoAway(go_away)))
    }

    /// Closes one worker's socket with `code` (1000 or 1001 to exercise reconnects).
    pub(crate) fn close_worker(&self, worker_id: &str, code: u16) -> Result<(), DispatchError> {
        let reason = "closed by the test".to_owned();
        self.shared
            .lock()
            .send(worker_id, Outgoing::Close(code, reason))
    }

    /// Closes every open connection (registered or not) with `code`.
    pub(crate) fn close_all(&self, code: u16) {
        let state = self.shared.lock();
        for connection in state.connections.values() {
            let _ = connection
                .outgoing
                .send(Outgoing::Close(code, "closed by the test".to_owned()));
        }
    }

    /// Every message a registration's connection received, in order (pre-register ones too).
    pub(crate) fn messages(&self, worker_id: &str) -> Vec<Logged> {
        let state = self.shared.lock();
        state
            .registrations
            .get(worker_id)
            .and_then(|connection| state.received.get(connection))
            .cloned()
            .unwrap_or_default()
    }

    /// Every message a registration's connection was sent, in order.
    pub(crate) fn sent(&self, worker_id: &str) -> Vec<Sent> {
        let state = self.shared.lock();
        state
            .registrations
            .get(worker_id)
            .and_then(|connection| state.sent.get(connection))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for the first message from `worker_id` that matches; panics after `timeout`.
    #[track_caller]
    pub(crate) fn wait_for_message(
        &self,
        worker_id: &str,
        matches: impl Fn(&WorkerMessage) -> bool,
        timeout: Duration,
    ) -> Logged {
        let found = self.shared.wait(timeout, |state| {
            let connection = state.registrations.get(worker_id)?;
            state
                .received
                .get(connection)?
                .iter()
                .find(|logged| matches(&logged.message))
                .cloned()
        });
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for a message from {worker_id}; it sent: {:#?}",
                self.messages(worker_id)
            )
        })
    }

    /// Every job so far, oldest first.
    pub(crate) fn jobs(&self) -> Vec<JobView> {
        let state = self.shared.lock();
        let mut jobs: Vec<&JobRecord> = state.jobs.values().collect();
        jobs.sort_by_key(|job| job.created);
        jobs.into_iter().map(JobRecord::view).collect()
    }

    /// One job, if it exists.
    pub(crate) fn job(&self, job_id: &str) -> Option<JobView> {
        self.shared.lock().jobs.get(job_id).map(JobRecord::view)
    }

    /// Waits until a job matches; panics with its state after `timeout`.
    #[track_caller]
    pub(crate) fn wait_for_job(
        &self,
        job_id: &str,
        matches: impl Fn(&JobView) -> bool,
        timeout: Duration,
    ) -> JobView {
        let found = self.shared.wait(timeout, |state| {
            let view = state.jobs.get(job_id)?.view();
            matches(&view).then_some(view)
        });
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for job {job_id}; it is {:#?}",
                self.job(job_id)
            )
        })
    }

    /// Waits until a job has `status`.
    #[track_caller]
    pub(crate) fn wait_for_job_status(
        &self,
        job_id: &str,
        status: JobStatus,
        timeout: Duration,
    ) -> JobView {
        self.wait_for_job(job_id, |job| job.status == status, timeout)
    }

    /// WebSocket upgrades so far.
    pub(crate) fn connections(&self) -> u32 {
        self.shared.lock().connection_count
    }

    /// Requests refused with 401 so far.
    pub(crate) fn auth_failures(&self) -> u32 {
        self.shared.lock().auth_failure_count
    }

    /// Every `migrate_job` received: the worker that sent it and its job ids.
    pub(crate) fn migrations(&self) -> Vec<(String, Vec<String>)> {
        self.shared.lock().migrations.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the API threads and the connection tasks share.
struct Shared {
    state: Mutex<State>,
    /// Notified on every change of `state`, for the blocking waits.
    changed: Condvar,
    started: Instant,
    runtime: tokio::runtime::Handle,
    options: StandInOptions,
}

struct State {
    rng: fastrand::Rng,
    stopped: bool,
    policy: AssignmentPolicy,
    connection_count: u32,
    auth_failure_count: u32,
    /// Open connections by number.
    connections: HashMap<u32, ConnectionEntry>,
    /// Registered, connected workers by id.
    workers: BTreeMap<String, WorkerRecord>,
    /// Every registration ever: worker id → connection number.
    registrations: HashMap<String, u32>,
    received: HashMap<u32, Vec<Logged>>,
    sent: HashMap<u32, Vec<Sent>>,
    jobs: HashMap<String, JobRecord>,
    job_serial: u64,
    migrations: Vec<(String, Vec<String>)>,
}

struct ConnectionEntry {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    worker_id: Option<String>,
}

struct WorkerRecord {
    connection: u32,
    request: RegisterWorkerRequest,
    permissions: ParticipantPermission,
    status: WorkerStatus,
    load: f32,
    job_count: u32,
    draining: bool,
    worker_token: Option<String>,
    protocol: Option<String>,
    ws_pong_count: u32,
}

impl WorkerRecord {
    fn key(&self) -> (&str, &str, i32, &str) {
        (
            &self.request.agent_name,
            self.request.namespace.as_deref().unwrap_or(""),
            self.request.r#type,
            &self.request.deployment,
        )
    }
}

struct JobRecord {
    /// Creation order.
    created: u64,
    job: Job,
    worker_id: String,
    phase: JobPhase,
    /// The answer to the pending offer, put there by the worker's connection.
    answer: Option<AvailabilityResponse>,
    token: Option<String>,
    url: Option<String>,
}

impl JobRecord {
    fn state_mut(&mut self) -> &mut JobState {
        self.job.state.get_or_insert_with(JobState::default)
    }

    fn end(&mut self, status: JobStatus, error: &str) {
        let now = now_ns();
        let state = self.state_mut();
        state.status = status as i32;
        error.clone_into(&mut state.error);
        state.updated_at = now;
        state.ended_at = now;
        self.phase = JobPhase::Ended;
    }

    fn fail(&mut self, error: &str) {
        self.end(JobStatus::JsFailed, error);
        self.phase = JobPhase::Failed;
    }

    fn view(&self) -> JobView {
        let state = self.job.state.clone().unwrap_or_default();
        JobView {
            job_id: self.job.id.clone(),
            dispatch_id: self.job.dispatch_id.clone(),
            worker_id: self.worker_id.clone(),
            room: self
                .job
                .room
                .as_ref()
                .map(|room| room.name.clone())
                .unwrap_or_default(),
            agent_name: self.job.agent_name.clone(),
            phase: self.phase,
            status: JobStatus::try_from(state.status).unwrap_or(JobStatus::JsPending),
            error: state.error.clone(),
            participant_identity: state.participant_identity.clone(),
            token: self.token.clone(),
            job: self.job.clone(),
        }
    }
}

/// What a connection task is asked to write.
enum Outgoing {
    Proto(Box<ServerMessage>),
    Binary(Vec<u8>),
    Close(u16, String),
}

impl State {
    fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            stopped: false,
            policy: AssignmentPolicy::Send,
            connection_count: 0,
            auth_failure_count: 0,
            connections: HashMap::new(),
            workers: BTreeMap::new(),
            registrations: HashMap::new(),
            received: HashMap::new(),
            sent: HashMap::new(),
            jobs: HashMap::new(),
            job_serial: 0,
            migrations: Vec::new(),
        }
    }

    /// A LiveKit-style id: the prefix and 12 random characters.
    fn new_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        let tail: String = (0..12)
            .map(|_| char::from(ALPHABET[self.rng.usize(..ALPHABET.len())]))
            .collect();
        format!("{prefix}{tail}")
    }

    fn worker_views(&self) -> Vec<WorkerView> {
        let mut views: Vec<WorkerView> = self
            .workers
            .iter()
            .map(|(worker_id, worker)| self.worker_view(worker_id, worker))
            .collect();
        views.sort_by_key(|view| view.connection);
        views
    }

    fn worker_view(&self, worker_id: &str, worker: &WorkerRecord) -> WorkerView {
        let mut running_jobs: Vec<String> = self
            .jobs
            .values()
            .filter(|job| job.worker_id == worker_id && job.phase == JobPhase::Running)
            .map(|job| job.job.id.clone())
            .collect();
        running_jobs.sort();
        WorkerView {
            worker_id: worker_id.to_owned(),
            connection: worker.connection,
            agent_name: worker.request.agent_name.clone(),
            namespace: worker.request.namespace.clone().unwrap_or_default(),
            deployment: worker.request.deployment.clone(),
            version: worker.request.version.clone(),
            job_type: JobType::try_from(worker.request.r#type).unwrap_or(JobType::JtRoom),
            status: worker.status,
            load: worker.load,
            job_count: worker.job_count,
            draining: worker.draining,
            permissions: worker.permissions.clone(),
            running_jobs,
            worker_token: worker.worker_token.clone(),
            protocol: worker.protocol.clone(),
            ws_pong_count: worker.ws_pong_count,
        }
    }

    /// Queues a message for a connected worker.
    fn send(&self, worker_id: &str, outgoing: Outgoing) -> Result<(), DispatchError> {
        let unknown = || DispatchError::UnknownWorker(worker_id.to_owned());
        let worker = self.workers.get(worker_id).ok_or_else(unknown)?;
        let connection = self
            .connections
            .get(&worker.connection)
            .ok_or_else(unknown)?;
        connection.outgoing.send(outgoing).map_err(|_| unknown())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (on change notifications) until `check` finds something, for at most `timeout`.
    fn wait<T>(&self, timeout: Duration, mut check: impl FnMut(&State) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(found) = check(&state) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline || state.stopped {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Records a new job (or reuses a resumed id) and returns its id.
    fn new_job(&self, dispatch: &Dispatch) -> Result<String, DispatchError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(DispatchError::Stopped);
        }
        let job_id = match &dispatch.job_id {
            Some(job_id) => job_id.clone(),
            None => state.new_id("AJ_"),
        };
        let room = Room {
            sid: state.new_id("RM_"),
            name: dispatch.room.clone(),
            ..Room::default()
        };
        // `namespace` is deprecated, but still part of the registry's key on the server.
        #[allow(deprecated)]
        let job = Job {
            id: job_id.clone(),
            dispatch_id: state.new_id("AD_"),
            r#type: dispatch.job_type as i32,
            room: Some(room),
            participant: dispatch.participant.clone(),
            namespace: dispatch.namespace.clone(),
            metadata: dispatch.metadata.clone(),
            agent_name: dispatch.agent_name.clone(),
            deployment: dispatch.deployment.clone(),
            attributes: dispatch.attributes.clone(),
            ..Job::default()
        };
        state.job_serial += 1;
        let created = state.job_serial;
        if let Some(existing) = state.jobs.get(&job_id) {
            if existing.phase == JobPhase::Offered {
                return Err(DispatchError::Duplicate(job_id));
            }
        }
        state.jobs.insert(
            job_id.clone(),
            JobRecord {
                created,
                job,
                worker_id: String::new(),
                phase: JobPhase::Failed,
                answer: None,
                token: None,
                url: dispatch.url.clone(),
            },
        );
        Ok(job_id)
    }

    fn dispatch(self: &Arc<Self>, dispatch: Dispatch) -> Result<Dispatched, DispatchError> {
        let job_id = self.new_job(&dispatch)?;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let worker_id = match self.choose_worker(&dispatch, &tried) {
                Ok(worker_id) => worker_id,
                Err(error) => {
                    self.fail_job(&job_id, &error.to_string());
                    return Err(error);
                }
            };
            tried.push(worker_id.clone());
            match self.offer_and_wait(&job_id, &worker_id, &dispatch) {
                Ok(answer) if !answer.available && !answer.terminate => continue,
                Ok(answer) => {
                    let token = self.settle_answer(&job_id, &answer, true)?;
                    let state = self
                        .lock()
                        .jobs
                        .get(&job_id)
                        .and_then(|job| job.job.state.clone())
                        .unwrap_or_default();
                    return Ok(Dispatched {
                        job_id,
                        worker_id,
                        answer,
                        token,
                        state,
                    });
                }
                Err(DispatchError::WorkerClosed { .. }) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Chooses among the untried available workers of the job's key, weighted by spare load.
    fn choose_worker(
        &self,
        dispatch: &Dispatch,
        tried: &[String],
    ) -> Result<String, DispatchError> {
        let mut state = self.lock();
        if state.stopped {
            return Err(DispatchError::Stopped);
        }
        let key = (
            dispatch.agent_name.as_str(),
            dispatch.namespace.as_str(),
            dispatch.job_type as i32,
            dispatch.deployment.as_str(),
        );
        let mut candidates: Vec<(u32, String, f32)> = state
            .workers
            .iter()
            .filter(|(worker_id, worker)| {
                worker.key() == key
                    && worker.status == WorkerStatus::WsAvailable
                    && !tried.contains(worker_id)
            })
            .map(|(worker_id, worker)| {
                (
                    worker.connection,
                    worker_id.clone(),
                    (1.0 - worker.load).max(0.0),
                )
            })
            .collect();
        candidates.sort_by_key(|(connection, _, _)| *connection);
        if candidates.is_empty() {
            return Err(DispatchError::NoWorkersAvailable {
                agent_name: dispatch.agent_name.clone(),
                job_type: dispatch.job_type,
                tried: tried.to_vec(),
            });
        }
        let total: f32 = candidates.iter().map(|(_, _, weight)| weight).sum();
        if total <= 0.0 {
            return Err(DispatchError::NoCapacity {
                agent_name: dispatch.agent_name.clone(),
                tried: tried.to_vec(),
            });
        }
        let mut pick = state.rng.f32() * total;
        // The last worker with any weight, should rounding leave `pick` past every weight.
        let mut chosen = None;
        for (_, worker_id, weight) in candidates {
            if weight > 0.0 {
                chosen = Some(worker_id);
                if pick < weight {
                    break;
                }
            }
            pick -= weight;
        }
        chosen.ok_or_else(|| DispatchError::NoCapacity {
            agent_name: dispatch.agent_name.clone(),
            tried: tried.to_vec(),
        })
    }

    fn fail_job(&self, job_id: &str, error: &str) {
        if let Some(job) = self.lock().jobs.get_mut(job_id) {
            job.fail(error);
        }
        self.changed.notify_all();
    }

    /// Sends `availability{job}` to one worker and waits for its answer.
    fn offer_and_wait(
        &self,
        job_id: &str,
        worker_id: &str,
        dispatch: &Dispatch,
    ) -> Result<AvailabilityResponse, DispatchError> {
        {
            let mut state = self.lock();
            if !state.workers.contains_key(worker_id) {
                return Err(DispatchError::UnknownWorker(worker_id.to_owned()));
            }
            let job = state
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| DispatchError::UnknownJob(job_id.to_owned()))?;
            if job.phase == JobPhase::Offered && job.worker_id == worker_id {
                return Err(DispatchError::Duplicate(job_id.to_owned()));
            }
            job.worker_id = worker_id.to_owned();
            job.phase = JobPhase::Offered;
            job.answer = None;
            let now = now_ns();
            let job_state = job.state_mut();
            *job_state = JobState::default();
            job_state.status = JobStatus::JsRunning as i32;
            worker_id.clone_into(&mut job_state.worker_id);
            job_state.started_at = now;
            job_state.updated_at = now;
            let request = AvailabilityRequest {
                job: Some(job.job.clone()),
                resuming: dispatch.resuming,
            };
            // A connection that is ending leaves the registry soon: the wait sees it close.
            let _ = state.send(
                worker_id,
                Outgoing::Proto(Box::new(server(server_message::Message::Availability(
                    request,
                )))),
            );
        }
        let answered = self.wait(self.options.availability_timeout, |state| {
            let job = state.jobs.get(job_id)?;
            if let Some(answer) = &job.answer {
                return Some(Ok(answer.clone()));
            }
            (!state.workers.contains_key(worker_id)).then(|| {
                Err(DispatchError::WorkerClosed {
                    worker_id: worker_id.to_owned(),
                })
            })
        });
        let outcome = answered.unwrap_or_else(|| {
            Err(if self.lock().stopped {
                DispatchError::Stopped
            } else {
                DispatchError::AvailabilityTimeout {
                    worker_id: worker_id.to_owned(),
                }
            })
        });
        if let Err(error) = &outcome {
            self.fail_job(job_id, &error.to_string());
        }
        outcome
    }

    /// Applies an answer: `terminate` ends the job, a refusal fails it, an accept mints the
    /// token (and with `assign`, sends or schedules the assignment per the policy).
    fn settle_answer(
        self: &Arc<Self>,
        job_id: &str,
        answer: &AvailabilityResponse,
        assign: bool,
    ) -> Result<Option<String>, DispatchError> {
        let mut state = self.lock();
        let policy = state.policy;
        let (api_key, api_secret) = (&self.options.api_key, &self.options.api_secret);
        let worker_permissions = {
            let job = state
                .jobs
                .get(job_id)
                .ok_or_else(|| DispatchError::UnknownJob(job_id.to_owned()))?;
            state.workers.get(&job.worker_id).map(|worker| {
                (
                    worker.permissions.clone(),
                    worker.request.agent_name.clone(),
                )
            })
        };
        let job = state
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| DispatchError::UnknownJob(job_id.to_owned()))?;
        if answer.terminate {
            job.end(JobStatus::JsSuccess, "");
            drop(state);
            self.changed.notify_all();
            return Ok(None);
        }
        if !answer.available {
            job.fail("worker not available");
            drop(state);
            self.changed.notify_all();
            return Ok(None);
        }
        let Some((permissions, agent_name)) = worker_permissions else {
            let error = DispatchError::WorkerClosed {
                worker_id: job.worker_id.clone(),
            };
            job.fail(&error.to_string());
            return Err(error);
        };
        let identity = if answer.participant_identity.is_empty() {
            format!("agent-{job_id}")
        } else {
            answer.participant_identity.clone()
        };
        let room = job
            .job
            .room
            .as_ref()
            .map(|room| room.name.clone())
            .unwrap_or_default();
        let token = job_token(
            api_key,
            api_secret,
            &room,
            &identity,
            answer,
            &agent_name,
            &permissions,
        )?;
        identity.clone_into(&mut job.state_mut().participant_identity);
        job.token = Some(token.clone());
        job.phase = JobPhase::Accepted;
        drop(state);
        if assign {
            match policy {
                AssignmentPolicy::Send => self.assign(job_id)?,
                AssignmentPolicy::Drop => {}
                AssignmentPolicy::Delay(delay) => {
                    let shared = Arc::clone(self);
                    let job_id = job_id.to_owned();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = shared.assign(&job_id);
                    });
                }
            }
        }
        self.changed.notify_all();
        Ok(Some(token))
    }

    fn assign(&self, job_id: &str) -> Result<(), DispatchError> {
        let mut state = self.lock();
        let job = state
            .jobs
            .get_mut(job_id)
            .filter(|job| job.phase == JobPhase::Accepted)
            .ok_or_else(|| DispatchError::UnknownJob(job_id.to_owned()))?;
        let assignment = JobAssignment {
            job: Some(job.job.clone()),
            token: job.token.clone().unwrap_or_default(),
            url: job.url.clone(),
        };
        job.phase = JobPhase::Running;
        let worker_id = job.worker_id.clone();
        let sent = state.send(
            &worker_id,
            Outgoing::Proto(Box::new(server(server_message::Message::Assignment(
                assignment,
            )))),
        );
        drop(state);
        self.changed.notify_all();
        sent
    }
}

/// A `ServerMessage` holding `message`.
fn server(message: server_message::Message) -> ServerMessage {
    ServerMessage {
        message: Some(message),
    }
}

/// Now, in nanoseconds since the epoch (the job state's unit).
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// The job's room token, as the server's `BuildAgentToken` mints it: the registration's
/// permissions, `room_join` and `agent` for the job's room, kind `agent`, 1 h.
/// (`livekit-api`'s grants have no `canSubscribeMetrics`, which the server also copies.)
fn job_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
    answer: &AvailabilityResponse,
    agent_name: &str,
    permissions: &ParticipantPermission,
) -> Result<String, DispatchError> {
    let grants = VideoGrants {
        room_join: true,
        agent: true,
        room: room.to_owned(),
        can_subscribe: Some(permissions.can_subscribe),
        can_publish: Some(permissions.can_publish),
        can_publish_data: Some(permissions.can_publish_data),
        can_update_own_metadata: Some(permissions.can_update_metadata),
        hidden: permissions.hidden,
        ..VideoGrants::default()
    };
    let mut attributes = answer.participant_attributes.clone();
    attributes.insert(AGENT_NAME_ATTRIBUTE.to_owned(), agent_name.to_owned());
    AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(JOB_TOKEN_TTL)
        .with_grants(grants)
        .with_identity(identity)
        .with_name(&answer.participant_name)
        .with_kind("agent")
        .with_metadata(&answer.participant_metadata)
        .with_attributes(attributes)
        .to_jwt()
        .map_err(|error| DispatchError::Token(error.to_string()))
}

/// The permissions a registration gets when it sends none.
fn default_permissions() -> ParticipantPermission {
    ParticipantPermission {
        can_subscribe: true,
        can_publish: true,
        can_publish_data: true,
        can_update_metadata: true,
        ..ParticipantPermission::default()
    }
}

/// Accepts connections until `stopped`, each on a task of its own.
async fn accept_until(shared: Arc<Shared>, listener: TcpListener, stopped: oneshot::Receiver<()>) {
    let accepting = async {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    tokio::spawn(serve_http(Arc::clone(&shared), tcp));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::select! {
        () = accepting => {}
        _ = stopped => {}
    }
}

/// What the HTTP layer decides before any upgrade.
enum Admission {
    Upgrade {
        worker_token: Option<String>,
        protocol: Option<String>,
    },
    NotFound,
    Unauthorized(String),
}

/// Reads the request head, answers 404/401 without upgrading, or upgrades and serves the
/// worker protocol.
async fn serve_http(shared: Arc<Shared>, mut tcp: TcpStream) {
    let Some((request, leftover)) = read_request(&mut tcp).await else {
        let _ = respond(&mut tcp, "404 Not Found", "").await;
        return;
    };
    match admit(&shared, &request) {
        Admission::NotFound => {
            let _ = respond(&mut tcp, "404 Not Found", "").await;
        }
        Admission::Unauthorized(reason) => {
            shared.lock().auth_failure_count += 1;
            shared.changed.notify_all();
            let _ = respond(&mut tcp, "401 Unauthorized", &reason).await;
        }
        Admission::Upgrade {
            worker_token,
            protocol,
        } => {
            let Ok(response) = create_response(&request) else {
                let _ = respond(&mut tcp, "400 Bad Request", "not a WebSocket upgrade").await;
                return;
            };
            let mut head = Vec::new();
            if write_response(&mut head, &response).is_err() || tcp.write_all(&head).await.is_err()
            {
                return;
            }
            let config = WebSocketConfig::default()
                .max_message_size(Some(shared.options.max_frame_bytes))
                .max_frame_size(Some(shared.options.max_frame_bytes));
            let ws =
                WebSocketStream::from_partially_read(tcp, leftover, Role::Server, Some(config))
                    .await;
            Connection::open(shared, worker_token, protocol)
                .serve(ws)
                .await;
        }
    }
}

/// Reads until a whole request head has arrived (or gives up: too long, too slow, closed, or
/// not a GET). Returns the request and any bytes after its head.
async fn read_request(tcp: &mut TcpStream) -> Option<(Request, Vec<u8>)> {
    let reading = async {
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 2048];
        loop {
            let read = tcp.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
            if let Some((size, request)) = Request::try_parse(&buffer).ok()? {
                return Some((request, buffer[size..].to_vec()));
            }
            if buffer.len() > MAX_HEAD_BYTES {
                return None;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .ok()
        .flatten()
}

/// The server's order: a token that is present must verify (401); the path must be the agent
/// route and the request an upgrade (404); the claims must grant `agent` (401).
fn admit(shared: &Shared, request: &Request) -> Admission {
    let query = request.uri().query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decoded(value))
        })
    };
    let header = request
        .headers()
        .get("authorization")
        .map(|value| value.to_str().unwrap_or("").to_owned());
    let token = match header {
        Some(value) => match value.strip_prefix("Bearer ") {
            Some(token) => Some(token.trim().to_owned()),
            None => return Admission::Unauthorized("invalid authorization header".to_owned()),
        },
        None => param("access_token"),
    };
    let verifier = TokenVerifier::with_api_key(&shared.options.api_key, &shared.options.api_secret);
    let claims = match token.as_deref().map(|token| verifier.verify(token)) {
        Some(Ok(claims)) => Some(claims),
        Some(Err(error)) => return Admission::Unauthorized(format!("invalid token: {error}")),
        None => None,
    };
    let prefix = shared.options.path_prefix.trim_end_matches('/');
    let is_upgrade = request
        .headers()
        .get("upgrade")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if request.uri().path() != format!("{prefix}/agent") || !is_upgrade {
        return Admission::NotFound;
    }
    if !claims.is_some_and(|claims| claims.video.agent) {
        return Admission::Unauthorized("permission denied".to_owned());
    }
    Admission::Upgrade {
        worker_token: param("worker_token"),
        protocol: param("protocol"),
    }
}

/// A query value with its `%XX` escapes (and `+` for space) decoded; a bad escape stays as is.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Writes a plain HTTP response and closes.
async fn respond(tcp: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}

/// One upgraded connection: before registration, then as a registered worker.
struct Connection {
    shared: Arc<Shared>,
    number: u32,
    incoming: mpsc::UnboundedReceiver<Outgoing>,
    worker_id: Option<String>,
    worker_token: Option<String>,
    protocol: Option<String>,
}

/// A reason to close a connection: the close code and reason it is sent.
type Closing = (u16, String);

impl Connection {
    fn open(shared: Arc<Shared>, worker_token: Option<String>, protocol: Option<String>) -> Self {
        let (outgoing, incoming) = mpsc::unbounded_channel();
        let number = {
            let mut state = shared.lock();
            state.connection_count += 1;
            let number = state.connection_count;
            state.connections.insert(
                number,
                ConnectionEntry {
                    outgoing,
                    worker_id: None,
                },
            );
            number
        };
        shared.changed.notify_all();
        Self {
            shared,
            number,
            incoming,
            worker_id: None,
            worker_token,
            protocol,
        }
    }

    async fn serve(mut self, mut ws: WebSocketStream<TcpStream>) {
        let closing = self.run(&mut ws).await;
        self.close_registration();
        if let Some((code, reason)) = closing {
            let frame = CloseFrame {
                code: code.into(),
                reason: reason.into(),
            };
            let _ = ws.close(Some(frame)).await;
            // Let the peer answer the close, so it sees a clean close rather than a reset.
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// Serves until the connection ends; returns how to close it, if the server closes it.
    async fn run(&mut self, ws: &mut WebSocketStream<TcpStream>) -> Option<Closing> {
        let options = &self.shared.options;
        let register_deadline = tokio::time::Instant::now() + options.register_timeout;
        let mut pings = tokio::time::interval_at(
            tokio::time::Instant::now() + options.ping_interval,
            options.ping_interval,
        );
        loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    None => return None,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        return Some((1009, "message too big".to_owned()));
                    }
                    Some(Err(_)) => return None,
                    Some(Ok(Message::Binary(bytes))) => {
                        let replies = match self.handle(&bytes) {
                            Ok(replies) => replies,
                            Err(closing) => return Some(closing),
                        };
                        for reply in replies {
                            if self.write(ws, reply).await.is_err() {
                                return None;
                            }
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Some((1003, "text frames are not supported".to_owned()));
                    }
                    Some(Ok(Message::Pong(_))) => self.count_pong(),
                    Some(Ok(_)) => {}
                },
                outgoing = self.incoming.recv() => match outgoing {
                    Some(Outgoing::Proto(message)) => {
                        if self.write(ws, *message).await.is_err() {
                            return None;
                        }
                    }
                    Some(Outgoing::Binary(bytes)) => {
                        if ws.send(Message::binary(bytes)).await.is_err() {
                            return None;
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => return Some((code, reason)),
                    None => return None,
                },
                _ = pings.tick() => {
                    if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(register_deadline), if self.worker_id.is_none() => {
                    return Some((1008, "register timeout".to_owned()));
                }
            }
        }
    }

    /// Writes a server message and logs it.
    async fn write(
        &self,
        ws: &mut WebSocketStream<TcpStream>,
        message: ServerMessage,
    ) -> Result<(), WsError> {
        let bytes = message.encode_to_vec();
        {
            let mut state = self.shared.lock();
            let at = self.shared.elapsed();
            state
                .sent
                .entry(self.number)
                .or_default()
                .push(Sent { at, message });
        }
        self.shared.changed.notify_all();
        ws.send(Message::binary(bytes)).await
    }

    fn count_pong(&self) {
        if let Some(worker_id) = &self.worker_id {
            if let Some(worker) = self.shared.lock().workers.get_mut(worker_id) {
                worker.ws_pong_count += 1;
            }
        }
    }

    /// Handles one binary frame: the replies to write, or why to close.
    fn handle(&mut self, bytes: &[u8]) -> Result<Vec<ServerMessage>, Closing> {
        let message = WorkerMessage::decode(bytes)
            .map_err(|error| (1003, format!("undecodable WorkerMessage: {error}")))?;
        let Some(inner) = message.message.clone() else {
            return Err((1002, "empty WorkerMessage".to_owned()));
        };
        let at = self.shared.elapsed();
        let replies = match (self.worker_id.clone(), inner) {
            (_, worker_message::Message::Ping(ping)) => {
                let pong = WorkerPong {
                    last_timestamp: ping.timestamp,
                    timestamp: now_ns() / 1_000_000,
                };
                Ok(vec![server(server_message::Message::Pong(pong))])
            }
            (None, worker_message::Message::Register(register)) => {
                self.register(register).map(|reply| vec![reply])
            }
            (None, _) => Err((
                1002,
                "unimplemented worker signal before register".to_owned(),
            )),
            (Some(_), worker_message::Message::Register(_)) => {
                Err((1002, "already registered".to_owned()))
            }
            (Some(worker_id), worker_message::Message::Availability(answer)) => {
                self.answer(&worker_id, answer);
                Ok(Vec::new())
            }
            (Some(worker_id), worker_message::Message::UpdateWorker(update)) => {
                self.update_worker(&worker_id, update);
                Ok(Vec::new())
            }
            (Some(worker_id), worker_message::Message::UpdateJob(update)) => {
                self.update_job(&worker_id, &update);
                Ok(Vec::new())
            }
            (Some(worker_id), worker_message::Message::MigrateJob(migrate)) => {
                self.shared
                    .lock()
                    .migrations
                    .push((worker_id, migrate.job_ids));
                Ok(Vec::new())
            }
            (Some(worker_id), worker_message::Message::SimulateJob(simulate)) => {
                self.simulate(worker_id, simulate);
                Ok(Vec::new())
            }
        };
        // Logged after its effect, so whoever sees it in the log also sees what it did.
        self.shared
            .lock()
            .received
            .entry(self.number)
            .or_default()
            .push(Logged { at, message });
        self.shared.changed.notify_all();
        replies
    }

    fn register(&mut self, register: RegisterWorkerRequest) -> Result<ServerMessage, Closing> {
        if JobType::try_from(register.r#type).is_err() {
            return Err((1002, "unknown job type".to_owned()));
        }
        let mut state = self.shared.lock();
        let worker_id = state.new_id("AW_");
        let mut node_id = String::from("ND_");
        node_id.push_str(&worker_id[3..]);
        let permissions = register
            .allowed_permissions
            .clone()
            .unwrap_or_else(default_permissions);
        state.workers.insert(
            worker_id.clone(),
            WorkerRecord {
                connection: self.number,
                request: register,
                permissions,
                status: WorkerStatus::WsAvailable,
                load: 0.0,
                job_count: 0,
                draining: false,
                worker_token: self.worker_token.clone(),
                protocol: self.protocol.clone(),
                ws_pong_count: 0,
            },
        );
        state.registrations.insert(worker_id.clone(), self.number);
        if let Some(entry) = state.connections.get_mut(&self.number) {
            entry.worker_id = Some(worker_id.clone());
        }
        self.worker_id = Some(worker_id.clone());
        let server_info = ServerInfo {
            edition: server_info::Edition::Standard as i32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: SERVER_PROTOCOL,
            agent_protocol: AGENT_PROTOCOL,
            region: REGION.to_owned(),
            node_id,
            ..ServerInfo::default()
        };
        let response = RegisterWorkerResponse {
            worker_id,
            server_info: Some(server_info),
            ..RegisterWorkerResponse::default()
        };
        Ok(server(server_message::Message::Register(response)))
    }

    /// An availability answer counts only for a job offered to this worker and not answered.
    fn answer(&self, worker_id: &str, answer: AvailabilityResponse) {
        let mut state = self.shared.lock();
        if let Some(job) = state.jobs.get_mut(&answer.job_id) {
            if job.phase == JobPhase::Offered && job.worker_id == worker_id && job.answer.is_none()
            {
                job.answer = Some(answer);
            }
        }
    }

    /// `status` only when present, `load` always (absent is 0).
    fn update_worker(&self, worker_id: &str, update: UpdateWorkerStatus) {
        let mut state = self.shared.lock();
        if let Some(worker) = state.workers.get_mut(worker_id) {
            if let Some(status) = update
                .status
                .and_then(|status| WorkerStatus::try_from(status).ok())
            {
                worker.status = status;
            }
            worker.load = update.load;
            worker.job_count = update.job_count;
            worker.draining = update.draining;
        }
    }

    /// Updates a job this worker runs; an unknown job (or another worker's) is ignored.
    fn update_job(&self, worker_id: &str, update: &UpdateJobStatus) {
        let mut state = self.shared.lock();
        let Some(job) = state
            .jobs
            .get_mut(&update.job_id)
            .filter(|job| job.phase == JobPhase::Running && job.worker_id == worker_id)
        else {
            return;
        };
        let status = JobStatus::try_from(update.status).unwrap_or(JobStatus::JsPending);
        if matches!(status, JobStatus::JsSuccess | JobStatus::JsFailed) {
            job.end(status, &update.error);
        } else {
            let now = now_ns();
            let state = job.state_mut();
            if state.status == JobStatus::JsPending as i32 && status != JobStatus::JsPending {
                state.started_at = now;
            }
            state.status = status as i32;
            update.error.clone_into(&mut state.error);
            state.updated_at = now;
        }
    }

    /// `simulate_job`: a room job (publisher when a participant is given) offered to this
    /// same worker, asynchronously.
    fn simulate(&self, worker_id: String, simulate: livekit_protocol::SimulateJobRequest) {
        let (agent_name, namespace, deployment) = {
            let state = self.shared.lock();
            let Some(worker) = state.workers.get(&worker_id) else {
                return;
            };
            (
                worker.request.agent_name.clone(),
                worker.request.namespace.clone().unwrap_or_default(),
                worker.request.deployment.clone(),
            )
        };
        let room = simulate.room.map(|room| room.name).unwrap_or_default();
        let mut dispatch = Dispatch::room(&room).for_agent(&agent_name);
        dispatch.namespace = namespace;
        dispatch.deployment = deployment;
        if simulate.participant.is_some() {
            dispatch.job_type = JobType::JtPublisher;
        }
        dispatch.participant = simulate.participant;
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let Ok(job_id) = shared.new_job(&dispatch) else {
                return;
            };
            if let Ok(answer) = shared.offer_and_wait(&job_id, &worker_id, &dispatch) {
                let _ = shared.settle_answer(&job_id, &answer, true);
            }
        });
    }

    /// The connection is gone: its worker leaves the registry (its log stays).
    fn close_registration(&self) {
        let mut state = self.shared.lock();
        state.connections.remove(&self.number);
        if let Some(worker_id) = &self.worker_id {
            state.workers.remove(worker_id);
        }
        drop(state);
        self.shared.changed.notify_all();
    }
}
