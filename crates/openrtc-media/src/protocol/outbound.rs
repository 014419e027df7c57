//! The frames a worker sends to the provider, as JSON text, and the size of a frame of audio.
//!
//! | provider | audio | mark | clear |
//! | --- | --- | --- | --- |
//! | Twilio | `media` + `streamSid` | `mark` + `streamSid` | `clear` + `streamSid` |
//! | Telnyx | `media`, no stream id | `mark`, no stream id | `clear`, no stream id |
//! | Plivo | `playAudio` + `streamId`, μ-law 8 kHz | `checkpoint` + `streamId` | `clearAudio` + `streamId` |
//! | Exotel | `media` + `stream_sid` | `mark` + `stream_sid` | `clear` + `stream_sid` |
//!
//! Plivo answers a `checkpoint` with `playedStream`, which [`super::parse_inbound`] reads as
//! a mark.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{AudioEncoding, BASE64, Provider};

/// The sample rate [`frame_bytes`] assumes: G.711's 8 kHz.
const TELEPHONY_SAMPLE_RATE_HZ: u32 = 8000;

/// The key naming the stream on the provider's outbound frames; Telnyx's carry none.
const fn stream_key(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Twilio => Some("streamSid"),
        Provider::Telnyx => None,
        Provider::Plivo => Some("streamId"),
        Provider::Exotel => Some("stream_sid"),
    }
}

/// A frame of `event` for the stream, with the entries of `body` beside `event` and the
/// stream's key.
fn frame(provider: Provider, stream_id: &str, event: &str, body: Value) -> String {
    let mut object = Map::new();
    object.insert("event".to_owned(), Value::from(event));
    if let Some(key) = stream_key(provider) {
        object.insert(key.to_owned(), Value::from(stream_id));
    }
    if let Value::Object(entries) = body {
        object.extend(entries);
    }
    Value::Object(object).to_string()
}

/// A frame of audio to play to the caller: `payload` base64-encoded.
///
/// The payload is raw audio with no header, in the encoding the provider plays: μ-law at
/// 8 kHz for Twilio and Plivo (whose `playAudio` says so), the stream's `PCMU` or `PCMA` for
/// Telnyx, 16-bit little-endian PCM for Exotel. Twilio and Telnyx queue the frames and play
/// them in order, so they need no pacing.
#[must_use]
pub fn media_frame(provider: Provider, stream_id: &str, payload: &[u8]) -> String {
    let payload = BASE64.encode(payload);
    let body = match provider {
        Provider::Plivo => json!({
            "media": {
                "contentType": "audio/x-mulaw",
                "sampleRate": TELEPHONY_SAMPLE_RATE_HZ,
                "payload": payload,
            },
        }),
        Provider::Twilio | Provider::Telnyx | Provider::Exotel => {
            json!({ "media": { "payload": payload } })
        }
    };
    let event = match provider {
        Provider::Plivo => "playAudio",
        Provider::Twilio | Provider::Telnyx | Provider::Exotel => "media",
    };
    frame(provider, stream_id, event, body)
}

/// A mark named `name`: the provider echoes it once the audio sent before it has played (or
/// was dropped by a clear). Plivo's is a `checkpoint`, echoed as `playedStream`.
#[must_use]
pub fn mark_frame(provider: Provider, stream_id: &str, name: &str) -> String {
    match provider {
        Provider::Plivo => frame(provider, stream_id, "checkpoint", json!({ "name": name })),
        Provider::Twilio | Provider::Telnyx | Provider::Exotel => frame(
            provider,
            stream_id,
            "mark",
            json!({ "mark": { "name": name } }),
        ),
    }
}

/// A clear: the provider drops the audio it has queued and not played (barge-in). Plivo's is
/// `clearAudio`.
#[must_use]
pub fn clear_frame(provider: Provider, stream_id: &str) -> String {
    let event = match provider {
        Provider::Plivo => "clearAudio",
        Provider::Twilio | Provider::Telnyx | Provider::Exotel => "clear",
    };
    frame(provider, stream_id, event, Value::Null)
}

/// The bytes of `duration_ms` of mono audio at 8 kHz in `encoding`: 160 for 20 ms of
/// μ-law or A-law, 320 for 20 ms of 16-bit PCM.
#[must_use]
pub fn frame_bytes(encoding: AudioEncoding, duration_ms: u32) -> usize {
    frame_bytes_at(encoding, TELEPHONY_SAMPLE_RATE_HZ, 1, duration_ms)
}

/// The bytes of `duration_ms` of audio at `sample_rate_hz` with `channels` interleaved
/// channels in `encoding` (whole samples, rounded down; saturating).
#[must_use]
pub fn frame_bytes_at(
    encoding: AudioEncoding,
    sample_rate_hz: u32,
    channels: u16,
    duration_ms: u32,
) -> usize {
    let samples = u64::from(sample_rate_hz) * u64::from(duration_ms) / 1000;
    let bytes = samples
        .saturating_mul(u64::from(channels))
        .saturating_mul(encoding.bytes_per_sample() as u64);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
