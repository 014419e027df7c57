//! The real LiveKit server, for tests: [`LiveKitServer::start`] runs `livekit-server` (built by
//! `scripts/livekit-server`, found through `$OPENRTC_LIVEKIT_SERVER`) on free loopback ports
//! with a throwaway key, and its Twirp room and dispatch API is called over HTTP with minted
//! tokens. The worker protocol's tests play a raw worker against it (`real_protocol`), so what
//! they assert is what the server really does, not what a stand-in was written to do.
//!
//! A server is heavy (a process and its ports): the tests under this module run serially (the
//! `serial-timing` group in `.config/nextest.toml`).

mod fixture;
mod real_protocol;
mod room;
mod worker;

pub(crate) use fixture::{LiveKitServer, Redis};
