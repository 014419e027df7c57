//! The `openrtc-livekit` thread: the control connection, its reconnects, and the status
//! reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::server_message::Message as ServerMessage;
use livekit_protocol::worker_message::Message as WorkerMessage;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::jobs::{Ended, Jobs};
use super::load::{self, Status};
use super::state::LiveKitState;
use super::{LiveKitOptions, protocol};
use crate::pool::PoolShared;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connection attempt, and then the server's answer to the registration, may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the worker looks at its load, its drain and its accepted offers' deadlines.
const TICK: Duration = Duration::from_millis(100);
/// How long a stopping worker waits for its jobs' last statuses.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(2);
/// A connection lost sooner than this after its registration counts as a failed attempt, so
/// a server that keeps closing at once is retried with a growing backoff, not in a loop.
const STABLE_AFTER: Duration = Duration::from_secs(5);

/// The running LiveKit worker: its thread, stopped (after the pool's sessions) when dropped.
pub(crate) struct LiveKitWorker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveKitWorker {
    /// Starts the thread, which connects to `url` (the control WebSocket's, validated) and
    /// keeps connected until stopped.
    pub(crate) fn start(
        pool: Arc<PoolShared>,
        options: LiveKitOptions,
        url: String,
    ) -> std::io::Result<Self> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let state = Arc::new(LiveKitState::new(&url, &options.agent_name));
        pool.set_livekit_state(Arc::clone(&state));
        let thread = std::thread::Builder::new()
            .name("openrtc-livekit".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(
                            target: "openrtc::livekit",
                            "[livekit] cannot start the LiveKit worker's runtime: {error}"
                        );
                        return;
                    }
                };
                runtime.block_on(run(pool, Arc::new(options), state, url, stop_rx));
            })?;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Sends the jobs' last statuses, closes the connection and joins the thread.
    pub(crate) fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LiveKitWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Why a connection attempt failed.
#[derive(Debug, Error)]
enum ConnectError {
    #[error(
        "the server refused the worker's token (HTTP 401): check the API key and secret \
         (LIVEKIT_API_KEY, LIVEKIT_API_SECRET)"
    )]
    Unauthorized,
    #[error("the server answered HTTP {0} instead of opening the WebSocket")]
    Status(u16),
    #[error("cannot mint the worker's token: {0}")]
    Token(String),
    #[error("no answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("the registration failed: {0}")]
    Handshake(String),
    #[error("{0}")]
    Socket(tungstenite::Error),
}

/// How a registered connection ended.
enum End {
    /// The worker is stopping.
    Stop,
    /// It was lost; why.
    Lost(String),
}

async fn run(
    pool: Arc<PoolShared>,
    options: Arc<LiveKitOptions>,
    state: Arc<LiveKitState>,
    url: String,
    mut stop: oneshot::Receiver<()>,
) {
    let (mut jobs, mut ended_rx) =
        Jobs::new(Arc::clone(&pool), Arc::clone(&options), Arc::clone(&state));
    let mut failures: u32 = 0;
    loop {
        let attempt = tokio::select! {
            biased;
            _ = &mut stop => return,
            attempt = connect(&options, &url) => attempt,
        };
        match attempt {
            Ok((socket, worker_id)) => {
                let registered_at = Instant::now();
                state.registered(&worker_id, unix_ms_now());
                tracing::info!(
                    target: "openrtc::livekit",
                    worker_id = %worker_id,
                    url = %url,
                    agent_name = %options.agent_name,
                    "[livekit] registered with {url} as {worker_id} (agent name '{}'); {} jobs \
                     running",
                    options.agent_name,
                    jobs.running_count()
                );
                let mut connection = Connection {
                    socket,
                    seq: 0,
                    last: None,
                    last_sent: Instant::now(),
                };
                let end = connection
                    .serve(&pool, &options, &state, &mut jobs, &mut ended_rx, &mut stop)
                    .await;
                match end {
                    End::Stop => return,
                    End::Lost(why) => {
                        failures = if registered_at.elapsed() < STABLE_AFTER {
                            failures + 1
                        } else {
                            0
                        };
                        state.disconnected(&why, false);
                        tracing::warn!(
                        target: "openrtc::livekit",
                        worker_id = %worker_id,
                        "[livekit] lost the connection to {url} ({why}); reconnecting, its {} \
                         jobs keep running",
                        jobs.running_count()
                        );
                    }
                }
            }
            Err(error) => {
                failures += 1;
                state.disconnected(&error.to_string(), true);
                if failures >= options.max_retries {
                    tracing::error!(
                        target: "openrtc::livekit",
                        url = %url,
                        "[livekit] giving up on {url} after {failures} failed attempts: {error}; \
                         no more LiveKit jobs will come to this worker"
                    );
                    return;
                }
                tracing::warn!(
                    target: "openrtc::livekit",
                    url = %url,
                    attempt = failures,
                    "[livekit] cannot connect to {url}: {error}; retrying in {:?}",
                    load::backoff(failures)
                );
            }
        }
        // The backoff: jobs that end meanwhile keep their statuses for the next connection.
        let resume = tokio::time::Instant::now() + load::backoff(failures);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                Some(ended) = ended_rx.recv() => {
                    let message = jobs.ended(ended);
                    jobs.keep_unsent(message);
                }
                () = tokio::time::sleep_until(resume) => break,
            }
        }
        jobs.release_holds(Instant::now(), pool.is_draining());
    }
}

