//! Speech start and end from the chunks' probabilities, by the reference's Silero plugin's
//! rule: the probability is smoothed (`s = 0.35 s + 0.65 p`, the first chunk's taken as is);
//! a chunk is speech when `s` reaches the activation threshold, or stays above the lower
//! deactivation threshold while speech goes on; speech starts after `min_speech_ms` of speech
//! chunks in a row and ends after `min_silence_ms` of other chunks in a row. Pure: durations
//! are counted in samples.

use crate::stream::{CHUNK_SAMPLES, SAMPLE_RATE_HZ};

/// The detector's thresholds and durations; the defaults are the plugin's.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct DetectorOptions {
    /// A smoothed probability at or above this is speech (default 0.5).
    pub activation_threshold: f32,
    /// While speech goes on, a smoothed probability above this is still speech (default
    /// 0.35: the activation threshold less 0.15).
    pub deactivation_threshold: f32,
    /// Speech chunks in a row needed before speech starts (default 50 ms: two chunks).
    pub min_speech_ms: u32,
    /// Other chunks in a row needed before speech ends (default 550 ms).
    pub min_silence_ms: u32,
    /// The weight of the previous smoothed value (default 0.35; 0 turns smoothing off).
    pub smoothing: f32,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            activation_threshold: 0.5,
            deactivation_threshold: 0.35,
            min_speech_ms: 50,
            min_silence_ms: 550,
            smoothing: 0.35,
        }
    }
}

/// Speech started or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechEvent {
    /// Speech started: enough speech chunks in a row.
    Start {
        /// The stream's sample count at the end of the chunk that decided it.
        at_sample: u64,
        /// How long the speech chunks in a row were, in ms.
        speech_ms: u64,
    },
    /// Speech ended: enough other chunks in a row.
    End {
        /// The stream's sample count at the end of the chunk that decided it.
        at_sample: u64,
        /// How long the speech lasted, from its first chunk to its last speech chunk, in ms.
        speech_ms: u64,
    },
}

/// The start/end rule's state.
#[derive(Clone, Debug)]
pub struct SpeechDetector {
    options: DetectorOptions,
    smoothed: Option<f32>,
    speaking: bool,
    /// Speech chunks in a row, in samples.
    speech_run_samples: u64,
    /// Other chunks in a row, in samples.
    silence_run_samples: u64,
    /// The current speech's length so far, in samples.
    speech_samples: u64,
}

impl SpeechDetector {
    /// A detector that has seen nothing.
    #[must_use]
    pub fn new(options: DetectorOptions) -> Self {
        Self {
            options,
            smoothed: None,
            speaking: false,
            speech_run_samples: 0,
            silence_run_samples: 0,
            speech_samples: 0,
        }
    }

    /// Whether speech is going on.
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// The last smoothed probability (none before the first chunk).
    #[must_use]
    pub fn smoothed(&self) -> Option<f32> {
        self.smoothed
    }

    /// Back to a detector that has seen nothing.
    pub fn reset(&mut self) {
        *self = Self::new(self.options);
    }

    /// Takes one chunk's probability, the chunk ending at sample `at_sample`; returns speech's
    /// start or end if this chunk decides it.
    pub fn observe(&mut self, probability: f32, at_sample: u64) -> Option<SpeechEvent> {
        let chunk_samples = CHUNK_SAMPLES as u64;
        let alpha = self.options.smoothing;
        let smoothed = self.smoothed.map_or(probability, |last| {
            alpha * last + (1.0 - alpha) * probability
        });
        self.smoothed = Some(smoothed);
        if self.speaking {
            self.speech_samples += chunk_samples;
        }
        let speech = smoothed >= self.options.activation_threshold
            || (self.speaking && smoothed > self.options.deactivation_threshold);
        if speech {
            self.speech_run_samples += chunk_samples;
            self.silence_run_samples = 0;
            if !self.speaking && self.speech_run_samples >= samples_of(self.options.min_speech_ms) {
                self.speaking = true;
                self.speech_samples = self.speech_run_samples;
                return Some(SpeechEvent::Start {
                    at_sample,
                    speech_ms: ms_of(self.speech_samples),
                });
            }
        } else {
            self.silence_run_samples += chunk_samples;
            self.speech_run_samples = 0;
            if self.speaking && self.silence_run_samples >= samples_of(self.options.min_silence_ms)
            {
                self.speaking = false;
                let speech = self.speech_samples.saturating_sub(self.silence_run_samples);
                self.speech_samples = 0;
                return Some(SpeechEvent::End {
                    at_sample,
                    speech_ms: ms_of(speech),
                });
            }
        }
        None
    }
}

/// Samples in `ms` milliseconds at the model's rate.
fn samples_of(ms: u32) -> u64 {
    u64::from(ms) * u64::from(SAMPLE_RATE_HZ) / 1000
}

/// Milliseconds in `samples` at the model's rate.
fn ms_of(samples: u64) -> u64 {
    samples * 1000 / u64::from(SAMPLE_RATE_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds probabilities; returns each event with the index of the chunk that decided it.
    fn events(detector: &mut SpeechDetector, probabilities: &[f32]) -> Vec<(usize, SpeechEvent)> {
        probabilities
            .iter()
            .enumerate()
            .filter_map(|(index, &p)| {
                let at_sample = (index as u64 + 1) * CHUNK_SAMPLES as u64;
                detector.observe(p, at_sample).map(|event| (index, event))
            })
            .collect()
    }

    fn unsmoothed() -> DetectorOptions {
        DetectorOptions {
            smoothing: 0.0,
            ..DetectorOptions::default()
        }
    }

    #[test]
    fn speech_starts_after_two_chunks_and_ends_after_550_ms_of_silence() {
        let mut detector = SpeechDetector::new(unsmoothed());
        // 3 speech chunks, then 18 quiet ones (576 ms: 17 are 544 ms, short of 550).
        let mut probabilities = vec![0.9; 3];
        probabilities.extend([0.1; 18]);
        let seen = events(&mut detector, &probabilities);
        assert_eq!(
            seen,
            vec![
                (
                    1,
                    SpeechEvent::Start {
                        at_sample: 1024,
                        speech_ms: 64
                    }
                ),
                (
                    20,
                    SpeechEvent::End {
                        at_sample: 21 * 512,
                        speech_ms: 96
                    }
                ),
            ]
        );
        assert!(!detector.speaking());
    }

    #[test]
    fn hysteresis_keeps_speech_between_the_thresholds() {
        let mut detector = SpeechDetector::new(unsmoothed());
        // Starts at 0.6, then 0.4 (above 0.35) holds it for as long as it lasts.
        let mut probabilities = vec![0.6; 2];
        probabilities.extend([0.4; 40]);
        let seen = events(&mut detector, &probabilities);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(detector.speaking());
        // 0.4 alone never starts speech.
        let mut fresh = SpeechDetector::new(unsmoothed());
        assert!(events(&mut fresh, &[0.4; 40]).is_empty());
    }

    #[test]
    fn a_single_speech_chunk_does_not_start_speech() {
        let mut detector = SpeechDetector::new(unsmoothed());
        assert!(events(&mut detector, &[0.1, 0.9, 0.1, 0.9, 0.1]).is_empty());
    }

    #[test]
    fn smoothing_follows_the_plugin_filter() {
        let mut detector = SpeechDetector::new(DetectorOptions::default());
        detector.observe(1.0, 512);
        detector.observe(0.0, 1024);
        let smoothed = detector.smoothed().expect("two chunks seen");
        assert!((smoothed - 0.35).abs() < 1e-6, "{smoothed}");
    }
}
