//! The runtime's LiveKit worker (`AgentPoolBuilder::livekit`) against the real server: jobs
//! dispatched automatically and explicitly become sessions with their room, a deleted dispatch
//! ends its session as `terminated`, outcomes become job statuses, a draining worker takes no
//! new job, and two workers share a hundred dispatches within their caps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use livekit_api::access_token::TokenVerifier;
use openrtc::source::livekit::{LiveKitJob, LiveKitOptions};
use openrtc::{AgentError, AgentPool, AgentPoolBuilder, CancelReason, Session, agent_fn};

use super::LiveKitServer;
use crate::support::{RunningPool, TestPool as _, wait_for};

/// The jobs the agents saw, as `Session::livekit` gave them.
type Seen = Arc<Mutex<Vec<LiveKitJob>>>;

/// A pool taking LiveKit jobs from `server` as `agent_name`, with agents `hold` (until
/// cancelled, or released), `quick` (completes) and `broken` (fails); `hold` is first, so
/// what names no agent runs it.
fn builder(
    server: &LiveKitServer,
    agent_name: &str,
    seen: &Seen,
    release: &Arc<AtomicBool>,
) -> AgentPoolBuilder {
    let options = LiveKitOptions::new(server.url(), server.api_key(), server.api_secret())
        .agent_name(agent_name);
    let (seen_hold, seen_quick) = (Arc::clone(seen), Arc::clone(seen));
    let release = Arc::clone(release);
    AgentPool::builder()
        .agent(
            "hold",
            agent_fn(move |session: Session| {
                let seen = Arc::clone(&seen_hold);
                let release = Arc::clone(&release);
                async move {
                    if let Some(job) = session.livekit() {
                        seen.lock().expect("seen").push(job.clone());
                    }
                    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
                    while !release.load(Ordering::Acquire) && !session.is_cancelled() {
                        tick.tick().await;
                    }
                    Ok::<(), AgentError>(())
                }
            }),
        )
        .agent(
            "quick",
            agent_fn(move |session: Session| {
                let seen = Arc::clone(&seen_quick);
                async move {
                    if let Some(job) = session.livekit() {
                        seen.lock().expect("seen").push(job.clone());
                    }
                    Ok::<(), AgentError>(())
                }
            }),
        )
        .agent(
            "broken",
            agent_fn(|_session: Session| async move {
                Err::<(), _>(AgentError::msg("the upstream model is down"))
            }),
        )
        .livekit(options)
}

#[test]
fn an_automatic_dispatch_runs_as_a_session_in_its_room_until_its_dispatch_is_deleted() {
    let server = LiveKitServer::start();
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(builder(&server, "", &seen, &release));
    let registered = wait_for("the worker to register", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.connected)
    });
    assert!(
        registered
            .worker_id
            .as_deref()
            .is_some_and(|id| id.starts_with("AW_")),
        "{registered:?}"
    );
    let room = server.create_room("support-1");
    let row = wait_for("the room's session", || {
        pool.snapshot()
            .sessions
            .into_iter()
            .find(|row| row.livekit.is_some())
    });
    let job = row.livekit.clone().expect("a LiveKit row");
    assert_eq!(job.room, "support-1");
    assert_eq!(job.room_sid, room.sid);
    assert!(job.job_id.starts_with("AJ_"), "{job:?}");
    assert_eq!(job.participant_identity, format!("agent-{}", job.job_id));
    assert_eq!(row.agent, "hold");
    assert_eq!(row.metadata["room"], "support-1");
    assert_eq!(row.metadata["livekit_job"], job.job_id.as_str());

    // The agent got the job, and its token joins that room as that identity.
    let agent_job = wait_for("the agent to see its job", || {
        seen.lock().expect("seen").first().cloned()
    });
    assert_eq!(agent_job.url, server.url());
    let claims = TokenVerifier::with_api_key(server.api_key(), server.api_secret())
        .verify(&agent_job.token)
        .expect("the job's token verifies");
    assert!(claims.video.room_join);
    assert_eq!(claims.video.room, "support-1");
    assert_eq!(claims.sub, job.participant_identity);

    let header = wait_for("the job in the header", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.jobs_running_count == 1)
    });
    assert_eq!(header.offers_accepted_count, 1);
    assert_eq!(header.status, "available");

    // Deleting the room does not end a job whose agent never joined; deleting its dispatch
    // terminates it.
    let dispatch = server
        .list_dispatch("support-1")
        .into_iter()
        .find(|dispatch| dispatch.agent_name.is_empty())
        .expect("the room's automatic dispatch");
    server.delete_dispatch(&dispatch.id, "support-1");
    let ended = pool.wait_ended(row.id);
    assert_eq!(
        ended.outcome,
        openrtc::proto::SessionOutcome::Cancelled {
            reason: CancelReason::Terminated
        },
        "{ended:?}"
    );
    let (status, error) = wait_for("the job's end at the server", || {
        server.job_end(&job.job_id)
    });
    assert_eq!((status.as_str(), error.as_str()), ("JS_SUCCESS", ""));
}

