//! What the live view remembers between snapshots: each session's CPU and memory over the
//! time top has watched it, and each worker's session count and CPU over the last minute.
//!
//! Memory stays bounded however long top runs: a session's history keeps at most
//! [`SESSION_HISTORY_POINTS`] points and halves its resolution when full.

use std::collections::VecDeque;

/// The most points a session's history keeps; when full, neighbouring points are merged so
/// the history still covers the whole time top has watched the session.
pub const SESSION_HISTORY_POINTS: usize = 120;

/// How far back a worker's sparklines reach, in milliseconds.
pub const WORKER_HISTORY_WINDOW_MS: u64 = 60_000;

/// One point of a session's history: the mean CPU% and the highest memory over the
/// snapshots it covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionPoint {
    /// The mean CPU% (of one core) over the snapshots this point covers.
    pub cpu_pct: f32,
    /// The highest memory figure over the snapshots this point covers, in bytes.
    pub mem_bytes: f32,
}

/// A session's CPU and memory over the time top has watched it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionHistory {
    points: Vec<SessionPoint>,
    /// How many snapshots each point covers (a power of two).
    snapshots_per_point: u32,
    /// How many snapshots the last point covers so far.
    snapshots_in_last_point: u32,
    /// When the first snapshot was taken, in milliseconds since the Unix epoch.
    first_seen_unix_ms: u64,
    /// When the latest snapshot was taken.
    last_seen_unix_ms: u64,
    /// The round of updates that last saw the session, so vanished sessions can be dropped.
    pub(super) seen_in_round: u64,
}

impl SessionHistory {
    /// A history holding one snapshot's figures.
    #[must_use]
    pub fn new(cpu_pct: f64, mem_bytes: u64, taken_at_unix_ms: u64, round: u64) -> Self {
        let mut history = Self {
            points: Vec::new(),
            snapshots_per_point: 1,
            snapshots_in_last_point: 0,
            first_seen_unix_ms: taken_at_unix_ms,
            last_seen_unix_ms: taken_at_unix_ms,
            seen_in_round: round,
        };
        history.record(cpu_pct, mem_bytes, taken_at_unix_ms, round);
        history
    }

    /// Adds one snapshot's figures.
    pub fn record(&mut self, cpu_pct: f64, mem_bytes: u64, taken_at_unix_ms: u64, round: u64) {
        self.seen_in_round = round;
        self.last_seen_unix_ms = taken_at_unix_ms;
        // Sparkline precision: an f32 holds any CPU% and byte count closely enough to draw.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let (cpu_pct, mem_bytes) = (
            if cpu_pct.is_finite() {
                cpu_pct as f32
            } else {
                0.0
            },
            mem_bytes as f32,
        );
        let last_point_has_room = self.snapshots_in_last_point < self.snapshots_per_point;
        if let (true, Some(last)) = (last_point_has_room, self.points.last_mut()) {
            #[allow(clippy::cast_precision_loss)]
            let covered = self.snapshots_in_last_point as f32;
            last.cpu_pct = (last.cpu_pct * covered + cpu_pct) / (covered + 1.0);
            last.mem_bytes = last.mem_bytes.max(mem_bytes);
            self.snapshots_in_last_point += 1;
            return;
        }
        if self.points.len() == SESSION_HISTORY_POINTS {
            self.halve_resolution();
        }
        self.points.push(SessionPoint { cpu_pct, mem_bytes });
        self.snapshots_in_last_point = 1;
    }

    /// Merges neighbouring points pairwise, so each covers twice as many snapshots.
    fn halve_resolution(&mut self) {
        let merged: Vec<SessionPoint> = self
            .points
            .chunks(2)
            .map(|pair| SessionPoint {
                cpu_pct: pair.iter().map(|point| point.cpu_pct).sum::<f32>() / 2.0,
                mem_bytes: pair.iter().map(|point| point.mem_bytes).fold(0.0, f32::max),
            })
            .collect();
        self.points = merged;
        self.snapshots_per_point *= 2;
    }

    /// The points, oldest first.
    #[must_use]
    pub fn points(&self) -> &[SessionPoint] {
        &self.points
    }

    /// How long top has watched the session, in milliseconds.
    #[must_use]
    pub fn watched_ms(&self) -> u64 {
        self.last_seen_unix_ms
            .saturating_sub(self.first_seen_unix_ms)
    }
}

