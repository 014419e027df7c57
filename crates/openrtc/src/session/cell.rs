//! The shared state of one live session: identity, counters, children, and its stop.
//!
//! The root task's wrapper, child wrappers, the watchdog, snapshots and the supervisor all
//! hold the same `Arc<SessionCell>`. Counters the poll path writes are atomics; what only
//! cold paths touch (children, the last stall) sits behind plain mutexes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::lock;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::handle::OutcomeSlot;
use super::{KillReason, SessionId, SessionOutcome, StopRequest};
use crate::pool::PoolShared;
use crate::probe::{Probe, TaskStats};
use crate::telemetry::PoolLog;
use crate::telemetry::recorder::FlightRecorder;

/// How many finished stalls a session keeps for snapshots.
pub(crate) const RECENT_STALLS: usize = 8;

/// A finished stall, as kept for snapshots: written when the watchdog sees the poll end, and
/// completed in place once its cause is symbolized and its victims have reported in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StallRecord {
    /// The poll's sequence number in its worker's slot: with `worker`, which stall this is.
    pub(crate) seq: u64,
    pub(crate) duration_ns: u64,
    pub(crate) ended_ns: u64,
    pub(crate) worker: u32,
    /// What the thread was doing, when the watchdog saw the stall in progress.
    pub(crate) class: Option<crate::classify::StallClass>,
    /// The syscall it was blocked in, when it was in one.
    pub(crate) syscall: Option<&'static str>,
    /// How the thread spent the part of the stall the watchdog watched.
    pub(crate) watched: Option<crate::classify::WatchedTime>,
    /// The cause in words and the stack, once symbolized.
    pub(crate) cause: Option<StallCause>,
    /// Whether `cause` is still being worked out.
    pub(crate) cause_pending: bool,
    /// How many other sessions it delayed.
    pub(crate) victim_count: u64,
    /// The sessions it delayed, longest delay first, at most [`KEPT_VICTIMS`].
    pub(crate) victims: Arc<[Victim]>,
    /// Whether the sessions it delayed are still reporting in.
    pub(crate) victims_pending: bool,
}

/// How many delayed sessions a stall record names.
pub(crate) const KEPT_VICTIMS: usize = 16;

/// A session delayed by a stall, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Victim {
    pub(crate) session: crate::SessionId,
    pub(crate) delay_ns: u64,
}

/// The watchdog's explanation of a stall, as kept for snapshots and log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StallCause {
    /// The whole diagnosis in words: `sleep in std::thread::sleep at src/agent.rs:42`, or
    /// `io in recvfrom on tcp 127.0.0.1:5432` without a stack.
    pub(crate) summary: Arc<str>,
    /// The stuck thread's stack, when it was captured.
    pub(crate) stack: Option<Arc<crate::stack::Stack>>,
    /// Why there is no stack.
    pub(crate) stack_note: Option<Arc<str>>,
}

/// Busy time and polls of a session, its children included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BusyTotals {
    pub(crate) busy_ns: u64,
    pub(crate) poll_count: u64,
    pub(crate) children_live_count: u64,
    pub(crate) children_finished_count: u64,
}

#[derive(Debug, Default)]
struct Children {
    next_id: u64,
    live: Vec<LiveChild>,
    finished_count: u64,
    finished_busy_ticks: u64,
    finished_poll_count: u64,
}

#[derive(Debug)]
struct LiveChild {
    id: u64,
    stats: Arc<TaskStats>,
    abort: Option<AbortHandle>,
}

