//! Builds [`PoolSnapshot`]s from the session cells and the process's own figures.
//!
//! A snapshot reads atomics and takes short cold-path locks; it never needs a worker thread,
//! so it answers while every worker thread is blocked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use openrtc_proto::{
    AgentSnapshot, EndedSessionSnapshot, MemSource, PoolSnapshot, SessionSnapshotRef, SessionState,
    SessionTotals, StallSnapshot, TenantConfigSnapshot, TenantSnapshot, WorkerSnapshot,
    WorkerThreadSnapshot,
};

use crate::pool::PoolShared;
use crate::session::SessionCell;
use crate::units::{NS_PER_MS, duration_ms};

/// The instant a snapshot describes: its clock reading, the worker header and how session
/// memory is figured. Both the owned [`PoolSnapshot`] and the socket's JSON are made from it.
struct Moment {
    now_ns: u64,
    draining: bool,
    memory: Memory,
    worker: WorkerSnapshot,
    cells: Vec<Arc<SessionCell>>,
    recently_ended: Vec<EndedSessionSnapshot>,
    tenants: BTreeMap<String, TenantSnapshot>,
    agents: BTreeMap<String, AgentSnapshot>,
    tenant_config: Option<TenantConfigSnapshot>,
}

fn moment(shared: &PoolShared) -> Moment {
    let clock = &shared.probe().clock;
    let now_ns = clock.now_ns();
    let draining = shared.is_draining();
    // The memory totals first, before this thread allocates anything for the snapshot.
    let memory_totals = crate::alloc::is_installed().then(|| {
        let (tracked, runtime) = crate::alloc::accounts::tracked_and_runtime_bytes();
        // Prewarmed shared state is charged to accounts of its own, and is runtime memory.
        let (ended, shared) = crate::alloc::accounts::ended_and_shared_bytes();
        (tracked, runtime.wrapping_add(shared), ended)
    });
    let mut worker = worker(shared, now_ns, draining);
    if let Some((tracked, runtime, ended)) = memory_totals {
        worker.mem_source = MemSource::Tracked;
        worker.tracked_bytes = tracked;
        worker.runtime_bytes = runtime;
        worker.ended_bytes = ended;
    }
    let cells = shared.live_sessions();
    let memory = if memory_totals.is_some() {
        Memory::Tracked
    } else {
        let active = u64::try_from(cells.len()).unwrap_or(u64::MAX).max(1);
        Memory::RssShare(worker.rss_bytes / active)
    };
    let recently_ended = shared
        .recently_ended()
        .into_iter()
        .map(|ended| {
            let mut row = EndedSessionSnapshot::new(
                crate::session::session_id(ended.key),
                ended.agent.to_string(),
                ended.tenant.to_string(),
                ended.outcome,
            );
            row.ended_at_unix_ms = clock.unix_ms(ended.ended_ns);
            row.duration_ms = ended.duration_ns / NS_PER_MS;
            row.busy_ns = ended.busy_ns;
            row.stall_count = ended.stall_count;
            row.mem_peak_bytes = ended.mem_peak_bytes;
            row.flight_recorder = ended.flight_recorder.to_vec();
            row
        })
        .collect();
    let tenants = tenants(shared);
    let agents = agents(shared);
    let tenant_config = shared.tenant_config.as_ref().map(|cell| cell.snapshot());
    Moment {
        now_ns,
        draining,
        memory,
        worker,
        cells,
        recently_ended,
        tenants,
        agents,
        tenant_config,
    }
}

