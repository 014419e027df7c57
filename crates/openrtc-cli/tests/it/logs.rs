//! `openrtc logs` run as a real process on generated JSONL logs: exact filtering
//! ([`filtering`]), files of every kind and the failures around them ([`input`]), `--follow`
//! across growth, rotation and truncation ([`follow`]), and finding the log file through a
//! worker's socket ([`discovery`]).

mod discovery;
mod filtering;
mod follow;
mod input;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::binary::run;

/// The sessions of the generated log: 50 of them, s-70 to s-79 among them, so that a prefix
/// match of `s-7` would show.
pub(crate) fn session_numbers() -> impl Iterator<Item = u32> {
    (1..=40).chain(70..=79)
}

/// How many records each session has in the generated log.
pub(crate) const ROUNDS: u32 = 6;

/// The levels, cycled through.
const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// One generated line and what it holds, for computing the expected output independently of
/// the command.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    /// The line, without its newline.
    pub text: String,
    /// The session number, for a session's record.
    pub session: Option<u32>,
    /// The tenant, for a session's record.
    pub tenant: Option<String>,
    /// The agent, for a session's record.
    pub agent: Option<String>,
    /// The level as written.
    pub level: &'static str,
    /// How long before the generation the record was written.
    pub minutes_ago: i64,
    /// The message.
    pub message: String,
}

/// An RFC 3339 UTC time `minutes_ago` minutes before now.
pub(crate) fn ts(minutes_ago: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::minutes(minutes_ago))
        .format(&Rfc3339)
        .expect("format a time")
}

/// A session's record as the worker writes it.
pub(crate) fn session_record(session: u32, message: &str, extra: &str) -> String {
    format!(
        r#"{{"ts":"{}","level":"INFO","target":"openrtc_demo::agents","message":"{message}","worker":"demo","pid":42,"session_id":"s-{session}","tenant":"acme","agent":"support"{extra}}}"#,
        ts(0)
    )
}

/// A log of [`ROUNDS`] rounds: each round a record of every session, interleaved, then a
/// worker record. The first three rounds are two hours old, the last three under 20 minutes.
pub(crate) fn generate() -> Vec<Line> {
    let mut lines = Vec::new();
    for round in 0..ROUNDS {
        let minutes_ago = if round < 3 {
            120 - i64::from(round)
        } else {
            20 - i64::from(round)
        };
        for session in session_numbers() {
            let level = LEVELS[((round + session) % 5) as usize];
            let tenant = format!("t-{}", session % 12);
            let agent = ["support", "support-eu", "sales"][(session % 3) as usize].to_owned();
            let message = if round == 2 && session % 10 == 3 {
                "the speech service timed out".to_owned()
            } else {
                format!("turn {round} done")
            };
            let mut extra = format!(r#","turn":{round}"#);
            if (round + session) % 7 == 0 {
                extra.push_str(r#","class":"cpu-bound","stall_ms":250"#);
            }
            let text = if session == 7 && round == ROUNDS - 1 {
                // Spacing and escapes no writer of JSON would re-create: `--json` must pass
                // the line through as it is.
                format!(
                    r#"{{ "ts" : "{}", "level":"{level}", "message" : "{message} caf\u00e9 ☕", "session_id":"s-7", "tenant":"{tenant}", "agent":"{agent}"{extra} }}"#,
                    ts(minutes_ago)
                )
            } else {
                format!(
                    r#"{{"ts":"{}","level":"{level}","target":"openrtc_demo::agents","message":"{message}","worker":"demo","pid":42,"session_id":"s-{session}","tenant":"{tenant}","agent":"{agent}"{extra}}}"#,
                    ts(minutes_ago)
                )
            };
            let message = if session == 7 && round == ROUNDS - 1 {
                format!("{message} café ☕")
            } else {
                message
            };
            lines.push(Line {
                text,
                session: Some(session),
                tenant: Some(tenant),
                agent: Some(agent),
                level,
                minutes_ago,
                message,
            });
        }
        // The worker's own records: one names s-7 in a field of its own, without being s-7's.
        let (level, message, extra) = if round == 1 {
            (
                "WARN",
                "refused a session",
                r#","event":"session_refused","victim":"s-7""#,
            )
        } else {
            (
                "INFO",
                "worker figures",
                r#","event":"worker_stats","active_sessions":50"#,
            )
        };
        lines.push(Line {
            text: format!(
                r#"{{"ts":"{}","level":"{level}","target":"openrtc::pool","message":"{message}","worker":"demo","pid":42{extra}}}"#,
                ts(minutes_ago)
            ),
            session: None,
            tenant: None,
            agent: None,
            level,
            minutes_ago,
            message: message.to_owned(),
        });
    }
    lines
}

/// Lines joined, each with its newline: what `--json` prints for them.
pub(crate) fn joined<'a>(lines: impl IntoIterator<Item = &'a Line>) -> String {
    lines.into_iter().fold(String::new(), |mut text, line| {
        let _ = writeln!(text, "{}", line.text);
        text
    })
}

/// Writes lines to a file, each with its newline.
pub(crate) fn write_lines(path: &Path, lines: &[Line]) {
    std::fs::write(path, joined(lines)).expect("write the log");
}

/// Runs `openrtc logs` with `args` to completion, with its socket directory in `dir`.
pub(crate) fn logs(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    run(dir, &all)
}

/// A path as text, for arguments.
pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
