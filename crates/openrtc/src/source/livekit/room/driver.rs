//! The task that runs a joined room: the signalling WebSocket, the publisher and subscriber
//! peer connections, Opus both ways, and the agent's frames in through a channel and the
//! participants' frames out through another. One task, so its CPU is one session's when the
//! session spawns it (`Session::spawn`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::{SignalTarget, signal_request, signal_response};
use str0m::change::SdpPendingOffer;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::{Candidate, Event, IceConnectionState};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::codec::{Decoder, Encoder, FRAME_SAMPLES};
use super::peer::Peer;
use super::signal;
use super::{RoomAudioEvent, RoomAudioFrame};

/// The signalling WebSocket of a room.
pub(crate) type SignalSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the agent's handle asks of the task.
pub(crate) enum Command {
    /// 20 ms of PCM16 at 48 kHz for the agent's track.
    Frame(Vec<i16>),
    /// Leave the room.
    Close,
}

/// The client id of the agent's audio track (`AddTrackRequest.cid`, the SDP's track id).
pub(crate) const TRACK_CID: &str = "openrtc-agent-audio";
/// The stream id of the agent's audio track in its SDP.
const STREAM_ID: &str = "openrtc-agent";

/// One subscribed track: its decoder and whose it is.
struct Subscribed {
    decoder: Decoder,
    participant_sid: String,
    track_sid: String,
}

/// The room's task, built by the join and run by [`Driver::run`].
pub(crate) struct Driver {
    pub(crate) socket: SignalSocket,
    pub(crate) publisher: Peer,
    pub(crate) subscriber: Peer,
    pub(crate) encoder: Encoder,
    pub(crate) events: mpsc::Sender<RoomAudioEvent>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) ping_interval: Duration,
    /// Participant sid to identity, from the join and the participant updates.
    pub(crate) identities: HashMap<String, String>,
    pending_offer: Option<SdpPendingOffer>,
    publish_mid: Option<Mid>,
    publisher_connected: bool,
    rtp_time: u64,
    subscribed: HashMap<Mid, Subscribed>,
    rtc_events: Vec<Event>,
    /// Frames the agent sent before its track was connected (dropped).
    early_frames_count: u64,
    /// Participants' frames dropped because the agent did not read them in time.
    dropped_frames_count: u64,
}

/// Why the task ended.
type End = String;

impl Driver {
    /// A task for a joined room.
    pub(crate) fn new(
        socket: SignalSocket,
        publisher: Peer,
        subscriber: Peer,
        encoder: Encoder,
        events: mpsc::Sender<RoomAudioEvent>,
        commands: mpsc::Receiver<Command>,
        ping_interval: Duration,
    ) -> Self {
        Self {
            socket,
            publisher,
            subscriber,
            encoder,
            events,
            commands,
            ping_interval,
            identities: HashMap::new(),
            pending_offer: None,
            publish_mid: None,
            publisher_connected: false,
            rtp_time: 0,
            subscribed: HashMap::new(),
            rtc_events: Vec::new(),
            early_frames_count: 0,
            dropped_frames_count: 0,
        }
    }

    /// Runs the room until it ends, then says why with a last `Disconnected` event.
    pub(crate) async fn run(mut self) {
        let reason = match self.run_until_end().await {
            Ok(reason) | Err(reason) => reason,
        };
        tracing::debug!(
            reason,
            early_frames = self.early_frames_count,
            dropped_frames = self.dropped_frames_count,
            "[livekit] room audio ended"
        );
        // Closed before the last event, so a send after `Disconnected` is refused.
        self.commands.close();
        let _ = self.socket.close(None).await;
        let _ = self
            .events
            .send(RoomAudioEvent::Disconnected { reason })
            .await;
    }

