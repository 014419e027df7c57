//! The demo agents, one per runbook case, all on a 20 ms frame cadence.

mod blocker;
mod crashy;
mod echo;
mod flaky;
mod hot;
mod leaky;
mod model;

pub(crate) use blocker::Blocker;
pub(crate) use crashy::Crashy;
pub(crate) use echo::Echo;
pub(crate) use flaky::Flaky;
pub(crate) use hot::Hot;
pub(crate) use leaky::Leaky;
pub(crate) use model::VadModel;

use std::time::Duration;

use openrtc::Session;
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// One audio frame: 20 ms.
pub(crate) const FRAME: Duration = Duration::from_millis(20);

/// Frames in a second at [`FRAME`]'s cadence.
pub(crate) const FRAMES_PER_SECOND: u64 = 1000 / FRAME.as_millis() as u64;

/// Samples in one 20 ms frame of 16 kHz audio.
const FRAME_SAMPLES: usize = 320;

/// The frame clock of one session, and when the session's call ends.
pub(crate) struct Call {
    frames: Interval,
    ends_at: Instant,
}

impl Call {
    /// A call that lasts `life_ms` from the session's metadata (default 30 s).
    pub(crate) fn new(session: &Session) -> Self {
        let life_ms = session.metadata()["life_ms"].as_u64().unwrap_or(30_000);
        let mut frames = tokio::time::interval(FRAME);
        frames.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            frames,
            ends_at: Instant::now() + Duration::from_millis(life_ms),
        }
    }

    /// Waits for the next frame; `false` when the call is over or the session is cancelled.
    pub(crate) async fn next_frame(&mut self, session: &Session) -> bool {
        tokio::select! {
            _ = self.frames.tick() => Instant::now() < self.ends_at,
            () = session.cancelled() => false,
        }
    }
}

/// A little DSP: a one-pole low-pass over one frame of a synthetic tone; returns its energy.
pub(crate) fn filter_frame(frame_index: u64, state: &mut f32) -> f32 {
    let mut energy = 0.0_f32;
    for sample_index in 0..FRAME_SAMPLES {
        let t = (frame_index as usize * FRAME_SAMPLES + sample_index) as f32 / 16_000.0;
        let input = (t * 440.0 * std::f32::consts::TAU).sin();
        *state += 0.1 * (input - *state);
        energy += *state * *state;
    }
    energy / FRAME_SAMPLES as f32
}
