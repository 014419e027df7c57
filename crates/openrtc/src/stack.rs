//! The stack of a stuck worker thread: captured while the stall lasts, by signalling that one
//! thread (`capture`), and symbolized afterwards on the watchdog's reporter thread (`symbols`).
//!
//! The frame-pointer walk needs frame pointers: the workspace builds with them
//! (`.cargo/config.toml`), and the standard library ships with them. Code built without them
//! still gets the frames above its own, and the diagnosis from `/proc` whatever happens.

pub(crate) mod capture;
pub(crate) mod symbols;

pub(crate) use symbols::Stack;
