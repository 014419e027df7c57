//! The stand-in's own checks, against a tiny raw client written here (a WebSocket and
//! hand-built protobuf messages, not the runtime's worker): the handshake's auth and routing,
//! registration, offers with their answers and token, job updates, and the connection rules.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_protocol::{
    AvailabilityResponse, JobStatus, MigrateJobRequest, RegisterWorkerRequest,
    RegisterWorkerResponse, Room, ServerMessage, SimulateJobRequest, UpdateJobStatus,
    UpdateWorkerStatus, WorkerMessage, WorkerPing, WorkerStatus, server_info, server_message,
    worker_message,
};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::standin::{
    AssignmentPolicy, Dispatch, DispatchError, Dispatched, JobPhase, StandIn, StandInOptions,
    TerminationReason,
};
use crate::support::wait_for;

/// How long any single step may take (a failure, never a pause: nothing here times out).
const STEP: Duration = Duration::from_secs(5);

/// A worker reduced to its socket: blocking calls over its own small runtime.
struct RawWorker {
    runtime: tokio::runtime::Runtime,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWorker {
    /// Dials `url` with `token` as a Bearer header (if any); the error is the handshake's.
    fn dial(url: &str, token: Option<&str>) -> Result<Self, WsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the raw worker's runtime starts");
        let mut request = url.into_client_request()?;
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("a header value"),
            );
        }
        let (ws, _) = runtime.block_on(connect_async(request))?;
        Ok(Self { runtime, ws })
    }

    /// Dials the stand-in's agent route with a good worker token.
    fn connect(standin: &StandIn) -> Self {
        Self::dial(&standin.agent_ws_url(), Some(&standin.worker_token()))
            .expect("the stand-in upgrades a worker with the agent grant")
    }

    /// Connects and registers as `agent_name` (a room worker), returning the response.
    fn registered(standin: &StandIn, agent_name: &str) -> (Self, RegisterWorkerResponse) {
        let mut worker = Self::connect(standin);
        let mut register = RegisterWorkerRequest::default();
        agent_name.clone_into(&mut register.agent_name);
        "raw-1".clone_into(&mut register.version);
        worker.send(worker_message::Message::Register(register));
        match worker.recv() {
            server_message::Message::Register(response) => (worker, response),
            other => panic!("expected the register response first, got {other:?}"),
        }
    }

    fn send(&mut self, message: worker_message::Message) {
        let bytes = WorkerMessage {
            message: Some(message),
        }
        .encode_to_vec();
        self.send_frame(Message::binary(bytes));
    }

    fn send_frame(&mut self, frame: Message) {
        self.runtime
            .block_on(self.ws.send(frame))
            .expect("the frame is written");
    }

    /// The next server message (WebSocket control frames skipped); panics on anything else.
    fn recv(&mut self) -> server_message::Message {
        let ws = &mut self.ws;
        self.runtime.block_on(async {
            tokio::time::timeout(STEP, async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Binary(bytes))) => {
                            return ServerMessage::decode(bytes)
                                .expect("a ServerMessage")
                                .message
                                .expect("a non-empty ServerMessage");
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        other => panic!("expected a server message, got {other:?}"),
                    }
                }
            })
            .await
            .expect("a server message in time")
        })
    }

    /// The next frame of any kind (control frames included).
    fn recv_frame(&mut self) -> Message {
        let ws = &mut self.ws;
        self.runtime.block_on(async {
            tokio::time::timeout(STEP, ws.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a readable frame")
        })
    }

    /// Reads until the server closes; returns its close frame.
    fn closed(&mut self) -> Option<CloseFrame> {
        let ws = &mut self.ws;
        self.runtime.block_on(async {
            tokio::time::timeout(STEP, async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(frame))) => return frame,
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => return None,
                    }
                }
            })
            .await
            .expect("the server closes in time")
        })
    }

    /// Answers an offer.
    fn answer(&mut self, job_id: &str, available: bool, terminate: bool, identity: &str) {
        let mut answer = AvailabilityResponse::default();
        job_id.clone_into(&mut answer.job_id);
        answer.available = available;
        answer.terminate = terminate;
        identity.clone_into(&mut answer.participant_identity);
        "Agent".clone_into(&mut answer.participant_name);
        answer
            .participant_attributes
            .insert("lk.agent.name".to_owned(), "raw".to_owned());
        self.send(worker_message::Message::Availability(answer));
    }

    /// The next message must be an offer; returns its job.
    fn offer(&mut self) -> livekit_protocol::Job {
        match self.recv() {
            server_message::Message::Availability(request) => {
                request.job.expect("an offer carries its job")
            }
            other => panic!("expected an offer, got {other:?}"),
        }
    }
}

