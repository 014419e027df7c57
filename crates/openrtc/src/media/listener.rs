//! The media WebSocket listener (`.media_listener(addr)`): telephony providers dial it and
//! each connection becomes a session.
//!
//! Served by axum on the pool's runtime. Per connection: read up to the `start` message
//! (`connected` first is optional) within [`START_TIMEOUT`], route it from its custom
//! parameters (`agent`, `tenant`, the rest into the session's metadata), launch the session
//! through the usual admission chain, then hand the socket to the call's **pump**, a task of
//! the session (its polls, decoding included, are the session's busy time and stalls). A
//! refusal closes the socket with 1013 (overloaded, draining, caps, breaker) or 1008 (unknown
//! agent, filtered) and the refusal's own words, and is counted like any refusal.
//!
//! Bad input closes that one connection, with a close code and a reason, and never touches
//! the others: a binary frame (1003), text that is not a message of the protocol (1007), a
//! frame over 64 KiB (1009), `media` before `start` or a second `start` (1008), silence for
//! [`IDLE_TIMEOUT`] (1001). At most [`MAX_CONNECTING`] connections may be waiting for their
//! `start` at once; past that, upgrades are refused with 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::call::{AudioFrame, CallMedia, MediaEvent, Outbound, US_PER_SAMPLE};
use super::health::CallHealth;
use super::protocol::{self, Inbound, StreamStart};
use crate::error::{Rejected, RunError};
use crate::pool::PoolShared;
use crate::session::JobRequest;

/// The media WebSocket's path unless `AgentPoolBuilder::media_path` sets another.
pub const DEFAULT_PATH: &str = "/media";

/// The voice webhook's path, beside the media WebSocket's (with `.voice_webhook`).
pub const VOICE_PATH: &str = "/voice";

/// How long a connection may take to send its `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call may send nothing before it is closed (providers send audio every 20 ms).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections waiting for their `start` at most; more are refused before the upgrade.
pub const MAX_CONNECTING: usize = 256;

/// Inbound events queued for a session that has not taken them: 5 s of 20 ms audio. Past
/// that, audio is dropped and counted (the session is too slow to listen).
const INBOUND_QUEUE: usize = 250;

/// Outbound frames queued for the socket: `send` waits when it is full.
const OUTBOUND_QUEUE: usize = 250;

/// The longest close reason the protocol allows, in bytes.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The WebSocket's read and write buffers of a call, in bytes. A call's frames are a few
/// hundred bytes; tungstenite's defaults (128 KiB each way) made a call cost about 180 KiB
/// of RSS. A frame up to [`protocol::MAX_FRAME_BYTES`] is still read whole (the buffer grows
/// for it).
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// WebSocket close codes (RFC 6455 §7.4.1).
mod code {
    pub(super) const NORMAL: u16 = 1000;
    pub(super) const GOING_AWAY: u16 = 1001;
    pub(super) const UNSUPPORTED: u16 = 1003;
    pub(super) const INVALID: u16 = 1007;
    pub(super) const POLICY: u16 = 1008;
    pub(super) const TOO_BIG: u16 = 1009;
    pub(super) const TRY_AGAIN_LATER: u16 = 1013;
}

/// Why a connection is closed: its code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// What the handlers share.
struct Listener {
    shared: Arc<PoolShared>,
    connecting: Arc<Semaphore>,
}

/// Binds `addr` for the media listener (before the runtime starts, so a taken port is an
/// error of `run`).
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, RunError> {
    let media_error = |source| RunError::Media { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(media_error)?;
    listener.set_nonblocking(true).map_err(media_error)?;
    Ok(listener)
}

/// Serves calls on `listener` from the pool's runtime until the runtime shuts down.
pub(crate) fn spawn(
    shared: Arc<PoolShared>,
    listener: std::net::TcpListener,
    runtime: &tokio::runtime::Handle,
) {
    let path = shared.config.media_path.clone();
    let worker = shared.config.worker_name.clone();
    let _entered = runtime.enter();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot serve the media listener: no calls accepted");
            return;
        }
    };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(
            event = "media_ready",
            worker = worker.as_str(),
            addr = %bound,
            "[media] calls at ws://{bound}{path}"
        );
    }
    let mut router = axum::Router::new().route(&path, axum::routing::get(upgrade));
    if shared.config.voice_webhook.is_some() {
        router = router.route(VOICE_PATH, axum::routing::post(voice));
    }
    let router = router.with_state(Arc::new(Listener {
        shared,
        connecting: Arc::new(Semaphore::new(MAX_CONNECTING)),
    }));
    runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the media listener stopped");
        }
    });
}

