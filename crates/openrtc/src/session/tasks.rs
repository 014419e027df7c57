//! Child task counts (from `Session::spawn`): spawned, and by how each ended. A session keeps
//! its own, and the pool the worker's, which outlive the sessions.

use std::sync::atomic::{AtomicU64, Ordering};

use openrtc_proto::TaskCountsSnapshot;

/// How a child task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// Its future returned (whatever its output).
    Completed,
    /// It panicked (logged as `[session-panic] … child task panicked`).
    Panicked,
    /// It was dropped first: aborted, its session ended, or the runtime shut down.
    Cancelled,
}

/// Child task counters: relaxed atomics, written once at a spawn and once at an end.
#[derive(Debug, Default)]
pub(crate) struct TaskCounters {
    spawned: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
}

impl TaskCounters {
    pub(crate) fn spawned(&self) {
        self.spawned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, end: ChildEnd) {
        let counter = match end {
            ChildEnd::Completed => &self.completed,
            ChildEnd::Panicked => &self.panicked,
            ChildEnd::Cancelled => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts in wire form; `running` is what has been spawned and has not ended.
    pub(crate) fn snapshot(&self) -> TaskCountsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut tasks = TaskCountsSnapshot::default();
        tasks.spawned_count = load(&self.spawned);
        tasks.completed_count = load(&self.completed);
        tasks.panicked_count = load(&self.panicked);
        tasks.failed_count = tasks.panicked_count;
        tasks.cancelled_count = load(&self.cancelled);
        tasks.running_count = tasks
            .spawned_count
            .saturating_sub(tasks.completed_count + tasks.panicked_count + tasks.cancelled_count);
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_is_spawned_less_ended() {
        let counters = TaskCounters::default();
        for _ in 0..5 {
            counters.spawned();
        }
        counters.ended(ChildEnd::Completed);
        counters.ended(ChildEnd::Panicked);
        counters.ended(ChildEnd::Cancelled);
        let tasks = counters.snapshot();
        assert_eq!(tasks.running_count, 2);
        assert_eq!((tasks.failed_count, tasks.panicked_count), (1, 1));
    }
}
