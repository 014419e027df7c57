//! The LiveKit worker protocol's server side, as a stand-in the LiveKit worker's tests run
//! against (there is no LiveKit server to install here), and the stand-in's own checks.

pub(crate) mod standin;
mod standin_selftest;
