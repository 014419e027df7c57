//! `openrtc-bench` run as a program on tiny configurations: each subcommand runs and prints
//! valid JSON with figures that hold (the figures themselves are for the README, not tests).

mod live;
