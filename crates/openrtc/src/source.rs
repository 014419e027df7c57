//! Where sessions come from besides `launch`: a LiveKit server's dispatcher (`livekit`).

#[cfg(feature = "livekit")]
pub mod livekit;
