//! `echo`: a well-behaved agent: a little DSP per frame, plus a light child task that makes
//! one tracked call a second (`stt.transcribe`: a timer standing in for a speech-to-text
//! request, awaited, so never a blocking call; about one in twenty fails).
//!
//! On a phone call (a session from the media listener) it answers the caller instead: it
//! sends back every chunk it hears, with a mark after each half second of audio (an
//! "utterance"), and runs the shared voice-activity model on what it hears.
//!
//! In a LiveKit room (a session a LiveKit server dispatched), it joins the room with its job's
//! token and sends back every 20 ms frame it hears from the other participants, until the
//! room ends for it or it is cancelled.
//!
//! With the demo's `--vad`, each session also runs a real Silero VAD stream (one model for the
//! worker, a stream per session) on what it hears (on a phone call, the caller's audio
//! upsampled to 16 kHz; otherwise generated speech-like audio) and logs `speech started` and
//! `speech ended`, labelled with the session like every record it logs.

use std::time::Duration;

use openrtc::media::resample::Upsampler;
use openrtc::media::{CallMedia, MediaEvent};
use openrtc::source::livekit::room::{RoomAudio, RoomAudioEvent};
use openrtc::vad::synth::SpeechLike;
use openrtc::vad::{SileroModel, SileroVad, SpeechEvent};
use openrtc::{Agent, AgentError, Session};

use super::{Call, VadModel, filter_frame};

/// Filters each frame, runs the worker's shared voice-activity model on it, and keeps a child
/// task that "transcribes" once a second.
pub(crate) struct Echo {
    /// With `--vad`: the Silero model every session's stream shares.
    pub(crate) silero: Option<SileroModel>,
}

impl Agent for Echo {
    async fn run(&self, session: Session) -> Result<(), AgentError> {
        let speech = self.silero.as_ref().map(SileroVad::new);
        // On a call as from code, a child task "transcribes" once a second.
        let transcriber = session.spawn(transcribe_every_second(session.clone()));
        let result = match (session.media(), session.livekit_room().await) {
            (Some(call), _) => answer(&session, call, speech).await,
            (None, Some(room)) => echo_room(&session, room?).await,
            (None, None) => listen(&session, speech).await,
        };
        transcriber.abort();
        result
    }
}

/// A LiveKit job: echoes the room's audio (every participant's frames, as they come) until the
/// room ends for the agent or the session is cancelled.
async fn echo_room(session: &Session, mut room: RoomAudio) -> Result<(), AgentError> {
    loop {
        let event = tokio::select! {
            event = room.recv() => event,
            () = session.cancelled() => {
                room.close().await;
                return Ok(());
            }
        };
        match event {
            Some(RoomAudioEvent::Frame(frame)) => {
                if room.send(&frame.samples).await.is_err() {
                    return Ok(());
                }
            }
            Some(RoomAudioEvent::Disconnected { .. }) | None => return Ok(()),
            Some(_) => {}
        }
    }
}

/// A session launched from code: filters each frame the caller "says" until it hangs up
/// (with `--vad`, detecting speech in generated speech-like audio).
async fn listen(session: &Session, mut speech: Option<SileroVad>) -> Result<(), AgentError> {
    let vad = session.shared::<VadModel>();
    let mut call = Call::new(session);
    let mut state = 0.0;
    let mut frame_index = 0;
    let mut voice = SpeechLike::new(session.id().as_u64());
    let mut heard = [0.0_f32; 320];
    while call.next_frame(session).await {
        let energy = filter_frame(frame_index, &mut state);
        if let Some(vad) = &vad {
            std::hint::black_box(vad.speech_probability(frame_index, energy));
        }
        if let Some(speech) = &mut speech {
            voice.fill(&mut heard);
            log_speech(speech.push_f32(&heard)?);
        }
        frame_index += 1;
    }
    Ok(())
}

/// The child task: one tracked `stt.transcribe` call a second until the session is
/// cancelled; returns the words "transcribed".
async fn transcribe_every_second(session: Session) -> u64 {
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

/// Chunks of 20 ms in one "utterance": a mark follows each.
const CHUNKS_PER_UTTERANCE: u64 = 25;

/// Logs the speech starts and ends among a push's chunks.
fn log_speech(chunks: &[openrtc::vad::Chunk]) {
    for event in chunks.iter().filter_map(|chunk| chunk.event) {
        match event {
            SpeechEvent::Start {
                at_sample,
                speech_ms,
            } => tracing::info!(at_ms = at_sample / 16, speech_ms, "speech started"),
            SpeechEvent::End {
                at_sample,
                speech_ms,
            } => tracing::info!(at_ms = at_sample / 16, speech_ms, "speech ended"),
        }
    }
}

/// Answers a phone call: echoes what the caller says, marking each utterance, until the
/// caller hangs up or the session is cancelled.
async fn answer(
    session: &Session,
    mut call: CallMedia,
    mut speech: Option<SileroVad>,
) -> Result<(), AgentError> {
    let vad = session.shared::<VadModel>();
    let mut upsampler = speech.is_some().then(Upsampler::new).transpose()?;
    let mut wideband = Vec::with_capacity(320);
    let mut heard = 0_u64;
    loop {
        let event = tokio::select! {
            event = call.recv() => event,
            () = session.cancelled() => break,
        };
        match event {
            Some(MediaEvent::Audio(frame)) => {
                if let Some(vad) = &vad {
                    let energy = frame
                        .samples
                        .iter()
                        .map(|sample| f32::from(*sample) / 32_768.0)
                        .map(|sample| sample * sample)
                        .sum::<f32>()
                        / frame.samples.len().max(1) as f32;
                    std::hint::black_box(vad.speech_probability(heard, energy));
                }
                if let (Some(speech), Some(upsampler)) = (speech.as_mut(), &mut upsampler) {
                    wideband.clear();
                    upsampler.process(&frame.samples, &mut wideband)?;
                    log_speech(speech.push_i16(&wideband)?);
                }
                call.send(&frame.samples).await?;
                heard += 1;
                if heard % CHUNKS_PER_UTTERANCE == 0 {
                    call.mark(&format!("utterance-{}", heard / CHUNKS_PER_UTTERANCE))
                        .await?;
                }
            }
            // Keys pressed and marks played: nothing to do for an echo.
            Some(_) => {}
            None => break,
        }
    }
    tracing::debug!(chunks = heard, "the call ended");
    Ok(())
}
