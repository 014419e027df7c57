//! The hot path: the attributed future wrapper, the per-worker poll slots and the clock.
//!
//! Every session future and every child task is wrapped in an [`Attributed`] future. Each poll
//! stamps the TSC before and after, publishes "this thread is polling session N since T" in
//! the thread's [`PollSlot`] for the watchdog, and adds the elapsed time to the task's own
//! counters. The path takes no lock, allocates nothing and sends on no channel: a handful of
//! relaxed stores and two clock reads. A poll at or over the slow threshold takes the cold
//! branch, which counts the stall and hands it to the watchdog through a bounded lock-free
//! queue (dropped and counted when full).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use crate::session::SessionCell;
use crate::units::duration_ns;

/// Poll slots beyond the worker count, for threads that replace a worker.
const SPARE_SLOTS: usize = 16;

/// How many finished stalls (and, apart, delayed polls) may wait for the watchdog before new
/// ones are dropped (and counted).
const STALL_QUEUE_CAPACITY: usize = 4096;

/// The shortest wait through a stall that counts a poll as delayed by it.
const DELAY_FLOOR_NS: u64 = 1_000_000;

/// The runtime's clock: raw TSC reads on the hot path, scaled to nanoseconds off it.
///
/// Times kept in session cells are nanoseconds since the pool's epoch (`0` means "never").
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    inner: quanta::Clock,
    epoch_raw: u64,
    epoch_unix_ns: u64,
}

/// The process's one TSC clock: every pool's [`Clock`] and every wake reads it, so raw readings
/// taken on any thread compare.
fn tsc() -> &'static quanta::Clock {
    static TSC: OnceLock<quanta::Clock> = OnceLock::new();
    TSC.get_or_init(quanta::Clock::new)
}

impl Clock {
    pub(crate) fn new() -> Self {
        let inner = tsc().clone();
        let epoch_raw = inner.raw();
        let epoch_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, duration_ns);
        Self {
            inner,
            epoch_raw,
            epoch_unix_ns,
        }
    }

    /// A raw reading: cheap, only meaningful to the other methods.
    #[inline(always)]
    pub(crate) fn raw(&self) -> u64 {
        self.inner.raw()
    }

    /// Nanoseconds between two raw readings (0 if `end` is not after `start`).
    #[inline(always)]
    pub(crate) fn nanos_between(&self, start: u64, end: u64) -> u64 {
        self.inner.delta_as_nanos(start, end)
    }

    /// Nanoseconds in a number of raw ticks (a difference of two raw readings).
    pub(crate) fn ticks_to_nanos(&self, ticks: u64) -> u64 {
        self.inner.delta_as_nanos(0, ticks)
    }

    /// The fewest raw ticks that make at least `nanos` nanoseconds.
    pub(crate) fn nanos_to_ticks(&self, nanos: u64) -> u64 {
        let (mut low, mut high) = (0_u64, u64::MAX);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.ticks_to_nanos(middle) >= nanos {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        low
    }

    /// Nanoseconds since the epoch of a raw reading; at least 1, so 0 can mean "never".
    pub(crate) fn since_epoch_ns(&self, raw: u64) -> u64 {
        self.nanos_between(self.epoch_raw, raw).max(1)
    }

    /// Nanoseconds since the epoch, now.
    pub(crate) fn now_ns(&self) -> u64 {
        self.since_epoch_ns(self.raw())
    }

    /// Milliseconds since the Unix epoch of a time kept as nanoseconds since the pool's epoch.
    pub(crate) fn unix_ms(&self, since_epoch_ns: u64) -> u64 {
        crate::units::ns_to_ms(self.epoch_unix_ns + since_epoch_ns)
    }
}

/// What one worker thread is polling, published for the watchdog.
///
/// A seqlock written only by its own thread: `seq` is odd while a poll runs. The watchdog reads
/// `seq`, the fields, then `seq` again, and trusts the fields only if both reads agree.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct PollSlot {
    seq: AtomicU64,
    session_key: AtomicU64,
    started_raw: AtomicU64,
    tid: std::sync::atomic::AtomicI32,
    worker: u32,
    /// The owning thread's stack (low, high), for stack capture; 0, 0 when unknown.
    stack_low: AtomicUsize,
    stack_high: AtomicUsize,
    /// The last stall on this thread, written and read only by the owning thread (atomics
    /// only because the slot is shared): the polls that run after it find out whether they
    /// waited through it.
    last_stall: LastStall,
}

/// A stall's raw start and end, its slot sequence number and its session.
#[derive(Debug, Default)]
struct LastStall {
    started_raw: AtomicU64,
    ended_raw: AtomicU64,
    seq: AtomicU64,
    session_key: AtomicU64,
}

