//! A LiveKit room's audio, joined without libwebrtc: LiveKit's signalling over a WebSocket, two
//! WebRTC peer connections with `str0m` (sans-IO, in Rust; DTLS and SRTP on the system's
//! OpenSSL): the server's offer for what the agent receives, the agent's offer for what it
//! publishes; and Opus with libopus.
//!
//! [`RoomAudio::connect`] joins with a room token (a job's, [`LiveKitJob::token`]); the agent
//! then reads other participants' 20 ms frames of 48 kHz PCM16 with [`RoomAudio::recv`] and
//! publishes its own with [`RoomAudio::send`], as a telephony call's media does. The room runs
//! in one task: `Session::livekit_room` spawns it as the session's child, so its CPU and stalls
//! are the session's.
//!
//! Submodules: `signal` (pure: the join URL and the protobuf frames), `codec` (Opus), `peer`
//! (one peer connection and its UDP socket) and `driver` (the task).

mod codec;
mod driver;
mod peer;
mod signal;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::{JoinResponse, signal_response};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

pub use codec::{CodecError, FRAME_SAMPLES, SAMPLE_RATE_HZ};
pub use openrtc_media::resample::{FrameResampler, ResampleError};
pub use signal::SignalError;

use super::LiveKitJob;
use super::url::UrlError;
use driver::{Command, Driver, TRACK_CID};
use peer::Peer;

/// How long the signalling connection and the server's `JoinResponse` may take.
const JOIN_PATIENCE: Duration = Duration::from_secs(10);
/// The events a slow agent may leave unread before frames are dropped (5 s of one speaker).
const EVENT_QUEUE_LENGTH: usize = 256;
/// The agent's frames queued for its track before `send` waits.
const COMMAND_QUEUE_LENGTH: usize = 16;
/// The address the peer connections' UDP sockets bind when the signalling socket's own is not
/// known: loopback.
const FALLBACK_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The name of the agent's audio track.
const TRACK_NAME: &str = "agent-audio";
/// Pings when the server asks for none.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Why a room could not be joined.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The server URL cannot be used.
    #[error("the server URL: {0}")]
    Url(#[from] UrlError),
    /// The server refused the signalling connection (a bad or expired token: 401).
    #[error("the server refused to join the room (HTTP {status})")]
    Refused {
        /// The HTTP status of the refused upgrade.
        status: u16,
    },
    /// The signalling WebSocket failed.
    #[error("signalling: {0}")]
    Socket(#[source] Box<tungstenite::Error>),
    /// The server did not answer in time.
    #[error("the server did not {waiting_for} within {JOIN_PATIENCE:?}")]
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// The server sent something unreadable.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The server closed or left before the join completed.
    #[error("the server ended the join: {0}")]
    Ended(String),
    /// A peer connection's socket could not be bound.
    #[error("binding a peer connection's socket: {0}")]
    Bind(#[from] std::io::Error),
    /// The Opus encoder could not be made.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Why a frame could not be sent.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomSendError {
    /// The room has ended (left, or the connection was lost).
    #[error("the room has ended")]
    Closed,
    /// A frame is exactly 20 ms at the agent's rate ([`FRAME_SAMPLES`] samples at 48 kHz).
    #[error("a frame is 20 ms at the agent's sample rate, not {samples_count} samples")]
    FrameSize {
        /// The samples given.
        samples_count: usize,
    },
}

/// 20 ms of one participant's audio: [`FRAME_SAMPLES`] samples of PCM16 at 48 kHz, mono.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomAudioFrame {
    /// Whose audio it is (the participant's sid while its identity is not yet known).
    pub participant_identity: String,
    /// The track it came on (`TR_…`).
    pub track_sid: String,
    /// The samples.
    pub samples: Vec<i16>,
}

/// What the room tells the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomAudioEvent {
    /// A participant's frame.
    Frame(RoomAudioFrame),
    /// A subscribed track ended.
    TrackEnded {
        /// Whose track it was.
        participant_identity: String,
        /// The track.
        track_sid: String,
    },
    /// The room ended for the agent; nothing follows, and `send` fails from then on.
    Disconnected {
        /// Why, as text.
        reason: String,
    },
}

/// The agent's side of a joined room's audio.
#[derive(Debug)]
pub struct RoomAudio {
    events: mpsc::Receiver<RoomAudioEvent>,
    commands: mpsc::Sender<Command>,
    identity: String,
    room_name: String,
    join_ms: u64,
    /// The agent's rate, when it asked for one other than 48 kHz.
    rate: Option<Rate>,
}

