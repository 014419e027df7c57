//! What sessions logged, as `top` shows it: the records an ended session's flight recorder
//! kept (its last records before it failed, panicked, was killed or stalled), the command that
//! reads the rest from the worker's log file, and the worker's log file state for the headers.
//! Pure functions returning text, in [`Piece`]s where the live view styles them by [`Tone`].

use std::fmt::Write as _;
use std::path::Path;

use openrtc_proto::{EndedSessionSnapshot, LogRecordSnapshot, SessionId, WorkerSnapshot};

use super::format::{clean_text, format_bytes_human};
use super::tenants::{Piece, Tone};

/// How many of an ended session's records `--once` prints at most (the newest).
pub const ONCE_RECORDS: usize = 10;

/// The longest a record's message gets before it is cut with `…`.
const MESSAGE_MAX_CHARS: usize = 500;

/// The longest a log file path gets in a header before it is cut with `…`.
const LOG_PATH_MAX_CHARS: usize = 64;

/// The longest a log file name gets in the live view's header.
const LOG_NAME_MAX_CHARS: usize = 32;

/// The longest a path or worker name in a suggested command gets (longer ones are left as
/// they are: a cut path would not work).
const COMMAND_WORD_MAX_CHARS: usize = 4_096;

/// The width of a record's time and level columns, with the spaces after them: the message
/// starts this many characters into a record line.
pub const RECORD_PREFIX_CHARS: usize = 19;

/// One record as text: `22:13:19.500`, `ERROR`, the message, and its tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordText {
    /// When it was emitted, UTC, to the millisecond: `22:13:19.500`.
    pub time: String,
    /// The level, padded to five characters: `WARN `.
    pub level: String,
    /// The message and its fields, made safe for a terminal.
    pub message: String,
    /// How much it matters: errors alert, warnings warn, debug and trace are dim.
    pub tone: Tone,
}

impl RecordText {
    /// The record as one line: `22:13:19.500 ERROR agent failed error=…`.
    #[must_use]
    pub fn line(&self) -> String {
        format!("{} {} {}", self.time, self.level, self.message)
    }
}

/// A record as text.
#[must_use]
pub fn record_text(record: &LogRecordSnapshot) -> RecordText {
    let level = clean_text(record.level.trim(), 5);
    RecordText {
        time: format_record_time(record.at_unix_us),
        level: format!("{level:<5}"),
        message: clean_text(&record.message, MESSAGE_MAX_CHARS),
        tone: level_tone(&record.level),
    }
}

/// The time of day of a Unix time in microseconds, in UTC, to the millisecond:
/// `22:13:19.500`.
#[must_use]
pub fn format_record_time(at_unix_us: u64) -> String {
    let milliseconds = at_unix_us / 1_000;
    let seconds_of_day = (milliseconds / 1_000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds_of_day / 3_600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60,
        milliseconds % 1_000
    )
}

/// The tone of a level: `ERROR` alerts, `WARN` warns, `DEBUG` and `TRACE` are dim, the rest
/// (`INFO`, or anything unknown) is plain.
#[must_use]
pub fn level_tone(level: &str) -> Tone {
    match level.trim().to_ascii_uppercase().as_str() {
        "ERROR" => Tone::Alert,
        "WARN" | "WARNING" => Tone::Warning,
        "DEBUG" | "TRACE" => Tone::Dim,
        _ => Tone::Plain,
    }
}

/// The command that prints everything a session logged: `openrtc logs <log_file> --session
/// s-9`. A relative log file path is relative to the worker's working directory, not the
/// reader's, so then the command asks the worker instead: `openrtc logs --worker demo
/// --session s-9`. `None` when the worker writes no log file.
#[must_use]
pub fn logs_command(worker: &WorkerSnapshot, session_id: SessionId) -> Option<String> {
    let log_file = worker.log_file.as_deref()?;
    let source = if Path::new(log_file).is_absolute() {
        shell_word(log_file)
    } else {
        format!("--worker {}", shell_word(&worker.name))
    };
    Some(format!("openrtc logs {source} --session {session_id}"))
}

/// A word as a shell reads it back: as it is when it holds only characters no shell treats
/// specially, else in single quotes. Control characters are escaped first, as everywhere in
/// `top`.
#[must_use]
pub fn shell_word(text: &str) -> String {
    let cleaned = clean_text(text, COMMAND_WORD_MAX_CHARS);
    let plain = cleaned.chars().all(|character| {
        character.is_alphanumeric()
            || matches!(
                character,
                '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',' | '='
            )
    });
    if plain {
        cleaned
    } else {
        format!("'{}'", cleaned.replace('\'', r"'\''"))
    }
}

