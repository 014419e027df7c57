//! The frame clocks of one pool: one clock per frame period in use, each cutting its period
//! into slices (one a millisecond, see `schedule`) with a bucket of registered `Frames` per
//! slice, and driven by one Tokio task that sleeps to each slice's due time and wakes that
//! slice's bucket. At 10,000 sessions on a 20 ms period that is one timer a millisecond
//! waking 500 sessions, instead of 10,000 timers re-armed every 20 ms in Tokio's driver.
//!
//! Why one clock per runtime and not per worker thread: Tokio's multi-thread scheduler moves
//! tasks between worker threads and cannot pin a driver task to one, so a per-thread clock
//! could neither be driven on its thread nor keep its sessions there. A wake from the driver
//! lands in the local queue of the worker thread that polls the driver, and an idle worker
//! thread steals from it, so the work spreads over the threads anyway.
//!
//! A bucket's list of wakers is behind a mutex taken when a `Frames` registers or drops, and
//! by the driver once per slice (not per session); a consumer's tick takes no lock: an
//! atomic load of its bucket's fired rounds, and an `AtomicWaker` registration (no
//! allocation: the waker's clone is a reference count) when it must wait.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::schedule::{self, Cursor};

/// The frame clocks of one pool, by period; each clock starts with the first `Frames` of
/// its period.
#[derive(Debug, Default)]
pub(crate) struct FrameClocks {
    clocks: Mutex<Vec<Arc<PeriodClock>>>,
}

impl FrameClocks {
    /// Registers a new `Frames` of `period` with the clock of that period, starting the
    /// clock's driver on `runtime` if it is the period's first.
    pub(crate) fn register(
        &self,
        period: Duration,
        runtime: &tokio::runtime::Handle,
    ) -> Registration {
        let clock = {
            let mut clocks = lock(&self.clocks);
            if let Some(clock) = clocks.iter().find(|clock| clock.period == period) {
                Arc::clone(clock)
            } else {
                let clock = Arc::new(PeriodClock::new(period));
                clocks.push(Arc::clone(&clock));
                runtime.spawn(drive(Arc::clone(&clock)));
                clock
            }
        };
        PeriodClock::register(&clock)
    }

    /// How many `Frames` are registered, over all periods.
    pub(crate) fn registrations(&self) -> usize {
        lock(&self.clocks)
            .iter()
            .map(|clock| clock.registered.load(Ordering::Acquire))
            .sum()
    }
}

/// The clock of one period.
#[derive(Debug)]
struct PeriodClock {
    period: Duration,
    /// Round 0 of slice 0 is due here.
    epoch: Instant,
    /// Where each slice starts within the period.
    offsets: Box<[Duration]>,
    buckets: Box<[Bucket]>,
    /// Registered `Frames`, all slices together.
    registered: AtomicUsize,
    /// Wakes the driver when the first `Frames` registers after none.
    first_registered: Notify,
}

/// The `Frames` of one slice.
#[derive(Debug, Default)]
struct Bucket {
    /// How many rounds of this slice have fired (round `r` is due at the slice's offset
    /// plus `r` periods after the epoch). Written under `waiters`' lock.
    fired: AtomicU64,
    /// How many `Frames` are in this slice (read without the lock to pick a slice).
    len: AtomicUsize,
    waiters: Mutex<Waiters>,
}

/// Each registered `Frames`' waker, by key; a dropped one's key is reused.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Arc<AtomicWaker>>>,
    free: Vec<usize>,
}

impl Waiters {
    fn insert(&mut self, waker: Arc<AtomicWaker>) -> usize {
        if let Some(key) = self.free.pop() {
            self.slots[key] = Some(waker);
            key
        } else {
            self.slots.push(Some(waker));
            self.slots.len() - 1
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.take().is_some() {
                self.free.push(key);
            }
        }
    }

    fn wake_all(&self) {
        for waker in self.slots.iter().flatten() {
            waker.wake();
        }
    }
}

impl PeriodClock {
    fn new(period: Duration) -> Self {
        let slices = schedule::slice_count(period);
        Self {
            period,
            epoch: Instant::now(),
            offsets: (0..slices)
                .map(|slice| schedule::slice_offset(period, slices, slice))
                .collect(),
            buckets: (0..slices).map(|_| Bucket::default()).collect(),
            registered: AtomicUsize::new(0),
            first_registered: Notify::new(),
        }
    }

    fn slices(&self) -> usize {
        self.buckets.len()
    }

    /// When round `round` of `slice` is due.
    fn due(&self, slice: usize, round: u64) -> Instant {
        self.epoch + schedule::due_since_epoch(self.period, self.offsets[slice], round)
    }