fn options() -> StandInOptions {
    StandInOptions {
        availability_timeout: STEP,
        ..StandInOptions::default()
    }
}

/// The status line of a plain HTTP request's response.
fn http_status(standin: &StandIn, request: &str) -> String {
    let address = standin.url().replacen("http://", "", 1);
    let mut tcp = std::net::TcpStream::connect(&address).expect("the stand-in listens");
    tcp.set_read_timeout(Some(STEP)).expect("a read timeout");
    tcp.write_all(request.replace("{host}", &address).as_bytes())
        .expect("the request is written");
    let mut response = String::new();
    let _ = tcp.read_to_string(&mut response);
    response.lines().next().unwrap_or("").to_owned()
}

/// The HTTP status a failed WebSocket handshake got.
fn refused_status(result: Result<RawWorker, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

/// Tests call the stand-in from several threads at once.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<StandIn>();
};

#[test]
fn registration_round_trip() {
    let standin = StandIn::start(options());
    let (_worker, response) = RawWorker::registered(&standin, "support");
    assert!(response.worker_id.starts_with("AW_"), "{response:?}");
    let info = response.server_info.expect("server_info");
    assert_eq!(info.region, "test");
    assert_eq!(info.agent_protocol, 1);
    assert_eq!(info.edition, server_info::Edition::Standard as i32);
    let workers = standin.wait_for_workers(1, STEP);
    assert_eq!(workers.len(), 1);
    let view = &workers[0];
    assert_eq!(view.worker_id, response.worker_id);
    assert_eq!(view.agent_name, "support");
    assert_eq!(view.version, "raw-1");
    assert_eq!(view.status, WorkerStatus::WsAvailable);
    assert_eq!(view.load, 0.0);
    assert_eq!(view.connection, 1);
    let permissions = &view.permissions;
    assert!(permissions.can_publish && permissions.can_subscribe);
    assert!(permissions.can_publish_data && permissions.can_update_metadata);
    assert!(!permissions.hidden && !permissions.can_subscribe_metrics);
    assert_eq!(standin.connections(), 1);
    let log = standin.messages(&response.worker_id);
    assert_eq!(log.len(), 1);
    assert!(matches!(
        log[0].message.message,
        Some(worker_message::Message::Register(_))
    ));
}

#[test]
fn tokens_without_the_agent_grant_or_with_a_wrong_secret_get_401_without_upgrade() {
    let standin = StandIn::start(options());
    let url = standin.agent_ws_url();
    let grants = VideoGrants {
        room_join: true,
        room: "room".to_owned(),
        ..VideoGrants::default()
    };
    let no_agent = AccessToken::with_api_key(standin.api_key(), standin.api_secret())
        .with_identity("someone")
        .with_grants(grants)
        .to_jwt()
        .expect("a token");
    assert_eq!(refused_status(RawWorker::dial(&url, Some(&no_agent))), 401);
    let agent = VideoGrants {
        agent: true,
        ..VideoGrants::default()
    };
    let wrong_secret =
        AccessToken::with_api_key(standin.api_key(), "not-the-secret-of-this-server")
            .with_grants(agent)
            .to_jwt()
            .expect("a token");
    assert_eq!(
        refused_status(RawWorker::dial(&url, Some(&wrong_secret))),
        401
    );
    assert_eq!(refused_status(RawWorker::dial(&url, None)), 401);
    assert_eq!(standin.auth_failures(), 3);
    assert_eq!(standin.connections(), 0, "no upgrade happened");
    // The query parameter works when there is no header; worker_token and protocol are kept.
    let query = format!(
        "{url}?worker_token=cloud%2Btoken&access_token={}&protocol=1",
        standin.worker_token()
    );
    let mut worker = RawWorker::dial(&query, None).expect("access_token in the query is accepted");
    worker.send(worker_message::Message::Register(
        RegisterWorkerRequest::default(),
    ));
    assert!(matches!(
        worker.recv(),
        server_message::Message::Register(_)
    ));
    let view = &standin.workers()[0];
    assert_eq!(view.worker_token.as_deref(), Some("cloud+token"));
    assert_eq!(view.protocol.as_deref(), Some("1"));
    assert_eq!(standin.connections(), 1);
    assert_eq!(standin.auth_failures(), 3);
}

