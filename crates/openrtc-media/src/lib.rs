//! The pure parts of phone-call media streams, shared by the runtime (`openrtc::media`, which
//! re-exports both modules) and the `openrtc stress` load generator, which speaks the same
//! protocol from the caller's side without depending on the runtime.
//!
//! - [`g711`]: μ-law and A-law to and from 16-bit linear PCM.
//! - [`caller`]: the caller's side of a Twilio Media Stream (its frames and a tone), for
//!   simulated callers.
//! - [`resample`]: 8 kHz telephony audio up to 16 kHz for speech models (`rubato`).
//! - [`protocol`]: inbound text frames of Twilio-compatible media WebSockets parsed into
//!   [`protocol::Inbound`] (the provider told apart by the shape of its `start`), and the
//!   outbound frames built for each provider.
//!
//! No I/O, no clock, no global state.

pub mod caller;
pub mod g711;
pub mod protocol;
pub mod resample;
