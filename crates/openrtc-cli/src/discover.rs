//! Finding workers and asking them: the socket directory and its sockets, one question to one
//! worker over its socket, [`mod@survey`] (every worker at once, used by `top --once`, the JSON
//! lines and the live view's connection thread alike), and the typed [`error`]s with their
//! messages and exit statuses.
//!
//! Everything here is blocking std I/O with timeouts: the CLI asks a handful of workers one
//! question each, so there is nothing to gain from an async runtime.

pub mod error;
pub mod survey;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openrtc_proto::{
    PROTOCOL_VERSION, PoolSnapshot, Request, RequestEnvelope, Response, ResponseEnvelope,
    SOCKET_SUFFIX,
};
use serde::Deserialize;

pub use error::{DiscoverError, QueryError, WorkerError, WorkerFailure, failure_report};
pub use survey::{
    PollOutcome, Survey, SurveyRound, Target, WorkerPoll, ask_for_snapshot, survey, survey_round,
    unix_now_ms,
};

/// How long the CLI waits for a worker to accept a request or to answer it.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest answer line the CLI reads; a worker with thousands of sessions stays far below.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The longest piece of a malformed answer quoted back in an error message, in characters.
const MALFORMED_EXCERPT_CHARS: usize = 80;

/// The uid this process runs as, read from the owner of `/proc/self` (no `unsafe` needed).
///
/// # Errors
///
/// Fails when `/proc` is not mounted.
pub fn current_uid() -> io::Result<u32> {
    fs::metadata("/proc/self").map(|metadata| metadata.uid())
}

/// The directory the workers of the current user put their sockets in: the same
/// [`openrtc_proto::socket_dir`] the workers compute, from `$XDG_RUNTIME_DIR` and the uid.
///
/// # Errors
///
/// Fails when the uid cannot be determined (see [`current_uid`]).
pub fn default_socket_dir() -> Result<PathBuf, DiscoverError> {
    let xdg_runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let uid = current_uid().map_err(DiscoverError::UserId)?;
    Ok(openrtc_proto::socket_dir(xdg_runtime_dir.as_deref(), uid))
}

/// Every `*.sock` socket file in `dir`, sorted by path. A missing directory has none.
///
/// Whether a worker still listens on each socket is not checked here: [`query`] finds out.
///
/// # Errors
///
/// Fails when the directory exists but cannot be read.
pub fn list_worker_sockets(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut sockets = Vec::new();
    for entry in entries {
        let entry = entry?;
        let is_socket_name = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.ends_with(SOCKET_SUFFIX));
        let is_socket_file = entry.file_type().is_ok_and(|kind| kind.is_socket());
        if is_socket_name && is_socket_file {
            sockets.push(entry.path());
        }
    }
    sockets.sort();
    Ok(sockets)
}

/// Whether a socket file is named like a socket of the worker called `worker_name`:
/// `<worker_name>-<pid>.sock` ([`openrtc_proto::socket_file_name`]).
#[must_use]
pub fn socket_belongs_to(socket: &Path, worker_name: &str) -> bool {
    socket
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(openrtc_proto::parse_socket_file_name)
        .is_some_and(|(name, _)| name == worker_name)
}

/// Sends one request to the worker listening at `socket_path` and reads its one-line answer,
/// then closes the connection.
///
/// A [`Response::Error`] is a successful query: the worker answered, and the caller decides
/// what the refusal means.
///
/// # Errors
///
/// See [`QueryError`]; [`QueryError::NotListening`] means there is no worker at that path.
pub fn query(socket_path: &Path, request: &Request) -> Result<Response, QueryError> {
    parse_answer(&exchange(socket_path, request)?)
}

/// Asks the worker listening at `socket_path` for its snapshot, like [`query`] with
/// [`Request::Snapshot`] but decoding the answer about twice as fast (see
/// [`parse_snapshot_answer`]): the live view does this at every refresh.
///
/// # Errors
///
/// As [`query`].
pub fn query_snapshot(socket_path: &Path) -> Result<Response, QueryError> {
    parse_snapshot_answer(&exchange(socket_path, &Request::Snapshot)?)
}

