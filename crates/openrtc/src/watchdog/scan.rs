//! Slot scanning: the watchdog's pass over every worker thread's poll slot.
//!
//! A poll running past [`HANDOFF_AFTER`] makes it wake an idle worker thread (and from then
//! on its thread's scheduler statistics are read every scan); a poll running past the
//! threshold is diagnosed from `/proc` (and, with stack capture on, its stack captured) while
//! it still blocks, within a budget of [`DIAGNOSES_PER_WINDOW`], and its session is marked
//! `slow`. A mark is cleared when the slot's sequence number moves on.

use std::sync::Arc;
use std::time::Duration;

use crate::classify::{StallDiagnosis, ThreadTime, WatchedTime};
use crate::pool::PoolShared;
use crate::session::SessionCell;
use crate::stack::capture::{self, RawStack};
use crate::units::duration_ns;

/// A poll running this long makes the watchdog wake an idle worker thread (or the threshold,
/// if that is shorter). Tokio drives its timers and I/O from whichever worker thread parked
/// on them last; a worker that wakes from driving them with one task to run does not wake
/// another, so when that task blocks, every timer and socket in the process waits for it even
/// while other worker threads sit idle. The woken thread runs a no-op task, parks again, and
/// takes over the driving.
pub(super) const HANDOFF_AFTER: Duration = Duration::from_millis(5);

/// How long the watchdog waits for a stuck thread to take the capture signal. A thread in
/// uninterruptible sleep (`D`) takes it only when it wakes: the stall is then recorded without
/// a stack, with a note saying so.
const CAPTURE_DEADLINE: Duration = Duration::from_millis(20);

/// How far apart the two CPU-clock readings of a stuck thread are taken.
const DIAGNOSE_INTERVAL: Duration = Duration::from_millis(3);

/// At most this many stalls are diagnosed per CPU window (one second): a storm of stalls
/// costs the watchdog at most this many × [`DIAGNOSE_INTERVAL`] of waiting (60 ms a second),
/// a few small `/proc` reads each and, with stack capture on, as many signals to stuck
/// threads (a few microseconds each on the stuck thread) and symbolizations on the reporter
/// thread (tens of microseconds each once the line tables are loaded). Stalls past the budget
/// are counted and logged as usual, without a cause.
const DIAGNOSES_PER_WINDOW: u32 = 20;

/// What the watchdog tracks of one worker thread's poll slot.
#[derive(Default)]
struct SlotWatch {
    /// The session marked as blocking now, and the poll that does it.
    marked: Option<Marked>,
    /// The last stall diagnosed in progress, until its end is reported. Kept apart from
    /// `marked` because a scan may unmark a poll that has just returned before its stall is
    /// reported.
    diagnosed: Option<Diagnosed>,
    /// The poll (its sequence number) for which an idle worker thread was last woken.
    handed_off: Option<u64>,
    /// The scheduler statistics of the long poll running now, first and latest reading.
    watching: Option<Watching>,
    /// `/proc/self/task/<tid>/schedstat` of the slot's thread, once its tid is known.
    schedstat: Option<std::path::PathBuf>,
    /// `/proc/self/task/<tid>/stat` of the slot's thread, for its state letter.
    stat: Option<std::path::PathBuf>,
}

/// A long poll's thread, watched from its first scan past [`HANDOFF_AFTER`] while it runs.
struct Watching {
    seq: u64,
    first: (u64, ThreadTime),
    latest: (u64, ThreadTime),
    /// Whether every reading found the thread runnable.
    runnable_throughout: bool,
}

impl Watching {
    /// What the thread did between the first and the latest reading.
    fn watched(&self, clock: &crate::probe::Clock) -> WatchedTime {
        WatchedTime {
            watched_ns: clock.nanos_between(self.first.0, self.latest.0),
            spent: self.latest.1.since(self.first.1),
            runnable_throughout: self.runnable_throughout,
        }
    }
}

impl SlotWatch {
    /// Reads the scheduler statistics of `slot`'s thread for the long poll `seq`: the first
    /// reading of a new poll starts watching it, later ones move its latest reading.
    fn note_thread_time(&mut self, slot: &crate::probe::PollSlot, seq: u64, now_raw: u64) {
        if self.schedstat.is_none() && slot.tid() != 0 {
            self.schedstat = Some(crate::classify::thread_file(slot.tid(), "schedstat"));
            self.stat = Some(crate::classify::thread_file(slot.tid(), "stat"));
        }
        let runnable = self
            .stat
            .as_deref()
            .and_then(crate::classify::read_thread_state)
            == Some('R');
        let Some(time) = self
            .schedstat
            .as_deref()
            .and_then(crate::classify::read_thread_time)
        else {
            return;
        };
        // A reading taken after the poll ended would count the thread's idle time as watched.
        if slot.read().map(|poll| poll.seq) != Some(seq) {
            return;
        }
        match &mut self.watching {
            Some(watching) if watching.seq == seq => {
                watching.latest = (now_raw, time);
                watching.runnable_throughout &= runnable;
            }
            _ => {
                self.watching = Some(Watching {
                    seq,
                    first: (now_raw, time),
                    latest: (now_raw, time),
                    runnable_throughout: runnable,
                });
            }
        }
    }

