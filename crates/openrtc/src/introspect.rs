//! Builds [`PoolSnapshot`]s from the session cells and the process's own figures.
//!
//! A snapshot reads atomics and takes short cold-path locks; it never needs a worker thread,
//! so it answers while every worker thread is blocked.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use openrtc_proto::{
    EndedSessionSnapshot, MemSource, PoolSnapshot, SessionSnapshot, SessionState, SessionTotals,
    StallSnapshot, WorkerSnapshot,
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
}

/// The figures of one session row (everything but its names and metadata).
struct RowFigures {
    started_at_unix_ms: u64,
    duration_ms: u64,
    state: SessionState,
    cpu_pct: f64,
    busy_ns: u64,
    poll_count: u64,
    stall_count: u64,
    preempted_stall_count: u64,
    recent_stalls: Vec<StallSnapshot>,
    blocking_for_ms: Option<u64>,
    delayed_by_stalls_ns: u64,
    delayed_by_stalls_count: u64,
    mem_bytes: u64,
    mem_peak_bytes: u64,
    alloc_count: u64,
    children_live_count: u64,
    children_finished_count: u64,
}

fn moment(shared: &PoolShared) -> Moment {
    let clock = &shared.probe().clock;
    let now_ns = clock.now_ns();
    let draining = shared.is_draining();
    // The memory totals first, before this thread allocates anything for the snapshot.
    let memory_totals = crate::alloc::is_installed().then(|| {
        let (tracked, runtime) = crate::alloc::accounts::tracked_and_runtime_bytes();
        (tracked, runtime, crate::alloc::accounts::ended_bytes())
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
    Moment {
        now_ns,
        draining,
        memory,
        worker,
        cells,
        recently_ended,
    }
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
            let figures = figures(shared, cell, moment.now_ns, moment.draining, moment.memory);
            let mut row = SessionSnapshot::default();
            row.id = cell.id().to_string();
            row.agent = cell.agent().to_owned();
            row.tenant = cell.tenant().to_owned();
            row.metadata = cell.metadata().clone();
            row.started_at_unix_ms = figures.started_at_unix_ms;
            row.duration_ms = figures.duration_ms;
            row.state = figures.state;
            row.cpu_pct = figures.cpu_pct;
            row.busy_ns = figures.busy_ns;
            row.poll_count = figures.poll_count;
            row.stall_count = figures.stall_count;
            row.preempted_stall_count = figures.preempted_stall_count;
            row.last_stall = figures.recent_stalls.last().cloned();
            row.recent_stalls = figures.recent_stalls;
            row.blocking_for_ms = figures.blocking_for_ms;
            row.delayed_by_stalls_ns = figures.delayed_by_stalls_ns;
            row.delayed_by_stalls_count = figures.delayed_by_stalls_count;
            row.mem_bytes = figures.mem_bytes;
            row.mem_peak_bytes = figures.mem_peak_bytes;
            row.alloc_count = figures.alloc_count;
            row.children_live_count = figures.children_live_count;
            row.children_finished_count = figures.children_finished_count;
            row
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
    snapshot
}

/// Writes the socket's answer to a snapshot request, `{"v":1,"type":"snapshot","snapshot":…}`,
/// straight from the session cells: the same document as serializing the owned snapshot in a
/// [`openrtc_proto::ResponseEnvelope`] (with `sessions` before `worker`, so the header can
/// count the stalls in progress among the rows it has just written), without first copying
/// every session's strings and metadata.
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

/// The JSON of [`PoolSnapshot`], field for field (a test checks they agree).
#[derive(Serialize)]
struct SnapshotView<'a> {
    version: u32,
    taken_at_unix_ms: u64,
    sessions: RowsView<'a>,
    worker: WorkerView<'a>,
    recently_ended: &'a [EndedSessionSnapshot],
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
            let figures = figures(
                self.shared,
                cell,
                moment.now_ns,
                moment.draining,
                moment.memory,
            );
            if figures.blocking_for_ms.is_some() {
                self.blocking_now.set(self.blocking_now.get() + 1);
            }
            rows.serialize_element(&RowView {
                id: IdView(cell.id()),
                agent: cell.agent(),
                tenant: cell.tenant(),
                metadata: cell.metadata(),
                started_at_unix_ms: figures.started_at_unix_ms,
                duration_ms: figures.duration_ms,
                state: figures.state,
                cpu_pct: figures.cpu_pct,
                busy_ns: figures.busy_ns,
                poll_count: figures.poll_count,
                stall_count: figures.stall_count,
                preempted_stall_count: figures.preempted_stall_count,
                last_stall: figures.recent_stalls.last(),
                recent_stalls: &figures.recent_stalls,
                blocking_for_ms: figures.blocking_for_ms,
                delayed_by_stalls_ns: figures.delayed_by_stalls_ns,
                delayed_by_stalls_count: figures.delayed_by_stalls_count,
                mem_bytes: figures.mem_bytes,
                mem_peak_bytes: figures.mem_peak_bytes,
                alloc_count: figures.alloc_count,
                children_live_count: figures.children_live_count,
                children_finished_count: figures.children_finished_count,
            })?;
        }
        rows.end()
    }
}