/// How much of an answer is read from the socket at a time.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Sends one request line and reads the answer line, raw.
fn exchange(socket_path: &Path, request: &Request) -> Result<Vec<u8>, QueryError> {
    let mut stream = UnixStream::connect(socket_path).map_err(QueryError::from_connect)?;
    stream
        .set_write_timeout(Some(QUERY_TIMEOUT))
        .map_err(QueryError::Connect)?;
    stream
        .set_read_timeout(Some(QUERY_TIMEOUT))
        .map_err(QueryError::Connect)?;

    let envelope = RequestEnvelope {
        v: PROTOCOL_VERSION,
        request: request.clone(),
    };
    let mut request_line = serde_json::to_string(&envelope)
        .map_err(|error| QueryError::Send(io::Error::other(error)))?;
    request_line.push('\n');
    stream
        .write_all(request_line.as_bytes())
        .map_err(|error| QueryError::from_transfer(error, true))?;

    let mut answer = Vec::new();
    BufReader::with_capacity(READ_BUFFER_BYTES, stream.take(MAX_RESPONSE_BYTES + 1))
        .read_until(b'\n', &mut answer)
        .map_err(|error| QueryError::from_transfer(error, false))?;
    Ok(answer)
}

/// A snapshot answer's fields, read straight into their types. The general envelope
/// ([`ResponseEnvelope`]) flattens an internally tagged enum, which makes serde buffer the
/// whole answer in an intermediate tree first: for a 10,000-session snapshot that doubles
/// the decoding time.
#[derive(Deserialize)]
struct SnapshotAnswer {
    /// The protocol version.
    v: u32,
    /// The answer type: `snapshot` for the fast path.
    #[serde(rename = "type")]
    kind: String,
    /// The snapshot, when the answer is one.
    #[serde(default)]
    snapshot: Option<PoolSnapshot>,
}

/// Parses an answer expected to be a snapshot; any other answer (an error, say) and any
/// answer that does not parse this way goes through [`parse_answer`], so the result is
/// always the same as [`parse_answer`]'s.
///
/// # Errors
///
/// As [`parse_answer`].
pub fn parse_snapshot_answer(answer: &[u8]) -> Result<Response, QueryError> {
    if answer.len() as u64 <= MAX_RESPONSE_BYTES {
        if let Ok(SnapshotAnswer {
            v: PROTOCOL_VERSION,
            kind,
            snapshot: Some(snapshot),
        }) = serde_json::from_slice::<SnapshotAnswer>(answer)
        {
            if kind == "snapshot" {
                return Ok(Response::Snapshot {
                    snapshot: Box::new(snapshot),
                });
            }
        }
    }
    parse_answer(answer)
}

/// Parses one answer line (with or without its newline) into the worker's response.
///
/// # Errors
///
/// Empty, oversized, malformed or wrong-version answers; see [`QueryError`].
pub fn parse_answer(answer: &[u8]) -> Result<Response, QueryError> {
    if answer.is_empty() {
        return Err(QueryError::ClosedWithoutAnswer);
    }
    if answer.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(QueryError::AnswerTooLong);
    }
    let envelope: ResponseEnvelope =
        serde_json::from_slice(answer).map_err(|error| QueryError::Malformed {
            error,
            excerpt: String::from_utf8_lossy(answer)
                .trim_end()
                .chars()
                .take(MALFORMED_EXCERPT_CHARS)
                .collect(),
        })?;
    // A worker that refuses our version says so in its own version's envelope: pass the
    // refusal through so its message reaches the operator.
    let is_refusal = matches!(envelope.response, Response::Error { .. });
    if envelope.v != PROTOCOL_VERSION && !is_refusal {
        return Err(QueryError::UnsupportedVersion {
            worker_version: envelope.v,
        });
    }
    Ok(envelope.response)
}

#[cfg(test)]
mod tests {
    use openrtc_proto::ErrorCode;

    use super::*;

