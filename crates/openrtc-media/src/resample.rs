//! Telephony audio at 8 kHz up to 16 kHz, the rate most speech-to-text and voice-activity
//! models take, with `rubato`'s FFT resampler (band-limited: no images above 4 kHz).
//!
//! [`Upsampler`] takes 20 ms chunks (160 samples) and gives 320 samples for each, delayed by
//! [`Upsampler::DELAY_SAMPLES`] output samples (the resampler's latency: 10 ms). It keeps its
//! buffers between chunks: nothing allocates after [`Upsampler::new`].
//!
//! [`FrameResampler`] converts 20 ms frames between any two of 8, 16, 24 and 48 kHz (a
//! LiveKit room's 48 kHz and what a speech model or a telephony codec takes), band-limited
//! the same way.

use rubato::{FftFixedIn, Resampler as _};

/// Why an upsampler could not be made or could not resample.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// The resampler refused its configuration.
    #[error("cannot make the resampler: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    /// A rate the frame resampler does not take.
    #[error("{0} Hz is not one of 8, 16, 24 or 48 kHz")]
    Rate(u32),
    /// The resampler failed on a chunk.
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
}

/// 8 kHz PCM16 in 20 ms chunks to 16 kHz PCM16: a [`FrameResampler`] between those rates.
pub struct Upsampler(FrameResampler);

impl std::fmt::Debug for Upsampler {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Upsampler").finish_non_exhaustive()
    }
}

impl Upsampler {
    /// Input samples per chunk: 20 ms at 8 kHz.
    pub const CHUNK_SAMPLES: usize = 160;

    /// Output samples per chunk: 20 ms at 16 kHz.
    pub const OUTPUT_SAMPLES: usize = 320;

    /// How many output samples the first real sample comes after (10 ms).
    pub const DELAY_SAMPLES: usize = 160;

    /// An upsampler with its buffers.
    ///
    /// # Errors
    ///
    /// [`ResampleError::Construction`] if `rubato` refuses the configuration (it does not for
    /// these fixed rates).
    pub fn new() -> Result<Self, ResampleError> {
        FrameResampler::new(8_000, 16_000).map(Self)
    }

    /// Appends the 16 kHz samples of one 20 ms chunk to `out`. A chunk shorter than 160
    /// samples is padded with silence; a longer one is taken 160 samples at a time (and its
    /// last partial part padded).
    ///
    /// # Errors
    ///
    /// [`ResampleError::Process`] if `rubato` fails (it does not for full chunks).
    pub fn process(&mut self, samples: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.0.process(samples, out)
    }
}

/// 20 ms frames of PCM16 from one rate to another (8, 16, 24 or 48 kHz), band-limited,
/// delayed by the resampler's latency, buffers kept between frames.
pub struct FrameResampler {
    resampler: FftFixedIn<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    from_hz: u32,
    to_hz: u32,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FrameResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .finish_non_exhaustive()
    }
}

impl FrameResampler {
    /// The rates it converts between.
    pub const RATES_HZ: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