    /// Joins the least populated slice, from its first round due at or after now (or its
    /// next round to fire, if the driver is ahead of that).
    fn register(clock: &Arc<Self>) -> Registration {
        let slice = schedule::least_loaded(
            clock
                .buckets
                .iter()
                .map(|bucket| bucket.len.load(Ordering::Relaxed)),
        );
        let elapsed = Instant::now().saturating_duration_since(clock.epoch);
        let by_time =
            schedule::first_round_at_or_after(elapsed, clock.period, clock.offsets[slice]);
        let waker = Arc::new(AtomicWaker::new());
        let bucket = &clock.buckets[slice];
        let (key, first_round) = {
            let mut waiters = lock(&bucket.waiters);
            let first_round = by_time.max(bucket.fired.load(Ordering::Acquire));
            (waiters.insert(Arc::clone(&waker)), first_round)
        };
        bucket.len.fetch_add(1, Ordering::Relaxed);
        if clock.registered.fetch_add(1, Ordering::AcqRel) == 0 {
            clock.first_registered.notify_one();
        }
        Registration {
            first_due: clock.due(slice, first_round),
            clock: Arc::clone(clock),
            slice,
            key,
            waker,
            first_round,
        }
    }

    /// Fires round `cursor.round` of `cursor.slice`: counts it fired, then wakes the slice's
    /// `Frames`. Under the bucket's lock, so a registration sees either both or neither.
    fn fire(&self, cursor: Cursor) {
        let bucket = &self.buckets[cursor.slice];
        let waiters = lock(&bucket.waiters);
        bucket
            .fired
            .fetch_max(cursor.round.saturating_add(1), Ordering::Release);
        waiters.wake_all();
    }

    /// After an idle spell, counts every round due before `cursor` as fired (nobody waited
    /// on them), so the driver goes on from `cursor` instead of firing the spell's rounds.
    fn skip_to(&self, cursor: Cursor) {
        for (slice, bucket) in self.buckets.iter().enumerate() {
            let waiters = lock(&bucket.waiters);
            bucket
                .fired
                .fetch_max(cursor.fired_rounds(slice), Ordering::Release);
            // A `Frames` that registered during the spell may be due already.
            waiters.wake_all();
        }
    }

    /// The first position due at or after now.
    fn cursor_now(&self) -> Cursor {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        Cursor::at_or_after(elapsed, self.period, self.slices())
    }
}

/// The driver of one clock: sleeps to each slice's due time in turn and fires it, never
/// skipping one while any `Frames` is registered (a late driver fires the slices it missed
/// at once, in order); with none registered, it waits for the next. It ends with the
/// runtime (the pool's shutdown drops it), never on its own.
async fn drive(clock: Arc<PeriodClock>) {
    let sleep = tokio::time::sleep_until(clock.epoch);
    tokio::pin!(sleep);
    let mut cursor = Cursor { round: 0, slice: 0 };
    loop {
        if clock.registered.load(Ordering::Acquire) == 0 {
            clock.first_registered.notified().await;
            cursor = clock.cursor_now();
            clock.skip_to(cursor);
            continue;
        }
        sleep.as_mut().reset(clock.due(cursor.slice, cursor.round));
        sleep.as_mut().await;
        clock.fire(cursor);
        cursor = cursor.next(clock.slices());
    }
}

/// A `Frames`' place in its clock: its slice, its waker there, and its first round. Dropping
/// it takes the waker out of the slice, so the clock never wakes a dropped `Frames`.
#[derive(Debug)]
pub(crate) struct Registration {
    clock: Arc<PeriodClock>,
    slice: usize,
    key: usize,
    waker: Arc<AtomicWaker>,
    first_round: u64,
    first_due: Instant,
}

impl Registration {
    /// The period.
    pub(crate) fn period(&self) -> Duration {
        self.clock.period
    }

    /// When frame 0 is due.
    pub(crate) fn first_due(&self) -> Instant {
        self.first_due
    }

    /// Whether frame `index` has fired; if not, registers `waker` to be woken when it does.
    pub(crate) fn poll_fired(&self, index: u64, waker: &std::task::Waker) -> bool {
        let round = self.first_round.saturating_add(index);
        let fired = &self.clock.buckets[self.slice].fired;
        if fired.load(Ordering::Acquire) > round {
            return true;
        }
        self.waker.register(waker);
        // Checked again after registering, so a fire in between is not missed.
        fired.load(Ordering::Acquire) > round
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let bucket = &self.clock.buckets[self.slice];
        lock(&bucket.waiters).remove(self.key);
        bucket.len.fetch_sub(1, Ordering::Relaxed);
        self.clock.registered.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