    #[test]
    fn answers_are_parsed_and_checked() {
        let refusal = parse_answer(
            br#"{"v":1,"type":"error","code":"not_found","message":"no session s-9"}"#,
        )
        .expect("a refusal is a valid answer");
        assert_eq!(
            refusal,
            Response::Error {
                code: ErrorCode::NotFound,
                message: "no session s-9".into()
            }
        );
        assert!(matches!(
            parse_answer(b""),
            Err(QueryError::ClosedWithoutAnswer)
        ));
        let garbage = parse_answer(b"hello\n").expect_err("not JSON");
        assert!(
            garbage.to_string().contains("malformed answer")
                && garbage.to_string().contains("hello"),
            "{garbage}"
        );
        let future = parse_answer(br#"{"v":2,"type":"cancelled","session_id":"s-1"}"#)
            .expect_err("version 2 is not spoken");
        assert!(matches!(
            future,
            QueryError::UnsupportedVersion { worker_version: 2 }
        ));
    }

    #[test]
    fn the_fast_snapshot_parse_agrees_with_the_general_one() {
        let mut snapshot = PoolSnapshot::default();
        snapshot.version = openrtc_proto::SNAPSHOT_VERSION;
        snapshot.worker.name = "demo".into();
        snapshot
            .sessions
            .push(openrtc_proto::SessionSnapshot::default());
        let line = serde_json::to_vec(&ResponseEnvelope {
            v: PROTOCOL_VERSION,
            response: Response::Snapshot {
                snapshot: Box::new(snapshot.clone()),
            },
        })
        .expect("serializes");
        let fast = parse_snapshot_answer(&line).expect("a snapshot");
        assert_eq!(fast, parse_answer(&line).expect("a snapshot"));
        assert_eq!(
            fast,
            Response::Snapshot {
                snapshot: Box::new(snapshot)
            }
        );
        for other in [
            &br#"{"v":1,"type":"error","code":"not_found","message":"no session s-9"}"#[..],
            br#"{"v":2,"type":"snapshot","snapshot":{}}"#,
            br#"{"v":1,"type":"cancelled","session_id":"s-1"}"#,
            b"garbage",
            b"",
        ] {
            assert_eq!(
                format!("{:?}", parse_snapshot_answer(other)),
                format!("{:?}", parse_answer(other)),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_missing_socket_directory_has_no_sockets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("openrtc");
        assert_eq!(
            list_worker_sockets(&missing).expect("missing is empty"),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn only_socket_files_with_the_suffix_are_listed() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("plain-1.sock"), b"not a socket").expect("write file");
        let _other =
            std::os::unix::net::UnixListener::bind(dir.path().join("other.socket")).expect("bind");
        let _listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("demo-7.sock")).expect("bind");
        assert_eq!(
            list_worker_sockets(dir.path()).expect("readable"),
            vec![dir.path().join("demo-7.sock")]
        );
    }

    #[test]
    fn sockets_are_matched_to_worker_names_exactly() {
        let dir = Path::new("/run/user/1/openrtc");
        assert!(socket_belongs_to(&dir.join("demo-42.sock"), "demo"));
        assert!(socket_belongs_to(
            &dir.join("edge-eu.1-7.sock"),
            "edge-eu.1"
        ));
        assert!(!socket_belongs_to(&dir.join("demo-2-42.sock"), "demo"));
        assert!(!socket_belongs_to(&dir.join("demox-42.sock"), "demo"));
        assert!(!socket_belongs_to(&dir.join("demo-.sock"), "demo"));
        assert!(!socket_belongs_to(&dir.join("demo-42.socket"), "demo"));
        assert!(!socket_belongs_to(&dir.join("other-42.sock"), "demo"));
    }

    #[test]
    fn a_connection_refused_means_not_listening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dead-1.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let error = query(&path, &Request::Snapshot).expect_err("nobody listens");
        assert!(error.is_not_listening(), "{error:?}");
    }

    #[test]
    fn the_uid_is_readable() {
        let uid = current_uid().expect("/proc is mounted in tests");
        let own_file = tempfile::NamedTempFile::new().expect("temp file");
        assert_eq!(
            uid,
            fs::metadata(own_file.path()).expect("metadata").uid(),
            "a file this process creates is owned by its uid"
        );
    }
}