    /// Unmarks the marked session if its poll (by sequence number) is `over`.
    fn unmark_if(&mut self, over: impl FnOnce(u64) -> bool) {
        if let Some(marked) = self.marked.take_if(|marked| over(marked.seq)) {
            marked.cell.set_blocking_since_ns(0);
        }
    }
}

/// A stall diagnosed while in progress: which poll (its slot sequence number), and why.
pub(super) struct Diagnosed {
    pub(super) seq: u64,
    pub(super) diagnosis: StallDiagnosis,
    /// The raw stack, symbolized only when the stall is reported (the stuck thread is let go
    /// first).
    pub(super) stack: Option<Result<RawStack, capture::Failed>>,
}

/// A session the watchdog marked as blocking now, and the poll that does it.
struct Marked {
    seq: u64,
    cell: Arc<SessionCell>,
}

/// What the scans track of every worker thread's poll slot, and the means to act on it.
pub(super) struct SlotScanner {
    /// One per claimed poll slot, in slot order.
    slots: Vec<SlotWatch>,
    /// How long a poll runs before an idle worker thread is woken, in clock ticks.
    handoff_ticks: u64,
    /// The runtime, once it runs: idle worker threads are woken through it.
    runtime: Option<tokio::runtime::Handle>,
    /// Diagnoses left in this CPU window.
    diagnoses_left: u32,
    /// How long a poll runs before the worker gives up on its thread (`restart_after`), in
    /// clock ticks.
    restart_ticks: Option<u64>,
    /// Whether the worker has given up on a blocked thread (it does so once).
    gave_up: bool,
}

impl SlotScanner {
    pub(super) fn new(shared: &PoolShared) -> Self {
        let handoff_ticks = shared
            .probe()
            .clock
            .nanos_to_ticks(duration_ns(HANDOFF_AFTER))
            .min(shared.probe().threshold_ticks);
        Self {
            slots: Vec::new(),
            handoff_ticks,
            runtime: None,
            diagnoses_left: DIAGNOSES_PER_WINDOW,
            restart_ticks: shared
                .config
                .restart_after
                .map(|after| shared.probe().clock.nanos_to_ticks(duration_ns(after))),
            gave_up: false,
        }
    }

    /// Marks sessions whose poll runs past the threshold, and unmarks those whose poll ended;
    /// wakes an idle worker thread when a poll runs past [`HANDOFF_AFTER`].
    pub(super) fn scan(&mut self, shared: &PoolShared) {
        let probe = Arc::clone(shared.probe());
        let now_raw = probe.clock.raw();
        let slots = probe.claimed_slots();
        if self.slots.len() < slots.len() {
            self.slots.resize_with(slots.len(), SlotWatch::default);
        }
        for (slot, watch) in slots.iter().zip(&mut self.slots) {
            let poll = slot.read();
            watch.unmark_if(|seq| poll.map(|poll| poll.seq) != Some(seq));
            let Some(poll) = poll else { continue };
            let running_ticks = now_raw.saturating_sub(poll.started_raw);
            if running_ticks >= self.handoff_ticks && watch.handed_off != Some(poll.seq) {
                watch.handed_off = Some(poll.seq);
                wake_an_idle_worker(&mut self.runtime, shared);
            }
            if running_ticks >= self.handoff_ticks {
                watch.note_thread_time(slot, poll.seq, probe.clock.raw());
            }
            if !self.gave_up
                && self
                    .restart_ticks
                    .is_some_and(|restart_ticks| running_ticks >= restart_ticks)
            {
                self.gave_up = true;
                give_up_on_blocked_thread(shared, slot, watch, poll, running_ticks);
            }
            if watch.marked.is_some() || running_ticks < probe.threshold_ticks {
                continue;
            }
            let Some(cell) = shared.session(poll.session_key) else {
                continue;
            };
            // Examine the stuck thread first (only now, with a stall in progress), then
            // publish the stall with its cause, if the same poll is still running: a
            // diagnosis taken after the poll returned would describe something else.
            let diagnosed_now = if self.diagnoses_left > 0 {
                self.diagnoses_left -= 1;
                let diagnosis = crate::classify::diagnose(slot.tid(), DIAGNOSE_INTERVAL);
                // After /proc is read: the signal interrupts the call it is in.
                let stack = shared
                    .config
                    .stack_capture
                    .then(|| capture::capture(slot.tid(), slot.stack(), CAPTURE_DEADLINE));
                if slot.read().map(|now| now.seq) != Some(poll.seq) {
                    continue;
                }
                Some(Diagnosed {
                    seq: poll.seq,
                    diagnosis,
                    stack,
                })
            } else {
                None
            };
            cell.set_blocking_since_ns(probe.clock.since_epoch_ns(poll.started_raw));
            watch.marked = Some(Marked {
                seq: poll.seq,
                cell,
            });
            // Over budget, keep what is there: it may be an earlier stall of this thread
            // whose end is still queued (its sequence number tells them apart).
            if diagnosed_now.is_some() {
                watch.diagnosed = diagnosed_now;
            }
        }
    }