/// The agent's own sample rate: every participant's frames resampled to it (one resampler per
/// track, its state kept), and the agent's frames resampled from it, in the agent's task.
#[derive(Debug)]
struct Rate {
    rate_hz: u32,
    inbound: std::collections::HashMap<String, FrameResampler>,
    outbound: FrameResampler,
}

impl RoomAudio {
    /// Joins the room of `token` at the server at `url` (`http(s)://` or `ws(s)://`), and runs
    /// it on a task of its own (`tokio::spawn`; a session uses `Session::livekit_room`).
    ///
    /// # Errors
    /// A [`RoomError`] when the join fails.
    pub async fn connect(url: &str, token: &str) -> Result<Self, RoomError> {
        let (audio, driver) = join(url, token).await?;
        tokio::spawn(driver.run());
        Ok(audio)
    }

    /// Joins and hands the room's task to `spawn` (a session's `spawn`, so the task is its).
    pub(crate) async fn connect_with<S>(url: &str, token: &str, spawn: S) -> Result<Self, RoomError>
    where
        S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    {
        let (audio, driver) = join(url, token).await?;
        spawn(Box::pin(driver.run()));
        Ok(audio)
    }

    /// Exchanges audio at `rate_hz` (8, 16, 24 or 48 kHz) from now on: frames heard are
    /// resampled to it, and [`Self::send`] takes 20 ms at it (`rate_hz / 50` samples). The
    /// room itself stays at 48 kHz (Opus); resampling runs in the agent's own task.
    ///
    /// # Errors
    /// [`ResampleError::Rate`] for another rate.
    pub fn set_sample_rate(&mut self, rate_hz: u32) -> Result<(), ResampleError> {
        if rate_hz == SAMPLE_RATE_HZ {
            self.rate = None;
            return Ok(());
        }
        FrameResampler::new(SAMPLE_RATE_HZ, rate_hz)?;
        self.rate = Some(Rate {
            rate_hz,
            inbound: std::collections::HashMap::new(),
            outbound: FrameResampler::new(rate_hz, SAMPLE_RATE_HZ)?,
        });
        Ok(())
    }

    /// The rate the agent exchanges audio at (48 kHz unless [`Self::set_sample_rate`]).
    #[must_use]
    pub fn sample_rate(&self) -> u32 {
        self.rate
            .as_ref()
            .map_or(SAMPLE_RATE_HZ, |rate| rate.rate_hz)
    }

    /// The next event: a participant's frame (20 ms at [`Self::sample_rate`]), a track's end,
    /// or the room's end (`None` after the room's task is gone).
    pub async fn recv(&mut self) -> Option<RoomAudioEvent> {
        let event = self.events.recv().await?;
        let Some(rate) = &mut self.rate else {
            return Some(event);
        };
        Some(match event {
            RoomAudioEvent::Frame(mut frame) => {
                let resampler = match rate.inbound.entry(frame.track_sid.clone()) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        // Rates checked by `set_sample_rate`.
                        match FrameResampler::new(SAMPLE_RATE_HZ, rate.rate_hz) {
                            Ok(resampler) => entry.insert(resampler),
                            Err(_) => return Some(RoomAudioEvent::Frame(frame)),
                        }
                    }
                };
                let mut samples = Vec::with_capacity(FrameResampler::frame_samples(rate.rate_hz));
                if resampler.process(&frame.samples, &mut samples).is_ok() {
                    frame.samples = samples;
                }
                RoomAudioEvent::Frame(frame)
            }
            RoomAudioEvent::TrackEnded {
                participant_identity,
                track_sid,
            } => {
                rate.inbound.remove(&track_sid);
                RoomAudioEvent::TrackEnded {
                    participant_identity,
                    track_sid,
                }
            }
            other => other,
        })
    }

    /// Publishes 20 ms of the agent's audio (PCM16 at [`Self::sample_rate`]: [`FRAME_SAMPLES`]
    /// samples at 48 kHz) on its track. Frames sent before the track is connected are dropped.
    ///
    /// # Errors
    /// [`RoomSendError::FrameSize`] for a frame of another length, [`RoomSendError::Closed`]
    /// once the room has ended.
    pub async fn send(&mut self, samples: &[i16]) -> Result<(), RoomSendError> {
        let expected = FrameResampler::frame_samples(self.sample_rate());
        if samples.len() != expected {
            return Err(RoomSendError::FrameSize {
                samples_count: samples.len(),
            });
        }
        let frame = match &mut self.rate {
            None => samples.to_vec(),
            Some(rate) => {
                let mut frame = Vec::with_capacity(FRAME_SAMPLES);
                rate.outbound.process(samples, &mut frame).map_err(|_| {
                    RoomSendError::FrameSize {
                        samples_count: samples.len(),
                    }
                })?;
                frame
            }
        };
        self.commands
            .send(Command::Frame(frame))
            .await
            .map_err(|_| RoomSendError::Closed)
    }

    /// Leaves the room (a `LeaveRequest`); the last event is then `Disconnected`.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    /// The identity the agent joined as.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The room's name.
    #[must_use]
    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// How long the join took, from connecting to the server's `JoinResponse`, in ms.
    #[must_use]
    pub fn join_ms(&self) -> u64 {
        self.join_ms
    }
}

