//! Hand-built pool snapshots shared by the rendering, key handling and binary tests.

use std::path::PathBuf;

use openrtc_cli::discover::{PollOutcome, SurveyRound, WorkerPoll};
use openrtc_proto::{
    AgentSnapshot, BreakerState, CallStatsSnapshot, CancelReason, EndedSessionSnapshot,
    FrameSnapshot, KillReason, LogRecordSnapshot, MemSource, PoolSnapshot, RefusalReason,
    SNAPSHOT_VERSION, SessionOutcome, SessionSnapshot, SessionState, StallSnapshot,
    TenantConfigSnapshot, TenantSnapshot, VictimSnapshot,
};

/// When every fixture snapshot was taken, in milliseconds since the Unix epoch.
pub(crate) const TAKEN_AT_UNIX_MS: u64 = 1_700_000_000_000;

/// A live session with the fields the table shows.
pub(crate) fn session(
    id: &str,
    agent: &str,
    tenant: &str,
    duration_ms: u64,
    cpu_pct: f64,
    stall_count: u64,
) -> SessionSnapshot {
    let mut session = SessionSnapshot::default();
    session.id = id.parse().expect("a session id");
    session.agent = agent.to_owned();
    session.tenant = tenant.to_owned();
    session.duration_ms = duration_ms;
    session.started_at_unix_ms = TAKEN_AT_UNIX_MS - duration_ms;
    session.cpu_pct = cpu_pct;
    session.stall_count = stall_count;
    session.poll_count = duration_ms / 10;
    session.busy_ns = duration_ms * 1_000;
    session.mem_bytes = (1 + duration_ms / 10_000) * 1_048_576;
    session.mem_peak_bytes = session.mem_bytes * 3 / 2;
    session.metadata = serde_json::json!({ "room": id });
    session
}

/// An ended session.
pub(crate) fn ended(
    id: &str,
    agent: &str,
    tenant: &str,
    outcome: SessionOutcome,
    duration_ms: u64,
) -> EndedSessionSnapshot {
    let mut ended = EndedSessionSnapshot::new(
        id.parse().expect("a session id"),
        agent.to_owned(),
        tenant.to_owned(),
        outcome,
    );
    ended.duration_ms = duration_ms;
    ended.ended_at_unix_ms = TAKEN_AT_UNIX_MS - 2_500;
    ended
}

/// An empty worker named `name` with process id `pid` and sensible settings.
pub(crate) fn idle_worker(name: &str, pid: u32) -> PoolSnapshot {
    let mut snapshot = PoolSnapshot::default();
    snapshot.version = SNAPSHOT_VERSION;
    snapshot.taken_at_unix_ms = TAKEN_AT_UNIX_MS;
    let worker = &mut snapshot.worker;
    worker.name = name.to_owned();
    worker.pid = pid;
    worker.uptime_ms = 5_000;
    worker.worker_threads = 2;
    worker.max_sessions = 1000;
    worker.slow_threshold_ms = 100;
    worker.slow_hold_ms = 2_000;
    worker.cpu_window_ms = 1_000;
    worker.rss_bytes = 12 * 1024 * 1024;
    worker.threads_count = 5;
    worker.open_fds_count = 11;
    snapshot
}

/// A stall of `duration_ms` that ended `ago_ms` before the snapshot, on worker thread
/// `thread`.
pub(crate) fn stall(duration_ms: u64, ago_ms: u64, thread: u32) -> StallSnapshot {
    let mut stall = StallSnapshot::default();
    stall.duration_ns = duration_ms * 1_000_000;
    stall.ended_at_unix_ms = TAKEN_AT_UNIX_MS - ago_ms;
    stall.worker = thread;
    stall
}

/// A frame of a captured stack.
fn frame(function: &str, file: Option<&str>, line: Option<u32>, user: bool) -> FrameSnapshot {
    let mut frame = FrameSnapshot::default();
    frame.function = function.into();
    frame.file = file.map(Into::into);
    frame.line = line;
    frame.user = user;
    frame
}

