//! One session's VAD stream: samples in, a speech probability per 512-sample chunk out.
//!
//! Each chunk goes to the model after the 64 samples that preceded it (zeros before the
//! first), with the recurrent state the previous chunk left, as the reference's plugin does.
//! `i16` samples are scaled by 1/32767, as the plugin scales them.

use std::sync::Arc;

use tract_onnx::prelude::{IntoTensor, TValue, TVec, Tensor, tract_ndarray, tvec};

use crate::detector::{DetectorOptions, SpeechDetector, SpeechEvent};
use crate::error::VadError;
use crate::model::{Plan, SileroModel};

/// The model's sample rate.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Samples per inference: 32 ms at 16 kHz.
pub const CHUNK_SAMPLES: usize = 512;
/// Samples before each chunk that the model sees with it.
pub const CONTEXT_SAMPLES: usize = 64;
/// The recurrent state's shape.
pub(crate) const STATE_SHAPE: [usize; 3] = [2, 1, 128];

/// One inference: a completed chunk's speech probability.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Chunk {
    /// The model's raw speech probability for the chunk, in [0, 1].
    pub probability: f32,
    /// Samples pushed into the stream up to the chunk's end.
    pub end_sample: u64,
    /// Speech started or ended with this chunk, by the detector's rule.
    pub event: Option<SpeechEvent>,
}

/// A session's Silero stream: its own recurrent state and context over the shared model.
pub struct SileroVad {
    /// The shared plan. Each chunk runs it with a fresh tract state: a kept one would make
    /// the stream `!Send` (tract's run values are `Rc`s), and a session's task must be `Send`.
    plan: Arc<Plan>,
    /// The model's input: the context, then the chunk being filled.
    window: Box<[f32; CONTEXT_SAMPLES + CHUNK_SAMPLES]>,
    /// Samples of the current chunk so far.
    filled_count: usize,
    /// The recurrent state the last chunk left (zeros at first).
    rnn_state: Tensor,
    /// The chunks completed by the current push (kept to reuse its capacity).
    chunks: Vec<Chunk>,
    detector: SpeechDetector,
    pushed_samples: u64,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("filled_count", &self.filled_count)
            .field("pushed_samples", &self.pushed_samples)
            .field("detector", &self.detector)
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// A stream over `model` with the reference plugin's default detector options.
    ///
    #[must_use]
    pub fn new(model: &SileroModel) -> Self {
        Self::with_options(model, DetectorOptions::default())
    }

    /// A stream over `model` whose detector uses `options`.
    ///
    #[must_use]
    pub fn with_options(model: &SileroModel, options: DetectorOptions) -> Self {
        Self {
            plan: Arc::clone(model.plan()),
            window: Box::new([0.0; CONTEXT_SAMPLES + CHUNK_SAMPLES]),
            filled_count: 0,
            rnn_state: zero_state(),
            chunks: Vec::with_capacity(4),
            detector: SpeechDetector::new(options),
            pushed_samples: 0,
        }
    }

    /// Pushes 16 kHz samples in [-1, 1]; returns the chunks they completed (none, one or
    /// more), in order, until the next push.
    ///
    /// # Errors
    /// [`VadError::Inference`] or [`VadError::UnexpectedOutput`] from a chunk's inference;
    /// the stream's state is then that of the chunk before.
    pub fn push_f32(&mut self, samples: &[f32]) -> Result<&[Chunk], VadError> {
        self.push_with(samples, |sample| sample)
    }

    /// Pushes 16 kHz 16-bit samples (scaled by 1/32767, as the reference's plugin does);
    /// returns the chunks they completed, as [`push_f32`](Self::push_f32).
    ///
    /// # Errors
    /// As [`push_f32`](Self::push_f32).
    pub fn push_i16(&mut self, samples: &[i16]) -> Result<&[Chunk], VadError> {
        self.push_with(samples, |sample| f32::from(sample) / f32::from(i16::MAX))
    }

    /// Whether the detector holds that speech is going on.
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.detector.speaking()
    }

    /// Back to the state of a new stream (zero recurrent state and context, no speech).
    pub fn reset(&mut self) {
        self.window.fill(0.0);
        self.filled_count = 0;
        self.rnn_state = zero_state();
        self.chunks.clear();
        self.detector.reset();
        self.pushed_samples = 0;
    }

    fn push_with<T: Copy>(
        &mut self,
        samples: &[T],
        convert: impl Fn(T) -> f32,
    ) -> Result<&[Chunk], VadError> {
        self.chunks.clear();
        let mut rest = samples;
        while !rest.is_empty() {
            let take_count = (CHUNK_SAMPLES - self.filled_count).min(rest.len());
            let start = CONTEXT_SAMPLES + self.filled_count;
            let (now, later) = rest.split_at(take_count);
            for (slot, &sample) in self.window[start..start + take_count].iter_mut().zip(now) {
                *slot = convert(sample);
            }
            self.filled_count += take_count;
            self.pushed_samples += take_count as u64;
            rest = later;
            if self.filled_count == CHUNK_SAMPLES {
                let probability = self.infer()?;
                let event = self.detector.observe(probability, self.pushed_samples);
                self.chunks.push(Chunk {
                    probability,
                    end_sample: self.pushed_samples,
                    event,
                });
            }
        }
        Ok(&self.chunks)
    }

    /// Runs the model on the full window; moves the chunk's tail into the context.
    fn infer(&mut self) -> Result<f32, VadError> {
        let input = Tensor::from_shape(&[1, CONTEXT_SAMPLES + CHUNK_SAMPLES], &self.window[..])
            .map_err(VadError::inference)?;
        let state = self.rnn_state.clone();
        let mut outputs = self
            .plan
            .run(tvec!(input.into(), state.into()))
            .map_err(VadError::inference)?;
        let probability = read_outputs(&outputs)?;
        self.rnn_state = outputs.swap_remove(1).into_tensor();
        self.window.copy_within(CHUNK_SAMPLES.., 0);
        self.filled_count = 0;
        Ok(probability)
    }
}