    /// A resampler of 20 ms frames from `from_hz` to `to_hz`.
    ///
    /// # Errors
    ///
    /// [`ResampleError::Rate`] for a rate not in [`Self::RATES_HZ`].
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        for rate in [from_hz, to_hz] {
            if !Self::RATES_HZ.contains(&rate) {
                return Err(ResampleError::Rate(rate));
            }
        }
        let chunk = Self::frame_samples(from_hz);
        let resampler = FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, chunk, 1, 1)?;
        let output = resampler.output_buffer_allocate(true);
        Ok(Self {
            resampler,
            input: vec![vec![0.0; chunk]],
            output,
            from_hz,
            to_hz,
        })
    }

    /// Samples in 20 ms at `rate_hz`.
    #[must_use]
    pub const fn frame_samples(rate_hz: u32) -> usize {
        (rate_hz / 50) as usize
    }

    /// Appends the `to_hz` samples of one 20 ms frame at `from_hz` to `out` (a shorter frame
    /// is padded with silence, a longer one taken 20 ms at a time).
    ///
    /// # Errors
    ///
    /// [`ResampleError::Process`] if `rubato` fails (it does not for full frames).
    pub fn process(&mut self, samples: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        for chunk in samples.chunks(Self::frame_samples(self.from_hz)) {
            let input = &mut self.input[0];
            input.fill(0.0);
            for (slot, sample) in input.iter_mut().zip(chunk) {
                *slot = f32::from(*sample) / 32_768.0;
            }
            let (_, written) =
                self.resampler
                    .process_into_buffer(&self.input, &mut self.output, None)?;
            out.extend(self.output[0][..written].iter().map(|sample| {
                // In range by the clamp; the cast only drops the fraction.
                #[expect(clippy::cast_possible_truncation, reason = "clamped to i16's range")]
                let pcm = (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
                pcm
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second of a `hz` tone at `rate`, amplitude 8000.
    fn tone(hz: f64, rate: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|index| {
                ((index as f64 * hz * std::f64::consts::TAU / rate).sin() * 8_000.0) as i16
            })
            .collect()
    }

    fn zero_crossings(samples: &[i16]) -> usize {
        samples
            .windows(2)
            .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
            .count()
    }

    #[test]
    fn each_20_ms_chunk_becomes_320_samples_of_the_same_tone() {
        let mut upsampler = Upsampler::new().expect("an upsampler");
        let input = tone(1_000.0, 8_000.0, 8_000);
        let mut output = Vec::new();
        for chunk in input.chunks(Upsampler::CHUNK_SAMPLES) {
            let before = output.len();
            upsampler.process(chunk, &mut output).expect("resampled");
            assert_eq!(output.len() - before, Upsampler::OUTPUT_SAMPLES);
        }
        assert_eq!(output.len(), 16_000);
        // After the delay, the same 1 kHz tone: 2 crossings a period, within a few.
        let settled = &output[Upsampler::DELAY_SAMPLES + 320..];
        let seconds = settled.len() as f64 / 16_000.0;
        let hz = zero_crossings(settled) as f64 / 2.0 / seconds;
        assert!((hz - 1_000.0).abs() < 5.0, "{hz} Hz");
        // And its level: the peak stays near 8000 (band-limited, no gain).
        let peak = settled
            .iter()
            .map(|sample| sample.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((7_500..=8_500).contains(&peak), "peak {peak}");
        // The delay: silence before the first sample arrives.
        assert!(
            output[..Upsampler::DELAY_SAMPLES / 2]
                .iter()
                .all(|sample| sample.unsigned_abs() < 50)
        );
    }

    #[test]
    fn frames_keep_their_tone_and_length_between_48_16_and_8_khz() {
        for (from, to) in [
            (48_000, 16_000),
            (48_000, 8_000),
            (16_000, 48_000),
            (8_000, 48_000),
        ] {
            let mut resampler = FrameResampler::new(from, to).expect("a resampler");
            let input = tone(440.0, f64::from(from), from as usize);
            let mut output = Vec::new();
            for frame in input.chunks(FrameResampler::frame_samples(from)) {
                let before = output.len();
                resampler.process(frame, &mut output).expect("resampled");
                assert_eq!(output.len() - before, FrameResampler::frame_samples(to));
            }
            assert_eq!(output.len(), to as usize, "{from} -> {to}");
            // After the first 100 ms (the resampler's delay), the same 440 Hz tone.
            let settled = &output[FrameResampler::frame_samples(to) * 5..];
            let hz = zero_crossings(settled) as f64 / 2.0 / (settled.len() as f64 / f64::from(to));
            assert!((hz - 440.0).abs() < 5.0, "{from} -> {to}: {hz} Hz");
        }
    }

    #[test]
    fn an_unknown_rate_is_refused_by_name() {
        let error = FrameResampler::new(44_100, 16_000).expect_err("44.1 kHz is not taken");
        assert!(matches!(error, ResampleError::Rate(44_100)));
        assert_eq!(
            error.to_string(),
            "44100 Hz is not one of 8, 16, 24 or 48 kHz"
        );
    }

    #[test]
    fn short_chunks_are_padded_and_long_ones_split() {
        let mut upsampler = Upsampler::new().expect("an upsampler");
        let mut output = Vec::new();
        upsampler
            .process(&[0; 100], &mut output)
            .expect("resampled");
        assert_eq!(output.len(), 320);
        upsampler
            .process(&[0; 400], &mut output)
            .expect("resampled");
        assert_eq!(output.len(), 320 + 3 * 320);
    }
}
