//! The per-poll cost of the attribution wrapper, against the same future bare.
#![allow(missing_docs)]
fn main() {}
