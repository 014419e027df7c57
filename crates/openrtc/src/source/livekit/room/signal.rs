//! LiveKit's client signalling, the pure part: the join URL, the protobuf frames in and out,
//! and the few requests a room's audio needs (no I/O).
//!
//! The flow it serves (two peer connections, LiveKit's `/rtc` path): the server sends
//! `JoinResponse`; the client asks for its track with `AddTrackRequest` and, on
//! `TrackPublishedResponse`, offers the publisher connection; the server answers it. The
//! server offers the subscriber connection and the client answers. ICE candidates come in
//! `TrickleRequest`s whose `target` says which connection they are for.

use livekit_protocol::{
    AddTrackRequest, SessionDescription, SignalRequest, SignalResponse, TrackSource, TrackType,
    signal_request, signal_response,
};
use prost::Message as _;
use thiserror::Error;

use crate::source::livekit::url::{UrlError, rtc_url};

/// The signalling protocol version the client speaks (LiveKit's `protocol` query value).
pub(crate) const PROTOCOL_VERSION: u32 = 16;

/// Why a signalling frame or a candidate could not be read.
#[derive(Debug, Error)]
pub enum SignalError {
    /// A binary frame that is no `SignalResponse`.
    #[error("a signalling frame is no SignalResponse: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A trickled candidate that is not the JSON of an `RTCIceCandidateInit`.
    #[error("a trickled candidate is not an RTCIceCandidateInit: {0}")]
    Candidate(String),
}

/// The signalling WebSocket's URL for the server at `url`, joining with `token`.
pub(crate) fn join_url(url: &str, token: &str) -> Result<String, UrlError> {
    let base = rtc_url(url)?;
    Ok(format!(
        "{base}?access_token={}&auto_subscribe=1&sdk=rust&protocol={PROTOCOL_VERSION}&version={}",
        percent_encode(token),
        env!("CARGO_PKG_VERSION"),
    ))
}

/// `value` with every byte outside RFC 3986's unreserved set percent-encoded.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// One request as the binary frame the server reads.
pub(crate) fn encode(message: signal_request::Message) -> Vec<u8> {
    SignalRequest {
        message: Some(message),
    }
    .encode_to_vec()
}

/// One binary frame from the server (`None`: a response with no message set).
pub(crate) fn decode(frame: &[u8]) -> Result<Option<signal_response::Message>, SignalError> {
    Ok(SignalResponse::decode(frame)?.message)
}

/// The request for the agent's microphone track, plain Opus (no RED), mono.
pub(crate) fn add_audio_track(cid: &str, name: &str) -> signal_request::Message {
    signal_request::Message::AddTrack(AddTrackRequest {
        cid: cid.to_owned(),
        name: name.to_owned(),
        r#type: TrackType::Audio as i32,
        source: TrackSource::Microphone as i32,
        disable_red: true,
        ..AddTrackRequest::default()
    })
}

/// An SDP of `kind` (`"offer"` or `"answer"`) as the signalling carries it.
pub(crate) fn description(kind: &str, sdp: String) -> SessionDescription {
    SessionDescription {
        r#type: kind.to_owned(),
        sdp,
        ..SessionDescription::default()
    }
}

/// The candidate line (`candidate:…`) inside a trickled `RTCIceCandidateInit` JSON; `None`
/// for the empty candidate that ends a generation.
pub(crate) fn trickled_candidate(candidate_init: &str) -> Result<Option<String>, SignalError> {
    let init: serde_json::Value = serde_json::from_str(candidate_init)
        .map_err(|error| SignalError::Candidate(error.to_string()))?;
    let line = init
        .get("candidate")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| SignalError::Candidate(format!("no candidate in {candidate_init}")))?;
    let line = line.strip_prefix("a=").unwrap_or(line).trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

/// The participant sid and track sid in the `msid` stream id LiveKit gives a subscribed track
/// (`PA_…|TR_…`); a stream id without `|` is taken as the participant's sid alone.
pub(crate) fn split_stream_id(stream_id: &str) -> (&str, Option<&str>) {
    match stream_id.split_once('|') {
        Some((participant, track)) => (participant, Some(track)),
        None => (stream_id, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_url_carries_the_token_and_the_client_parameters() {
        let url = join_url("http://127.0.0.1:7880/", "a.b-c_d=").expect("a valid url");
        assert_eq!(
            url,
            format!(
                "ws://127.0.0.1:7880/rtc?access_token=a.b-c_d%3D&auto_subscribe=1&sdk=rust&protocol=16&version={}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(join_url("ftp://host", "t").is_err());
    }

    #[test]
    fn requests_round_trip_through_the_wire_format() {
        let frame = encode(add_audio_track("cid-1", "agent"));
        let request = SignalRequest::decode(frame.as_slice()).expect("a SignalRequest");
        let Some(signal_request::Message::AddTrack(track)) = request.message else {
            panic!("not an AddTrack: {request:?}");
        };
        assert_eq!(track.cid, "cid-1");
        assert_eq!(track.r#type, TrackType::Audio as i32);
        assert_eq!(track.source, TrackSource::Microphone as i32);
        assert!(track.disable_red);
    }

    #[test]
    fn a_response_frame_decodes_and_garbage_is_refused() {
        let response = SignalResponse {
            message: Some(signal_response::Message::Pong(7)),
        };
        let decoded = decode(&response.encode_to_vec()).expect("a frame");
        assert_eq!(decoded, Some(signal_response::Message::Pong(7)));
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn trickled_candidates_are_read_from_their_json() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host";
        let init = format!(r#"{{"candidate":"{line}","sdpMid":"0","sdpMLineIndex":0}}"#);
        assert_eq!(
            trickled_candidate(&init).expect("a candidate"),
            Some(line.to_owned())
        );
        let prefixed = format!(r#"{{"candidate":"a={line}"}}"#);
        assert_eq!(
            trickled_candidate(&prefixed).expect("a candidate"),
            Some(line.to_owned())
        );
        assert_eq!(
            trickled_candidate(r#"{"candidate":""}"#).expect("an end"),
            None
        );
        assert!(trickled_candidate("{}").is_err());
        assert!(trickled_candidate("not json").is_err());
    }

    #[test]
    fn stream_ids_split_into_participant_and_track() {
        assert_eq!(split_stream_id("PA_1|TR_2"), ("PA_1", Some("TR_2")));
        assert_eq!(split_stream_id("PA_1"), ("PA_1", None));
    }
}
