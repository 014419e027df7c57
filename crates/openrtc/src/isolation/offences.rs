//! Automatic isolation (pure): a tenant whose sessions keep hurting their neighbours is moved
//! to process isolation for a cooldown, and back when the cooldown passes without offences.
//!
//! An offence is what one session does to the others in a shared worker: a stall over the
//! threshold that was its own (not the host's: `preempted` stalls do not count), a kill for
//! its memory cap, a panic, or its process's crash. Each tenant keeps the times of its
//! recent offences; `budget.offences` of them within `budget.window` move it to process
//! isolation, and it stays there until `budget.cooldown` has passed since its last offence
//! (offences of its isolated sessions restart the cooldown). Time is passed in, in
//! nanoseconds on any one clock.

use std::collections::VecDeque;
use std::time::Duration;

/// What counts against a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offence {
    /// A stall over the threshold that was the session's own.
    Stall,
    /// A kill for its memory cap (heap or, isolated, its process's resident memory).
    MemoryKill,
    /// A panic, or its isolated process's crash.
    Crash,
}

/// Offences by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) stalls: u32,
    pub(crate) memory_kills: u32,
    pub(crate) crashes: u32,
}

impl Tally {
    fn add(&mut self, offence: Offence) {
        let count = match offence {
            Offence::Stall => &mut self.stalls,
            Offence::MemoryKill => &mut self.memory_kills,
            Offence::Crash => &mut self.crashes,
        };
        *count = count.saturating_add(1);
    }

    pub(crate) fn total(self) -> u32 {
        self.stalls
            .saturating_add(self.memory_kills)
            .saturating_add(self.crashes)
    }
}

impl std::fmt::Display for Tally {
    /// `3 stalls` when all are of one kind, else `3 offences (2 stalls, 1 crash)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<String> = [
            (self.stalls, "stall", "stalls"),
            (self.memory_kills, "memory kill", "memory kills"),
            (self.crashes, "crash", "crashes"),
        ]
        .into_iter()
        .filter(|(count, ..)| *count > 0)
        .map(|(count, one, many)| format!("{count} {}", if count == 1 { one } else { many }))
        .collect();
        match kinds.as_slice() {
            [only] => f.write_str(only),
            _ => write!(f, "{} offences ({})", self.total(), kinds.join(", ")),
        }
    }
}

/// When a tenant is moved, and for how long (the builder's `auto_isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoIsolation {
    /// Offences within `window` that move a tenant.
    pub offences: u32,
    /// The window the offences are counted over.
    pub window: Duration,
    /// How long after its last offence a moved tenant returns to coroutines.
    pub cooldown: Duration,
}

impl AutoIsolation {
    /// Offences that move a tenant by default: 3.
    pub const DEFAULT_OFFENCES: u32 = 3;
    /// The default window: 30 s.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
    /// The default cooldown: 5 minutes.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
}

impl Default for AutoIsolation {
    fn default() -> Self {
        Self {
            offences: Self::DEFAULT_OFFENCES,
            window: Self::DEFAULT_WINDOW,
            cooldown: Self::DEFAULT_COOLDOWN,
        }
    }
}

/// What an offence or the passing of time did to a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Moved to process isolation after these offences within the window.
    Isolated(Tally),
    /// Back to coroutines: its cooldown passed without offences.
    Released,
}

/// One tenant's record.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    /// Its offences within the window with their times, oldest first (at most
    /// `budget.offences`).
    recent: VecDeque<(u64, Offence)>,
    /// Since when it is isolated, if it is.
    isolated_since_ns: Option<u64>,
    last_offence_ns: u64,
    /// How many times it was moved.
    moves: u64,
}