/// One sample of a worker's header figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerSample {
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Live sessions.
    pub active_sessions: u32,
    /// The process's CPU% (of one core).
    pub process_cpu_pct: f64,
}

/// A worker's session count and CPU over the last [`WORKER_HISTORY_WINDOW_MS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerHistory {
    samples: VecDeque<WorkerSample>,
}

impl WorkerHistory {
    /// Adds a sample and forgets those older than the window before it.
    pub fn record(&mut self, sample: WorkerSample) {
        let oldest_kept = sample
            .taken_at_unix_ms
            .saturating_sub(WORKER_HISTORY_WINDOW_MS);
        while self
            .samples
            .front()
            .is_some_and(|front| front.taken_at_unix_ms < oldest_kept)
        {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Forgets every sample (the worker behind the socket is a new process).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &WorkerSample> {
        self.samples.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_history_keeps_every_snapshot_until_full() {
        let mut history = SessionHistory::new(10.0, 1_000, 0, 1);
        for step in 1..SESSION_HISTORY_POINTS as u64 {
            history.record(20.0, 1_000 + step, step * 500, 1);
        }
        assert_eq!(history.points().len(), SESSION_HISTORY_POINTS);
        assert!((history.points()[0].cpu_pct - 10.0).abs() < f32::EPSILON);
        assert_eq!(
            history.watched_ms(),
            (SESSION_HISTORY_POINTS as u64 - 1) * 500
        );
    }

    #[test]
    fn a_full_session_history_halves_its_resolution() {
        let mut history = SessionHistory::new(0.0, 0, 0, 1);
        for step in 1..SESSION_HISTORY_POINTS as u64 {
            let cpu = if step % 2 == 0 { 0.0 } else { 100.0 };
            history.record(cpu, step, step, 1);
        }
        // The next snapshot merges pairs: each point is the mean CPU and the highest memory.
        history.record(40.0, 7, 1_000, 2);
        assert_eq!(history.points().len(), SESSION_HISTORY_POINTS / 2 + 1);
        assert!((history.points()[0].cpu_pct - 50.0).abs() < f32::EPSILON);
        assert!((history.points()[0].mem_bytes - 1.0).abs() < f32::EPSILON);
        assert!((history.points()[59].mem_bytes - 119.0).abs() < f32::EPSILON);
        // The new point covers two snapshots now: the next one is averaged into it.
        history.record(20.0, 9, 1_500, 3);
        assert_eq!(history.points().len(), SESSION_HISTORY_POINTS / 2 + 1);
        let last = history.points()[SESSION_HISTORY_POINTS / 2];
        assert!((last.cpu_pct - 30.0).abs() < f32::EPSILON);
        assert!((last.mem_bytes - 9.0).abs() < f32::EPSILON);
        assert_eq!(history.watched_ms(), 1_500);
    }

    #[test]
    fn a_session_history_stays_bounded_for_hours() {
        let mut history = SessionHistory::new(1.0, 1, 0, 1);
        for step in 1..100_000 {
            history.record(1.0, 1, step * 500, 1);
        }
        assert!(history.points().len() <= SESSION_HISTORY_POINTS);
        assert!(history.points().len() > SESSION_HISTORY_POINTS / 2 - 1);
    }

    #[test]
    fn a_worker_history_keeps_the_last_minute() {
        let mut history = WorkerHistory::default();
        for second in 0..=90_u64 {
            history.record(WorkerSample {
                taken_at_unix_ms: second * 1_000,
                active_sessions: u32::try_from(second).unwrap_or(0),
                process_cpu_pct: 1.0,
            });
        }
        let kept: Vec<u64> = history
            .samples()
            .map(|sample| sample.taken_at_unix_ms / 1_000)
            .collect();
        assert_eq!(kept.first(), Some(&30));
        assert_eq!(kept.last(), Some(&90));
        assert_eq!(kept.len(), 61);
    }
}
