//! The watchdog: a plain thread that sees stalls while they happen and reports them.
//!
//! Every [`SCAN_INTERVAL`] it reads each worker thread's poll slot. A poll running past
//! [`HANDOFF_AFTER`] makes it wake an idle worker thread to take over Tokio's timers and I/O.
//! A poll running past the threshold makes its session `slow` at once, while it still
//! blocks, after the stuck thread has been diagnosed from `/proc` (see `classify`) and, with
//! stack capture on, its stack captured (see `stack`). The probe itself counts every finished
//! stall when the poll returns and wakes the watchdog, which takes the stall from the probe's
//! queue and keeps its record in the session at once (start, exact duration, worker, class);
//! a second thread, the reporter, symbolizes its stack and fills in its cause. The watchdog
//! waits [`VICTIM_GRACE`] for the polls of other sessions that waited through the stall to
//! report in (the probe times every wake), then the reporter fills in the victims, writes the
//! `[slow-session]` log line, and unloads debug info unused for a minute. While a poll runs
//! long, the watchdog reads its thread's scheduler statistics every scan, so a stall during
//! which the host kept the thread off the CPU is classed `preempted` (see `classify::judge`). Once per [`CPU_WINDOW`] the watchdog closes every session's CPU window, measures
//! the process's CPU, checks the worker's memory levels and recycles the allocator accounts
//! of ended sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::RunError;
use crate::classify::{StallClass, StallDiagnosis, ThreadTime, WatchedTime};
use crate::pool::PoolShared;
use crate::probe::StallEvent;
use crate::session::{KEPT_VICTIMS, SessionCell, StallCause, StallRecord, Victim};
use crate::stack::capture::{self, RawStack};
use crate::stack::symbols;
use crate::units::{duration_ns, ns_to_ms};

/// How often the watchdog reads the poll slots: a stall is seen at most this late.
pub(crate) const SCAN_INTERVAL: Duration = Duration::from_millis(4);

/// The window over which session `cpu_pct` is measured.
pub(crate) const CPU_WINDOW: Duration = Duration::from_secs(1);

/// How many CPU windows make the "last minute" of stalls.
const STALL_WINDOWS: usize = 60;

/// A running watchdog: the scanning thread, and the thread that reports finished stalls.
#[derive(Debug)]
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl Watching {
    /// What the thread did between the first and the latest reading.
    fn watched(&self, clock: &crate::probe::Clock) -> WatchedTime {
        WatchedTime {
            watched_ns: clock.nanos_between(self.first.0, self.latest.0),
            spent: self.latest.1.since(self.first.1),
        }
    }
}

/// A poll running this long makes the watchdog wake an idle worker thread (or the threshold,
/// if that is shorter). Tokio drives its timers and I/O from whichever worker thread parked
/// on them last; a worker that wakes from driving them with one task to run does not wake
/// another, so when that task blocks, every timer and socket in the process waits for it even
/// while other worker threads sit idle. The woken thread runs a no-op task, parks again, and
/// takes over the driving.
const HANDOFF_AFTER: Duration = Duration::from_millis(5);

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
}

/// A long poll's thread, watched from its first scan past [`HANDOFF_AFTER`] while it runs.
struct Watching {
    seq: u64,
    first: (u64, ThreadTime),
    latest: (u64, ThreadTime),
}

