//! The LiveKit worker protocol's server side as a stand-in (what the real server cannot be
//! made to do on cue: races, dropped assignments, raw frames, closes), its own checks, and the
//! runtime's LiveKit worker tested against it. The real server's tests are in
//! `livekit_server`.

pub(crate) mod standin;
mod standin_selftest;
mod worker;
