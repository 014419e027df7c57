//! The worker protocol's messages as the worker sends and reads them (pure): one protobuf
//! `WorkerMessage` or `ServerMessage` per binary frame, and the worker's access token.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use livekit_protocol::{
    AvailabilityResponse, MigrateJobRequest, ParticipantPermission, RegisterWorkerRequest,
    ServerMessage, UpdateJobStatus, UpdateWorkerStatus, WorkerMessage, server_message,
    worker_message,
};
use prost::Message as _;
use thiserror::Error;

use super::LiveKitOptions;
use super::load::Status;

/// The largest server message the worker reads: the server's own limit on a signal message.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2 << 20;

/// The worker's token's lifetime (LiveKit's default); a fresh one is minted per connection.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// A frame the worker cannot read.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not a `ServerMessage`.
    #[error("not a LiveKit server message: {0}")]
    Protobuf(String),
    /// A `ServerMessage` with none of its messages set.
    #[error("an empty server message")]
    Empty,
}

/// A server message from a binary frame's bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<server_message::Message, DecodeError> {
    ServerMessage::decode(bytes)
        .map_err(|error| DecodeError::Protobuf(error.to_string()))?
        .message
        .ok_or(DecodeError::Empty)
}

/// A worker message's bytes, for a binary frame.
pub(crate) fn encode(message: worker_message::Message) -> Vec<u8> {
    WorkerMessage {
        message: Some(message),
    }
    .encode_to_vec()
}

/// The worker's access token: the `agent` grant, signed with the API secret.
pub(crate) fn worker_token(options: &LiveKitOptions) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(&options.api_key, &options.api_secret)
        .with_grants(VideoGrants {
            agent: true,
            ..VideoGrants::default()
        })
        .with_ttl(TOKEN_TTL)
        .to_jwt()
}

/// The registration: type, agent name, version, and the permissions the jobs' participants
/// get (those of LiveKit's Python worker).
pub(crate) fn register(options: &LiveKitOptions) -> worker_message::Message {
    worker_message::Message::Register(RegisterWorkerRequest {
        r#type: options.job_type.as_proto() as i32,
        agent_name: options.agent_name.clone(),
        version: format!("openrtc {}", env!("CARGO_PKG_VERSION")),
        allowed_permissions: Some(ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_update_metadata: true,
            ..ParticipantPermission::default()
        }),
        ..RegisterWorkerRequest::default()
    })
}

/// The status report, numbered by `seq` (one counter per connection), its load (sessions over
/// capacity) on the scale of a server whose target load is `target_load`.
pub(crate) fn update_worker(status: Status, seq: u64, target_load: f64) -> worker_message::Message {
    #[allow(clippy::cast_possible_truncation, reason = "a load in [0, 1]")]
    let scale = target_load as f32;
    worker_message::Message::UpdateWorker(UpdateWorkerStatus {
        status: Some(status.status as i32),
        load: status.load * scale,
        job_count: status.job_count,
        draining: status.draining,
        seq,
    })
}

/// A job's status.
pub(crate) fn update_job(
    job_id: &str,
    status: livekit_protocol::JobStatus,
    error: String,
) -> worker_message::Message {
    worker_message::Message::UpdateJob(UpdateJobStatus {
        job_id: job_id.to_owned(),
        status: status as i32,
        error,
    })
}

/// The jobs still running after a reconnect.
pub(crate) fn migrate(job_ids: Vec<String>) -> worker_message::Message {
    worker_message::Message::MigrateJob(MigrateJobRequest { job_ids })
}

/// The answer to an offer.
pub(crate) fn availability(answer: AvailabilityResponse) -> worker_message::Message {
    worker_message::Message::Availability(answer)
}

#[cfg(test)]
mod tests {
    use livekit_api::access_token::TokenVerifier;
    use livekit_protocol::{JobTermination, WorkerStatus};

    use super::*;

    #[test]
    fn the_worker_token_carries_the_agent_grant_and_verifies_with_the_secret() {
        let options = LiveKitOptions::new("http://h", "key", "a-secret-of-thirty-two-characters");
        let token = worker_token(&options).expect("minted");
        let claims = TokenVerifier::with_api_key("key", "a-secret-of-thirty-two-characters")
            .verify(&token)
            .expect("verifies");
        assert!(claims.video.agent);
        assert!(!claims.video.room_join);
        assert!(
            TokenVerifier::with_api_key("key", "another-secret-of-32-characters!")
                .verify(&token)
                .is_err()
        );
    }

    #[test]
    fn messages_round_trip_and_bad_frames_are_typed() {
        let options = LiveKitOptions::new("http://h", "k", "s").agent_name("named");
        let bytes = encode(register(&options));
        let decoded = WorkerMessage::decode(bytes.as_slice()).expect("decodes");
        let Some(worker_message::Message::Register(register)) = decoded.message else {
            panic!("not a register: {decoded:?}");
        };
        assert_eq!(register.agent_name, "named");
        let status = Status {
            status: WorkerStatus::WsFull,
            load: 0.5,
            job_count: 2,
            draining: true,
        };
        let decoded = WorkerMessage::decode(encode(update_worker(status, 7, 0.7)).as_slice())
            .expect("decodes");
        let Some(worker_message::Message::UpdateWorker(update)) = decoded.message else {
            panic!("not an update: {decoded:?}");
        };
        assert_eq!(update.status, Some(WorkerStatus::WsFull as i32));
        assert_eq!(
            (update.job_count, update.seq, update.draining),
            (2, 7, true)
        );

        let termination = ServerMessage {
            message: Some(server_message::Message::Termination(JobTermination {
                job_id: "AJ_1".into(),
            })),
        };
        assert!(matches!(
            decode(&termination.encode_to_vec()),
            Ok(server_message::Message::Termination(t)) if t.job_id == "AJ_1"
        ));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