/// A session delayed by a stall.
fn victim(session_id: &str, delay_ms: u64) -> VictimSnapshot {
    let mut victim = VictimSnapshot::default();
    victim.session_id = session_id.parse().expect("a session id");
    victim.delay_ns = delay_ms * 1_000_000;
    victim
}

/// A busy worker: four sessions, one of them blocking a thread right now, six recently ended
/// (one more than a block lists), refusals and stalls.
pub(crate) fn busy_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("demo", 4242);
    let worker = &mut snapshot.worker;
    worker.uptime_ms = 62_000;
    worker.active_sessions = 4;
    worker.totals.started_count = 40;
    worker.totals.completed_count = 20;
    worker.totals.failed_count = 3;
    worker.totals.panicked_count = 1;
    worker.totals.cancelled_count = 2;
    worker.totals.killed_count = 0;
    worker.refusals.insert(RefusalReason::WorkerFull, 5);
    worker.refusals.insert(RefusalReason::Draining, 0);
    worker.stalls_total_count = 7;
    worker.stalls_in_progress_count = 1;
    worker.stalls_last_minute_count = 3;
    worker.rss_bytes = 35_756_442;
    worker.process_cpu_pct = 112.5;
    worker.threads_count = 9;
    worker.open_fds_count = 23;
    worker.mem_source = MemSource::Tracked;
    worker.tracked_bytes = 30_408_704;
    worker.runtime_bytes = 4_299_161;
    worker.ended_bytes = 209_715;
    worker.session_memory_limit_bytes = Some(64 * 1_048_576);

    let mut slow = session("s-2", "llm", "globex", 12_340, 97.25, 6);
    slow.state = SessionState::Slow;
    slow.blocking_for_ms = Some(230);
    let mut diagnosed = stall(180, 1_000, 1);
    diagnosed.class = Some(openrtc_proto::StallClass::Io);
    diagnosed.syscall = Some("recvfrom".into());
    diagnosed.cause = Some(
        "io in <std::net::tcp::TcpStream as std::io::Read>::read at src/llm/cache.rs:88 on tcp 127.0.0.1:5432"
            .into(),
    );
    diagnosed.frames = vec![
        frame("__libc_recv", None, None, false),
        frame(
            "std::sys::net::connection::socket::Socket::recv_with_flags",
            Some("library/std/src/sys/net/connection/socket.rs"),
            Some(301),
            false,
        ),
        frame(
            "<std::net::tcp::TcpStream as std::io::Read>::read",
            Some("library/std/src/net/tcp.rs"),
            Some(710),
            false,
        ),
        frame(
            "llm::cache::lookup",
            Some("src/llm/cache.rs"),
            Some(88),
            true,
        ),
        frame(
            "<llm::Agent as openrtc::agent::Agent>::run::{{closure}}",
            Some("src/llm/mod.rs"),
            Some(41),
            true,
        ),
    ];
    diagnosed.victim_count = 3;
    diagnosed.victims = vec![victim("s-1", 170), victim("s-10", 95)];
    slow.recent_stalls = vec![stall(120, 9_000, 0), diagnosed];
    slow.last_stall = slow.recent_stalls.last().cloned();
    slow.delayed_by_stalls_ns = 310_000_000;
    slow.delayed_by_stalls_count = 2;
    slow.children_live_count = 2;
    slow.children_finished_count = 5;
    slow.alloc_count = 48_213;
    slow.mem_bytes = 9 * 1_048_576;
    slow.mem_peak_bytes = 13 * 1_048_576;
    slow.metadata = serde_json::json!({ "room": "s-2", "caller": "+1 555 0100", "lang": "en" });
    snapshot.sessions = vec![
        session("s-1", "echo", "acme", 61_000, 1.5, 0),
        slow,
        session("s-10", "echo", "acme", 3_050, 1.5, 1),
        session("s-11", "transcriber", "initech", 800, 12.0, 0),
    ];
    snapshot.recently_ended = vec![
        ended(
            "s-9",
            "echo",
            "acme",
            SessionOutcome::Failed {
                error: "peer hung up: connection reset".into(),
            },
            4_200,
        ),
        ended(
            "s-8",
            "llm",
            "globex",
            SessionOutcome::Panicked {
                message: "index out of bounds\nat src/llm.rs:12".into(),
                location: None,
            },
            950,
        ),
        ended(
            "s-7",
            "echo",
            "acme",
            SessionOutcome::Cancelled {
                reason: CancelReason::Operator,
            },
            30_000,
        ),
        ended("s-6", "echo", "initech", SessionOutcome::Completed, 15_500),
        ended(
            "s-5",
            "transcriber",
            "acme",
            SessionOutcome::Killed {
                reason: KillReason::Operator,
            },
            7_000,
        ),
        ended("s-4", "echo", "acme", SessionOutcome::Completed, 100),
    ];
    snapshot
}