/// Every tenant's figures; its heap is what its live sessions hold (tracked memory only), as
/// its heap budget reads it.
fn tenants(shared: &PoolShared) -> BTreeMap<String, TenantSnapshot> {
    use crate::admission::Limits as _;
    let now = tokio::time::Instant::now();
    shared
        .tenants
        .all()
        .into_iter()
        .map(|counters| {
            let name = &counters.name;
            let mut tenant = TenantSnapshot::default();
            tenant.sessions_count = counters.active.load(Ordering::Acquire);
            tenant.started_count = counters.started.load(Ordering::Relaxed);
            tenant.failed_count = counters.failed.load(Ordering::Relaxed);
            tenant.call_frames_missing_count = counters.call_frames_missing.load(Ordering::Relaxed);
            tenant.call_frames_dropped_count = counters.call_frames_dropped.load(Ordering::Relaxed);
            tenant.refusals = counters
                .refused
                .counts()
                .filter(|(_, count)| *count > 0)
                .collect();
            tenant.heap_live_bytes = counters.live_heap();
            let limits = shared.limits(&counters);
            tenant.max_sessions = limits.tenant_cap();
            tenant.max_heap_bytes = limits.tenant_heap_budget();
            tenant.session_memory_limit_bytes = limits.policy().session_memory_limit_bytes;
            tenant.isolation = limits
                .policy()
                .isolation
                .map(|isolation| isolation.as_str().to_owned());
            if let Some(budget) = shared.config.auto_isolation {
                let clock = &shared.probe().clock;
                let record = crate::lock(&counters.offences);
                let mut auto = openrtc_proto::AutoIsolationSnapshot::default();
                auto.isolated = record.is_isolated();
                auto.isolated_since_unix_ms =
                    record.isolated_since_ns().map(|ns| clock.unix_ms(ns));
                auto.release_in_ms = record
                    .release_due_ns(&budget)
                    .map(|due_ns| due_ns.saturating_sub(clock.now_ns()) / 1_000_000);
                auto.offences_count = u32::try_from(record.recent_count()).unwrap_or(u32::MAX);
                auto.offences_limit = budget.offences;
                auto.window_s = budget.window.as_secs();
                auto.moves_count = record.moves();
                tenant.auto_isolation = Some(auto);
            }
            tenant.breaker = {
                let mut breaker = crate::lock(&counters.breaker);
                breaker.sync(&counters, limits.breaker());
                breaker.snapshot(now)
            };
            (name.to_string(), tenant)
        })
        .collect()
}

/// Every registered agent's figures.
fn agents(shared: &PoolShared) -> BTreeMap<String, AgentSnapshot> {
    let config = shared.tenant_config.as_ref().map(|cell| cell.current());
    shared
        .agents()
        .map(|(name, counters)| {
            let mut agent = AgentSnapshot::default();
            agent.sessions_count = counters.active.load(Ordering::Acquire);
            agent.max_sessions = config.as_ref().and_then(|config| config.agent_cap(name));
            agent.refusals = counters
                .refused
                .counts()
                .filter(|(_, count)| *count > 0)
                .collect();
            (name.to_owned(), agent)
        })
        .collect()
}

/// The snapshot as plain owned data.
pub(crate) fn snapshot(shared: &PoolShared) -> PoolSnapshot {
    owned_snapshot(shared, moment(shared))
}

fn owned_snapshot(shared: &PoolShared, moment: Moment) -> PoolSnapshot {
    let clock = &shared.probe().clock;
    let mut snapshot = PoolSnapshot::default();
    snapshot.version = openrtc_proto::SNAPSHOT_VERSION;
    snapshot.taken_at_unix_ms = clock.unix_ms(moment.now_ns);
    snapshot.sessions = moment
        .cells
        .iter()
        .map(|cell| {
            let parts = RowParts::new(shared, cell);
            row(shared, cell, &parts, &moment).to_snapshot()
        })
        .collect();
    snapshot.worker = moment.worker;
    let blocking_now = snapshot
        .sessions
        .iter()
        .filter(|row| row.blocking_for_ms.is_some())
        .count();
    snapshot.worker.stalls_in_progress_count = u32::try_from(blocking_now).unwrap_or(u32::MAX);
    snapshot.recently_ended = moment.recently_ended;
    snapshot.tenants = moment.tenants;
    snapshot.agents = moment.agents;
    snapshot.tenant_config = moment.tenant_config;
    snapshot.calls = shared.calls.snapshot(crate::calls::Buckets::With);
    snapshot.totals_by_tenant_agent = shared.tallies.snapshot();
    snapshot
}

