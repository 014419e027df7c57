//! Session-scoped logging: every record of a session (its root, its child tasks, its blocking
//! work) names it in the JSONL log file, nothing is mislabelled or lost, and a session that
//! fails leaves its flight recorder in the file and in its ended row.
//!
//! The session layer is installed as the process's global subscriber: nextest runs each test
//! in a process of its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use openrtc::{AgentError, AgentPool, JobRequest, Session, agent_fn};
use serde_json::Value;

use crate::support::{RunningPool, TestPool as _, wait_for};

/// Installs the session layer (alone: nothing on stderr) as the global subscriber, once.
pub(crate) fn install_layer() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(openrtc::telemetry::layer());
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    });
}

/// Every line of the log file, parsed (a line that is not a JSON object fails the test).
pub(crate) fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the log file")
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("every line is JSON");
            assert!(value.is_object(), "every line is an object: {line}");
            value
        })
        .collect()
}

const SESSIONS: usize = 50;
const ROOT_RECORDS: usize = 7;
const CHILD_RECORDS: usize = 5;

/// Logs from its root task, from two child tasks and from blocking work, each record saying
/// which session the agent itself believes it is in (`me`).
async fn chatty(session: Session) -> Result<(), AgentError> {
    let me = session.id().to_string();
    let mut children = Vec::new();
    for child in 0..2 {
        let me = me.clone();
        children.push(session.spawn(async move {
            for n in 0..CHILD_RECORDS {
                tracing::info!(me = %me, child, n, "child record");
                tokio::task::yield_now().await;
            }
        }));
    }
    for n in 0..ROOT_RECORDS {
        tracing::info!(me = %me, n, "root record");
        tokio::task::yield_now().await;
    }
    let blocking_me = me.clone();
    session
        .spawn_blocking(move || tracing::info!(me = %blocking_me, "blocking record"))
        .await
        .map_err(|error| AgentError::msg(error.to_string()))?;
    for child in children {
        child
            .await
            .map_err(|error| AgentError::msg(error.to_string()))?;
    }
    Ok(())
}

#[test]
fn fifty_sessions_records_each_name_their_own_session_and_none_is_lost() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("worker.jsonl");
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("chatty", agent_fn(chatty))
            .worker_name("log-test")
            .socket_path(dir.path().join("w.sock"))
            .log_file(&log_file),
    );
    assert_eq!(
        pool.snapshot().worker.log_file.as_deref(),
        Some(log_file.to_str().expect("utf-8 path"))
    );
    let mut launched = Vec::new();
    for n in 0..SESSIONS {
        let tenant = format!("tenant-{}", n % 3);
        let handle = pool
            .handle()
            .launch(JobRequest::new().tenant(tenant.clone()))
            .expect("room");
        launched.push((handle.id().to_string(), tenant));
        tracing::info!(launched = n, "worker record");
    }
    for (id, _) in &launched {
        wait_for(&format!("{id} to end"), || {
            pool.snapshot()
                .recently_ended
                .iter()
                .any(|ended| ended.id.to_string() == *id)
                .then_some(())
        });
    }
    let snapshot = pool.snapshot();
    assert!(
        snapshot
            .recently_ended
            .iter()
            .all(|ended| ended.outcome.kind() == "completed")
    );
    pool.drain_and_join().expect("a clean stop");

    let records = records(&log_file);
    let mut per_session: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for record in &records {
        for key in ["ts", "level", "target", "message", "worker", "pid"] {
            assert!(record.get(key).is_some(), "{key} missing: {record}");
        }
        assert_eq!(record["worker"], "log-test");
        assert_eq!(record["pid"], std::process::id());
        if let Some(me) = record.get("me") {
            let id = record["session_id"].as_str().expect("a session record");
            assert_eq!(me, id, "mislabelled: {record}");
            per_session.entry(id.to_owned()).or_default().push(record);
        }
    }
    assert_eq!(per_session.len(), SESSIONS);
    for (id, tenant) in &launched {
        let mine = &per_session[id];
        let count = |message: &str| mine.iter().filter(|r| r["message"] == message).count();
        assert_eq!(count("root record"), ROOT_RECORDS, "{id}");
        assert_eq!(count("child record"), 2 * CHILD_RECORDS, "{id}");
        assert_eq!(count("blocking record"), 1, "{id}");
        assert!(
            mine.iter()
                .all(|r| r["tenant"] == tenant.as_str() && r["agent"] == "chatty")
        );
    }
    let worker_records: Vec<&Value> = records
        .iter()
        .filter(|record| record["message"] == "worker record")
        .collect();
    assert_eq!(worker_records.len(), SESSIONS);
    assert!(worker_records.iter().all(|r| r.get("session_id").is_none()));
    // Each session's end is in the file with its labels, as the runtime's own line.
    for (id, _) in &launched {
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "session_end" && r["session_id"] == id.as_str()),
            "{id}'s end"
        );
    }
    assert_eq!(
        snapshot.worker.log_records_dropped_count, 0,
        "nothing dropped at this rate"
    );
}