/// The shared state of one live session.
#[derive(Debug)]
pub(crate) struct SessionCell {
    key: u64,
    agent: Arc<str>,
    tenant: Arc<str>,
    metadata: serde_json::Value,
    started_ns: u64,
    probe: Arc<Probe>,
    /// The pool, told of the session's end by `finish`. Weak, so that a cell does not keep
    /// its pool alive: the pool holds its cells (live sessions, and sessions launched before
    /// the runtime starts), so a strong pointer back is a cycle, which leaks a pool dropped
    /// unrun with sessions queued. A `Weak` rather than an end-of-session callback: the cell's
    /// one use of the pool is this direct call, and a boxed callback would be one more
    /// indirection to the same place. Once the pool is gone, no count or list is left to
    /// update, so a session ending after it records nothing.
    pool: Weak<PoolShared>,
    /// Whether panics get a backtrace (the pool's setting, fixed when it is built).
    panic_backtraces: bool,
    root_stats: Arc<TaskStats>,
    children: Mutex<Children>,
    /// Whether a child task was ever spawned: until then, reading the totals takes no lock.
    had_children: std::sync::atomic::AtomicBool,
    stall_count: AtomicU64,
    /// Of `stall_count`, the stalls the host caused (class `preempted`).
    preempted_stall_count: AtomicU64,
    /// Time lost to other sessions' stalls, and how many stalls.
    delayed_by_stalls_ns: AtomicU64,
    delayed_by_stalls_count: AtomicU64,
    slow_until_ns: AtomicU64,
    blocking_since_ns: AtomicU64,
    recent_stalls: Mutex<std::collections::VecDeque<StallRecord>>,
    cpu_pct_bits: AtomicU64,
    cpu_window_busy_ns: AtomicU64,
    cancel: CancellationToken,
    /// The first stop asked for: it names the outcome.
    stop: OnceLock<StopRequest>,
    abort: OnceLock<AbortHandle>,
    /// The tracking allocator's account charged for this session's polls (0: none).
    account: u32,
    /// The highest equal share of RSS seen, when memory is not tracked.
    rss_share_peak_bytes: AtomicU64,
    /// The outcome, from the session's end to its launch handle.
    outcome: OutcomeSlot,
    /// Its places in its tenant's and agent's counts (and its breaker ticket), given back
    /// once when it ends.
    places: Mutex<Option<crate::admission::SessionPlaces>>,
    /// The pool's logging (worker name, log file), for the session's records.
    log: Arc<PoolLog>,
    /// The session's last records, kept for when it fails or stalls.
    recorder: FlightRecorder,
    /// Its tracked calls by label, from its first tracked call.
    calls: OnceLock<Box<crate::calls::CallTable>>,
    /// The call's media, for a session from the media listener, until the agent takes it.
    media: Mutex<Option<crate::media::CallMedia>>,
    /// The call's stream and health, for a session from the media listener, for its life
    /// (what its snapshot row shows).
    call: OnceLock<(
        Arc<crate::media::protocol::StreamStart>,
        Arc<crate::media::health::CallHealth>,
    )>,
    /// The LiveKit job it runs, for a session the LiveKit worker started.
    #[cfg(feature = "livekit")]
    livekit: OnceLock<(
        Arc<crate::source::livekit::LiveKitJob>,
        openrtc_proto::LiveKitJobSnapshot,
    )>,
    /// A tracked call longer than this is slow (the pool's `slow_call_threshold`).
    slow_call_ns: u64,
    /// Its child tasks by how they ended.
    tasks: super::tasks::TaskCounters,
    /// Its process, when it runs isolated in one of its own (set before its root task
    /// starts).
    process: OnceLock<Arc<crate::isolation::ProcessState>>,
}

impl SessionCell {
    pub(crate) fn new(
        key: u64,
        agent: Arc<str>,
        tenant: Arc<str>,
        metadata: serde_json::Value,
        memory_limit_bytes: Option<u64>,
        places: Option<crate::admission::SessionPlaces>,
        pool: Arc<PoolShared>,
    ) -> Self {
        let probe = Arc::clone(pool.probe());
        let account = if probe.measure && crate::alloc::is_installed() {
            crate::alloc::accounts::claim(memory_limit_bytes.unwrap_or(0)).unwrap_or(0)
        } else {
            0
        };
        Self {
            key,
            agent,
            tenant,
            metadata,
            started_ns: probe.clock.now_ns(),
            probe,
            panic_backtraces: pool.config.panic_backtraces,
            pool: Arc::downgrade(&pool),
            root_stats: Arc::default(),
            children: Mutex::default(),
            had_children: std::sync::atomic::AtomicBool::new(false),
            stall_count: AtomicU64::new(0),
            preempted_stall_count: AtomicU64::new(0),
            delayed_by_stalls_ns: AtomicU64::new(0),
            delayed_by_stalls_count: AtomicU64::new(0),
            slow_until_ns: AtomicU64::new(0),
            blocking_since_ns: AtomicU64::new(0),
            recent_stalls: Mutex::default(),
            cpu_pct_bits: AtomicU64::new(0),
            cpu_window_busy_ns: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            stop: OnceLock::new(),
            abort: OnceLock::new(),
            account,
            rss_share_peak_bytes: AtomicU64::new(0),
            outcome: OutcomeSlot::default(),
            places: Mutex::new(places),
            recorder: pool.log().recorder(),
            log: Arc::clone(pool.log()),
            calls: OnceLock::new(),
            media: Mutex::new(None),
            #[cfg(feature = "livekit")]
            livekit: OnceLock::new(),
            call: OnceLock::new(),
            slow_call_ns: crate::units::duration_ns(pool.config.slow_call_threshold),
            tasks: super::tasks::TaskCounters::default(),
            process: OnceLock::new(),
        }
    }

