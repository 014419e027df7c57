//! The once-a-window tick of the watchdog: every [`CPU_WINDOW`] it closes each session's CPU
//! window (and, without the tracking allocator, its equal share of RSS), measures the
//! process's CPU and the host's CPU steal, counts the stalls, child task ends and blocking
//! calls of the last minute, checks the worker's memory warning and limit, and recycles the
//! allocator accounts of ended sessions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pool::PoolShared;
use crate::units::duration_ns;

/// The target of this module's log lines: the watchdog's, as before it was split, so filters
/// such as `RUST_LOG=openrtc::watchdog=warn` and the lines' prefix stay the same.
const LOG_TARGET: &str = "openrtc::watchdog";

/// The window over which session `cpu_pct` is measured.
pub(crate) const CPU_WINDOW: Duration = Duration::from_secs(1);

/// How many CPU windows make the "last minute".
const MINUTE_WINDOWS: usize = 60;

/// The calls table's slots, `other` included.
const CALL_SLOTS: usize = crate::calls::MAX_LABELS + 1;

/// Figures of the last minute (or CPU window) the tick publishes for snapshots.
#[derive(Debug)]
pub(crate) struct RecentFigures {
    /// Child tasks that ended over the last minute.
    pub(crate) tasks_ended: AtomicU64,
    /// Of those, the ones that panicked.
    pub(crate) tasks_failed: AtomicU64,
    /// Blocking calls over the last minute, per slot of the worker's calls table.
    pub(crate) calls_blocking: [AtomicU64; CALL_SLOTS],
    /// The host's CPU steal over the last window, in % (f64 bits; NaN while unknown).
    pub(crate) host_steal_pct_bits: AtomicU64,
}

impl Default for RecentFigures {
    fn default() -> Self {
        Self {
            tasks_ended: AtomicU64::new(0),
            tasks_failed: AtomicU64::new(0),
            calls_blocking: std::array::from_fn(|_| AtomicU64::new(0)),
            host_steal_pct_bits: AtomicU64::new(f64::NAN.to_bits()),
        }
    }
}

impl RecentFigures {
    /// The host's CPU steal over the last window, if known.
    pub(crate) fn host_steal_pct(&self) -> Option<f64> {
        let pct = f64::from_bits(self.host_steal_pct_bits.load(Ordering::Relaxed));
        (!pct.is_nan()).then_some(pct)
    }
}

/// Running totals sampled at the end of each window, kept for the last minute: what each
/// grew by over it is the newest sample less the oldest.
struct LastMinute<const N: usize> {
    /// The totals at the start and at the end of each window since, for the last 60 windows
    /// (61 samples), oldest first.
    samples: VecDeque<[u64; N]>,
}

impl<const N: usize> LastMinute<N> {
    fn new(start: [u64; N]) -> Self {
        Self {
            samples: VecDeque::from([start]),
        }
    }

    /// Takes the totals at the end of a window; returns what each grew by over the last
    /// minute (since the start, in the first minute).
    fn push(&mut self, totals: [u64; N]) -> [u64; N] {
        self.samples.push_back(totals);
        if self.samples.len() > MINUTE_WINDOWS + 1 {
            self.samples.pop_front();
        }
        let oldest = self.samples.front().copied().unwrap_or(totals);
        std::array::from_fn(|index| totals[index].saturating_sub(oldest[index]))
    }
}

/// Child tasks ended and failed so far.
fn task_totals(shared: &PoolShared) -> [u64; 2] {
    let tasks = shared.tasks.snapshot();
    [
        tasks.completed_count + tasks.failed_count + tasks.cancelled_count,
        tasks.failed_count,
    ]
}

/// The share of `total` ticks that grew as `steal` ticks between two samples, in %.
fn steal_pct(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.0.checked_sub(before.0).filter(|total| *total > 0)?;
    let steal = after.1.checked_sub(before.1)?;
    Some(steal as f64 * 100.0 / total as f64)
}

/// What the tick keeps from one window to the next.
pub(super) struct Housekeeping {
    cpu_window_started_ns: u64,
    process_cpu_at_window_start: Duration,
    stalls: LastMinute<1>,
    tasks: LastMinute<2>,
    blocking_calls: LastMinute<CALL_SLOTS>,
    /// The host's total and steal CPU ticks at the window's start, if readable.
    host_ticks_at_window_start: Option<(u64, u64)>,
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
            stalls: LastMinute::new([stalls_at_start]),
            tasks: LastMinute::new(task_totals(shared)),
            blocking_calls: LastMinute::new(shared.calls.blocking_by_slot()),
            host_ticks_at_window_start: crate::os::read_host_cpu_ticks(),
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

        self.count_last_minute(shared);
        let host_ticks = crate::os::read_host_cpu_ticks();
        let steal = self
            .host_ticks_at_window_start
            .zip(host_ticks)
            .and_then(|(before, after)| steal_pct(before, after));
        self.host_ticks_at_window_start = host_ticks;
        shared
            .recent
            .host_steal_pct_bits
            .store(steal.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);

        let rss_bytes = crate::os::resident_set_bytes();
        if !crate::alloc::is_installed() && !sessions.is_empty() {
            let share = rss_bytes / sessions.len() as u64;
            for cell in &sessions {
                cell.note_rss_share(share);
            }
        }
        self.check_worker_memory(shared, rss_bytes);
        shared.release_isolated_tenants();

        let probe = Arc::clone(shared.probe());
        crate::alloc::accounts::recycle(probe.pool_id(), |session_key| {
            probe.claimed_slots().iter().any(|slot| {
                slot.read()
                    .is_some_and(|poll| poll.session_key == session_key)
            })
        });
        true
    }

    /// Publishes the stalls, child task ends and blocking calls of the last minute.
    fn count_last_minute(&mut self, shared: &PoolShared) {
        let stalls_total = shared.probe().stalls_total.load(Ordering::Relaxed);
        let [stalls] = self.stalls.push([stalls_total]);
        shared.stalls_last_minute.store(stalls, Ordering::Relaxed);
        let [ended, failed] = self.tasks.push(task_totals(shared));
        shared.recent.tasks_ended.store(ended, Ordering::Relaxed);
        shared.recent.tasks_failed.store(failed, Ordering::Relaxed);
        let blocking = self.blocking_calls.push(shared.calls.blocking_by_slot());
        for (slot, count) in shared.recent.calls_blocking.iter().zip(blocking) {
            slot.store(count, Ordering::Relaxed);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_minute_counts_what_grew_over_the_last_sixty_windows() {
        let mut window = LastMinute::new([0, 7]);
        assert_eq!(window.push([2, 8]), [2, 1]);
        let mut last = [0, 0];
        for tick in 2..=60 {
            last = window.push([2 * tick, 8]);
        }
        // Sixty windows: the oldest sample is still the start.
        assert_eq!(last, [120, 1]);
        // The sixty-first: the start has left the minute, the first window's end is oldest.
        assert_eq!(window.push([122, 8]), [120, 0]);
        // A total that went down (never, for these counters) counts as no growth.
        assert_eq!(LastMinute::new([5]).push([3]), [0]);
    }

    #[test]
    fn steal_is_a_share_of_all_ticks_in_the_window() {
        assert_eq!(steal_pct((1000, 10), (1200, 60)), Some(25.0));
        assert_eq!(steal_pct((1000, 10), (1000, 10)), None);
        assert_eq!(steal_pct((1000, 10), (900, 10)), None);
    }
}
