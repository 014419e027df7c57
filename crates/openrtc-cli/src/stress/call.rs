//! One simulated phone call of `openrtc stress`: dial the media URL, say `connected` and
//! `start`, stream the tone in 20 ms chunks against absolute deadlines for the call's
//! duration, echo every `mark` the worker sends (as Twilio does once the audio before it has
//! played), then `stop` and close with 1000.
//!
//! What it measures:
//!
//! - **connect time**: from dialling to the WebSocket handshake's answer.
//! - **echo round trip**: an echo agent sends back one chunk for each chunk it hears, in
//!   order, so the n-th `media` frame received answers the n-th chunk sent: its round trip
//!   is the time from writing chunk n to reading the n-th frame back. Counted only while
//!   frames received do not outnumber chunks sent.
//! - **inbound gaps**: the time between consecutive `media` frames from the worker.
//! - **outcome**: completed (the call ran its duration and closed, or the worker closed it
//!   with 1000), refused (the worker closed with another code before any audio came back
//!   and within [`REFUSAL_WINDOW`] of `start`), or failed (another close code, a broken
//!   connection, a handshake that failed, or, for an `echo` call, no audio back within
//!   [`FIRST_AUDIO_TIMEOUT`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use openrtc_media::protocol::{Inbound, parse_inbound};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::config::PlannedCall;
use super::runner::Live;
use openrtc_media::caller::{self as frames, StreamIds};

/// The cadence of the caller's audio.
pub const CHUNK_INTERVAL: Duration = Duration::from_millis(20);

/// How long an `echo` call waits for its first audio back before it counts as failed.
pub const FIRST_AUDIO_TIMEOUT: Duration = Duration::from_secs(5);

/// A close from the worker this soon after `start`, before any audio, is a refusal.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(2);

/// How long the WebSocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the caller waits for the worker's close after its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent whose calls must hear audio back.
pub const ECHO_AGENT: &str = "echo";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// It ran its duration (or the worker hung up normally, with 1000).
    Completed,
    /// The worker closed it before any audio, right after `start`: a refusal.
    Refused {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Anything else that ended it early.
    Failed {
        /// What happened, as a short label (`closed 1011: ...`, `connection broke: ...`).
        reason: String,
    },
}

/// What one call measured.
#[derive(Clone, Debug)]
pub struct CallResult {
    /// The plan it followed.
    pub planned: PlannedCall,
    /// How it ended.
    pub outcome: CallOutcome,
    /// Dial to handshake answer, when the handshake completed.
    pub connect_ms: Option<f64>,
    /// Chunks of audio sent.
    pub chunks_sent: u64,
    /// `media` frames received.
    pub chunks_received: u64,
    /// Marks received (and echoed).
    pub marks_received: u64,
    /// Frames from the worker that were not understood.
    pub bad_frames: u64,
    /// Echo round trips, one per frame received (see the module's doc).
    pub echo_rtt_ms: Vec<f64>,
    /// Gaps between consecutive frames received.
    pub inbound_gap_ms: Vec<f64>,
}

/// The state of a call in progress.
struct CallState {
    ids: StreamIds,
    sequence: u64,
    sent_at: Vec<Instant>,
    last_inbound: Option<Instant>,
    started: Instant,
    result: CallResult,
}

/// What a frame from the worker means for the call.
enum Step {
    Continue,
    Ended(CallOutcome),
}

/// Runs one call to its end.
pub async fn run_call(
    url: &str,
    planned: PlannedCall,
    duration: Duration,
    payloads: &[String],
    run_id: u64,
    live: &Arc<Live>,
) -> CallResult {
    let mut result = CallResult {
        outcome: CallOutcome::Completed,
        connect_ms: None,
        chunks_sent: 0,
        chunks_received: 0,
        marks_received: 0,
        bad_frames: 0,
        echo_rtt_ms: Vec::new(),
        inbound_gap_ms: Vec::new(),
        planned,
    };
    let dialled = Instant::now();
    let socket =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(error)) => {
                result.outcome = CallOutcome::Failed {
                    reason: format!("handshake failed: {error}"),
                };
                return result;
            }
            Err(_) => {
                result.outcome = CallOutcome::Failed {
                    reason: "handshake timed out".to_owned(),
                };
                return result;
            }
        };
    let connect_ms = dialled.elapsed().as_secs_f64() * 1000.0;
    result.connect_ms = Some(connect_ms);
    live.record_connect(connect_ms);
    let ids = StreamIds::new(&format!("stress{run_id:x}x"), result.planned.index);
    let mut state = CallState {
        ids,
        sequence: 1,
        sent_at: Vec::new(),
        last_inbound: None,
        started: Instant::now(),
        result,
    };
    live.active.fetch_add(1, Ordering::Relaxed);
    let outcome = converse(socket, &mut state, duration, payloads, live).await;
    live.active.fetch_sub(1, Ordering::Relaxed);
    state.result.outcome = outcome;
    state.result
}

