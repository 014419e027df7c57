//! The introspection socket: privacy, the protocol, and bad clients that must not hurt.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use openrtc::proto::{ErrorCode, Response, ResponseEnvelope};
use openrtc::{AgentPool, JobRequest, Session, agent_fn};

use crate::support::{Client, RunningPool, TestPool as _, wait_for};

/// A pool of `ticking` sessions (a 20 ms frame loop until cancelled), served at `dir/w.sock`.
fn ticking_pool(dir: &tempfile::TempDir, sessions: usize) -> (RunningPool, PathBuf) {
    let path = dir.path().join("w.sock");
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent(
                "ticking",
                agent_fn(|session: Session| async move {
                    let mut frames = tokio::time::interval(Duration::from_millis(20));
                    loop {
                        tokio::select! {
                            _ = frames.tick() => {}
                            () = session.cancelled() => return Ok(()),
                        }
                    }
                }),
            )
            .worker_name("sockettest")
            .worker_threads(2)
            .socket_path(&path),
    );
    for index in 0..sessions {
        pool.handle()
            .launch(JobRequest::new().tenant(["acme", "globex"][index % 2]))
            .expect("room");
    }
    wait_for("the socket", || path.exists().then_some(()));
    (pool, path)
}

#[track_caller]
fn check_error(response: &Response, expected: ErrorCode, mentions: &str) {
    match response {
        Response::Error { code, message } => {
            assert_eq!(*code, expected, "{message}");
            assert!(
                message.contains(mentions),
                "{message:?} should mention {mentions:?}"
            );
        }
        other => panic!("expected a {expected:?} error, got {other:?}"),
    }
}