/// Writes the socket's answer to a snapshot request, `{"v":1,"type":"snapshot","snapshot":…}`,
/// straight from the session cells: the same document as serializing the owned snapshot in a
/// [`openrtc_proto::ResponseEnvelope`] (with `sessions` before `worker`, so the header can
/// count the stalls in progress among the rows it has just written), without first copying
/// every session's strings and metadata. Each row is the same [`SessionSnapshotRef`] the
/// owned snapshot copies its rows from.
pub(crate) fn write_snapshot_response(
    shared: &PoolShared,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    write_response(shared, &moment(shared), out)
}

fn write_response(
    shared: &PoolShared,
    moment: &Moment,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let blocking_now = std::cell::Cell::new(0_u32);
    let envelope = ResponseView {
        v: openrtc_proto::PROTOCOL_VERSION,
        kind: "snapshot",
        snapshot: SnapshotView {
            version: openrtc_proto::SNAPSHOT_VERSION,
            taken_at_unix_ms: shared.probe().clock.unix_ms(moment.now_ns),
            sessions: RowsView {
                shared,
                moment,
                blocking_now: &blocking_now,
            },
            worker: WorkerView {
                worker: &moment.worker,
                blocking_now: &blocking_now,
            },
            recently_ended: &moment.recently_ended,
            tenants: &moment.tenants,
            agents: &moment.agents,
            tenant_config: moment.tenant_config.as_ref(),
            calls: &shared.calls.snapshot(crate::calls::Buckets::With),
            totals_by_tenant_agent: &shared.tallies.snapshot(),
        },
    };
    serde_json::to_writer(out, &envelope)
}

#[derive(Serialize)]
struct ResponseView<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    snapshot: SnapshotView<'a>,
}

/// The JSON of [`PoolSnapshot`], field for field, rows first (a test checks they agree).
#[derive(Serialize)]
struct SnapshotView<'a> {
    version: u32,
    taken_at_unix_ms: u64,
    sessions: RowsView<'a>,
    worker: WorkerView<'a>,
    recently_ended: &'a [EndedSessionSnapshot],
    tenants: &'a BTreeMap<String, TenantSnapshot>,
    agents: &'a BTreeMap<String, AgentSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_config: Option<&'a TenantConfigSnapshot>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    calls: &'a BTreeMap<String, openrtc_proto::CallStatsSnapshot>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    totals_by_tenant_agent: &'a [openrtc_proto::TenantAgentTotals],
}

/// The header, with the count of stalls in progress taken from the rows written before it.
struct WorkerView<'a> {
    worker: &'a WorkerSnapshot,
    blocking_now: &'a std::cell::Cell<u32>,
}

impl Serialize for WorkerView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut worker = self.worker.clone();
        worker.stalls_in_progress_count = self.blocking_now.get();
        worker.serialize(serializer)
    }
}

/// The session rows, figured one by one as they are written.
struct RowsView<'a> {
    shared: &'a PoolShared,
    moment: &'a Moment,
    blocking_now: &'a std::cell::Cell<u32>,
}