/// A worker draining its last sessions after refusing launches.
pub(crate) fn draining_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("edge-eu.1", 77);
    let worker = &mut snapshot.worker;
    worker.uptime_ms = (3 * 86_400 + 5 * 3_600) * 1_000;
    worker.worker_threads = 1;
    worker.active_sessions = 2;
    worker.max_sessions = 50;
    worker.draining = true;
    worker.totals.started_count = 1_204;
    worker.totals.completed_count = 1_200;
    worker.totals.cancelled_count = 2;
    worker.refusals.insert(RefusalReason::Draining, 31);
    worker.refusals.insert(RefusalReason::UnknownAgent, 2);
    worker.rss_bytes = 1_288_490_188;
    let mut first = session("s-1203", "echo", "acme", 2_000_000, 0.4, 0);
    first.state = SessionState::Draining;
    let mut second = session("s-1204", "echo", "", 45_000, 3.0, 2);
    second.state = SessionState::Draining;
    snapshot.sessions = vec![first, second];
    snapshot
}

/// The socket path a worker named `name` with process id `pid` listens on in tests.
pub(crate) fn socket_of(name: &str, pid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/1000/openrtc/{name}-{pid}.sock"))
}

/// A survey round in which every given worker answered with its snapshot, at `at_unix_ms`.
pub(crate) fn round_of(snapshots: &[PoolSnapshot], at_unix_ms: u64) -> SurveyRound {
    SurveyRound {
        polls: snapshots
            .iter()
            .map(|snapshot| WorkerPoll {
                socket: socket_of(&snapshot.worker.name, snapshot.worker.pid),
                outcome: PollOutcome::Snapshot(Box::new(snapshot.clone())),
            })
            .collect(),
        directory_error: None,
        finished_at_unix_ms: at_unix_ms,
    }
}

/// A worker with `count` echo sessions `s-1` … `s-<count>`, the later ones busier and
/// younger, spread over three tenants.
pub(crate) fn crowded_worker(count: u64) -> PoolSnapshot {
    let mut snapshot = idle_worker("crowd", 99);
    snapshot.worker.active_sessions = u32::try_from(count).unwrap_or(u32::MAX);
    snapshot.worker.mem_source = MemSource::Tracked;
    for number in 1..=count {
        let tenant = ["acme", "globex", "initech"][usize::try_from(number % 3).unwrap_or(0)];
        #[allow(clippy::cast_precision_loss)]
        let cpu = number as f64 / 10.0;
        snapshot.sessions.push(session(
            &format!("s-{number}"),
            "echo",
            tenant,
            (count + 1 - number) * 1_000,
            cpu,
            number % 4,
        ));
    }
    snapshot
}