    async fn run_until_end(&mut self) -> Result<End, End> {
        let mut ping = tokio::time::interval(self.ping_interval);
        loop {
            let deadline = self.drain()?;
            tokio::select! {
                frame = self.socket.next() => match frame {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Some(end) = self.on_signal(&bytes).await? {
                            return Ok(end);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Ok("the signalling connection closed".to_owned());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(format!("signalling: {error}")),
                },
                received = self.publisher.socket.recv_from(&mut self.publisher.buffer) => {
                    let (length, source) = received.map_err(|error| format!("publisher socket: {error}"))?;
                    self.publisher.receive(length, source).map_err(|error| format!("publisher: {error}"))?;
                }
                received = self.subscriber.socket.recv_from(&mut self.subscriber.buffer) => {
                    let (length, source) = received.map_err(|error| format!("subscriber socket: {error}"))?;
                    self.subscriber.receive(length, source).map_err(|error| format!("subscriber: {error}"))?;
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.publisher.tick().map_err(|error| format!("publisher: {error}"))?;
                    self.subscriber.tick().map_err(|error| format!("subscriber: {error}"))?;
                }
                command = self.commands.recv() => match command {
                    Some(Command::Frame(samples)) => self.publish(&samples)?,
                    Some(Command::Close) | None => {
                        self.send_signal(signal_request::Message::Leave(Default::default())).await?;
                        return Ok("closed by the agent".to_owned());
                    }
                },
                _ = ping.tick() => {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
                    self.send_signal(signal_request::Message::Ping(now_ms)).await?;
                }
            }
        }
    }

    /// Drains both engines, handles their events, and returns the nearer deadline.
    fn drain(&mut self) -> Result<Instant, End> {
        let mut events = std::mem::take(&mut self.rtc_events);
        let publisher_deadline = self
            .publisher
            .drain(&mut events)
            .map_err(|error| format!("publisher: {error}"))?;
        for event in events.drain(..) {
            match event {
                Event::Connected => self.publisher_connected = true,
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    return Err("the publisher connection was lost".to_owned());
                }
                _ => {}
            }
        }
        let subscriber_deadline = self
            .subscriber
            .drain(&mut events)
            .map_err(|error| format!("subscriber: {error}"))?;
        for event in events.drain(..) {
            self.on_subscriber_event(event)?;
        }
        self.rtc_events = events;
        Ok(publisher_deadline.min(subscriber_deadline))
    }

