//! Phone calls over a Twilio-compatible media WebSocket.
//!
//! A telephony provider (Twilio Media Streams, and the look-alike protocols of Telnyx, Plivo
//! and Exotel) dials the worker's media listener ([`crate::AgentPoolBuilder::media_listener`])
//! and sends one JSON text frame per event: a `start` naming the call, then 20 ms `media`
//! frames of base64 audio, `dtmf`, `mark` echoes, and a `stop`. The worker answers with
//! `media`, `mark` and `clear` frames of its own. Each connection's `start` launches a
//! session, routed by its custom parameters (`agent`, `tenant`); the agent takes the call with
//! `Session::media` and gets a [`CallMedia`](crate::media::CallMedia): decoded audio in,
//! audio, marks and `clear` out.
//!
//! - [`g711`](crate::media::g711): μ-law and A-law to and from 16-bit linear PCM (pure; from
//!   the `openrtc-media` crate).
//! - [`protocol`](crate::media::protocol): inbound text frames parsed into
//!   [`Inbound`](crate::media::protocol::Inbound) (the provider told apart by the shape of its
//!   `start`), and the outbound frames built for each provider (pure; from `openrtc-media`).
//! - [`caller`](crate::media::caller): the caller's side of a stream (its frames and a tone),
//!   for simulated callers (from `openrtc-media`).
//! - [`resample`](crate::media::resample): 8 kHz call audio up to 16 kHz for speech models
//!   (`Upsampler`, `rubato`'s FFT resampler; from `openrtc-media`).
//! - `call`: [`CallMedia`](crate::media::CallMedia), the agent's side of a call.
//! - [`VoiceWebhook`](crate::media::VoiceWebhook): `POST /voice`, answering a provider's call
//!   with TwiML that streams it to the media WebSocket, routed by the number called, its
//!   signature checked.
//! - `health` (private): each call's media health over a sliding window (inbound gaps and
//!   jitter, outbound lateness), which the snapshot, `top` and `/metrics` show.
//! - `listener` (private): the axum WebSocket route on the pool's runtime, each connection's
//!   set-up up to its session, and each call's pump, a task of its session.
//!
//! Route a call with `<Parameter name="agent" value="…"/>` in the TwiML `<Stream>`; the
//! other parameters and the call's ids (`call.provider`, `call.stream_id`, `call.call_id`,
//! `call.from`, `call.to`) are in the session's metadata. None of this touches the poll path:
//! it runs once per 20 ms frame of a call, may allocate, and never blocks.

pub(crate) mod call;
pub(crate) mod health;
pub(crate) mod listener;
mod webhook;

pub use openrtc_media::{caller, g711, protocol, resample};

pub use call::{AudioFrame, CallEnded, CallMedia, MediaEvent, SAMPLE_RATE_HZ, SAMPLES_PER_CHUNK};
pub use health::{DEGRADING_JITTER_P99_MS, DEGRADING_LATENESS_P99_MS, PAUSE, WINDOW};
pub use listener::{DEFAULT_PATH, IDLE_TIMEOUT, MAX_CONNECTING, START_TIMEOUT, VOICE_PATH};
pub use webhook::{VoiceWebhook, VoiceWebhookError};