impl Serialize for RowsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let moment = self.moment;
        let mut rows = serializer.serialize_seq(Some(moment.cells.len()))?;
        for cell in &moment.cells {
            let parts = RowParts::new(self.shared, cell);
            let row = row(self.shared, cell, &parts, moment);
            if row.blocking_for_ms.is_some() {
                self.blocking_now.set(self.blocking_now.get() + 1);
            }
            rows.serialize_element(&row)?;
        }
        rows.end()
    }
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
    worker.refusals = counters.refused.counts().collect();
    worker.stalls_total_count = shared.probe().stalls_total.load(Ordering::Relaxed);
    (worker.stall_duration_buckets, worker.stall_duration_sum_ns) =
        shared.probe().stall_histogram.read();
    worker.ended_busy_ns = load(&counters.ended_busy_ns);
    worker.stalls_last_minute_count = shared.stalls_last_minute.load(Ordering::Relaxed);
    worker.stalls_preempted_count = shared.stalls_preempted.load(Ordering::Relaxed);
    (worker.rss_bytes, worker.threads_count) = crate::os::resident_set_and_threads();
    worker.process_cpu_pct = f64::from_bits(shared.process_cpu_pct_bits.load(Ordering::Relaxed));
    worker.open_fds_count = crate::os::open_fd_count();
    worker.mem_source = MemSource::RssShare;
    worker.session_memory_limit_bytes = config.session_memory_limit_bytes;
    worker.memory_warn_bytes = config.memory_warn_bytes;
    worker.memory_limit_bytes = config.memory_limit_bytes;
    worker.shared_bytes = shared.shared_bytes();
    worker.consecutive_failures_count = shared.failure_budget.consecutive_failures();
    worker.consecutive_failure_limit = shared.failure_budget.limit();
    let log = shared.log();
    if let Some(sink) = &log.sink {
        worker.log_file = Some(sink.path().display().to_string());
        worker.log_records_written_count = sink.written_count();
        worker.log_records_dropped_count = sink.dropped_count();
    }
    worker.flight_recorder_bytes = log.recorder_bytes();
    worker.event_stream = config
        .event_stream
        .as_ref()
        .map(|stream| stream.path.display().to_string());
    worker.event_stream_dropped_count = shared.events.dropped_count();
    worker.tasks = shared.tasks.snapshot();
    let recent = &shared.recent;
    worker.tasks_ended_last_minute_count = recent.tasks_ended.load(Ordering::Relaxed);
    worker.tasks_failed_last_minute_count = recent.tasks_failed.load(Ordering::Relaxed);
    for (slot, count) in recent.calls_blocking.iter().enumerate() {
        let count = count.load(Ordering::Relaxed);
        if let Some(label) = shared.calls.label_of_slot(slot).filter(|_| count > 0) {
            // An application label named `other` shares its row with the overflow.
            *worker
                .calls_blocking_last_minute
                .entry(label.to_owned())
                .or_default() += count;
        }
    }
    worker.host_steal_pct = recent.host_steal_pct();
    worker.open_fds_limit_count = crate::os::open_fd_limit();
    worker.blocked_after_ms = duration_ms(config.blocked_after);
    worker.restart_after_ms = config.restart_after.map(duration_ms);
    worker.http_addr = shared.http_addr().map(|addr| addr.to_string());
    worker.media_addr = shared.media_addr().map(|addr| addr.to_string());
    #[cfg(feature = "livekit")]
    {
        worker.livekit = shared.livekit_state().map(|state| state.snapshot());
    }
    worker.worker_thread_states = worker_thread_states(shared);
    worker
}

/// Each claimed worker thread's state, read from its poll slot: idle, or polling a session
/// since when (and whether that is past `blocked_after`).
fn worker_thread_states(shared: &PoolShared) -> Vec<WorkerThreadSnapshot> {
    let probe = shared.probe();
    let now_raw = probe.clock.raw();
    let blocked_after_ms = duration_ms(shared.config.blocked_after);
    probe
        .claimed_slots()
        .iter()
        .map(|slot| {
            let mut state = WorkerThreadSnapshot::default();
            state.worker = slot.worker();
            state.tid = slot.tid();
            if let Some(poll) = slot.read() {
                let polling_for_ms =
                    probe.clock.nanos_between(poll.started_raw, now_raw) / NS_PER_MS;
                state.session_id = Some(crate::session::session_id(poll.session_key));
                if let Some(cell) = shared.session(poll.session_key) {
                    state.tenant = Some(cell.tenant().to_owned());
                    state.agent = Some(cell.agent().to_owned());
                }
                state.polling_for_ms = Some(polling_for_ms);
                state.blocked = polling_for_ms >= blocked_after_ms;
            }
            state
        })
        .collect()
}

