//! The Silero model, loaded once: the ONNX file parsed, typed for one chunk at a time,
//! optimized, and planned by tract. Every session's stream holds an `Arc` of the same plan.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoRunnable, Tensor, TypedSimplePlan, tract_ndarray,
    tvec,
};

use crate::error::VadError;
use crate::stream::{CHUNK_SAMPLES, CONTEXT_SAMPLES, STATE_SHAPE, read_outputs, zero_state};

/// The vendored model: Silero VAD's 16 kHz ONNX file without `If` nodes, from PyPI
/// `silero-vad` 6.2.3 (`silero_vad/data/silero_vad_openvino_16k.onnx`, MIT licence beside it
/// in the crate's `model/`). Inputs `input` (1×576 f32) and `state` (2×1×128 f32); outputs
/// `output` (1×1, the probability) and `stateN`.
pub const MODEL_ONNX: &[u8] = include_bytes!("../model/silero_vad_16k.onnx");

/// tract's runnable plan of the model.
pub(crate) type Plan = TypedSimplePlan;

/// The loaded model, shared by every session's [`SileroVad`](crate::SileroVad). Cloning it
/// clones an `Arc`.
#[derive(Clone)]
pub struct SileroModel {
    plan: Arc<Plan>,
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroModel")
            .field("nodes", &self.plan.model().nodes().len())
            .finish()
    }
}

impl SileroModel {
    /// Loads the vendored model ([`MODEL_ONNX`]). Takes tens of milliseconds: load it once per
    /// process (the pool's prewarm is the place) and share it.
    ///
    /// # Errors
    /// [`VadError::Load`] if tract cannot load it (it can: the crate's tests load it).
    pub fn load() -> Result<Self, VadError> {
        Self::from_onnx_bytes(MODEL_ONNX)
    }

    /// Loads a Silero 16 kHz model file with the vendored one's inputs and outputs.
    ///
    /// # Errors
    /// [`VadError::ReadModel`] if the file cannot be read, [`VadError::Load`] if it is not
    /// such a model.
    pub fn from_path(path: &Path) -> Result<Self, VadError> {
        let bytes = std::fs::read(path).map_err(|source| VadError::ReadModel {
            path: path.to_owned(),
            source,
        })?;
        Self::from_onnx_bytes(&bytes)
    }

    /// Loads a Silero 16 kHz model from the bytes of its ONNX file.
    ///
    /// # Errors
    /// [`VadError::Load`] if tract cannot parse, type, optimize or plan it for a 1×576 input
    /// and a 2×1×128 state.
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Self, VadError> {
        let input_shape = [1, CONTEXT_SAMPLES + CHUNK_SAMPLES];
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|model| model.with_input_fact(0, f32::fact(input_shape).into()))
            .and_then(|model| model.with_input_fact(1, f32::fact(STATE_SHAPE).into()))
            .and_then(InferenceModelExt::into_optimized)
            .and_then(IntoRunnable::into_runnable)
            .map_err(VadError::load)?;
        let model = Self { plan };
        model.check_outputs()?;
        Ok(model)
    }

    /// The plan, for a session's stream.
    pub(crate) fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Runs one silent chunk from a zero state: the outputs must be a probability and a state
    /// of the right shape, so a wrong file fails here, not in every session.
    fn check_outputs(&self) -> Result<(), VadError> {
        let input = tract_ndarray::Array2::<f32>::zeros((1, CONTEXT_SAMPLES + CHUNK_SAMPLES));
        let outputs = self
            .plan
            .run(tvec!(Tensor::from(input).into(), zero_state().into()))
            .map_err(VadError::inference)?;
        read_outputs(&outputs).map(|_| ())
    }
}