    /// Marks the session as isolated in a process of its own (once, before it starts).
    pub(crate) fn set_process(&self, process: Arc<crate::isolation::ProcessState>) {
        let _ = self.process.set(process);
    }

    /// Its process, when it runs isolated.
    pub(crate) fn process(&self) -> Option<&Arc<crate::isolation::ProcessState>> {
        self.process.get()
    }

    /// Its tracked calls' table (made at its first tracked call).
    pub(crate) fn calls(&self) -> &crate::calls::CallTable {
        self.calls.get_or_init(Box::default)
    }

    /// Its tracked calls by label, in wire form (empty before the first).
    pub(crate) fn calls_snapshot(
        &self,
    ) -> std::collections::BTreeMap<String, openrtc_proto::CallStatsSnapshot> {
        self.calls
            .get()
            .map(|calls| calls.snapshot(crate::calls::Buckets::Without))
            .unwrap_or_default()
    }

    /// A tracked call longer than this is slow.
    pub(crate) fn slow_call_ns(&self) -> u64 {
        self.slow_call_ns
    }

    /// Its child tasks by how they ended.
    pub(crate) fn tasks(&self) -> openrtc_proto::TaskCountsSnapshot {
        self.tasks.snapshot()
    }

    /// Takes the session's places, to give them back (the first call gets them).
    pub(crate) fn take_places(&self) -> Option<crate::admission::SessionPlaces> {
        lock(&self.places).take()
    }

    /// The pool's logging.
    pub(crate) fn log(&self) -> &PoolLog {
        &self.log
    }

    /// The session's flight recorder.
    pub(crate) fn recorder(&self) -> &FlightRecorder {
        &self.recorder
    }

    /// The pool, while it exists.
    pub(crate) fn pool(&self) -> Option<Arc<PoolShared>> {
        self.pool.upgrade()
    }

    /// Where the outcome goes when the session ends, for its launch handle.
    pub(crate) fn outcome_slot(&self) -> &OutcomeSlot {
        &self.outcome
    }

    #[cfg(feature = "bench")]
    pub(crate) fn set_account_for_bench(&mut self, account: u32) {
        self.account = account;
    }

    /// Whether a panic in this session's tasks gets a backtrace (symbolized off the worker).
    pub(crate) fn panic_backtraces(&self) -> bool {
        self.panic_backtraces
    }

    /// The allocator account charged while this session is polled (0: none).
    #[inline(always)]
    pub(crate) fn account(&self) -> u32 {
        self.account
    }

    /// Live bytes, peak bytes and allocations of this session, when memory is tracked.
    pub(crate) fn tracked_memory(&self) -> Option<(u64, u64, u64)> {
        (self.account != 0).then(|| {
            let account = crate::alloc::accounts::account(self.account);
            (
                account.live_bytes(),
                account.peak_bytes(),
                account.alloc_count(),
            )
        })
    }

    /// Records an equal share of RSS and returns the highest share seen.
    pub(crate) fn note_rss_share(&self, share_bytes: u64) -> u64 {
        self.rss_share_peak_bytes
            .fetch_max(share_bytes, Ordering::Relaxed)
            .max(share_bytes)
    }

    /// The session's peak memory: tracked, else the highest equal share of RSS seen.
    pub(crate) fn peak_memory_bytes(&self) -> u64 {
        self.tracked_memory().map_or_else(
            || self.rss_share_peak_bytes.load(Ordering::Relaxed),
            |(_, peak, _)| peak,
        )
    }