/// `POST /voice`: the provider asks what to do with a call; TwiML says stream it here.
async fn voice(
    State(listener): State<Arc<Listener>>,
    headers: axum::http::HeaderMap,
    axum::Form(params): axum::Form<std::collections::BTreeMap<String, String>>,
) -> Response {
    let Some(webhook) = &listener.shared.config.voice_webhook else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|value| value.to_str().ok());
    let (status, body) = webhook.answer(&params, signature);
    if status != 200 {
        tracing::warn!(
            event = "voice_webhook_refused",
            status,
            "[media] voice webhook request refused: {}",
            body.trim_end()
        );
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let content_type = if status == StatusCode::OK {
        "text/xml"
    } else {
        "text/plain; charset=utf-8"
    };
    (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

/// `GET <media path>` with an upgrade: a call, if there is room to set it up.
async fn upgrade(State(listener): State<Arc<Listener>>, upgrade: WebSocketUpgrade) -> Response {
    let Ok(permit) = Arc::clone(&listener.connecting).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many calls connecting at once (over {MAX_CONNECTING})\n"),
        )
            .into_response();
    };
    upgrade
        .max_message_size(protocol::MAX_FRAME_BYTES)
        .max_frame_size(protocol::MAX_FRAME_BYTES)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(listener, socket, permit))
}

/// One connection: its `start`, its session, then its pump.
async fn connection(listener: Arc<Listener>, mut socket: WebSocket, permit: OwnedSemaphorePermit) {
    let (start, start_text) =
        match tokio::time::timeout(START_TIMEOUT, read_start(&mut socket)).await {
            Ok(Ok(start)) => start,
            Ok(Err(close)) => return close_socket(socket, close).await,
            Err(_) => {
                let close = Close::new(
                    code::POLICY,
                    format!("no start message within {} s", START_TIMEOUT.as_secs()),
                );
                return close_socket(socket, close).await;
            }
        };
    let start = Arc::new(start);
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let health = Arc::new(CallHealth::default());
    let media = CallMedia::new(
        Arc::clone(&start),
        start_text.into(),
        inbound_rx,
        outbound_tx,
        Arc::clone(&health),
    );
    let cell = match listener.shared.launch_call(route(&start), media) {
        Ok(cell) => cell,
        Err(rejected) => return close_socket(socket, refusal_close(&rejected)).await,
    };
    drop(permit);
    let pump = Pump {
        start,
        inbound: inbound_tx,
        health,
        tenant: listener.shared.tenants.get_or_create(cell.tenant()),
    };
    let outcome = crate::session::SessionHandle::new(Arc::clone(&cell)).outcome();
    let ended = async move {
        let _ = outcome.await;
    };
    crate::session::spawn_task_of(&cell, pump.run(socket, outbound_rx, ended));
}

/// Reads messages up to the `start` (returned with its text); anything but `connected` or an
/// unknown event before it closes the connection.
async fn read_start(socket: &mut WebSocket) -> Result<(StreamStart, String), Close> {
    loop {
        let text = match socket.recv().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => return Err(binary_close()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => {
                return Err(Close::new(code::NORMAL, "closed before its start message"));
            }
            Some(Err(error)) => return Err(transport_close(&error)),
        };
        match protocol::parse_inbound(&text) {
            Ok(Inbound::Start(start)) => return Ok((start, text.to_string())),
            Ok(Inbound::Connected | Inbound::Other { .. }) => {}
            Ok(Inbound::Media(_) | Inbound::Dtmf { .. } | Inbound::Mark { .. }) => {
                return Err(Close::new(code::POLICY, "media before the start message"));
            }
            Ok(Inbound::Stop) => {
                return Err(Close::new(code::NORMAL, "stopped before it started"));
            }
            Err(error) => return Err(protocol_close(&error)),
        }
    }
}

