//! The introspection socket: one private Unix socket per worker, newline-delimited JSON.
//!
//! The server runs on its own thread with its own single-threaded Tokio runtime, never on the
//! pool's worker threads, so it answers while every worker thread is blocked. It trusts no
//! client: the peer's uid must be ours, lines are capped at [`MAX_REQUEST_BYTES`], idle
//! clients are dropped, and at most [`MAX_CLIENTS`] are served at once.
//!
//! A client that subscribes (`{"v":1,"op":"subscribe"}`) is answered `subscribed`, then gets
//! every line of the lifecycle event stream until it closes the connection; it holds its
//! place among the clients meanwhile, and is never dropped for being idle.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::StreamExt;
use openrtc_proto::{
    ErrorCode, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Request, RequestEnvelope, Response,
    ResponseEnvelope,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Framed};

use crate::RunError;
use crate::pool::{FindError, PoolShared};

/// Clients served at once; more are told [`ErrorCode::TooManyClients`] and closed.
pub(crate) const MAX_CLIENTS: usize = 128;

/// A client that sends no complete request for this long is dropped.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a refused client may go on sending before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// A client that does not take its answer within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default socket path of a worker named `worker_name`, in the per-user directory.
pub(crate) fn default_socket_path(worker_name: &str) -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    openrtc_proto::socket_dir(xdg.as_deref(), crate::os::current_uid()).join(
        openrtc_proto::socket_file_name(worker_name, std::process::id()),
    )
}

/// A running socket server.
#[derive(Debug)]
pub(crate) struct SocketServer {
    path: PathBuf,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl SocketServer {
    /// Prepares the directory, binds the socket (mode 0600) and starts serving.
    pub(crate) fn start(shared: Arc<PoolShared>, path: &Path) -> Result<Self, RunError> {
        let socket_error = |source| RunError::Socket {
            path: path.to_owned(),
            source,
        };
        if is_default_location(path) {
            prepare_private_dir(path.parent().unwrap_or(Path::new("/"))).map_err(socket_error)?;
        }
        remove_stale_socket(path).map_err(socket_error)?;
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(socket_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_error)?;
        listener.set_nonblocking(true).map_err(socket_error)?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("{}-introspect", shared.config.worker_name))
            .spawn(move || serve(shared, listener, stopped))
            .map_err(|source| RunError::Thread {
                name: "introspection",
                source,
            })?;
        tracing::info!(path = %path.display(), "introspection socket ready");
        Ok(Self {
            path: path.to_owned(),
            stop,
            thread,
        })
    }

    /// Stops serving and removes the socket file.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the introspection thread panicked");
        }
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(%error, path = %self.path.display(), "cannot remove the socket file");
        }
    }
}

/// Whether `path` sits in the per-user default directory (which the runtime owns and checks).
fn is_default_location(path: &Path) -> bool {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    path.parent()
        == Some(&openrtc_proto::socket_dir(
            xdg.as_deref(),
            crate::os::current_uid(),
        ))
}

/// Creates the per-user socket directory with mode 0700, or checks the existing one: it must
/// be a real directory (not a symlink) owned by us; a looser mode is tightened to 0700.
pub(crate) fn prepare_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let metadata = std::fs::symlink_metadata(dir)?;
    if metadata.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "refusing the socket directory {}: it is a symlink",
            dir.display()
        )));
    }
    if !metadata.is_dir() {
        return Err(io::Error::other(format!(
            "refusing the socket directory {}: it is not a directory",
            dir.display()
        )));
    }
    let uid = crate::os::current_uid();
    if metadata.uid() != uid {
        return Err(io::Error::other(format!(
            "refusing the socket directory {}: it belongs to uid {}, not {uid}",
            dir.display(),
            metadata.uid()
        )));
    }
    if metadata.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    remove_dead_workers_sockets(dir);
    Ok(())
}

/// Removes sockets in `dir` named after a pid that no longer runs (`<name>-<pid>.sock`).
fn remove_dead_workers_sockets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((_, pid)) = name
            .to_str()
            .and_then(openrtc_proto::parse_socket_file_name)
        else {
            continue;
        };
        let is_socket = entry.file_type().is_ok_and(|kind| kind.is_socket());
        if is_socket && !crate::os::process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Makes room to bind `path`: a socket nobody listens on is removed; a live one is an error.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        Ok(metadata) if metadata.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another worker is serving this socket",
                )),
                Err(_) => std::fs::remove_file(path),
            }
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        )),
    }
}

