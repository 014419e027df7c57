//! The runtime's LiveKit worker against the stand-in server: what the real server cannot be
//! made to do on cue. Offers racing for the last place, an assignment that never comes, a
//! reconnect that running sessions survive, an unknown job's termination, an oversized frame,
//! a wrong secret, and the load it reports.

use std::time::Duration;

use livekit_protocol::{JobStatus, JobTermination, WorkerStatus, server_message, worker_message};
use openrtc::source::livekit::LiveKitOptions;
use openrtc::{AgentError, AgentPool, AgentPoolBuilder, CancelReason, Session, agent_fn};

use super::standin::{Dispatch, StandIn, StandInOptions, TerminationReason};
use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

/// A pool of `cap` places whose one agent runs until cancelled, taking jobs from `server`
/// with these options.
fn pool(
    server: &StandIn,
    cap: u32,
    options: impl FnOnce(LiveKitOptions) -> LiveKitOptions,
) -> RunningPool {
    let options = options(LiveKitOptions::new(
        server.url(),
        server.api_key(),
        server.api_secret(),
    ));
    RunningPool::start(builder(cap).livekit(options))
}

fn builder(cap: u32) -> AgentPoolBuilder {
    AgentPool::builder()
        .agent(
            "hold",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok::<(), AgentError>(())
            }),
        )
        .max_concurrent_sessions(cap)
}

/// The one registered worker's id, once the pool shows it connected.
fn registered(pool: &RunningPool, server: &StandIn) -> String {
    server.wait_for_workers(1, PATIENCE);
    wait_for("the worker to register", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.connected)
            .and_then(|livekit| livekit.worker_id)
    })
}

/// The worker's id once it has registered again, under a new id.
fn new_registration(server: &StandIn, old_id: &str) -> String {
    wait_for("a new registration", || {
        server
            .workers()
            .into_iter()
            .map(|worker| worker.worker_id)
            .find(|id| id != old_id)
    })
}

#[test]
fn two_offers_racing_for_the_last_place_are_never_both_accepted() {
    let server = StandIn::start(StandInOptions::default());
    let pool = pool(&server, 1, |options| options);
    let worker_id = registered(&pool, &server);
    let answers: Vec<bool> = std::thread::scope(|scope| {
        let offers: Vec<_> = ["race-a", "race-b"]
            .into_iter()
            .map(|room| {
                let (server, worker_id) = (&server, &worker_id);
                scope.spawn(move || {
                    server
                        .offer(worker_id, Dispatch::room(room))
                        .expect("the worker answers")
                        .answer
                        .available
                })
            })
            .collect();
        offers
            .into_iter()
            .map(|offer| offer.join().expect("an answer"))
            .collect()
    });
    assert_eq!(
        answers.iter().filter(|&&available| available).count(),
        1,
        "exactly one offer takes the last place: {answers:?}"
    );
    let header = wait_for("both offers counted", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.offers_accepted_count + livekit.offers_refused_count == 2)
    });
    assert_eq!(
        (header.offers_accepted_count, header.offers_refused_count),
        (1, 1)
    );
    let snapshot = pool.snapshot();
    assert_eq!(
        snapshot.worker.refusals[&openrtc::RefusalReason::WorkerFull],
        1
    );
}