    /// Gives a new CPU window its budget of diagnoses.
    pub(super) fn renew_diagnoses(&mut self) {
        self.diagnoses_left = DIAGNOSES_PER_WINDOW;
    }

    /// Takes what the scans saw of the finished poll `seq` on `worker` while it ran, and
    /// unmarks its session: its diagnosis, and how its thread spent the watched part.
    pub(super) fn take_finished(
        &mut self,
        worker: u32,
        seq: u64,
        clock: &crate::probe::Clock,
    ) -> (Option<Diagnosed>, Option<WatchedTime>) {
        match self.slots.get_mut(worker as usize) {
            Some(watch) => {
                watch.unmark_if(|marked| marked == seq);
                (
                    watch.diagnosed.take_if(|diagnosed| diagnosed.seq == seq),
                    watch
                        .watching
                        .take_if(|watching| watching.seq == seq)
                        .map(|watching| watching.watched(clock)),
                )
            }
            None => (None, None),
        }
    }

    /// Unmarks every marked session (when the watchdog stops).
    pub(super) fn unmark_all(&mut self) {
        for slot in &mut self.slots {
            slot.unmark_if(|_| true);
        }
    }
}

/// Logs the session whose poll has held `slot`'s thread past `restart_after`, with the stack
/// the watchdog captured while it stalled (if it did), and drains the worker: a thread stuck
/// inside a poll cannot be taken back, so its supervisor must restart the worker.
fn give_up_on_blocked_thread(
    shared: &PoolShared,
    slot: &crate::probe::PollSlot,
    watch: &SlotWatch,
    poll: crate::probe::PollInProgress,
    running_ticks: u64,
) {
    let blocked_ms = shared.probe().clock.ticks_to_nanos(running_ticks) / crate::units::NS_PER_MS;
    let session_id = crate::session::session_id(poll.session_key);
    let cell = shared.session(poll.session_key);
    let stack = watch
        .diagnosed
        .as_ref()
        .filter(|diagnosed| diagnosed.seq == poll.seq)
        .and_then(|diagnosed| diagnosed.stack.as_ref())
        .and_then(|stack| stack.as_ref().ok())
        .map(|raw| {
            crate::stack::symbols::symbolize(raw)
                .frames
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" <- ")
        });
    let stack = stack.unwrap_or_else(|| "(no stack was captured)".to_owned());
    let (agent, tenant) = cell
        .as_ref()
        .map_or(("?", "?"), |cell| (cell.agent(), cell.tenant()));
    tracing::error!(
        target: "openrtc::watchdog",
        event = "worker_blocked",
        worker = shared.config.worker_name.as_str(),
        worker_thread = slot.worker(),
        tid = slot.tid(),
        session_id = %session_id,
        agent,
        tenant,
        blocked_ms,
        stack = stack.as_str(),
        "[blocked-worker] worker thread {} (tid {}) has been inside a poll of session {session_id} \
         (agent {agent}, tenant {tenant}) for {blocked_ms} ms, past restart_after: draining, then \
         exiting for the supervisor to restart the worker; stack: {stack}",
        slot.worker(),
        slot.tid(),
    );
    shared.begin_drain(crate::pool::Control::BlockedWorker {
        worker: slot.worker(),
        session_key: poll.session_key,
        blocked_ms,
    });
}

/// Wakes a parked worker thread, if one is parked, by giving it a no-op task: when it parks
/// again it takes over driving timers and I/O from a thread that may be stuck (see
/// [`HANDOFF_AFTER`]). A task spawned from outside the runtime goes to its shared queue and
/// wakes a parked worker; if none is parked, it is run by the next free one. `runtime` caches
/// the runtime's handle once it runs.
fn wake_an_idle_worker(runtime: &mut Option<tokio::runtime::Handle>, shared: &PoolShared) {
    if runtime.is_none() {
        *runtime = shared.runtime();
    }
    if let Some(runtime) = runtime {
        drop(runtime.spawn(async {}));
    }
}
