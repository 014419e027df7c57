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
use openrtc::media::{CallMedia, MediaEvent};
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
    /// The phone call's media, for a session from the media listener: these agents do not
    /// answer, so what the caller sends is taken and let go; the caller hanging up ends the
    /// call.
    media: Option<CallMedia>,
}

impl Call {
    /// A call that lasts `life_ms` from the session's metadata (a number, or a string as a
    /// phone call's parameters are; default 30 s), or until the caller hangs up.
    pub(crate) fn new(session: &Session) -> Self {
        let life = &session.metadata()["life_ms"];
        let life_ms = life
            .as_u64()
            .or_else(|| life.as_str()?.parse().ok())
            .unwrap_or(30_000);
        let mut frames = tokio::time::interval(FRAME);
        frames.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            frames,
            ends_at: Instant::now() + Duration::from_millis(life_ms),
            media: session.media(),
        }
    }

    /// Waits for the next frame; `false` when the call is over (its life ran out, or the
    /// caller hung up) or the session is cancelled.
    pub(crate) async fn next_frame(&mut self, session: &Session) -> bool {
        loop {
            tokio::select! {
                _ = self.frames.tick() => return Instant::now() < self.ends_at,
                () = session.cancelled() => return false,
                heard = heard(&mut self.media) => {
                    if heard.is_none() {
                        return false;
                    }
                }
            }
        }
    }
}

/// The next thing the caller sent; never, for a session that is not a phone call.
async fn heard(media: &mut Option<CallMedia>) -> Option<MediaEvent> {
    match media {
        Some(media) => media.recv().await,
        None => std::future::pending().await,
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
