//! `openrtc logs` without FILE finds the log file through the workers' sockets: stand-in
//! workers answer with a snapshot naming their `log_file` (the runtime's side is tested in the
//! runtime crate).

use std::os::unix::net::UnixListener;

use super::{arg, logs, session_record};
use crate::binary::{snapshot_line, socket_dir, stderr, stdout};
use crate::fixtures::idle_worker;
use crate::stand_in_worker::StandInWorker;

/// A worker's snapshot answer, with its log file.
fn answer(name: &str, pid: u32, log_file: Option<&str>) -> String {
    let mut snapshot = idle_worker(name, pid);
    snapshot.worker.log_file = log_file.map(str::to_owned);
    snapshot_line(snapshot)
}

#[test]
fn the_one_worker_s_log_file_is_read() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let log = runtime_dir.path().join("demo.jsonl");
    let record = session_record(4, "from the worker's file", "");
    std::fs::write(&log, format!("{record}\n")).expect("write");
    let sockets = socket_dir(runtime_dir.path());
    let demo = StandInWorker::spawn(
        &sockets.join("demo-10.sock"),
        answer("demo", 10, Some(arg(&log))),
        1,
        None,
    );
    let edge = StandInWorker::spawn(
        &sockets.join("edge-11.sock"),
        answer("edge", 11, None),
        1,
        None,
    );
    let output = logs(runtime_dir.path(), &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{record}\n"));
    assert_eq!(stderr(&output), "");
    demo.join();
    edge.join();

    // The same worker through --socket.
    let socket = runtime_dir.path().join("elsewhere.sock");
    let worker = StandInWorker::spawn(&socket, answer("demo", 10, Some(arg(&log))), 1, None);
    let output = logs(runtime_dir.path(), &["--socket", arg(&socket), "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{record}\n"));
    worker.join();
}

#[test]
fn several_workers_with_log_files_must_be_chosen_between() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let sockets = socket_dir(runtime_dir.path());
    let demo_log = runtime_dir.path().join("demo.jsonl");
    let edge_log = runtime_dir.path().join("edge.jsonl");
    std::fs::write(&edge_log, session_record(9, "edge's", "") + "\n").expect("write");
    let demo = StandInWorker::spawn(
        &sockets.join("demo-10.sock"),
        answer("demo", 10, Some(arg(&demo_log))),
        1,
        None,
    );
    let edge = StandInWorker::spawn(
        &sockets.join("edge-11.sock"),
        answer("edge", 11, Some(arg(&edge_log))),
        2,
        None,
    );
    let output = logs(runtime_dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    assert!(
        message.starts_with("openrtc logs: several workers write log files")
            && message.contains("--worker NAME")
            && message.contains(&format!(
                "worker demo pid 10 (socket {}",
                sockets.join("demo-10.sock").display()
            ))
            && message.contains(&format!(": {}", demo_log.display()))
            && message.contains(&format!(": {}", edge_log.display())),
        "{message}"
    );
    demo.join();

    // --worker picks one; only its socket is asked.
    let output = logs(runtime_dir.path(), &["--worker", "edge"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("edge's"), "{}", stdout(&output));
    edge.join();
}

#[test]
fn a_worker_without_a_log_file_says_how_to_get_one() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    let socket = runtime_dir.path().join("demo-10.sock");
    let worker = StandInWorker::spawn(&socket, answer("demo", 10, None), 1, None);
    let output = logs(runtime_dir.path(), &["--socket", arg(&socket)]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "openrtc logs: worker demo pid 10 writes no log file: start the worker with \
         `.log_file(path)` or OPENRTC_LOG_FILE=path, or pass the log FILE to read\n"
    );
    worker.join();
}

#[test]
fn no_worker_at_all_exits_2_asking_for_a_file() {
    let runtime_dir = tempfile::tempdir().expect("temp dir");
    // A socket left over from a dead worker is skipped, as by `top`.
    drop(UnixListener::bind(socket_dir(runtime_dir.path()).join("dead-9.sock")).expect("bind"));
    let output = logs(runtime_dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "openrtc logs: no running openrtc worker found in {}/openrtc; pass the log FILE to \
             read instead\n",
            runtime_dir.path().display()
        )
    );
}