#[test]
fn an_explicit_dispatch_routes_by_its_metadata_and_the_outcome_is_the_job_status() {
    let server = LiveKitServer::start();
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(builder(&server, "named", &seen, &release));
    wait_for("the worker to register", || {
        pool.snapshot().worker.livekit.filter(|l| l.connected)
    });
    server.create_dispatch(
        "quick-room",
        "named",
        r#"{"agent":"quick","tenant":"acme"}"#,
    );
    let agent_job = wait_for("the quick agent's job", || {
        seen.lock().expect("seen").first().cloned()
    });
    assert_eq!(agent_job.room_name, "quick-room");
    assert_eq!(agent_job.agent_name, "named");
    assert_eq!(agent_job.metadata, r#"{"agent":"quick","tenant":"acme"}"#);
    assert!(agent_job.dispatch_id.starts_with("AD_"), "{agent_job:?}");
    let ended = wait_for("the quick session's end", || {
        pool.snapshot()
            .recently_ended
            .into_iter()
            .find(|ended| ended.agent == "quick")
    });
    assert_eq!(ended.tenant, "acme");
    assert_eq!(ended.outcome, openrtc::proto::SessionOutcome::Completed);
    let (status, _) = wait_for("the quick job's end", || server.job_end(&agent_job.job_id));
    assert_eq!(status, "JS_SUCCESS");

    server.create_dispatch("broken-room", "named", r#"{"agent":"broken"}"#);
    wait_for("the broken job's end", || {
        (server.jobs_ended_with("JS_FAILED") == 1).then_some(())
    });
    assert!(
        server.log_contains("the upstream model is down"),
        "the job's error carries the agent's: {}",
        server.log_tail()
    );
    let header = pool.snapshot().worker.livekit.expect("the header");
    assert_eq!(header.offers_accepted_count, 2);
    assert_eq!(header.offers_refused_count, 0);
}

#[test]
fn a_draining_worker_reports_full_takes_no_new_job_and_lets_its_job_finish() {
    let server = LiveKitServer::start();
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(
        builder(&server, "drainer", &seen, &release)
            .drain_timeout(std::time::Duration::from_secs(60)),
    );
    wait_for("the worker to register", || {
        pool.snapshot().worker.livekit.filter(|l| l.connected)
    });
    server.create_dispatch("before-drain", "drainer", "");
    let row = wait_for("the running job", || {
        pool.snapshot().sessions.into_iter().next()
    });
    let job_id = row.livekit.expect("a LiveKit row").job_id;
    pool.handle().begin_drain();
    wait_for("FULL reported", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.status == "full")
    });
    // The server offers nothing to a FULL worker: the dispatch finds no worker.
    server.create_dispatch("during-drain", "drainer", "");
    wait_for("the server to find no worker for it", || {
        server.log_contains("no servers available").then_some(())
    });
    let header = pool.snapshot().worker.livekit.expect("the header");
    assert_eq!(header.offers_accepted_count, 1, "{header:?}");
    assert_eq!(
        pool.snapshot().sessions.len(),
        1,
        "the running job still runs"
    );
    release.store(true, Ordering::Release);
    let (status, _) = wait_for("the drained job's end", || server.job_end(&job_id));
    assert_eq!(status, "JS_SUCCESS");
    pool.drain_and_join()
        .expect("the drain ends once the job has");
}

#[test]
fn two_workers_share_a_hundred_dispatches_by_load_within_their_caps() {
    const CAP: u32 = 70;
    const DISPATCHES: usize = 100;
    let server = LiveKitServer::start();
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let sockets = tempfile::tempdir().expect("a temp dir");
    let pools: Vec<RunningPool> = (0..2)
        .map(|index| {
            RunningPool::start(
                builder(&server, "pair", &seen, &release)
                    .max_concurrent_sessions(CAP)
                    .socket_path(sockets.path().join(format!("worker-{index}.sock"))),
            )
        })
        .collect();
    for pool in &pools {
        wait_for("both workers to register", || {
            pool.snapshot().worker.livekit.filter(|l| l.connected)
        });
    }
    for index in 0..DISPATCHES {
        server.create_dispatch(&format!("pair-{index}"), "pair", "");
    }
    let counts = wait_for("every dispatch to run", || {
        let counts: Vec<usize> = pools
            .iter()
            .map(|pool| pool.snapshot().sessions.len())
            .collect();
        (counts.iter().sum::<usize>() == DISPATCHES).then_some(counts)
    });
    for (pool, &count) in pools.iter().zip(&counts) {
        assert!(count <= CAP as usize, "a worker over its cap: {counts:?}");
        let header = pool.snapshot().worker.livekit.expect("the header");
        assert_eq!(header.jobs_running_count as usize, count, "{header:?}");
        assert_eq!(header.offers_accepted_count as usize, count, "{header:?}");
    }
    release.store(true, Ordering::Release);
    wait_for("every job to end as a success", || {
        (server.jobs_ended_with("JS_SUCCESS") == DISPATCHES).then_some(())
    });
    assert_eq!(server.jobs_ended_with("JS_FAILED"), 0);
}

