//! Process isolation: sessions run in child processes (this test binary started again in its
//! child mode), with typed outcomes for crashes and memory, figures in the worker's rows, and
//! automatic isolation of a tenant that keeps stalling its neighbours.
//!
//! A child is this binary started again with this process's arguments: under nextest (the
//! test command), which runs each test in a process of its own, the child runs this same test
//! up to `build`, where it turns into the one isolated session. Under `cargo test`, with every
//! test in one process, the child would run the whole suite's first test instead: run these
//! with `cargo nextest`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openrtc::proto::SessionOutcome as Wire;
use openrtc::{
    AgentPool, AgentPoolBuilder, AutoIsolation, Isolation, JobRequest, KillReason, Session,
    SessionOutcome, agent_fn,
};

use crate::support::{RunningPool, TestPool as _, wait_for};

/// Waits for cancellation.
fn patient() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok(())
    })
}

/// Ticks every 20 ms until cancelled, keeping the worst lateness of a tick in `worst_ns`
/// (from the moment it is reset to 0).
fn steady(worst_ns: Arc<AtomicU64>) -> impl openrtc::Agent {
    agent_fn(move |session: Session| {
        let worst_ns = Arc::clone(&worst_ns);
        async move {
            let period = Duration::from_millis(20);
            let mut due = Instant::now() + period;
            loop {
                tokio::select! {
                    () = session.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(due.into()) => {}
                }
                let late = Instant::now().saturating_duration_since(due);
                worst_ns.fetch_max(
                    u64::try_from(late.as_nanos()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                due += period;
                // After a long delay, the next tick is a period from now (lateness is per
                // tick, not accumulated).
                due = due.max(Instant::now());
            }
        }
    })
}

/// Writes to an address no process maps (the first page), as a wild pointer would: the
/// kernel's SIGSEGV kills the process. (A `kill -SEGV` would not do: Rust's runtime catches
/// the first SIGSEGV to look for a stack overflow, and a signal sent without a fault does not
/// come back once it has stepped aside.)
#[allow(unsafe_code)]
fn segfault() {
    let address = std::ptr::without_provenance_mut::<u8>(8);
    // SAFETY: none, on purpose: this runs only in an isolated session's child process, which
    // must die of the fault; the first page is never mapped, so the write cannot land.
    unsafe { address.write_volatile(1) };
}

fn builder(name: &str) -> AgentPoolBuilder {
    AgentPool::builder().worker_name(name).worker_threads(1)
}

fn isolated(agent: &str) -> JobRequest {
    JobRequest::new()
        .agent(agent)
        .tenant("acme")
        .isolation(Isolation::Process)
}

#[test]
fn a_crash_in_a_process_is_a_typed_outcome_and_its_siblings_keep_their_cadence() {
    let worst_ns = Arc::new(AtomicU64::new(0));
    let pool = RunningPool::start(
        builder("iso-crash")
            .agent("steady", steady(Arc::clone(&worst_ns)))
            .agent(
                "abort",
                agent_fn(|_session: Session| async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    std::process::abort();
                }),
            )
            .agent(
                "exit",
                agent_fn(|_session: Session| async move {
                    std::process::exit(3);
                }),
            )
            .agent(
                "segfault",
                agent_fn(|_session: Session| async move {
                    segfault();
                    Ok(())
                }),
            ),
    );
    let siblings: Vec<_> = (0..3)
        .map(|_| {
            pool.handle()
                .launch(JobRequest::new().agent("steady"))
                .expect("room")
                .id()
        })
        .collect();
    let crash = pool.handle().launch(isolated("abort")).expect("room");
    let crash_id = crash.id();
    // Its row shows its process while it runs.
    let row = wait_for("the isolated session's process", || {
        pool.row(crash_id).filter(|row| {
            row.process
                .as_ref()
                .is_some_and(|process| process.pid != 0 && process.rss_bytes > 0)
        })
    });
    let pid = row.process.as_ref().map_or(0, |process| process.pid);
    assert_ne!(pid, std::process::id(), "a process of its own");
    assert_eq!(
        row.process.as_ref().map(|p| p.why.as_str()),
        Some("request")
    );
    worst_ns.store(0, Ordering::Relaxed);
    let outcome = crash
        .wait_outcome(Duration::from_secs(20))
        .expect("the crash ends the session");
    assert!(
        matches!(
            outcome,
            SessionOutcome::Killed(KillReason::Signal { signal: 6 })
        ),
        "{outcome:?}"
    );
    let ended = pool.wait_ended(crash_id);
    assert_eq!(
        ended.outcome,
        Wire::Killed {
            reason: KillReason::Signal { signal: 6 }
        }
    );
    let segfault = pool.handle().launch(isolated("segfault")).expect("room");
    let outcome = segfault
        .wait_outcome(Duration::from_secs(20))
        .expect("the segfault ends the session");
    assert!(
        matches!(
            outcome,
            SessionOutcome::Killed(KillReason::Signal { signal: 11 })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.to_string(),
        "killed (signal: its process died of SIGSEGV (11))"
    );
    // An exit without an outcome is a failure with its code.
    let exit = pool.handle().launch(isolated("exit")).expect("room");
    let SessionOutcome::Failed(error) = exit
        .wait_outcome(Duration::from_secs(20))
        .expect("the exit ends the session")
    else {
        panic!("an exit is a failure");
    };
    assert_eq!(
        error.to_string(),
        "its process exited with code 3 before its session ended"
    );
    // The worker lives, its siblings too, and kept their cadence: a crash in a process
    // cannot stall the worker's thread (bound generous for a busy machine).
    let snapshot = pool.snapshot();
    for id in &siblings {
        assert!(
            snapshot.sessions.iter().any(|row| row.id == *id),
            "{id} still live"
        );
    }
    let worst = Duration::from_nanos(worst_ns.load(Ordering::Relaxed));
    assert!(
        worst < Duration::from_millis(150),
        "worst tick lateness {worst:?}"
    );
    assert!(
        pool.handle()
            .launch(JobRequest::new().agent("steady"))
            .is_ok()
    );
}

#[test]
fn a_process_that_allocates_without_end_is_killed_at_its_limit_and_the_worker_is_untouched() {
    let pool = RunningPool::start(
        builder("iso-memory")
            .session_memory_limit(32 * 1024 * 1024)
            .agent("patient", patient())
            .agent(
                "hog",
                agent_fn(|_session: Session| async move {
                    let mut held: Vec<Vec<u8>> = Vec::new();
                    loop {
                        // Touched, so it is resident.
                        held.push(vec![7_u8; 1024 * 1024]);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }),
            ),
    );
    let rss_before = openrtc::process::resident_set_bytes();
    let hog = pool.handle().launch(isolated("hog")).expect("room");
    let outcome = hog
        .wait_outcome(Duration::from_secs(30))
        .expect("the hog is killed");
    // Inside the child, the tracking allocator's cap sees it first; without one, the worker's
    // watch of the process's resident memory would.
    assert!(
        matches!(
            outcome,
            SessionOutcome::Killed(KillReason::MemoryLimit { .. } | KillReason::RssLimit { .. })
        ),
        "{outcome:?}"
    );
    let rss_after = openrtc::process::resident_set_bytes();
    assert!(
        rss_after < rss_before + 16 * 1024 * 1024,
        "the worker's RSS went from {rss_before} to {rss_after}"
    );
    assert!(
        pool.handle()
            .launch(JobRequest::new().agent("patient"))
            .is_ok()
    );
}

#[test]
fn an_isolated_session_is_cancelled_through_its_process_and_its_figures_are_its_child_s() {
    let pool = RunningPool::start(builder("iso-cancel").agent(
        "busy",
        agent_fn(|session: Session| async move {
            // Polls that take CPU, so the child's probe has figures to report.
            loop {
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(2) {
                    std::hint::spin_loop();
                }
                tokio::select! {
                    () = session.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(8)) => {}
                }
            }
        }),
    ));
    let session = pool.handle().launch(isolated("busy")).expect("room");
    let id = session.id();
    let row = wait_for("the child's figures", || {
        pool.row(id)
            .filter(|row| row.poll_count > 20 && row.busy_ns > 20_000_000)
    });
    let process = row.process.expect("an isolated row has its process");
    assert!(process.cpu_ns > 0 || process.rss_bytes > 0, "{process:?}");
    // Its busy time is the child's: the worker's proxy polls a few times a second.
    pool.handle().cancel(id).expect("live");
    let outcome = session
        .wait_outcome(Duration::from_secs(20))
        .expect("cancelled");
    assert!(
        matches!(
            outcome,
            SessionOutcome::Cancelled(openrtc::CancelReason::Operator)
        ),
        "{outcome:?}"
    );
    // Its process is gone (reaped).
    wait_for("the process to be gone", || {
        (!std::path::Path::new(&format!("/proc/{}", process.pid)).exists()).then_some(())
    });
}

#[test]
fn a_tenant_that_keeps_stalling_is_isolated_and_stops_delaying_the_others() {
    let worst_ns = Arc::new(AtomicU64::new(0));
    let budget = AutoIsolation {
        offences: 3,
        window: Duration::from_secs(30),
        cooldown: Duration::from_secs(600),
    };
    let pool = RunningPool::start(
        builder("iso-auto")
            .slow_session_threshold(Duration::from_millis(50))
            .auto_isolation(Some(budget))
            .agent("steady", steady(Arc::clone(&worst_ns)))
            .agent(
                "blocker",
                agent_fn(|session: Session| async move {
                    // Blocks its thread 200 ms every second.
                    loop {
                        tokio::select! {
                            () = session.cancelled() => return Ok(()),
                            () = tokio::time::sleep(Duration::from_millis(800)) => {}
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }),
            ),
    );
    let quiet = pool
        .handle()
        .launch(JobRequest::new().agent("steady").tenant("quiet"))
        .expect("room")
        .id();
    let noisy = |pool: &RunningPool| {
        pool.handle()
            .launch(JobRequest::new().agent("blocker").tenant("noisy"))
            .expect("room")
    };
    worst_ns.store(0, Ordering::Relaxed);
    let first = noisy(&pool);
    // Moved within the window: three stalls of its own.
    let tenant = wait_for("the noisy tenant to be isolated", || {
        pool.snapshot()
            .tenants
            .get("noisy")
            .and_then(|tenant| tenant.auto_isolation.clone())
            .filter(|auto| auto.isolated)
    });
    assert_eq!(tenant.moves_count, 1);
    let before = Duration::from_nanos(worst_ns.load(Ordering::Relaxed));
    assert!(
        before >= Duration::from_millis(150),
        "in the worker, its stalls delayed the quiet tenant's session: {before:?}"
    );
    // Running sessions are untouched; its new ones run in processes.
    assert!(
        pool.row(first.id())
            .is_some_and(|row| row.process.is_none())
    );
    let first_id = first.id();
    pool.handle().kill(first_id).expect("live");
    // Gone from the worker's thread (a kill lands at the end of a stall in progress).
    pool.wait_ended(first_id);
    worst_ns.store(0, Ordering::Relaxed);
    let second = noisy(&pool);
    let row = wait_for("the new session's process", || {
        pool.row(second.id()).filter(|row| row.process.is_some())
    });
    assert_eq!(
        row.process.map(|process| process.why),
        Some("automatic".to_owned())
    );
    // Three of its stalls, in its process.
    wait_for("three stalls in its process", || {
        pool.row(second.id()).filter(|row| row.stall_count >= 3)
    });
    let after = Duration::from_nanos(worst_ns.load(Ordering::Relaxed));
    assert!(
        after < Duration::from_millis(100),
        "isolated, its stalls no longer delay the quiet tenant's session: {after:?}"
    );
    assert!(pool.row(quiet).is_some());
}

#[test]
fn a_child_whose_main_never_builds_the_pool_fails_its_session_with_words_that_say_so() {
    // As a `main` that does something else before building its pool: the child (this test,
    // started again) never reaches `build`.
    if std::env::var_os("OPENRTC_ISOLATION_PARENT").is_some() {
        std::thread::sleep(Duration::from_secs(600));
    }
    let pool = RunningPool::start(builder("iso-nostart").agent("patient", patient()));
    let session = pool.handle().launch(isolated("patient")).expect("room");
    let SessionOutcome::Failed(error) = session
        .wait_outcome(Duration::from_secs(30))
        .expect("the start times out")
    else {
        panic!("a child that never starts fails its session");
    };
    assert_eq!(
        error.to_string(),
        "its process did not start its session within 10 s (does the binary's main build the \
         same pool before anything else?)"
    );
    // The worker goes on.
    assert!(
        pool.handle()
            .launch(JobRequest::new().agent("patient"))
            .is_ok()
    );
}

#[test]
fn an_isolated_session_s_heap_counts_in_its_tenant_s() {
    let pool = RunningPool::start(builder("iso-heap").agent(
        "holder",
        agent_fn(|session: Session| async move {
            // 8 MiB held for the session's life, in its process.
            let held = vec![1_u8; 8 * 1024 * 1024];
            session.cancelled().await;
            drop(held);
            Ok(())
        }),
    ));
    let session = pool.handle().launch(isolated("holder")).expect("room");
    let id = session.id();
    let tenant = wait_for("the tenant's heap to include its process's session", || {
        pool.snapshot()
            .tenants
            .get("acme")
            .filter(|tenant| tenant.heap_live_bytes >= 8 * 1024 * 1024)
            .cloned()
    });
    assert!(
        tenant.heap_live_bytes < 9 * 1024 * 1024,
        "about the 8 MiB held: {}",
        tenant.heap_live_bytes
    );
    pool.handle().cancel(id).expect("live");
    session
        .wait_outcome(Duration::from_secs(20))
        .expect("cancelled");
    wait_for("the tenant's heap to drop it", || {
        pool.snapshot()
            .tenants
            .get("acme")
            .filter(|tenant| tenant.heap_live_bytes < 1024 * 1024)
            .map(|_| ())
    });
}