    /// Kills the session for crossing its memory cap (called at a poll boundary by the probe).
    #[cold]
    #[inline(never)]
    pub(crate) fn kill_over_memory_limit(&self) {
        let account = crate::alloc::accounts::account(self.account);
        let (live_bytes, limit_bytes) = (account.live_bytes(), account.limit_bytes());
        let reason = KillReason::MemoryLimit {
            live_bytes,
            limit_bytes,
        };
        if self.request_stop(StopRequest::Kill(reason)) {
            tracing::warn!(
                event = "session_memory_limit",
                session_id = %self.id(),
                tenant = self.tenant(),
                agent = self.agent(),
                live_bytes,
                limit_bytes,
                "[memory-limit] session_id={} tenant={} agent={} holds {} over its {} cap: killed",
                self.id(),
                self.tenant(),
                self.agent(),
                crate::units::format_mib(live_bytes),
                crate::units::format_mib(limit_bytes)
            );
            if let Some(pool) = self.pool() {
                pool.events.emit(crate::events::Event::SessionMemoryLimit {
                    key: self.key,
                    tenant: Arc::clone(&self.tenant),
                    agent: Arc::clone(&self.agent),
                    live_bytes,
                    limit_bytes,
                });
            }
        }
    }

    #[inline(always)]
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    pub(crate) fn id(&self) -> SessionId {
        super::session_id(self.key)
    }

    pub(crate) fn agent(&self) -> &str {
        &self.agent
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The agent's name, shared.
    pub(crate) fn agent_name(&self) -> &Arc<str> {
        &self.agent
    }

    /// The tenant's name, shared.
    pub(crate) fn tenant_name(&self) -> &Arc<str> {
        &self.tenant
    }

    pub(crate) fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }

    pub(crate) fn started_ns(&self) -> u64 {
        self.started_ns
    }

    #[inline(always)]
    pub(crate) fn probe(&self) -> &Probe {
        &self.probe
    }

    pub(crate) fn root_stats(&self) -> Arc<TaskStats> {
        Arc::clone(&self.root_stats)
    }

