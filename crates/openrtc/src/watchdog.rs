//! The watchdog: a plain thread that sees stalls while they happen and reports them.
//!
//! Every [`SCAN_INTERVAL`] it reads each worker thread's poll slot. A poll running past
//! [`scan::HANDOFF_AFTER`] makes it wake an idle worker thread to take over Tokio's timers
//! and I/O. A poll running past the threshold makes its session `slow` at once, while it
//! still blocks, after the stuck thread has been diagnosed from `/proc` (see `classify`) and,
//! with stack capture on, its stack captured (see `stack`). The probe itself counts every
//! finished stall when the poll returns and wakes the watchdog, which takes the stall from
//! the probe's queue and keeps its record in the session at once (start, exact duration,
//! worker, class); a second thread, the reporter, symbolizes its stack and fills in its
//! cause. The watchdog waits [`victims::VICTIM_GRACE`] for the polls of other sessions that
//! waited through the stall to report in (the probe times every wake), then the reporter
//! fills in the victims, writes the `[slow-session]` log line, and unloads debug info unused
//! for a minute. While a poll runs long, the watchdog reads its thread's scheduler statistics
//! every scan, so a stall during which the host kept the thread off the CPU is classed
//! `preempted` (see `classify::judge`). Once per [`CPU_WINDOW`] the watchdog closes every
//! session's CPU window, measures the process's CPU, checks the worker's memory levels and
//! recycles the allocator accounts of ended sessions.
//!
//! The work is split by job: `scan` reads the slots (slow marks, the hand-off wake, diagnosis
//! and stack capture, watching a long poll's thread time), `victims` holds finished stalls
//! through their victims' grace, `report` is the reporter thread (explaining and finishing
//! stalls, the `[slow-session]` line, unloading debug info) and `housekeeping` is the
//! once-a-window tick. This module owns the two threads and the loop that calls them in turn.

mod housekeeping;
mod report;
mod scan;
mod victims;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::RunError;
use crate::pool::PoolShared;
use crate::stack::capture;

use housekeeping::Housekeeping;
use report::{Report, ReportSender};
use scan::SlotScanner;
use victims::Victims;

pub(crate) use housekeeping::{CPU_WINDOW, RecentFigures};

/// How often the watchdog reads the poll slots: a stall is seen at most this late.
pub(crate) const SCAN_INTERVAL: Duration = Duration::from_millis(4);

/// A running watchdog: the scanning thread, and the thread that reports finished stalls.
#[derive(Debug)]
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    reporter: JoinHandle<()>,
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
            .spawn(move || report::report_stalls(&finished))
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

/// The scanning thread's state, one part per job.
struct Scanner {
    shared: Arc<PoolShared>,
    /// What the scans track of each worker thread's poll slot.
    slots: SlotScanner,
    /// Finished stalls waiting for the polls they delayed.
    victims: Victims,
    /// The CPU windows, the stalls of the last minute and the worker's memory levels.
    housekeeping: Housekeeping,
    /// Hands stalls to the reporter thread (or, once it is gone, reports them here).
    reports: ReportSender,
}

impl Scanner {
    fn new(shared: Arc<PoolShared>, reports: mpsc::Sender<Report>) -> Self {
        let housekeeping = Housekeeping::new(&shared);
        Self {
            slots: SlotScanner::new(&shared),
            victims: Victims::default(),
            housekeeping,
            shared,
            reports: ReportSender::new(reports),
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            // Finished stalls first: their records are due at once, and a scan may start
            // watching a new long poll on the same thread in place of a finished one.
            self.victims.report_finished_stalls(
                &self.shared,
                &mut self.slots,
                &mut self.reports,
                false,
            );
            self.slots.scan(&self.shared);
            if self.housekeeping.close_cpu_window_if_due(&self.shared) {
                self.slots.renew_diagnoses();
            }
            std::thread::park_timeout(SCAN_INTERVAL);
        }
        self.victims
            .report_finished_stalls(&self.shared, &mut self.slots, &mut self.reports, true);
        self.slots.unmark_all();
    }
}
