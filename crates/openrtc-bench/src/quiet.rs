//! Is the machine quiet enough to measure? Figures near saturation move a lot with other work
//! on the machine (a build, say), so each measurement of a sustainable count first waits for
//! the machine to be idle, and is judged afterwards by the CPU that other processes used
//! during its window: the machine's busy CPU (`/proc/stat`, all processes) minus the measured
//! process's own. A measurement that fails either test is invalid and repeated.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Before a measurement, the machine must be at least this idle (% of all its cores).
pub(crate) const MIN_IDLE_PCT: f64 = 85.0;

/// A measurement is invalid when other processes used more than this during its window, in %
/// of one core. On 2 cores, a saturated count uses both; 15 % of a core taken by others is
/// 7.5 % of the machine, about the search's own precision (10 %), so above it others could
/// move a figure by more than the search can tell apart.
pub(crate) const MAX_OTHERS_CPU_PCT: f64 = 15.0;

/// The machine's CPU time since boot, from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    /// User, nice, system, irq, softirq and steal (guest time is inside user).
    busy: u64,
    /// Busy plus idle and iowait.
    total: u64,
    /// The CPUs counted (`cpuN` lines).
    cpus: usize,
}

impl CpuTicks {
    /// Parses the text of `/proc/stat`; `None` if its `cpu` line is missing or malformed.
    pub(crate) fn parse(stat: &str) -> Option<Self> {
        let mut lines = stat.lines();
        let fields: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let field = |index: usize| fields.get(index).copied().unwrap_or(0);
        let (user, nice, system, idle, iowait) = (field(0), field(1), field(2), field(3), field(4));
        let (irq, softirq, steal) = (field(5), field(6), field(7));
        let busy = user + nice + system + irq + softirq + steal;
        let cpus = stat
            .lines()
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        (fields.len() >= 4 && cpus > 0).then_some(Self {
            busy,
            total: busy + idle + iowait,
            cpus,
        })
    }

    /// The machine's ticks now; `None` if `/proc/stat` cannot be read.
    pub(crate) fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The CPU every process used from `self` to `later`, in % of one core; `None` when no
    /// tick passed.
    pub(crate) fn busy_pct_until(self, later: Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| busy as f64 / total as f64 * later.cpus as f64 * 100.0)
    }

    /// How idle the machine was from `self` to `later`, in % of all its cores.
    pub(crate) fn idle_pct_until(self, later: Self) -> Option<f64> {
        let busy_pct = self.busy_pct_until(later)?;
        Some(100.0 - busy_pct / later.cpus as f64)
    }
}

/// The 1-minute load average (`/proc/loadavg`); `None` if unreadable.
pub(crate) fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How long to sample the machine's idleness, and for how long to wait for it.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct QuietRule {
    /// Each sample of `/proc/stat` spans this long.
    pub(crate) sample_secs: f64,
    /// Samples go on until one is quiet or this much time has passed (0: one sample).
    pub(crate) patience_secs: f64,
}

/// What the wait for a quiet machine saw.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct QuietCheck {
    /// The last sample's idleness, in % of all cores (`None`: `/proc/stat` unreadable).
    pub(crate) idle_pct: Option<f64>,
    pub(crate) samples: usize,
    pub(crate) waited_secs: f64,
    /// The last sample was at least [`MIN_IDLE_PCT`] idle.
    pub(crate) quiet: bool,
}

/// Samples the machine's idleness until it is quiet or the rule's patience runs out.
pub(crate) fn wait_until_quiet(rule: QuietRule) -> QuietCheck {
    let began = Instant::now();
    let sample = Duration::from_secs_f64(rule.sample_secs);
    let mut samples = 0;
    loop {
        let idle_pct = CpuTicks::now().and_then(|before| {
            std::thread::sleep(sample);
            before.idle_pct_until(CpuTicks::now()?)
        });
        samples += 1;
        let quiet = idle_pct.is_some_and(|idle| idle >= MIN_IDLE_PCT);
        let waited_secs = began.elapsed().as_secs_f64();
        if quiet || idle_pct.is_none() || waited_secs >= rule.patience_secs {
            return QuietCheck {
                idle_pct,
                samples,
                waited_secs,
                quiet,
            };
        }
    }
}

/// Why a measurement is invalid, if it is: the machine never got quiet before it, or other
/// processes used more than [`MAX_OTHERS_CPU_PCT`] of a core during its window.
pub(crate) fn invalid_because(check: &QuietCheck, others_cpu_pct: Option<f64>) -> Option<String> {
    if check.idle_pct.is_some() && !check.quiet {
        return Some(format!(
            "the machine was {:.0}% idle before it (at least {MIN_IDLE_PCT:.0}% wanted)",
            check.idle_pct.unwrap_or(0.0)
        ));
    }
    others_cpu_pct
        .filter(|&others| others > MAX_OTHERS_CPU_PCT)
        .map(|others| {
            format!(
                "other processes used {others:.0}% of a core during it (at most {MAX_OTHERS_CPU_PCT:.0}%)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 10 0 0\n\
        cpu0 50 2 25 400 10 1 1 5 0 0\n\
        cpu1 50 3 25 400 10 2 1 5 0 0\n\
        intr 12345\nctxt 999\n";

    #[test]
    fn quiet_cpu_ticks_split_busy_from_idle_and_count_the_cpus() {
        let ticks = CpuTicks::parse(STAT).expect("a valid /proc/stat");
        assert_eq!(
            ticks,
            CpuTicks {
                busy: 100 + 5 + 50 + 3 + 2 + 10,
                total: 170 + 800 + 20,
                cpus: 2
            }
        );
        assert_eq!(CpuTicks::parse("intr 1\n"), None);
        assert_eq!(CpuTicks::parse("cpu  1 x 3 4\ncpu0 1 2 3 4\n"), None);
    }

    #[test]
    fn quiet_busy_and_idle_percentages_are_of_one_core_and_of_the_machine() {
        let before = CpuTicks {
            busy: 1000,
            total: 5000,
            cpus: 2,
        };
        // 200 ticks: 50 busy, a quarter of the machine, half of one core.
        let later = CpuTicks {
            busy: 1050,
            total: 5200,
            cpus: 2,
        };
        assert_eq!(before.busy_pct_until(later), Some(50.0));
        assert_eq!(before.idle_pct_until(later), Some(75.0));
        assert_eq!(before.busy_pct_until(before), None, "no tick passed");
    }

    #[test]
    fn quiet_measurements_are_invalid_on_a_busy_machine_or_with_busy_neighbours() {
        let quiet = QuietCheck {
            idle_pct: Some(97.0),
            samples: 1,
            waited_secs: 2.0,
            quiet: true,
        };
        assert_eq!(invalid_because(&quiet, Some(3.0)), None);
        assert_eq!(invalid_because(&quiet, None), None);
        let others = invalid_because(&quiet, Some(40.0)).expect("busy neighbours");
        assert!(others.contains("40%"), "{others}");
        let busy = QuietCheck {
            idle_pct: Some(20.0),
            quiet: false,
            ..quiet
        };
        let busy = invalid_because(&busy, Some(0.0)).expect("never quiet");
        assert!(busy.contains("20% idle"), "{busy}");
    }
}
