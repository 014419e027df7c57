//! Deterministic speech-like 16 kHz audio, for tests and benchmarks that need a VAD to see
//! both speech and silence without a recording: 1.6 s of "talk" then 0.8 s of quiet, over and
//! over. The talk is a formant synthesizer: a glottal-like pulse train (about 120 Hz, with a
//! slow intonation) through three resonators set to a vowel's formants, a new vowel every
//! 250 ms syllable with a rising-then-falling envelope and a short noise burst (a consonant)
//! at its end; a little noise throughout. Silero gives it probabilities from near 0 to about
//! 0.8, crossing 0.5 often, which is what an agreement test needs.

use std::f64::consts::PI;

use crate::stream::SAMPLE_RATE_HZ;

/// Vowel formants (F1, F2, F3) in Hz.
const VOWELS: [(f64, f64, f64); 6] = [
    (730.0, 1090.0, 2440.0),
    (270.0, 2290.0, 3010.0),
    (530.0, 1840.0, 2480.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
    (660.0, 1720.0, 2410.0),
];
/// One talk-then-quiet cycle, and its talk, in seconds.
const CYCLE_S: f64 = 2.4;
const TALK_S: f64 = 1.6;
/// One syllable, in seconds.
const SYLLABLE_S: f64 = 0.25;

/// A two-pole resonator.
#[derive(Clone, Copy, Debug, Default)]
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn run(&mut self, x: f64, frequency_hz: f64, bandwidth_hz: f64) -> f64 {
        let rate = f64::from(SAMPLE_RATE_HZ);
        let r = (-PI * bandwidth_hz / rate).exp();
        let c = -r * r;
        let b = 2.0 * r * (2.0 * PI * frequency_hz / rate).cos();
        let a = 1.0 - b - c;
        let y = a * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// The generator: an endless stream of samples in [-1, 1], the same for the same seed.
#[derive(Clone, Debug)]
pub struct SpeechLike {
    /// Samples produced so far.
    index: u64,
    /// The noise generator's state (a 64-bit LCG).
    noise: u64,
    /// The pulse train's phase, in cycles.
    phase: f64,
    resonators: [Resonator; 3],
    /// Shifts the vowel sequence and the cycle, so sessions do not all speak in unison.
    seed: u64,
}

impl SpeechLike {
    /// A generator; different seeds start at different points of the cycle with different
    /// noise.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            index: (seed % 40) * u64::from(SAMPLE_RATE_HZ) * 6 / 100,
            noise: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            phase: 0.0,
            resonators: [Resonator::default(); 3],
            seed,
        }
    }

    /// The next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [f32]) {
        for sample in out {
            *sample = self.next_sample() as f32;
        }
    }

    /// The next `out.len()` samples as 16-bit PCM.
    pub fn fill_i16(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = (self.next_sample() * f64::from(i16::MAX)).round() as i16;
        }
    }

    /// Uniform noise in [-1, 1).
    fn noise(&mut self) -> f64 {
        self.noise = self
            .noise
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.noise >> 40) as f64 / f64::from(1_u32 << 24) * 2.0 - 1.0
    }

    fn next_sample(&mut self) -> f64 {
        let t = self.index as f64 / f64::from(SAMPLE_RATE_HZ);
        self.index += 1;
        let hiss = self.noise() * 0.002;
        let in_cycle = t % CYCLE_S;
        if in_cycle >= TALK_S {
            return hiss;
        }
        let syllable = (in_cycle / SYLLABLE_S) as u64;
        let position = (in_cycle % SYLLABLE_S) / SYLLABLE_S;
        let cycle = (t / CYCLE_S) as u64;
        let vowel = (syllable * 7 + cycle * 3 + self.seed) as usize % VOWELS.len();
        let (f1, f2, f3) = VOWELS[vowel];
        let f0 = 120.0 + 25.0 * (2.0 * PI * 0.6 * t).sin() + 15.0 * (1.0 - position);
        self.phase += f0 / f64::from(SAMPLE_RATE_HZ);
        if self.phase >= 1.0 {
            self.phase -= 1.0;
        }
        let pulse = if self.phase < 0.6 {
            1.0 - 2.0 * self.phase
        } else {
            -0.2
        };
        let envelope = if position < 0.8 {
            (PI * position / 0.8).sin().sqrt()
        } else {
            0.0
        };
        let consonant = if (0.8..0.9).contains(&position) {
            0.5 * self.noise()
        } else {
            0.0
        };
        let x = pulse * envelope;
        let voiced = self.resonators[0].run(x, f1, 90.0)
            + 0.7 * self.resonators[1].run(x, f2, 110.0)
            + 0.4 * self.resonators[2].run(x, f3, 170.0);
        (0.08 * voiced + 0.05 * consonant + hiss).clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_samples_and_talk_is_louder_than_quiet() {
        let mut one = vec![0.0_f32; 38_400];
        let mut two = vec![0.0_f32; 38_400];
        SpeechLike::new(0).fill(&mut one);
        SpeechLike::new(0).fill(&mut two);
        assert_eq!(one, two);
        let energy =
            |samples: &[f32]| samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
        // Seed 0 starts at the cycle's start: 1.6 s of talk, then 0.8 s of quiet.
        let (talk, quiet) = one.split_at(25_600);
        assert!(
            energy(talk) > 100.0 * energy(quiet),
            "{} vs {}",
            energy(talk),
            energy(quiet)
        );
        assert!(one.iter().all(|s| (-1.0..=1.0).contains(s)));
    }
}
