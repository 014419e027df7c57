//! `openrtc logs --follow` as a real process, like `tail -F`: records appended, a record
//! written in two pieces, the file rotated (renamed and created anew) and truncated; every
//! matching record must arrive exactly once. Each step waits for the output it expects, with a
//! deadline; SIGTERM then ends the command with status 0.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::{arg, session_record};
use crate::binary::openrtc;

/// How long a record may take to come out: generous, for busy CI machines.
const PATIENCE: Duration = Duration::from_secs(30);

/// The command under test and the lines it prints, as they come.
struct Following {
    child: Child,
    lines: Receiver<String>,
}

impl Following {
    fn start(runtime_dir: &Path, args: &[&str]) -> Self {
        let mut child = openrtc(runtime_dir)
            .arg("logs")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openrtc logs --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for exactly these lines, in order.
    #[track_caller]
    fn expect(&self, expected: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        for want in expected {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(timeout) {
                Ok(line) => assert_eq!(&line, want),
                Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {want}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the output ended before {want}"),
            }
        }
    }

    /// Sends SIGTERM; returns the exit status code, the lines printed after the last
    /// [`Self::expect`], and standard error.
    fn terminate(mut self) -> (Option<i32>, Vec<String>, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for openrtc") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "openrtc did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
        }
        (status.code(), rest, stderr)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends text to a file.
fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open for appending");
    file.write_all(text.as_bytes()).expect("append");
}

#[test]
fn follow_sees_growth_rotation_and_truncation_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("worker.jsonl");
    let record = |message: &str| session_record(1, message, "");
    let other = |message: &str| session_record(2, message, "");

    let existing = record("existing");
    std::fs::write(&path, format!("{}\n{}\n", other("not me"), existing)).expect("write");
    let follow = Following::start(
        dir.path(),
        &[arg(&path), "--follow", "--json", "--session", "s-1"],
    );
    follow.expect(&[&existing]);

    // Growth, with a record of another session in between.
    let grown = [record("grown 1"), record("grown 2")];
    append(
        &path,
        &format!("{}\n{}\n{}\n", grown[0], other("skip"), grown[1]),
    );
    follow.expect(&[&grown[0], &grown[1]]);

    // A record written in two pieces comes out once, whole.
    let pieces = record("in two pieces");
    let (head, tail) = pieces.split_at(pieces.len() / 2);
    append(&path, head);
    append(&path, &format!("{tail}\n"));
    follow.expect(&[&pieces]);

    // Rotation: the last record of the old file, written just before it is renamed, then the
    // new file's first record.
    let before_rotation = record("last of the old file");
    append(&path, &format!("{before_rotation}\n"));
    std::fs::rename(&path, dir.path().join("worker.jsonl.1")).expect("rotate");
    let after_rotation = record("first of the new file");
    append(&path, &format!("{}\n{after_rotation}\n", other("skip")));
    follow.expect(&[&before_rotation, &after_rotation]);

    // Grow the new file well past what will be written after the truncation, so the
    // truncation shows as a smaller size whenever the command looks.
    let padding: String = (0..50)
        .map(|index| other(&format!("pad {index}")) + "\n")
        .collect();
    let marker = record("read up to here");
    append(&path, &format!("{padding}{marker}\n"));
    follow.expect(&[&marker]);
    let after_truncation = record("after the truncation");
    std::fs::write(&path, format!("{after_truncation}\n")).expect("truncate and write");
    follow.expect(&[&after_truncation]);

    let (code, rest, stderr) = follow.terminate();
    assert_eq!(code, Some(0), "SIGTERM after matches: {stderr}");
    assert_eq!(rest, Vec::<String>::new(), "nothing twice");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
