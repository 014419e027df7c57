//! The agent worker protocol as the real LiveKit server (1.13.5) speaks it: a raw worker
//! (protobuf over the `/agent` WebSocket, no runtime code) registers, is offered jobs, answers
//! them and updates them, and each test asserts what the server sent back. These pin the
//! behaviour the runtime's LiveKit worker is designed around: what an offer carries, what the
//! assignment's token grants, which events end a job (and which do not), and how long an offer
//! waits for its answer.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_api::access_token::TokenVerifier;
use livekit_protocol::{
    AvailabilityRequest, AvailabilityResponse, JobAssignment, JobStatus, JobType,
    RegisterWorkerRequest, RegisterWorkerResponse, ServerMessage, UpdateJobStatus, WorkerMessage,
    WorkerPing, server_message, worker_message,
};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::LiveKitServer;

/// How long a test waits for a message the server must send.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long a test watches for a message the server must not send. Offers and assignments
/// come about 0.2 s after their cause, a deleted dispatch's termination about 1.8 s after it.
const QUIET: Duration = Duration::from_secs(3);

/// A worker that speaks the protocol by hand.
struct RawWorker {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWorker {
    /// Opens the control WebSocket with a worker token (`video.agent`), as the SDKs do.
    async fn connect(server: &LiveKitServer) -> Self {
        let mut request = server
            .agent_ws_url()
            .into_client_request()
            .expect("a WebSocket request");
        let bearer = format!("Bearer {}", server.worker_token());
        request
            .headers_mut()
            .insert("Authorization", bearer.parse().expect("a header value"));
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the server upgrades /agent");
        Self { socket }
    }

    /// Connects and registers a `JT_ROOM` worker under `agent_name` (`""`: automatic dispatch).
    async fn registered(
        server: &LiveKitServer,
        agent_name: &str,
    ) -> (Self, RegisterWorkerResponse) {
        let mut worker = Self::connect(server).await;
        let registered = worker.register(agent_name).await;
        (worker, registered)
    }

    async fn register(&mut self, agent_name: &str) -> RegisterWorkerResponse {
        let register = RegisterWorkerRequest {
            r#type: JobType::JtRoom as i32,
            agent_name: agent_name.to_owned(),
            version: "openrtc-test".to_owned(),
            ..RegisterWorkerRequest::default()
        };
        self.send(worker_message::Message::Register(register)).await;
        match self.receive(PATIENCE).await {
            Some(server_message::Message::Register(registered)) => registered,
            other => panic!("expected a register response, got {other:?}"),
        }
    }

    async fn send(&mut self, message: worker_message::Message) {
        let envelope = WorkerMessage {
            message: Some(message),
        };
        self.socket
            .send(Message::Binary(envelope.encode_to_vec().into()))
            .await
            .expect("the worker message is sent");
    }