/// Where session memory figures come from in one snapshot.
#[derive(Clone, Copy)]
enum Memory {
    /// Exact, from the tracking allocator's accounts.
    Tracked,
    /// Each session's equal share of RSS.
    RssShare(u64),
}

/// What a row borrows that the cell does not keep as it is written: the stall records in
/// their wire form.
struct RowParts {
    recent_stalls: Vec<StallSnapshot>,
    calls: BTreeMap<String, openrtc_proto::CallStatsSnapshot>,
    media: Option<openrtc_proto::CallMediaSnapshot>,
    /// An isolated session's process, and its child's last row of the session (whose
    /// figures, its probe's inside the child, the row shows).
    process: Option<(
        openrtc_proto::ProcessSnapshot,
        Option<openrtc_proto::SessionSnapshot>,
    )>,
}

impl RowParts {
    fn new(shared: &PoolShared, cell: &SessionCell) -> Self {
        if let Some(process) = cell.process() {
            let child = process.row();
            return Self {
                recent_stalls: child
                    .as_ref()
                    .map(|row| row.recent_stalls.clone())
                    .unwrap_or_default(),
                calls: child
                    .as_ref()
                    .map(|row| row.calls.clone())
                    .unwrap_or_default(),
                // A call's media health is measured here, where its audio comes and goes.
                media: cell.call_media_snapshot(),
                process: Some((process.snapshot(), child)),
            };
        }
        let clock = &shared.probe().clock;
        Self {
            process: None,
            calls: cell.calls_snapshot(),
            media: cell.call_media_snapshot(),
            recent_stalls: cell
                .recent_stalls()
                .into_iter()
                .map(|stall| {
                    let mut record = StallSnapshot::default();
                    record.duration_ns = stall.duration_ns;
                    record.started_at_unix_ms =
                        clock.unix_ms(stall.ended_ns.saturating_sub(stall.duration_ns));
                    record.ended_at_unix_ms = clock.unix_ms(stall.ended_ns);
                    record.worker = stall.worker;
                    record.class = stall.class;
                    record.syscall = stall.syscall.map(str::to_owned);
                    record.thread_time = stall.watched.map(crate::classify::WatchedTime::to_wire);
                    if stall.cause_pending {
                        record.pending.push(openrtc_proto::StallPart::Cause);
                    }
                    if stall.victims_pending {
                        record.pending.push(openrtc_proto::StallPart::Victims);
                    }
                    if let Some(cause) = stall.cause {
                        record.cause = Some(cause.summary.to_string());
                        record.frames = cause.stack.map_or_else(Vec::new, |stack| {
                            stack
                                .frames
                                .iter()
                                .map(|frame| {
                                    let mut snapshot = openrtc_proto::FrameSnapshot::default();
                                    snapshot.function.clone_from(&frame.function);
                                    snapshot.file.clone_from(&frame.file);
                                    snapshot.line = frame.line;
                                    snapshot.user =
                                        frame.origin == crate::stack::symbols::Origin::User;
                                    snapshot
                                })
                                .collect()
                        });
                        record.stack_note = cause.stack_note.map(|note| note.to_string());
                    }
                    record.victim_count = stall.victim_count;
                    record.victims = stall
                        .victims
                        .iter()
                        .map(|victim| {
                            let mut snapshot = openrtc_proto::VictimSnapshot::default();
                            snapshot.session_id = victim.session;
                            snapshot.delay_ns = victim.delay_ns;
                            snapshot
                        })
                        .collect();
                    record
                })
                .collect(),
        }
    }
}

