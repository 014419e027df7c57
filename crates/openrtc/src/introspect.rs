//! Builds [`PoolSnapshot`]s from the session cells and the process's own figures.
//!
//! A snapshot reads atomics and takes short cold-path locks; it never needs a worker thread,
//! so it answers while every worker thread is blocked.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use openrtc_proto::{
    EndedSessionSnapshot, MemSource, PoolSnapshot, SessionSnapshot, SessionState, SessionTotals,
    StallSnapshot, WorkerSnapshot,
};

use crate::pool::PoolShared;
use crate::session::SessionCell;

const NS_PER_MS: u64 = 1_000_000;

pub(crate) fn snapshot(shared: &PoolShared) -> PoolSnapshot {
    let clock = &shared.probe().clock;
    let now_ns = clock.now_ns();
    let draining = shared.is_draining();
    // The memory totals first, before this thread allocates anything for the snapshot.
    let memory_totals = crate::alloc::is_installed().then(|| {
        let (tracked, runtime) = crate::alloc::accounts::tracked_and_runtime_bytes();
        (tracked, runtime, crate::alloc::accounts::ended_bytes())
    });
    let mut snapshot = PoolSnapshot::default();
    snapshot.version = openrtc_proto::SNAPSHOT_VERSION;
    snapshot.taken_at_unix_ms = clock.unix_ms(now_ns);
    snapshot.worker = worker(shared, now_ns, draining);
    if let Some((tracked, runtime, ended)) = memory_totals {
        snapshot.worker.mem_source = MemSource::Tracked;
        snapshot.worker.tracked_bytes = tracked;
        snapshot.worker.runtime_bytes = runtime;
        snapshot.worker.ended_bytes = ended;
    }
    let cells = shared.live_sessions();
    let memory = if memory_totals.is_some() {
        Memory::Tracked
    } else {
        let active = u64::try_from(cells.len()).unwrap_or(u64::MAX).max(1);
        Memory::RssShare(snapshot.worker.rss_bytes / active)
    };
    snapshot.sessions = cells
        .iter()
        .map(|cell| session(shared, cell, now_ns, draining, memory))
        .collect();
    let blocking_now = snapshot
        .sessions
        .iter()
        .filter(|row| row.blocking_for_ms.is_some())
        .count();
    snapshot.worker.stalls_in_progress_count = u32::try_from(blocking_now).unwrap_or(u32::MAX);
    snapshot.recently_ended = shared
        .recently_ended()
        .into_iter()
        .map(|ended| {
            let mut row = EndedSessionSnapshot::new(
                crate::SessionId::new(ended.key).to_string(),
                ended.agent.to_string(),
                ended.tenant.to_string(),
                ended.outcome,
            );
            row.ended_at_unix_ms = clock.unix_ms(ended.ended_ns);
            row.duration_ms = ended.duration_ns / NS_PER_MS;
            row.busy_ns = ended.busy_ns;
            row.stall_count = ended.stall_count;
            row.mem_peak_bytes = ended.mem_peak_bytes;
            row
        })
        .collect();
    snapshot
}