/// The session a `start` asks for: `agent` and `tenant` from its custom parameters, the
/// other parameters and the call's ids in its metadata.
fn route(start: &StreamStart) -> JobRequest {
    let mut request = JobRequest::new();
    let mut params = serde_json::Map::new();
    for (key, value) in &start.custom_parameters {
        match key.as_str() {
            "agent" => request = request.agent(value),
            "tenant" => request = request.tenant(value),
            _ => {
                params.insert(key.clone(), serde_json::Value::String(value.clone()));
            }
        }
    }
    let call = serde_json::json!({
        "provider": format!("{:?}", start.provider).to_lowercase(),
        "stream_id": start.stream_id,
        "call_id": start.call_id,
        "account_id": start.account_id,
        "from": start.from,
        "to": start.to,
    });
    params.insert("call".to_owned(), call);
    request.metadata(serde_json::Value::Object(params))
}

/// A refused call's close: 1008 when the call itself is wrong (unknown agent, filtered),
/// 1013 when the worker or tenant has no room now.
fn refusal_close(rejected: &Rejected) -> Close {
    let code = match rejected {
        Rejected::UnknownAgent { .. } | Rejected::Filtered { .. } => code::POLICY,
        _ => code::TRY_AGAIN_LATER,
    };
    Close::new(code, format!("refused: {rejected}"))
}

fn binary_close() -> Close {
    Close::new(
        code::UNSUPPORTED,
        "binary frame: every message of the protocol is a JSON text frame",
    )
}

fn protocol_close(error: &protocol::ProtocolError) -> Close {
    let code = match error {
        protocol::ProtocolError::TooLarge { .. } => code::TOO_BIG,
        _ => code::INVALID,
    };
    Close::new(code, error.to_string())
}

/// A broken connection or a frame over the limit.
fn transport_close(error: &axum::Error) -> Close {
    let text = error.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        Close::new(
            code::TOO_BIG,
            format!("frame over {} bytes", protocol::MAX_FRAME_BYTES),
        )
    } else {
        Close::new(code::INVALID, format!("broken frame: {text}"))
    }
}

