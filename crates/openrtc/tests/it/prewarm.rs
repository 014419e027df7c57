//! The pool's prewarm: one value loaded before any session starts and shared by all of them,
//! its tracked bytes in the snapshot, and a failing prewarm stopping the worker at start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use openrtc::{
    AgentPool, AgentPoolBuilder, CancelReason, JobRequest, Rejected, RunError, Session,
    SessionOutcome, agent_fn,
};

use crate::support::{PATIENCE, RunningPool, TestPool as _, run_on_thread, wait_for};

const MIB: u64 = 1024 * 1024;

/// The state the test prewarms load: a model, as a real agent would share.
#[derive(Debug)]
struct Model {
    weights: Vec<u8>,
}

/// What a session saw of the shared state when it started.
#[derive(Debug)]
struct Seen {
    /// The address of the shared `Model`, if the session had one.
    model: Option<usize>,
    /// The size of its weights (0 without one).
    model_bytes: usize,
    /// Whether the prewarm had finished when the session started.
    prewarm_finished: bool,
    /// Whether asking for a type nobody prewarmed gave `None`.
    other_type_absent: bool,
}

/// A pool whose one agent reports what it sees on `seen`, then waits to be cancelled.
fn reporting_pool(
    worker: &str,
    seen: mpsc::Sender<Seen>,
    finished: Arc<AtomicBool>,
) -> AgentPoolBuilder {
    let seen = std::sync::Mutex::new(seen);
    let agent = agent_fn(move |session: Session| {
        let model = session.shared::<Model>();
        let report = Seen {
            model: model.as_ref().map(|model| Arc::as_ptr(model) as usize),
            model_bytes: model.map_or(0, |model| model.weights.len()),
            prewarm_finished: finished.load(Ordering::Acquire),
            other_type_absent: session.shared::<String>().is_none(),
        };
        let _ = seen.lock().expect("not poisoned").send(report);
        async move {
            session.cancelled().await;
            Ok(())
        }
    });
    AgentPool::builder()
        .agent("reader", agent)
        .worker_name(worker)
        .enable_introspection(false)
        .drain_timeout(Duration::ZERO)
}

#[test]
fn every_session_sees_the_same_prewarmed_value() {
    let (seen_tx, seen) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&finished);
    let pool = RunningPool::start(reporting_pool("prewarm-shared", seen_tx, finished).prewarm(
        move || async move {
            let model = Model {
                weights: vec![3; 1024],
            };
            done.store(true, Ordering::Release);
            Ok::<_, std::io::Error>(model)
        },
    ));
    for _ in 0..4 {
        pool.handle().launch(JobRequest::new()).expect("room");
    }
    let reports: Vec<Seen> = (0..4)
        .map(|_| seen.recv_timeout(PATIENCE).expect("every session reports"))
        .collect();
    let first = reports[0].model.expect("the session sees the shared model");
    for report in &reports {
        assert_eq!(report.model, Some(first), "one Arc for all: {reports:?}");
        assert!(report.prewarm_finished);
        assert!(report.other_type_absent, "no String was prewarmed");
    }
    assert!(reports.iter().all(|report| report.model_bytes == 1024));
    let snapshot = pool.snapshot();
    assert!(
        snapshot
            .worker
            .shared_bytes
            .is_some_and(|bytes| bytes >= 1024),
        "{:?}",
        snapshot.worker.shared_bytes
    );
}