    pub(crate) fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Counts a finished stall (called on the poll path's cold branch: atomics only).
    pub(crate) fn record_stall_counters(&self) {
        self.stall_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stall of another session that delayed this one by `delay_ns` (called by the
    /// watchdog, once per stall).
    pub(crate) fn note_delayed_by_stall(&self, delay_ns: u64) {
        self.delayed_by_stalls_ns
            .fetch_add(delay_ns, Ordering::Relaxed);
        self.delayed_by_stalls_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Time lost to other sessions' stalls, and how many stalls.
    pub(crate) fn delayed_by_stalls(&self) -> (u64, u64) {
        (
            self.delayed_by_stalls_ns.load(Ordering::Relaxed),
            self.delayed_by_stalls_count.load(Ordering::Relaxed),
        )
    }

    /// Keeps a finished stall, in the order they ended (called by the watchdog as soon as it
    /// sees the poll end); the oldest is forgotten past [`RECENT_STALLS`].
    ///
    /// The session shows `slow` for the slow hold after a stall of its own; a stall the host
    /// caused, by preempting the thread mid-poll, does not make it `slow` (it is counted in
    /// [`Self::preempted_stall_count`]), so a noisy host does not paint every session slow.
    pub(crate) fn push_stall(&self, record: StallRecord) {
        if record.class == Some(crate::classify::StallClass::Preempted) {
            self.preempted_stall_count.fetch_add(1, Ordering::Relaxed);
        } else {
            self.slow_until_ns.fetch_max(
                record.ended_ns.saturating_add(self.probe.hold_ns),
                Ordering::Relaxed,
            );
        }
        let mut recent = lock(&self.recent_stalls);
        let position = recent
            .iter()
            .rposition(|previous| previous.ended_ns <= record.ended_ns)
            .map_or(0, |index| index + 1);
        recent.insert(position, record);
        if recent.len() > RECENT_STALLS {
            recent.pop_front();
        }
    }

    /// Completes a kept stall (the one of poll `seq` on `worker`) once more of it is known;
    /// does nothing if it has been forgotten already.
    pub(crate) fn complete_stall(
        &self,
        worker: u32,
        seq: u64,
        fill: impl FnOnce(&mut StallRecord),
    ) {
        let mut recent = lock(&self.recent_stalls);
        if let Some(record) = recent
            .iter_mut()
            .rev()
            .find(|record| record.worker == worker && record.seq == seq)
        {
            fill(record);
        }
    }

    /// The most recent finished stalls, oldest first.
    pub(crate) fn recent_stalls(&self) -> Vec<StallRecord> {
        lock(&self.recent_stalls).iter().cloned().collect()
    }

    /// Of the stalls it caused, those the host caused (class `preempted`).
    pub(crate) fn preempted_stall_count(&self) -> u64 {
        self.preempted_stall_count.load(Ordering::Relaxed)
    }

    pub(crate) fn stall_count(&self) -> u64 {
        self.stall_count.load(Ordering::Relaxed)
    }

    pub(crate) fn slow_until_ns(&self) -> u64 {
        self.slow_until_ns.load(Ordering::Relaxed)
    }

    /// When the poll blocking a worker thread now started (0 if none); set by the watchdog.
    pub(crate) fn blocking_since_ns(&self) -> u64 {
        self.blocking_since_ns.load(Ordering::Relaxed)
    }

    pub(crate) fn set_blocking_since_ns(&self, since_ns: u64) {
        self.blocking_since_ns.store(since_ns, Ordering::Relaxed);
    }

    /// Busy time and polls of the root task and every child, live and finished.
    pub(crate) fn busy_totals(&self) -> BusyTotals {
        if !self.had_children.load(Ordering::Acquire) {
            return BusyTotals {
                busy_ns: self
                    .probe
                    .clock
                    .ticks_to_nanos(self.root_stats.busy_ticks()),
                poll_count: self.root_stats.poll_count(),
                children_live_count: 0,
                children_finished_count: 0,
            };
        }
        let children = lock(&self.children);
        let mut busy_ticks = self.root_stats.busy_ticks() + children.finished_busy_ticks;
        let mut poll_count = self.root_stats.poll_count() + children.finished_poll_count;
        for child in &children.live {
            busy_ticks += child.stats.busy_ticks();
            poll_count += child.stats.poll_count();
        }
        BusyTotals {
            busy_ns: self.probe.clock.ticks_to_nanos(busy_ticks),
            poll_count,
            children_live_count: children.live.len() as u64,
            children_finished_count: children.finished_count,
        }
    }

    /// Closes a CPU window (called by the watchdog): the share of one core this session was
    /// busy since the previous call, `window_ns` ago.
    pub(crate) fn close_cpu_window(&self, window_ns: u64) {
        let busy_ns = self.busy_totals().busy_ns;
        let previous = self.cpu_window_busy_ns.swap(busy_ns, Ordering::Relaxed);
        let pct = if window_ns == 0 {
            0.0
        } else {
            busy_ns.saturating_sub(previous) as f64 * 100.0 / window_ns as f64
        };
        self.cpu_pct_bits.store(pct.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn cpu_pct(&self) -> f64 {
        f64::from_bits(self.cpu_pct_bits.load(Ordering::Relaxed))
    }

    /// Gives the session its call's media, before it starts.
    pub(crate) fn set_media(&self, media: crate::media::CallMedia) {
        let _ = self
            .call
            .set((Arc::clone(media.start_arc()), Arc::clone(media.health())));
        *lock(&self.media) = Some(media);
    }

    /// The call's media health now, for a session from the media listener.
    pub(crate) fn call_media_snapshot(&self) -> Option<openrtc_proto::CallMediaSnapshot> {
        self.call
            .get()
            .map(|(start, health)| crate::media::health::snapshot(start, health))
    }

    /// Gives the session its LiveKit job, before it starts.
    #[cfg(feature = "livekit")]
    pub(crate) fn set_livekit(&self, job: Arc<crate::source::livekit::LiveKitJob>) {
        let snapshot = job.snapshot();
        let _ = self.livekit.set((job, snapshot));
    }

    /// The LiveKit job it runs, if the LiveKit worker started it.
    #[cfg(feature = "livekit")]
    pub(crate) fn livekit(&self) -> Option<&Arc<crate::source::livekit::LiveKitJob>> {
        self.livekit.get().map(|(job, _)| job)
    }

    /// Its LiveKit job as its snapshot row shows it.
    pub(crate) fn livekit_snapshot(&self) -> Option<&openrtc_proto::LiveKitJobSnapshot> {
        #[cfg(feature = "livekit")]
        return self.livekit.get().map(|(_, snapshot)| snapshot);
        #[cfg(not(feature = "livekit"))]
        None
    }

    /// Takes the call's media (once).
    pub(crate) fn take_media(&self) -> Option<crate::media::CallMedia> {
        lock(&self.media).take()
    }

    pub(crate) fn register_child(&self) -> (u64, Arc<TaskStats>) {
        let mut children = lock(&self.children);
        self.had_children.store(true, Ordering::Release);
        children.next_id += 1;
        let id = children.next_id;
        let stats = Arc::<TaskStats>::default();
        self.tasks.spawned();
        if let Some(pool) = self.pool() {
            pool.tasks.spawned();
        }
        children.live.push(LiveChild {
            id,
            stats: Arc::clone(&stats),
            abort: None,
        });
        (id, stats)
    }

    pub(crate) fn set_child_abort(&self, child: u64, abort: AbortHandle) {
        let mut children = lock(&self.children);
        if let Some(live) = children.live.iter_mut().find(|live| live.id == child) {
            live.abort = Some(abort);
        }
    }

    /// Counts a child task's end, however it came, and folds its figures into the totals.
    pub(crate) fn child_finished(&self, child: u64, end: super::tasks::ChildEnd) {
        self.tasks.ended(end);
        if let Some(pool) = self.pool() {
            pool.tasks.ended(end);
        }
        let mut children = lock(&self.children);
        if let Some(index) = children.live.iter().position(|live| live.id == child) {
            let finished = children.live.swap_remove(index);
            children.finished_count += 1;
            children.finished_busy_ticks += finished.stats.busy_ticks();
            children.finished_poll_count += finished.stats.poll_count();
        }
    }

    pub(crate) fn set_abort(&self, abort: AbortHandle) {
        // Set once, right after the root task is spawned.
        let _ = self.abort.set(abort);
    }

    pub(crate) fn stop_request(&self) -> Option<StopRequest> {
        self.stop.get().copied()
    }

    /// Asks the session to stop. The first request names the outcome; a kill aborts the root
    /// task at once, a cancel resolves `Session::cancelled` and leaves the rest to the caller.
    /// Returns whether this request was the first.
    pub(crate) fn request_stop(&self, request: StopRequest) -> bool {
        let first = self.stop.set(request).is_ok();
        if first {
            // In the session's scope: its flight recorder keeps why it was stopped.
            crate::telemetry::current::scope(self, || {
                let (kind, reason) = match request {
                    StopRequest::Cancel(reason) => ("cancel", reason.as_str()),
                    StopRequest::Kill(reason) => ("kill", reason.as_str()),
                };
                tracing::debug!(
                    event = "session_stop",
                    stop = kind,
                    reason,
                    "[session-stop] {kind} ({reason})"
                );
            });
        }
        self.cancel.cancel();
        if matches!(request, StopRequest::Kill(_)) {
            self.abort_root();
        }
        first
    }

    /// Drops the root task at its next poll boundary (it finishes the cell when dropped).
    pub(crate) fn abort_root(&self) {
        if let Some(abort) = self.abort.get() {
            abort.abort();
        }
    }

    /// Records the outcome and releases the session's place (called once, by the root guard).
    pub(crate) fn finish(&self, outcome: SessionOutcome) {
        self.cancel.cancel();
        let children: Vec<AbortHandle> = lock(&self.children)
            .live
            .iter_mut()
            .filter_map(|live| live.abort.take())
            .collect();
        for abort in children {
            abort.abort();
        }
        match self.pool.upgrade() {
            Some(pool) => pool.session_ended(self, outcome),
            // No pool to count it: the launch handle still gets its outcome.
            None => {
                drop(self.take_places());
                self.outcome.put(outcome);
            }
        }
        if self.account != 0 {
            crate::alloc::accounts::retire(self.account, self.probe.pool_id(), self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{AgentPool, JobRequest, Session, agent_fn};

    #[test]
    fn a_queued_session_does_not_keep_its_dropped_pool_alive() {
        let pool = AgentPool::builder()
            .agent("idle", agent_fn(|_session: Session| async { Ok(()) }))
            .build()
            .expect("valid configuration");
        let handle = pool.handle();
        let id = handle.launch(JobRequest::new()).expect("room");
        let cell = pool.shared().session(id.id().as_u64()).expect("queued");
        // The pool and its handle hold it; the cell does not.
        assert_eq!(cell.pool.strong_count(), 2);
        drop(handle);
        drop(pool);
        assert_eq!(
            cell.pool.strong_count(),
            0,
            "the queued cell kept its pool alive"
        );
    }
}
