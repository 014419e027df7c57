//! `echo`: a well-behaved agent: a little DSP per frame, plus a light child task.

use openrtc::{Agent, AgentError, Session};

use super::{Call, VadModel, filter_frame};

/// Filters each frame, runs the worker's shared voice-activity model on it, and keeps a child
/// task that "transcribes" once a second.
pub(crate) struct Echo;

impl Agent for Echo {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let transcriber = session.spawn({
            let session = session.clone();
            async move {
                let mut seconds = tokio::time::interval(std::time::Duration::from_secs(1));
                let mut words = 0_u64;
                loop {
                    tokio::select! {
                        _ = seconds.tick() => words += 3,
                        () = session.cancelled() => return words,
                    }
                }
            }
        });
        let vad = session.shared::<VadModel>();
        let mut call = Call::new(&session);
        let mut state = 0.0;
        let mut frame_index = 0;
        while call.next_frame(&session).await {
            let energy = filter_frame(frame_index, &mut state);
            if let Some(vad) = &vad {
                std::hint::black_box(vad.speech_probability(frame_index, energy));
            }
            frame_index += 1;
        }
        transcriber.abort();
        Ok(())
    }
}
