//! The worker capacity check: an exact place among `max_concurrent_sessions`.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::Rejected;

/// Reserves a place below `max`: one atomic `fetch_update`, so concurrent launches never
/// overshoot the cap.
pub(super) fn reserve(active: &AtomicU32, max: u32) -> Result<Reservation<'_>, Rejected> {
    active
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken < max).then_some(taken + 1)
        })
        .map_err(|_| Rejected::WorkerFull { max })?;
    Ok(Reservation {
        active: Some(active),
    })
}

/// A place reserved for a session being launched. Dropped, it gives the place back (once);
/// kept, the place belongs to the session, and its end gives it back.
#[derive(Debug)]
#[must_use = "a reservation dropped at once gives its place back"]
pub(crate) struct Reservation<'a> {
    active: Option<&'a AtomicU32>,
}

impl Reservation<'_> {
    /// Hands the place to the session now registered in the pool.
    pub(crate) fn keep(mut self) {
        self.active = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