#[test]
fn a_plain_get_or_another_path_gets_404() {
    let standin = StandIn::start(options());
    let plain = "GET /agent HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n";
    assert_eq!(http_status(&standin, plain), "HTTP/1.1 404 Not Found");
    let wrong_path = format!(
        "{}/elsewhere",
        standin.url().replacen("http://", "ws://", 1)
    );
    assert_eq!(
        refused_status(RawWorker::dial(&wrong_path, Some(&standin.worker_token()))),
        404
    );
    assert_eq!(standin.connections(), 0);
    assert_eq!(standin.auth_failures(), 0);
}

#[test]
fn dispatch_offers_the_room_and_assigns_a_token_that_verifies() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let dispatched: Dispatched = std::thread::scope(|scope| {
        let dispatching =
            scope.spawn(|| standin.dispatch(Dispatch::room("room-1").with_metadata("{\"a\":1}")));
        let job = worker.offer();
        assert!(job.id.starts_with("AJ_") && job.dispatch_id.starts_with("AD_"));
        let room = job.room.clone().expect("the offer names the room");
        assert_eq!(room.name, "room-1");
        assert!(room.sid.starts_with("RM_"));
        assert_eq!(job.metadata, "{\"a\":1}");
        let state = job.state.clone().expect("the offer carries a state");
        assert_eq!(state.status, JobStatus::JsRunning as i32);
        assert_eq!(state.worker_id, registered.worker_id);
        worker.answer(&job.id, true, false, "agent-raw");
        let assignment = match worker.recv() {
            server_message::Message::Assignment(assignment) => assignment,
            other => panic!("expected the assignment, got {other:?}"),
        };
        assert_eq!(
            assignment.job.as_ref().map(|job| job.id.as_str()),
            Some(job.id.as_str())
        );
        assert_eq!(assignment.url, None);
        let claims = TokenVerifier::with_api_key(standin.api_key(), standin.api_secret())
            .verify(&assignment.token)
            .expect("the job token verifies with the server's key");
        assert!(claims.video.room_join && claims.video.agent);
        assert_eq!(claims.video.room, "room-1");
        assert_eq!(claims.sub, "agent-raw");
        assert_eq!(claims.name, "Agent");
        assert_eq!(claims.kind, "agent");
        assert_eq!(claims.video.can_publish, Some(true));
        assert_eq!(
            claims.attributes.get("lk.agent_name").map(String::as_str),
            Some("")
        );
        assert_eq!(
            claims.attributes.get("lk.agent.name").map(String::as_str),
            Some("raw")
        );
        let dispatched = dispatching
            .join()
            .expect("the dispatch thread")
            .expect("the dispatch succeeds");
        assert_eq!(dispatched.token.as_deref(), Some(assignment.token.as_str()));
        dispatched
    });
    assert_eq!(dispatched.worker_id, registered.worker_id);
    assert!(dispatched.answer.available);
    let view = standin
        .job(&dispatched.job_id)
        .expect("the job is recorded");
    assert_eq!(view.phase, JobPhase::Running);
    assert_eq!(view.participant_identity, "agent-raw");
    assert_eq!(
        standin.workers()[0].running_jobs,
        vec![dispatched.job_id.clone()]
    );
}