fn serve(
    shared: Arc<PoolShared>,
    listener: std::os::unix::net::UnixListener,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the introspection runtime: no socket served");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match UnixListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot serve the introspection socket");
                return;
            }
        };
        let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
        let own_uid = crate::os::current_uid();
        tokio::pin!(stopped);
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::debug!(%error, "accept failed");
                        // Out of descriptors, say: give the other clients a moment.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let permit = Arc::clone(&clients).try_acquire_owned();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let refusal = match (&permit, stream.peer_cred()) {
                    (Err(_), _) => Some((
                        ErrorCode::TooManyClients,
                        format!("worker serves {MAX_CLIENTS} clients already; try again"),
                    )),
                    (_, Err(error)) => Some((
                        ErrorCode::PermissionDenied,
                        format!("cannot read the peer's credentials: {error}"),
                    )),
                    (_, Ok(peer)) if peer.uid() != own_uid => Some((
                        ErrorCode::PermissionDenied,
                        format!("peer uid {} is not the worker's uid {own_uid}", peer.uid()),
                    )),
                    _ => None,
                };
                match refusal {
                    Some((code, message)) => refuse(stream, code, message).await,
                    None => serve_client(&shared, stream).await,
                }
                drop(permit);
            });
        }
    });
}

async fn refuse(mut stream: UnixStream, code: ErrorCode, message: String) {
    if send(&mut stream, Response::Error { code, message })
        .await
        .is_err()
    {
        return;
    }
    // Close gently: stop writing, then swallow what the client is still sending for a moment,
    // so its write does not fail before it reads the refusal.
    let _ = stream.shutdown().await;
    let mut discard = vec![0; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut total = 0;
        while total < MAX_REQUEST_BYTES {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(read) => total += read,
            }
        }
    })
    .await;
}

/// Newline-delimited frames of raw bytes: UTF-8 is checked per line, so a bad line is
/// answered and the connection goes on (a codec error would end the stream).
fn line_codec() -> AnyDelimiterCodec {
    AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_REQUEST_BYTES)
}

async fn send(stream: &mut UnixStream, response: Response) -> io::Result<()> {
    let envelope = ResponseEnvelope {
        v: PROTOCOL_VERSION,
        response,
    };
    let mut line = serde_json::to_vec(&envelope).map_err(io::Error::other)?;
    line.push(b'\n');
    write_line(stream, &line).await
}

/// Writes one answer line, giving up on a client that does not read in time. Answers go
/// straight to the stream: the line codec only reads requests.
async fn write_line(stream: &mut UnixStream, line: &[u8]) -> io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client does not read",
        )),
    }
}

async fn serve_client(shared: &PoolShared, stream: UnixStream) {
    let mut framed = Framed::new(stream, line_codec());
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, framed.next()).await {
            Err(_) | Ok(None) => return,
            Ok(Some(line)) => line,
        };
        let (response, keep_open) = match line {
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(line) => (answer(shared, line), true),
                Err(_) => (
                    error(
                        ErrorCode::InvalidUtf8,
                        "request line is not valid UTF-8".to_owned(),
                    ),
                    true,
                ),
            },
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => (
                error(
                    ErrorCode::LineTooLong,
                    format!("request line longer than {MAX_REQUEST_BYTES} bytes"),
                ),
                false,
            ),
            Err(AnyDelimiterCodecError::Io(_)) => return,
        };
        let sent = match response {
            Answer::Reply(response) => send(framed.get_mut(), response).await,
            Answer::Snapshot => send_snapshot(shared, framed.get_mut()).await,
            Answer::Subscribe => {
                stream_events(shared, framed.into_inner()).await;
                return;
            }
        };
        if sent.is_err() || !keep_open {
            return;
        }
    }
}

/// What to send back for one request line.
enum Answer {
    /// A small response, serialized as is.
    Reply(Response),
    /// The snapshot, written straight from the session cells by [`send_snapshot`].
    Snapshot,
    /// The event stream, from now until the client goes ([`stream_events`]).
    Subscribe,
}

fn error(code: ErrorCode, message: String) -> Answer {
    Answer::Reply(Response::Error { code, message })
}

/// Writes a snapshot answer, serialized straight from the session cells.
async fn send_snapshot(shared: &PoolShared, stream: &mut UnixStream) -> io::Result<()> {
    let mut line = Vec::with_capacity(64 * 1024);
    crate::introspect::write_snapshot_response(shared, &mut line).map_err(io::Error::other)?;
    line.push(b'\n');
    write_line(stream, &line).await
}