/// A consistent reading of a slot whose thread is inside a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PollInProgress {
    pub(crate) seq: u64,
    pub(crate) session_key: u64,
    pub(crate) started_raw: u64,
}

impl PollSlot {
    fn new(worker: u32) -> Self {
        Self {
            seq: AtomicU64::new(0),
            session_key: AtomicU64::new(0),
            started_raw: AtomicU64::new(0),
            tid: std::sync::atomic::AtomicI32::new(0),
            worker,
            stack_low: AtomicUsize::new(0),
            stack_high: AtomicUsize::new(0),
            last_stall: LastStall::default(),
        }
    }

    /// The kernel thread id of the thread that owns this slot (0 before it is claimed).
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// The owning thread's stack, lowest and one-past-highest address, if known.
    pub(crate) fn stack(&self) -> Option<(usize, usize)> {
        let low = self.stack_low.load(Ordering::Acquire);
        let high = self.stack_high.load(Ordering::Acquire);
        (low < high).then_some((low, high))
    }

    /// The 0-based worker index of the thread that owns this slot.
    pub(crate) fn worker(&self) -> u32 {
        self.worker
    }

    /// The poll in progress on this slot's thread, if any (called by the watchdog).
    pub(crate) fn read(&self) -> Option<PollInProgress> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq % 2 == 0 {
            return None;
        }
        let session_key = self.session_key.load(Ordering::Relaxed);
        let started_raw = self.started_raw.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == seq).then_some(PollInProgress {
            seq,
            session_key,
            started_raw,
        })
    }

    #[inline(always)]
    fn begin(&self, session_key: u64, started_raw: u64) -> u64 {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq % 2 == 1 {
            // A poll nested inside another on the same thread: the outer one keeps the slot,
            // and 0 (never an odd sequence number) tells `end` to leave it alone.
            return 0;
        }
        self.session_key.store(session_key, Ordering::Relaxed);
        self.started_raw.store(started_raw, Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Release);
        seq + 1
    }

    #[inline(always)]
    fn end(&self, begun_seq: u64) {
        if begun_seq != 0 {
            self.seq.store(begun_seq + 1, Ordering::Release);
        }
    }
}

