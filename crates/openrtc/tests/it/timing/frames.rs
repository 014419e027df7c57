//! The frame clock (`Session::frames`) on a real pool: every session of many on two worker
//! threads gets every frame, in order, due exactly a period apart; a session blocked for
//! five periods gets the five missed frames at once, then resumes on schedule; dropping a
//! `Frames` releases its place in the clock; and a pool shuts down with `Frames` still live.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use openrtc::{AgentPool, Frame, JobRequest, Session, agent_fn};

use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

/// Takes `count` frames of `period` and checks each against the first: consecutive indices,
/// due exactly `index` periods after it, never released before its due instant. Returns
/// how many frames broke a rule.
async fn take_frames(session: &Session, period: Duration, count: u32) -> u64 {
    let mut frames = session.frames(period);
    let first = frames.next_frame();
    let mut broken = 0;
    for index in 0..count {
        let frame = frames.tick().await;
        let released = tokio::time::Instant::now();
        let right = frame.index() == u64::from(index)
            && frame.due() == first.due() + period * index
            && released >= frame.due();
        broken += u64::from(!right);
    }
    broken
}

#[test]
fn many_sessions_on_two_worker_threads_all_get_every_frame_in_order() {
    const SESSIONS: u64 = 1_000;
    const FRAMES: u32 = 25;
    let period = Duration::from_millis(20);
    let (taken, broken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let agent = agent_fn({
        let (taken, broken) = (Arc::clone(&taken), Arc::clone(&broken));
        move |session: Session| {
            let (taken, broken) = (Arc::clone(&taken), Arc::clone(&broken));
            async move {
                let wrong = take_frames(&session, period, FRAMES).await;
                broken.fetch_add(wrong, Ordering::Relaxed);
                taken.fetch_add(u64::from(FRAMES), Ordering::Relaxed);
                Ok(())
            }
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("framer", agent)
            .worker_threads(2)
            .max_concurrent_sessions(u32::try_from(SESSIONS).expect("fits"))
            .enable_introspection(false),
    );
    for _ in 0..SESSIONS {
        pool.handle().launch(JobRequest::new()).expect("room");
    }
    wait_for("every session to take its frames", || {
        (pool.snapshot().worker.active_sessions == 0
            && taken.load(Ordering::Relaxed) == SESSIONS * u64::from(FRAMES))
        .then_some(())
    });
    assert_eq!(broken.load(Ordering::Relaxed), 0, "frames out of order");
    assert_eq!(pool.handle().frame_registrations(), 0);
}

/// When a frame came back to the session, with the frame.
type Received = (Frame, tokio::time::Instant);

#[test]
fn a_session_blocked_for_five_periods_gets_the_missed_frames_at_once_then_resumes() {
    let period = Duration::from_millis(100);
    let (sent, received) = mpsc::channel::<Vec<Received>>();
    let agent = agent_fn(move |session: Session| {
        let sent = sent.clone();
        async move {
            let mut frames = session.frames(period);
            let mut seen = Vec::new();
            let first = frames.tick().await;
            seen.push((first, tokio::time::Instant::now()));
            // Blocks its worker thread through frames 1 to 5 (a stall, on purpose).
            std::thread::sleep(period * 5 + period / 2);
            for _ in 1..=7 {
                let frame = frames.tick().await;
                seen.push((frame, tokio::time::Instant::now()));
            }
            let _ = sent.send(seen);
            Ok(())
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("late", agent)
            .worker_threads(2)
            .enable_introspection(false),
    );
    pool.handle().launch(JobRequest::new()).expect("room");
    let seen = received
        .recv_timeout(PATIENCE)
        .expect("the session's frames");
    let first_due = seen[0].0.due();
    for (index, (frame, _)) in seen.iter().enumerate() {
        let index = u32::try_from(index).expect("small");
        assert_eq!(frame.index(), u64::from(index), "{seen:?}");
        assert_eq!(frame.due(), first_due + period * index, "{seen:?}");
    }
    let sixth_due = first_due + period * 6;
    for (frame, at) in &seen[1..=5] {
        assert!(
            *at < sixth_due,
            "missed frame {} came only at {:?} after the sixth was due",
            frame.index(),
            at.saturating_duration_since(sixth_due)
        );
    }
    // Back on schedule: frames 6 and 7 each wait for their due instant.
    for (frame, at) in &seen[6..] {
        assert!(*at >= frame.due(), "frame {} came early", frame.index());
    }
}

#[test]
fn dropping_a_frames_releases_its_registration() {
    let (drop_one, drop_all) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let agent = agent_fn({
        let (drop_one, drop_all) = (Arc::clone(&drop_one), Arc::clone(&drop_all));
        move |session: Session| {
            let (drop_one, drop_all) = (Arc::clone(&drop_one), Arc::clone(&drop_all));
            async move {
                let mut fast = session.frames(Duration::from_millis(10));
                let mut slow = Some(session.frames(Duration::from_millis(30)));
                let _other = session.frames(Duration::from_millis(10));
                while !drop_all.load(Ordering::Acquire) {
                    fast.tick().await;
                    if drop_one.load(Ordering::Acquire) {
                        slow = None;
                    }
                }
                drop(slow);
                Ok(())
            }
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("framer", agent)
            .worker_threads(2)
            .enable_introspection(false),
    );
    let handle = pool.handle();
    assert_eq!(handle.frame_registrations(), 0);
    handle.launch(JobRequest::new()).expect("room");
    handle.launch(JobRequest::new()).expect("room");
    wait_for("six registrations", || {
        (handle.frame_registrations() == 6).then_some(())
    });
    drop_one.store(true, Ordering::Release);
    wait_for("each session to drop one", || {
        (handle.frame_registrations() == 4).then_some(())
    });
    drop_all.store(true, Ordering::Release);
    wait_for("the sessions to end", || {
        (pool.snapshot().worker.active_sessions == 0).then_some(())
    });
    assert_eq!(handle.frame_registrations(), 0);
}

#[test]
fn a_pool_with_live_frames_shuts_down_without_hanging() {
    const SESSIONS: usize = 200;
    let ticking = Arc::new(AtomicU64::new(0));
    let agent = agent_fn({
        let ticking = Arc::clone(&ticking);
        move |session: Session| {
            let ticking = Arc::clone(&ticking);
            async move {
                let mut frames = session.frames(Duration::from_millis(20));
                frames.tick().await;
                ticking.fetch_add(1, Ordering::Relaxed);
                // Half of them ignore the cancel: the pool drops them after the grace.
                let obeys = session.id().as_u64() % 2 == 0;
                loop {
                    tokio::select! {
                        _ = frames.tick() => {}
                        () = session.cancelled(), if obeys => return Ok(()),
                    }
                }
            }
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("framer", agent)
            .worker_threads(2)
            .cancel_grace(Duration::from_millis(200))
            .max_concurrent_sessions(u32::try_from(SESSIONS).expect("fits"))
            .enable_introspection(false),
    );
    let handle = pool.handle().clone();
    for _ in 0..SESSIONS {
        handle.launch(JobRequest::new()).expect("room");
    }
    wait_for("every session to tick", || {
        (ticking.load(Ordering::Relaxed) == SESSIONS as u64).then_some(())
    });
    assert_eq!(handle.frame_registrations(), SESSIONS);
    let (stopped, stop_seen) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        drop(pool);
        let _ = stopped.send(());
    });
    stop_seen
        .recv_timeout(PATIENCE)
        .expect("the pool stopped with live frames");
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(handle.frame_registrations(), 0, "every Frames was dropped");
}
