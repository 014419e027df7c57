//! `leaky`: keeps every frame's buffers, so its live heap grows until its memory cap kills it.

use openrtc::{Agent, AgentError, Session};

use super::Call;

/// Bytes kept per 20 ms frame: 16 MiB a second.
const LEAK_PER_FRAME: usize = 320 * 1024;

/// Holds on to a buffer per frame (a transcript cache that is never trimmed).
pub(crate) struct Leaky;

impl Agent for Leaky {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let mut call = Call::new(&session);
        let mut kept: Vec<Vec<u8>> = Vec::new();
        while call.next_frame(&session).await {
            kept.push(vec![kept.len() as u8; LEAK_PER_FRAME]);
        }
        Ok(())
    }
}