/// The worker's log file for `--once`: `log: /var/log/openrtc/demo.jsonl (48213 records
/// written, 12 dropped: the writer fell behind)`; `None` without a log file.
#[must_use]
pub fn log_file_piece(worker: &WorkerSnapshot) -> Option<Piece> {
    let path = worker.log_file.as_deref()?;
    let mut text = format!(
        "log: {} ({} records written",
        clean_text(path, LOG_PATH_MAX_CHARS),
        worker.log_records_written_count
    );
    let tone = if worker.log_records_dropped_count > 0 {
        let _ = write!(
            text,
            ", {} dropped: the writer fell behind",
            worker.log_records_dropped_count
        );
        Tone::Warning
    } else {
        Tone::Dim
    };
    text.push(')');
    Some(Piece::new(text, tone))
}

/// The worker's log file for the live view's header, as a full and a shorter form:
/// `log: demo.jsonl (12 dropped)` and `log: 12 dropped` (a warning), or `log: demo.jsonl`
/// and no shorter form (dim) when nothing was dropped; `None` without a log file.
#[must_use]
pub fn log_file_brief(worker: &WorkerSnapshot) -> Option<(Piece, Option<Piece>)> {
    let path = worker.log_file.as_deref()?;
    let name = Path::new(path).file_name().map_or_else(
        || path.to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let name = clean_text(&name, LOG_NAME_MAX_CHARS);
    let dropped = worker.log_records_dropped_count;
    Some(if dropped > 0 {
        (
            Piece::new(format!("log: {name} ({dropped} dropped)"), Tone::Warning),
            Some(Piece::new(format!("log: {dropped} dropped"), Tone::Warning)),
        )
    } else {
        (Piece::new(format!("log: {name}"), Tone::Dim), None)
    })
}

/// The bytes the live sessions' flight recorders hold: `flight recorders: 38.5 KiB`; `None`
/// when they hold nothing.
#[must_use]
pub fn recorders_piece(worker: &WorkerSnapshot) -> Option<Piece> {
    (worker.flight_recorder_bytes > 0).then(|| {
        Piece::new(
            format!(
                "flight recorders: {}",
                format_bytes_human(worker.flight_recorder_bytes)
            ),
            Tone::Dim,
        )
    })
}

/// The `--once` line of the worker's logging: its log file and what its flight recorders
/// hold, with a newline; empty when it has neither.
#[must_use]
pub fn once_log_line(worker: &WorkerSnapshot) -> String {
    let pieces: Vec<String> = [log_file_piece(worker), recorders_piece(worker)]
        .into_iter()
        .flatten()
        .map(|piece| piece.text)
        .collect();
    if pieces.is_empty() {
        String::new()
    } else {
        format!("{}\n", pieces.join(" · "))
    }
}

/// The title over an ended session's records: `last 4 records before it ended (UTC):`, or
/// with some left out, `last 4 of 57 records kept before it ended (UTC):`.
#[must_use]
pub fn records_title(shown: usize, kept: usize) -> String {
    if shown >= kept {
        let noun = if kept == 1 { "record" } else { "records" };
        format!("last {kept} {noun} before it ended (UTC):")
    } else {
        format!("last {shown} of {kept} records kept before it ended (UTC):")
    }
}

/// The line pointing at the rest of what a session logged: `the rest: openrtc logs …`;
/// `None` when the worker writes no log file.
#[must_use]
pub fn logs_hint(worker: &WorkerSnapshot, session_id: SessionId) -> Option<String> {
    logs_command(worker, session_id).map(|command| format!("the rest: {command}"))
}

/// The `--once` section of one ended session's flight recorder, after the recently ended
/// table: a title naming the session and how it ended, its newest [`ONCE_RECORDS`] records
/// indented, oldest first, and the command that reads the rest. Empty for a session without
/// records.
#[must_use]
pub fn once_section(ended: &EndedSessionSnapshot, worker: &WorkerSnapshot) -> String {
    let records = &ended.flight_recorder;
    if records.is_empty() {
        return String::new();
    }
    let shown = records.len().min(ONCE_RECORDS);
    let mut section = format!("{}: {}", ended.id, records_title(shown, records.len()));
    section.push('\n');
    for record in &records[records.len() - shown..] {
        let _ = writeln!(section, "  {}", record_text(record).line());
    }
    if let Some(hint) = logs_hint(worker, ended.id) {
        let _ = writeln!(section, "  {hint}");
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_unix_us: u64, level: &str, message: &str) -> LogRecordSnapshot {
        let mut record = LogRecordSnapshot::default();
        record.at_unix_us = at_unix_us;
        record.level = level.to_owned();
        record.message = message.to_owned();
        record
    }

    fn worker(log_file: Option<&str>) -> WorkerSnapshot {
        let mut worker = WorkerSnapshot::default();
        worker.name = "demo".into();
        worker.log_file = log_file.map(str::to_owned);
        worker
    }

    #[test]
    fn record_times_are_utc_to_the_millisecond() {
        // 2023-11-14 22:13:20 UTC, plus 500.999 ms.
        assert_eq!(format_record_time(1_700_000_000_500_999), "22:13:20.500");
        assert_eq!(format_record_time(0), "00:00:00.000");
        assert_eq!(format_record_time(86_399_999_999), "23:59:59.999");
    }

    #[test]
    fn levels_set_the_tone() {
        assert_eq!(level_tone("ERROR"), Tone::Alert);
        assert_eq!(level_tone("warn"), Tone::Warning);
        assert_eq!(level_tone("INFO"), Tone::Plain);
        assert_eq!(level_tone("DEBUG"), Tone::Dim);
        assert_eq!(level_tone("TRACE"), Tone::Dim);
        assert_eq!(level_tone("NOTICE"), Tone::Plain);
    }

    #[test]
    fn a_record_line_is_safe_for_a_terminal() {
        let text = record_text(&record(
            1_700_000_000_000_000,
            "WARN",
            "bad frame\n\u{1b}[2J size=12",
        ));
        assert_eq!(
            text.line(),
            "22:13:20.000 WARN  bad frame\\n\\u{1b}[2J size=12"
        );
        assert_eq!(text.tone, Tone::Warning);
        assert_eq!(text.line().find("bad"), Some(RECORD_PREFIX_CHARS));
    }

    #[test]
    fn the_logs_command_reads_an_absolute_file_or_asks_the_worker() {
        let id: SessionId = "s-9".parse().expect("a session id");
        assert_eq!(logs_command(&worker(None), id), None);
        assert_eq!(
            logs_command(&worker(Some("/var/log/openrtc/demo.jsonl")), id).as_deref(),
            Some("openrtc logs /var/log/openrtc/demo.jsonl --session s-9")
        );
        assert_eq!(
            logs_command(&worker(Some("/var/log/my logs/it's.jsonl")), id).as_deref(),
            Some(r"openrtc logs '/var/log/my logs/it'\''s.jsonl' --session s-9")
        );
        assert_eq!(
            logs_command(&worker(Some("openrtc-demo.jsonl")), id).as_deref(),
            Some("openrtc logs --worker demo --session s-9")
        );
    }

    #[test]
    fn the_log_file_state_warns_only_about_dropped_records() {
        let mut logging = worker(Some("/var/log/openrtc/demo.jsonl"));
        logging.log_records_written_count = 48_213;
        assert_eq!(
            log_file_brief(&logging),
            Some((Piece::new("log: demo.jsonl", Tone::Dim), None))
        );
        assert_eq!(
            log_file_piece(&logging),
            Some(Piece::new(
                "log: /var/log/openrtc/demo.jsonl (48213 records written)",
                Tone::Dim
            ))
        );
        logging.log_records_dropped_count = 12;
        assert_eq!(
            log_file_brief(&logging),
            Some((
                Piece::new("log: demo.jsonl (12 dropped)", Tone::Warning),
                Some(Piece::new("log: 12 dropped", Tone::Warning))
            ))
        );
        logging.flight_recorder_bytes = 39_424;
        assert_eq!(
            once_log_line(&logging),
            "log: /var/log/openrtc/demo.jsonl (48213 records written, 12 dropped: the writer \
             fell behind) · flight recorders: 38.5 KiB\n"
        );
        assert_eq!(once_log_line(&worker(None)), "");
        assert_eq!(log_file_brief(&worker(None)), None);
    }

    #[test]
    fn the_once_section_keeps_the_newest_records() {
        let mut ended = EndedSessionSnapshot::new(
            "s-9".parse().expect("a session id"),
            "echo".into(),
            "acme".into(),
            openrtc_proto::SessionOutcome::Failed {
                error: "peer hung up".into(),
            },
        );
        let logging = worker(Some("/var/log/demo.jsonl"));
        assert_eq!(once_section(&ended, &logging), "");
        ended.flight_recorder = (0..12)
            .map(|index| record(index * 1_000, "INFO", &format!("step {index}")))
            .collect();
        let section = once_section(&ended, &logging);
        let lines: Vec<&str> = section.lines().collect();
        assert_eq!(
            lines[0],
            "s-9: last 10 of 12 records kept before it ended (UTC):"
        );
        assert_eq!(lines[1], "  00:00:00.002 INFO  step 2");
        assert_eq!(lines[10], "  00:00:00.011 INFO  step 11");
        assert_eq!(
            lines[11],
            "  the rest: openrtc logs /var/log/demo.jsonl --session s-9"
        );
        assert_eq!(lines.len(), 12);
    }
}
