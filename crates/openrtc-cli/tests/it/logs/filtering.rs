//! Each filter of `openrtc logs` keeps exactly the records it should, checked against the
//! generated log's own description of every line; `--json` passes lines through byte for byte.

use std::path::PathBuf;

use tempfile::TempDir;

use super::{Line, ROUNDS, arg, generate, joined, logs, write_lines};
use crate::binary::{stderr, stdout};

/// A directory with the generated log in it.
fn generated_log() -> (TempDir, PathBuf, Vec<Line>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("worker.jsonl");
    let lines = generate();
    write_lines(&path, &lines);
    (dir, path, lines)
}

/// Runs `openrtc logs FILE --json` with `filters` and checks the output is exactly the lines
/// `expected` picks, in order; returns how many there are.
#[track_caller]
fn assert_json_picks(filters: &[&str], expected: impl Fn(&Line) -> bool) -> usize {
    let (dir, path, lines) = generated_log();
    let mut args = vec![arg(&path), "--json"];
    args.extend_from_slice(filters);
    let output = logs(dir.path(), &args);
    let picked: Vec<&Line> = lines.iter().filter(|line| expected(line)).collect();
    assert!(!picked.is_empty(), "{filters:?} must pick something");
    assert!(
        picked.len() < lines.len(),
        "{filters:?} must leave something"
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    assert!(
        output.stdout == joined(picked.iter().copied()).into_bytes(),
        "{filters:?}: got\n{}",
        stdout(&output)
    );
    picked.len()
}

#[test]
fn a_session_is_matched_exactly_not_by_prefix() {
    let count = assert_json_picks(&["--session", "s-7"], |line| line.session == Some(7));
    assert_eq!(count, ROUNDS as usize, "s-7's records, not s-70..s-79's");

    // The same records as readable lines, with s-7 in the session column.
    let (dir, path, _) = generated_log();
    let output = logs(dir.path(), &[arg(&path), "--session", "s-7"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), ROUNDS as usize, "{text}");
    for line in text.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[3], "s-7", "{line}");
    }
    assert!(text.contains("café ☕"), "escapes decoded: {text}");
}

#[test]
fn a_session_prefix_matches_nothing() {
    let (dir, path, _) = generated_log();
    let output = logs(dir.path(), &[arg(&path), "--session", "s-"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
}

#[test]
fn tenants_and_agents_are_matched_exactly() {
    assert_json_picks(&["--tenant", "t-1"], |line| {
        line.tenant.as_deref() == Some("t-1")
    });
    assert_json_picks(&["--agent", "support"], |line| {
        line.agent.as_deref() == Some("support")
    });
    assert_json_picks(&["--tenant", "t-10", "--agent", "support-eu"], |line| {
        line.tenant.as_deref() == Some("t-10") && line.agent.as_deref() == Some("support-eu")
    });
}

#[test]
fn the_level_is_a_minimum_in_any_case() {
    assert_json_picks(&["--level", "warn"], |line| {
        matches!(line.level, "WARN" | "ERROR")
    });
    assert_json_picks(&["--level", "ERROR"], |line| line.level == "ERROR");
}

#[test]
fn since_keeps_the_recent_records() {
    assert_json_picks(&["--since", "30m"], |line| line.minutes_ago < 30);
    assert_json_picks(&["--since", "90m", "--session", "s-7"], |line| {
        line.minutes_ago < 90 && line.session == Some(7)
    });
}

#[test]
fn grep_finds_text_in_messages_and_field_values() {
    assert_json_picks(&["--grep", "timed out"], |line| {
        line.message.contains("timed out")
    });
    assert_json_picks(&["--grep", "cpu-bound"], |line| {
        line.text.contains("cpu-bound")
    });
    // Text, not sessions: s-70..s-79 hold "s-7" too, and so does the worker's record naming
    // s-7 in a field of its own.
    assert_json_picks(&["--grep", "s-7"], |line| {
        line.session
            .is_some_and(|session| session == 7 || (70..=79).contains(&session))
            || line.text.contains(r#""victim":"s-7""#)
    });
}

#[test]
fn the_readable_form_shows_the_columns_and_other_fields() {
    let (dir, path, _) = generated_log();
    let output = logs(
        dir.path(),
        &[arg(&path), "--grep", "refused a session", "--level", "warn"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let columns: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        columns[2..],
        [
            "WARN",
            "-",
            "-",
            "refused",
            "a",
            "session",
            "event=session_refused",
            "victim=s-7"
        ],
        "{text}"
    );
    assert!(
        columns[0].len() == 10 && columns[1].len() == 12,
        "date and time to the millisecond: {text}"
    );
}
