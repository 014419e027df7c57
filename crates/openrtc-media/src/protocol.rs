//! The JSON text frames of telephony media WebSockets: inbound frames parsed, outbound frames
//! built, for Twilio Media Streams and the providers whose protocols look like it (Telnyx,
//! Plivo, Exotel).
//!
//! Inbound, [`parse_inbound`] turns one text frame into an [`Inbound`] event, dispatching on
//! its `event` key. Every provider's `media`, `dtmf`, `mark` and `stop` share one reading
//! (keys in either `camelCase` or `snake_case`, counters as JSON strings or numbers), so the
//! parser keeps no state. Only a `start` depends on the provider, which is told apart by its
//! shape, checked in this order as the reference peer (pipecat's runner) does:
//!
//! | provider | its `start` has |
//! | --- | --- |
//! | Twilio | `event` `start`, `start.streamSid` and `start.callSid` |
//! | Telnyx | top-level `stream_id` and `start.call_control_id` |
//! | Plivo | `start.streamId` and `start.callId` |
//! | Exotel | `event` `start`, `start.stream_sid`, `start.call_sid` and `start.account_sid` |
//!
//! Anything else is [`ProtocolError::UnknownProvider`]. Events this module does not model
//! come back as [`Inbound::Other`], so a listener can ignore them as providers expect.
//!
//! Outbound, [`media_frame`], [`mark_frame`] and [`clear_frame`] build the provider's own
//! frame as JSON text; [`frame_bytes`] sizes a frame of audio.
//!
//! Pure: no I/O, no clock, no global state.

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::PAD_INDIFFERENT;

mod inbound;
mod outbound;

pub use inbound::parse_inbound;
pub use outbound::{clear_frame, frame_bytes, frame_bytes_at, mark_frame, media_frame};

/// Base64 of media payloads: the standard alphabet, padded when encoding; padding optional
/// when decoding, since providers differ on it.
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PAD_INDIFFERENT);

/// The largest inbound text frame [`parse_inbound`] reads, in bytes. A real frame is a few
/// hundred bytes (160 bytes of audio become 216 base64 characters); the limit bounds the work
/// a peer can ask for with one frame.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The telephony provider at the other end of a media WebSocket, as told by its `start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// Twilio Media Streams: the protocol the others imitate.
    #[default]
    Twilio,
    /// Telnyx media streaming: `snake_case` keys, no stream id on outbound frames.
    Telnyx,
    /// Plivo audio streams: `playAudio`, `checkpoint` and `clearAudio` outbound.
    Plivo,
    /// Exotel voice streaming: 16-bit linear PCM instead of μ-law.
    Exotel,
}

impl Provider {
    /// The provider's name in lower case, as in logs and configuration.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Plivo => "plivo",
            Self::Exotel => "exotel",
        }
    }
}

/// How the bytes of a media payload encode audio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AudioEncoding {
    /// G.711 μ-law (PCMU), one byte per sample (see [`super::g711`]).
    #[default]
    Mulaw,
    /// G.711 A-law (PCMA), one byte per sample (see [`super::g711`]).
    Alaw,
    /// 16-bit signed little-endian linear PCM, two bytes per sample (Exotel's "slin").
    Linear16,
}

impl AudioEncoding {
    /// Bytes per sample of one channel: 1 for G.711, 2 for linear PCM.
    #[must_use]
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            Self::Mulaw | Self::Alaw => 1,
            Self::Linear16 => 2,
        }
    }
}