    /// The next server message within `within`, or `None` if none came. WebSocket pings are
    /// answered by tungstenite on the way.
    async fn receive(&mut self, within: Duration) -> Option<server_message::Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    let message = ServerMessage::decode(bytes).expect("a ServerMessage");
                    return Some(message.message.expect("a server message has a body"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(other)) => panic!("unexpected frame from the server: {other:?}"),
                Some(Err(error)) => panic!("the control socket failed: {error}"),
                None => panic!("the server closed the control socket"),
            }
        }
    }

    /// Asserts that the server sends nothing for [`QUIET`].
    async fn expect_quiet(&mut self, after: &str) {
        let message = self.receive(QUIET).await;
        assert!(
            message.is_none(),
            "after {after} the server sent {message:?}"
        );
    }

    async fn offer(&mut self) -> AvailabilityRequest {
        match self.receive(PATIENCE).await {
            Some(server_message::Message::Availability(request)) => request,
            other => panic!("expected a job offer, got {other:?}"),
        }
    }

    async fn answer(&mut self, response: AvailabilityResponse) {
        self.send(worker_message::Message::Availability(response))
            .await;
    }

    async fn assignment(&mut self) -> JobAssignment {
        match self.receive(PATIENCE).await {
            Some(server_message::Message::Assignment(assignment)) => assignment,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    async fn update_job(&mut self, job_id: &str, status: JobStatus) {
        let update = UpdateJobStatus {
            job_id: job_id.to_owned(),
            status: status as i32,
            ..UpdateJobStatus::default()
        };
        self.send(worker_message::Message::UpdateJob(update)).await;
    }

    /// Takes the next offer and accepts it as `identity`: the job's id and its assignment.
    async fn accept_next(&mut self, identity: &str) -> (String, JobAssignment) {
        let job_id = self.offer().await.job.expect("an offer has a job").id;
        self.answer(accept(&job_id, identity)).await;
        let assignment = self.assignment().await;
        (job_id, assignment)
    }
}

fn accept(job_id: &str, identity: &str) -> AvailabilityResponse {
    AvailabilityResponse {
        job_id: job_id.to_owned(),
        available: true,
        participant_identity: identity.to_owned(),
        ..AvailabilityResponse::default()
    }
}

fn refuse(job_id: &str, terminate: bool) -> AvailabilityResponse {
    AvailabilityResponse {
        job_id: job_id.to_owned(),
        available: false,
        terminate,
        ..AvailabilityResponse::default()
    }
}

#[tokio::test]
async fn registration_gives_a_worker_id_and_the_server_s_version() {
    let server = LiveKitServer::start();
    let (_worker, registered) = RawWorker::registered(&server, "").await;
    assert!(registered.worker_id.starts_with("AW_"), "{registered:?}");
    let info = registered.server_info.expect("server info");
    assert_eq!(info.version, "1.13.5");
    assert_eq!(info.agent_protocol, 1);
}

#[tokio::test]
async fn a_new_room_is_offered_to_an_automatic_worker_and_assigned_with_a_room_token() {
    let server = LiveKitServer::start();
    let (mut worker, registered) = RawWorker::registered(&server, "").await;
    let room = server.create_room("auto-1");

    let offer = worker.offer().await;
    assert!(!offer.resuming);
    let job = offer.job.expect("an offer has a job");
    assert!(job.id.starts_with("AJ_"), "{job:?}");
    assert!(
        job.dispatch_id.starts_with("AD_"),
        "the room's automatic dispatch: {job:?}"
    );
    assert_eq!(job.r#type, JobType::JtRoom as i32);
    let offered_room = job.room.as_ref().expect("a room job names its room");
    assert_eq!(
        (offered_room.name.as_str(), offered_room.sid.as_str()),
        ("auto-1", room.sid.as_str())
    );
    assert_eq!((job.agent_name.as_str(), job.metadata.as_str()), ("", ""));
    assert!(job.participant.is_none());
    let state = job.state.as_ref().expect("an offer has a state");
    assert_eq!(
        state.status,
        JobStatus::JsRunning as i32,
        "offered jobs are already RUNNING"
    );
    assert_eq!(state.worker_id, registered.worker_id);
    assert_eq!(state.participant_identity, "");

    worker.answer(accept(&job.id, "agent-x")).await;
    let assignment = worker.assignment().await;
    assert_eq!(
        assignment.url, None,
        "the OSS server leaves the URL to the worker"
    );
    let assigned = assignment.job.expect("an assignment has its job");
    assert_eq!(assigned.id, job.id);
    let assigned_state = assigned.state.expect("a state");
    assert_eq!(assigned_state.participant_identity, "agent-x");
    assert_eq!(assigned_state.status, JobStatus::JsRunning as i32);

    let claims = TokenVerifier::with_api_key(server.api_key(), server.api_secret())
        .verify(&assignment.token)
        .expect("the job token is signed with the worker's key");
    assert_eq!(claims.iss, server.api_key());
    assert_eq!(
        (claims.sub.as_str(), claims.kind.as_str()),
        ("agent-x", "agent")
    );
    assert_eq!(
        claims.exp - claims.nbf,
        3600,
        "the job token lives one hour"
    );
    let video = claims.video;
    assert!(video.room_join && video.agent && !video.hidden);
    assert_eq!(video.room, "auto-1");
    assert!(!video.room_admin && !video.room_create && !video.room_list);
    assert_eq!(
        (
            video.can_publish,
            video.can_subscribe,
            video.can_publish_data,
            video.can_update_own_metadata
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    assert_eq!(
        claims.attributes.into_iter().collect::<Vec<_>>(),
        [("lk.agent_name".to_owned(), String::new())]
    );
}

#[tokio::test]
async fn deleting_the_room_of_a_job_whose_agent_never_joined_terminates_nothing() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "").await;
    server.create_room("auto-1");
    let (job_id, _) = worker.accept_next("agent-x").await;
    worker.update_job(&job_id, JobStatus::JsRunning).await;

    server.delete_room("auto-1");
    assert!(server.list_rooms().is_empty());
    worker.expect_quiet("the room's deletion").await;
}

#[tokio::test]
async fn a_named_worker_gets_only_its_explicit_dispatch_and_its_deletion_terminates_the_job() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "named").await;
    server.create_room("tenant-room");
    worker
        .expect_quiet("a room with only the automatic dispatch")
        .await;

    let metadata = "{\"tenant\":\"acme\"}";
    let dispatch_id = server.create_dispatch("tenant-room", "named", metadata);
    assert!(dispatch_id.starts_with("AD_"), "{dispatch_id}");
    let job = worker.offer().await.job.expect("an offer has a job");
    assert_eq!(job.agent_name, "named");
    assert_eq!(job.metadata, metadata);
    assert_eq!(job.dispatch_id, dispatch_id);
    assert_eq!(job.room.expect("a room").name, "tenant-room");
    worker.answer(accept(&job.id, "agent-named")).await;
    let assigned = worker.assignment().await.job.expect("its job");
    assert_eq!(assigned.metadata, metadata);
    worker.update_job(&job.id, JobStatus::JsRunning).await;

    let deleted = server.delete_dispatch(&dispatch_id, "tenant-room");
    assert_eq!(deleted.id, dispatch_id);
    let deleted_at = Instant::now();
    match worker.receive(PATIENCE).await {
        Some(server_message::Message::Termination(termination)) => {
            assert_eq!(termination.job_id, job.id);
        }
        other => panic!("expected the job's termination, got {other:?}"),
    }
    eprintln!(
        "termination {:?} after DeleteDispatch",
        deleted_at.elapsed()
    );
}

