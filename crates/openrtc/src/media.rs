//! Telephony media streams: the pure parts of a Twilio-compatible media source.
//!
//! A telephony provider (Twilio Media Streams, and the look-alike protocols of Telnyx, Plivo
//! and Exotel) opens a WebSocket to the worker and sends one JSON text frame per event: a
//! `start` naming the call, then 20 ms `media` frames of base64 audio, `dtmf`, `mark` echoes,
//! and a `stop`. The worker answers with `media`, `mark` and `clear` frames of its own.
//!
//! This module holds what that exchange needs that does no I/O, so the WebSocket listener that
//! drives it stays small and every shape can be tested on its own:
//!
//! - [`g711`](crate::media::g711): μ-law and A-law to and from 16-bit linear PCM, the
//!   codecs of the audio.
//! - [`protocol`](crate::media::protocol): inbound text frames parsed into
//!   [`Inbound`](crate::media::protocol::Inbound) (the provider told apart by the shape of its
//!   `start`), and the outbound frames built for each provider.
//!
//! Neither touches the poll path: they run once per 20 ms frame of a call, may allocate, and
//! never block.

pub mod g711;
pub mod protocol;
