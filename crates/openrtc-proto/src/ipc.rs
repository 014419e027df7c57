//! The request/response messages of the worker socket: newline-delimited, versioned JSON.

use serde::{Deserialize, Serialize};

use crate::{PoolSnapshot, SessionId};

/// One request line: `{"v":1,"op":"snapshot"}`, `{"v":1,"op":"cancel","session_id":"s-7"}` or
/// `{"v":1,"op":"subscribe"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// The protocol version the client speaks ([`crate::PROTOCOL_VERSION`]).
    pub v: u32,
    /// What is asked.
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks of a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The whole pool snapshot.
    Snapshot,
    /// Cancel one session (gracefully, recorded as cancelled by the operator). The id may be
    /// any unique prefix of a live session's id, as git takes a commit's: `s-4` names `s-4`
    /// itself when it is live, else the only live id that starts with `s-4` (`s-42`); more
    /// than one is [`ErrorCode::Ambiguous`], none is [`ErrorCode::NotFound`].
    Cancel {
        /// The session id (`s-42`) or a unique prefix of its text.
        session_id: String,
    },
    /// The lifecycle event stream, live: the worker answers [`Response::Subscribed`], then
    /// writes every line of its event stream ([`crate::StreamLine`], the same lines as its
    /// event stream file) until the client closes the connection. Nothing else is answered
    /// on that connection.
    Subscribe,
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The protocol version of the worker ([`crate::PROTOCOL_VERSION`]).
    pub v: u32,
    /// The answer.
    #[serde(flatten)]
    pub response: Response,
}

/// A worker's answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// The pool snapshot.
    Snapshot {
        /// The snapshot itself.
        snapshot: Box<PoolSnapshot>,
    },
    /// The session was asked to stop.
    Cancelled {
        /// The full id of the session that was cancelled.
        session_id: SessionId,
    },
    /// The client is subscribed: every line from here on is a [`crate::StreamLine`].
    Subscribed {
        /// The `schema_version` of the lines that follow.
        schema_version: u32,
    },
    /// The request was refused.
    Error {
        /// A stable, machine-readable code.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a valid request (not JSON, unknown op, missing field).
    BadRequest,
    /// The line is not UTF-8.
    InvalidUtf8,
    /// The line is longer than [`crate::MAX_REQUEST_BYTES`].
    LineTooLong,
    /// The client speaks a protocol version this worker does not.
    UnsupportedVersion,
    /// The client runs as another user.
    PermissionDenied,
    /// The worker serves too many clients at once; try again.
    TooManyClients,
    /// No live session matches the id.
    NotFound,
    /// The id prefix matches more than one live session.
    Ambiguous,
    /// The worker cannot serve this request any more: it is stopping.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_shape() {
        let parsed: RequestEnvelope =
            serde_json::from_str(r#"{"v":1,"op":"snapshot"}"#).expect("valid request");
        assert_eq!(
            parsed,
            RequestEnvelope {
                v: 1,
                request: Request::Snapshot
            }
        );
        let cancel = RequestEnvelope {
            v: 1,
            request: Request::Cancel {
                session_id: "s-7".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&cancel).expect("serializes"),
            r#"{"v":1,"op":"cancel","session_id":"s-7"}"#
        );
        assert!(serde_json::from_str::<RequestEnvelope>(r#"{"v":1,"op":"reboot"}"#).is_err());
        let subscribe: RequestEnvelope =
            serde_json::from_str(r#"{"v":1,"op":"subscribe"}"#).expect("valid request");
        assert_eq!(subscribe.request, Request::Subscribe);
        let subscribed = ResponseEnvelope {
            v: 1,
            response: Response::Subscribed { schema_version: 2 },
        };
        assert_eq!(
            serde_json::to_string(&subscribed).expect("serializes"),
            r#"{"v":1,"type":"subscribed","schema_version":2}"#
        );
    }

    #[test]
    fn errors_round_trip() {
        let response = ResponseEnvelope {
            v: 1,
            response: Response::Error {
                code: ErrorCode::LineTooLong,
                message: "request line longer than 65536 bytes".into(),
            },
        };
        let line = serde_json::to_string(&response).expect("serializes");
        assert_eq!(
            line,
            r#"{"v":1,"type":"error","code":"line_too_long","message":"request line longer than 65536 bytes"}"#
        );
        let back: ResponseEnvelope = serde_json::from_str(&line).expect("parses");
        assert_eq!(back, response);
    }

    #[test]
    fn a_cancel_answer_names_the_typed_id() {
        let line = r#"{"v":1,"type":"cancelled","session_id":"s-42"}"#;
        let answer: ResponseEnvelope = serde_json::from_str(line).expect("parses");
        assert_eq!(
            answer.response,
            Response::Cancelled {
                session_id: SessionId::from_u64(42).expect("not zero")
            }
        );
        assert_eq!(serde_json::to_string(&answer).expect("serializes"), line);
        let bad = r#"{"v":1,"type":"cancelled","session_id":"42"}"#;
        let error = serde_json::from_str::<ResponseEnvelope>(bad).expect_err("not an id");
        assert!(
            error.to_string().contains("\"42\" is not a session id"),
            "{error}"
        );
    }
}
