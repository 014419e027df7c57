//! Opus for a room's audio (libopus through the `opus` crate): 48 kHz mono, 20 ms frames of
//! 960 samples. Buffers are kept, so encoding or decoding a frame allocates nothing.

use thiserror::Error;

/// The sample rate of a room's audio, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 48_000;
/// The samples in one 20 ms frame at 48 kHz, mono.
pub const FRAME_SAMPLES: usize = 960;
/// The longest Opus packet a frame decodes from (120 ms, Opus's maximum).
const MAX_DECODED_SAMPLES: usize = FRAME_SAMPLES * 6;
/// Room for one encoded frame (well above what 20 ms of voice takes).
const MAX_PACKET_BYTES: usize = 1_500;

/// A libopus error, with what was being done.
#[derive(Debug, Error)]
#[error("opus {doing}: {source}")]
pub struct CodecError {
    doing: &'static str,
    #[source]
    source: opus::Error,
}

/// One published track's Opus encoder.
pub(crate) struct Encoder {
    inner: opus::Encoder,
    packet: Box<[u8; MAX_PACKET_BYTES]>,
}

impl Encoder {
    /// A voice encoder at 48 kHz, mono.
    pub(crate) fn new() -> Result<Self, CodecError> {
        let inner = opus::Encoder::new(
            SAMPLE_RATE_HZ,
            opus::Channels::Mono,
            opus::Application::Voip,
        )
        .map_err(|source| CodecError {
            doing: "creating an encoder",
            source,
        })?;
        Ok(Self {
            inner,
            packet: Box::new([0; MAX_PACKET_BYTES]),
        })
    }

    /// One frame of [`FRAME_SAMPLES`] samples as an Opus packet.
    pub(crate) fn encode(&mut self, samples: &[i16]) -> Result<&[u8], CodecError> {
        let length = self
            .inner
            .encode(samples, &mut self.packet[..])
            .map_err(|source| CodecError {
                doing: "encoding a frame",
                source,
            })?;
        Ok(&self.packet[..length])
    }
}

/// One subscribed track's Opus decoder.
pub(crate) struct Decoder {
    inner: opus::Decoder,
    samples: Box<[i16; MAX_DECODED_SAMPLES]>,
}

impl Decoder {
    /// A decoder to 48 kHz, mono.
    pub(crate) fn new() -> Result<Self, CodecError> {
        let inner = opus::Decoder::new(SAMPLE_RATE_HZ, opus::Channels::Mono).map_err(|source| {
            CodecError {
                doing: "creating a decoder",
                source,
            }
        })?;
        Ok(Self {
            inner,
            samples: Box::new([0; MAX_DECODED_SAMPLES]),
        })
    }

    /// The samples of one Opus packet (960 for a 20 ms packet).
    pub(crate) fn decode(&mut self, packet: &[u8]) -> Result<&[i16], CodecError> {
        let count = self
            .inner
            .decode(packet, &mut self.samples[..], false)
            .map_err(|source| CodecError {
                doing: "decoding a packet",
                source,
            })?;
        Ok(&self.samples[..count])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 440 Hz tone, `frames` frames long.
    fn tone(frames: usize) -> Vec<i16> {
        (0..frames * FRAME_SAMPLES)
            .map(|n| {
                let t = n as f64 / f64::from(SAMPLE_RATE_HZ);
                (f64::sin(2.0 * std::f64::consts::PI * 440.0 * t) * 8_000.0) as i16
            })
            .collect()
    }

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let mut encoder = Encoder::new().expect("an encoder");
        let mut decoder = Decoder::new().expect("a decoder");
        let input = tone(25);
        let mut output = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES) {
            let packet = encoder.encode(frame).expect("a packet").to_vec();
            assert!(!packet.is_empty() && packet.len() < 400, "{}", packet.len());
            let samples = decoder.decode(&packet).expect("samples");
            assert_eq!(samples.len(), FRAME_SAMPLES);
            output.extend_from_slice(samples);
        }
        // After the codec's start-up the output is a 440 Hz tone: 440 upward zero
        // crossings a second, so 110 in the last quarter second, give or take one.
        let tail = &output[output.len() - 12_000..];
        let crossings = tail.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        assert!((109..=111).contains(&crossings), "{crossings} crossings");
        let peak = tail.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((6_000..=10_000).contains(&peak), "peak {peak}");
    }

    #[test]
    fn garbage_is_a_codec_error() {
        let mut decoder = Decoder::new().expect("a decoder");
        assert!(decoder.decode(&[0xff; 3]).is_err());
    }
}
