//! The lifecycle event stream: every event in the file with its ids and outcomes, `seq`
//! without gaps, snapshots at the interval, drops counted in the stream, readers written for
//! the reference's envelope, and live subscribers on the socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openrtc::proto::{
    BreakerState, MemoryLimitScope, OverflowScope, Response, ResponseEnvelope, SessionOutcome,
    StallClass, StreamEvent, StreamLine, StreamRecord,
};
use openrtc::{
    AgentError, AgentPool, AgentPoolBuilder, JobRequest, RefusalReason, Session, SessionId,
    agent_fn,
};

use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

const MIB: u64 = 1024 * 1024;

/// The stream's lines as the reference's readers see them: exactly its envelope's fields.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "read only to check the envelope parses")]
struct ReferenceEnvelope {
    schema_version: i64,
    kind: String,
    seq: i64,
    wall_time_unix: f64,
    payload: serde_json::Map<String, serde_json::Value>,
}

/// The complete lines of the stream file so far, as written (a line being written is left
/// out until its newline is there).
fn raw_lines(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete.lines().map(str::to_owned).collect()
}

/// The stream file's lines, typed.
#[track_caller]
fn lines(path: &Path) -> Vec<StreamLine> {
    raw_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

fn events(lines: &[StreamLine]) -> impl Iterator<Item = (u64, &StreamEvent)> {
    lines.iter().filter_map(|line| match &line.record {
        StreamRecord::Event(event) => Some((line.seq, event)),
        _ => None,
    })
}

/// Waits until the file holds an event that `matches`, and returns its `seq`.
#[track_caller]
fn wait_for_event(path: &Path, what: &str, matches: impl Fn(&StreamEvent) -> bool) -> u64 {
    wait_for(what, || {
        events(&lines(path)).find_map(|(seq, event)| matches(event).then_some(seq))
    })
}

/// `seq` runs 1, 2, 3… without a gap, and every line has the reference's schema version.
#[track_caller]
fn check_numbering(lines: &[StreamLine]) {
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line.seq, index as u64 + 1, "{line:?}");
        assert_eq!(line.schema_version, 2);
    }
}

/// Every line parses with the reference's field names alone, in Rust and in Python (as a
/// tool of the reference's would read it).
#[track_caller]
fn check_reference_readers(path: &Path) {
    let raw = raw_lines(path);
    assert!(!raw.is_empty());
    for line in &raw {
        serde_json::from_str::<ReferenceEnvelope>(line)
            .unwrap_or_else(|error| panic!("{error}: {line}"));
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/events/reference_reader.py"
    );
    let output = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("/usr/bin/python3 is installed");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the Python reader: {printed}");
    assert_eq!(printed.trim(), raw.len().to_string());
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

fn completes() -> impl openrtc::Agent {
    agent_fn(|_session: Session| async { Ok(()) })
}

fn patient() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        session.cancelled().await;
        Ok(())
    })
}

/// The outcome and duration the file gives each session that finished.
fn finished(lines: &[StreamLine]) -> HashMap<SessionId, (u64, &SessionOutcome, u64)> {
    events(lines)
        .filter_map(|(seq, event)| match event {
            StreamEvent::SessionFinished {
                session_id,
                outcome,
                duration_ms,
                ..
            } => Some((*session_id, (seq, outcome, *duration_ms))),
            _ => None,
        })
        .collect()
}

fn started(lines: &[StreamLine]) -> HashMap<SessionId, (u64, &str, &str)> {
    events(lines)
        .filter_map(|(seq, event)| match event {
            StreamEvent::SessionStarted {
                session_id,
                tenant,
                agent,
            } => Some((*session_id, (seq, tenant.as_str(), agent.as_str()))),
            _ => None,
        })
        .collect()
}

