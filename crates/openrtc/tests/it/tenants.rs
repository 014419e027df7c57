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

/// Fails at once.
fn failing() -> impl openrtc::Agent {
    agent_fn(
        |_session: Session| async move { Err::<(), _>(openrtc::AgentError::msg("upstream 503")) },
    )
}

#[test]
fn a_failing_tenant_s_breaker_opens_and_refuses_only_that_tenant() {
    use openrtc::proto::BreakerState;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = RunningPool::start(
        AgentPool::builder()
            .worker_threads(2)
            .socket_path(dir.path().join("w.sock"))
            .agent("failing", failing())
            .agent("patient", patient()),
    );
    // Operator cancels are not failures: ten of them leave the breaker closed.
    for _ in 0..10 {
        let id = pool
            .handle()
            .launch(JobRequest::new().tenant("acme").agent("patient"))
            .expect("room")
            .id();
        pool.handle().cancel(id).expect("live");
        pool.wait_ended(id);
    }
    let acme = &pool.snapshot().tenants["acme"];
    assert_eq!(acme.breaker.state, BreakerState::Closed);
    assert_eq!(
        (acme.breaker.window_samples_count, acme.failed_count),
        (0, 0)
    );
    // Five failures of five outcomes: over the 0.5 ratio with the minimum of 5 samples.
    for _ in 0..5 {
        let id = pool
            .handle()
            .launch(JobRequest::new().tenant("acme").agent("failing"))
            .expect("the breaker is still closed")
            .id();
        pool.wait_ended(id);
    }
    let refused = pool
        .handle()
        .launch(JobRequest::new().tenant("acme").agent("patient"))
        .expect_err("the breaker is open");
    let Rejected::BreakerOpen {
        tenant,
        retry_after,
    } = refused
    else {
        panic!("refused for another reason: {refused}");
    };
    assert_eq!(tenant, "acme");
    assert!(
        retry_after > std::time::Duration::from_secs(20)
            && retry_after <= std::time::Duration::from_secs(30),
        "the default cooldown is 30 s: {retry_after:?}"
    );
    pool.handle()
        .launch(JobRequest::new().tenant("beta").agent("patient"))
        .expect("another tenant is untouched");
    let snapshot = pool.snapshot();
    let acme = &snapshot.tenants["acme"];
    assert_eq!(acme.breaker.state, BreakerState::Open);
    assert_eq!(
        (
            acme.breaker.window_failures_count,
            acme.breaker.window_samples_count
        ),
        (5, 5)
    );
    assert_eq!(acme.breaker.opened_count, 1);
    assert_eq!(acme.failed_count, 5);
    assert_eq!(acme.refusals[&RefusalReason::BreakerOpen], 1);
    assert_eq!(snapshot.tenants["beta"].breaker.state, BreakerState::Closed);
    assert_eq!(snapshot.tenants["beta"].sessions_count, 1);
}
