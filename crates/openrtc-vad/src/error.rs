//! The crate's typed errors: loading the model, and running it.

use std::path::PathBuf;

/// Why the model did not load or a chunk's inference failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VadError {
    /// The model file could not be read.
    #[error("cannot read the Silero model {}: {source}", path.display())]
    ReadModel {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a Silero model tract can load, type and optimize for one 576-sample
    /// input and a 2×1×128 state.
    #[error("cannot load the Silero model: {source}")]
    Load {
        /// tract's error, with its context chain.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Running the model on a chunk failed.
    #[error("Silero inference failed: {source}")]
    Inference {
        /// tract's error, with its context chain.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model ran but its outputs are not a probability and a 2×1×128 state.
    #[error("the Silero model's outputs are not a probability and a 2x1x128 state: {detail}")]
    UnexpectedOutput {
        /// What was found instead.
        detail: String,
    },
}

impl VadError {
    pub(crate) fn load(error: tract_onnx::prelude::TractError) -> Self {
        Self::Load {
            source: error.into(),
        }
    }

    pub(crate) fn inference(error: tract_onnx::prelude::TractError) -> Self {
        Self::Inference {
            source: error.into(),
        }
    }
}
