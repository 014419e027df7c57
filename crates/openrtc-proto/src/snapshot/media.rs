//! A phone call's media health, in the row of a session that came from the media listener:
//! what the caller hears, measured in the worker over a sliding window.

use serde::{Deserialize, Serialize};

/// One call's media: its provider and stream, lifetime frame counts, and its audio's health
/// over the last `window_ms`.
///
/// Outbound lateness follows the agent's playout timeline: its first chunk is due when sent,
/// each next chunk when the one before has played; a chunk sent after its due time is late by
/// the difference (silence the caller heard mid-speech). A chunk sent long after (the
/// worker's pause threshold, 500 ms), or the first after a `clear`, starts a new timeline: a
/// silent agent is not late. Inbound jitter is each chunk's arrival against the first chunk's
/// arrival plus the stream time since it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CallMediaSnapshot {
    /// The telephony provider (`twilio`, `telnyx`, `exotel`).
    pub provider: String,
    /// The provider's stream id.
    pub stream_id: String,
    /// Audio frames received since the call started.
    pub frames_in_count: u64,
    /// Audio frames sent since the call started.
    pub frames_out_count: u64,
    /// Audio frames missing from the provider's sequence since the call started.
    pub frames_missing_count: u64,
    /// Inbound events the session was too slow to take (dropped) since the call started.
    pub frames_dropped_count: u64,
    /// Inbound frames whose stream time jumped past the audio before them since the call
    /// started.
    pub stream_jumps_count: u64,
    /// How far back the window's figures look.
    pub window_ms: u64,
    /// Frames missing in the window.
    pub window_frames_missing_count: u64,
    /// Events dropped in the window.
    pub window_frames_dropped_count: u64,
    /// Stream-time jumps in the window.
    pub window_stream_jumps_count: u64,
    /// The p99 of inbound frames' |arrival − expected arrival| in the window.
    pub inbound_jitter_p99_ms: f64,
    /// The p99 of outbound chunks' lateness in the window (0 for chunks on time).
    pub outbound_lateness_p99_ms: f64,
    /// Whether the caller is hearing trouble: outbound lateness p99 over 40 ms, inbound
    /// jitter p99 over 60 ms, or any frame missing or dropped in the window.
    pub degrading: bool,
}
