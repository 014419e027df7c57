//! The first admission check: a stopped or draining worker accepts no new session.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::Rejected;

/// Refuses with `stopped` once the runtime is gone, else with `draining` while the worker
/// drains (a stopped worker is draining too: `stopped` is the more exact reason).
pub(super) fn check(stopped: bool, draining: &AtomicBool) -> Result<(), Rejected> {
    if stopped {
        return Err(Rejected::Stopped);
    }
    if draining.load(Ordering::Acquire) {
        return Err(Rejected::Draining);
    }
    Ok(())
}
