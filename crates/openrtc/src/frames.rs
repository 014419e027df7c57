//! The frame clock: `Session::frames(period)` gives an agent a `Frames`, a steady cadence of
//! frames (20 ms of audio each, say) that costs the worker one timer per millisecond slice
//! instead of one timer per session.
//!
//! # When to use which clock
//!
//! - **`Session::frames`** for a session that produces or processes frames on its own
//!   cadence (a synthetic source, a periodic mixer, a fixed-rate detector), above all when
//!   many sessions share the worker: every session of the pool with the same period shares
//!   one clock, whose wakes are spread over the period in slices.
//! - **The media socket** for frames that come from a call: a call's audio is paced by the
//!   caller's packets, so an agent reads `CallMedia` and never adds a clock of its own.
//! - **`tokio::time::interval`** for a few timers with their own phase or period (a
//!   keep-alive, a retry), a session outside a pool, or a period under a millisecond.
//!
//! # Semantics
//!
//! Frame `k` is due exactly `first + k · period`, where `first` is the next start of the
//! slice the clock gave the `Frames` (within one period of its creation; the clock puts each
//! new `Frames` in the least populated slice). `tick` resolves once the frame is due, with
//! its index and due instant. Like `tokio::time::interval` with `MissedTickBehavior::Burst`,
//! a consumer that falls behind gets every missed frame at once, in order, one per `tick`:
//! no frame is skipped or merged, and the due instants do not drift. A frame is released
//! when the clock's driver fires its slice (at or just after its due instant, on Tokio's
//! millisecond timer), so lateness is measured against `Frame::due`.
//!
//! Dropping a `Frames` takes it out of its clock; the clock never wakes it again. The
//! clocks run as tasks on the pool's runtime and stop with it.

mod clock;
mod schedule;

pub(crate) use clock::FrameClocks;

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// A session's cadence of frames on the pool's frame clock (see `Session::frames`).
///
/// `tick` is cancel-safe: a `tick` dropped before it resolves (a losing `select!` branch)
/// consumes no frame.
#[derive(Debug)]
pub struct Frames {
    registration: clock::Registration,
    /// The next frame's index.
    index: u64,
    /// The next frame's due instant.
    due: Instant,
}

/// One frame of a [`Frames`]: its index from 0 and the instant it was due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    index: u64,
    due: Instant,
}

impl Frame {
    /// The frame's index: 0 for the first frame, then consecutive.
    #[must_use]
    pub fn index(&self) -> u64 {
        self.index
    }

    /// When the frame was due: the first frame's due instant plus `index` periods.
    #[must_use]
    pub fn due(&self) -> Instant {
        self.due
    }

    /// How late the frame is now (zero if it is not due yet): one clock read.
    #[must_use]
    pub fn lateness(&self) -> Duration {
        Instant::now().saturating_duration_since(self.due)
    }
}

impl Frames {
    /// Registers with `clocks`' clock of `period` (a period under a millisecond is taken as
    /// one millisecond, Tokio's timer resolution), started on `runtime` if it is the
    /// period's first.
    pub(crate) fn new(
        clocks: &FrameClocks,
        period: Duration,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let period = period.max(schedule::SLICE_MIN);
        let registration = clocks.register(period, runtime);
        Self {
            index: 0,
            due: registration.first_due(),
            registration,
        }
    }