/// Serves a subscriber: `subscribed`, then each line of the event stream as the events
/// thread hands it over, until the client closes the connection (what it sends meanwhile is
/// ignored), does not read for [`WRITE_TIMEOUT`], or the worker stops.
async fn stream_events(shared: &PoolShared, mut stream: UnixStream) {
    let Some(mut lines) = shared.events.subscribe() else {
        let _ = send(
            &mut stream,
            Response::Error {
                code: ErrorCode::Unavailable,
                message: "the worker is stopping: its event stream has ended".to_owned(),
            },
        )
        .await;
        return;
    };
    let subscribed = Response::Subscribed {
        schema_version: openrtc_proto::EVENT_STREAM_SCHEMA_VERSION,
    };
    if send(&mut stream, subscribed).await.is_err() {
        return;
    }
    let (mut input, mut output) = stream.split();
    let mut discard = vec![0; 1024];
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else {
                    return;
                };
                let written =
                    tokio::time::timeout(WRITE_TIMEOUT, output.write_all(&line)).await;
                if !matches!(written, Ok(Ok(()))) {
                    return;
                }
            }
            read = input.read(&mut discard) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}

/// The answer to one request line.
fn answer(shared: &PoolShared, line: &str) -> Answer {
    let envelope: RequestEnvelope = match serde_json::from_str(line) {
        Ok(envelope) => envelope,
        Err(parse_error) => {
            return error(
                ErrorCode::BadRequest,
                format!(
                    "not a request ({parse_error}); expected e.g. {{\"v\":{PROTOCOL_VERSION},\"op\":\"snapshot\"}}"
                ),
            );
        }
    };
    if envelope.v != PROTOCOL_VERSION {
        return error(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this worker speaks {PROTOCOL_VERSION}",
                envelope.v
            ),
        );
    }
    match envelope.request {
        Request::Snapshot => Answer::Snapshot,
        Request::Subscribe => Answer::Subscribe,
        Request::Cancel { session_id } => match shared.find_session(&session_id) {
            Ok(id) => match shared.stop_session(
                id,
                crate::session::StopRequest::Cancel(crate::CancelReason::Operator),
            ) {
                Ok(()) => Answer::Reply(Response::Cancelled { session_id: id }),
                // It ended between the lookup and the cancel.
                Err(crate::LookupError::NotFound { .. }) => error(
                    ErrorCode::NotFound,
                    format!("no live session matches {session_id:?}"),
                ),
            },
            Err(FindError::NotFound) => error(
                ErrorCode::NotFound,
                format!("no live session matches {session_id:?}"),
            ),
            Err(FindError::Ambiguous { count }) => error(
                ErrorCode::Ambiguous,
                format!("{count} live sessions start with {session_id:?}; give more of the id"),
            ),
        },
        _ => error(ErrorCode::BadRequest, "unsupported request".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_directory_is_created_tightened_or_refused() {
        let parent = tempfile::tempdir().expect("tempdir");
        let fresh = parent.path().join("fresh");
        prepare_private_dir(&fresh).expect("created");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("exists")
                .permissions()
                .mode()
        };
        assert_eq!(mode(&fresh) & 0o777, 0o700);

        let loose = parent.path().join("loose");
        std::fs::create_dir(&loose).expect("mkdir");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare_private_dir(&loose).expect("tightened");
        assert_eq!(mode(&loose) & 0o777, 0o700);

        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).expect("symlink");
        let error = prepare_private_dir(&link).expect_err("a symlink is refused");
        assert!(error.to_string().contains("it is a symlink"), "{error}");

        let file = parent.path().join("file");
        std::fs::write(&file, b"").expect("write");
        let error = prepare_private_dir(&file).expect_err("a file is refused");
        assert!(error.to_string().contains("not a directory"), "{error}");
    }

    #[test]
    fn sockets_of_dead_workers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dead = dir.path().join("gone-4294967.sock");
        let live_path = dir.path().join(format!("here-{}.sock", std::process::id()));
        let stale = std::os::unix::net::UnixListener::bind(&dead).expect("bind");
        drop(stale);
        let _live = std::os::unix::net::UnixListener::bind(&live_path).expect("bind");
        prepare_private_dir(dir.path()).expect("our own directory");
        assert!(!dead.exists(), "a dead worker's socket is removed");
        assert!(live_path.exists(), "a live worker's socket is kept");
        let error = remove_stale_socket(&live_path).expect_err("a live socket is in use");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }
}