/// Everything after the handshake: the call's own protocol, until it ends.
async fn converse(
    mut socket: Socket,
    state: &mut CallState,
    duration: Duration,
    payloads: &[String],
    live: &Live,
) -> CallOutcome {
    let agent = state.result.planned.agent.clone();
    let tenant = state.result.planned.tenant.clone();
    for text in [
        frames::connected(),
        frames::start(&state.ids, &[("agent", &agent), ("tenant", &tenant)]),
    ] {
        if let Err(error) = socket.send(Message::text(text)).await {
            return CallOutcome::Failed {
                reason: format!("connection broke: {error}"),
            };
        }
    }
    state.started = Instant::now();
    let end = state.started + duration;
    let first_audio_by = state.started + FIRST_AUDIO_TIMEOUT;
    let expects_echo = agent == ECHO_AGENT;
    let mut next_chunk = state.started;
    loop {
        let waiting_for_audio = expects_echo && state.result.chunks_received == 0;
        tokio::select! {
            biased;
            message = socket.next() => {
                if let Step::Ended(outcome) = on_message(&mut socket, state, message, live).await {
                    return outcome;
                }
            }
            () = tokio::time::sleep_until(next_chunk), if next_chunk < end => {
                let chunk = state.result.chunks_sent + 1;
                let payload = &payloads[(chunk as usize - 1) % payloads.len()];
                state.sequence += 1;
                let text = frames::media(&state.ids, state.sequence, chunk, payload);
                if let Err(error) = socket.send(Message::text(text)).await {
                    return CallOutcome::Failed { reason: format!("connection broke: {error}") };
                }
                state.sent_at.push(Instant::now());
                state.result.chunks_sent = chunk;
                live.chunks_sent.fetch_add(1, Ordering::Relaxed);
                // Absolute deadlines: a late chunk does not push the next ones back.
                next_chunk += CHUNK_INTERVAL;
            }
            () = tokio::time::sleep_until(first_audio_by), if waiting_for_audio && first_audio_by < end => {
                let _ = socket.close(None).await;
                return CallOutcome::Failed {
                    reason: format!("no audio back within {} s", FIRST_AUDIO_TIMEOUT.as_secs()),
                };
            }
            () = tokio::time::sleep_until(end) => break,
        }
    }
    hang_up(&mut socket, state, live).await
}

/// The caller's end of a completed call: `stop`, a 1000 close, and the worker's close read
/// (frames still arriving are measured).
async fn hang_up(socket: &mut Socket, state: &mut CallState, live: &Live) -> CallOutcome {
    state.sequence += 1;
    let _ = socket
        .send(Message::text(frames::stop(&state.ids, state.sequence)))
        .await;
    let _ = socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "call ended".into(),
        }))
        .await;
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = message {
            on_text(socket, state, text.as_str(), live).await;
        }
    }
    if expects_echo_without_audio(state) {
        return CallOutcome::Failed {
            reason: "no audio back".to_owned(),
        };
    }
    CallOutcome::Completed
}

/// An `echo` call that heard nothing back at all.
fn expects_echo_without_audio(state: &CallState) -> bool {
    state.result.planned.agent == ECHO_AGENT
        && state.result.chunks_sent > 0
        && state.result.chunks_received == 0
}

/// One message (or the end of the stream) from the worker.
async fn on_message(
    socket: &mut Socket,
    state: &mut CallState,
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    live: &Live,
) -> Step {
    match message {
        Some(Ok(Message::Text(text))) => {
            on_text(socket, state, text.as_str(), live).await;
            Step::Continue
        }
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame.map_or((1005, String::new()), |frame| {
                (u16::from(frame.code), frame.reason.to_string())
            });
            Step::Ended(closed_by_worker(state, code, reason))
        }
        Some(Ok(_)) => Step::Continue,
        Some(Err(error)) => Step::Ended(CallOutcome::Failed {
            reason: format!("connection broke: {error}"),
        }),
        None => Step::Ended(CallOutcome::Failed {
            reason: "connection broke: closed without a close frame".to_owned(),
        }),
    }
}

/// The worker closed the call: completed with 1000, a refusal before any audio and soon
/// after `start`, else a failure.
fn closed_by_worker(state: &CallState, code: u16, reason: String) -> CallOutcome {
    if code == 1000 && !expects_echo_without_audio(state) {
        CallOutcome::Completed
    } else if state.result.chunks_received == 0 && state.started.elapsed() <= REFUSAL_WINDOW {
        CallOutcome::Refused { code, reason }
    } else {
        CallOutcome::Failed {
            reason: format!("closed {code}: {reason}"),
        }
    }
}

/// A text frame from the worker: audio is timed, marks are echoed.
async fn on_text(socket: &mut Socket, state: &mut CallState, text: &str, live: &Live) {
    match parse_inbound(text) {
        Ok(Inbound::Media(_)) => {
            let now = Instant::now();
            if let Some(last) = state.last_inbound.replace(now) {
                state
                    .result
                    .inbound_gap_ms
                    .push(now.duration_since(last).as_secs_f64() * 1000.0);
            }
            let index = state.result.chunks_received as usize;
            state.result.chunks_received += 1;
            live.chunks_received.fetch_add(1, Ordering::Relaxed);
            if let Some(sent) = state.sent_at.get(index) {
                let rtt_ms = now.duration_since(*sent).as_secs_f64() * 1000.0;
                state.result.echo_rtt_ms.push(rtt_ms);
                live.record_echo(rtt_ms);
            }
        }
        Ok(Inbound::Mark { name }) => {
            state.result.marks_received += 1;
            state.sequence += 1;
            let _ = socket
                .send(Message::text(frames::mark(
                    &state.ids,
                    state.sequence,
                    &name,
                )))
                .await;
        }
        Ok(_) => {}
        Err(_) => state.result.bad_frames += 1,
    }
}
