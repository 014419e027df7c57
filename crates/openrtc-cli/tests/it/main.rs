//! Integration tests of the `openrtc` CLI, in one test binary: rendered text fixtures (insta
//! snapshots), and the built binary run against stand-in worker sockets.

mod binary;
mod fixtures;
mod live;
mod render;
mod stand_in_worker;
