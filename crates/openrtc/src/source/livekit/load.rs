//! The status the worker reports, and its reconnect backoff (pure).

use std::time::Duration;

use livekit_protocol::WorkerStatus;

/// The status a worker reports: what `update_worker` carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Status {
    /// `FULL` at the threshold or while draining, else `AVAILABLE`.
    pub(crate) status: WorkerStatus,
    /// Sessions (live and held) over capacity, at most 1.
    pub(crate) load: f32,
    /// The LiveKit jobs running.
    pub(crate) job_count: u32,
    /// Whether the worker is draining.
    pub(crate) draining: bool,
}

/// The status of a worker holding `sessions` of `capacity` places, running `jobs` LiveKit
/// jobs, `FULL` from `threshold`.
pub(crate) fn status(
    sessions: u32,
    capacity: u32,
    jobs: u32,
    threshold: f64,
    draining: bool,
) -> Status {
    let load = if capacity == 0 {
        1.0
    } else {
        (f64::from(sessions) / f64::from(capacity)).min(1.0)
    };
    let full = draining || load >= threshold;
    Status {
        status: if full {
            WorkerStatus::WsFull
        } else {
            WorkerStatus::WsAvailable
        },
        #[allow(clippy::cast_possible_truncation, reason = "a load in [0, 1]")]
        load: load as f32,
        job_count: jobs,
        draining,
    }
}

/// The wait before reconnect attempt `retry` (0 first): 0, 2, 4, 6, 8, 10, 10 … seconds.
pub(crate) fn backoff(retry: u32) -> Duration {
    Duration::from_secs(u64::from(retry.min(5)) * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_sessions_over_capacity_and_full_at_the_threshold() {
        let half = status(5, 10, 3, 1.0, false);
        assert_eq!(half.status, WorkerStatus::WsAvailable);
        assert!((half.load - 0.5).abs() < f32::EPSILON);
        assert_eq!(half.job_count, 3);
        assert_eq!(status(10, 10, 0, 1.0, false).status, WorkerStatus::WsFull);
        assert_eq!(status(8, 10, 0, 0.8, false).status, WorkerStatus::WsFull);
        assert_eq!(
            status(7, 10, 0, 0.8, false).status,
            WorkerStatus::WsAvailable
        );
    }

    #[test]
    fn draining_is_full_whatever_the_load() {
        let draining = status(0, 10, 0, 1.0, true);
        assert_eq!(draining.status, WorkerStatus::WsFull);
        assert!(draining.draining);
    }

    #[test]
    fn no_capacity_is_full_and_load_never_exceeds_one() {
        assert_eq!(status(0, 0, 0, 1.0, false).status, WorkerStatus::WsFull);
        assert!((status(12, 10, 0, 1.0, false).load - 1.0).abs() < f32::EPSILON);
    }

    #[test]
    fn backoff_grows_by_two_seconds_up_to_ten() {
        let waits: Vec<u64> = (0..8).map(|retry| backoff(retry).as_secs()).collect();
        assert_eq!(waits, [0, 2, 4, 6, 8, 10, 10, 10]);
    }
}