/// One session's row, as both the owned snapshot and the socket's answer get it.
fn row<'a>(
    shared: &PoolShared,
    cell: &'a SessionCell,
    parts: &'a RowParts,
    moment: &Moment,
) -> SessionSnapshotRef<'a> {
    if let Some((process, child)) = &parts.process {
        return isolated_row(shared, cell, parts, moment, process, child.as_ref());
    }
    let clock = &shared.probe().clock;
    let now_ns = moment.now_ns;
    let totals = cell.busy_totals();
    let blocking_since_ns = cell.blocking_since_ns();
    let (delayed_by_stalls_ns, delayed_by_stalls_count) = cell.delayed_by_stalls();
    let slow = blocking_since_ns != 0 || now_ns < cell.slow_until_ns();
    let (mem_bytes, mem_peak_bytes, alloc_count) = match (moment.memory, cell.tracked_memory()) {
        (Memory::Tracked, Some(tracked)) => tracked,
        (Memory::Tracked, None) => (0, 0, 0),
        (Memory::RssShare(share), _) => (share, cell.note_rss_share(share), 0),
    };
    SessionSnapshotRef {
        id: cell.id(),
        agent: cell.agent(),
        tenant: cell.tenant(),
        metadata: cell.metadata(),
        started_at_unix_ms: clock.unix_ms(cell.started_ns()),
        duration_ms: now_ns.saturating_sub(cell.started_ns()) / NS_PER_MS,
        state: if slow {
            SessionState::Slow
        } else if moment.draining {
            SessionState::Draining
        } else {
            SessionState::Active
        },
        // Two decimals are all any view shows; shorter numbers make smaller snapshots.
        cpu_pct: (cell.cpu_pct() * 100.0).round() / 100.0,
        busy_ns: totals.busy_ns,
        poll_count: totals.poll_count,
        stall_count: cell.stall_count(),
        preempted_stall_count: cell.preempted_stall_count(),
        last_stall: parts.recent_stalls.last(),
        recent_stalls: &parts.recent_stalls,
        blocking_for_ms: (blocking_since_ns != 0)
            .then(|| now_ns.saturating_sub(blocking_since_ns) / NS_PER_MS),
        delayed_by_stalls_ns,
        delayed_by_stalls_count,
        mem_bytes,
        mem_peak_bytes,
        alloc_count,
        children_live_count: totals.children_live_count,
        children_finished_count: totals.children_finished_count,
        tasks: cell.tasks(),
        calls: &parts.calls,
        media: parts.media.as_ref(),
        process: None,
        livekit: cell.livekit_snapshot(),
    }
}

