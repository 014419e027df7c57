//! Which records `openrtc logs` shows: the [`Filter`] the options give, a record matches it or
//! not, and the [`PreCheck`] that rejects most non-matching raw lines before any JSON parsing
//! (what lets `--session` go through a gigabyte at disk speed). Pure: no I/O.
//!
//! The pre-check looks for each exact-match value as the JSON string the worker writes
//! (`"s-7"`, quotes included, so `s-70` is no candidate for `s-7`), and for the `--grep` text
//! as it appears inside a JSON string. It assumes lines are escaped as `serde_json` escapes
//! them (only `"`, `\` and control characters), which the worker's writer does; a line
//! escaping other characters (`\u00e9` for `é`) could be passed over by `--grep`.

use memchr::memmem::Finder;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::record::{Level, Record, Text};

/// What a record must be to be shown; every part given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `--session`: the record's `session_id` is exactly this.
    pub session: Option<String>,
    /// `--tenant`: the record's `tenant` is exactly this.
    pub tenant: Option<String>,
    /// `--agent`: the record's `agent` is exactly this.
    pub agent: Option<String>,
    /// `--level`: the record is at least this severe.
    pub min_level: Option<Level>,
    /// `--since`: the record's `ts` is at or after this.
    pub since: Option<OffsetDateTime>,
    /// `--grep`: this text (case-sensitive) is part of the message or of any field's value.
    pub grep: Option<String>,
}

impl Filter {
    /// Whether a record passes.
    #[must_use]
    pub fn matches(&self, record: &Record<'_>) -> bool {
        equals(self.session.as_deref(), record.session_id.as_ref())
            && equals(self.tenant.as_deref(), record.tenant.as_ref())
            && equals(self.agent.as_deref(), record.agent.as_ref())
            && self.min_level.is_none_or(|level| record.level >= level)
            && self.since.is_none_or(|since| record.ts >= since)
            && self.grep.as_deref().is_none_or(|text| grep(record, text))
    }

    /// The raw-line pre-check for this filter: the texts every matching line contains.
    #[must_use]
    pub fn pre_check(&self) -> PreCheck {
        let exact = [&self.session, &self.agent, &self.tenant]
            .into_iter()
            .flatten()
            .map(|value| json_string(value));
        // Inside a JSON string the text appears escaped, without the quotes.
        let grep = self.grep.iter().map(|text| {
            let quoted = json_string(text);
            quoted[1..quoted.len() - 1].to_vec()
        });
        let needles: Vec<Vec<u8>> = exact
            .chain(grep)
            .filter(|needle| !needle.is_empty())
            .collect();
        PreCheck {
            finders: needles
                .iter()
                .map(|needle| Finder::new(needle).into_owned())
                .collect(),
        }
    }
}

/// An exact-match option against a record's field: no option passes everything; an option
/// needs the field, equal.
fn equals(wanted: Option<&str>, field: Option<&Text<'_>>) -> bool {
    wanted.is_none_or(|wanted| field.is_some_and(|field| field.as_str() == wanted))
}

/// Whether `text` is part of the message or any field's value (strings decoded, other values
/// as written).
fn grep(record: &Record<'_>, text: &str) -> bool {
    let named = [
        Some(&record.message),
        Some(&record.ts_text),
        Some(&record.level_text),
        record.target.as_ref(),
        record.session_id.as_ref(),
        record.tenant.as_ref(),
        record.agent.as_ref(),
        record.event.as_ref(),
    ];
    named
        .into_iter()
        .flatten()
        .any(|value| value.as_str().contains(text))
        || record
            .fields
            .iter()
            .any(|(_, value)| raw_value_contains(value, text))
}

/// Whether a raw JSON value contains `text`: a string's decoded text, anything else as written.
fn raw_value_contains(value: &RawValue, text: &str) -> bool {
    let raw = value.get();
    if raw.starts_with('"') {
        serde_json::from_str::<Text<'_>>(raw).is_ok_and(|decoded| decoded.as_str().contains(text))
    } else {
        raw.contains(text)
    }
}

/// A text as a JSON string, quotes included, as `serde_json` writes it.
fn json_string(text: &str) -> Vec<u8> {
    // Serializing a `str` cannot fail; the fallback only keeps this free of panics.
    serde_json::to_vec(text).unwrap_or_else(|_| format!("\"{text}\"").into_bytes())
}

/// Texts that every matching raw line contains. Empty when the filter has no text to look
/// for, and then every line is a candidate.
#[derive(Clone, Debug)]
pub struct PreCheck {
    finders: Vec<Finder<'static>>,
}

impl PreCheck {
    /// Whether there is anything to look for.
    #[must_use]
    pub fn is_active(&self) -> bool {
        !self.finders.is_empty()
    }

