//! Tenants and agents in admission, on real pools: routing by metadata, the request filter,
//! per-tenant and per-agent counts and refusals as the snapshot shows them.

use openrtc::proto::RefusalReason;
use openrtc::{AgentPool, AgentPoolBuilder, JobRequest, Rejected, Session, agent_fn};
use serde_json::json;

use crate::support::{RunningPool, TestPool as _};

/// Waits for cancellation, then completes.
fn patient() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok(())
    })
}

fn builder(dir: &tempfile::TempDir) -> AgentPoolBuilder {
    AgentPool::builder()
        .worker_threads(2)
        .socket_path(dir.path().join("w.sock"))
        .agent("support", patient())
        .agent("sales", patient())
        .agent("sales-eu", patient())
}

#[test]
fn jobs_are_routed_by_metadata_and_the_longest_room_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool =
        RunningPool::start(builder(&dir).router(|request: &JobRequest| {
            (request.tenant == "vip").then(|| "sales-eu".to_owned())
        }));
    let launch = |request: JobRequest| {
        let id = pool.handle().launch(request).expect("room").id();
        pool.row(id).expect("live").agent
    };
    assert_eq!(launch(JobRequest::new()), "support");
    assert_eq!(
        launch(JobRequest::new().metadata(json!({"room": "sales-eu-7"}))),
        "sales-eu"
    );
    assert_eq!(
        launch(JobRequest::new().metadata(json!({"room": "sales-us-7"}))),
        "sales"
    );
    assert_eq!(
        launch(JobRequest::new().metadata(json!({"agent": "sales", "room": "sales-eu-1"}))),
        "sales"
    );
    assert_eq!(launch(JobRequest::new().tenant("vip")), "sales-eu");
    assert_eq!(
        pool.handle()
            .launch(JobRequest::new().metadata(json!({"agent": "ghost"})))
            .err(),
        Some(Rejected::UnknownAgent {
            name: "ghost".into()
        })
    );
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.agents["sales-eu"].sessions_count, 2);
    assert_eq!(snapshot.agents["sales"].sessions_count, 2);
    assert_eq!(snapshot.agents["support"].sessions_count, 1);
    assert_eq!(snapshot.tenants["default"].sessions_count, 4);
    assert_eq!(snapshot.tenants["vip"].sessions_count, 1);
    assert_eq!(
        snapshot.tenants["default"].refusals[&RefusalReason::UnknownAgent],
        1
    );
}

#[test]
fn the_request_filter_refuses_and_every_refusal_is_counted_for_its_tenant_and_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(builder(&dir).request_filter(|request: &JobRequest| {
        if request
            .metadata
            .get("caller")
            .and_then(|caller| caller.as_str())
            == Some("spam")
        {
            Err("caller on the block list".to_owned())
        } else {
            Ok(())
        }
    }));
    let spam = JobRequest::new()
        .tenant("acme")
        .agent("sales")
        .metadata(json!({"caller": "spam"}));
    assert_eq!(
        pool.handle().launch(spam.clone()).err(),
        Some(Rejected::Filtered {
            reason: "caller on the block list".into()
        })
    );
    assert_eq!(
        pool.handle()
            .launch(spam)
            .err()
            .map(|refused| refused.to_string()),
        Some("refused by the request filter: caller on the block list".to_owned())
    );
    let id = pool
        .handle()
        .launch(JobRequest::new().tenant("acme").agent("sales"))
        .expect("not on the list")
        .id();
    let snapshot = pool.snapshot();
    let acme = &snapshot.tenants["acme"];
    assert_eq!(acme.refusals[&RefusalReason::Filtered], 2);
    assert_eq!((acme.sessions_count, acme.started_count), (1, 1));
    assert_eq!(
        snapshot.agents["sales"].refusals[&RefusalReason::Filtered],
        2
    );
    assert_eq!(snapshot.worker.refusals[&RefusalReason::Filtered], 2);
    assert!(snapshot.agents["support"].refusals.is_empty());
    // The session's end gives its tenant and agent places back.
    pool.handle().cancel(id).expect("live");
    pool.wait_ended(id);
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.tenants["acme"].sessions_count, 0);
    assert_eq!(snapshot.agents["sales"].sessions_count, 0);
}