#[test]
fn sessions_launched_before_run_start_only_once_the_prewarm_has_loaded() {
    let (seen_tx, seen) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&finished);
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let pool = reporting_pool("prewarm-order", seen_tx, finished)
        .prewarm(move || async move {
            let _ = entered_tx.send(());
            released
                .await
                .map_err(|_| openrtc::AgentError::msg("the test dropped its cue"))?;
            done.store(true, Ordering::Release);
            Ok::<_, openrtc::AgentError>(Model {
                weights: Vec::new(),
            })
        })
        .build()
        .expect("valid");
    let handle = pool.handle();
    let before: Vec<_> = (0..2)
        .map(|_| handle.launch(JobRequest::new()).expect("queued").id())
        .collect();
    let (thread, stop) = run_on_thread(pool);
    entered.recv_timeout(PATIENCE).expect("the prewarm runs");
    // While it loads, launches are queued too, and no session has started.
    let during = handle.launch(JobRequest::new()).expect("queued").id();
    assert!(
        seen.try_recv().is_err(),
        "no session starts while the prewarm loads"
    );
    let snapshot = handle.runtime_snapshot();
    assert_eq!(snapshot.worker.active_sessions, 3, "three places reserved");
    assert_eq!(
        snapshot.worker.uptime_ms, 0,
        "the runtime has not started sessions"
    );
    release.send(()).expect("the prewarm waits");
    let reports: Vec<Seen> = (0..3)
        .map(|_| {
            seen.recv_timeout(PATIENCE)
                .expect("every queued session starts")
        })
        .collect();
    for report in &reports {
        assert!(report.prewarm_finished, "{reports:?}");
        assert!(report.model.is_some(), "{reports:?}");
    }
    let live = wait_for("the three sessions to run", || {
        let snapshot = handle.runtime_snapshot();
        (snapshot.sessions.len() == 3).then_some(snapshot)
    });
    for id in before.iter().chain([&during]) {
        assert!(live.sessions.iter().any(|row| row.id == *id), "{id} runs");
    }
    stop.send(()).expect("the pool runs");
    thread.join().expect("no panic").expect("a clean drain");
}

#[track_caller]
fn check_failed_prewarm(builder: AgentPoolBuilder, worker: &str, expected_message: &str) {
    crate::drain_log::capture();
    let pool = builder.build().expect("valid");
    let handle = pool.handle();
    let queued: Vec<_> = (0..2)
        .map(|_| handle.launch(JobRequest::new()).expect("queued"))
        .collect();
    let error = pool
        .run_until(std::future::pending())
        .expect_err("the prewarm fails");
    assert!(matches!(error, RunError::Prewarm { .. }), "{error:?}");
    assert_eq!(error.to_string(), expected_message);
    assert_eq!(error.exit_code(), 1);
    for session in queued {
        let outcome = session
            .wait_outcome(PATIENCE)
            .unwrap_or_else(|_| panic!("the queued session ends"));
        assert!(
            matches!(outcome, SessionOutcome::Cancelled(CancelReason::Shutdown)),
            "{outcome}"
        );
    }
    assert_eq!(
        handle.launch(JobRequest::new()).map(|session| session.id()),
        Err(Rejected::Stopped)
    );
    let lines = crate::drain_log::events_with("worker", worker, "prewarm_failed");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].level, tracing::Level::ERROR);
    let logged = expected_message.replacen("prewarm failed", "[prewarm] failed", 1);
    assert_eq!(lines[0].message, logged);
}

#[test]
fn a_failing_prewarm_stops_the_worker_and_cancels_the_queued_sessions() {
    let (seen_tx, _seen) = mpsc::channel();
    let worker = "prewarm-fails";
    let builder = reporting_pool(worker, seen_tx, Arc::default())
        .prewarm(|| async { Err::<Model, _>(std::io::Error::other("model file missing")) });
    check_failed_prewarm(builder, worker, "prewarm failed: model file missing");
}

#[test]
fn a_panicking_prewarm_stops_the_worker_like_a_failing_one() {
    let (seen_tx, _seen) = mpsc::channel();
    let worker = "prewarm-panics";
    let builder = reporting_pool(worker, seen_tx, Arc::default()).prewarm(|| async {
        if std::hint::black_box(true) {
            panic!("weights are corrupt");
        }
        Ok::<Model, std::io::Error>(Model {
            weights: Vec::new(),
        })
    });
    check_failed_prewarm(
        builder,
        worker,
        "prewarm failed: panicked: weights are corrupt",
    );
}

#[test]
fn the_prewarm_logs_how_long_it_took_and_what_it_holds() {
    crate::drain_log::capture();
    let (seen_tx, _seen) = mpsc::channel();
    let worker = "prewarm-logs";
    let pool = RunningPool::start(reporting_pool(worker, seen_tx, Arc::default()).prewarm(
        || async {
            Ok::<_, std::io::Error>(Model {
                weights: vec![1; 2 * MIB as usize],
            })
        },
    ));
    let lines = crate::drain_log::events_with("worker", worker, "prewarm");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line.level, tracing::Level::INFO);
    assert!(
        line.message.starts_with("[prewarm] loaded in ")
            && line.message.ends_with(" ms; 2.0 MiB shared"),
        "{line:?}"
    );
    let bytes: u64 = line.fields["shared_bytes"].parse().expect("a byte count");
    assert_eq!(Some(bytes), pool.snapshot().worker.shared_bytes);
}