/// Which of `workers` the stand-in offered something to.
fn offered_to(standin: &StandIn, workers: &[&str]) -> String {
    wait_for("an offer", || {
        workers.iter().find_map(|worker_id| {
            standin
                .sent(worker_id)
                .iter()
                .any(|sent| {
                    matches!(
                        sent.message.message,
                        Some(server_message::Message::Availability(_))
                    )
                })
                .then(|| (*worker_id).to_owned())
        })
    })
}

#[test]
fn a_refusal_makes_the_next_worker_be_tried() {
    let standin = StandIn::start(options());
    let (mut first, first_id) = RawWorker::registered(&standin, "a");
    let (mut second, second_id) = RawWorker::registered(&standin, "a");
    let ids = [first_id.worker_id.as_str(), second_id.worker_id.as_str()];
    std::thread::scope(|scope| {
        let dispatching = scope.spawn(|| standin.dispatch(Dispatch::room("r").for_agent("a")));
        let refuser = offered_to(&standin, &ids);
        let (refusing, accepting, accepter) = if refuser == ids[0] {
            (&mut first, &mut second, ids[1])
        } else {
            (&mut second, &mut first, ids[0])
        };
        let job = refusing.offer();
        refusing.answer(&job.id, false, false, "");
        let again = accepting.offer();
        assert_eq!(again.id, job.id, "the same job goes to the other worker");
        accepting.answer(&again.id, true, false, "");
        assert!(matches!(
            accepting.recv(),
            server_message::Message::Assignment(_)
        ));
        let dispatched = dispatching
            .join()
            .expect("the dispatch thread")
            .expect("the second worker takes it");
        assert_eq!(dispatched.worker_id, accepter);
        let view = standin.job(&job.id).expect("the job");
        assert_eq!(view.worker_id, accepter);
        assert_eq!(view.participant_identity, format!("agent-{}", job.id));
    });
}

#[test]
fn a_terminate_answer_ends_the_job_with_success_and_no_other_worker_is_asked() {
    let standin = StandIn::start(options());
    let (mut first, first_id) = RawWorker::registered(&standin, "a");
    let (mut second, second_id) = RawWorker::registered(&standin, "a");
    let ids = [first_id.worker_id.as_str(), second_id.worker_id.as_str()];
    std::thread::scope(|scope| {
        let dispatching = scope.spawn(|| standin.dispatch(Dispatch::room("r").for_agent("a")));
        let chosen = offered_to(&standin, &ids);
        let (worker, other) = if chosen == ids[0] {
            (&mut first, ids[1])
        } else {
            (&mut second, ids[0])
        };
        let job = worker.offer();
        worker.answer(&job.id, false, true, "");
        let dispatched = dispatching
            .join()
            .expect("the dispatch thread")
            .expect("a terminated job is a dispatch that succeeded");
        assert_eq!(dispatched.token, None);
        assert_eq!(dispatched.state.status, JobStatus::JsSuccess as i32);
        assert_eq!(
            standin.job(&job.id).expect("the job").phase,
            JobPhase::Ended
        );
        assert!(standin.sent(other).iter().all(|sent| !matches!(
            sent.message.message,
            Some(server_message::Message::Availability(_))
        )));
    });
}

