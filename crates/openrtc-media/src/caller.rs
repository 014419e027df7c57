//! The caller's side of a Twilio Media Stream (what the provider sends a worker): `connected`,
//! `start` with the call's custom parameters, 20 ms `media` chunks of μ-law audio, `mark`
//! echoes and `stop`, each with its `sequenceNumber`; and audio to send, a 440 Hz tone
//! encoded with G.711 μ-law. Pure. Simulated callers use it: `openrtc stress` and the demo's
//! built-in callers.

use crate::g711;
use base64::Engine as _;
use serde_json::json;

/// Samples in one 20 ms chunk of 8 kHz audio.
pub const SAMPLES_PER_CHUNK: usize = 160;

/// The chunks in the tone's loop: one second, a whole number of the tone's periods, so the
/// loop has no seam.
pub const TONE_CHUNKS: usize = 50;

/// The tone's frequency.
const TONE_HZ: f64 = 440.0;

/// The tone's amplitude: about −12 dBFS, like speech at a normal level.
const TONE_AMPLITUDE: f64 = 8_000.0;

/// The telephony sample rate.
const SAMPLE_RATE_HZ: f64 = 8_000.0;

/// One second of the tone as μ-law, base64-encoded, one string per 20 ms chunk.
#[must_use]
pub fn tone_payloads() -> Vec<String> {
    let samples: Vec<i16> = (0..SAMPLES_PER_CHUNK * TONE_CHUNKS)
        .map(|index| {
            let phase = 2.0 * std::f64::consts::PI * TONE_HZ * index as f64 / SAMPLE_RATE_HZ;
            (TONE_AMPLITUDE * phase.sin()).round() as i16
        })
        .collect();
    let mut encoded = Vec::with_capacity(SAMPLES_PER_CHUNK);
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|chunk| {
            encoded.clear();
            g711::encode_ulaw(chunk, &mut encoded);
            base64::engine::general_purpose::STANDARD.encode(&encoded)
        })
        .collect()
}

/// The `connected` frame a stream opens with.
#[must_use]
pub fn connected() -> String {
    json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string()
}

/// The ids of a simulated stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamIds {
    /// `streamSid`.
    pub stream_sid: String,
    /// `callSid`.
    pub call_sid: String,
    /// `accountSid`.
    pub account_sid: String,
}

impl StreamIds {
    /// The ids of call `serial` of a caller tagged `tag` (`MZ<tag><serial>`,
    /// `CA<tag><serial>`, `AC<tag>`), so that logs tell callers and runs apart.
    #[must_use]
    pub fn new(tag: &str, serial: impl std::fmt::Display) -> Self {
        Self {
            stream_sid: format!("MZ{tag}{serial}"),
            call_sid: format!("CA{tag}{serial}"),
            account_sid: format!("AC{tag}"),
        }
    }
}

/// The `start` frame (sequence number 1), with the call's custom parameters (`agent` and
/// `tenant` route it).
#[must_use]
pub fn start(ids: &StreamIds, parameters: &[(&str, &str)]) -> String {
    let parameters: serde_json::Map<String, serde_json::Value> = parameters
        .iter()
        .map(|(name, value)| ((*name).to_owned(), json!(value)))
        .collect();
    json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ids.account_sid,
            "streamSid": ids.stream_sid,
            "callSid": ids.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": parameters,
        },
        "streamSid": ids.stream_sid,
    })
    .to_string()
}

/// The `chunk`-th `media` frame (from 1), carrying `payload` (base64), with the stream's
/// `sequence` number and its stream time (20 ms a chunk).
#[must_use]
pub fn media(ids: &StreamIds, sequence: u64, chunk: u64, payload: &str) -> String {
    json!({
        "event": "media",
        "sequenceNumber": sequence.to_string(),
        "media": {
            "track": "inbound",
            "chunk": chunk.to_string(),
            "timestamp": (chunk.saturating_sub(1) * 20).to_string(),
            "payload": payload,
        },
        "streamSid": ids.stream_sid,
    })
    .to_string()
}

/// A `mark` echo: the audio before the worker's mark `name` has played.
#[must_use]
pub fn mark(ids: &StreamIds, sequence: u64, name: &str) -> String {
    json!({
        "event": "mark",
        "sequenceNumber": sequence.to_string(),
        "streamSid": ids.stream_sid,
        "mark": {"name": name},
    })
    .to_string()
}

/// The `stop` frame: the caller hung up; nothing follows.
#[must_use]
pub fn stop(ids: &StreamIds, sequence: u64) -> String {
    json!({
        "event": "stop",
        "sequenceNumber": sequence.to_string(),
        "stop": {"accountSid": ids.account_sid, "callSid": ids.call_sid},
        "streamSid": ids.stream_sid,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use crate::protocol::{Inbound, parse_inbound};

    use super::*;

    #[test]
    fn the_worker_reads_every_frame_as_twilio_s() {
        let ids = StreamIds::new("stressabx", 3);
        assert_eq!(parse_inbound(&connected()).ok(), Some(Inbound::Connected));
        let Ok(Inbound::Start(start)) =
            parse_inbound(&start(&ids, &[("agent", "echo"), ("tenant", "tenant-2")]))
        else {
            panic!("a Twilio start");
        };
        assert_eq!(start.stream_id, "MZstressabx3");
        assert_eq!(start.call_id, "CAstressabx3");
        assert_eq!(start.account_id.as_deref(), Some("ACstressabx"));
        assert_eq!(start.custom_parameters["agent"], "echo");
        assert_eq!(start.custom_parameters["tenant"], "tenant-2");
        let payloads = tone_payloads();
        assert_eq!(payloads.len(), TONE_CHUNKS);
        let Ok(Inbound::Media(chunk)) = parse_inbound(&media(&ids, 4, 3, &payloads[2])) else {
            panic!("a media frame");
        };
        assert_eq!(
            (chunk.sequence, chunk.chunk, chunk.timestamp_ms),
            (Some(4), Some(3), Some(40))
        );
        assert_eq!(chunk.payload.len(), SAMPLES_PER_CHUNK);
        assert!(
            chunk.payload.iter().any(|code| *code != chunk.payload[0]),
            "a tone, not silence"
        );
        assert_eq!(
            parse_inbound(&mark(&ids, 9, "utterance-1")).ok(),
            Some(Inbound::Mark {
                name: "utterance-1".to_owned()
            })
        );
        assert_eq!(parse_inbound(&stop(&ids, 10)).ok(), Some(Inbound::Stop));
    }
}