#[test]
fn the_shared_bytes_are_what_the_prewarm_still_holds_and_part_of_runtime_bytes() {
    let (seen_tx, seen) = mpsc::channel();
    let pool = RunningPool::start(
        reporting_pool("prewarm-memory", seen_tx, Arc::default()).prewarm(|| async {
            // Allocated and freed while loading: not held, not counted.
            let scratch = vec![9_u8; 4 * MIB as usize];
            drop(std::hint::black_box(scratch));
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, std::io::Error>(Model {
                weights: vec![7; 8 * MIB as usize],
            })
        }),
    );
    let snapshot = pool.snapshot();
    let shared = snapshot
        .worker
        .shared_bytes
        .expect("tracked: the it binary installs the tracking allocator");
    assert!(
        (8 * MIB..8 * MIB + 64 * 1024).contains(&shared),
        "8 MiB of weights and a little more: {shared}"
    );
    assert!(
        snapshot.worker.runtime_bytes >= shared,
        "shared state is runtime memory: {} < {shared}",
        snapshot.worker.runtime_bytes
    );
    // The figure stays while sessions read the model: they allocate nothing in it.
    pool.handle().launch(JobRequest::new()).expect("room");
    let report = seen.recv_timeout(PATIENCE).expect("the session reports");
    assert!(report.model.is_some());
    assert_eq!(pool.snapshot().worker.shared_bytes, Some(shared));
}

/// A prewarm that says when it starts loading, then never loads: it waits on a channel
/// nobody sends on (kept open by the returned sender).
fn stuck_prewarm(
    builder: AgentPoolBuilder,
) -> (AgentPoolBuilder, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (keep, never) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let state = std::sync::Mutex::new((never, started_tx));
    let builder = builder.prewarm(move || async move {
        let state = state.lock().expect("not poisoned");
        let _ = state.1.send(());
        // Blocking is allowed in a prewarm; this one blocks until the test ends.
        let _ = state.0.recv();
        Ok::<_, std::io::Error>(Model {
            weights: Vec::new(),
        })
    });
    (builder, started, keep)
}

#[track_caller]
fn check_stopped_while_loading(
    worker: &str,
    stop: impl FnOnce(&openrtc::PoolHandle, tokio::sync::oneshot::Sender<()>),
) {
    crate::drain_log::capture();
    let (seen_tx, _seen) = mpsc::channel();
    let (builder, started, _keep) =
        stuck_prewarm(reporting_pool(worker, seen_tx, Arc::default()).worker_threads(2));
    let pool = builder.build().expect("valid");
    let handle = pool.handle();
    let queued = handle.launch(JobRequest::new()).expect("queued");
    let (thread, stop_sender) = run_on_thread(pool);
    started.recv_timeout(PATIENCE).expect("the prewarm starts");
    stop(&handle, stop_sender);
    let result = thread.join().expect("no panic on the pool's thread");
    assert!(result.is_ok(), "{result:?}");
    let outcome = queued
        .wait_outcome(PATIENCE)
        .unwrap_or_else(|_| panic!("the queued session ends"));
    assert!(
        matches!(outcome, SessionOutcome::Cancelled(CancelReason::Shutdown)),
        "{outcome}"
    );
    let lines = crate::drain_log::events_with("worker", worker, "prewarm_interrupted");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        handle.launch(JobRequest::new()).map(|session| session.id()),
        Err(Rejected::Stopped)
    );
}

#[test]
fn a_shutdown_while_the_prewarm_loads_ends_the_worker_cleanly() {
    check_stopped_while_loading("prewarm-shutdown", |handle, stop| {
        handle.shutdown();
        // Kept open until the pool has stopped, so that only the shutdown can have stopped it.
        std::mem::forget(stop);
    });
}

#[test]
fn a_drain_asked_while_the_prewarm_loads_ends_the_worker_cleanly() {
    check_stopped_while_loading("prewarm-drained", |handle, stop| {
        handle.begin_drain();
        // Kept open until the pool has stopped, so that only the drain can have stopped it.
        std::mem::forget(stop);
    });
}