/// The JSON of [`SessionSnapshot`], field for field (a test checks they agree).
#[derive(Serialize)]
struct RowView<'a> {
    id: IdView,
    agent: &'a str,
    tenant: &'a str,
    #[serde(skip_serializing_if = "is_null")]
    metadata: &'a serde_json::Value,
    started_at_unix_ms: u64,
    duration_ms: u64,
    state: SessionState,
    cpu_pct: f64,
    busy_ns: u64,
    poll_count: u64,
    stall_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    preempted_stall_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_stall: Option<&'a StallSnapshot>,
    #[serde(skip_serializing_if = "is_empty")]
    recent_stalls: &'a [StallSnapshot],
    #[serde(skip_serializing_if = "Option::is_none")]
    blocking_for_ms: Option<u64>,
    delayed_by_stalls_ns: u64,
    delayed_by_stalls_count: u64,
    mem_bytes: u64,
    mem_peak_bytes: u64,
    alloc_count: u64,
    children_live_count: u64,
    children_finished_count: u64,
}

fn is_null(value: &&serde_json::Value) -> bool {
    value.is_null()
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(count: &u64) -> bool {
    *count == 0
}

fn is_empty(stalls: &&[StallSnapshot]) -> bool {
    stalls.is_empty()
}

/// A session id serialized as its `s-<n>` text without building a `String`.
struct IdView(crate::SessionId);

impl Serialize for IdView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
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
    worker.refusals = crate::Rejected::REASONS
        .iter()
        .zip(&counters.refused)
        .map(|(reason, count)| ((*reason).to_owned(), load(count)))
        .collect();
    worker.stalls_total_count = shared.probe().stalls_total.load(Ordering::Relaxed);
    worker.stalls_last_minute_count = shared.stalls_last_minute.load(Ordering::Relaxed);
    worker.stalls_preempted_count = shared.stalls_preempted.load(Ordering::Relaxed);
    (worker.rss_bytes, worker.threads_count) = crate::os::resident_set_and_threads();
    worker.process_cpu_pct = f64::from_bits(shared.process_cpu_pct_bits.load(Ordering::Relaxed));
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

fn figures(
    shared: &PoolShared,
    cell: &SessionCell,
    now_ns: u64,
    draining: bool,
    memory: Memory,
) -> RowFigures {
    let clock = &shared.probe().clock;
    let totals = cell.busy_totals();
    let blocking_since_ns = cell.blocking_since_ns();
    let (delayed_by_stalls_ns, delayed_by_stalls_count) = cell.delayed_by_stalls();
    let slow = blocking_since_ns != 0 || now_ns < cell.slow_until_ns();
    let (mem_bytes, mem_peak_bytes, alloc_count) = match (memory, cell.tracked_memory()) {
        (Memory::Tracked, Some(tracked)) => tracked,
        (Memory::Tracked, None) => (0, 0, 0),
        (Memory::RssShare(share), _) => (share, cell.note_rss_share(share), 0),
    };
    RowFigures {
        started_at_unix_ms: clock.unix_ms(cell.started_ns()),
        duration_ms: now_ns.saturating_sub(cell.started_ns()) / NS_PER_MS,
        state: if slow {
            SessionState::Slow
        } else if draining {
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
        recent_stalls: cell
            .recent_stalls()
            .into_iter()
            .map(|stall| {
                let mut record = StallSnapshot::default();
                record.duration_ns = stall.duration_ns;
                record.started_at_unix_ms = clock.unix_ms(stall.started_ns);
                record.ended_at_unix_ms = clock.unix_ms(stall.ended_ns);
                record.worker = stall.worker;
                record.class = stall.class;
                record.syscall = stall.syscall.map(str::to_owned);
                record.thread_time = stall.watched.map(|watched| {
                    let mut time = openrtc_proto::ThreadTimeSnapshot::default();
                    time.watched_ns = watched.watched_ns;
                    time.on_cpu_ns = watched.spent.on_cpu_ns;
                    time.run_queue_ns = watched.spent.run_queue_ns;
                    time
                });
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
                                snapshot.user = frame.origin == crate::stack::symbols::Origin::User;
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
                        snapshot.session_id = victim.session.to_string();
                        snapshot.delay_ns = victim.delay_ns;
                        snapshot
                    })
                    .collect();
                record
            })
            .collect(),
        blocking_for_ms: (blocking_since_ns != 0)
            .then(|| now_ns.saturating_sub(blocking_since_ns) / NS_PER_MS),
        delayed_by_stalls_ns,
        delayed_by_stalls_count,
        mem_bytes,
        mem_peak_bytes,
        alloc_count,
        children_live_count: totals.children_live_count,
        children_finished_count: totals.children_finished_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentPool, JobRequest, Session, agent_fn};

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
                    .metadata(serde_json::json!({"caller": "+1555"})),
            )
            .expect("queued");
        handle.launch(JobRequest::new()).expect("queued");
        let shared = pool.shared();
        let mut json = Vec::new();
        write_response(shared, &moment(shared), &mut json).expect("serializes");
        let parsed: openrtc_proto::ResponseEnvelope =
            serde_json::from_slice(&json).expect("a valid response");
        let openrtc_proto::Response::Snapshot { snapshot } = parsed.response else {
            panic!("a snapshot response");
        };
        // The same moment figured the owned way (the pool is not running: nothing moves but
        // the clock, so the durations are the only figures that may differ).
        let mut owned = owned_snapshot(shared, moment(shared));
        owned.taken_at_unix_ms = snapshot.taken_at_unix_ms;
        owned.worker.uptime_ms = snapshot.worker.uptime_ms;
        owned.worker.rss_bytes = snapshot.worker.rss_bytes;
        owned.worker.threads_count = snapshot.worker.threads_count;
        owned.worker.open_fds_count = snapshot.worker.open_fds_count;
        for (owned_row, served_row) in owned.sessions.iter_mut().zip(&snapshot.sessions) {
            owned_row.duration_ms = served_row.duration_ms;
            owned_row.mem_bytes = served_row.mem_bytes;
            owned_row.mem_peak_bytes = served_row.mem_peak_bytes;
        }
        assert_eq!(*snapshot, owned);
        assert_eq!(owned.sessions.len(), 2);
        assert_eq!(owned.sessions[0].metadata["caller"], "+1555");
        assert_eq!(owned.sessions[1].metadata, serde_json::Value::Null);
    }
}