#[test]
fn the_file_has_every_lifecycle_event_numbered_without_gaps_and_snapshots_at_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("events.jsonl");
    let config = dir.path().join("tenants.toml");
    std::fs::write(&config, "[tenants.capped]\nmax_sessions = 1\n").expect("written");
    let interval = Duration::from_millis(200);
    let began = now_unix();
    let began_at = Instant::now();
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("ok", completes())
            .agent(
                "fails",
                agent_fn(|_session: Session| async { Err(AgentError::msg("upstream closed")) }),
            )
            .agent(
                "panics",
                agent_fn(|_session: Session| async { panic!("the agent's bug") }),
            )
            .agent(
                "stalls",
                agent_fn(|_session: Session| async {
                    std::thread::sleep(Duration::from_millis(200));
                    Ok(())
                }),
            )
            .agent(
                "leaky",
                agent_fn(|session: Session| async move {
                    let held = vec![1_u8; usize::try_from(4 * MIB).expect("fits")];
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(1)) => {}
                            () = session.cancelled() => break,
                        }
                    }
                    drop(std::hint::black_box(held));
                    Ok(())
                }),
            )
            .agent("patient", patient())
            .agent_memory_limit("leaky", MIB)
            .worker_threads(2)
            .drain_timeout(Duration::from_millis(100))
            .tenant_config(&config)
            .socket_path(dir.path().join("w.sock"))
            .event_stream(&stream, interval),
    );
    let launch = |tenant: &str, agent: &str| {
        pool.handle()
            .launch(JobRequest::new().tenant(tenant).agent(agent))
            .expect("room")
            .id()
    };
    let run = |tenant: &str, agent: &str| {
        let id = launch(tenant, agent);
        pool.wait_ended(id);
        id
    };
    let ok = run("acme", "ok");
    let stalled = run("acme", "stalls");
    let leaky = run("acme", "leaky");
    // Tenant `bad` fails 3 of 5: its breaker opens, and refuses its next launch.
    let bad: Vec<SessionId> = ["ok", "ok", "fails", "panics", "fails"]
        .into_iter()
        .map(|agent| run("bad", agent))
        .collect();
    let refused_by_breaker = pool
        .handle()
        .launch(JobRequest::new().tenant("bad").agent("ok"))
        .expect_err("the breaker is open");
    assert_eq!(refused_by_breaker.reason(), RefusalReason::BreakerOpen);
    let patient_id = launch("capped", "patient");
    let refused_by_cap = pool
        .handle()
        .launch(JobRequest::new().tenant("capped").agent("patient"))
        .expect_err("the tenant is at its cap");
    assert_eq!(refused_by_cap.reason(), RefusalReason::TenantCap);
    // A new version of the tenant config, renamed over the old one.
    let replacement = dir.path().join(".tenants.toml.new");
    std::fs::write(&replacement, "[tenants.capped]\nmax_sessions = 2\n").expect("written");
    std::fs::rename(&replacement, &config).expect("renamed");
    wait_for_event(&stream, "the reload's event", |event| {
        matches!(event, StreamEvent::ConfigReloaded { .. })
    });
    wait_for_event(&stream, "the stall's event", |event| {
        matches!(event, StreamEvent::SessionStalled { .. })
    });
    wait_for("two snapshot lines", || {
        (lines(&stream)
            .iter()
            .filter(|line| matches!(line.record, StreamRecord::Snapshot(_)))
            .count()
            >= 2)
            .then_some(())
    });
    pool.drain_and_join().expect("a clean drain");
    let elapsed = began_at.elapsed();
    let ended = now_unix();

    // The pool has stopped: the file is complete and flushed.
    let lines = lines(&stream);
    check_numbering(&lines);
    check_reference_readers(&stream);
    for line in &lines {
        assert!(
            (began - 1.0..=ended + 1.0).contains(&line.wall_time_unix),
            "{line:?} is outside the test's time"
        );
    }
    let started = started(&lines);
    let finished = finished(&lines);
    let all = [ok, stalled, leaky, patient_id]
        .into_iter()
        .chain(bad.iter().copied());
    for id in all {
        let (start_seq, ..) = started[&id];
        let (end_seq, ..) = finished[&id];
        assert!(start_seq < end_seq, "{id} ends after it starts");
    }
    assert_eq!((started[&ok].1, started[&ok].2), ("acme", "ok"));
    assert_eq!(
        (started[&patient_id].1, started[&patient_id].2),
        ("capped", "patient")
    );
    assert_eq!(started.len(), 9, "one start per session");
    assert_eq!(finished.len(), 9, "one end per session");
    let kind = |id: &SessionId| finished[id].1.kind();
    assert_eq!(kind(&ok), "completed");
    assert_eq!(kind(&stalled), "completed");
    assert!(
        finished[&stalled].2 >= 200,
        "the stalled session lasted its stall"
    );
    assert_eq!(
        bad.iter().map(kind).collect::<Vec<_>>(),
        ["completed", "completed", "failed", "panicked", "failed"]
    );
    assert_eq!(
        finished[&bad[2]].1,
        &SessionOutcome::Failed {
            error: "upstream closed".into()
        }
    );
    assert!(
        matches!(finished[&leaky].1, SessionOutcome::Killed { .. }),
        "{:?}",
        finished[&leaky]
    );
    assert!(
        matches!(finished[&patient_id].1, SessionOutcome::Cancelled { .. }),
        "{:?}",
        finished[&patient_id]
    );

    let refusals: Vec<(&str, Option<&str>, RefusalReason)> = events(&lines)
        .filter_map(|(_, event)| match event {
            StreamEvent::SessionRefused {
                tenant,
                agent,
                reason,
                message,
            } => {
                assert!(!message.is_empty());
                Some((tenant.as_str(), agent.as_deref(), *reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refusals,
        [
            ("bad", Some("ok"), RefusalReason::BreakerOpen),
            ("capped", Some("patient"), RefusalReason::TenantCap),
        ]
    );
    let breaker: Vec<&StreamEvent> = events(&lines)
        .map(|(_, event)| event)
        .filter(|event| matches!(event, StreamEvent::BreakerState { .. }))
        .collect();
    assert_eq!(
        breaker,
        [&StreamEvent::BreakerState {
            tenant: "bad".into(),
            state: BreakerState::Open,
            failures_count: Some(3),
            samples_count: Some(5),
            window_ms: Some(60_000),
            cooldown_ms: Some(30_000),
            probes_count: None,
        }]
    );
    let stalls: Vec<&StreamEvent> = events(&lines)
        .map(|(_, event)| event)
        .filter(|event| matches!(event, StreamEvent::SessionStalled { .. }))
        .collect();
    let [
        StreamEvent::SessionStalled {
            session_id,
            tenant,
            duration_ms,
            class,
            ..
        },
    ] = stalls.as_slice()
    else {
        panic!("one stall: {stalls:?}");
    };
    assert_eq!((*session_id, tenant.as_str()), (stalled, "acme"));
    assert!(*duration_ms >= 150, "{duration_ms} ms");
    assert_eq!(*class, Some(StallClass::Sleep));
    let memory: Vec<&StreamEvent> = events(&lines)
        .map(|(_, event)| event)
        .filter(|event| matches!(event, StreamEvent::MemoryLimit { .. }))
        .collect();
    let [
        StreamEvent::MemoryLimit {
            scope: MemoryLimitScope::Session,
            session_id: Some(killed),
            limit_bytes,
            used_bytes,
            ..
        },
    ] = memory.as_slice()
    else {
        panic!("one session memory limit: {memory:?}");
    };
    assert_eq!((*killed, *limit_bytes), (leaky, MIB));
    assert!(used_bytes >= limit_bytes);
    let reloads: Vec<(&str, &str)> = events(&lines)
        .filter_map(|(_, event)| match event {
            StreamEvent::ConfigReloaded { path, version } => {
                Some((path.as_str(), version.as_str()))
            }
            _ => None,
        })
        .collect();
    let [(reloaded_path, version)] = reloads.as_slice() else {
        panic!("one reload: {reloads:?}");
    };
    assert_eq!(*reloaded_path, config.display().to_string());
    assert!(!version.is_empty());
    let drains: Vec<&StreamEvent> = events(&lines)
        .map(|(_, event)| event)
        .filter(|event| matches!(event, StreamEvent::DrainStarted { .. }))
        .collect();
    assert_eq!(
        drains,
        [&StreamEvent::DrainStarted {
            why: "begin_drain".into(),
            live_sessions_count: 1,
            deadline_ms: 100,
        }]
    );
    assert!(
        !events(&lines).any(|(_, event)| matches!(event, StreamEvent::StreamOverflow { .. })),
        "nothing dropped"
    );

    // Snapshots: one per interval while the pool ran (with room for a slow thread), and the
    // last line is the one written as it stopped, with the final figures.
    let snapshots: Vec<&openrtc::PoolSnapshot> = lines
        .iter()
        .filter_map(|line| match &line.record {
            StreamRecord::Snapshot(snapshot) => Some(&**snapshot),
            StreamRecord::Event(_) => None,
            _ => None,
        })
        .collect();
    let most = elapsed.as_millis() / interval.as_millis() + 2;
    assert!(
        (3..=most as usize).contains(&snapshots.len()),
        "{} snapshots in {elapsed:?}",
        snapshots.len()
    );
    let StreamRecord::Snapshot(last) = &lines.last().expect("lines").record else {
        panic!("the last line is the final snapshot");
    };
    assert_eq!(last.worker.totals.started_count, 9);
    assert_eq!(last.worker.active_sessions, 0);
    assert_eq!(
        last.worker.event_stream.as_deref(),
        Some(stream.display().to_string().as_str())
    );
    assert_eq!(last.worker.event_stream_dropped_count, 0);
}

#[test]
fn a_full_queue_drops_events_without_blocking_launches_and_the_stream_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("events.jsonl");
    let pool = AgentPool::builder()
        .agent("ok", completes())
        .worker_threads(2)
        .socket_path(dir.path().join("w.sock"))
        .event_stream(&stream, Duration::from_secs(3600))
        .event_stream_queue_capacity(4)
        .build()
        .expect("valid configuration");
    // Before the pool runs, nothing takes events off the queue: 4 of these 20 starts fit.
    for _ in 0..20 {
        pool.handle()
            .launch(JobRequest::new())
            .expect("a launch is never held up by the stream");
    }
    let pool = RunningPool::run(pool);
    for _ in 0..50 {
        pool.handle()
            .launch(JobRequest::new())
            .expect("a launch is never held up by the stream");
    }
    wait_for("every session to end", || {
        (pool.snapshot().worker.totals.completed_count == 70).then_some(())
    });
    pool.drain_and_join().expect("a clean drain");

    let lines = lines(&stream);
    check_numbering(&lines);
    check_reference_readers(&stream);
    let mut written = 0;
    let mut dropped = 0;
    for (_, event) in events(&lines) {
        match event {
            StreamEvent::StreamOverflow {
                scope,
                dropped_count,
            } => {
                assert_eq!(*scope, OverflowScope::Stream);
                assert!(*dropped_count > 0);
                dropped += dropped_count;
            }
            _ => written += 1,
        }
    }
    // 70 starts, 70 ends and the drain's start were emitted: each is written or counted.
    assert_eq!(
        written + dropped,
        141,
        "{written} written, {dropped} dropped"
    );
    assert!(dropped >= 16, "{dropped} dropped");
    let StreamRecord::Snapshot(last) = &lines.last().expect("lines").record else {
        panic!("the last line is the final snapshot");
    };
    assert_eq!(last.worker.event_stream_dropped_count, dropped);
}

/// A subscriber's side of the socket.
struct Subscriber {
    reader: BufReader<UnixStream>,
    _writer: UnixStream,
}

impl Subscriber {
    #[track_caller]
    fn connect(socket: &Path) -> Self {
        let mut stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("a read timeout");
        stream
            .write_all(b"{\"v\":1,\"op\":\"subscribe\"}\n")
            .expect("subscribe");
        let mut subscriber = Self {
            _writer: stream.try_clone().expect("clone"),
            reader: BufReader::new(stream),
        };
        let answer: ResponseEnvelope =
            serde_json::from_str(&subscriber.next_raw()).expect("a response");
        assert_eq!(answer.response, Response::Subscribed { schema_version: 2 });
        subscriber
    }

    #[track_caller]
    fn next_raw(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("a line in time");
        assert!(read > 0, "the worker closed the stream");
        line.trim_end().to_owned()
    }

    /// Reads lines until one holds an event that `matches`; returns it and the lines read.
    #[track_caller]
    fn until(&mut self, matches: impl Fn(&StreamEvent) -> bool) -> (String, Vec<StreamLine>) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no such event: {seen:?}");
            let raw = self.next_raw();
            let line: StreamLine = serde_json::from_str(&raw).expect("a stream line");
            let found = matches!(&line.record, StreamRecord::Event(event) if matches(event));
            seen.push(line);
            if found {
                return (raw, seen);
            }
        }
    }
}

