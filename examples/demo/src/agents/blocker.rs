//! `blocker`: calls `std::thread::sleep` for 300 ms (`--block-ms`) every few seconds, blocking
//! its worker thread (the classic sync call inside an async agent).
//!
//! It says so at `DEBUG` before and after each call: lines the log file leaves out until the
//! stall writes them from the session's flight recorder, as an operator would see them. The
//! call is tracked (`db.customer_lookup`), so each one also counts as a blocking call of that
//! label.

use std::time::Duration;

use openrtc::{Agent, AgentError, Session};

use super::{Call, FRAMES_PER_SECOND, filter_frame};

/// Blocks its worker thread for `block` every 2 to 5 seconds.
pub(crate) struct Blocker {
    /// How long each blocking call lasts.
    pub(crate) block: Duration,
}

impl Agent for Blocker {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let mut rng = fastrand::Rng::with_seed(session.id().as_u64());
        let mut call = Call::new(&session);
        let mut state = 0.0;
        let mut frame_index = 0_u64;
        let mut next_block = frames_until_block(&mut rng);
        while call.next_frame(&session).await {
            std::hint::black_box(filter_frame(frame_index, &mut state));
            frame_index += 1;
            next_block -= 1;
            if next_block == 0 {
                tracing::debug!(
                    frame = frame_index,
                    "about to call the blocking client: customer lookup"
                );
                let started = std::time::Instant::now();
                // Tracked, so `/health` and `top` pin the blocking on this label.
                session
                    .track_value("db.customer_lookup", async { blocking_lookup(self.block) })
                    .await;
                tracing::debug!(
                    took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "the blocking client returned"
                );
                next_block = frames_until_block(&mut rng);
            }
        }
        Ok(())
    }
}

fn frames_until_block(rng: &mut fastrand::Rng) -> u64 {
    rng.u64(2 * FRAMES_PER_SECOND..=5 * FRAMES_PER_SECOND)
}

/// A synchronous "database lookup" inside the async agent: the bug the runbook hunts.
#[inline(never)]
fn blocking_lookup(block: Duration) {
    std::thread::sleep(block);
}
