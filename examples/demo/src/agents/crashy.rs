//! `crashy`: runs normally for a few seconds, then fails with an error or panics.
//!
//! It logs at `DEBUG` what it decodes (every second, and the frame it fails on): lines the log
//! file gets from the session's flight recorder when the session fails or panics.

use openrtc::{Agent, AgentError, Session};

use super::{Call, FRAMES_PER_SECOND, filter_frame};

/// Fails (half the time with an error, half with a panic) after 3 to 10 seconds.
pub(crate) struct Crashy;

impl Agent for Crashy {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let mut rng = fastrand::Rng::with_seed(session.id().as_u64());
        let crash_at = rng.u64(3 * FRAMES_PER_SECOND..=10 * FRAMES_PER_SECOND);
        let panics = rng.bool();
        let mut call = Call::new(&session);
        let mut state = 0.0;
        let mut frame_index = 0;
        while call.next_frame(&session).await {
            std::hint::black_box(filter_frame(frame_index, &mut state));
            frame_index += 1;
            if frame_index % FRAMES_PER_SECOND == 0 {
                tracing::debug!(
                    frame = frame_index,
                    "decoded {frame_index} frames from the speech service"
                );
            }
            if frame_index == crash_at {
                tracing::debug!(
                    frame = frame_index,
                    "decoding frame {frame_index} from the speech service"
                );
                if panics {
                    panic!("crashy agent: frame {frame_index} is malformed");
                }
                return Err(AgentError::msg(format!(
                    "upstream speech service hung up at frame {frame_index}"
                )));
            }
        }
        Ok(())
    }
}
