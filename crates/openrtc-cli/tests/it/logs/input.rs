//! What `openrtc logs` reads and how it copes: gzip, several files in order, bad and cut
//! lines, empty and missing files, no match, and a reader that goes away (`| head -1`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{arg, logs, session_record};
use crate::binary::{openrtc, stderr, stdout};

/// Writes `text` gzip-compressed.
fn write_gzip(path: &std::path::Path, text: &str) {
    let mut encoder = GzEncoder::new(File::create(path).expect("create"), Compression::fast());
    encoder.write_all(text.as_bytes()).expect("compress");
    encoder.finish().expect("finish the gzip file");
}

#[test]
fn gzip_and_plain_files_are_read_in_the_order_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let oldest = dir.path().join("worker.jsonl.2.gz");
    let older = dir.path().join("worker.jsonl.1");
    let current = dir.path().join("worker.jsonl");
    let records: Vec<String> = (0..6)
        .map(|index| session_record(5, &format!("record {index}"), ""))
        .collect();
    write_gzip(&oldest, &format!("{}\n{}\n", records[0], records[1]));
    // The second file is compressed too, though its name does not say so.
    write_gzip(&older, &format!("{}\n{}\n", records[2], records[3]));
    std::fs::write(&current, format!("{}\n{}\n", records[4], records[5])).expect("write");

    let output = logs(
        dir.path(),
        &[arg(&oldest), arg(&older), arg(&current), "--json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    assert_eq!(stdout(&output), records.join("\n") + "\n");

    let reversed = logs(dir.path(), &[arg(&current), arg(&oldest), "--json"]);
    let expected: Vec<&str> = [4, 5, 0, 1].map(|index| records[index].as_str()).to_vec();
    assert_eq!(stdout(&reversed), expected.join("\n") + "\n");
}

#[test]
fn bad_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("worker.jsonl");
    let good = [
        session_record(1, "first", ""),
        session_record(1, "second", ""),
    ];
    let text = [
        good[0].as_str(),
        "not json at all",
        "[1,2,3]",
        r#"{"level":"INFO","message":"no ts"}"#,
        "",
        good[1].as_str(),
        r#"{"ts":"2026-12-06T23:51:13Z","level":"INFO","mess"#,
    ]
    .join("\n");
    std::fs::write(&path, text).expect("write");
    let output = logs(dir.path(), &[arg(&path), "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}\n{}\n", good[0], good[1]));
    assert_eq!(
        stderr(&output),
        "openrtc logs: skipped 4 bad lines\n",
        "three bad lines and the cut last one; the blank line is no record"
    );

    // With a pre-check, the lines that plainly are not records are still counted; the one
    // shaped like a record that cannot be s-1's (no ts) is passed over unparsed.
    let session = logs(dir.path(), &[arg(&path), "--session", "s-1", "--json"]);
    assert_eq!(stdout(&session), stdout(&output));
    assert_eq!(stderr(&session), "openrtc logs: skipped 3 bad lines\n");
}

#[test]
fn an_empty_file_has_no_match() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.jsonl");
    std::fs::write(&path, "").expect("write");
    let output = logs(dir.path(), &[arg(&path)]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        (stdout(&output), stderr(&output)),
        (String::new(), String::new())
    );
}

#[test]
fn no_match_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("worker.jsonl");
    std::fs::write(&path, session_record(1, "hello", "") + "\n").expect("write");
    let output = logs(dir.path(), &[arg(&path), "--session", "s-2"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        (stdout(&output), stderr(&output)),
        (String::new(), String::new())
    );
}

#[test]
fn a_missing_file_is_named_and_exits_2_when_nothing_could_be_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("gone.jsonl");
    let output = logs(dir.path(), &[arg(&missing)]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "openrtc logs: cannot open {}: ",
            missing.display()
        )) && message.contains("No such file")
            && !message.contains("panicked"),
        "{message}"
    );

    // Beside a readable file: named, skipped, and the exit status is the matches'.
    let present = dir.path().join("worker.jsonl");
    std::fs::write(&present, session_record(1, "hello", "") + "\n").expect("write");
    let output = logs(dir.path(), &[arg(&missing), arg(&present), "--json"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        std::fs::read_to_string(&present).expect("read")
    );
    assert!(
        stderr(&output).contains("gone.jsonl"),
        "{}",
        stderr(&output)
    );
    let no_match = logs(dir.path(), &[arg(&missing), arg(&present), "--agent", "x"]);
    assert_eq!(no_match.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["--since", "yesterday"][..],
        &["--level", "loud"],
        &["f.jsonl", "--socket", "/s.sock"],
    ] {
        let output = logs(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&output), "");
    }
}

#[test]
fn a_reader_that_goes_away_ends_it_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("worker.jsonl");
    // Far more output than a pipe holds, so the command is still writing when the pipe closes.
    let text: String = (0..20_000)
        .map(|index| session_record(index % 50, &format!("record {index}"), "") + "\n")
        .collect();
    std::fs::write(&path, &text).expect("write");
    let mut child = openrtc(dir.path())
        .args(["logs", arg(&path)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openrtc");
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("one line");
    assert!(first.contains("record 0"), "{first}");
    drop(reader);
    let output = child.wait_with_output().expect("wait for openrtc");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "no panic, no message");
}

#[test]
fn logs_help_lists_the_options_and_exit_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = logs(dir.path(), &["--help"]);
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&output));
}