impl Record {
    /// Counts an offence at `now_ns`.
    pub(crate) fn offend(
        &mut self,
        budget: &AutoIsolation,
        offence: Offence,
        now_ns: u64,
    ) -> Option<Change> {
        self.last_offence_ns = now_ns;
        if self.isolated_since_ns.is_some() {
            // Already isolated: the cooldown starts again.
            return None;
        }
        let window_ns = u64::try_from(budget.window.as_nanos()).unwrap_or(u64::MAX);
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| now_ns.saturating_sub(at) >= window_ns)
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now_ns, offence));
        let count = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if budget.offences == 0 || count < budget.offences {
            return None;
        }
        let mut tally = Tally::default();
        for (_, offence) in self.recent.drain(..) {
            tally.add(offence);
        }
        self.isolated_since_ns = Some(now_ns);
        self.moves += 1;
        Some(Change::Isolated(tally))
    }

    /// Releases the tenant if its cooldown has passed by `now_ns`.
    pub(crate) fn tick(&mut self, budget: &AutoIsolation, now_ns: u64) -> Option<Change> {
        self.isolated_since_ns?;
        let cooldown_ns = u64::try_from(budget.cooldown.as_nanos()).unwrap_or(u64::MAX);
        if now_ns.saturating_sub(self.last_offence_ns) < cooldown_ns {
            return None;
        }
        self.isolated_since_ns = None;
        Some(Change::Released)
    }

    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated_since_ns.is_some()
    }

    /// When it was isolated, while it is.
    pub(crate) fn isolated_since_ns(&self) -> Option<u64> {
        self.isolated_since_ns
    }

    /// When its cooldown ends if nothing more happens, while it is isolated.
    pub(crate) fn release_due_ns(&self, budget: &AutoIsolation) -> Option<u64> {
        self.isolated_since_ns?;
        let cooldown_ns = u64::try_from(budget.cooldown.as_nanos()).unwrap_or(u64::MAX);
        Some(self.last_offence_ns.saturating_add(cooldown_ns))
    }

    /// Its offences in the current window (0 while isolated).
    pub(crate) fn recent_count(&self) -> usize {
        self.recent.len()
    }

    pub(crate) fn moves(&self) -> u64 {
        self.moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn budget() -> AutoIsolation {
        AutoIsolation {
            offences: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_budget_s_offences_within_the_window_isolate_and_older_ones_do_not_count() {
        let budget = budget();
        let mut record = Record::default();
        assert_eq!(record.offend(&budget, Offence::Stall, 0), None);
        assert_eq!(record.offend(&budget, Offence::Stall, 5 * S), None);
        // The first has left the window (10 s) by 10 s: two in the window, not three.
        assert_eq!(record.offend(&budget, Offence::Stall, 10 * S), None);
        assert_eq!(record.recent_count(), 2);
        let Some(Change::Isolated(tally)) = record.offend(&budget, Offence::Crash, 11 * S) else {
            panic!("three in the window move it");
        };
        assert_eq!(
            tally,
            Tally {
                stalls: 2,
                memory_kills: 0,
                crashes: 1
            }
        );
        assert_eq!(tally.to_string(), "3 offences (2 stalls, 1 crash)");
        assert!(record.is_isolated());
        assert_eq!(record.isolated_since_ns(), Some(11 * S));
        assert_eq!(record.moves(), 1);
    }

    #[test]
    fn an_isolated_tenant_returns_after_a_cooldown_without_offences() {
        let budget = budget();
        let mut record = Record::default();
        for at in [0, S, 2 * S] {
            record.offend(&budget, Offence::Stall, at);
        }
        assert!(record.is_isolated());
        assert_eq!(record.release_due_ns(&budget), Some(62 * S));
        assert_eq!(record.tick(&budget, 61 * S), None);
        // An offence while isolated restarts the cooldown, and moves nothing.
        assert_eq!(record.offend(&budget, Offence::MemoryKill, 30 * S), None);
        assert_eq!(record.release_due_ns(&budget), Some(90 * S));
        assert_eq!(record.tick(&budget, 89 * S), None);
        assert_eq!(record.tick(&budget, 90 * S), Some(Change::Released));
        assert!(!record.is_isolated());
        assert_eq!(record.tick(&budget, 91 * S), None, "released once");
        // Back in coroutines with a clean window: it takes three more to move it again.
        assert_eq!(record.offend(&budget, Offence::Stall, 92 * S), None);
        assert_eq!(record.recent_count(), 1);
    }

    #[test]
    fn a_tally_of_one_kind_names_that_kind() {
        let tally = Tally {
            stalls: 3,
            ..Tally::default()
        };
        assert_eq!(tally.to_string(), "3 stalls");
        let tally = Tally {
            memory_kills: 1,
            ..Tally::default()
        };
        assert_eq!(tally.to_string(), "1 memory kill");
    }

    #[test]
    fn a_budget_of_zero_offences_never_isolates() {
        let budget = AutoIsolation {
            offences: 0,
            ..budget()
        };
        let mut record = Record::default();
        for at in 0..10 {
            assert_eq!(record.offend(&budget, Offence::Crash, at * S), None);
        }
        assert!(!record.is_isolated());
    }
}
