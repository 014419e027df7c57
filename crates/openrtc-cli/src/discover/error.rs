//! Why finding or asking workers failed, each reason its own variant, and the one place
//! that turns each into the operator's message and the command's exit status.
//!
//! The messages are complete sentences on their own (a cause's text is part of its
//! message), so each is printed with `Display` alone.

use std::io;
use std::path::PathBuf;

use openrtc_proto::{ErrorCode, PROTOCOL_VERSION, SNAPSHOT_VERSION};

use super::{MAX_RESPONSE_BYTES, QUERY_TIMEOUT, Target};
use crate::Exit;
use crate::top::format::clean_text;

/// Why one worker could not be asked, or its answer could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Nothing listens on the socket (the connection is refused, or the file is gone): it is
    /// left over from a worker that died. Surveys skip these silently.
    #[error("no worker is listening ({0})")]
    NotListening(#[source] io::Error),
    /// The socket may not be connected to by this user.
    #[error("permission denied: {0}")]
    PermissionDenied(#[source] io::Error),
    /// Connecting failed for another reason.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The worker took the request or gave its answer no faster than [`QUERY_TIMEOUT`].
    #[error("no answer within {}s", QUERY_TIMEOUT.as_secs())]
    Timeout(#[source] io::Error),
    /// The request could not be written.
    #[error("cannot send the request: {0}")]
    Send(#[source] io::Error),
    /// The answer could not be read.
    #[error("cannot read the answer: {0}")]
    Receive(#[source] io::Error),
    /// The worker closed the connection without answering.
    #[error("the worker closed the connection without answering")]
    ClosedWithoutAnswer,
    /// The answer line is longer than [`MAX_RESPONSE_BYTES`].
    #[error("the answer is longer than {} MiB", MAX_RESPONSE_BYTES / (1024 * 1024))]
    AnswerTooLong,
    /// The answer is not a response this CLI understands.
    #[error("malformed answer ({error}): {excerpt:?}")]
    Malformed {
        /// Why it does not parse.
        #[source]
        error: serde_json::Error,
        /// The start of the answer, for the message.
        excerpt: String,
    },
    /// The worker speaks another protocol version.
    #[error(
        "the worker speaks protocol version {worker_version}, this openrtc speaks version \
         {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion {
        /// The version in the worker's answer.
        worker_version: u32,
    },
}

impl QueryError {
    /// Whether this means "no worker here" rather than "a worker is here but misbehaves".
    #[must_use]
    pub fn is_not_listening(&self) -> bool {
        matches!(self, Self::NotListening(_))
    }

    /// The error of a failed connect: refused or missing is "nobody listens", a denied
    /// permission is its own reason.
    pub(crate) fn from_connect(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => Self::NotListening(error),
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(error),
            _ => Self::Connect(error),
        }
    }

    /// The error of a failed write (`sending`) or read: a timeout is its own reason.
    pub(crate) fn from_transfer(error: io::Error, sending: bool) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Timeout(error),
            _ if sending => Self::Send(error),
            _ => Self::Receive(error),
        }
    }
}

/// A worker that is there but gave no snapshot: its socket and why.
#[derive(Debug, thiserror::Error)]
#[error("{} worker {}: {failure}", failure.lead(), socket.display())]
pub struct WorkerError {
    /// The worker's socket.
    pub socket: PathBuf,
    /// Why it gave no snapshot.
    #[source]
    pub failure: WorkerFailure,
}

/// Why a worker that is there gave no snapshot (the live view shows this beside the worker).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerFailure {
    /// The worker answered with an error (too many clients, another user, …).
    #[error("{}", clean_text(message, usize::MAX))]
    Refused {
        /// The worker's error code.
        code: ErrorCode,
        /// The worker's message.
        message: String,
    },
    /// The worker could not be asked, or its answer could not be read.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The worker's snapshot has a layout this CLI does not read.
    #[error(
        "its snapshot has layout version {version}, this openrtc reads version {SNAPSHOT_VERSION}"
    )]
    SnapshotVersion {
        /// The snapshot's layout version.
        version: u32,
    },
    /// The worker answered a snapshot request with something else.
    #[error("unexpected answer to a snapshot request: {answer}")]
    UnexpectedAnswer {
        /// The answer, as debug text.
        answer: String,
    },
}

impl WorkerFailure {
    /// How a message about this failure starts: the worker said no, or could not be read.
    fn lead(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "error from",
            Self::Query(_) | Self::SnapshotVersion { .. } | Self::UnexpectedAnswer { .. } => {
                "cannot read"
            }
        }
    }
}

/// Why a command that finds and asks workers has nothing (or not everything) to show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// No worker answered, and none failed either.
    #[error("{}", target.no_worker_hint(worker_name.as_deref()))]
    NoWorker {
        /// Where the workers were looked for.
        target: Target,
        /// The `--worker` filter, if any.
        worker_name: Option<String>,
    },
    /// The socket directory exists but cannot be read.
    #[error("cannot read the socket directory {}: {error}", dir.display())]
    SocketDirectory {
        /// The directory.
        dir: PathBuf,
        /// Why it cannot be read.
        #[source]
        error: io::Error,
    },
    /// The user id, which names the socket directory, cannot be read from `/proc/self`.
    #[error("cannot determine the current user id from /proc/self: {0}")]
    UserId(#[source] io::Error),
    /// A worker is there but gave no snapshot.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

impl DiscoverError {
    /// The exit status this ends the command with (see [`crate::cli::EXIT_STATUS_HELP`]).
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Self::NoWorker { .. } => Exit::NoWorker,
            Self::SocketDirectory { .. } | Self::UserId(_) | Self::Worker(_) => Exit::Failure,
        }
    }
}