/// Past one machine, simulated: two server nodes sharing one Redis, a worker on each, rooms
/// created through both nodes' APIs. Jobs reach the workers of both nodes, no worker takes
/// more than its cap, and a draining worker gets no new job while its node's rooms go to the
/// other worker, as on one node.
#[test]
fn two_nodes_sharing_redis_place_jobs_on_both_workers_and_respect_a_drain() {
    const CAP: u32 = 30;
    let redis = super::Redis::start();
    let nodes = [
        LiveKitServer::start_node(&redis),
        LiveKitServer::start_node(&redis),
    ];
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let sockets = tempfile::tempdir().expect("a temp dir");
    let pools: Vec<RunningPool> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            RunningPool::start(
                builder(node, "cluster", &seen, &release)
                    .max_concurrent_sessions(CAP)
                    .drain_timeout(std::time::Duration::from_secs(60))
                    .socket_path(sockets.path().join(format!("node-{index}.sock"))),
            )
        })
        .collect();
    for pool in &pools {
        wait_for("each worker to register with its node", || {
            pool.snapshot().worker.livekit.filter(|l| l.connected)
        });
    }
    let live = || -> Vec<usize> {
        pools
            .iter()
            .map(|pool| pool.snapshot().sessions.len())
            .collect()
    };
    // One room at a time, through each node's API in turn: a burst on a loaded machine can
    // outlast the server's own 3 s deadline for a job request, and it drops the job.
    let dispatch = |index: usize| -> Vec<usize> {
        nodes[index % 2].create_dispatch(&format!("cluster-{index}"), "cluster", "");
        wait_for(&format!("job {index} to run"), || {
            let counts = live();
            (counts.iter().sum::<usize>() == index + 1).then_some(counts)
        })
    };
    let mut counts = Vec::new();
    for index in 0..20 {
        counts = dispatch(index);
    }
    assert!(
        counts
            .iter()
            .all(|&count| count >= 1 && count <= CAP as usize),
        "jobs on both nodes' workers, within their caps: {counts:?}"
    );

    // The first node's worker drains: FULL to its node, and through Redis to the cluster.
    pools[0].handle().begin_drain();
    wait_for("FULL reported", || {
        pools[0]
            .snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.status == "full")
    });
    let mut after = Vec::new();
    for index in 20..30 {
        after = dispatch(index);
    }
    assert_eq!(
        after[0], counts[0],
        "the draining worker took no new job: {after:?}"
    );
    assert_eq!(after[1], counts[1] + 10, "{after:?}");
    let drained = pools[0].snapshot().worker.livekit.expect("the header");
    assert_eq!(
        drained.offers_accepted_count as usize, counts[0],
        "{drained:?}"
    );
    release.store(true, Ordering::Release);
    wait_for("every job to end as a success", || {
        let ended: usize = nodes
            .iter()
            .map(|node| node.jobs_ended_with("JS_SUCCESS"))
            .sum();
        (ended == 30).then_some(())
    });
}

/// The server offers a job only while a worker's reported load is under its target load (0.7
/// by default): reported on that scale, a worker gets jobs up to its cap, not 70 % of it, and
/// none past it.
#[test]
fn a_worker_gets_jobs_up_to_its_cap_and_none_past_it() {
    const CAP: usize = 10;
    let server = LiveKitServer::start();
    let seen = Seen::default();
    let release = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(
        builder(&server, "capped", &seen, &release).max_concurrent_sessions(CAP as u32),
    );
    wait_for("the worker to register", || {
        pool.snapshot().worker.livekit.filter(|l| l.connected)
    });
    for index in 0..CAP {
        server.create_dispatch(&format!("capped-{index}"), "capped", "");
        wait_for(&format!("job {index} to run"), || {
            (pool.snapshot().sessions.len() == index + 1).then_some(())
        });
    }
    let header = wait_for("FULL at the cap", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.status == "full")
    });
    assert!((header.load - 1.0).abs() < 1e-6, "{header:?}");
    server.create_dispatch("capped-over", "capped", "");
    wait_for("the server to find no worker for it", || {
        server.log_contains("no servers available").then_some(())
    });
    assert_eq!(pool.snapshot().sessions.len(), CAP);
    assert_eq!(
        pool.snapshot()
            .worker
            .livekit
            .expect("the header")
            .offers_accepted_count,
        CAP as u64
    );
}