#[test]
fn an_assignment_that_never_comes_gives_its_place_back() {
    let server = StandIn::start(StandInOptions::default());
    let pool = pool(&server, 1, |options| {
        options.assignment_timeout(Duration::from_millis(300))
    });
    let worker_id = registered(&pool, &server);
    let first = server
        .offer(&worker_id, Dispatch::room("never-assigned"))
        .expect("an answer");
    assert!(first.answer.available, "{first:?}");
    // Held: the place is taken until the assignment, which does not come.
    let held = server
        .offer(&worker_id, Dispatch::room("while-held"))
        .expect("an answer");
    assert!(
        !held.answer.available,
        "the held place is not offered twice: {held:?}"
    );
    wait_for("the hold to expire", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.assignment_timeout_count == 1)
    });
    // The server offers only to a worker that says it is available again.
    wait_for("the worker to report its place free", || {
        server
            .workers()
            .into_iter()
            .find(|worker| worker.status == WorkerStatus::WsAvailable)
    });
    let after = server
        .dispatch(Dispatch::room("after-expiry"))
        .expect("the released place takes a new job");
    wait_for("the new job's session", || {
        pool.snapshot().sessions.into_iter().find(|row| {
            row.livekit
                .as_ref()
                .is_some_and(|job| job.job_id == after.job_id)
        })
    });
    // A late assignment of the expired offer starts nothing, and the server is told the job
    // failed (it would otherwise count it as running here until its dispatch is deleted).
    server.assign(&first.job_id).expect("sent");
    server.wait_for_message(
        &worker_id,
        |message| {
            matches!(&message.message, Some(worker_message::Message::UpdateJob(update))
                if update.job_id == first.job_id && update.status == JobStatus::JsFailed as i32)
        },
        PATIENCE,
    );
    assert_eq!(
        pool.snapshot().sessions.len(),
        1,
        "the late assignment started nothing"
    );
}

#[test]
fn running_sessions_survive_a_reconnect_and_are_reported_back() {
    let server = StandIn::start(StandInOptions::default());
    let pool = pool(&server, 10, |options| options);
    let first_id = registered(&pool, &server);
    let jobs: Vec<String> = ["keep-1", "keep-2"]
        .into_iter()
        .map(|room| server.dispatch(Dispatch::room(room)).expect("taken").job_id)
        .collect();
    let sessions = wait_for("both sessions", || {
        let rows = pool.snapshot().sessions;
        (rows.len() == 2).then(|| rows.into_iter().map(|row| row.id).collect::<Vec<_>>())
    });
    server.close_worker(&first_id, 1001).expect("closed");
    let second_id = new_registration(&server, &first_id);
    let migrated = wait_for("the surviving jobs reported", || {
        server
            .migrations()
            .into_iter()
            .find(|(worker, _)| *worker == second_id)
            .map(|(_, mut ids)| {
                ids.sort();
                ids
            })
    });
    let mut expected = jobs.clone();
    expected.sort();
    assert_eq!(migrated, expected);
    let rows: Vec<_> = pool
        .snapshot()
        .sessions
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(rows, sessions, "the same sessions run on");
    let header = wait_for("the reconnect counted", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.connected && livekit.reconnect_count == 1)
    });
    assert_eq!(header.worker_id.as_deref(), Some(second_id.as_str()));
    // A session's end after the reconnect reaches the server on the new connection.
    pool.handle().cancel(sessions[0]).expect("live");
    let logged = server.wait_for_message(
        &second_id,
        |message| {
            matches!(&message.message, Some(worker_message::Message::UpdateJob(update))
                if update.status == JobStatus::JsFailed as i32)
        },
        PATIENCE,
    );
    let Some(worker_message::Message::UpdateJob(update)) = logged.message.message else {
        unreachable!("matched above");
    };
    assert!(jobs.contains(&update.job_id), "{update:?}");
    assert!(update.error.contains("cancelled (operator)"), "{update:?}");
}

#[test]
fn a_termination_cancels_its_session_and_an_unknown_one_is_ignored() {
    let server = StandIn::start(StandInOptions::default());
    let pool = pool(&server, 10, |options| options);
    let worker_id = registered(&pool, &server);
    server
        .send(
            &worker_id,
            livekit_protocol::ServerMessage {
                message: Some(server_message::Message::Termination(JobTermination {
                    job_id: "AJ_unknown".into(),
                })),
            },
        )
        .expect("sent");
    wait_for("the unknown termination counted", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.unknown_termination_count == 1)
    });
    let job = server.dispatch(Dispatch::room("ends")).expect("taken");
    let row = wait_for("its session", || {
        pool.snapshot().sessions.into_iter().next()
    });
    server
        .terminate(&job.job_id, TerminationReason::Requested)
        .expect("terminated");
    let ended = pool.wait_ended(row.id);
    assert_eq!(
        ended.outcome,
        openrtc::proto::SessionOutcome::Cancelled {
            reason: CancelReason::Terminated
        }
    );
    server.wait_for_message(
        &worker_id,
        |message| {
            matches!(&message.message, Some(worker_message::Message::UpdateJob(update))
                if update.job_id == job.job_id && update.status == JobStatus::JsSuccess as i32)
        },
        PATIENCE,
    );
    assert_eq!(
        server.connections(),
        1,
        "the unknown termination kept the connection"
    );
}