impl SlotWatch {
    /// Reads the scheduler statistics of `slot`'s thread for the long poll `seq`: the first
    /// reading of a new poll starts watching it, later ones move its latest reading.
    fn note_thread_time(&mut self, slot: &crate::probe::PollSlot, seq: u64, now_raw: u64) {
        if self.schedstat.is_none() && slot.tid() != 0 {
            self.schedstat = Some(format!("/proc/self/task/{}/schedstat", slot.tid()).into());
        }
        let Some(time) = self
            .schedstat
            .as_deref()
            .and_then(crate::classify::read_thread_time)
        else {
            return;
        };
        match &mut self.watching {
            Some(watching) if watching.seq == seq => watching.latest = (now_raw, time),
            _ => {
                self.watching = Some(Watching {
                    seq,
                    first: (now_raw, time),
                    latest: (now_raw, time),
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
struct Diagnosed {
    seq: u64,
    diagnosis: StallDiagnosis,
    /// The raw stack, symbolized only when the stall is reported (the stuck thread is let go
    /// first).
    stack: Option<Result<RawStack, capture::Failed>>,
}

/// How long the watchdog waits for a stuck thread to take the capture signal. A thread in
/// uninterruptible sleep (`D`) takes it only when it wakes: the stall is then recorded without
/// a stack, with a note saying so.
const CAPTURE_DEADLINE: Duration = Duration::from_millis(20);

/// How long a finished stall waits for the polls it delayed before it is logged and kept:
/// they run on its thread right after it, so they report within microseconds unless the
/// thread has a long queue. A delay reported later is not attached to the stall.
const VICTIM_GRACE: Duration = Duration::from_millis(50);

/// How long the debug info stays loaded after the last symbolization.
const SYMBOLS_KEPT: Duration = Duration::from_secs(60);

/// How far apart the two CPU-clock readings of a stuck thread are taken.
const DIAGNOSE_INTERVAL: Duration = Duration::from_millis(3);

/// At most this many stalls are diagnosed per CPU window (one second): a storm of stalls
/// costs the watchdog at most this many × [`DIAGNOSE_INTERVAL`] of waiting (60 ms a second),
/// a few small `/proc` reads each and, with stack capture on, as many signals to stuck
/// threads (a few microseconds each on the stuck thread) and symbolizations on the reporter
/// thread (tens of microseconds each once the line tables are loaded). Stalls past the budget
/// are counted and logged as usual, without a cause.
const DIAGNOSES_PER_WINDOW: u32 = 20;

/// A session the watchdog marked as blocking now, and the poll that does it.
struct Marked {
    seq: u64,
    cell: Arc<SessionCell>,
}

impl Watchdog {
    pub(crate) fn start(shared: Arc<PoolShared>) -> Result<Self, RunError> {
        if shared.config.stack_capture {
            // Install the handler now: a failure shows in each stall's note.
            let _ = capture::install();
        }
        let probe = Arc::clone(shared.probe());
        let (reports, finished) = mpsc::channel();
        let reporter = std::thread::Builder::new()
            .name(format!("{}-stalls", shared.config.worker_name))
            .spawn(move || report_stalls(&finished))
            .map_err(|source| RunError::Thread {
                name: "stall reporter",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("{}-watchdog", shared.config.worker_name))
            .spawn({
                let stop = Arc::clone(&stop);
                move || Scanner::new(shared, reports).run(&stop)
            })
            .map_err(|source| RunError::Thread {
                name: "watchdog",
                source,
            })?;
        probe.set_watchdog(thread.thread().clone());
        Ok(Self {
            stop,
            thread,
            reporter,
        })
    }

    /// Stops the scanning thread after one last pass, then the reporter once it has reported
    /// every finished stall, so none goes unlogged.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("the watchdog thread panicked");
        }
        // The scanner's end dropped the channel's sender: the reporter drains it and returns.
        if self.reporter.join().is_err() {
            tracing::error!("the stall reporter thread panicked");
        }
    }
}

struct Scanner {
    shared: Arc<PoolShared>,
    /// One per claimed poll slot, in slot order.
    slots: Vec<SlotWatch>,
    /// How long a poll runs before an idle worker thread is woken, in clock ticks.
    handoff_ticks: u64,
    /// The runtime, once it runs: idle worker threads are woken through it.
    runtime: Option<tokio::runtime::Handle>,
    /// Diagnoses left in this CPU window.
    diagnoses_left: u32,
    cpu_window_started_ns: u64,
    process_cpu_at_window_start: Duration,
    /// The stall total at the start and at the end of each window since, for the last 60
    /// windows (61 totals), oldest first.
    stall_totals: VecDeque<u64>,
    /// Whether the RSS warning may fire (re-armed when RSS falls back below the level).
    rss_warning_armed: bool,
    memory_limit_hit: bool,
    /// Finished stalls waiting for the polls they delayed, oldest first.
    pending: VecDeque<Pending>,
    /// To the reporter thread, which symbolizes, logs and completes each stall in turn: the
    /// first symbolization loads debug info (tens of milliseconds), which would hold up
    /// scanning.
    reports: mpsc::Sender<Report>,
    /// Reports handled on this thread once the reporter is gone.
    orphaned: Reporter,
}

/// A finished stall held back while the polls it delayed report in.
struct Pending {
    stall: StallEvent,
    /// Its class, if it was diagnosed in progress.
    class: Option<StallClass>,
    /// How its thread spent the part of it the watchdog watched.
    watched: Option<WatchedTime>,
    /// Each delayed session once, with its longest wait.
    victims: Vec<(Arc<SessionCell>, u64)>,
}

/// What the scanner hands the reporter thread, in order: a stall is explained before it is
/// finished.
enum Report {
    /// A diagnosed stall that has ended: symbolize its stack and fill in its cause.
    Explain {
        cell: Arc<SessionCell>,
        worker: u32,
        seq: u64,
        diagnosed: Diagnosed,
    },
    /// A stall whose victims have had their grace period: fill them in and log the stall.
    Finish(Pending),
}

impl Scanner {
    fn new(shared: Arc<PoolShared>, reports: mpsc::Sender<Report>) -> Self {
        let cpu_window_started_ns = shared.probe().clock.now_ns();
        let stalls_at_start = shared.probe().stalls_total.load(Ordering::Relaxed);
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
            shared,
            cpu_window_started_ns,
            process_cpu_at_window_start: crate::os::process_cpu_time(),
            stall_totals: VecDeque::from([stalls_at_start]),
            rss_warning_armed: true,
            memory_limit_hit: false,
            pending: VecDeque::new(),
            reports,
            orphaned: Reporter::default(),
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            self.scan_slots();
            self.report_finished_stalls(false);
            self.close_cpu_window_if_due();
            std::thread::park_timeout(SCAN_INTERVAL);
        }
        self.report_finished_stalls(true);
        for slot in &mut self.slots {
            slot.unmark_if(|_| true);
        }
    }

    /// Marks sessions whose poll runs past the threshold, and unmarks those whose poll ended;
    /// wakes an idle worker thread when a poll runs past [`HANDOFF_AFTER`].
    fn scan_slots(&mut self) {
        let probe = Arc::clone(self.shared.probe());
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
                wake_an_idle_worker(&mut self.runtime, &self.shared);
            }
            if running_ticks >= self.handoff_ticks {
                watch.note_thread_time(slot, poll.seq, probe.clock.raw());
            }
            if watch.marked.is_some() || running_ticks < probe.threshold_ticks {
                continue;
            }
            let Some(cell) = self.shared.session(poll.session_key) else {
                continue;
            };
            // Examine the stuck thread first (only now, with a stall in progress), then
            // publish the stall with its cause, if the same poll is still running: a
            // diagnosis taken after the poll returned would describe something else.
            let diagnosed_now = if self.diagnoses_left > 0 {
                self.diagnoses_left -= 1;
                let diagnosis = crate::classify::diagnose(slot.tid(), DIAGNOSE_INTERVAL);
                // After /proc is read: the signal interrupts the call it is in.
                let stack = self
                    .shared
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

    /// Takes finished stalls from the probe (unmarking their sessions at once), attaches the
    /// polls they delayed, and reports each stall once [`VICTIM_GRACE`] has passed since it
    /// ended (all of them when `finishing`).
    fn report_finished_stalls(&mut self, finishing: bool) {
        let probe = Arc::clone(self.shared.probe());
        let threshold_ns = probe.clock.ticks_to_nanos(probe.threshold_ticks);
        while let Some(stall) = probe.stalls.pop() {
            // The poll has returned: unmark its session now rather than at the next scan, so
            // no snapshot shows it blocking once its stall is over.
            let (diagnosed, watched) = match self.slots.get_mut(stall.worker as usize) {
                Some(watch) => {
                    watch.unmark_if(|seq| seq == stall.seq);
                    (
                        watch
                            .diagnosed
                            .take_if(|diagnosed| diagnosed.seq == stall.seq),
                        watch
                            .watching
                            .take_if(|watching| watching.seq == stall.seq)
                            .map(|watching| watching.watched(&probe.clock)),
                    )
                }
                None => (None, None),
            };
            let class = crate::classify::judge(
                diagnosed
                    .as_ref()
                    .map(|diagnosed| diagnosed.diagnosis.class),
                watched,
                stall.duration_ns,
                threshold_ns,
            );
            if class == Some(StallClass::Preempted) {
                self.shared.stalls_preempted.fetch_add(1, Ordering::Relaxed);
            }
            // The record goes in at once; its cause and victims are filled in when known. A
            // stall without a slot (seq 0) can have neither.
            stall.cell.push_stall(StallRecord {
                seq: stall.seq,
                started_ns: stall.ended_ns.saturating_sub(stall.duration_ns),
                duration_ns: stall.duration_ns,
                ended_ns: stall.ended_ns,
                worker: stall.worker,
                class,
                syscall: diagnosed
                    .as_ref()
                    .and_then(|diagnosed| diagnosed.diagnosis.syscall),
                watched,
                cause: None,
                cause_pending: diagnosed.is_some(),
                victim_count: 0,
                victims: Arc::new([]),
                victims_pending: stall.seq != 0,
            });
            if let Some(mut diagnosed) = diagnosed {
                if let Some(class) = class {
                    diagnosed.diagnosis.class = class;
                }
                self.send(Report::Explain {
                    cell: Arc::clone(&stall.cell),
                    worker: stall.worker,
                    seq: stall.seq,
                    diagnosed,
                });
            }
            self.pending.push_back(Pending {
                stall,
                class,
                watched,
                victims: Vec::new(),
            });
        }
        while let Some(delay) = probe.delays.pop() {
            let Some(pending) = self.pending.iter_mut().find(|pending| {
                pending.stall.worker == delay.worker && pending.stall.seq == delay.stall_seq
            }) else {
                // Its stall was reported already: the delay came in past the grace period.
                continue;
            };
            match pending
                .victims
                .iter_mut()
                .find(|(cell, _)| cell.key() == delay.cell.key())
            {
                Some((_, delay_ns)) => *delay_ns = (*delay_ns).max(delay.delay_ns),
                None => pending.victims.push((delay.cell, delay.delay_ns)),
            }
        }
        let now_ns = probe.clock.now_ns();
        let grace_ns = duration_ns(VICTIM_GRACE);
        while let Some(pending) = self.pending.front() {
            if !finishing && now_ns.saturating_sub(pending.stall.ended_ns) < grace_ns {
                break;
            }
            if let Some(pending) = self.pending.pop_front() {
                self.send(Report::Finish(pending));
            }
        }
    }

    /// Hands a report to the reporter thread, or handles it here if that thread is gone (it
    /// panicked), rather than lose it.
    fn send(&mut self, report: Report) {
        if let Err(mpsc::SendError(report)) = self.reports.send(report) {
            self.orphaned.handle(report);
        }
    }

    fn close_cpu_window_if_due(&mut self) {
        let now_ns = self.shared.probe().clock.now_ns();
        let window_ns = now_ns.saturating_sub(self.cpu_window_started_ns);
        if window_ns < duration_ns(CPU_WINDOW) {
            return;
        }
        self.cpu_window_started_ns = now_ns;
        self.diagnoses_left = DIAGNOSES_PER_WINDOW;
        let sessions = self.shared.live_sessions();
        for cell in &sessions {
            cell.close_cpu_window(window_ns.min(now_ns.saturating_sub(cell.started_ns())));
        }

        let process_cpu = crate::os::process_cpu_time();
        let used = process_cpu.saturating_sub(self.process_cpu_at_window_start);
        self.process_cpu_at_window_start = process_cpu;
        let process_pct = used.as_nanos() as f64 * 100.0 / window_ns as f64;
        self.shared
            .process_cpu_pct_bits
            .store(process_pct.to_bits(), Ordering::Relaxed);

        let stalls_total = self.shared.probe().stalls_total.load(Ordering::Relaxed);
        self.stall_totals.push_back(stalls_total);
        if self.stall_totals.len() > STALL_WINDOWS + 1 {
            self.stall_totals.pop_front();
        }
        // The front is the total a minute ago (or at start, in the first minute).
        let minute_ago = self.stall_totals.front().copied().unwrap_or(0);
        self.shared
            .stalls_last_minute
            .store(stalls_total - minute_ago, Ordering::Relaxed);

        let rss_bytes = crate::os::resident_set_bytes();
        if !crate::alloc::is_installed() && !sessions.is_empty() {
            let share = rss_bytes / sessions.len() as u64;
            for cell in &sessions {
                cell.note_rss_share(share);
            }
        }
        self.check_worker_memory(rss_bytes);

        let probe = Arc::clone(self.shared.probe());
        crate::alloc::accounts::recycle(probe.pool_id(), |session_key| {
            probe.claimed_slots().iter().any(|slot| {
                slot.read()
                    .is_some_and(|poll| poll.session_key == session_key)
            })
        });
    }

    /// Warns once per crossing of the RSS warning level; drains the worker past its limit.
    fn check_worker_memory(&mut self, rss_bytes: u64) {
        let config = &self.shared.config;
        if let Some(warn_bytes) = config.memory_warn_bytes {
            if rss_bytes >= warn_bytes && self.rss_warning_armed {
                self.rss_warning_armed = false;
                tracing::warn!(
                    "[memory-warn] worker RSS {} crossed its warning level of {}",
                    crate::units::format_mib(rss_bytes),
                    crate::units::format_mib(warn_bytes)
                );
            } else if rss_bytes < warn_bytes {
                self.rss_warning_armed = true;
            }
        }
        if let Some(limit_bytes) = config.memory_limit_bytes {
            if rss_bytes >= limit_bytes && !self.memory_limit_hit {
                self.memory_limit_hit = true;
                tracing::error!(
                    "[memory-limit] worker RSS {} crossed its limit of {}: draining, then exiting",
                    crate::units::format_mib(rss_bytes),
                    crate::units::format_mib(limit_bytes)
                );
                self.shared.begin_drain(crate::pool::Control::MemoryLimit {
                    rss_bytes,
                    limit_bytes,
                });
            }
        }
    }
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

/// The reporter thread: handles what the scanner sends, in order, and unloads the debug info
/// once no stack has been symbolized for [`SYMBOLS_KEPT`]. Returns when the scanner has
/// stopped and every stall it sent is reported.
fn report_stalls(finished: &mpsc::Receiver<Report>) {
    let mut reporter = Reporter::default();
    loop {
        let until_unload = reporter.symbolized_at.map_or(SYMBOLS_KEPT, |at: Instant| {
            SYMBOLS_KEPT.saturating_sub(at.elapsed())
        });
        match finished.recv_timeout(until_unload) {
            Ok(report) => reporter.handle(report),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if reporter
            .symbolized_at
            .is_some_and(|at| at.elapsed() >= SYMBOLS_KEPT)
        {
            reporter.symbolized_at = None;
            symbols::unload();
        }
    }
}

/// The reporter's state: the causes explained for stalls not yet finished, and when a stack
/// was last symbolized.
#[derive(Default)]
struct Reporter {
    /// Causes by (worker, poll sequence number), until their stall is finished.
    explained: HashMap<(u32, u64), StallCause>,
    symbolized_at: Option<Instant>,
}

impl Reporter {
    fn handle(&mut self, report: Report) {
        match report {
            Report::Explain {
                cell,
                worker,
                seq,
                diagnosed,
            } => {
                if matches!(diagnosed.stack, Some(Ok(_))) {
                    self.symbolized_at = Some(Instant::now());
                }
                let cause = explain(diagnosed);
                cell.complete_stall(worker, seq, |record| {
                    record.cause = Some(cause.clone());
                    record.cause_pending = false;
                });
                self.explained.insert((worker, seq), cause);
            }
            Report::Finish(pending) => {
                let cause = self
                    .explained
                    .remove(&(pending.stall.worker, pending.stall.seq));
                finish(pending, cause);
            }
        }
    }
}

/// Completes a stall whose victims have reported in: charges the sessions it delayed, fills
/// in its victims and writes its `[slow-session]` line.
fn finish(pending: Pending, cause: Option<StallCause>) {
    let Pending {
        stall,
        class,
        watched,
        mut victims,
    } = pending;
    victims.sort_by(|(_, left), (_, right)| right.cmp(left));
    for (cell, delay_ns) in &victims {
        cell.note_delayed_by_stall(*delay_ns);
    }
    let kept: Arc<[Victim]> = victims
        .iter()
        .take(KEPT_VICTIMS)
        .map(|(cell, delay_ns)| Victim {
            session: cell.id(),
            delay_ns: *delay_ns,
        })
        .collect();
    stall
        .cell
        .complete_stall(stall.worker, stall.seq, |record| {
            record.victim_count = victims.len() as u64;
            record.victims = kept;
            record.victims_pending = false;
        });
    let mut because: Vec<String> = Vec::new();
    if let Some(cause) = &cause {
        because.push(cause.summary.to_string());
    } else if let Some(class) = class {
        because.push(class.to_string());
    }
    if let Some(watched) =
        watched.filter(|_| matches!(class, Some(StallClass::Cpu | StallClass::Preempted)))
    {
        because.push(describe_thread_time(
            watched,
            class == Some(StallClass::Preempted),
        ));
    }
    because.push(match victims.first() {
        None => "no other session delayed".to_owned(),
        Some((_, longest_ns)) => format!(
            "{} session{} delayed, up to {}ms",
            victims.len(),
            if victims.len() == 1 { "" } else { "s" },
            ns_to_ms(*longest_ns)
        ),
    });
    let stall_ms = ns_to_ms(stall.duration_ns);
    tracing::warn!(
        event = "slow_session",
        session_id = %stall.cell.id(),
        tenant = stall.cell.tenant(),
        agent = stall.cell.agent(),
        worker = stall.worker,
        stall_ms,
        class = class.map(StallClass::as_str),
        victim_count = victims.len(),
        "[slow-session] session_id={} tenant={} agent={} blocked worker {} for {stall_ms}ms ({})",
        stall.cell.id(),
        stall.cell.tenant(),
        stall.cell.agent(),
        stall.worker,
        because.join("; ")
    );
}

/// How a runnable thread spent the watched part of its stall, in words: `on a CPU 12ms of
/// 72ms watched, 60ms waiting for one` (and, when the host caused it, that it did).
fn describe_thread_time(watched: WatchedTime, preempted: bool) -> String {
    let mut words = format!(
        "on a CPU {}ms of {}ms watched, {}ms waiting for one",
        ns_to_ms(watched.spent.on_cpu_ns),
        ns_to_ms(watched.watched_ns),
        ns_to_ms(watched.spent.run_queue_ns)
    );
    if preempted {
        words.push_str(": the host kept the thread off the CPU, not counted against the session");
    }
    words
}

/// Turns a stall diagnosed in progress into its cause: symbolizes the stack, and says what
/// blocked in words (`sleep in std::thread::sleep at src/agents/blocker.rs:42`).
fn explain(diagnosed: Diagnosed) -> StallCause {
    let Diagnosed {
        diagnosis, stack, ..
    } = diagnosed;
    let (stack, stack_note) = match stack {
        None => (None, Some("stack capture is off".into())),
        Some(Ok(raw)) => {
            let stack = symbols::symbolize(&raw);
            let note = stack.top_user.is_none().then(|| {
                "no frame of the agent's code was found on the stack (is it built with frame \
                 pointers?)"
                    .into()
            });
            (Some(Arc::new(stack)), note)
        }
        Some(Err(failed)) => (None, Some(capture_failure(failed, &diagnosis).into())),
    };
    StallCause {
        summary: describe(&diagnosis, stack.as_deref()).into(),
        stack,
        stack_note,
    }
}

/// The diagnosis in words, naming the agent's blocking call and its place when the stack has
/// them: `io in <std::net::TcpStream as std::io::Read>::read at src/db.rs:17 on tcp 10.0.0.5:5432`.
fn describe(diagnosis: &StallDiagnosis, stack: Option<&crate::stack::Stack>) -> String {
    let (Some(call), Some(frame)) = (
        stack.and_then(crate::stack::Stack::blocking_call),
        stack.and_then(crate::stack::Stack::top_user_frame),
    ) else {
        return diagnosis.to_string();
    };
    let mut words = format!("{} in {call}", diagnosis.class);
    match frame.location() {
        Some(location) => words.push_str(&format!(" at {location}")),
        None if call != frame.function => words.push_str(&format!(" from {}", frame.function)),
        None => {}
    }
    if let Some(target) = &diagnosis.fd_target {
        words.push_str(&format!(" on {target}"));
    }
    words
}

/// Why a stack was not captured, in words for the stall's record.
fn capture_failure(failed: capture::Failed, diagnosis: &StallDiagnosis) -> String {
    match failed {
        capture::Failed::NotAnswered(deadline) => format!(
            "the thread did not take the capture signal within {} ms{}",
            deadline.as_millis(),
            match diagnosis.thread_state {
                Some('D') => " (it was in uninterruptible sleep)",
                Some('R') => " (it was waiting for a CPU)",
                _ => "",
            }
        ),
        capture::Failed::Unavailable(capture::Unavailable::Architecture) => {
            "stack capture is not available on this architecture".to_owned()
        }
        capture::Failed::Unavailable(capture::Unavailable::NoFreeSignal) => {
            "no real-time signal is free for stack capture".to_owned()
        }
        capture::Failed::NoStackBounds => "the thread's stack bounds are unknown".to_owned(),
        capture::Failed::ThreadGone => "the thread had exited".to_owned(),
    }
}