fn socket_pool(dir: &tempfile::TempDir, builder: AgentPoolBuilder) -> (RunningPool, PathBuf) {
    let socket = dir.path().join("w.sock");
    let pool = RunningPool::start(
        builder
            .agent("ok", completes())
            .agent("patient", patient())
            .worker_threads(2)
            .socket_path(&socket),
    );
    wait_for("the socket", || socket.exists().then_some(()));
    (pool, socket)
}

#[test]
fn a_socket_subscriber_gets_the_file_s_lines_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("events.jsonl");
    let (pool, socket) = socket_pool(
        &dir,
        AgentPool::builder().event_stream(&stream, Duration::from_secs(3600)),
    );
    let mut subscriber = Subscriber::connect(&socket);
    let id = pool
        .handle()
        .launch(JobRequest::new().tenant("acme").agent("ok"))
        .expect("room")
        .id();
    let (started_raw, _) = subscriber.until(|event| {
        matches!(event, StreamEvent::SessionStarted { session_id, tenant, .. }
            if *session_id == id && tenant == "acme")
    });
    let (_, seen) = subscriber.until(|event| {
        matches!(event, StreamEvent::SessionFinished { session_id, outcome, .. }
            if *session_id == id && *outcome == SessionOutcome::Completed)
    });
    // Numbered on from the start line, with nothing missed.
    let start: StreamLine = serde_json::from_str(&started_raw).expect("a line");
    for (offset, line) in seen.iter().enumerate() {
        assert_eq!(line.seq, start.seq + 1 + offset as u64, "{line:?}");
    }
    // The very line the file has.
    wait_for("the start in the file", || {
        raw_lines(&stream).contains(&started_raw).then_some(())
    });
    drop(pool);
}

