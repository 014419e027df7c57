//! The demo's shared model: loaded once per worker by the pool's prewarm, read by every
//! session (as a real worker shares its voice-activity and turn-detection models).

/// A stand-in for a voice-activity model: 2 Mi weights (8 MiB), computed at load.
pub(crate) struct VadModel {
    weights: Vec<f32>,
}

impl VadModel {
    /// How many weights it holds.
    const WEIGHTS: usize = 2 * 1024 * 1024;

    /// Loads it (computes its weights; a real one would read a file).
    pub(crate) fn load() -> Self {
        let weights = (0..Self::WEIGHTS)
            .map(|index| ((index % 997) as f32 / 997.0).sin())
            .collect();
        Self { weights }
    }

    /// The speech probability of a frame of the given energy (a toy use of the weights).
    pub(crate) fn speech_probability(&self, frame_index: u64, energy: f32) -> f32 {
        let weight = self.weights[(frame_index as usize * 31) % self.weights.len()];
        (energy * weight).abs().min(1.0)
    }
}
