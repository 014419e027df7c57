//! One line of a worker's JSONL log, parsed into a light record that borrows from the line:
//! the standard fields by name, every other field kept in the line's order as raw JSON. A line
//! that is not a record (not JSON, not an object, no `ts`, `level` or `message`, a `ts` that is
//! not RFC 3339, an unknown level) is a [`BadLine`]. Pure: no I/O.

use std::borrow::Cow;
use std::fmt;

use clap::ValueEnum;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A record's severity, least severe first (so `>=` means "at least as severe").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Level {
    /// The finest detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unusual that did not stop the work.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level a record's `level` text names, in any case (`WARN`, `warn`); `None` for
    /// anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Trace,
            Self::Debug,
            Self::Info,
            Self::Warn,
            Self::Error,
        ]
        .into_iter()
        .find(|level| level.as_str().eq_ignore_ascii_case(text))
    }

    /// The upper-case name the worker writes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

/// A JSON string, borrowed from the line when it has no escapes, else decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The decoded text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Takes a string, borrowing it when the input allows.
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// One log record, borrowing from its line.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// `ts`, as written.
    pub ts_text: Text<'a>,
    /// `ts`, parsed and in UTC.
    pub ts: OffsetDateTime,
    /// `level`, as written.
    pub level_text: Text<'a>,
    /// `level`, parsed.
    pub level: Level,
    /// `message` (may be empty).
    pub message: Text<'a>,
    /// `target`, the tracing target.
    pub target: Option<Text<'a>>,
    /// `session_id`, for records of a session.
    pub session_id: Option<Text<'a>>,
    /// `tenant`, for records of a session.
    pub tenant: Option<Text<'a>>,
    /// `agent`, for records of a session.
    pub agent: Option<Text<'a>>,
    /// `event`, the runtime's event name for its own lines.
    pub event: Option<Text<'a>>,
    /// Every other field (`worker`, `pid`, the event's own fields), in the line's order.
    pub fields: Vec<(Text<'a>, &'a RawValue)>,
}

/// Why a line is not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadLine {
    /// The bytes are not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// Not a JSON object, or a field of the wrong type.
    #[error("not a JSON log record: {0}")]
    NotJson(String),
    /// A field every record has is missing.
    #[error("no `{0}` field")]
    Missing(&'static str),
    /// `ts` is not an RFC 3339 time.
    #[error("`ts` is not an RFC 3339 time: {0}")]
    BadTime(String),
    /// `level` is not one of the five levels.
    #[error("`level` is not ERROR, WARN, INFO, DEBUG or TRACE: {0}")]
    BadLevel(String),
}

/// Parses one line (without its line end) into a record.
///
/// # Errors
///
/// See [`BadLine`].
pub fn parse_line(line: &[u8]) -> Result<Record<'_>, BadLine> {
    let text = std::str::from_utf8(line).map_err(|_| BadLine::NotUtf8)?;
    let raw: RawRecord<'_> =
        serde_json::from_str(text).map_err(|error| BadLine::NotJson(error.to_string()))?;
    let ts_text = raw.ts.ok_or(BadLine::Missing("ts"))?;
    let level_text = raw.level.ok_or(BadLine::Missing("level"))?;
    let message = raw.message.ok_or(BadLine::Missing("message"))?;
    let ts = parse_time(ts_text.as_str()).ok_or_else(|| BadLine::BadTime(ts_text.0.to_string()))?;
    let level = Level::parse(level_text.as_str())
        .ok_or_else(|| BadLine::BadLevel(level_text.0.to_string()))?;
    Ok(Record {
        ts_text,
        ts,
        level_text,
        level,
        message,
        target: raw.target,
        session_id: raw.session_id,
        tenant: raw.tenant,
        agent: raw.agent,
        event: raw.event,
        fields: raw.fields,
    })
}

/// An RFC 3339 time (any offset), in UTC; `None` when it is not one.
#[must_use]
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|time| time.to_offset(time::UtcOffset::UTC))
}