#[test]
fn update_job_success_ends_the_job_and_unknown_jobs_are_ignored() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let job_id = std::thread::scope(|scope| {
        let dispatching = scope.spawn(|| standin.dispatch(Dispatch::room("r")));
        let job = worker.offer();
        worker.answer(&job.id, true, false, "");
        assert!(matches!(
            worker.recv(),
            server_message::Message::Assignment(_)
        ));
        dispatching
            .join()
            .expect("the dispatch thread")
            .expect("accepted")
            .job_id
    });
    let mut unknown = UpdateJobStatus::default();
    "AJ_unknown".clone_into(&mut unknown.job_id);
    unknown.status = JobStatus::JsSuccess as i32;
    worker.send(worker_message::Message::UpdateJob(unknown));
    let mut running = UpdateJobStatus::default();
    job_id.clone_into(&mut running.job_id);
    running.status = JobStatus::JsRunning as i32;
    worker.send(worker_message::Message::UpdateJob(running.clone()));
    let mut done = running;
    done.status = JobStatus::JsSuccess as i32;
    worker.send(worker_message::Message::UpdateJob(done));
    let view = standin.wait_for_job_status(&job_id, JobStatus::JsSuccess, STEP);
    assert_eq!(view.phase, JobPhase::Ended);
    assert!(
        view.job
            .state
            .as_ref()
            .is_some_and(|state| state.ended_at > 0)
    );
    assert!(standin.workers()[0].running_jobs.is_empty());
    // The log entry follows the effect: wait for it rather than race it.
    standin.wait_for_message(
        &registered.worker_id,
        |message| matches!(&message.message, Some(worker_message::Message::UpdateJob(update)) if update.status == JobStatus::JsSuccess as i32 && update.job_id == job_id),
        STEP,
    );
    assert_eq!(standin.messages(&registered.worker_id).len(), 5);
    assert_eq!(
        standin.workers().len(),
        1,
        "the unknown job did not close it"
    );
}

#[test]
fn update_worker_sets_the_status_only_when_present_and_the_load_always() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let full = UpdateWorkerStatus {
        status: Some(WorkerStatus::WsFull as i32),
        load: 0.75,
        job_count: 3,
        ..UpdateWorkerStatus::default()
    };
    worker.send(worker_message::Message::UpdateWorker(full));
    let load_only = UpdateWorkerStatus {
        load: 0.5,
        ..UpdateWorkerStatus::default()
    };
    worker.send(worker_message::Message::UpdateWorker(load_only));
    standin.wait_for_message(
        &registered.worker_id,
        |message| {
            matches!(&message.message, Some(worker_message::Message::UpdateWorker(update)) if update.status.is_none())
        },
        STEP,
    );
    let view = &standin.workers()[0];
    assert_eq!(view.status, WorkerStatus::WsFull);
    assert_eq!(view.load, 0.5);
    assert_eq!(view.job_count, 0);
    let refused = standin.dispatch(Dispatch::room("r"));
    assert!(
        refused.is_err(),
        "a full worker is not offered jobs: {refused:?}"
    );
}

#[test]
fn an_oversized_frame_closes_the_connection_with_1009() {
    let standin = StandIn::start(StandInOptions {
        max_frame_bytes: 1024,
        ..options()
    });
    let (mut worker, _) = RawWorker::registered(&standin, "");
    worker.send_frame(Message::binary(vec![0_u8; 2048]));
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    wait_for("the worker to leave the registry", || {
        standin.workers().is_empty().then_some(())
    });
}

#[test]
fn an_undecodable_frame_closes_the_connection() {
    let standin = StandIn::start(options());
    let (mut worker, _) = RawWorker::registered(&standin, "");
    worker.send_frame(Message::binary(vec![0xff, 0xff, 0xff]));
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1003);
}

#[test]
fn ping_before_register_gets_a_pong_and_anything_else_closes() {
    let standin = StandIn::start(options());
    let mut worker = RawWorker::connect(&standin);
    let ping = WorkerPing { timestamp: 42 };
    worker.send(worker_message::Message::Ping(ping));
    match worker.recv() {
        server_message::Message::Pong(pong) => {
            assert_eq!(pong.last_timestamp, 42);
            assert!(pong.timestamp > 0);
        }
        other => panic!("expected a pong, got {other:?}"),
    }
    worker.send(worker_message::Message::UpdateWorker(
        UpdateWorkerStatus::default(),
    ));
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1002);
    assert!(standin.workers().is_empty());
    assert!(standin.registrations().is_empty());
}

