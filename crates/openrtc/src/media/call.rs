//! The agent's side of a phone call: [`CallMedia`], what `Session::media` hands a session
//! that came from a media WebSocket. Inbound audio arrives decoded (PCM16 at 8 kHz) with the
//! stream's timing and any sequence gap; outbound audio is encoded for the provider in the
//! session's own polls (so its cost is the session's) and queued to the connection's pump.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::health::CallHealth;
use super::protocol::{self, AudioEncoding, StreamStart};

/// Samples in 20 ms of 8 kHz audio: the chunk [`CallMedia::send`] sends audio in.
pub const SAMPLES_PER_CHUNK: usize = 160;

/// The sample rate of the audio [`CallMedia`] exchanges.
pub const SAMPLE_RATE_HZ: u32 = 8_000;

/// Microseconds of audio in one sample at [`SAMPLE_RATE_HZ`].
pub(crate) const US_PER_SAMPLE: u64 = 125;

/// One chunk of the caller's audio.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioFrame {
    /// The samples, PCM16 at 8 kHz mono.
    pub samples: Vec<i16>,
    /// Where the chunk sits in the stream's own time (provider `timestamp`), if given.
    pub timestamp_ms: Option<u64>,
    /// The provider's sequence number of the message, if given.
    pub sequence: Option<u64>,
    /// Messages missing just before this one (a jump in sequence numbers): audio the caller
    /// said that never arrived.
    pub missing_before_count: u64,
}

/// What the caller's side of the stream sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// A chunk of audio.
    Audio(AudioFrame),
    /// A key the caller pressed.
    Dtmf(String),
    /// The provider played every chunk sent before the mark of this name, or dropped it on a
    /// `clear` (both count as "done").
    Mark(String),
}

/// The call is over: the caller hung up, the stream stopped, or the connection broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the call is over: its media stream has closed")]
pub struct CallEnded;

/// What the session asks the connection's pump to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A text frame, already encoded for the provider (a mark).
    Frame(String),
    /// A frame of audio, encoded for the provider, and how long the audio lasts.
    Audio { frame: String, duration_us: u64 },
    /// A `clear` frame.
    Clear(String),
    /// Close the stream (the session hangs up).
    HangUp,
}

impl Outbound {
    /// The text frame to send, if it is one (not a hang-up).
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Self::Frame(text) | Self::Audio { frame: text, .. } | Self::Clear(text) => Some(text),
            Self::HangUp => None,
        }
    }
}

/// Lifetime counters shared by a call's pump, its session and the snapshot.
#[derive(Debug, Default)]
pub(crate) struct CallCounters {
    /// Audio messages received.
    pub(crate) frames_in: AtomicU64,
    /// Audio messages the session was too slow to take (its queue was full): dropped.
    pub(crate) frames_dropped: AtomicU64,
    /// Audio messages missing from the sequence (gaps in what the provider sent).
    pub(crate) frames_missing: AtomicU64,
    /// Audio messages sent.
    pub(crate) frames_out: AtomicU64,
    /// Audio messages whose stream time jumped past the audio before them.
    pub(crate) stream_jumps: AtomicU64,
}

/// A session's phone call: receive what the caller sends, send audio, marks and `clear`, and
/// hang up. Taken once from `Session::media`.
#[derive(Debug)]
pub struct CallMedia {
    start: Arc<StreamStart>,
    /// The `start` frame as it came, for an isolated session's process to parse again.
    start_text: Arc<str>,
    inbound: mpsc::Receiver<MediaEvent>,
    outbound: mpsc::Sender<Outbound>,
    health: Arc<CallHealth>,
}

impl CallMedia {
    pub(crate) fn new(
        start: Arc<StreamStart>,
        start_text: Arc<str>,
        inbound: mpsc::Receiver<MediaEvent>,
        outbound: mpsc::Sender<Outbound>,
        health: Arc<CallHealth>,
    ) -> Self {
        Self {
            start,
            start_text,
            inbound,
            outbound,
            health,
        }
    }

    /// The stream's `start`, shared.
    pub(crate) fn start_arc(&self) -> &Arc<StreamStart> {
        &self.start
    }

    /// The call's health, which the snapshot reads for as long as the session lives.
    pub(crate) fn health(&self) -> &Arc<CallHealth> {
        &self.health
    }

    /// The `start` frame's text, as the provider sent it.
    pub(crate) fn start_text(&self) -> &Arc<str> {
        &self.start_text
    }

    /// Queues what an isolated session's process sent, as the session's own `send`, `mark`,
    /// `clear` or `hang_up` would have: counted and timed here, where the caller's audio
    /// leaves.
    pub(crate) async fn forward(&self, outbound: Outbound) -> Result<(), CallEnded> {
        let sent = match &outbound {
            Outbound::Audio { duration_us, .. } => Some(Some(*duration_us)),
            Outbound::Clear(_) => Some(None),
            Outbound::Frame(_) | Outbound::HangUp => None,
        };
        self.push(outbound).await?;
        match sent {
            Some(Some(duration_us)) => self.sent_audio(duration_us),
            Some(None) => self.health.with(super::health::Windows::cleared),
            None => {}
        }
        Ok(())
    }