/// Connects, registers, and returns the socket and the worker's id.
async fn connect(options: &LiveKitOptions, url: &str) -> Result<(Socket, String), ConnectError> {
    let token =
        protocol::worker_token(options).map_err(|error| ConnectError::Token(error.to_string()))?;
    let mut request = url.into_client_request().map_err(ConnectError::Socket)?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnectError::Token("not a header value".to_owned()))?;
    request.headers_mut().insert("Authorization", bearer);
    let config = WebSocketConfig::default()
        .max_message_size(Some(protocol::MAX_MESSAGE_BYTES))
        .max_frame_size(Some(protocol::MAX_MESSAGE_BYTES));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut socket, _) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let code = response.status().as_u16();
            return Err(if code == 401 {
                ConnectError::Unauthorized
            } else {
                ConnectError::Status(code)
            });
        }
        Ok(Err(error)) => return Err(ConnectError::Socket(error)),
        Ok(Ok(connected)) => connected,
    };
    let register = protocol::encode(protocol::register(options));
    socket
        .send(Message::Binary(register.into()))
        .await
        .map_err(ConnectError::Socket)?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => return Ok(protocol::decode(&bytes)),
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::Handshake(format!(
                        "the server closed the connection{}",
                        close_words(frame.as_ref())
                    )));
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(ConnectError::Socket(error)),
                None => {
                    return Err(ConnectError::Handshake(
                        "the server closed the connection".to_owned(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| ConnectError::Timeout)??;
    match answer {
        Ok(ServerMessage::Register(registered)) => Ok((socket, registered.worker_id)),
        Ok(other) => Err(ConnectError::Handshake(format!(
            "the server's first message was not a registration: {}",
            message_name(&other)
        ))),
        Err(error) => Err(ConnectError::Handshake(error.to_string())),
    }
}

/// One registered connection.
struct Connection {
    socket: Socket,
    /// The status reports' counter.
    seq: u64,
    /// The status last reported.
    last: Option<Status>,
    last_sent: Instant,
}

impl Connection {
    async fn serve(
        &mut self,
        pool: &PoolShared,
        options: &LiveKitOptions,
        state: &LiveKitState,
        jobs: &mut Jobs,
        ended_rx: &mut mpsc::UnboundedReceiver<Ended>,
        stop: &mut oneshot::Receiver<()>,
    ) -> End {
        if let Err(why) = self.resume(jobs).await {
            return End::Lost(why);
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                _ = &mut *stop => {
                    self.finish(jobs, ended_rx).await;
                    return End::Stop;
                }
                frame = self.socket.next() => self.on_frame(frame, jobs).await,
                Some(ended) = ended_rx.recv() => {
                    let message = jobs.ended(ended);
                    self.send(message).await
                }
                _ = tick.tick() => {
                    jobs.release_holds(Instant::now(), pool.is_draining());
                    Ok(())
                }
            };
            if let Err(why) = step {
                return End::Lost(why);
            }
            if let Err(why) = self.report(pool, options, state, jobs).await {
                return End::Lost(why);
            }
        }
    }

    /// After registering: the jobs that survived a reconnect, then the statuses kept.
    async fn resume(&mut self, jobs: &mut Jobs) -> Result<(), String> {
        let running = jobs.running_ids();
        if !running.is_empty() {
            self.send(protocol::migrate(running)).await?;
        }
        let mut unsent = jobs.take_unsent();
        while let Some(message) = unsent.pop_front() {
            if let Err(why) = self.send(message.clone()).await {
                jobs.keep_unsent(message);
                for rest in unsent {
                    jobs.keep_unsent(rest);
                }
                return Err(why);
            }
        }
        Ok(())
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
        jobs: &mut Jobs,
    ) -> Result<(), String> {
        let bytes = match frame {
            None => return Err("the server closed the connection".to_owned()),
            Some(Err(error)) => return Err(error.to_string()),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "the server closed the connection{}",
                    close_words(frame.as_ref())
                ));
            }
            Some(Ok(Message::Text(_))) => {
                tracing::warn!(
                    target: "openrtc::livekit",
                    "[livekit] a text frame from the server (the worker speaks binary protobuf): ignored"
                );
                return Ok(());
            }
            Some(Ok(_)) => return Ok(()),
        };
        let message = match protocol::decode(&bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(
                    target: "openrtc::livekit",
                    "[livekit] an unreadable frame from the server ({} bytes: {error}): ignored",
                    bytes.len()
                );
                return Ok(());
            }
        };
        match message {
            ServerMessage::Availability(request) => {
                let answer = jobs.offer(request, Instant::now());
                self.send(protocol::availability(answer)).await
            }
            ServerMessage::Assignment(assignment) => match jobs.assign(assignment) {
                Some(status) => self.send(status).await,
                None => Ok(()),
            },
            ServerMessage::Termination(termination) => {
                jobs.terminate(&termination.job_id);
                Ok(())
            }
            ServerMessage::GoAway(go_away) => Err(format!(
                "the server asked the worker to go away: {}",
                go_away.reason
            )),
            ServerMessage::Pong(_) => Ok(()),
            ServerMessage::Register(_) => {
                tracing::warn!(
                    target: "openrtc::livekit",
                    "[livekit] a second registration answer from the server: ignored"
                );
                Ok(())
            }
        }
    }

    /// Reports the status when it changed, or when the interval has passed since the last
    /// report.
    async fn report(
        &mut self,
        pool: &PoolShared,
        options: &LiveKitOptions,
        state: &LiveKitState,
        jobs: &Jobs,
    ) -> Result<(), String> {
        let now = Status::now(pool, options, jobs);
        if self.last == Some(now) && self.last_sent.elapsed() < options.status_interval {
            return Ok(());
        }
        self.seq += 1;
        self.send(protocol::update_worker(
            now,
            self.seq,
            options.server_target_load,
        ))
        .await?;
        self.last = Some(now);
        self.last_sent = Instant::now();
        state.reported(now);
        Ok(())
    }

    /// The worker is stopping: its sessions have ended (the pool drained first); their jobs'
    /// statuses go out, then the connection closes.
    async fn finish(&mut self, jobs: &mut Jobs, ended_rx: &mut mpsc::UnboundedReceiver<Ended>) {
        let deadline = tokio::time::Instant::now() + FINAL_STATUS_WAIT;
        while jobs.running_count() > 0 {
            let ended = tokio::select! {
                ended = ended_rx.recv() => ended,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(ended) = ended else { break };
            let message = jobs.ended(ended);
            if self.send(message).await.is_err() {
                return;
            }
        }
        let _ = self
            .socket
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "the worker stopped".into(),
            }))
            .await;
    }

    async fn send(&mut self, message: WorkerMessage) -> Result<(), String> {
        self.socket
            .send(Message::Binary(protocol::encode(message).into()))
            .await
            .map_err(|error| error.to_string())
    }
}

impl Status {
    /// The worker's status now: every session it holds (from any source) over its capacity.
    fn now(pool: &PoolShared, options: &LiveKitOptions, jobs: &Jobs) -> Self {
        let (sessions, capacity) = pool.session_places();
        load::status(
            sessions,
            capacity,
            jobs.running_count(),
            options.load_threshold,
            pool.is_draining(),
        )
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn close_words(frame: Option<&CloseFrame>) -> String {
    frame.map_or_else(String::new, |frame| {
        format!(" (code {}: {})", u16::from(frame.code), frame.reason)
    })
}

fn message_name(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Register(_) => "register",
        ServerMessage::Availability(_) => "availability",
        ServerMessage::Assignment(_) => "assignment",
        ServerMessage::Pong(_) => "pong",
        ServerMessage::Termination(_) => "termination",
        ServerMessage::GoAway(_) => "go_away",
    }
}