/// Registers a worker, dispatches one job to it, and accepts it; returns the worker and job id
/// once the assignment has arrived.
fn running_job(standin: &StandIn) -> (RawWorker, String, String) {
    let (mut worker, registered) = RawWorker::registered(standin, "");
    let job_id = std::thread::scope(|scope| {
        let dispatching = scope.spawn(|| standin.dispatch(Dispatch::room("r")));
        let job = worker.offer();
        worker.answer(&job.id, true, false, "");
        assert!(matches!(
            worker.recv(),
            server_message::Message::Assignment(_)
        ));
        dispatching
            .join()
            .expect("the dispatch thread")
            .expect("accepted")
            .job_id
    });
    (worker, registered.worker_id, job_id)
}

fn is_assignment(message: &ServerMessage) -> bool {
    matches!(
        message.message,
        Some(server_message::Message::Assignment(_))
    )
}

#[test]
fn offer_keeps_an_accepted_job_pending_until_assign() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let offered = std::thread::scope(|scope| {
        let offering =
            scope.spawn(|| standin.offer(&registered.worker_id, Dispatch::room("later")));
        let job = worker.offer();
        worker.answer(&job.id, true, false, "agent-later");
        offering
            .join()
            .expect("the offer thread")
            .expect("the worker accepts")
    });
    assert!(offered.answer.available);
    let pending = standin.job(&offered.job_id).expect("the job");
    assert_eq!(pending.phase, JobPhase::Accepted);
    assert!(pending.token.is_some(), "the token is minted on accept");
    assert!(
        !standin
            .sent(&registered.worker_id)
            .iter()
            .any(|sent| is_assignment(&sent.message)),
        "no assignment before assign"
    );
    standin
        .assign(&offered.job_id)
        .expect("an accepted job assigns");
    match worker.recv() {
        server_message::Message::Assignment(assignment) => {
            assert_eq!(Some(assignment.token), pending.token);
        }
        other => panic!("expected the assignment, got {other:?}"),
    }
    assert_eq!(
        standin.job(&offered.job_id).expect("the job").phase,
        JobPhase::Running
    );
    assert_eq!(
        standin.assign(&offered.job_id),
        Err(DispatchError::UnknownJob(offered.job_id.clone())),
        "a running job is not assigned twice"
    );
}

#[test]
fn the_assignment_policy_drops_or_delays_the_assignment() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let accept_one = |worker: &mut RawWorker| {
        std::thread::scope(|scope| {
            let dispatching = scope.spawn(|| standin.dispatch(Dispatch::room("r")));
            let job = worker.offer();
            worker.answer(&job.id, true, false, "");
            dispatching
                .join()
                .expect("the dispatch thread")
                .expect("accepted")
        })
    };
    standin.set_assignment_policy(AssignmentPolicy::Drop);
    let dropped = accept_one(&mut worker);
    assert!(dropped.token.is_some());
    assert_eq!(
        standin.job(&dropped.job_id).expect("the job").phase,
        JobPhase::Accepted
    );
    let delay = Duration::from_millis(200);
    standin.set_assignment_policy(AssignmentPolicy::Delay(delay));
    let delayed = accept_one(&mut worker);
    match worker.recv() {
        server_message::Message::Assignment(assignment) => {
            assert_eq!(
                assignment.job.map(|job| job.id),
                Some(delayed.job_id.clone()),
                "only the delayed job is assigned, not the dropped one"
            );
        }
        other => panic!("expected the delayed assignment, got {other:?}"),
    }
    let answered_at = standin
        .wait_for_message(
            &registered.worker_id,
            |message| {
                matches!(&message.message, Some(worker_message::Message::Availability(answer)) if answer.job_id == delayed.job_id)
            },
            STEP,
        )
        .at;
    let assigned_at = standin
        .sent(&registered.worker_id)
        .iter()
        .find(|sent| is_assignment(&sent.message))
        .expect("the assignment is logged")
        .at;
    assert!(
        assigned_at >= answered_at + delay,
        "assigned at {assigned_at:?}, answered at {answered_at:?}"
    );
}