    /// Counts and times one chunk of audio once it is queued.
    fn sent_audio(&self, duration_us: u64) {
        self.health
            .counters
            .frames_out
            .fetch_add(1, Ordering::Relaxed);
        // Measured once the chunk is queued: a full queue (a slow socket) makes it late.
        let at_us = self.health.now_us();
        self.health
            .with(|windows| windows.outbound(at_us, duration_us));
    }

    /// The stream's `start`: provider, stream and call ids, custom parameters.
    #[must_use]
    pub fn start(&self) -> &StreamStart {
        &self.start
    }

    /// The next thing the caller's side sent; `None` once the stream has stopped or the
    /// connection has closed.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        self.inbound.recv().await
    }

    /// Sends PCM16 8 kHz audio to the caller, encoded for the provider, in 20 ms chunks
    /// (the provider buffers and plays them in order: no pacing is needed).
    ///
    /// # Errors
    ///
    /// [`CallEnded`] once the stream has closed.
    pub async fn send(&self, samples: &[i16]) -> Result<(), CallEnded> {
        let mut encoded = Vec::with_capacity(SAMPLES_PER_CHUNK * 2);
        for chunk in samples.chunks(SAMPLES_PER_CHUNK) {
            encoded.clear();
            encode(self.start.encoding, chunk, &mut encoded);
            let frame = protocol::media_frame(self.start.provider, &self.start.stream_id, &encoded);
            let duration_us = chunk.len() as u64 * US_PER_SAMPLE;
            self.push(Outbound::Audio { frame, duration_us }).await?;
            self.sent_audio(duration_us);
        }
        Ok(())
    }

    /// Asks to be told (a [`MediaEvent::Mark`] of this name) when the audio sent so far has
    /// played.
    ///
    /// # Errors
    ///
    /// [`CallEnded`] once the stream has closed.
    pub async fn mark(&self, name: &str) -> Result<(), CallEnded> {
        let frame = protocol::mark_frame(self.start.provider, &self.start.stream_id, name);
        self.push(Outbound::Frame(frame)).await
    }

    /// Drops the audio the provider has not played yet (the caller barged in). Marks still
    /// pending come back as played, or not at all (simulators differ): both are fine.
    ///
    /// # Errors
    ///
    /// [`CallEnded`] once the stream has closed.
    pub async fn clear(&self) -> Result<(), CallEnded> {
        let frame = protocol::clear_frame(self.start.provider, &self.start.stream_id);
        self.push(Outbound::Clear(frame)).await?;
        self.health.with(super::health::Windows::cleared);
        Ok(())
    }

    /// Ends the call: the connection closes once what was sent before has gone out.
    pub async fn hang_up(self) {
        let _ = self.outbound.send(Outbound::HangUp).await;
    }

    async fn push(&self, outbound: Outbound) -> Result<(), CallEnded> {
        self.outbound.send(outbound).await.map_err(|_| CallEnded)
    }
}

/// Encodes PCM16 for the wire.
fn encode(encoding: AudioEncoding, samples: &[i16], out: &mut Vec<u8>) {
    match encoding {
        AudioEncoding::Mulaw => super::g711::encode_ulaw(samples, out),
        AudioEncoding::Alaw => super::g711::encode_alaw(samples, out),
        AudioEncoding::Linear16 => {
            out.extend(samples.iter().flat_map(|sample| sample.to_le_bytes()));
        }
    }
}

/// Decodes wire audio to PCM16 (an odd trailing byte of 16-bit audio is dropped).
pub(crate) fn decode(encoding: AudioEncoding, bytes: &[u8], out: &mut Vec<i16>) {
    match encoding {
        AudioEncoding::Mulaw => super::g711::decode_ulaw(bytes, out),
        AudioEncoding::Alaw => super::g711::decode_alaw(bytes, out),
        AudioEncoding::Linear16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_audio_round_trips_little_endian() {
        let samples = [0_i16, 1, -1, i16::MAX, i16::MIN];
        let mut bytes = Vec::new();
        encode(AudioEncoding::Linear16, &samples, &mut bytes);
        assert_eq!(&bytes[..4], &[0, 0, 1, 0]);
        let mut back = Vec::new();
        decode(AudioEncoding::Linear16, &bytes, &mut back);
        assert_eq!(back, samples);
        back.clear();
        decode(AudioEncoding::Linear16, &[1, 0, 7], &mut back);
        assert_eq!(back, [1], "an odd trailing byte is dropped");
    }
}