thread_local! {
    /// This thread's slot and the id of the pool it belongs to. Plain `Cell`s of `Copy`
    /// values with a const initializer: reading them is a TLS load, with no lazy-init or
    /// destructor bookkeeping on the poll path.
    static THREAD_SLOT: Cell<Option<(u64, Option<&'static PollSlot>)>> =
        const { Cell::new(None) };
}

/// The lifetime busy time (in raw clock ticks) and poll count of one task, written only by
/// the poll of that task; ticks are scaled to nanoseconds off the poll path.
///
/// Tokio polls a task on one thread at a time, so a relaxed load and store replace an atomic
/// read-modify-write on the hot path; readers on other threads see a recent value.
///
/// It is also the task's waker as its future sees it: a wake notes when it happened (the
/// first since the last poll) and passes on to the task's own (Tokio's) waker, so the next
/// poll knows how long the task waited to run.
#[derive(Debug, Default)]
pub(crate) struct TaskStats {
    busy_ticks: AtomicU64,
    poll_count: AtomicU64,
    /// Raw clock reading of the first wake since the last poll began; 0: none.
    woken_raw: AtomicU64,
    /// The waker of the Tokio task this future runs as, from its first poll.
    task_waker: OnceLock<Waker>,
}

impl Wake for TaskStats {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    #[inline]
    fn wake_by_ref(self: &Arc<Self>) {
        // A plain load and store: of two racing wakes, either time will do.
        if self.woken_raw.load(Ordering::Relaxed) == 0 {
            self.woken_raw.store(tsc().raw(), Ordering::Relaxed);
        }
        if let Some(task_waker) = self.task_waker.get() {
            task_waker.wake_by_ref();
        }
    }
}

impl TaskStats {
    /// The raw time of the first wake since the last poll (0: none), cleared for the next.
    /// A wake landing between the load and the store is lost to lateness tracking only.
    #[inline(always)]
    fn take_wake(&self) -> u64 {
        let woken_raw = self.woken_raw.load(Ordering::Relaxed);
        if woken_raw != 0 {
            self.woken_raw.store(0, Ordering::Relaxed);
        }
        woken_raw
    }

    /// Whether `task_waker` is (now) the waker of this task, so polls can pass the future
    /// this task's own waker in its place.
    #[inline(always)]
    fn adopt_task_waker(&self, task_waker: &Waker) -> bool {
        match self.task_waker.get() {
            Some(adopted) => adopted.will_wake(task_waker),
            None => self.task_waker.set(task_waker.clone()).is_ok(),
        }
    }

    pub(crate) fn busy_ticks(&self) -> u64 {
        self.busy_ticks.load(Ordering::Relaxed)
    }

    pub(crate) fn poll_count(&self) -> u64 {
        self.poll_count.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn add_poll(&self, elapsed_ticks: u64) {
        self.busy_ticks.store(
            self.busy_ticks
                .load(Ordering::Relaxed)
                .wrapping_add(elapsed_ticks),
            Ordering::Relaxed,
        );
        self.poll_count.store(
            self.poll_count.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
}

/// A finished stall, on its way from the worker thread to the watchdog.
#[derive(Debug)]
pub(crate) struct StallEvent {
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) worker: u32,
    pub(crate) duration_ns: u64,
    pub(crate) ended_ns: u64,
    /// The poll's sequence number in its worker's slot (0 if it had no slot).
    pub(crate) seq: u64,
}

/// A poll of another session that waited through a stall on its thread: from the worker
/// thread to the watchdog.
#[derive(Debug)]
pub(crate) struct DelayEvent {
    pub(crate) cell: Arc<SessionCell>,
    pub(crate) worker: u32,
    /// The stall's sequence number in its worker's slot.
    pub(crate) stall_seq: u64,
    /// How much of the stall the poll waited through.
    pub(crate) delay_ns: u64,
}

/// The probe state shared by a pool's wrappers, its watchdog and its snapshots.
#[derive(Debug)]
pub(crate) struct Probe {
    pool_id: u64,
    pub(crate) clock: Clock,
    pub(crate) measure: bool,
    /// The slow threshold in raw ticks, so the poll path compares without scaling.
    pub(crate) threshold_ticks: u64,
    pub(crate) hold_ns: u64,
    /// One slot per worker thread. Leaked on purpose (one cache line per worker thread per
    /// pool built) so that a thread-local can point at its slot without a reference count.
    slots: &'static [PollSlot],
    claimed_slots: AtomicUsize,
    pub(crate) stalls: ArrayQueue<StallEvent>,
    pub(crate) stalls_total: AtomicU64,
    /// Every stall's duration, for `/metrics`.
    pub(crate) stall_histogram: crate::stall_histogram::StallHistogram,
    pub(crate) stall_events_dropped: AtomicU64,
    /// Polls delayed by stalls, for the watchdog to attach to their stalls.
    pub(crate) delays: ArrayQueue<DelayEvent>,
    pub(crate) delay_events_dropped: AtomicU64,
    /// A wait shorter than this (in raw ticks) is not looked at: 1 ms.
    delay_floor_ticks: u64,
    /// The watchdog's scanning thread, woken when a stall ends so that its record is in
    /// the snapshots at once rather than at the next scan.
    watchdog: OnceLock<std::thread::Thread>,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl Probe {
    pub(crate) fn new(
        worker_threads: usize,
        threshold: Duration,
        hold: Duration,
        measure: bool,
    ) -> Self {
        let clock = Clock::new();
        let threshold_ticks = clock.nanos_to_ticks(duration_ns(threshold)).max(1);
        Self {
            pool_id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            measure,
            threshold_ticks,
            hold_ns: duration_ns(hold),
            slots: Box::leak(
                (0..worker_threads + SPARE_SLOTS)
                    .map(|worker| PollSlot::new(u32::try_from(worker).unwrap_or(u32::MAX)))
                    .collect(),
            ),
            claimed_slots: AtomicUsize::new(0),
            stalls: ArrayQueue::new(STALL_QUEUE_CAPACITY),
            stalls_total: AtomicU64::new(0),
            stall_histogram: crate::stall_histogram::StallHistogram::default(),
            stall_events_dropped: AtomicU64::new(0),
            delays: ArrayQueue::new(STALL_QUEUE_CAPACITY),
            delay_events_dropped: AtomicU64::new(0),
            delay_floor_ticks: clock.nanos_to_ticks(DELAY_FLOOR_NS),
            watchdog: OnceLock::new(),
            clock,
        }
    }

    /// Names the thread to wake when a stall ends (the watchdog's scanner; set once).
    pub(crate) fn set_watchdog(&self, thread: std::thread::Thread) {
        let _ = self.watchdog.set(thread);
    }

    /// This pool's process-unique id.
    pub(crate) fn pool_id(&self) -> u64 {
        self.pool_id
    }

    /// The slots claimed so far, one per worker thread that has polled a session.
    pub(crate) fn claimed_slots(&self) -> &'static [PollSlot] {
        let claimed = self
            .claimed_slots
            .load(Ordering::Acquire)
            .min(self.slots.len());
        &self.slots[..claimed]
    }

    /// This thread's slot, claimed the first time the thread polls a session of this pool.
    ///
    /// Worker numbers are given in the order threads first poll a session: 0-based, stable for
    /// the runtime's lifetime. Spare slots cover threads that Tokio starts to replace a worker
    /// (after `block_in_place`); a thread beyond them gets no slot: its polls are still timed
    /// and its stalls still counted, but the watchdog cannot see them while they run.
    #[inline(always)]
    fn thread_slot(&self) -> Option<&'static PollSlot> {
        match THREAD_SLOT.get() {
            Some((pool_id, slot)) if pool_id == self.pool_id => slot,
            _ => self.claim_slot(),
        }
    }

    #[cold]
    fn claim_slot(&self) -> Option<&'static PollSlot> {
        let index = self.claimed_slots.fetch_add(1, Ordering::AcqRel);
        let slot = self.slots.get(index);
        if let Some(slot) = slot {
            if let Some((low, high)) = crate::os::current_thread_stack() {
                slot.stack_low.store(low, Ordering::Release);
                slot.stack_high.store(high, Ordering::Release);
            }
            slot.tid.store(crate::os::current_tid(), Ordering::Release);
        }
        THREAD_SLOT.set(Some((self.pool_id, slot)));
        slot
    }

    /// A poll that waited `woken_raw..started_raw` to run: if it waited through the last
    /// stall on this thread (another session's), tells the watchdog by how much.
    #[cold]
    #[inline(never)]
    fn note_wait(
        &self,
        slot: Option<&PollSlot>,
        cell: &Arc<SessionCell>,
        woken_raw: u64,
        started_raw: u64,
    ) {
        let Some(slot) = slot else { return };
        let stall = &slot.last_stall;
        let stall_ended_raw = stall.ended_raw.load(Ordering::Relaxed);
        if stall_ended_raw == 0
            || woken_raw >= stall_ended_raw
            || started_raw < stall_ended_raw
            || stall.session_key.load(Ordering::Relaxed) == cell.key()
        {
            return;
        }
        let waited_from = woken_raw.max(stall.started_raw.load(Ordering::Relaxed));
        let delay_ticks = stall_ended_raw.saturating_sub(waited_from);
        if delay_ticks < self.delay_floor_ticks {
            return;
        }
        let event = DelayEvent {
            cell: Arc::clone(cell),
            worker: slot.worker,
            stall_seq: stall.seq.load(Ordering::Relaxed),
            delay_ns: self.clock.ticks_to_nanos(delay_ticks),
        };
        if self.delays.push(event).is_err() {
            self.delay_events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cold]
    #[inline(never)]
    fn record_stall(
        &self,
        cell: &Arc<SessionCell>,
        worker: u32,
        seq: u64,
        end_raw: u64,
        duration_ns: u64,
    ) {
        let ended_ns = self.clock.since_epoch_ns(end_raw);
        cell.record_stall_counters();
        self.stalls_total.fetch_add(1, Ordering::Relaxed);
        self.stall_histogram.observe(duration_ns);
        let event = StallEvent {
            cell: Arc::clone(cell),
            worker,
            seq,
            duration_ns,
            ended_ns,
        };
        if self.stalls.push(event).is_err() {
            self.stall_events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        // A poll of at least the threshold has just ended: waking the watchdog costs an
        // atomic swap and, if it sleeps, one futex wake; it neither blocks nor allocates.
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.unpark();
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose every poll is timed and attributed to one session.
    #[derive(Debug)]
    pub(crate) struct Attributed<F> {
        #[pin]
        inner: F,
        cell: Arc<SessionCell>,
        stats: Arc<TaskStats>,
        // `stats` as a waker: what the future is given in place of the task's waker.
        waker: Waker,
    }
}

impl<F> Attributed<F> {
    pub(crate) fn new(inner: F, cell: Arc<SessionCell>, stats: Arc<TaskStats>) -> Self {
        let waker = Waker::from(Arc::clone(&stats));
        Self {
            inner,
            cell,
            stats,
            waker,
        }
    }
}

/// Marks a poll that did not change the thread's allocator account.
const UNCHANGED_ACCOUNT: u32 = u32::MAX;

/// Clears the slot and charges the poll when it ends, including when it unwinds.
struct PollGuard<'a> {
    probe: &'a Probe,
    slot: Option<&'a PollSlot>,
    begun_seq: u64,
    started_raw: u64,
    cell: &'a Arc<SessionCell>,
    stats: &'a TaskStats,
    previous_account: u32,
}

impl Drop for PollGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let end_raw = self.probe.clock.raw();
        if self.previous_account != UNCHANGED_ACCOUNT {
            crate::alloc::leave_account(self.previous_account);
        }
        if let Some(slot) = self.slot {
            slot.end(self.begun_seq);
        }
        let elapsed_ticks = end_raw.saturating_sub(self.started_raw);
        self.stats.add_poll(elapsed_ticks);
        if elapsed_ticks >= self.probe.threshold_ticks {
            if let Some(slot) = self.slot.filter(|_| self.begun_seq != 0) {
                let stall = &slot.last_stall;
                stall.started_raw.store(self.started_raw, Ordering::Relaxed);
                stall.ended_raw.store(end_raw, Ordering::Relaxed);
                stall.seq.store(self.begun_seq, Ordering::Relaxed);
                stall.session_key.store(self.cell.key(), Ordering::Relaxed);
            }
            let worker = self.slot.map_or(u32::MAX, PollSlot::worker);
            let duration_ns = self.probe.clock.ticks_to_nanos(elapsed_ticks);
            self.probe
                .record_stall(self.cell, worker, self.begun_seq, end_raw, duration_ns);
        }
    }
}

impl<F: Future> Future for Attributed<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // The session's code runs in its logging scope: its records name it.
        crate::telemetry::current::scope(this.cell, || {
            poll_attributed(this.inner, this.cell, this.stats, this.waker, cx)
        })
    }
}

