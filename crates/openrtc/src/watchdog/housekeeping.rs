//! The once-a-window tick of the watchdog: every [`CPU_WINDOW`] it closes each session's CPU
//! window (and, without the tracking allocator, its equal share of RSS), measures the
//! process's CPU, counts the stalls of the last minute, checks the worker's memory warning
//! and limit, and recycles the allocator accounts of ended sessions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::pool::PoolShared;
use crate::units::duration_ns;

/// The target of this module's log lines: the watchdog's, as before it was split, so filters
/// such as `RUST_LOG=openrtc::watchdog=warn` and the lines' prefix stay the same.
const LOG_TARGET: &str = "openrtc::watchdog";

/// The window over which session `cpu_pct` is measured.
pub(crate) const CPU_WINDOW: Duration = Duration::from_secs(1);

/// How many CPU windows make the "last minute" of stalls.
const STALL_WINDOWS: usize = 60;

/// What the tick keeps from one window to the next.
pub(super) struct Housekeeping {
    cpu_window_started_ns: u64,
    process_cpu_at_window_start: Duration,
    /// The stall total at the start and at the end of each window since, for the last 60
    /// windows (61 totals), oldest first.
    stall_totals: VecDeque<u64>,
    /// Whether the RSS warning may fire (re-armed when RSS falls back below the level).
    rss_warning_armed: bool,
    memory_limit_hit: bool,
}

impl Housekeeping {
    pub(super) fn new(shared: &PoolShared) -> Self {
        let cpu_window_started_ns = shared.probe().clock.now_ns();
        let stalls_at_start = shared.probe().stalls_total.load(Ordering::Relaxed);
        Self {
            cpu_window_started_ns,
            process_cpu_at_window_start: crate::os::process_cpu_time(),
            stall_totals: VecDeque::from([stalls_at_start]),
            rss_warning_armed: true,
            memory_limit_hit: false,
        }
    }

    /// Closes the CPU window once [`CPU_WINDOW`] has passed since it opened, with the rest of
    /// the tick; returns whether it did (a new window renews the diagnosis budget).
    pub(super) fn close_cpu_window_if_due(&mut self, shared: &PoolShared) -> bool {
        let now_ns = shared.probe().clock.now_ns();
        let window_ns = now_ns.saturating_sub(self.cpu_window_started_ns);
        if window_ns < duration_ns(CPU_WINDOW) {
            return false;
        }
        self.cpu_window_started_ns = now_ns;
        let sessions = shared.live_sessions();
        for cell in &sessions {
            cell.close_cpu_window(window_ns.min(now_ns.saturating_sub(cell.started_ns())));
        }

        let process_cpu = crate::os::process_cpu_time();
        let used = process_cpu.saturating_sub(self.process_cpu_at_window_start);
        self.process_cpu_at_window_start = process_cpu;
        let process_pct = used.as_nanos() as f64 * 100.0 / window_ns as f64;
        shared
            .process_cpu_pct_bits
            .store(process_pct.to_bits(), Ordering::Relaxed);

        let stalls_total = shared.probe().stalls_total.load(Ordering::Relaxed);
        self.stall_totals.push_back(stalls_total);
        if self.stall_totals.len() > STALL_WINDOWS + 1 {
            self.stall_totals.pop_front();
        }
        // The front is the total a minute ago (or at start, in the first minute).
        let minute_ago = self.stall_totals.front().copied().unwrap_or(0);
        shared
            .stalls_last_minute
            .store(stalls_total - minute_ago, Ordering::Relaxed);

        let rss_bytes = crate::os::resident_set_bytes();
        if !crate::alloc::is_installed() && !sessions.is_empty() {
            let share = rss_bytes / sessions.len() as u64;
            for cell in &sessions {
                cell.note_rss_share(share);
            }
        }
        self.check_worker_memory(shared, rss_bytes);

        let probe = Arc::clone(shared.probe());
        crate::alloc::accounts::recycle(probe.pool_id(), |session_key| {
            probe.claimed_slots().iter().any(|slot| {
                slot.read()
                    .is_some_and(|poll| poll.session_key == session_key)
            })
        });
        true
    }

    /// Warns once per crossing of the RSS warning level; drains the worker past its limit.
    fn check_worker_memory(&mut self, shared: &PoolShared, rss_bytes: u64) {
        let config = &shared.config;
        if let Some(warn_bytes) = config.memory_warn_bytes {
            if rss_bytes >= warn_bytes && self.rss_warning_armed {
                self.rss_warning_armed = false;
                tracing::warn!(
                    target: LOG_TARGET,
                    event = "memory_warn",
                    worker = config.worker_name.as_str(),
                    rss_bytes,
                    warn_bytes,
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
                    target: LOG_TARGET,
                    event = "memory_limit",
                    worker = config.worker_name.as_str(),
                    rss_bytes,
                    limit_bytes,
                    "[memory-limit] worker RSS {} crossed its limit of {}: draining, then exiting",
                    crate::units::format_mib(rss_bytes),
                    crate::units::format_mib(limit_bytes)
                );
                shared.events.emit(crate::events::Event::WorkerMemoryLimit {
                    rss_bytes,
                    limit_bytes,
                });
                shared.begin_drain(crate::pool::Control::MemoryLimit {
                    rss_bytes,
                    limit_bytes,
                });
            }
        }
    }
}