#[test]
fn terminate_sends_the_termination_and_records_the_reason() {
    let standin = StandIn::start(options());
    let (mut worker, _, job_id) = running_job(&standin);
    let view = standin
        .terminate(&job_id, TerminationReason::AgentLeftRoom)
        .expect("a running job terminates");
    assert_eq!(view.status, JobStatus::JsFailed);
    assert_eq!(view.error, "agent worker left the room");
    match worker.recv() {
        server_message::Message::Termination(termination) => {
            assert_eq!(termination.job_id, job_id);
        }
        other => panic!("expected the termination, got {other:?}"),
    }
    assert_eq!(
        standin
            .terminate(&job_id, TerminationReason::Requested)
            .map(|view| view.status),
        Err(DispatchError::UnknownJob(job_id.clone())),
        "an ended job is not terminated again"
    );
}

#[test]
fn a_closed_worker_leaves_and_its_reconnect_registers_anew() {
    let standin = StandIn::start(options());
    let (mut worker, first, job_id) = running_job(&standin);
    standin
        .close_worker(&first, 1001)
        .expect("a connected worker closes");
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    wait_for("the worker to leave", || {
        standin.workers().is_empty().then_some(())
    });
    let (mut again, second) = RawWorker::registered(&standin, "");
    assert_ne!(second.worker_id, first);
    again.send(worker_message::Message::MigrateJob(MigrateJobRequest {
        job_ids: vec![job_id.clone()],
    }));
    wait_for("the migration", || {
        (!standin.migrations().is_empty()).then_some(())
    });
    assert_eq!(
        standin.migrations(),
        vec![(second.worker_id.clone(), vec![job_id])]
    );
    assert_eq!(standin.workers()[0].connection, 2);
    assert_eq!(
        standin.registrations(),
        vec![(1, first.clone()), (2, second.worker_id)]
    );
    assert_eq!(standin.connections(), 2);
    assert!(
        !standin.messages(&first).is_empty(),
        "a closed registration's log stays"
    );
}

#[test]
fn register_must_come_within_the_register_timeout() {
    let standin = StandIn::start(StandInOptions {
        register_timeout: Duration::from_millis(200),
        ..options()
    });
    let mut worker = RawWorker::connect(&standin);
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1008);
    assert!(standin.registrations().is_empty());
}

#[test]
fn websocket_pings_come_every_ping_interval_and_pongs_are_counted() {
    let standin = StandIn::start(StandInOptions {
        ping_interval: Duration::from_millis(50),
        ..options()
    });
    let (mut worker, _) = RawWorker::registered(&standin, "");
    let mut pings = 0;
    while pings < 3 {
        if let Message::Ping(_) = worker.recv_frame() {
            pings += 1;
        }
    }
    // Reading flushes the automatic pongs.
    let _ = worker.recv_frame();
    wait_for("a pong to be counted", || {
        (standin.workers()[0].ws_pong_count >= 2).then_some(())
    });
}

#[test]
fn simulate_job_offers_a_job_to_the_same_worker() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "sim-agent");
    worker.send(worker_message::Message::SimulateJob(SimulateJobRequest {
        room: Some(Room {
            name: "simulated".to_owned(),
            ..Room::default()
        }),
        ..SimulateJobRequest::default()
    }));
    let job = worker.offer();
    assert_eq!(job.room.map(|room| room.name).as_deref(), Some("simulated"));
    assert_eq!(job.agent_name, "sim-agent");
    assert_eq!(job.r#type, livekit_protocol::JobType::JtRoom as i32);
    worker.answer(&job.id, true, false, "");
    assert!(matches!(
        worker.recv(),
        server_message::Message::Assignment(_)
    ));
    let view = standin.wait_for_job(&job.id, |view| view.phase == JobPhase::Running, STEP);
    assert_eq!(view.worker_id, registered.worker_id);
}

