//! A record as one readable line (the default output of `openrtc logs`). Pure: no I/O.
//!
//! ```text
//! 2026-12-06 23:51:13.123 WARN  s-12 support slow poll tenant=acme event=slow_session stall_ms=312
//! 2026-12-06 23:51:14.000 INFO  -    -       draining the worker event=drain_start
//! ```
//!
//! The columns: the full UTC date and time to the millisecond (always with the date, so a line
//! read alone, or a file spanning midnight, is never ambiguous), the level, the session id
//! (`-` for the worker's own records), the agent (`-` without one) and the message; then
//! `key=value` for `tenant`, `event` and the record's other fields in the line's order. Left
//! out: the fields already shown, and `target`, `worker` and `pid`, which are the same on most
//! lines of one worker's file (`--json` keeps everything). Text is made safe for a terminal:
//! control characters are escaped, and values with spaces, quotes or `=` are quoted.

use std::fmt::Write as _;

use serde_json::value::RawValue;

use super::record::{Record, Text};
use crate::top::format::clean_text;

/// Fields never shown as `key=value`: shown in a column, or the same on most lines.
const LEFT_OUT: [&str; 3] = ["target", "worker", "pid"];

/// The width the session column is padded to (`s-12345` fits).
const SESSION_COLUMN_CHARS: usize = 7;

/// Formats a record as one line, without its line end.
#[must_use]
pub fn format_record(record: &Record<'_>) -> String {
    let mut line = String::with_capacity(128);
    let ts = record.ts;
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} {:<5} {:<SESSION_COLUMN_CHARS$} {} {}",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.millisecond(),
        record.level.as_str(),
        column(record.session_id.as_ref()),
        column(record.agent.as_ref()),
        clean_text(record.message.as_str(), usize::MAX),
    );
    let named = [("tenant", &record.tenant), ("event", &record.event)];
    for (key, value) in named {
        if let Some(value) = value {
            let _ = write!(line, " {key}={}", string_value(value.as_str()));
        }
    }
    for (key, value) in &record.fields {
        if !LEFT_OUT.contains(&key.as_str()) {
            let _ = write!(
                line,
                " {}={}",
                clean_text(key.as_str(), usize::MAX),
                raw_value(value)
            );
        }
    }
    line
}

/// A column's text: the value made safe, or `-`.
fn column(value: Option<&Text<'_>>) -> String {
    value.map_or_else(
        || "-".to_owned(),
        |value| clean_text(value.as_str(), usize::MAX),
    )
}

/// A raw JSON value for `key=value`: strings as [`string_value`], anything else as written.
fn raw_value(value: &RawValue) -> String {
    let raw = value.get();
    if raw.starts_with('"') {
        match serde_json::from_str::<Text<'_>>(raw) {
            Ok(text) => string_value(text.as_str()),
            Err(_) => clean_text(raw, usize::MAX),
        }
    } else {
        clean_text(raw, usize::MAX)
    }
}

/// A string for `key=value`: bare when it is one plain word, else quoted as JSON.
fn string_value(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|character| character.is_whitespace() || matches!(character, '"' | '=' | '\\'));
    if plain {
        clean_text(text, usize::MAX)
    } else {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""));
        clean_text(&quoted, usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_line;

    fn formatted(line: &str) -> String {
        format_record(&parse_line(line.as_bytes()).expect("a record"))
    }

    #[test]
    fn a_session_record_shows_its_columns_then_its_fields() {
        assert_eq!(
            formatted(
                r#"{"ts":"2026-12-06T23:51:13.123456Z","level":"WARN","target":"openrtc::watchdog","message":"slow poll","worker":"demo","pid":42,"session_id":"s-12","tenant":"acme","agent":"support","event":"slow_session","stall_ms":312,"class":"cpu","from_flight_recorder":true}"#
            ),
            "2026-12-06 23:51:13.123 WARN  s-12    support slow poll tenant=acme \
             event=slow_session stall_ms=312 class=cpu from_flight_recorder=true"
        );
    }

    #[test]
    fn a_worker_record_has_dashes_for_session_and_agent() {
        assert_eq!(
            formatted(
                r#"{"ts":"2026-12-07T00:00:00Z","level":"INFO","target":"openrtc::pool","message":"draining","worker":"demo","pid":42,"event":"drain_start"}"#
            ),
            "2026-12-07 00:00:00.000 INFO  -       - draining event=drain_start"
        );
    }

    #[test]
    fn values_are_quoted_when_needed_and_made_safe() {
        assert_eq!(
            formatted(
                r#"{"ts":"2026-12-07T00:00:00Z","level":"ERROR","message":"bad\nthing \u001b[31m","reason":"two words","eq":"a=b","empty":"","list":[1,2],"esc":"\u001b"}"#
            ),
            "2026-12-07 00:00:00.000 ERROR -       - bad\\nthing \\u{1b}[31m \
             reason=\"two words\" eq=\"a=b\" empty=\"\" list=[1,2] esc=\\u{1b}"
        );
        assert_eq!(
            formatted(r#"{"ts":"2026-12-07T00:00:00Z","level":"INFO","message":""}"#),
            "2026-12-07 00:00:00.000 INFO  -       - -",
            "an empty message shows as -"
        );
    }
}