/// One poll of an [`Attributed`] future's inner future, timed and charged to its session.
#[inline(always)]
fn poll_attributed<F: Future>(
    inner: Pin<&mut F>,
    cell: &Arc<SessionCell>,
    stats: &Arc<TaskStats>,
    waker: &Waker,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let probe = cell.probe();
    if !probe.measure {
        return inner.poll(cx);
    }
    let account = cell.account();
    let previous_account = if account == 0 {
        // Memory is not tracked for this session: the thread's account stays as it is.
        UNCHANGED_ACCOUNT
    } else {
        if crate::alloc::accounts::account(account).is_over_limit() {
            // Over its memory cap: run none of its code; the kill drops the task.
            cell.kill_over_memory_limit();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        crate::alloc::enter_account(account)
    };
    let woken_raw = stats.take_wake();
    let slot = probe.thread_slot();
    let started_raw = probe.clock.raw();
    let begun_seq = slot.map_or(0, |slot| slot.begin(cell.key(), started_raw));
    if woken_raw != 0 && started_raw.wrapping_sub(woken_raw) >= probe.delay_floor_ticks {
        probe.note_wait(slot, cell, woken_raw, started_raw);
    }
    let _guard = PollGuard {
        probe,
        slot,
        begun_seq,
        started_raw,
        cell,
        stats,
        previous_account,
    };
    // The future gets this task's own waker, so its wakes are timed; should the task's
    // waker ever change (it does not under Tokio), the poll passes the new one unchanged.
    if stats.adopt_task_waker(cx.waker()) {
        inner.poll(&mut Context::from_waker(waker))
    } else {
        inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_reads_back_only_a_poll_in_progress() {
        let slot = PollSlot::new(3);
        assert_eq!(slot.read(), None);
        let seq = slot.begin(42, 1000);
        assert_eq!(
            slot.read(),
            Some(PollInProgress {
                seq,
                session_key: 42,
                started_raw: 1000
            })
        );
        // A nested poll leaves the outer poll's publication in place, even when it ends.
        let nested = slot.begin(7, 2000);
        assert_eq!(slot.read().map(|poll| poll.session_key), Some(42));
        slot.end(nested);
        assert_eq!(slot.read().map(|poll| poll.session_key), Some(42));
        slot.end(seq);
        assert_eq!(slot.read(), None);
        assert_eq!(slot.seq.load(Ordering::Relaxed), seq + 1);
    }

    #[test]
    fn the_clock_counts_real_time() {
        let clock = Clock::new();
        let start = clock.raw();
        let wall = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let measured = clock.nanos_between(start, clock.raw());
        let truth = u64::try_from(wall.elapsed().as_nanos()).expect("fits");
        assert!(measured >= 20_000_000, "measured {measured} ns");
        assert!(
            measured.abs_diff(truth) < 2_000_000,
            "tsc {measured} vs wall {truth}"
        );
        assert_eq!(clock.nanos_between(10, 5), 0);
        let ticks = clock.nanos_to_ticks(50_000_000);
        assert!(clock.ticks_to_nanos(ticks) >= 50_000_000);
        assert!(clock.ticks_to_nanos(ticks - 1) < 50_000_000);
    }
}