/// A worker whose one session blocks its thread in a sleep, with a stack as long as a real
/// one: generic agent frames with long paths.
pub(crate) fn blocker_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("demo", 4242);
    snapshot.worker.active_sessions = 1;
    snapshot.worker.mem_source = MemSource::Tracked;
    let mut blocked = session("s-8", "blocker", "globex", 13_000, 0.0, 3);
    blocked.state = SessionState::Slow;
    let mut sleep = stall(300, 400, 1);
    sleep.class = Some(openrtc_proto::StallClass::Sleep);
    sleep.cause = Some(
        "sleep in std::thread::functions::sleep at examples/demo/src/agents/blocker.rs:28".into(),
    );
    sleep.frames = vec![
        frame(
            "std::thread::functions::sleep",
            Some("library/std/src/thread/functions.rs"),
            Some(107),
            false,
        ),
        frame(
            "<openrtc_demo::agents::blocker::Blocker as openrtc::agent::Agent>::run::{{closure}}",
            Some("examples/demo/src/agents/blocker.rs"),
            Some(28),
            true,
        ),
        frame(
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            Some("library/core/src/future/future.rs"),
            Some(133),
            false,
        ),
    ];
    blocked.recent_stalls = vec![sleep];
    blocked.last_stall = blocked.recent_stalls.last().cloned();
    snapshot.sessions = vec![blocked];
    snapshot
}

/// A worker whose one session tracks calls (one label blocked a worker thread, one failed)
/// and has child tasks that completed, panicked and were cancelled.
pub(crate) fn calls_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("demo", 4242);
    snapshot.worker.active_sessions = 1;
    snapshot.worker.mem_source = MemSource::Tracked;
    let mut caller = session("s-5", "caller", "acme", 40_000, 3.5, 1);
    caller.tasks.spawned_count = 9;
    caller.tasks.running_count = 2;
    caller.tasks.completed_count = 4;
    caller.tasks.panicked_count = 1;
    caller.tasks.failed_count = 1;
    caller.tasks.cancelled_count = 2;
    let call = |count, failed_count, slow_count, blocking_count, p95_us, max_us| {
        let mut stats = CallStatsSnapshot::default();
        stats.count = count;
        stats.failed_count = failed_count;
        stats.slow_count = slow_count;
        stats.blocking_count = blocking_count;
        stats.p50_us = p95_us / 2;
        stats.p95_us = p95_us;
        stats.p99_us = max_us;
        stats.max_us = max_us;
        stats
    };
    caller.calls = [
        ("llm.openai", call(120, 0, 3, 0, 1_900_000, 2_600_000)),
        ("db.query", call(340, 0, 0, 2, 45_000, 180_000)),
        ("tts.cartesia", call(118, 4, 0, 0, 350_000, 900_000)),
        ("cache.get", call(800, 0, 0, 0, 420, 950)),
        ("stt.deepgram", call(40, 0, 0, 0, 80_000, 120_000)),
    ]
    .into_iter()
    .map(|(name, stats)| (name.to_owned(), stats))
    .collect();
    snapshot.sessions = vec![caller];
    snapshot
}

/// A worker whose one session had a short poll stretched past the threshold by a busy host
/// (class `preempted`), the newest stall's victims still reporting in.
pub(crate) fn preempted_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("demo", 4242);
    snapshot.worker.active_sessions = 1;
    snapshot.worker.mem_source = MemSource::Tracked;
    snapshot.worker.stalls_total_count = 1;
    snapshot.worker.stalls_preempted_count = 1;
    let mut row = session("s-3", "echo", "acme", 8_000, 1.0, 1);
    row.preempted_stall_count = 1;
    let mut late = stall(84, 200, 0);
    late.class = Some(openrtc_proto::StallClass::Preempted);
    late.cause = Some("preempted in openrtc_demo::agents::echo::mix at src/echo.rs:40".into());
    let mut time = openrtc_proto::ThreadTimeSnapshot::default();
    time.watched_ns = 76_000_000;
    time.on_cpu_ns = 12_000_000;
    time.run_queue_ns = 64_000_000;
    late.thread_time = Some(time);
    late.pending = vec![openrtc_proto::StallPart::Victims];
    row.recent_stalls = vec![late];
    row.last_stall = row.recent_stalls.last().cloned();
    snapshot.sessions = vec![row];
    snapshot
}

