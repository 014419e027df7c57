//! Exact per-session memory with the tracking allocator: hand-offs, reconciliation, caps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openrtc::proto::{MemSource, PoolSnapshot, SessionOutcome as Wire};
use openrtc::{AgentPool, JobRequest, KillReason, Session, SessionId, agent_fn};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

use crate::support::{RunningPool, TestPool as _, row_of, wait_for};

const MIB: u64 = 1024 * 1024;

/// The row of an ended session in the socket's snapshot answer, as raw JSON.
#[track_caller]
fn ended_on_the_wire(socket: &std::path::Path, id: SessionId) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .write_all(b"{\"v\":1,\"op\":\"snapshot\"}\n")
        .expect("write");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("read");
    let answer: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let rows = answer["snapshot"]["recently_ended"]
        .as_array()
        .expect("a list");
    rows.iter()
        .find(|row| row["id"] == id.to_string().as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not in {rows:?}"))
}

/// The live bytes of a session in a snapshot.
#[track_caller]
fn mem_of(snapshot: &PoolSnapshot, id: openrtc::SessionId) -> u64 {
    row_of(snapshot, id).expect("the session is live").mem_bytes
}

#[test]
fn a_buffer_handed_to_another_session_is_credited_to_its_owner_when_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Session A allocates 10 MiB and sends it; session B receives it and frees it on cue.
    let (to_b, from_a) = mpsc::unbounded_channel::<Vec<u8>>();
    let from_a = Arc::new(AsyncMutex::new(Some(from_a)));
    let (free_now, free_cue) = oneshot::channel::<()>();
    let free_cue = Arc::new(AsyncMutex::new(Some(free_cue)));
    let sender = agent_fn(move |session: Session| {
        let to_b = to_b.clone();
        async move {
            let buffer = vec![7_u8; 10 * 1024 * 1024];
            tokio::time::sleep(Duration::from_millis(1)).await;
            to_b.send(buffer)
                .map_err(|_| openrtc::AgentError::msg("b is gone"))?;
            session.cancelled().await;
            Ok(())
        }
    });
    let receiver = agent_fn(move |session: Session| {
        let from_a = Arc::clone(&from_a);
        let free_cue = Arc::clone(&free_cue);
        async move {
            let mut from_a = from_a.lock().await.take().expect("one receiver");
            let buffer = from_a.recv().await.expect("a buffer");
            let cue = free_cue.lock().await.take().expect("one cue");
            let _ = cue.await;
            drop(buffer);
            session.cancelled().await;
            Ok(())
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("sender", sender)
            .agent("receiver", receiver)
            .worker_threads(2)
            .socket_path(dir.path().join("w.sock")),
    );
    let b = pool
        .handle()
        .launch(JobRequest::new().agent("receiver"))
        .expect("room")
        .id();
    let a = pool
        .handle()
        .launch(JobRequest::new().agent("sender"))
        .expect("room")
        .id();
    let holding = wait_for("A to allocate and hand over", || {
        let snapshot = pool.snapshot();
        (mem_of(&snapshot, a) >= 10 * MIB).then_some(snapshot)
    });
    assert_eq!(holding.worker.mem_source, MemSource::Tracked);
    let b_before = mem_of(&holding, b);
    assert!(
        b_before < MIB,
        "B holds A's buffer but is not charged for it: {b_before}"
    );
    free_now.send(()).expect("B waits for the cue");
    let after = wait_for("B to free the buffer", || {
        let snapshot = pool.snapshot();
        (mem_of(&snapshot, a) < MIB).then_some(snapshot)
    });
    let a_after = mem_of(&after, a);
    let a_before = mem_of(&holding, a);
    assert!(
        a_before - a_after >= 10 * MIB,
        "A's live bytes fall by the 10 MiB B freed: {a_before} → {a_after}"
    );
    let b_after = mem_of(&after, b);
    assert!(
        b_after < MIB,
        "B's live bytes never go negative (no wrap-around): {b_after}"
    );
    let a_row = row_of(&after, a).expect("live");
    assert!(a_row.mem_peak_bytes >= 10 * MIB);
    assert!(a_row.alloc_count >= 1);
}

#[test]
fn sessions_and_buckets_sum_to_the_tracked_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (to_sink, mut from_workers) = mpsc::unbounded_channel::<Vec<u64>>();
    let worker = agent_fn(move |session: Session| {
        let to_sink = to_sink.clone();
        async move {
            let seed = session.id().as_u64();
            let mut kept: Vec<Vec<u64>> = Vec::new();
            let child = session.spawn(async move {
                let mut child_kept = Vec::new();
                for round in 0..50_u64 {
                    child_kept.push(vec![round; ((seed * 31 + round * 7) % 4000) as usize + 1]);
                    if round % 3 == 0 {
                        child_kept.swap_remove(0);
                    }
                    tokio::task::yield_now().await;
                }
                child_kept.len()
            });
            for round in 0..80_u64 {
                let size = ((seed * 17 + round * 13) % 9000) as usize + 1;
                kept.push(vec![seed; size]);
                if round % 4 == 1 {
                    // Hand a block to the sink, which frees it outside any session.
                    let _ = to_sink.send(kept.swap_remove(0));
                }
                if round % 5 == 2 {
                    kept.pop();
                }
                tokio::task::yield_now().await;
            }
            let _ = child.await;
            session.cancelled().await;
            drop(kept);
            Ok(())
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("worker", worker)
            .worker_threads(4)
            .socket_path(dir.path().join("w.sock")),
    );
    let sink = std::thread::spawn(move || {
        let mut received = 0_u64;
        while let Some(block) = from_workers.blocking_recv() {
            received += block.len() as u64;
        }
        received
    });
    let ids: Vec<_> = (0..40)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room").id())
        .collect();
    // Quiescence: every session has done its work and waits; half of them have ended.
    wait_for("every session to finish its rounds", || {
        let snapshot = pool.snapshot();
        snapshot
            .sessions
            .iter()
            .all(|row| row.children_finished_count == 1 && row.poll_count >= 80)
            .then_some(())
    });
    for id in &ids[..20] {
        pool.handle().cancel(*id).expect("live");
        pool.wait_ended(*id);
    }
    // Background threads (the watchdog, the socket server) allocate now and then; an exact
    // reading is one where none did while the counters were read.
    let exact = (0..200).find_map(|_| {
        let snapshot = pool.snapshot();
        let sessions: u64 = snapshot.sessions.iter().map(|row| row.mem_bytes).sum();
        let worker = &snapshot.worker;
        (sessions + worker.runtime_bytes + worker.ended_bytes == worker.tracked_bytes)
            .then_some(snapshot)
    });
    let snapshot = exact.expect("sessions + runtime + ended == tracked total, exactly");
    assert_eq!(snapshot.sessions.len(), 20);
    assert!(snapshot.sessions.iter().all(|row| row.mem_bytes > 0));
    drop(pool);
    assert!(
        sink.join().expect("sink") > 0,
        "blocks were handed to the sink"
    );
}

#[test]
fn a_session_over_its_memory_cap_is_killed_at_its_next_poll_and_nobody_else_is() {
    crate::drain_log::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let leaked_frames = Arc::new(AtomicU64::new(0));
    let leaky = agent_fn({
        let leaked_frames = Arc::clone(&leaked_frames);
        move |_session: Session| {
            let leaked_frames = Arc::clone(&leaked_frames);
            async move {
                let mut leak: Vec<Vec<u8>> = Vec::new();
                let mut frames = tokio::time::interval(Duration::from_millis(20));
                loop {
                    frames.tick().await;
                    leak.push(vec![1_u8; MIB as usize]);
                    leaked_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let steady = agent_fn(|session: Session| async move {
        let mut frames = tokio::time::interval(Duration::from_millis(20));
        let mut buffer = vec![0_u8; 4096];
        loop {
            tokio::select! {
                _ = frames.tick() => buffer[0] = buffer[0].wrapping_add(1),
                () = session.cancelled() => return Ok(()),
            }
        }
    });
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("steady", steady)
            .agent("leaky", leaky)
            .agent_memory_limit("leaky", 50 * MIB)
            .worker_threads(2)
            .socket_path(dir.path().join("w.sock")),
    );
    let siblings: Vec<_> = (0..100)
        .map(|_| pool.handle().launch(JobRequest::new()).expect("room").id())
        .collect();
    let rss_before = pool.snapshot().worker.rss_bytes;
    let leaky_id = pool
        .handle()
        .launch(JobRequest::new().agent("leaky"))
        .expect("room")
        .id();
    let peak_rss = wait_for("the leak to grow", || {
        let snapshot = pool.snapshot();
        (row_of(&snapshot, leaky_id).is_some_and(|row| row.mem_bytes >= 40 * MIB))
            .then_some(snapshot.worker.rss_bytes)
    });
    let ended = pool.wait_ended(leaky_id);
    let Wire::Killed {
        reason: KillReason::MemoryLimit {
            live_bytes,
            limit_bytes,
        },
    } = ended.outcome
    else {
        panic!("expected a memory-limit kill, got {:?}", ended.outcome);
    };
    assert_eq!(limit_bytes, 50 * MIB);
    assert!(live_bytes >= limit_bytes, "{live_bytes} live");
    // On the socket, the reason is a tagged object carrying its figures as numbers.
    let on_the_wire = ended_on_the_wire(&dir.path().join("w.sock"), leaky_id);
    assert_eq!(on_the_wire["outcome"]["kind"], "killed", "{on_the_wire}");
    let reason = &on_the_wire["outcome"]["reason"];
    assert_eq!(reason["kind"], "memory_limit", "{reason}");
    assert_eq!(reason["limit_bytes"].as_u64(), Some(50 * MIB), "{reason}");
    assert_eq!(reason["live_bytes"].as_u64(), Some(live_bytes), "{reason}");
    // The log lines carry the same figures as structured fields.
    let session_id = leaky_id.to_string();
    let kill_lines =
        crate::drain_log::events_with("session_id", &session_id, "session_memory_limit");
    assert_eq!(kill_lines.len(), 1, "{kill_lines:?}");
    let kill_line = &kill_lines[0];
    assert_eq!(kill_line.level, tracing::Level::WARN);
    assert!(
        kill_line.message.starts_with("[memory-limit] session_id="),
        "{kill_line:?}"
    );
    let end_lines = crate::drain_log::events_with("session_id", &session_id, "session_end");
    assert_eq!(end_lines.len(), 1, "{end_lines:?}");
    let end_line = &end_lines[0];
    assert_eq!(end_line.target, "openrtc::pool");
    assert_eq!(end_line.level, tracing::Level::WARN);
    for (line, extra) in [
        (kill_line, &[][..]),
        (
            end_line,
            &[("outcome", "killed"), ("reason", "memory_limit")][..],
        ),
    ] {
        let mut expected = vec![
            ("agent", "leaky".to_owned()),
            ("event", line.fields["event"].clone()),
            ("limit_bytes", limit_bytes.to_string()),
            ("live_bytes", live_bytes.to_string()),
            ("session_id", session_id.clone()),
            ("tenant", "default".to_owned()),
        ];
        expected.extend(
            extra
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        expected.sort();
        let shown: Vec<(&str, String)> = line
            .fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        assert_eq!(shown, expected, "{line:?}");
    }
    // The frame that crossed 50 MiB (the 50th or 51st MiB, with the session's own small
    // allocations) was its last: the kill came at the next poll, before another frame.
    let frames = leaked_frames.load(Ordering::Relaxed);
    assert!((50..=51).contains(&frames), "{frames} frames leaked");
    assert!(ended.mem_peak_bytes > 50 * MIB, "{}", ended.mem_peak_bytes);
    assert!(
        ended.mem_peak_bytes < frames * MIB + MIB / 4,
        "{}",
        ended.mem_peak_bytes
    );

    let after = wait_for("the worker's RSS to fall back", || {
        let snapshot = pool.snapshot();
        (snapshot.worker.rss_bytes + 30 * MIB < peak_rss).then_some(snapshot)
    });
    assert!(after.worker.rss_bytes < rss_before + 20 * MIB);
    assert_eq!(after.worker.totals.killed_count, 1);
    assert_eq!(after.sessions.len(), 100, "every sibling is still live");
    for id in siblings {
        let row = row_of(&after, id).expect("sibling is live");
        assert!(row.mem_bytes < MIB, "{id} holds {}", row.mem_bytes);
    }
}