    /// The first text, to be searched for in a whole chunk of lines at once.
    #[must_use]
    pub fn first(&self) -> Option<&Finder<'static>> {
        self.finders.first()
    }

    /// Whether a line holds every text but the first (the caller found the first already).
    #[must_use]
    pub fn rest_in(&self, line: &[u8]) -> bool {
        self.finders
            .iter()
            .skip(1)
            .all(|finder| finder.find(line).is_some())
    }

    /// Whether a line holds every text.
    #[must_use]
    pub fn all_in(&self, line: &[u8]) -> bool {
        self.finders
            .iter()
            .all(|finder| finder.find(line).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_line;
    use crate::logs::since::parse_since;

    fn line(session: Option<&str>, level: &str, message: &str, extra: &str) -> String {
        let session = session.map_or_else(String::new, |id| {
            format!(r#","session_id":"{id}","tenant":"acme","agent":"support""#)
        });
        format!(
            r#"{{"ts":"2026-12-06T23:51:13.123456Z","level":"{level}","target":"t","message":"{message}","worker":"demo","pid":7{session}{extra}}}"#
        )
    }

    fn passes(filter: &Filter, text: &str) -> bool {
        let record = parse_line(text.as_bytes()).expect("a record");
        let matched = filter.matches(&record);
        if matched {
            assert!(
                filter.pre_check().all_in(text.as_bytes()),
                "the pre-check must never reject a match: {text}"
            );
        }
        matched
    }

    #[test]
    fn sessions_match_exactly_never_by_prefix() {
        let filter = Filter {
            session: Some("s-7".into()),
            ..Filter::default()
        };
        assert!(passes(&filter, &line(Some("s-7"), "INFO", "m", "")));
        for other in ["s-70", "s-79", "s-17", "s-"] {
            assert!(
                !passes(&filter, &line(Some(other), "INFO", "m", "")),
                "{other}"
            );
            assert!(
                !filter
                    .pre_check()
                    .all_in(line(Some(other), "INFO", "m", "").as_bytes()),
                "{other} is not even a candidate"
            );
        }
        assert!(
            !passes(&filter, &line(None, "INFO", "m", "")),
            "worker record"
        );
        assert!(
            passes(&Filter::default(), &line(None, "INFO", "m", "")),
            "no filter passes everything"
        );
    }

    #[test]
    fn tenant_and_agent_match_exactly() {
        let tenant = Filter {
            tenant: Some("acme".into()),
            ..Filter::default()
        };
        assert!(passes(&tenant, &line(Some("s-1"), "INFO", "m", "")));
        let other_tenant = Filter {
            tenant: Some("acm".into()),
            ..Filter::default()
        };
        assert!(!passes(&other_tenant, &line(Some("s-1"), "INFO", "m", "")));
        let agent = Filter {
            agent: Some("support".into()),
            tenant: Some("acme".into()),
            ..Filter::default()
        };
        assert!(passes(&agent, &line(Some("s-1"), "INFO", "m", "")));
        assert!(!passes(&agent, &line(None, "INFO", "m", "")));
    }

    #[test]
    fn the_level_is_a_minimum() {
        let filter = Filter {
            min_level: Some(Level::Warn),
            ..Filter::default()
        };
        let shown: Vec<&str> = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
            .into_iter()
            .filter(|level| passes(&filter, &line(None, level, "m", "")))
            .collect();
        assert_eq!(shown, ["WARN", "ERROR"]);
    }

    #[test]
    fn since_keeps_records_at_or_after_the_cutoff() {
        let at = |text: &str| match parse_since(text) {
            Ok(crate::logs::since::Since::At(at)) => at,
            other => panic!("{other:?}"),
        };
        let record = line(None, "INFO", "m", "");
        let filter = |since: &str| Filter {
            since: Some(at(since)),
            ..Filter::default()
        };
        assert!(passes(&filter("2026-12-06T23:51:13.123456Z"), &record));
        assert!(passes(&filter("2026-12-06T23:00:00Z"), &record));
        assert!(!passes(&filter("2026-12-06T23:51:13.123457Z"), &record));
        assert!(!passes(&filter("2026-12-07T00:52:00+01:00"), &record));
    }

    #[test]
    fn grep_looks_in_the_message_and_every_value() {
        let record = line(
            Some("s-3"),
            "INFO",
            r#"said \"hi\" there"#,
            r#","stall_ms":312,"class":"cpu\tbound","nested":{"k":"deep"}"#,
        );
        let grep = |text: &str| Filter {
            grep: Some(text.into()),
            ..Filter::default()
        };
        for found in [
            "hi\" there",
            "said",
            "312",
            "cpu\tbound",
            "acme",
            "support",
            "demo",
            "deep",
            "INFO",
            "23:51",
        ] {
            assert!(passes(&grep(found), &record), "{found}");
        }
        for missing in ["Said", "313", "stall_ms", "nested", "cpu bound"] {
            assert!(!passes(&grep(missing), &record), "{missing}");
        }
    }

    #[test]
    fn the_pre_check_looks_for_every_text() {
        let filter = Filter {
            session: Some("s-7".into()),
            grep: Some("a \"b\"".into()),
            ..Filter::default()
        };
        let check = filter.pre_check();
        assert!(check.is_active());
        assert!(check.all_in(br#"{"session_id":"s-7","message":"x a \"b\" y"}"#));
        assert!(!check.all_in(br#"{"session_id":"s-7","message":"x a "}"#));
        assert!(
            check.rest_in(br#"{"message":"a \"b\""}"#),
            "all but the first"
        );
        assert!(!Filter::default().pre_check().is_active());
        let level_only = Filter {
            min_level: Some(Level::Error),
            ..Filter::default()
        };
        assert!(!level_only.pre_check().is_active());
    }
}