#[tokio::test]
async fn a_dispatch_to_a_missing_room_creates_it_and_an_ended_job_is_not_terminated() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "named").await;
    let dispatch_id = server.create_dispatch("fresh-room", "named", "m");
    let room_names: Vec<String> = server
        .list_rooms()
        .into_iter()
        .map(|room| room.name)
        .collect();
    assert_eq!(room_names, ["fresh-room"]);
    let (job_id, _) = worker.accept_next("agent-fresh").await;
    worker.update_job(&job_id, JobStatus::JsSuccess).await;

    server.delete_dispatch(&dispatch_id, "fresh-room");
    worker
        .expect_quiet("deleting the dispatch of an ended job")
        .await;
}

#[tokio::test]
async fn a_refused_offer_goes_to_the_other_worker() {
    let server = LiveKitServer::start();
    let (mut first, _) = RawWorker::registered(&server, "").await;
    let (mut second, _) = RawWorker::registered(&server, "").await;
    server.create_room("two-workers");
    // The server picks one of the two at random (weighted by load).
    let (first_was_offered, offer) = tokio::select! {
        offer = first.offer() => (true, offer),
        offer = second.offer() => (false, offer),
    };
    let (refuser, other) = if first_was_offered {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    let job_id = offer.job.expect("a job").id;
    refuser.answer(refuse(&job_id, false)).await;

    let retried = other.offer().await.job.expect("a job");
    assert_eq!(
        retried.id, job_id,
        "the same job, offered to the next worker"
    );
    other.answer(accept(&job_id, "agent-other")).await;
    assert_eq!(other.assignment().await.job.expect("its job").id, job_id);
    refuser.expect_quiet("its refusal").await;
}

#[tokio::test]
async fn an_offer_refused_by_the_only_worker_is_dropped() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "").await;
    server.create_room("one-worker");
    let job_id = worker.offer().await.job.expect("a job").id;
    worker.answer(refuse(&job_id, false)).await;
    wait_for_log(&server, "no workers with sufficient capacity").await;
    // Logged where the room launched the job, after which the dispatch's jobs are final.
    wait_for_log(&server, "failed to send job request").await;
    worker.expect_quiet("its refusal").await;
    let dispatches = server.list_dispatch("one-worker");
    assert_eq!(dispatches.len(), 1, "{dispatches:?}");
    let jobs = &dispatches[0].state.as_ref().expect("a state").jobs;
    assert!(jobs.is_empty(), "a dropped job is not recorded: {jobs:?}");
}

