//! Silero voice activity detection for many sessions in one process: the model is loaded and
//! optimized once ([`SileroModel`], cheap to clone, shared by every session, e.g. as the pool's
//! prewarm value) and each session runs its own [`SileroVad`] (the model's recurrent state, the
//! 64 samples of context before each chunk, and its speech start/end detector).
//!
//! The model is Silero VAD's 16 kHz ONNX file without `If` nodes, from the MIT-licensed PyPI
//! package `silero-vad` 6.2.3 (`silero_vad/data/silero_vad_openvino_16k.onnx`), vendored in
//! `model/` beside its licence and built into the crate, so nothing is fetched at run time. It
//! runs in pure Rust with `tract-onnx`: no native library to install. Its input is one
//! 512-sample chunk of 16 kHz audio after the 64 samples that preceded it, its output the
//! speech probability of that chunk, the way the reference's Silero plugin
//! (`livekit-plugins-silero`) feeds its model.
//!
//! - [`SileroModel`]: the loaded model (an `Arc` of tract's optimized plan).
//! - [`SileroVad`]: one session's stream: push 16 kHz samples (`f32` in [-1, 1] or `i16`), get
//!   a [`Chunk`] per completed 512 samples with its probability and any [`SpeechEvent`].
//! - [`SpeechDetector`]: the plugin's start/end rule (smoothed probability, activation and
//!   deactivation thresholds, minimum speech and silence durations), pure.
//! - [`synth`]: deterministic speech-like audio for tests and benchmarks.

mod detector;
mod error;
mod model;
mod stream;
pub mod synth;

pub use detector::{DetectorOptions, SpeechDetector, SpeechEvent};
pub use error::VadError;
pub use model::{MODEL_ONNX, SileroModel};
pub use stream::{CHUNK_SAMPLES, CONTEXT_SAMPLES, Chunk, SAMPLE_RATE_HZ, SileroVad};
