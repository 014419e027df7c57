//! One log record as a line of JSON: pure formatting, no I/O.
//!
//! The line holds, in this order, `ts` (RFC 3339, UTC, microseconds), `level`, `target`,
//! `message`, the session's `session_id`, `tenant` and `agent` when the record was emitted
//! in one, `worker`, `pid`, then the event's own fields. A field of the event that would
//! repeat one of those keys is written as `field.<name>` instead, so no line has a key
//! twice; the exception is a runtime line outside any session that names one
//! (`session_id`, `tenant`, `agent` fields): those are its labels.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Level;
use tracing::field::{Field, Visit};

use crate::SessionId;

/// Keys every line may carry before the event's own fields.
const RESERVED: [&str; 9] = [
    "ts",
    "level",
    "target",
    "message",
    "session_id",
    "tenant",
    "agent",
    "worker",
    "pid",
];

/// The session a record belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Labels<'a> {
    pub(crate) session_id: SessionId,
    pub(crate) tenant: &'a str,
    pub(crate) agent: &'a str,
}

/// What a record says apart from its fields: when, how loud, from where, and by whom.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header<'a> {
    pub(crate) at_unix_us: u64,
    pub(crate) level: Level,
    pub(crate) target: &'a str,
    pub(crate) labels: Option<Labels<'a>>,
    pub(crate) worker: &'a str,
    pub(crate) pid: u32,
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// `level` as the line writes it: `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`.
pub(crate) fn level_name(level: Level) -> &'static str {
    level.as_str()
}

/// The record of `event` under `header`, as one line of JSON without its newline.
pub(crate) fn render(header: &Header<'_>, event: &tracing::Event<'_>) -> String {
    let mut fields = Fields::new(header.labels.is_some(), header.worker);
    event.record(&mut fields);
    render_parts(header, &fields.message, &fields.rest)
}

/// The line from its parts: `rest` is the event's own fields, already as `,"key":value`.
pub(crate) fn render_parts(header: &Header<'_>, message: &str, rest: &str) -> String {
    let mut line = String::with_capacity(160 + message.len() + rest.len());
    line.push_str("{\"ts\":\"");
    push_rfc3339_us(&mut line, header.at_unix_us);
    line.push_str("\",\"level\":\"");
    line.push_str(level_name(header.level));
    line.push_str("\",\"target\":");
    push_json_str(&mut line, header.target);
    line.push_str(",\"message\":");
    push_json_str(&mut line, message);
    if let Some(labels) = header.labels {
        let _ = write!(
            line,
            ",\"session_id\":\"{}\",\"tenant\":",
            labels.session_id
        );
        push_json_str(&mut line, labels.tenant);
        line.push_str(",\"agent\":");
        push_json_str(&mut line, labels.agent);
    }
    line.push_str(",\"worker\":");
    push_json_str(&mut line, header.worker);
    let _ = write!(line, ",\"pid\":{}", header.pid);
    line.push_str(rest);
    line.push('}');
    line
}

/// `line` (one JSON object) with `"from_flight_recorder":true` added as its last key.
pub(crate) fn mark_replayed(line: &str) -> String {
    let body = line.strip_suffix('}').unwrap_or(line);
    format!("{body},\"from_flight_recorder\":true}}")
}

/// Collects an event's message and its other fields as JSON.
struct Fields<'a> {
    message: String,
    /// The worker's name: an event's own `worker` field with this value is not repeated.
    worker: &'a str,
    rest: String,
    /// Whether the session labels come from the context, so the event's own `session_id`,
    /// `tenant` and `agent` would repeat them.
    labelled: bool,
}

impl<'a> Fields<'a> {
    fn new(labelled: bool, worker: &'a str) -> Self {
        Self {
            message: String::new(),
            worker,
            rest: String::new(),
            labelled,
        }
    }

