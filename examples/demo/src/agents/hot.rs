//! `hot`: CPU-heavy per frame, but it yields between slices so it never stalls its thread.

use openrtc::{Agent, AgentError, Session};

use super::{Call, filter_frame};

/// Slices of DSP per frame; each slice is a few hundred microseconds.
const SLICES_PER_FRAME: u64 = 6;
const FILTERS_PER_SLICE: u64 = 300;

/// Burns several milliseconds of CPU per 20 ms frame, yielding between slices.
pub(crate) struct Hot;

impl Agent for Hot {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let mut call = Call::new(&session);
        let mut state = 0.0;
        let mut frame_index = 0;
        while call.next_frame(&session).await {
            for _ in 0..SLICES_PER_FRAME {
                for _ in 0..FILTERS_PER_SLICE {
                    std::hint::black_box(filter_frame(frame_index, &mut state));
                }
                tokio::task::yield_now().await;
            }
            frame_index += 1;
        }
        Ok(())
    }
}
