//! `echo`: a well-behaved agent: a little DSP per frame, plus a light child task that makes
//! one tracked call a second (`stt.transcribe`: a timer standing in for a speech-to-text
//! request, awaited, so never a blocking call; about one in twenty fails).

use std::time::Duration;

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
                let mut rng = fastrand::Rng::with_seed(session.id().as_u64());
                let mut seconds = tokio::time::interval(Duration::from_secs(1));
                let mut words = 0_u64;
                loop {
                    tokio::select! {
                        _ = seconds.tick() => {
                            let latency = Duration::from_millis(rng.u64(40..=160));
                            let fails = rng.u8(0..20) == 0;
                            if session.track("stt.transcribe", transcribe(latency, fails)).await.is_ok() {
                                words += 3;
                            }
                        }
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

/// A stand-in for a speech-to-text request: waits `latency`, then fails or not.
async fn transcribe(latency: Duration, fails: bool) -> Result<(), std::io::Error> {
    tokio::time::sleep(latency).await;
    if fails {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "speech-to-text provider timed out",
        ))
    } else {
        Ok(())
    }
}