/// The recurrent state of a new stream.
pub(crate) fn zero_state() -> Tensor {
    Tensor::from(tract_ndarray::Array3::<f32>::zeros(STATE_SHAPE))
}

/// The probability of a run's outputs, once they are checked to be a probability and a state.
pub(crate) fn read_outputs(outputs: &TVec<TValue>) -> Result<f32, VadError> {
    let unexpected = |detail: String| VadError::UnexpectedOutput { detail };
    let [probability, state] = outputs.as_slice() else {
        return Err(unexpected(format!("{} outputs", outputs.len())));
    };
    if state.shape() != STATE_SHAPE {
        return Err(unexpected(format!("a state of shape {:?}", state.shape())));
    }
    let values = probability.to_plain_array_view::<f32>().ok();
    match values.as_ref().and_then(|values| values.as_slice()) {
        Some([probability]) => Ok(*probability),
        _ => Err(unexpected(format!(
            "a probability of shape {:?} and type {:?}",
            probability.shape(),
            probability.datum_type()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SpeechLike;

    fn model() -> SileroModel {
        SileroModel::load().expect("the vendored model loads")
    }

    #[test]
    fn chunks_complete_every_512_samples_however_the_audio_is_cut() {
        let model = model();
        let mut audio = vec![0.0_f32; 512 * 12];
        SpeechLike::new(3).fill(&mut audio);
        let mut whole = SileroVad::new(&model);
        let at_once: Vec<Chunk> = whole.push_f32(&audio).expect("inference").to_vec();
        assert_eq!(at_once.len(), 12);
        // 20 ms frames: 320 samples, so some pushes complete no chunk.
        let mut framed = SileroVad::new(&model);
        let mut by_frames = Vec::new();
        for frame in audio.chunks(320) {
            by_frames.extend_from_slice(framed.push_f32(frame).expect("inference"));
        }
        assert_eq!(by_frames, at_once);
        let ends: Vec<u64> = at_once.iter().map(|chunk| chunk.end_sample).collect();
        assert_eq!(ends, (1..=12).map(|k| k * 512).collect::<Vec<u64>>());
    }

    #[test]
    fn i16_samples_are_scaled_by_32767() {
        let model = model();
        let mut pcm = vec![0_i16; 1024];
        SpeechLike::new(5).fill_i16(&mut pcm);
        let scaled: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32767.0).collect();
        let mut from_i16 = SileroVad::new(&model);
        let mut from_f32 = SileroVad::new(&model);
        let one = from_i16.push_i16(&pcm).expect("inference").to_vec();
        let two = from_f32.push_f32(&scaled).expect("inference").to_vec();
        assert_eq!(one, two);
    }

    #[test]
    fn silence_is_not_speech_and_reset_starts_over() {
        let model = model();
        let mut vad = SileroVad::new(&model);
        let chunks = vad.push_f32(&[0.0; 512 * 4]).expect("inference").to_vec();
        assert!(
            chunks.iter().all(|chunk| chunk.probability < 0.1),
            "{chunks:?}"
        );
        vad.reset();
        let again = vad.push_f32(&[0.0; 512 * 4]).expect("inference").to_vec();
        assert_eq!(again, chunks);
    }

    #[test]
    fn speech_like_audio_starts_and_ends_speech() {
        let model = model();
        let mut vad = SileroVad::new(&model);
        let mut audio = vec![0.0_f32; 16_000 * 5];
        SpeechLike::new(0).fill(&mut audio);
        let events: Vec<SpeechEvent> = vad
            .push_f32(&audio)
            .expect("inference")
            .iter()
            .filter_map(|chunk| chunk.event)
            .collect();
        assert!(
            matches!(events.first(), Some(SpeechEvent::Start { .. })),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|event| matches!(event, SpeechEvent::End { .. })),
            "{events:?}"
        );
    }

    #[test]
    fn a_model_that_is_not_silero_does_not_load() {
        let error = SileroModel::from_onnx_bytes(b"not a model").expect_err("garbage");
        assert!(matches!(error, VadError::Load { .. }), "{error}");
    }
}