    /// The period between frames.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.registration.period()
    }

    /// The frame `tick` gives next: its index and due instant.
    #[must_use]
    pub fn next_frame(&self) -> Frame {
        Frame {
            index: self.index,
            due: self.due,
        }
    }

    /// Waits for the next frame and returns it: at once if it is already due (a late
    /// consumer gets each missed frame in turn), otherwise when the clock releases it.
    pub async fn tick(&mut self) -> Frame {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next frame: `Ready` with it once it is due, and the frame is consumed;
    /// `Pending` registers `cx`'s waker, to be woken when it is due.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Frame> {
        if !self.registration.poll_fired(self.index, cx.waker()) {
            return Poll::Pending;
        }
        let frame = self.next_frame();
        self.index = self.index.saturating_add(1);
        self.due += self.registration.period();
        Poll::Ready(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(20);

    fn frames(clocks: &FrameClocks) -> Frames {
        Frames::new(clocks, PERIOD, &tokio::runtime::Handle::current())
    }

    #[tokio::test(start_paused = true)]
    async fn frames_are_due_exactly_a_period_apart_with_consecutive_indices() {
        let clocks = FrameClocks::default();
        let mut frames = frames(&clocks);
        let first = frames.next_frame().due();
        for index in 0..100_u32 {
            let frame = frames.tick().await;
            assert_eq!(frame.index(), u64::from(index));
            assert_eq!(frame.due(), first + PERIOD * index);
            assert!(Instant::now() >= frame.due(), "released before it was due");
            assert!(frame.lateness() <= Duration::from_millis(1), "{frame:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_consumer_gets_every_missed_frame_at_once_in_order() {
        let clocks = FrameClocks::default();
        let mut frames = frames(&clocks);
        let first = frames.tick().await;
        // Five periods and a half without asking: frames 1 to 5 come due meanwhile.
        tokio::time::sleep(PERIOD * 5 + PERIOD / 2).await;
        let caught_up_at = Instant::now();
        for index in 1..=5_u32 {
            let frame = frames.tick().await;
            assert_eq!(frame.index(), u64::from(index));
            assert_eq!(frame.due(), first.due() + PERIOD * index);
            assert_eq!(Instant::now(), caught_up_at, "missed frames come at once");
        }
        // Then back on schedule: frame 6 waits for its due instant.
        let sixth = frames.tick().await;
        assert_eq!(sixth.index(), 6);
        assert_eq!(sixth.due(), first.due() + PERIOD * 6);
        assert!(Instant::now() > caught_up_at);
        assert!(sixth.lateness() <= Duration::from_millis(1), "{sixth:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_spread_over_the_slices_and_dropping_releases_the_registration() {
        let clocks = FrameClocks::default();
        let all: Vec<Frames> = (0..40).map(|_| frames(&clocks)).collect();
        assert_eq!(clocks.registrations(), 40);
        // 20 slices of 1 ms: two `Frames` in each, so no two slices start together.
        let mut phases: Vec<Duration> = all
            .iter()
            .map(|frames| {
                let due = frames.next_frame().due() - all[0].next_frame().due();
                Duration::from_nanos(
                    u64::try_from(due.as_nanos() % PERIOD.as_nanos()).expect("small"),
                )
            })
            .collect();
        phases.sort();
        phases.dedup();
        assert_eq!(phases.len(), 20, "{phases:?}");
        drop(all);
        assert_eq!(clocks.registrations(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_left_idle_resumes_on_schedule_without_replaying_the_idle_spell() {
        let clocks = FrameClocks::default();
        let mut first = frames(&clocks);
        first.tick().await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut later = frames(&clocks);
        let due = later.next_frame().due();
        assert!(due >= Instant::now(), "the first frame is not in the past");
        assert!(due < Instant::now() + PERIOD);
        let frame = later.tick().await;
        assert_eq!((frame.index(), frame.due()), (0, due));
        assert_eq!(later.tick().await.due(), due + PERIOD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_period_under_a_millisecond_is_a_millisecond() {
        let clocks = FrameClocks::default();
        let mut frames = Frames::new(&clocks, Duration::ZERO, &tokio::runtime::Handle::current());
        assert_eq!(frames.period(), Duration::from_millis(1));
        let first = frames.tick().await;
        assert_eq!(
            frames.tick().await.due(),
            first.due() + Duration::from_millis(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_tick_consumes_no_frame() {
        let clocks = FrameClocks::default();
        let mut frames = frames(&clocks);
        frames.tick().await;
        let next = frames.next_frame();
        let early = tokio::time::timeout(PERIOD / 2, frames.tick()).await;
        assert!(early.is_err(), "frame 1 is a period away: {early:?}");
        assert_eq!(frames.tick().await, next);
    }
}