/// The fields as they come off the line, before the required ones are checked.
struct RawRecord<'a> {
    ts: Option<Text<'a>>,
    level: Option<Text<'a>>,
    message: Option<Text<'a>>,
    target: Option<Text<'a>>,
    session_id: Option<Text<'a>>,
    tenant: Option<Text<'a>>,
    agent: Option<Text<'a>>,
    event: Option<Text<'a>>,
    fields: Vec<(Text<'a>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// Reads a record's object, one field at a time, in order.
struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RawRecord<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut record = RawRecord {
            ts: None,
            level: None,
            message: None,
            target: None,
            session_id: None,
            tenant: None,
            agent: None,
            event: None,
            fields: Vec::new(),
        };
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let slot = match key.as_str() {
                "ts" => &mut record.ts,
                "level" => &mut record.level,
                "message" => &mut record.message,
                "target" => &mut record.target,
                "session_id" => &mut record.session_id,
                "tenant" => &mut record.tenant,
                "agent" => &mut record.agent,
                "event" => &mut record.event,
                _ => {
                    let value: &'de RawValue = map.next_value()?;
                    record.fields.push((key, value));
                    continue;
                }
            };
            // `null` counts as absent.
            *slot = map.next_value::<Option<Text<'de>>>()?;
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-12-06T23:51:13.123456Z","level":"WARN","target":"openrtc::watchdog","message":"slow poll","worker":"demo","pid":42,"session_id":"s-12","tenant":"acme","agent":"support","event":"slow_session","stall_ms":312,"class":"cpu"}"#;

    #[test]
    fn a_full_record_is_parsed_with_its_other_fields_in_order() {
        let record = parse_line(LINE.as_bytes()).expect("a record");
        assert_eq!(record.ts_text.as_str(), "2026-12-06T23:51:13.123456Z");
        assert_eq!(record.ts.unix_timestamp(), 1_796_601_073);
        assert_eq!(record.ts.microsecond(), 123_456);
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message.as_str(), "slow poll");
        assert_eq!(
            record.target.as_ref().map(Text::as_str),
            Some("openrtc::watchdog")
        );
        assert_eq!(record.session_id.as_ref().map(Text::as_str), Some("s-12"));
        assert_eq!(record.tenant.as_ref().map(Text::as_str), Some("acme"));
        assert_eq!(record.agent.as_ref().map(Text::as_str), Some("support"));
        assert_eq!(
            record.event.as_ref().map(Text::as_str),
            Some("slow_session")
        );
        let fields: Vec<(&str, &str)> = record
            .fields
            .iter()
            .map(|(key, value)| (key.as_str(), value.get()))
            .collect();
        assert_eq!(
            fields,
            [
                ("worker", "\"demo\""),
                ("pid", "42"),
                ("stall_ms", "312"),
                ("class", "\"cpu\"")
            ]
        );
        assert!(
            matches!(record.message.0, Cow::Borrowed(_)),
            "plain strings are borrowed"
        );
    }

    #[test]
    fn escaped_strings_are_decoded_and_offsets_become_utc() {
        let record = parse_line(
            br#"{"ts":"2026-12-07T01:00:00.5+02:00","level":"info","message":"a \"quoted\"\nline","session_id":null}"#,
        )
        .expect("a record");
        assert_eq!(record.message.as_str(), "a \"quoted\"\nline");
        assert_eq!(record.level, Level::Info, "levels in any case");
        assert_eq!(record.session_id, None, "null is absent");
        assert_eq!(
            (record.ts.day(), record.ts.hour(), record.ts.millisecond()),
            (6, 23, 500)
        );
    }

    #[test]
    fn lines_that_are_not_records_say_why() {
        /// Whether a reason is the expected one.
        type Expected = fn(&BadLine) -> bool;
        let cases: [(&[u8], Expected); 9] = [
            (b"not json", |bad| matches!(bad, BadLine::NotJson(_))),
            (b"[1,2]", |bad| matches!(bad, BadLine::NotJson(_))),
            (b"42", |bad| matches!(bad, BadLine::NotJson(_))),
            (
                br#"{"ts":"2026-12-06T23:51:13Z","level":"INFO","message":"cut"#,
                |bad| matches!(bad, BadLine::NotJson(_)),
            ),
            (br#"{"level":"INFO","message":"m"}"#, |bad| {
                *bad == BadLine::Missing("ts")
            }),
            (br#"{"ts":"2026-12-06T23:51:13Z","message":"m"}"#, |bad| {
                *bad == BadLine::Missing("level")
            }),
            (br#"{"ts":"2026-12-06T23:51:13Z","level":"INFO"}"#, |bad| {
                *bad == BadLine::Missing("message")
            }),
            (
                br#"{"ts":"yesterday","level":"INFO","message":"m"}"#,
                |bad| matches!(bad, BadLine::BadTime(_)),
            ),
            (
                br#"{"ts":"2026-12-06T23:51:13Z","level":"LOUD","message":"m"}"#,
                |bad| matches!(bad, BadLine::BadLevel(_)),
            ),
        ];
        for (line, expected) in cases {
            let bad = parse_line(line).expect_err("not a record");
            assert!(expected(&bad), "{}: {bad:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            parse_line(b"{\"ts\":\"\xff\"}").expect_err("not UTF-8"),
            BadLine::NotUtf8
        );
        assert!(matches!(
            parse_line(br#"{"ts":"2026-12-06T23:51:13Z","level":"INFO","message":7}"#),
            Err(BadLine::NotJson(_))
        ));
    }

    #[test]
    fn levels_are_ordered_by_severity() {
        assert!(Level::Error > Level::Warn);
        assert!(Level::Warn > Level::Info);
        assert!(Level::Info > Level::Debug);
        assert!(Level::Debug > Level::Trace);
        assert_eq!(Level::parse("Error"), Some(Level::Error));
        assert_eq!(Level::parse("warning"), None);
    }
}