/// What a `start` frame says about the stream and its call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStart {
    /// Who sent it, told by the frame's shape.
    pub provider: Provider,
    /// The stream's id (Twilio `streamSid`, Telnyx `stream_id`, Plivo `streamId`, Exotel
    /// `stream_sid`): what outbound frames carry.
    pub stream_id: String,
    /// The call's id (Twilio `callSid`, Telnyx `call_control_id`, Plivo `callId`, Exotel
    /// `call_sid`).
    pub call_id: String,
    /// The provider account (Twilio `accountSid`, Plivo `accountId`, Exotel `account_sid`);
    /// Telnyx sends none.
    pub account_id: Option<String>,
    /// The encoding of inbound `media` payloads.
    pub encoding: AudioEncoding,
    /// The inbound audio's sample rate, in hertz (8000 when the frame does not say).
    pub sample_rate_hz: u32,
    /// The inbound audio's channel count (1 when the frame does not say).
    pub channels: u16,
    /// The stream's custom parameters (Twilio `customParameters` from TwiML `<Parameter>`s,
    /// Telnyx and Exotel `custom_parameters`; Plivo sends none). A value that is not a JSON
    /// string is kept as its JSON text (`5`, `true`, `{"a":1}`).
    pub custom_parameters: BTreeMap<String, String>,
    /// The caller's number: Twilio's `from_number` custom parameter, or the `start.from` of
    /// the others. `None` when absent or empty.
    pub from: Option<String>,
    /// The called number: Twilio's `to_number` custom parameter, or the `start.to` of the
    /// others. `None` when absent or empty.
    pub to: Option<String>,
}

/// One inbound `media` frame: a chunk of the caller's audio.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaChunk {
    /// The frame's `sequenceNumber` (or `sequence_number`): every message of the stream is
    /// numbered, from 1 at `start`.
    pub sequence: Option<u64>,
    /// The chunk's number, `media.chunk`: audio chunks only, from 1.
    pub chunk: Option<u64>,
    /// `media.timestamp`: stream time in milliseconds, for detecting gaps (Plivo's is wall
    /// time, still in milliseconds).
    pub timestamp_ms: Option<u64>,
    /// The base64-decoded payload: still encoded audio, in the stream's [`AudioEncoding`].
    pub payload: Vec<u8>,
}

/// One inbound text frame, by its `event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `connected`: the first frame, before `start` (some providers and simulators omit it).
    Connected,
    /// `start`: the stream and its call, once.
    Start(StreamStart),
    /// `media`: a chunk of the caller's audio.
    Media(MediaChunk),
    /// `dtmf`: a key the caller pressed.
    Dtmf {
        /// The key: `0`-`9`, `*`, `#` (and `A`-`D` where the provider passes them).
        digit: String,
    },
    /// `mark` (Plivo: `playedStream`): the audio sent before the mark of this name has played,
    /// or was dropped by a clear.
    Mark {
        /// The name the worker gave the mark.
        name: String,
    },
    /// `stop`: the stream is over; nothing follows.
    Stop,
    /// Any other event, to be ignored (Plivo's `clearedAudio`, Telnyx's `error`, ...).
    Other {
        /// The frame's `event`.
        event: String,
    },
}

/// Why an inbound frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is longer than [`MAX_FRAME_BYTES`]; it was not parsed.
    #[error("frame of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The frame's length, in bytes.
        bytes: usize,
        /// The limit, in bytes ([`MAX_FRAME_BYTES`]).
        limit: usize,
    },
    /// The frame is not a JSON object.
    #[error("frame is not a JSON object")]
    NotJson,
    /// The frame is a JSON object without a string `event`.
    #[error("frame has no string `event`")]
    NoEvent,
    /// A field the event needs is missing or has the wrong type or value.
    #[error("`{event}` frame: field `{field}` {reason}")]
    BadField {
        /// The frame's `event`.
        event: String,
        /// The field, as a dotted path from the frame's top (`start.callSid`).
        field: &'static str,
        /// What is wrong with it (`is missing`, `is not a string`, ...).
        reason: String,
    },
    /// A `media` payload is not valid base64.
    #[error("`{event}` frame: payload is not valid base64")]
    BadBase64 {
        /// The frame's `event`.
        event: String,
    },
    /// A `start` frame matches no provider's shape.
    #[error("`start` frame matches no known provider (keys: {keys})")]
    UnknownProvider {
        /// The frame's keys, with those of its `start` object in braces:
        /// `event, start{callSid, tracks}, streamSid`.
        keys: String,
    },
}

#[cfg(test)]
mod tests;