#[test]
fn a_failed_session_leaves_its_flight_recorder_in_the_file_and_its_ended_row() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("worker.jsonl");
    let agent = agent_fn(|session: Session| async move {
        for step in 0..3 {
            tracing::debug!(step, "decoding frame");
            tokio::task::yield_now().await;
        }
        tracing::info!("calling the upstream");
        if session.tenant() == "unlucky" {
            return Err(AgentError::msg("upstream refused the call"));
        }
        Ok(())
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("steps", agent)
            .socket_path(dir.path().join("w.sock"))
            .log_file(&log_file),
    );
    let failed = pool
        .handle()
        .launch(JobRequest::new().tenant("unlucky"))
        .expect("room");
    let fine = pool
        .handle()
        .launch(JobRequest::new().tenant("lucky"))
        .expect("room");
    let (failed_id, fine_id) = (failed.id(), fine.id());
    let failed_row = pool.wait_ended(failed_id);
    let fine_row = pool.wait_ended(fine_id);
    pool.drain_and_join().expect("a clean stop");

    let messages: Vec<&str> = failed_row
        .flight_recorder
        .iter()
        .map(|record| record.message.as_str())
        .collect();
    assert_eq!(
        messages[..4],
        [
            "decoding frame step=0",
            "decoding frame step=1",
            "decoding frame step=2",
            "calling the upstream"
        ]
    );
    assert_eq!(failed_row.flight_recorder[0].level, "DEBUG");
    assert!(
        messages.iter().any(|m| m.starts_with("[session-end]")),
        "its end is the last thing it recorded: {messages:?}"
    );
    assert!(
        fine_row.flight_recorder.is_empty(),
        "a session that ended well keeps none"
    );

    let records = records(&log_file);
    let of = |id: openrtc::SessionId| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["session_id"] == id.to_string().as_str())
            .collect()
    };
    // The failed session's DEBUG records reach the file from its flight recorder, marked so.
    let replayed: Vec<&Value> = of(failed_id)
        .into_iter()
        .filter(|r| r["message"] == "decoding frame")
        .collect();
    assert_eq!(replayed.len(), 3);
    assert!(
        replayed
            .iter()
            .all(|r| r["from_flight_recorder"] == true && r["level"] == "DEBUG")
    );
    // Its INFO record was written once, when it was logged: not again from the recorder.
    let upstream: Vec<&Value> = of(failed_id)
        .into_iter()
        .filter(|r| r["message"] == "calling the upstream")
        .collect();
    assert_eq!(upstream.len(), 1);
    assert!(upstream[0].get("from_flight_recorder").is_none());
    // The session that ended well: its INFO record only; its DEBUG ones stay out.
    let fine_messages: Vec<&str> = of(fine_id)
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert!(fine_messages.contains(&"calling the upstream"));
    assert!(
        !fine_messages.contains(&"decoding frame"),
        "{fine_messages:?}"
    );
}

#[test]
fn refusals_are_in_the_log_file_with_their_reason() {
    install_layer();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_file = dir.path().join("worker.jsonl");
    let pool = AgentPool::builder()
        .agent(
            "idle",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok(())
            }),
        )
        .max_concurrent_sessions(1)
        .drain_timeout(std::time::Duration::ZERO)
        .cancel_grace(std::time::Duration::ZERO)
        .socket_path(dir.path().join("w.sock"))
        .log_file(&log_file);
    let pool = RunningPool::start(pool);
    pool.handle()
        .launch(JobRequest::new())
        .expect("room for one");
    let refused = pool
        .handle()
        .launch(JobRequest::new().tenant("acme"))
        .expect_err("full");
    assert_eq!(refused, openrtc::Rejected::WorkerFull { max: 1 });
    pool.drain_and_join().expect("a clean stop");
    let records = records(&log_file);
    let refusal = records
        .iter()
        .find(|r| r["event"] == "session_refused")
        .expect("the refusal is in the file");
    assert_eq!(refusal["reason"], "worker_full");
    assert_eq!(refusal["tenant"], "acme");
    assert_eq!(refusal["level"], "DEBUG");
}

#[test]
fn a_log_file_that_cannot_be_opened_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = AgentPool::builder()
        .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
        .log_file(dir.path().join("missing-dir/worker.jsonl"))
        .build()
        .expect_err("cannot open");
    let text = error.to_string();
    assert!(text.starts_with("cannot open the log file"), "{text}");
    assert!(text.contains("missing-dir"), "{text}");
}