/// An isolated session's row: the worker's identity and state of the session, its child's
/// figures (zeros until the child's first row), and the process's own.
fn isolated_row<'a>(
    shared: &PoolShared,
    cell: &'a SessionCell,
    parts: &'a RowParts,
    moment: &Moment,
    process: &'a openrtc_proto::ProcessSnapshot,
    child: Option<&'a openrtc_proto::SessionSnapshot>,
) -> SessionSnapshotRef<'a> {
    let clock = &shared.probe().clock;
    let now_ns = moment.now_ns;
    let default = openrtc_proto::SessionSnapshot::default();
    let figures = child.unwrap_or(&default);
    SessionSnapshotRef {
        id: cell.id(),
        agent: cell.agent(),
        tenant: cell.tenant(),
        metadata: cell.metadata(),
        started_at_unix_ms: clock.unix_ms(cell.started_ns()),
        duration_ms: now_ns.saturating_sub(cell.started_ns()) / NS_PER_MS,
        state: if figures.state == SessionState::Slow {
            SessionState::Slow
        } else if moment.draining {
            SessionState::Draining
        } else {
            SessionState::Active
        },
        cpu_pct: figures.cpu_pct,
        busy_ns: figures.busy_ns,
        poll_count: figures.poll_count,
        stall_count: figures.stall_count,
        preempted_stall_count: figures.preempted_stall_count,
        last_stall: parts.recent_stalls.last(),
        recent_stalls: &parts.recent_stalls,
        blocking_for_ms: figures.blocking_for_ms,
        delayed_by_stalls_ns: figures.delayed_by_stalls_ns,
        delayed_by_stalls_count: figures.delayed_by_stalls_count,
        mem_bytes: figures.mem_bytes,
        mem_peak_bytes: figures.mem_peak_bytes,
        alloc_count: figures.alloc_count,
        children_live_count: figures.children_live_count,
        children_finished_count: figures.children_finished_count,
        tasks: figures.tasks,
        calls: &parts.calls,
        media: parts.media.as_ref(),
        process: Some(process),
        livekit: cell.livekit_snapshot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentPool, JobRequest, Session, agent_fn};

    /// A finished stall of the session, diagnosed and symbolized, that delayed `victim`.
    fn stall(victim: crate::SessionId) -> crate::session::StallRecord {
        use crate::stack::symbols::{Frame, Origin};
        crate::session::StallRecord {
            seq: 3,
            duration_ns: 42_000_000,
            ended_ns: 43_000_000,
            worker: 1,
            class: Some(openrtc_proto::StallClass::Sleep),
            syscall: Some("clock_nanosleep"),
            watched: Some(crate::classify::WatchedTime {
                watched_ns: 30_000_000,
                spent: crate::classify::ThreadTime {
                    on_cpu_ns: 1_000,
                    run_queue_ns: 2_000,
                },
                runnable_throughout: false,
            }),
            cause: Some(crate::session::StallCause {
                summary: "sleep in std::thread::sleep at src/agent.rs:42".into(),
                stack: Some(Arc::new(crate::stack::Stack {
                    frames: vec![Frame {
                        function: "agent::handle".into(),
                        file: Some("src/agent.rs".into()),
                        line: Some(42),
                        origin: Origin::User,
                    }],
                    top_user: Some(0),
                })),
                stack_note: None,
            }),
            cause_pending: false,
            victim_count: 1,
            victims: Arc::new([crate::session::Victim {
                session: victim,
                delay_ns: 7_000_000,
            }]),
            victims_pending: true,
        }
    }

    #[test]
    fn the_socket_json_is_the_owned_snapshot_field_for_field() {
        let pool = AgentPool::builder()
            .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
            .build()
            .expect("valid configuration");
        let handle = pool.handle();
        handle
            .launch(
                JobRequest::new()
                    .tenant("acme")
                    .metadata(serde_json::json!({"caller": "+1555", "tags": [1, 2]})),
            )
            .expect("queued");
        handle.launch(JobRequest::new()).expect("queued");
        handle
            .launch(JobRequest::new().tenant("globex"))
            .expect("queued");
        let shared = pool.shared();
        // Rows that differ in every part a row can have: metadata, a stall with its stack
        // and victim, a stall in progress, delays from others' stalls, and memory.
        let cells = shared.live_sessions();
        let (stalled, delayed, blocking) = (&cells[0], &cells[1], &cells[2]);
        stalled.push_stall(stall(delayed.id()));
        stalled.record_stall_counters();
        delayed.note_delayed_by_stall(7_000_000);
        delayed.note_rss_share(1 << 30);
        blocking.set_blocking_since_ns(1);
        // Tracked calls of the session and the worker, and a child task that panicked.
        let call = crate::calls::CallRecord {
            duration_us: 1_500,
            failed: true,
            slow: false,
            blocking: true,
        };
        let label = crate::calls::CallLabel::from("db.query");
        stalled.calls().record(&label, call);
        shared.calls.record(&label, call);
        let (child, _) = delayed.register_child();
        delayed.child_finished(child, crate::session::ChildEnd::Panicked);

        // Both ways of writing the same moment (the pool is not running, and one moment
        // fixes the clock and the memory figures, so every figure must agree).
        let moment = moment(shared);
        let mut json = Vec::new();
        write_response(shared, &moment, &mut json).expect("serializes");
        let owned = owned_snapshot(shared, moment);
        let parsed: openrtc_proto::ResponseEnvelope =
            serde_json::from_slice(&json).expect("a valid response");
        let openrtc_proto::Response::Snapshot { snapshot: served } = parsed.response else {
            panic!("a snapshot response");
        };
        assert_eq!(*served, owned);

        // And the figures are the ones set above, so the agreement is not of empty rows.
        let rows = &served.sessions;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].metadata["tags"][1], 2);
        assert_eq!(rows[1].metadata, serde_json::Value::Null);
        assert_eq!(rows[0].stall_count, 1);
        let last = rows[0].last_stall.as_ref().expect("a finished stall");
        assert_eq!(rows[0].recent_stalls, std::slice::from_ref(last));
        assert_eq!(last.syscall.as_deref(), Some("clock_nanosleep"));
        assert_eq!(last.frames[0].line, Some(42));
        assert!(last.frames[0].user);
        assert_eq!(last.victims[0].session_id, rows[1].id);
        assert_eq!(last.pending, [openrtc_proto::StallPart::Victims]);
        assert_eq!(rows[0].state, SessionState::Slow);
        assert_eq!(rows[0].calls["db.query"].blocking_count, 1);
        assert_eq!(served.calls["db.query"].failed_count, 1);
        assert_eq!(served.calls["db.query"].duration_sum_us, 1_500);
        assert_eq!(served.calls["db.query"].duration_buckets[1].count, 1);
        assert!(rows[0].calls["db.query"].duration_buckets.is_empty());
        let pairs: Vec<(&str, &str, u64)> = served
            .totals_by_tenant_agent
            .iter()
            .map(|entry| (&*entry.tenant, &*entry.agent, entry.totals.started_count))
            .collect();
        assert_eq!(
            pairs,
            [
                ("acme", "idle", 1),
                (JobRequest::DEFAULT_TENANT, "idle", 1),
                ("globex", "idle", 1)
            ]
        );
        assert_eq!(rows[1].tasks.panicked_count, 1);
        assert_eq!(served.worker.tasks.spawned_count, 1);
        assert_eq!(rows[1].delayed_by_stalls_count, 1);
        // The share of RSS counts only without the tracking allocator (a test of it in this
        // process may have marked it installed).
        if served.worker.mem_source == MemSource::RssShare {
            assert_eq!(rows[1].mem_peak_bytes, 1 << 30);
        }
        assert!(rows[2].blocking_for_ms.is_some());
        assert_eq!(rows[2].state, SessionState::Slow);
        assert_eq!(served.worker.stalls_in_progress_count, 1);
    }

    #[test]
    fn a_served_snapshot_reads_back_as_runtime_snapshot_s_rows() {
        let pool = AgentPool::builder()
            .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
            .build()
            .expect("valid configuration");
        let handle = pool.handle();
        handle
            .launch(JobRequest::new().metadata(serde_json::json!({"caller": "+1555"})))
            .expect("queued");
        let cells = pool.shared().live_sessions();
        cells[0].push_stall(stall(cells[0].id()));
        let mut json = Vec::new();
        write_snapshot_response(pool.shared(), &mut json).expect("serializes");
        let openrtc_proto::Response::Snapshot { snapshot: served } =
            serde_json::from_slice::<openrtc_proto::ResponseEnvelope>(&json)
                .expect("a valid response")
                .response
        else {
            panic!("a snapshot response");
        };
        let mut owned = handle.runtime_snapshot();
        // Taken at another instant: only the durations and the share of RSS may move.
        for (owned_row, served_row) in owned.sessions.iter_mut().zip(&served.sessions) {
            owned_row.duration_ms = served_row.duration_ms;
            owned_row.mem_bytes = served_row.mem_bytes;
            owned_row.mem_peak_bytes = served_row.mem_peak_bytes;
        }
        assert_eq!(served.sessions, owned.sessions);
        assert_eq!(owned.sessions[0].recent_stalls.len(), 1);
    }
}