/// The message and exit status of a command that failed with `error`: a [`DiscoverError`]'s
/// own, anything else (a terminal that cannot be drawn on, say) printed with its causes and
/// exit status 2.
#[must_use]
pub fn failure_report(error: &anyhow::Error) -> (String, Exit) {
    match error.downcast_ref::<DiscoverError>() {
        Some(discover_error) => (discover_error.to_string(), discover_error.exit()),
        None => (format!("{error:#}"), Exit::Failure),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn worker_error(socket: &Path, failure: WorkerFailure) -> DiscoverError {
        WorkerError {
            socket: socket.to_owned(),
            failure,
        }
        .into()
    }

    fn io_error(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "os says no")
    }

    #[test]
    fn connect_errors_are_sorted_by_kind() {
        let refused = QueryError::from_connect(io_error(io::ErrorKind::ConnectionRefused));
        assert!(refused.is_not_listening());
        assert!(QueryError::from_connect(io_error(io::ErrorKind::NotFound)).is_not_listening());
        let denied = QueryError::from_connect(io_error(io::ErrorKind::PermissionDenied));
        assert!(matches!(denied, QueryError::PermissionDenied(_)));
        assert_eq!(denied.to_string(), "permission denied: os says no");
        assert!(!denied.is_not_listening());
        assert!(matches!(
            QueryError::from_connect(io_error(io::ErrorKind::AddrInUse)),
            QueryError::Connect(_)
        ));
    }

    #[test]
    fn timeouts_are_their_own_reason_both_ways() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            for sending in [false, true] {
                let error = QueryError::from_transfer(io_error(kind), sending);
                assert!(matches!(error, QueryError::Timeout(_)), "{error:?}");
                assert_eq!(error.to_string(), "no answer within 5s");
            }
        }
        assert!(matches!(
            QueryError::from_transfer(io_error(io::ErrorKind::BrokenPipe), true),
            QueryError::Send(_)
        ));
        assert!(matches!(
            QueryError::from_transfer(io_error(io::ErrorKind::ConnectionReset), false),
            QueryError::Receive(_)
        ));
    }

    #[test]
    fn each_failure_has_its_exit_status_and_message() {
        let socket = PathBuf::from("/run/user/1/openrtc/demo-7.sock");
        let cases = [
            (
                DiscoverError::NoWorker {
                    target: Target::Directory(PathBuf::from("/run/user/1/openrtc")),
                    worker_name: None,
                },
                1,
                "no running openrtc worker found in /run/user/1/openrtc".to_owned(),
            ),
            (
                DiscoverError::NoWorker {
                    target: Target::Socket(socket.clone()),
                    worker_name: Some("edge".into()),
                },
                1,
                format!(
                    "no running openrtc worker named edge found at {}",
                    socket.display()
                ),
            ),
            (
                DiscoverError::SocketDirectory {
                    dir: PathBuf::from("/run/user/1/openrtc"),
                    error: io_error(io::ErrorKind::PermissionDenied),
                },
                2,
                "cannot read the socket directory /run/user/1/openrtc: os says no".to_owned(),
            ),
            (
                DiscoverError::UserId(io_error(io::ErrorKind::NotFound)),
                2,
                "cannot determine the current user id from /proc/self: os says no".to_owned(),
            ),
            (
                worker_error(
                    &socket,
                    WorkerFailure::Refused {
                        code: ErrorCode::TooManyClients,
                        message: "too many clients;\ttry again".into(),
                    },
                ),
                2,
                format!(
                    "error from worker {}: too many clients;\\ttry again",
                    socket.display()
                ),
            ),
            (
                worker_error(
                    &socket,
                    QueryError::from_connect(io_error(io::ErrorKind::PermissionDenied)).into(),
                ),
                2,
                format!(
                    "cannot read worker {}: permission denied: os says no",
                    socket.display()
                ),
            ),
            (
                worker_error(
                    &socket,
                    QueryError::UnsupportedVersion { worker_version: 9 }.into(),
                ),
                2,
                format!(
                    "cannot read worker {}: the worker speaks protocol version 9, this openrtc \
                     speaks version {PROTOCOL_VERSION}",
                    socket.display()
                ),
            ),
            (
                worker_error(&socket, WorkerFailure::SnapshotVersion { version: 9 }),
                2,
                format!(
                    "cannot read worker {}: its snapshot has layout version 9, this openrtc \
                     reads version {SNAPSHOT_VERSION}",
                    socket.display()
                ),
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!(error.exit().code(), code, "{error:?}");
            assert_eq!(error.to_string(), message);
            let (reported, exit) = failure_report(&anyhow::Error::new(error));
            assert_eq!((reported, exit.code()), (message, code));
        }
    }

    #[test]
    fn other_failures_exit_2_with_their_causes() {
        let error = anyhow::Error::new(io_error(io::ErrorKind::Other)).context("cannot draw");
        let (message, exit) = failure_report(&error);
        assert_eq!(message, "cannot draw: os says no");
        assert_eq!(exit, Exit::Failure);
    }

    #[test]
    fn a_failure_s_reason_leaves_out_the_socket() {
        let failure: WorkerFailure = QueryError::ClosedWithoutAnswer.into();
        assert_eq!(
            failure.to_string(),
            "the worker closed the connection without answering"
        );
        let error = WorkerError {
            socket: PathBuf::from("/run/demo-1.sock"),
            failure,
        };
        assert_eq!(
            error.to_string(),
            "cannot read worker /run/demo-1.sock: the worker closed the connection without \
             answering"
        );
    }
}
