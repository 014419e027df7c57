//! The control channel between the worker and an isolated session's process: its messages
//! and their framing (pure: no I/O).
//!
//! A frame is a 4-byte big-endian length and that many bytes of JSON, the layout of
//! `tokio_util`'s `LengthDelimitedCodec` with its defaults, which the worker's side reads
//! and writes with; the child reads and writes it with [`encode`] and [`FrameReader`] on
//! blocking I/O. A frame longer than [`MAX_FRAME_BYTES`] is refused on both sides.

use openrtc_proto::{CancelReason, SessionSnapshot};
use serde::{Deserialize, Serialize};

/// The longest frame either side accepts (a snapshot row with its stall records and their
/// stacks fits easily).
pub(crate) const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// What the worker tells the child.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToChild {
    /// Run this session (the first message, exactly once).
    Start(StartSession),
    /// Stop the session, within its cancel grace.
    Cancel {
        /// Why, as the worker's session records it.
        reason: CancelReason,
    },
    /// What the caller's side of the session's phone call sent.
    Media {
        /// The event, as the worker's media listener decoded it.
        event: MediaIn,
    },
    /// The call's media stream has closed (the caller hung up, or the connection broke).
    MediaClosed,
}

/// One event of a phone call's caller, on its way to the isolated session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum MediaIn {
    Audio {
        samples: Vec<i16>,
        timestamp_ms: Option<u64>,
        sequence: Option<u64>,
        missing_before_count: u64,
    },
    Dtmf {
        digit: String,
    },
    Mark {
        name: String,
    },
}

impl From<crate::media::MediaEvent> for MediaIn {
    fn from(event: crate::media::MediaEvent) -> Self {
        use crate::media::MediaEvent;
        match event {
            MediaEvent::Audio(frame) => Self::Audio {
                samples: frame.samples,
                timestamp_ms: frame.timestamp_ms,
                sequence: frame.sequence,
                missing_before_count: frame.missing_before_count,
            },
            MediaEvent::Dtmf(digit) => Self::Dtmf { digit },
            MediaEvent::Mark(name) => Self::Mark { name },
        }
    }
}

impl From<MediaIn> for crate::media::MediaEvent {
    fn from(event: MediaIn) -> Self {
        match event {
            MediaIn::Audio {
                samples,
                timestamp_ms,
                sequence,
                missing_before_count,
            } => Self::Audio(crate::media::AudioFrame {
                samples,
                timestamp_ms,
                sequence,
                missing_before_count,
            }),
            MediaIn::Dtmf { digit } => Self::Dtmf(digit),
            MediaIn::Mark { name } => Self::Mark(name),
        }
    }
}

/// What an isolated session sent to its phone call's caller, on its way to the worker's
/// media connection (encoded for the provider in the session's own process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum MediaOut {
    Audio { frame: String, duration_us: u64 },
    Mark { frame: String },
    Clear { frame: String },
    HangUp,
}

impl From<crate::media::call::Outbound> for MediaOut {
    fn from(outbound: crate::media::call::Outbound) -> Self {
        use crate::media::call::Outbound;
        match outbound {
            Outbound::Audio { frame, duration_us } => Self::Audio { frame, duration_us },
            Outbound::Frame(frame) => Self::Mark { frame },
            Outbound::Clear(frame) => Self::Clear { frame },
            Outbound::HangUp => Self::HangUp,
        }
    }
}

impl From<MediaOut> for crate::media::call::Outbound {
    fn from(out: MediaOut) -> Self {
        match out {
            MediaOut::Audio { frame, duration_us } => Self::Audio { frame, duration_us },
            MediaOut::Mark { frame } => Self::Frame(frame),
            MediaOut::Clear { frame } => Self::Clear(frame),
            MediaOut::HangUp => Self::HangUp,
        }
    }
}

/// The session a child runs: what the worker admitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StartSession {
    /// The worker's key of the session (its id there, `s-<key>`), so the child's log lines
    /// name the same session.
    pub(crate) key: u64,
    pub(crate) agent: String,
    pub(crate) tenant: String,
    pub(crate) metadata: serde_json::Value,
    /// The session's live heap cap, if any (enforced inside the child, as in the worker).
    pub(crate) memory_limit_bytes: Option<u64>,
    /// For a phone call's session, the provider's `start` frame as it came (the child parses
    /// it again for the session's `CallMedia`); its media follows as [`ToChild::Media`].
    pub(crate) call_start: Option<String>,
}