#[test]
fn subscribers_are_served_without_a_file_and_each_gets_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, socket) = socket_pool(&dir, AgentPool::builder());
    assert_eq!(pool.snapshot().worker.event_stream, None);
    let mut first = Subscriber::connect(&socket);
    let mut second = Subscriber::connect(&socket);
    let id = pool
        .handle()
        .launch(JobRequest::new().agent("patient"))
        .expect("room")
        .id();
    pool.handle().cancel(id).expect("live");
    for subscriber in [&mut first, &mut second] {
        let (_, seen) = subscriber.until(|event| {
            matches!(event, StreamEvent::SessionFinished { session_id, outcome, .. }
                if *session_id == id && matches!(outcome, SessionOutcome::Cancelled { .. }))
        });
        assert!(
            seen.iter().any(|line| matches!(
                &line.record,
                StreamRecord::Event(StreamEvent::SessionStarted { session_id, .. })
                    if *session_id == id
            )),
            "{seen:?}"
        );
    }
    // A subscriber that leaves is let go; the others go on.
    drop(first);
    let next = pool
        .handle()
        .launch(JobRequest::new().agent("ok"))
        .expect("room")
        .id();
    second.until(|event| {
        matches!(event, StreamEvent::SessionFinished { session_id, .. } if *session_id == next)
    });
    // The stream ends with the worker.
    drop(pool);
    let mut rest = String::new();
    while second
        .reader
        .read_line(&mut rest)
        .expect("the end of the stream, in time")
        > 0
    {}
}

#[test]
fn an_event_stream_file_that_cannot_be_opened_fails_run_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir").join("events.jsonl");
    let pool = AgentPool::builder()
        .agent("ok", completes())
        .socket_path(dir.path().join("w.sock"))
        .event_stream(&path, Duration::from_secs(1))
        .build()
        .expect("the path is only opened by run");
    let error = pool
        .run_until(async {})
        .expect_err("the file cannot be created");
    match &error {
        openrtc::RunError::EventStream { path: failed, .. } => assert_eq!(failed, &path),
        other => panic!("expected an event stream error, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "cannot open the event stream file {:?} for appending",
            path.display().to_string()
        )
    );
    assert!(
        !dir.path().join("w.sock").exists(),
        "nothing was left serving"
    );
}
