//! `openrtc top` on a real demo worker whose tenants run their sessions in processes: the
//! isolated rows with their pid and the operating system's figures, in JSON and in the text
//! table's ISO column, phone calls whose audio goes both ways through the worker to the
//! process, and a cancel over the socket that ends the process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use openrtc_proto::{PoolSnapshot, Response, ResponseEnvelope, SessionOutcome};

use super::{DemoWorker, wait_for_snapshots};
use crate::binary::{run, stdout};

#[test]
fn top_lists_isolated_sessions_with_their_process_and_cancels_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tenants.toml");
    std::fs::write(&config, "[defaults]\nisolation = \"process\"\n").expect("write the config");
    let socket = dir.path().join("iso.sock");
    let config_arg = config.to_str().expect("UTF-8 path");
    let worker = DemoWorker::start_with_args(
        dir.path(),
        "iso",
        "echo",
        2,
        Some(&socket),
        "off",
        &["--tenant-config", config_arg],
    );
    let socket_arg = socket.to_str().expect("UTF-8 path");
    let isolated = |all: &[PoolSnapshot]| {
        all.len() == 1
            && all[0].sessions.len() == 2
            && all[0].sessions.iter().all(|row| {
                row.process
                    .as_ref()
                    .is_some_and(|process| process.pid != 0 && process.rss_bytes > 0)
                    // The demo's callers dial the media WebSocket: the echo agent, in its
                    // process, hears the caller and answers through the worker.
                    && row.media.as_ref().is_some_and(|media| {
                        media.frames_in_count > 0 && media.frames_out_count > 0
                    })
            })
    };
    let snapshots = wait_for_snapshots(
        dir.path(),
        &["--socket", socket_arg],
        "two isolated calls answering",
        isolated,
    );
    let snapshot = &snapshots[0];
    let mut pids = Vec::new();
    for row in &snapshot.sessions {
        let process = row.process.as_ref().expect("checked above");
        assert_ne!(process.pid, worker.pid(), "a process of its own");
        assert_eq!(process.why, "config");
        assert!(
            std::path::Path::new(&format!("/proc/{}", process.pid)).exists(),
            "a live process"
        );
        assert!(process.start_us > 0, "{process:?}");
        pids.push(process.pid);
    }
    assert_ne!(pids[0], pids[1], "one process per session");

    // The text table says `proc` in its ISO column for both rows.
    let output = run(dir.path(), &["top", "--once", "--socket", socket_arg]);
    let shown = stdout(&output);
    assert!(
        shown
            .lines()
            .any(|line| line.split_whitespace().any(|cell| cell == "ISO")),
        "{shown}"
    );
    let rows: Vec<&str> = shown
        .lines()
        .filter(|line| line.starts_with("s-"))
        .collect();
    assert_eq!(rows.len(), 2, "{shown}");
    assert!(
        rows.iter()
            .all(|row| row.split_whitespace().nth(3) == Some("proc")),
        "{shown}"
    );

    // A cancel from the socket (what `top`'s cancel key sends) ends the session and its
    // process; the demo's callers then start another.
    let target = snapshot.sessions[0].id;
    let mut stream = UnixStream::connect(&socket).expect("connect");
    writeln!(stream, r#"{{"v":1,"op":"cancel","session_id":"{target}"}}"#).expect("send");
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .expect("an answer");
    let envelope: ResponseEnvelope = serde_json::from_str(&answer).expect("a response");
    assert!(
        matches!(envelope.response, Response::Cancelled { session_id } if session_id == target),
        "{answer}"
    );
    let ended = wait_for_snapshots(
        dir.path(),
        &["--socket", socket_arg],
        "the cancelled session's end",
        |all| all.len() == 1 && all[0].recently_ended.iter().any(|ended| ended.id == target),
    );
    let outcome = &ended[0]
        .recently_ended
        .iter()
        .find(|ended| ended.id == target)
        .expect("found above")
        .outcome;
    assert!(
        matches!(outcome, SessionOutcome::Cancelled { .. }),
        "{outcome:?}"
    );
    // Its process is gone, reaped by the worker.
    let deadline = Instant::now() + super::PATIENCE;
    while std::path::Path::new(&format!("/proc/{}", pids[0])).exists() {
        assert!(
            Instant::now() < deadline,
            "process {} outlived its session",
            pids[0]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
