//! Integration tests of the runtime: real pools, real threads, real sockets.

mod lifecycle;
mod socket;
mod support;
mod timing;