#[test]
fn dispatches_race_from_several_threads() {
    const JOBS: usize = 6;
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    let dispatched = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..JOBS)
            .map(|index| {
                let standin = &standin;
                scope.spawn(move || standin.dispatch(Dispatch::room(&format!("room-{index}"))))
            })
            .collect();
        let mut assigned = 0;
        while assigned < JOBS {
            match worker.recv() {
                server_message::Message::Availability(request) => {
                    let job = request.job.expect("a job");
                    worker.answer(&job.id, true, false, "");
                }
                server_message::Message::Assignment(_) => assigned += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a dispatch thread").expect("accepted"))
            .collect::<Vec<_>>()
    });
    let mut ids: Vec<String> = dispatched.into_iter().map(|done| done.job_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), JOBS);
    assert_eq!(standin.workers()[0].running_jobs, ids);
    assert_eq!(standin.jobs().len(), JOBS);
    assert_eq!(standin.workers()[0].worker_id, registered.worker_id);
}

#[test]
fn go_away_raw_frames_and_text_frames() {
    let standin = StandIn::start(options());
    let (mut worker, registered) = RawWorker::registered(&standin, "");
    standin
        .go_away(&registered.worker_id, "moving")
        .expect("sent");
    match worker.recv() {
        server_message::Message::GoAway(go_away) => assert_eq!(go_away.reason, "moving"),
        other => panic!("expected go_away, got {other:?}"),
    }
    standin
        .send_binary(&registered.worker_id, vec![1, 2, 3])
        .expect("sent");
    assert_eq!(worker.recv_frame(), Message::binary(vec![1_u8, 2, 3]));
    worker.send_frame(Message::text("{\"ping\":{}}"));
    let frame = worker.closed().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1003);
    assert_eq!(
        standin.go_away("AW_nobody", "x"),
        Err(DispatchError::UnknownWorker("AW_nobody".to_owned()))
    );
}

#[test]
fn load_weights_the_choice_and_full_workers_get_no_offers() {
    let standin = StandIn::start(options());
    let (mut loaded, loaded_id) = RawWorker::registered(&standin, "");
    let (mut idle, idle_id) = RawWorker::registered(&standin, "");
    let update = |worker: &mut RawWorker, worker_id: &str, update: UpdateWorkerStatus| {
        worker.send(worker_message::Message::UpdateWorker(update));
        standin.wait_for_message(
            worker_id,
            |message| matches!(&message.message, Some(worker_message::Message::UpdateWorker(sent)) if *sent == update),
            STEP,
        );
    };
    let at_capacity = UpdateWorkerStatus {
        load: 1.0,
        ..UpdateWorkerStatus::default()
    };
    update(&mut loaded, &loaded_id.worker_id, at_capacity);
    for index in 0..5 {
        let dispatched = std::thread::scope(|scope| {
            let dispatching =
                scope.spawn(|| standin.dispatch(Dispatch::room(&format!("r{index}"))));
            let job = idle.offer();
            idle.answer(&job.id, true, false, "");
            assert!(matches!(
                idle.recv(),
                server_message::Message::Assignment(_)
            ));
            dispatching.join().expect("the dispatch thread")
        });
        assert_eq!(
            dispatched.expect("accepted").worker_id,
            idle_id.worker_id,
            "a worker at load 1 has no weight"
        );
    }
    let full = UpdateWorkerStatus {
        status: Some(WorkerStatus::WsFull as i32),
        ..UpdateWorkerStatus::default()
    };
    update(&mut idle, &idle_id.worker_id, full);
    assert!(matches!(
        standin.dispatch(Dispatch::room("none")),
        Err(DispatchError::NoCapacity { .. })
    ));
    assert!(matches!(
        standin.dispatch(Dispatch::room("other").for_agent("someone-else")),
        Err(DispatchError::NoWorkersAvailable { .. })
    ));
    assert!(
        standin
            .sent(&loaded_id.worker_id)
            .iter()
            .all(|sent| !matches!(
                sent.message.message,
                Some(server_message::Message::Availability(_))
            )),
        "the loaded worker was never offered a job"
    );
}