#[track_caller]
fn sessions_in(response: Response) -> usize {
    match response {
        Response::Snapshot { snapshot } => snapshot.sessions.len(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn the_socket_is_private_and_serves_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, path) = ticking_pool(&dir, 3);
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut client = Client::connect(&path);
    match client.ask(r#"{"v":1,"op":"snapshot"}"#) {
        Response::Snapshot { snapshot } => {
            assert_eq!(snapshot.version, openrtc::proto::SNAPSHOT_VERSION);
            assert_eq!(snapshot.worker.name, "sockettest");
            assert_eq!(snapshot.worker.pid, std::process::id());
            assert_eq!(snapshot.worker.active_sessions, 3);
            let tenants: Vec<&str> = snapshot
                .sessions
                .iter()
                .map(|row| row.tenant.as_str())
                .collect();
            assert_eq!(tenants, ["acme", "globex", "acme"]);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    // The connection stays open for more requests.
    assert_eq!(sessions_in(client.ask(r#"{"v":1,"op":"snapshot"}"#)), 3);
    drop(pool);
}

#[test]
fn bad_requests_get_clear_errors_and_the_connection_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pool, path) = ticking_pool(&dir, 2);
    let mut client = Client::connect(&path);
    check_error(
        &client.ask("hello?"),
        ErrorCode::BadRequest,
        "not a request",
    );
    check_error(
        &client.ask(r#"{"v":1,"op":"reboot"}"#),
        ErrorCode::BadRequest,
        "reboot",
    );
    check_error(
        &client.ask(r#"{"v":9,"op":"snapshot"}"#),
        ErrorCode::UnsupportedVersion,
        "9",
    );
    let not_utf8 = client.ask_raw(b"\xff\xfe{\"v\":1}\n").expect("an answer");
    check_error(&not_utf8.response, ErrorCode::InvalidUtf8, "UTF-8");
    check_error(
        &client.ask(r#"{"v":1,"op":"cancel","session_id":"s-999"}"#),
        ErrorCode::NotFound,
        "s-999",
    );
    assert_eq!(sessions_in(client.ask(r#"{"v":1,"op":"snapshot"}"#)), 2);
}

#[test]
fn an_overlong_line_is_refused_and_closed_without_hurting_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pool, path) = ticking_pool(&dir, 2);
    let mut flooder = Client::connect(&path);
    let mut line = vec![b'x'; openrtc::proto::MAX_REQUEST_BYTES + 10];
    line.push(b'\n');
    let refused = flooder.ask_raw(&line).expect("an answer before closing");
    check_error(&refused.response, ErrorCode::LineTooLong, "65536");
    let mut rest = Vec::new();
    let _ = flooder.reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the worker closes the connection after refusing"
    );
    let mut other = Client::connect(&path);
    assert_eq!(sessions_in(other.ask(r#"{"v":1,"op":"snapshot"}"#)), 2);
}

#[test]
fn silent_clients_and_crowds_do_not_stop_the_worker_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, path) = ticking_pool(&dir, 4);
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    let mut half_line = UnixStream::connect(&path).expect("connect");
    half_line.write_all(br#"{"v":1,"op":"snap"#).expect("write");
    let mut client = Client::connect(&path);
    assert_eq!(sessions_in(client.ask(r#"{"v":1,"op":"snapshot"}"#)), 4);

    // Three hundred clients at once: each gets a snapshot or a clear "too many clients".
    let polls_before: u64 = pool
        .snapshot()
        .sessions
        .iter()
        .map(|row| row.poll_count)
        .sum();
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..300)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::connect(&path);
                    client.ask(r#"{"v":1,"op":"snapshot"}"#)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().expect("client thread"))
            .collect()
    });
    let served = answers
        .iter()
        .filter(|answer| matches!(answer, Response::Snapshot { .. }))
        .count();
    let refused = answers
        .iter()
        .filter(|answer| {
            matches!(
                answer,
                Response::Error {
                    code: ErrorCode::TooManyClients,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        served + refused,
        300,
        "every client got a snapshot or a clear refusal"
    );
    assert!(served > 0);
    // The sessions kept running meanwhile, and the worker still answers.
    wait_for("the sessions to keep polling", || {
        let polls: u64 = pool
            .snapshot()
            .sessions
            .iter()
            .map(|row| row.poll_count)
            .sum();
        (polls > polls_before).then_some(())
    });
    let mut after = Client::connect(&path);
    assert_eq!(sessions_in(after.ask(r#"{"v":1,"op":"snapshot"}"#)), 4);
    drop(silent);
}

#[test]
fn cancel_over_the_socket_takes_a_unique_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, path) = ticking_pool(&dir, 12);
    let mut client = Client::connect(&path);
    // s-1 is an exact id even though s-10, s-11 and s-12 start with it too.
    match client.ask(r#"{"v":1,"op":"cancel","session_id":"s-1"}"#) {
        Response::Cancelled { session_id } => assert_eq!(session_id.to_string(), "s-1"),
        other => panic!("expected a cancel, got {other:?}"),
    }
    match client.ask(r#"{"v":1,"op":"cancel","session_id":"s-12"}"#) {
        Response::Cancelled { session_id } => assert_eq!(session_id.to_string(), "s-12"),
        other => panic!("expected a cancel, got {other:?}"),
    }
    check_error(
        &client.ask(r#"{"v":1,"op":"cancel","session_id":"s-"}"#),
        ErrorCode::Ambiguous,
        "give more of the id",
    );
    let ended = pool.wait_ended("s-1".parse().expect("a session id"));
    assert_eq!(ended.outcome.kind(), "cancelled");
    assert_eq!(
        ended.outcome,
        openrtc::proto::SessionOutcome::Cancelled {
            reason: openrtc::CancelReason::Operator
        }
    );
}

#[test]
fn a_client_of_another_user_is_refused() {
    if std::fs::metadata("/proc/self")
        .ok()
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta))
        != Some(0)
    {
        // Connecting as another user needs root to switch users; CI runs as root.
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pool, path) = ticking_pool(&dir, 1);
    // Open the door wide on purpose: only the peer-credential check stands in the way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(b'{\"v\":1,\"op\":\"snapshot\"}\\n')\n\
        print(s.makefile().readline(), end='')\n";
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(&path)
        .output()
        .expect("setpriv (util-linux) and /usr/bin/python3 are installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: ResponseEnvelope =
        serde_json::from_slice(&output.stdout).expect("the worker answers valid JSON");
    check_error(
        &answer.response,
        ErrorCode::PermissionDenied,
        "peer uid 65534",
    );
}