fn worker(shared: &PoolShared, now_ns: u64, draining: bool) -> WorkerSnapshot {
    let config = &shared.config;
    let counters = &shared.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut worker = WorkerSnapshot::default();
    worker.name.clone_from(&config.worker_name);
    worker.pid = std::process::id();
    worker.uptime_ms = match shared.runtime_started_ns() {
        0 => 0,
        started_ns => now_ns.saturating_sub(started_ns) / NS_PER_MS,
    };
    worker.worker_threads = u32::try_from(config.worker_threads).unwrap_or(u32::MAX);
    worker.active_sessions = shared.active_sessions();
    worker.max_sessions = config.max_concurrent_sessions;
    worker.draining = draining;
    worker.slow_threshold_ms = duration_ms(config.slow_session_threshold);
    worker.slow_hold_ms = duration_ms(config.slow_status_hold);
    worker.cpu_window_ms = duration_ms(crate::watchdog::CPU_WINDOW);
    let mut totals = SessionTotals::default();
    totals.started_count = load(&counters.started);
    totals.completed_count = load(&counters.completed);
    totals.failed_count = load(&counters.failed);
    totals.panicked_count = load(&counters.panicked);
    totals.cancelled_count = load(&counters.cancelled);
    totals.killed_count = load(&counters.killed);
    worker.totals = totals;
    worker.refusals = BTreeMap::from([
        ("draining".to_owned(), load(&counters.refused_draining)),
        (
            "worker_full".to_owned(),
            load(&counters.refused_worker_full),
        ),
        (
            "unknown_agent".to_owned(),
            load(&counters.refused_unknown_agent),
        ),
        ("stopped".to_owned(), load(&counters.refused_stopped)),
    ]);
    worker.stalls_total_count = shared.probe().stalls_total.load(Ordering::Relaxed);
    worker.stalls_last_minute_count = shared.stalls_last_minute.load(Ordering::Relaxed);
    worker.rss_bytes = crate::os::resident_set_bytes();
    worker.process_cpu_pct = f64::from_bits(shared.process_cpu_pct_bits.load(Ordering::Relaxed));
    worker.threads_count = crate::os::thread_count();
    worker.open_fds_count = crate::os::open_fd_count();
    worker.mem_source = MemSource::RssShare;
    worker.session_memory_limit_bytes = config.session_memory_limit_bytes;
    worker.memory_warn_bytes = config.memory_warn_bytes;
    worker.memory_limit_bytes = config.memory_limit_bytes;
    worker
}

/// Where session memory figures come from in one snapshot.
#[derive(Clone, Copy)]
enum Memory {
    /// Exact, from the tracking allocator's accounts.
    Tracked,
    /// Each session's equal share of RSS.
    RssShare(u64),
}

fn session(
    shared: &PoolShared,
    cell: &SessionCell,
    now_ns: u64,
    draining: bool,
    memory: Memory,
) -> SessionSnapshot {
    let clock = &shared.probe().clock;
    let totals = cell.busy_totals();
    let blocking_since_ns = cell.blocking_since_ns();
    let slow = blocking_since_ns != 0 || now_ns < cell.slow_until_ns();
    let mut row = SessionSnapshot::default();
    row.id = cell.id().to_string();
    row.agent = cell.agent().to_owned();
    row.tenant = cell.tenant().to_owned();
    row.metadata = cell.metadata().clone();
    row.started_at_unix_ms = clock.unix_ms(cell.started_ns());
    row.duration_ms = now_ns.saturating_sub(cell.started_ns()) / NS_PER_MS;
    row.state = if slow {
        SessionState::Slow
    } else if draining {
        SessionState::Draining
    } else {
        SessionState::Active
    };
    // Two decimals are all any view shows; shorter numbers make smaller snapshots.
    row.cpu_pct = (cell.cpu_pct() * 100.0).round() / 100.0;
    row.busy_ns = totals.busy_ns;
    row.poll_count = totals.poll_count;
    row.stall_count = cell.stall_count();
    row.recent_stalls = cell
        .recent_stalls()
        .into_iter()
        .map(|stall| {
            let mut record = StallSnapshot::default();
            record.duration_ns = stall.duration_ns;
            record.ended_at_unix_ms = clock.unix_ms(stall.ended_ns);
            record.worker = stall.worker;
            record
        })
        .collect();
    row.last_stall = row.recent_stalls.last().cloned();
    match (memory, cell.tracked_memory()) {
        (Memory::Tracked, Some((live, peak, allocs))) => {
            row.mem_bytes = live;
            row.mem_peak_bytes = peak;
            row.alloc_count = allocs;
        }
        (Memory::Tracked, None) => {}
        (Memory::RssShare(share), _) => {
            row.mem_bytes = share;
            row.mem_peak_bytes = cell.note_rss_share(share);
        }
    }
    row.blocking_for_ms =
        (blocking_since_ns != 0).then(|| now_ns.saturating_sub(blocking_since_ns) / NS_PER_MS);
    row.children_live_count = totals.children_live_count;
    row.children_finished_count = totals.children_finished_count;
    row
}

/// Bytes as MiB with one decimal, for log lines and reasons.
pub(crate) fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn duration_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