impl LiveKitJob {
    /// Joins this job's room with its token, the room's task on `tokio::spawn` (a session
    /// uses `Session::livekit_room`, which makes the task its own).
    ///
    /// # Errors
    /// A [`RoomError`] when the join fails.
    pub async fn connect(&self) -> Result<RoomAudio, RoomError> {
        RoomAudio::connect(&self.url, &self.token).await
    }
}

/// Connects, waits for the `JoinResponse`, asks for the agent's track, and builds the task.
async fn join(url: &str, token: &str) -> Result<(RoomAudio, Driver), RoomError> {
    let started = Instant::now();
    let join_url = signal::join_url(url, token)?;
    let connecting = tokio_tungstenite::connect_async(join_url);
    let mut socket = match tokio::time::timeout(JOIN_PATIENCE, connecting).await {
        Err(_) => {
            return Err(RoomError::Timeout {
                waiting_for: "accept the connection",
            });
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            return Err(RoomError::Refused {
                status: response.status().as_u16(),
            });
        }
        Ok(Err(error)) => return Err(RoomError::Socket(Box::new(error))),
        Ok(Ok((socket, _))) => socket,
    };
    let joined = tokio::time::timeout(JOIN_PATIENCE, join_response(&mut socket))
        .await
        .map_err(|_| RoomError::Timeout {
            waiting_for: "send its JoinResponse",
        })??;
    let join_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // The peer connections' one host candidate each is on the interface the signalling
    // connection reached the server through: loopback for a server on this host, the host's
    // address towards it otherwise (no STUN or TURN candidate: a server behind a NAT from
    // the worker is not reachable yet).
    let bind_ip = match socket.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp
            .local_addr()
            .map_or(FALLBACK_BIND_IP, |local| local.ip()),
        _ => FALLBACK_BIND_IP,
    };
    let publisher = Peer::bind(bind_ip).await?;
    let subscriber = Peer::bind(bind_ip).await?;
    let encoder = codec::Encoder::new()?;
    let add_track = signal::add_audio_track(TRACK_CID, TRACK_NAME);
    socket
        .send(Message::Binary(signal::encode(add_track).into()))
        .await
        .map_err(|error| RoomError::Socket(Box::new(error)))?;
    let (events_in, events) = mpsc::channel(EVENT_QUEUE_LENGTH);
    let (commands, commands_out) = mpsc::channel(COMMAND_QUEUE_LENGTH);
    let ping_interval = u64::try_from(joined.ping_interval)
        .ok()
        .filter(|seconds| *seconds > 0)
        .map_or(DEFAULT_PING_INTERVAL, Duration::from_secs);
    let mut driver = Driver::new(
        socket,
        publisher,
        subscriber,
        encoder,
        events_in,
        commands_out,
        ping_interval,
    );
    for participant in joined.other_participants.iter().chain(&joined.participant) {
        driver
            .identities
            .insert(participant.sid.clone(), participant.identity.clone());
    }
    let audio = RoomAudio {
        events,
        commands,
        identity: joined
            .participant
            .as_ref()
            .map(|participant| participant.identity.clone())
            .unwrap_or_default(),
        room_name: joined
            .room
            .as_ref()
            .map(|room| room.name.clone())
            .unwrap_or_default(),
        join_ms,
        rate: None,
    };
    Ok((audio, driver))
}

/// Reads the signalling until the server's `JoinResponse`.
async fn join_response(socket: &mut driver::SignalSocket) -> Result<JoinResponse, RoomError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => match signal::decode(&bytes)? {
                Some(signal_response::Message::Join(joined)) => return Ok(joined),
                Some(signal_response::Message::Leave(leave)) => {
                    return Err(RoomError::Ended(format!("leave (reason {})", leave.reason)));
                }
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => {
                return Err(RoomError::Ended(format!("closed: {frame:?}")));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(RoomError::Socket(Box::new(error))),
            None => return Err(RoomError::Ended("closed".to_owned())),
        }
    }
}