/// What the child tells the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToParent {
    /// The session is running (sent once, after the child's runtime started it).
    Started,
    /// The session's row as the child's own probe measures it (sent every
    /// [`super::ROW_INTERVAL`] and once more at the end).
    Row {
        /// The row (its id is the child's; the worker shows its own).
        row: Box<SessionSnapshot>,
    },
    /// How the session ended (the last message; the child exits after it).
    Outcome {
        /// The outcome, as snapshots carry it.
        outcome: openrtc_proto::SessionOutcome,
    },
    /// What the session sent to its phone call's caller.
    Media {
        /// The frame, encoded for the provider.
        out: MediaOut,
    },
    /// The child could not run the session (the agent is unknown to it, or its launch was
    /// refused): the words say why.
    Refused {
        /// Why, in words.
        reason: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The frame's length is over [`MAX_FRAME_BYTES`].
    #[error("a control frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLong(usize),
    /// The frame is not a message of this channel.
    #[error("a control frame is not a valid message: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// `message` as one frame: its length, then its JSON.
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLong(body.len()));
    }
    let length = u32::try_from(body.len()).map_err(|_| WireError::TooLong(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// One frame's body as a message.
pub(crate) fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    Ok(serde_json::from_slice(body)?)
}

/// Reads frames from a byte stream (the child's blocking side).
pub(crate) struct FrameReader<R> {
    reader: R,
}

impl<R: std::io::Read> FrameReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self { reader }
    }

    /// The next frame's body; `Ok(None)` at a clean end of the stream (between frames).
    pub(crate) fn next_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut header = [0_u8; 4];
        match self.reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        let length = u32::from_be_bytes(header) as usize;
        if length > MAX_FRAME_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                WireError::TooLong(length),
            ));
        }
        let mut body = vec![0_u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> ToChild {
        ToChild::Start(StartSession {
            key: 42,
            agent: "echo".into(),
            tenant: "acme".into(),
            metadata: serde_json::json!({"room": "r-1"}),
            memory_limit_bytes: Some(64 << 20),
            call_start: None,
        })
    }

    #[test]
    fn messages_go_through_frames_unchanged() {
        let messages = [
            start(),
            ToChild::Cancel {
                reason: CancelReason::Operator,
            },
            ToChild::Media {
                event: MediaIn::Audio {
                    samples: vec![0, -1, i16::MAX, i16::MIN],
                    timestamp_ms: Some(20),
                    sequence: None,
                    missing_before_count: 2,
                },
            },
            ToChild::MediaClosed,
        ];
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend(encode(message).expect("encodes"));
        }
        let mut reader = FrameReader::new(stream.as_slice());
        for message in &messages {
            let body = reader.next_frame().expect("reads").expect("a frame");
            assert_eq!(&decode::<ToChild>(&body).expect("decodes"), message);
        }
        assert!(reader.next_frame().expect("a clean end").is_none());
    }

    #[test]
    fn media_goes_through_the_channel_and_back_to_the_runtime_s_types() {
        use crate::media::MediaEvent;
        use crate::media::call::Outbound;
        let event = MediaEvent::Dtmf("5".into());
        assert_eq!(MediaEvent::from(MediaIn::from(event.clone())), event);
        let out = MediaOut::from(Outbound::Audio {
            frame: "{}".into(),
            duration_us: 20_000,
        });
        let body = encode(&ToParent::Media { out: out.clone() }).expect("encodes");
        let ToParent::Media { out: back } = decode(&body[4..]).expect("decodes") else {
            panic!("a media message");
        };
        assert_eq!(back, out);
        assert!(matches!(
            Outbound::from(back),
            Outbound::Audio {
                duration_us: 20_000,
                ..
            }
        ));
    }

    #[test]
    fn a_frame_s_length_is_its_body_s_in_big_endian() {
        let frame = encode(&ToParent::Started).expect("encodes");
        let body = br#"{"type":"started"}"#;
        assert_eq!(frame[..4], (body.len() as u32).to_be_bytes());
        assert_eq!(&frame[4..], body);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        // Over the limit: refused before anything is allocated for it.
        let mut huge = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let error = FrameReader::new(huge.as_slice())
            .next_frame()
            .expect_err("too long");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains("over the 1048576-byte limit"),
            "{error}"
        );
        // Cut short inside a body.
        let mut cut = encode(&start()).expect("encodes");
        cut.truncate(cut.len() - 3);
        let error = FrameReader::new(cut.as_slice())
            .next_frame()
            .expect_err("cut short");
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        // Not a message of the channel.
        let error = decode::<ToChild>(br#"{"type":"reboot"}"#).expect_err("unknown type");
        assert!(error.to_string().contains("not a valid message"), "{error}");
    }
}