    fn on_subscriber_event(&mut self, event: Event) -> Result<(), End> {
        match event {
            Event::MediaAdded(added) if added.kind == MediaKind::Audio => {
                let Some(media) = self.subscriber.rtc.media(added.mid) else {
                    return Ok(());
                };
                let (participant_sid, track_sid) = signal::split_stream_id(media.stream_id());
                let subscribed = Subscribed {
                    decoder: Decoder::new().map_err(|error| error.to_string())?,
                    participant_sid: participant_sid.to_owned(),
                    track_sid: track_sid.unwrap_or(media.track_id()).to_owned(),
                };
                self.subscribed.insert(added.mid, subscribed);
            }
            Event::MediaChanged(changed)
                if matches!(changed.direction, Direction::Inactive | Direction::SendOnly) =>
            {
                if let Some(ended) = self.subscribed.remove(&changed.mid) {
                    let event = RoomAudioEvent::TrackEnded {
                        participant_identity: self.identity_of(&ended.participant_sid),
                        track_sid: ended.track_sid,
                    };
                    self.deliver(event);
                }
            }
            Event::MediaData(data) => self.on_media(data.mid, &data.data)?,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("the subscriber connection was lost".to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    /// One Opus packet of a subscribed track, decoded and handed to the agent.
    fn on_media(&mut self, mid: Mid, packet: &[u8]) -> Result<(), End> {
        let Some(track) = self.subscribed.get_mut(&mid) else {
            return Ok(());
        };
        let samples = match track.decoder.decode(packet) {
            Ok(samples) => samples.to_vec(),
            Err(error) => {
                tracing::debug!(%error, "[livekit] an undecodable packet was skipped");
                return Ok(());
            }
        };
        let frame = RoomAudioFrame {
            participant_identity: self
                .identities
                .get(&track.participant_sid)
                .cloned()
                .unwrap_or_else(|| track.participant_sid.clone()),
            track_sid: track.track_sid.clone(),
            samples,
        };
        self.deliver(RoomAudioEvent::Frame(frame));
        Ok(())
    }

    /// Hands an event to the agent without waiting: a full channel drops it.
    fn deliver(&mut self, event: RoomAudioEvent) {
        if self.events.try_send(event).is_err() {
            self.dropped_frames_count += 1;
        }
    }

    fn identity_of(&self, participant_sid: &str) -> String {
        self.identities
            .get(participant_sid)
            .cloned()
            .unwrap_or_else(|| participant_sid.to_owned())
    }

    /// One of the agent's frames, encoded and written on its track (dropped until the track is
    /// connected).
    fn publish(&mut self, samples: &[i16]) -> Result<(), End> {
        let Some(mid) = self.publish_mid.filter(|_| self.publisher_connected) else {
            self.early_frames_count += 1;
            return Ok(());
        };
        let packet = self
            .encoder
            .encode(samples)
            .map_err(|error| error.to_string())?;
        let Some(writer) = self.publisher.rtc.writer(mid) else {
            return Err("the agent's track has no writer".to_owned());
        };
        let Some(pt) = writer
            .payload_params()
            .find(|params| params.spec().codec == Codec::Opus)
            .map(|params| params.pt())
        else {
            return Err("the publisher did not negotiate Opus".to_owned());
        };
        let time = MediaTime::new(self.rtp_time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        writer
            .write(pt, Instant::now(), time, packet.to_vec())
            .map_err(|error| format!("publishing a frame: {error}"))?;
        self.rtp_time += FRAME_SAMPLES as u64;
        Ok(())
    }

    async fn send_signal(&mut self, message: signal_request::Message) -> Result<(), End> {
        self.socket
            .send(Message::Binary(signal::encode(message).into()))
            .await
            .map_err(|error| format!("signalling: {error}"))
    }

    /// One signalling frame from the server; `Some` when it ends the room.
    async fn on_signal(&mut self, frame: &[u8]) -> Result<Option<End>, End> {
        let Some(message) = signal::decode(frame).map_err(|error| error.to_string())? else {
            return Ok(None);
        };
        match message {
            signal_response::Message::Offer(offer) => {
                let offer = SdpOffer::from_sdp_string(&offer.sdp)
                    .map_err(|error| format!("the subscriber offer: {error}"))?;
                let answer = self
                    .subscriber
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|error| format!("the subscriber offer: {error}"))?;
                let answer = signal::description("answer", answer.to_sdp_string());
                self.send_signal(signal_request::Message::Answer(answer))
                    .await?;
            }
            signal_response::Message::TrackPublished(published) if published.cid == TRACK_CID => {
                self.offer_publisher().await?;
            }
            signal_response::Message::Answer(answer) => {
                let Some(pending) = self.pending_offer.take() else {
                    return Ok(None);
                };
                let answer = SdpAnswer::from_sdp_string(&answer.sdp)
                    .map_err(|error| format!("the publisher answer: {error}"))?;
                self.publisher
                    .rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|error| format!("the publisher answer: {error}"))?;
            }
            signal_response::Message::Trickle(trickle) => self.on_trickle(&trickle)?,
            signal_response::Message::Update(update) => {
                for participant in update.participants {
                    self.identities
                        .insert(participant.sid, participant.identity);
                }
            }
            signal_response::Message::Leave(leave) => {
                return Ok(Some(format!(
                    "the server asked to leave (reason {})",
                    leave.reason
                )));
            }
            _ => {}
        }
        Ok(None)
    }

    /// The publisher's offer with the agent's audio track, once the server accepted the track.
    async fn offer_publisher(&mut self) -> Result<(), End> {
        let mut api = self.publisher.rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(STREAM_ID.to_owned()),
            Some(TRACK_CID.to_owned()),
            None,
        );
        let Some((offer, pending)) = api.apply() else {
            return Err("the publisher had nothing to offer".to_owned());
        };
        self.publish_mid = Some(mid);
        self.pending_offer = Some(pending);
        let offer = signal::description("offer", offer.to_sdp_string());
        self.send_signal(signal_request::Message::Offer(offer))
            .await
    }

    fn on_trickle(&mut self, trickle: &livekit_protocol::TrickleRequest) -> Result<(), End> {
        let Some(line) = signal::trickled_candidate(&trickle.candidate_init)
            .map_err(|error| error.to_string())?
        else {
            return Ok(());
        };
        let candidate = match Candidate::from_sdp_string(&line) {
            Ok(candidate) => candidate,
            Err(error) => {
                tracing::debug!(%error, line, "[livekit] a trickled candidate was skipped");
                return Ok(());
            }
        };
        if trickle.target == SignalTarget::Publisher as i32 {
            self.publisher.rtc.add_remote_candidate(candidate);
        } else {
            self.subscriber.rtc.add_remote_candidate(candidate);
        }
        Ok(())
    }
}