#[test]
fn an_oversized_frame_drops_the_connection_and_the_worker_comes_back_with_its_jobs() {
    let server = StandIn::start(StandInOptions {
        max_frame_bytes: 8 << 20,
        ..StandInOptions::default()
    });
    let pool = pool(&server, 10, |options| options);
    let first_id = registered(&pool, &server);
    let job = server.dispatch(Dispatch::room("big")).expect("taken");
    let row = wait_for("its session", || {
        pool.snapshot().sessions.into_iter().next()
    });
    server
        .send_binary(&first_id, vec![0_u8; 3 << 20])
        .expect("sent");
    let second_id = new_registration(&server, &first_id);
    wait_for("the job reported back", || {
        server
            .migrations()
            .into_iter()
            .find(|(worker, ids)| *worker == second_id && ids.contains(&job.job_id))
    });
    assert!(pool.row(row.id).is_some(), "the session runs on");
    let header = pool.snapshot().worker.livekit.expect("the header");
    assert!(
        header
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("too long")
                || error.contains("Space limit")
                || error.contains("size")),
        "the reason is kept: {header:?}"
    );
}

#[test]
fn a_wrong_secret_is_a_clear_error_and_no_registration() {
    let server = StandIn::start(StandInOptions::default());
    let pool = RunningPool::start(builder(1).livekit(LiveKitOptions::new(
        server.url(),
        server.api_key(),
        "a-wrong-secret-of-thirty-two-characters",
    )));
    let header = wait_for("the refusal in the header", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.failed_attempt_count >= 1)
    });
    assert!(!header.connected);
    let error = header.last_error.unwrap_or_default();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("LIVEKIT_API_SECRET"), "{error}");
    assert!(server.auth_failures() >= 1);
    assert!(server.workers().is_empty());
}

#[test]
fn the_load_is_sessions_over_capacity_and_full_at_the_cap() {
    let server = StandIn::start(StandInOptions::default());
    let pool = pool(&server, 2, |options| options);
    let worker_id = registered(&pool, &server);
    let status = |load: f32, status: WorkerStatus| {
        move |message: &livekit_protocol::WorkerMessage| {
            matches!(&message.message, Some(worker_message::Message::UpdateWorker(update))
                if (update.load - load).abs() < 1e-6 && update.status == Some(status as i32))
        }
    };
    // Sessions over capacity, on the scale of a server whose target load is 0.7 (LiveKit's
    // default: it offers jobs only to workers under it), so a full worker reports 0.7.
    server.wait_for_message(&worker_id, status(0.0, WorkerStatus::WsAvailable), PATIENCE);
    server.dispatch(Dispatch::room("one")).expect("taken");
    server.wait_for_message(
        &worker_id,
        status(0.35, WorkerStatus::WsAvailable),
        PATIENCE,
    );
    server.dispatch(Dispatch::room("two")).expect("taken");
    server.wait_for_message(&worker_id, status(0.7, WorkerStatus::WsFull), PATIENCE);
    // Full from the second offer's answer (its place is held), with both jobs once it runs.
    wait_for("the stand-in to see it full with both jobs", || {
        server
            .workers()
            .into_iter()
            .find(|worker| worker.status == WorkerStatus::WsFull && worker.job_count == 2)
    });
}