/// One mebibyte, for the tenant figures.
const MIB: u64 = 1_048_576;

/// A tenant running `sessions` sessions under an optional cap, holding `heap_mib` MiB.
fn tenant(sessions: u32, max_sessions: Option<u32>, heap_mib: u64) -> TenantSnapshot {
    let mut tenant = TenantSnapshot::default();
    tenant.sessions_count = sessions;
    tenant.max_sessions = max_sessions;
    tenant.heap_live_bytes = heap_mib * MIB;
    tenant.breaker.window_ms = 60_000;
    tenant.breaker.cooldown_ms = 30_000;
    tenant
}

/// A worker hosting four tenants: `acme` with its breaker open (retry in 24 s, 3 of 5
/// failed), `beta` half-open with one probe, `gamma` closed at its session cap and refused
/// for it, `delta` without a breaker; a tenant config whose last reload failed, 180 MiB of
/// prewarmed shared state, and two agent failures in a row.
pub(crate) fn tenant_worker() -> PoolSnapshot {
    let mut snapshot = idle_worker("edge-us.2", 5151);
    let worker = &mut snapshot.worker;
    worker.uptime_ms = 3_600_000;
    worker.active_sessions = 6;
    worker.max_sessions = 100;
    worker.mem_source = MemSource::Tracked;
    worker.rss_bytes = 310 * MIB;
    worker.tracked_bytes = 262 * MIB;
    worker.runtime_bytes = 196 * MIB;
    worker.shared_bytes = Some(180 * MIB);
    worker.totals.started_count = 41;
    worker.totals.completed_count = 28;
    worker.totals.failed_count = 7;
    worker.consecutive_failures_count = 2;
    worker.consecutive_failure_limit = Some(5);
    for reason in RefusalReason::ALL {
        worker.refusals.insert(reason, 0);
    }
    worker.refusals.insert(RefusalReason::BreakerOpen, 3);
    worker.refusals.insert(RefusalReason::TenantCap, 12);

    let mut acme = tenant(1, Some(10), 12);
    acme.max_heap_bytes = Some(64 * MIB);
    acme.session_memory_limit_bytes = Some(16 * MIB);
    acme.started_count = 20;
    acme.failed_count = 5;
    acme.refusals.insert(RefusalReason::BreakerOpen, 3);
    acme.breaker.state = BreakerState::Open;
    acme.breaker.window_samples_count = 5;
    acme.breaker.window_failures_count = 3;
    acme.breaker.retry_after_ms = Some(23_400);
    acme.breaker.opened_count = 2;
    let mut beta = tenant(1, None, 4);
    beta.started_count = 6;
    beta.failed_count = 2;
    beta.breaker.state = BreakerState::HalfOpen;
    beta.breaker.probes_in_flight_count = 1;
    beta.breaker.cooldown_ms = 60_000;
    beta.breaker.opened_count = 1;
    let mut gamma = tenant(3, Some(3), 40);
    gamma.max_heap_bytes = Some(64 * MIB);
    gamma.started_count = 14;
    gamma.refusals.insert(RefusalReason::TenantCap, 12);
    gamma.breaker.window_samples_count = 14;
    let mut delta = tenant(1, None, 2);
    delta.started_count = 1;
    delta.breaker.state = BreakerState::Disabled;
    snapshot.tenants = [
        ("acme", acme),
        ("beta", beta),
        ("gamma", gamma),
        ("delta", delta),
    ]
    .into_iter()
    .map(|(name, tenant)| (name.to_owned(), tenant))
    .collect();

    let mut echo = AgentSnapshot::default();
    echo.sessions_count = 5;
    echo.max_sessions = Some(50);
    let mut llm = AgentSnapshot::default();
    llm.sessions_count = 1;
    llm.refusals.insert(RefusalReason::AgentCap, 0);
    snapshot.agents = [("echo".to_owned(), echo), ("llm".to_owned(), llm)]
        .into_iter()
        .collect();

    let mut config = TenantConfigSnapshot::default();
    config.path = "/etc/openrtc/tenants.toml".into();
    config.version = "3f9a1c2e8b7d6a50".into();
    config.loaded_at_unix_ms = TAKEN_AT_UNIX_MS - 600_000;
    config.reloads_count = 2;
    config.last_error = Some("line 12: max_sessions: expected an integer".into());
    config.last_error_at_unix_ms = Some(TAKEN_AT_UNIX_MS - 30_000);
    snapshot.tenant_config = Some(config);

    snapshot.sessions = vec![
        session("s-30", "echo", "acme", 400_000, 2.0, 0),
        session("s-38", "llm", "beta", 4_000, 8.5, 0),
        session("s-35", "echo", "gamma", 90_000, 1.0, 0),
        session("s-36", "echo", "gamma", 80_000, 1.2, 0),
        session("s-37", "echo", "gamma", 70_000, 0.9, 0),
        session("s-41", "echo", "delta", 1_000, 0.3, 0),
    ];
    snapshot
}

