//! `flaky`: a tenant's CRM lookup agent that fails fast while its upstream is down.

use std::time::Instant;

use openrtc::{Agent, AgentError, Session};

use super::{Call, FRAMES_PER_SECOND, filter_frame};

/// While the upstream is down (until `outage_ends`), fails after 0.5 to 2 seconds with an
/// error, as a call whose CRM lookup got a 503; afterwards, runs its call like `echo`.
pub(crate) struct Flaky {
    /// When the upstream comes back.
    pub(crate) outage_ends: Instant,
}

impl Agent for Flaky {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let mut rng = fastrand::Rng::with_seed(session.id().as_u64());
        let fail_at = (Instant::now() < self.outage_ends)
            .then(|| rng.u64(FRAMES_PER_SECOND / 2..=2 * FRAMES_PER_SECOND));
        let mut call = Call::new(&session);
        let mut state = 0.0;
        let mut frame_index = 0;
        while call.next_frame(&session).await {
            std::hint::black_box(filter_frame(frame_index, &mut state));
            frame_index += 1;
            if Some(frame_index) == fail_at {
                return Err(AgentError::msg("CRM lookup failed: upstream returned 503"));
            }
        }
        Ok(())
    }
}