/// Sends a close frame (its reason cut to what the protocol allows) and waits briefly for
/// the peer's; logs why at DEBUG.
async fn close_socket(mut socket: WebSocket, close: Close) {
    tracing::debug!(
        event = "media_close",
        code = close.code,
        reason = close.reason.as_str(),
        "[media] closing a call connection: {} {}",
        close.code,
        close.reason
    );
    let mut reason = close.reason;
    if reason.len() > MAX_CLOSE_REASON_BYTES {
        let mut end = MAX_CLOSE_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let frame = CloseFrame {
        code: close.code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        // The peer answers with its own close; don't wait long for a peer that doesn't.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A call's pump: frames from the socket to the session, and from the session to the socket.
struct Pump {
    start: Arc<StreamStart>,
    inbound: mpsc::Sender<MediaEvent>,
    /// The call's counters and window.
    health: Arc<CallHealth>,
    /// Its tenant's counters, where the call's missing and dropped frames add up.
    tenant: Arc<crate::admission::TenantCounters>,
}

impl Pump {
    async fn run(
        mut self,
        mut socket: WebSocket,
        mut outbound: mpsc::Receiver<Outbound>,
        ended: impl std::future::Future<Output = ()>,
    ) {
        let mut ended = std::pin::pin!(ended);
        let close = loop {
            tokio::select! {
                received = tokio::time::timeout(IDLE_TIMEOUT, socket.recv()) => {
                    let message = match received {
                        Err(_) => break Close::new(
                            code::GOING_AWAY,
                            format!("nothing received for {} s", IDLE_TIMEOUT.as_secs()),
                        ),
                        Ok(None | Some(Ok(Message::Close(_)))) => return,
                        Ok(Some(Err(error))) => break transport_close(&error),
                        Ok(Some(Ok(message))) => message,
                    };
                    match message {
                        Message::Text(text) => {
                            if let Some(close) = self.inbound_text(&text) {
                                break close;
                            }
                        }
                        Message::Binary(_) => break binary_close(),
                        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
                    }
                }
                next = outbound.recv() => match next.and_then(Outbound::into_text) {
                    Some(text) => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    None => break Close::new(code::NORMAL, "the agent hung up"),
                },
                () = &mut ended => {
                    // Whatever the session sent before it ended goes out first.
                    while let Some(text) = outbound.try_recv().ok().and_then(Outbound::into_text) {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    break Close::new(code::NORMAL, "the session ended");
                }
            }
        };
        close_socket(socket, close).await;
    }

    /// One text frame from the provider; `Some` closes the connection.
    fn inbound_text(&mut self, text: &str) -> Option<Close> {
        let at_us = self.health.now_us();
        let event = match protocol::parse_inbound(text) {
            Ok(Inbound::Media(chunk)) => {
                // Decoded straight into the frame the session gets.
                let mut samples = Vec::with_capacity(chunk.payload.len());
                super::call::decode(self.start.encoding, &chunk.payload, &mut samples);
                let duration_us = samples.len() as u64 * US_PER_SAMPLE;
                let gaps = self.health.with(|windows| {
                    windows.inbound(at_us, chunk.chunk, chunk.timestamp_ms, duration_us)
                });
                let missing = gaps.missing_count;
                let counters = &self.health.counters;
                counters.frames_in.fetch_add(1, Ordering::Relaxed);
                counters
                    .frames_missing
                    .fetch_add(missing, Ordering::Relaxed);
                counters
                    .stream_jumps
                    .fetch_add(u64::from(gaps.jumped), Ordering::Relaxed);
                self.tenant
                    .call_frames_missing
                    .fetch_add(missing, Ordering::Relaxed);
                MediaEvent::Audio(AudioFrame {
                    samples,
                    timestamp_ms: chunk.timestamp_ms,
                    sequence: chunk.sequence,
                    missing_before_count: missing,
                })
            }
            Ok(Inbound::Dtmf { digit }) => MediaEvent::Dtmf(digit),
            Ok(Inbound::Mark { name }) => MediaEvent::Mark(name),
            Ok(Inbound::Stop) => return Some(Close::new(code::NORMAL, "the stream stopped")),
            Ok(Inbound::Start(_)) => {
                return Some(Close::new(code::POLICY, "a second start message"));
            }
            Ok(Inbound::Connected | Inbound::Other { .. }) => return None,
            Err(error) => return Some(protocol_close(&error)),
        };
        if self.inbound.try_send(event).is_err() {
            // Full (the session is not listening fast enough) or gone (it stopped listening).
            self.health
                .counters
                .frames_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.tenant
                .call_frames_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.health.with(|windows| windows.dropped(at_us));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::media::protocol::{AudioEncoding, Provider};

    fn start(params: &[(&str, &str)]) -> StreamStart {
        // `StreamStart` is `#[non_exhaustive]` (from `openrtc-media`): built field by field.
        let mut start = StreamStart::default();
        start.provider = Provider::Twilio;
        start.stream_id = "MZ1".into();
        start.call_id = "CA1".into();
        start.account_id = Some("AC1".into());
        start.encoding = AudioEncoding::Mulaw;
        start.sample_rate_hz = 8_000;
        start.channels = 1;
        start.custom_parameters = params
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>();
        start.from = Some("+15550100".into());
        start.to = None;
        start
    }

    #[test]
    fn a_start_routes_by_its_parameters_and_keeps_the_rest_as_metadata() {
        let request = route(&start(&[
            ("agent", "echo"),
            ("tenant", "acme"),
            ("life_ms", "3000"),
        ]));
        assert_eq!(request.agent.as_deref(), Some("echo"));
        assert_eq!(request.tenant, "acme");
        assert_eq!(request.metadata["life_ms"], "3000");
        assert_eq!(request.metadata["call"]["provider"], "twilio");
        assert_eq!(request.metadata["call"]["stream_id"], "MZ1");
        assert_eq!(request.metadata["call"]["from"], "+15550100");
        assert!(request.metadata.get("agent").is_none());
        let default = route(&start(&[]));
        assert_eq!(default.agent, None);
        assert_eq!(default.tenant, JobRequest::DEFAULT_TENANT);
    }

    #[test]
    fn refusals_close_with_1008_or_1013_and_say_why() {
        let unknown = refusal_close(&Rejected::UnknownAgent {
            name: "nope".into(),
        });
        assert_eq!(unknown.code, 1008);
        assert_eq!(unknown.reason, "refused: unknown agent \"nope\"");
        assert_eq!(refusal_close(&Rejected::Draining).code, 1013);
        assert_eq!(refusal_close(&Rejected::WorkerFull { max: 4 }).code, 1013);
    }
}
