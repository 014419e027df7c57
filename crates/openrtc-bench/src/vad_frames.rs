//! The `vad` workload's per-session state: a Silero VAD stream over the pool's one shared
//! model, fed 20 ms frames of speech-like 16 kHz audio, one inference per 512 samples, as the
//! reference's Silero plugin does. The prewarm loads the model and generates the audio once
//! (2.4 s of talk and quiet, looped; each session starts at its own frame of it), so a frame's
//! cost is the inference, not the synthesis.

use std::sync::Arc;

use openrtc::Session;
use openrtc::vad::synth::SpeechLike;
use openrtc::vad::{SileroModel, SileroVad, VadError};

/// 20 ms of 16 kHz audio.
const FRAME_SAMPLES: usize = 320;
/// The looped audio: 120 frames, 2.4 s (one talk-and-quiet cycle of `SpeechLike`).
const LOOP_FRAMES: usize = 120;

/// What the prewarm loads once for every session.
pub(crate) struct VadShared {
    model: SileroModel,
    audio: Vec<f32>,
}

impl VadShared {
    /// Loads the model and generates the looped audio.
    pub(crate) fn load() -> Result<Self, VadError> {
        let mut audio = vec![0.0; LOOP_FRAMES * FRAME_SAMPLES];
        SpeechLike::new(0).fill(&mut audio);
        Ok(Self {
            model: SileroModel::load()?,
            audio,
        })
    }
}

/// One session's stream and where it is in the audio.
pub(crate) struct VadFrames {
    vad: SileroVad,
    shared: Arc<VadShared>,
    next_frame: usize,
    /// The first inference error; the session fails with it after its frames.
    failed: Option<VadError>,
}

impl VadFrames {
    /// The session's stream when the workload is `vad` (none otherwise), over what the
    /// prewarm loaded.
    pub(crate) fn for_session(
        vad_workload: bool,
        session: &Session,
        seed: usize,
    ) -> anyhow::Result<Option<Self>> {
        if !vad_workload {
            return Ok(None);
        }
        let shared = session
            .shared::<VadShared>()
            .ok_or_else(|| anyhow::anyhow!("no Silero model: the pool's prewarm loads it"))?;
        Ok(Some(Self {
            vad: SileroVad::new(&shared.model),
            shared,
            next_frame: seed % LOOP_FRAMES,
            failed: None,
        }))
    }

    /// One frame: the next 20 ms of audio into the stream; the sum of the probabilities of
    /// the chunks it completed (none, one or two).
    pub(crate) fn run(&mut self) -> f32 {
        let start = self.next_frame * FRAME_SAMPLES;
        self.next_frame = (self.next_frame + 1) % LOOP_FRAMES;
        match self
            .vad
            .push_f32(&self.shared.audio[start..start + FRAME_SAMPLES])
        {
            Ok(chunks) => chunks.iter().map(|chunk| chunk.probability).sum(),
            Err(error) => {
                self.failed.get_or_insert(error);
                0.0
            }
        }
    }

    /// The first inference error, if any.
    pub(crate) fn take_error(&mut self) -> Option<VadError> {
        self.failed.take()
    }
}