#[tokio::test]
async fn an_offer_refused_with_terminate_ends_as_succeeded_without_an_assignment() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "").await;
    server.create_room("terminated");
    let job_id = worker.offer().await.job.expect("a job").id;
    worker.answer(refuse(&job_id, true)).await;
    let answered_at = Instant::now();
    let job = dispatched_job(&server, "terminated").await;
    eprintln!(
        "the job in ListDispatch {:?} after the answer",
        answered_at.elapsed()
    );
    let state = job.state.expect("a job state");
    assert_eq!(
        (job.id, state.status),
        (job_id, JobStatus::JsSuccess as i32)
    );
    assert_eq!(state.participant_identity, "");
    assert_eq!(state.ended_at, state.started_at);
    worker.expect_quiet("a terminating refusal").await;
}

#[tokio::test]
async fn an_offer_unanswered_for_3_s_is_withdrawn_and_a_late_accept_ignored() {
    let server = LiveKitServer::start();
    let (mut worker, _) = RawWorker::registered(&server, "").await;
    server.create_room("slow");
    let offered_at = Instant::now();
    let job_id = worker.offer().await.job.expect("a job").id;
    // The server's job request is an RPC with psrpc's default 3 s timeout, shorter than the
    // agent service's own 10 s wait for the answer.
    wait_for_log(&server, "context deadline exceeded").await;
    let withdrawn_after = offered_at.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(8)).contains(&withdrawn_after),
        "withdrawn {withdrawn_after:?} after the offer"
    );
    worker.answer(accept(&job_id, "agent-late")).await;
    worker.expect_quiet("an answer to a withdrawn offer").await;
    wait_for_log(&server, "received availability response for unknown job").await;
}

#[tokio::test]
async fn a_worker_ping_is_answered_with_a_pong_before_and_after_registration() {
    let server = LiveKitServer::start();
    let mut worker = RawWorker::connect(&server).await;
    ping_pong(&mut worker, 1_000).await;
    worker.register("").await;
    ping_pong(&mut worker, 2_000).await;
}

/// Sends a `WorkerPing` and asserts the pong: our timestamp back, and the server's time.
async fn ping_pong(worker: &mut RawWorker, timestamp: i64) {
    let ping = WorkerPing { timestamp };
    worker.send(worker_message::Message::Ping(ping)).await;
    match worker.receive(PATIENCE).await {
        Some(server_message::Message::Pong(pong)) => {
            assert_eq!(pong.last_timestamp, timestamp);
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            let server_ms = u128::try_from(pong.timestamp).expect("a positive time");
            assert!(
                now_ms.abs_diff(server_ms) < 60_000,
                "server time in ms: {pong:?}"
            );
        }
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// Polls `ListDispatch` until the room's only dispatch lists a job, and returns it: a job
/// appears there only when the server's internal job request returns, which can be seconds
/// after the worker's answer.
async fn dispatched_job(server: &LiveKitServer, room: &str) -> livekit_protocol::Job {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let dispatches = server.list_dispatch(room);
        assert_eq!(dispatches.len(), 1, "{dispatches:?}");
        let state = dispatches[0].state.clone().expect("a dispatch state");
        if let Some(job) = state.jobs.into_iter().next() {
            return job;
        }
        assert!(Instant::now() < deadline, "no job in {room}'s dispatch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the server's log until it has a line containing `needle`.
async fn wait_for_log(server: &LiveKitServer, needle: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !server.log_contains(needle) {
        assert!(
            Instant::now() < deadline,
            "the server never logged {needle:?}; its log ends:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