/// A record a session logged `ago_ms` milliseconds (and a few microseconds) before the
/// snapshot.
pub(crate) fn log_record(
    ago_ms: u64,
    level: &str,
    target: &str,
    message: &str,
) -> LogRecordSnapshot {
    let mut record = LogRecordSnapshot::default();
    record.at_unix_us = (TAKEN_AT_UNIX_MS - ago_ms) * 1_000 + 417;
    record.level = level.to_owned();
    record.target = target.to_owned();
    record.message = message.to_owned();
    record
}

/// What an echo session logged in its last seconds before a peer hung up on it, oldest first:
/// it joined, then `frames` DEBUG frame records, a jitter warning, a failed send, and the
/// runtime's record of its failure (long enough to wrap on an 80-column screen).
pub(crate) fn hung_up_records(frames: u64) -> Vec<LogRecordSnapshot> {
    let mut records = vec![log_record(
        9_000,
        "INFO",
        "echo",
        "joined room room=s-9 codec=opus",
    )];
    for frame in 0..frames {
        records.push(log_record(
            8_000 - frame * 100,
            "DEBUG",
            "echo",
            &format!("frame in seq={} bytes=960", 5_120 + frame),
        ));
    }
    records.push(log_record(
        3_400,
        "WARN",
        "echo",
        "jitter buffer underrun lost_ms=40 peer=203.0.113.7:40000",
    ));
    records.push(log_record(
        2_900,
        "WARN",
        "echo",
        "send failed, retrying error=Broken pipe (os error 32) attempt=2",
    ));
    let mut failed = log_record(
        2_500,
        "ERROR",
        "openrtc::session",
        "session failed error=peer hung up: connection reset duration_ms=4200 \
         busy_ms=12 stalls=0 peak_bytes=1572864",
    );
    failed.event = Some("session_end".into());
    records.push(failed);
    records
}

/// The busy worker writing a log file that dropped records, its flight recorders holding
/// 38.5 KiB, and its failed and panicked ended sessions carrying what they logged last.
pub(crate) fn logging_worker() -> PoolSnapshot {
    let mut snapshot = busy_worker();
    let worker = &mut snapshot.worker;
    worker.log_file = Some("/var/log/openrtc/demo.jsonl".into());
    worker.log_records_written_count = 48_213;
    worker.log_records_dropped_count = 12;
    worker.flight_recorder_bytes = 39_424;
    snapshot.recently_ended[0].flight_recorder = hung_up_records(24);
    snapshot.recently_ended[1].flight_recorder = vec![
        log_record(1_200, "INFO", "llm", "prompt sent tokens=812"),
        log_record(
            1_100,
            "ERROR",
            "openrtc::session",
            "session panicked message=index out of bounds\nat src/llm.rs:12",
        ),
    ];
    snapshot
}