    /// Starts the field `name`: `,"name":` (renamed if it would repeat a reserved key).
    /// `None`: leave it out (a label the context already gives).
    fn key(&mut self, name: &str) -> Option<&mut String> {
        let label = matches!(name, "session_id" | "tenant" | "agent");
        if label && self.labelled {
            return None;
        }
        self.rest.push(',');
        if RESERVED.contains(&name) && !label {
            push_json_str(&mut self.rest, &format!("field.{name}"));
        } else {
            push_json_str(&mut self.rest, name);
        }
        self.rest.push(':');
        Some(&mut self.rest)
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if field.name() == "worker" && value == self.worker {
            // The line's own `worker` says it already.
        } else if let Some(out) = self.key(field.name()) {
            push_json_str(out, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if self.key(field.name()).is_some() {
            let text = format!("{value:?}");
            push_json_str(&mut self.rest, &text);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(out) = self.key(field.name()) {
            let _ = write!(out, "{value}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(out) = self.key(field.name()) {
            let _ = write!(out, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if let Some(out) = self.key(field.name()) {
            if value.is_finite() {
                let _ = write!(out, "{value}");
            } else {
                out.push_str("null");
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(out) = self.key(field.name()) {
            out.push_str(if value { "true" } else { "false" });
        }
    }
}

/// Appends `text` as a JSON string, quotes included.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain_from..index]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        plain_from = index + 1;
    }
    out.push_str(&text[plain_from..]);
    out.push('"');
}

/// Appends `2026-12-06T23:51:13.123456Z`.
fn push_rfc3339_us(out: &mut String, unix_us: u64) {
    let time = UNIX_EPOCH + Duration::from_micros(unix_us);
    let _ = write!(out, "{}", humantime::format_rfc3339_micros(time));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(labels: Option<Labels<'_>>) -> Header<'_> {
        Header {
            at_unix_us: 1_796_601_073_123_456,
            level: Level::WARN,
            target: "openrtc::watchdog",
            labels,
            worker: "edge-1",
            pid: 4242,
        }
    }

    #[test]
    fn a_session_record_names_its_session_before_its_own_fields() {
        let labels = Labels {
            session_id: crate::session::session_id(12),
            tenant: "acme",
            agent: "echo",
        };
        let line = render_parts(
            &header(Some(labels)),
            "hello \"there\"\n",
            ",\"stall_ms\":80",
        );
        assert_eq!(
            line,
            "{\"ts\":\"2026-12-06T23:51:13.123456Z\",\"level\":\"WARN\",\
             \"target\":\"openrtc::watchdog\",\"message\":\"hello \\\"there\\\"\\n\",\
             \"session_id\":\"s-12\",\"tenant\":\"acme\",\"agent\":\"echo\",\
             \"worker\":\"edge-1\",\"pid\":4242,\"stall_ms\":80}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["message"], "hello \"there\"\n");
    }

    #[test]
    fn every_control_character_is_escaped() {
        let mut out = String::new();
        let text: String = (0_u8..0x20)
            .map(char::from)
            .chain("é\u{7f}".chars())
            .collect();
        push_json_str(&mut out, &text);
        let back: String = serde_json::from_str(&out).expect("valid JSON string");
        assert_eq!(back, text);
    }

    #[test]
    fn a_replayed_line_says_so_and_stays_one_object() {
        let line = render_parts(&header(None), "m", "");
        let replayed: serde_json::Value =
            serde_json::from_str(&mark_replayed(&line)).expect("valid JSON");
        assert_eq!(replayed["from_flight_recorder"], true);
        assert_eq!(replayed["worker"], "edge-1");
        assert!(replayed.get("session_id").is_none());
    }

    #[test]
    fn fields_that_repeat_a_key_are_renamed_and_labels_from_the_context_win() {
        let mut fields = Fields::new(true, "edge-1");
        assert!(fields.key("session_id").is_none());
        fields.key("level").expect("kept").push('1');
        fields.key("stall_ms").expect("kept").push('2');
        assert_eq!(fields.rest, ",\"field.level\":1,\"stall_ms\":2");
        let mut unlabelled = Fields::new(false, "edge-1");
        unlabelled
            .key("session_id")
            .expect("kept")
            .push_str("\"s-3\"");
        assert_eq!(unlabelled.rest, ",\"session_id\":\"s-3\"");
    }
}
