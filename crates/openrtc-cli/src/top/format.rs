//! Formatting shared by `top --once` and the live view: numbers, spans, byte counts, status
//! and outcome cells, the session order, and the cleaning of untrusted text. Pure functions.

use std::cmp::Ordering;

use openrtc_proto::{RefusalReason, SessionOutcome, SessionSnapshot, SessionState};

use crate::cli::SortKey;

/// The widest an ended session's outcome cell gets before it is cut with `…`.
const OUTCOME_CELL_MAX_CHARS: usize = 72;

/// Compares two sessions by one column in that column's natural direction (numbers and
/// urgency descending, text ascending), then by session id (by number: `s-2` before `s-10`)
/// so the order is total and stable from one refresh to the next.
#[must_use]
pub fn compare_sessions(
    sort: SortKey,
    left: &SessionSnapshot,
    right: &SessionSnapshot,
) -> Ordering {
    compare_by_column(sort, left, right).then_with(|| left.id.cmp(&right.id))
}

/// Compares two sessions by one column only, in that column's natural direction; equal when
/// the column does not tell them apart.
#[must_use]
pub fn compare_by_column(
    sort: SortKey,
    left: &SessionSnapshot,
    right: &SessionSnapshot,
) -> Ordering {
    match sort {
        SortKey::Session => left.id.cmp(&right.id),
        SortKey::Agent => left.agent.cmp(&right.agent),
        SortKey::Tenant => left.tenant.cmp(&right.tenant),
        SortKey::Dur => right.duration_ms.cmp(&left.duration_ms),
        SortKey::Cpu => right.cpu_pct.total_cmp(&left.cpu_pct),
        SortKey::Mem => right.mem_bytes.cmp(&left.mem_bytes),
        SortKey::Peak => right.mem_peak_bytes.cmp(&left.mem_peak_bytes),
        SortKey::Stalls => right.stall_count.cmp(&left.stall_count),
        SortKey::Late => late_key(right).total_cmp(&late_key(left)),
        SortKey::Status => urgency(right).cmp(&urgency(left)),
    }
}

/// A session's outbound lateness p99 for sorting: a call's figure in ms, -1 for a session
/// that is not a call (so calls come first, latest first).
#[must_use]
pub fn late_key(session: &SessionSnapshot) -> f64 {
    session
        .media
        .as_ref()
        .map_or(-1.0, |media| media.outbound_lateness_p99_ms)
}

/// The LATE cell: a call's outbound lateness p99 in whole ms, with `!` when its audio is
/// degrading; `-` for a session that is not a call.
#[must_use]
pub fn format_late(session: &SessionSnapshot) -> String {
    match &session.media {
        None => "-".to_owned(),
        Some(media) => format!(
            "{:.0}{}",
            media.outbound_lateness_p99_ms,
            if media.degrading { "!" } else { "" }
        ),
    }
}

/// How urgent a session's status is, for the status sort: a session blocking a thread now
/// outranks every other (the longer the block, the higher), then slow, draining, active.
#[must_use]
pub fn urgency(session: &SessionSnapshot) -> (u8, u64) {
    if let Some(blocking_ms) = session.blocking_for_ms {
        return (3, blocking_ms);
    }
    let rank = match session.state {
        SessionState::Slow => 2,
        SessionState::Draining => 1,
        _ => 0,
    };
    (rank, 0)
}

/// Formats a duration given in milliseconds as seconds with one decimal, rounded half up:
/// `1250` is `1.3`.
#[must_use]
pub fn format_seconds_tenths(milliseconds: u64) -> String {
    let tenths = milliseconds.saturating_add(50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Formats a CPU percentage with one decimal; a value that is not a number shows as `-`.
#[must_use]
pub fn format_cpu_percent(percent: f64) -> String {
    if percent.is_finite() {
        // Round half away from zero first, as durations do, rather than to the nearest even
        // digit as the formatter would: 97.25 shows as 97.3.
        format!("{:.1}", (percent * 10.0).round() / 10.0)
    } else {
        "-".to_owned()
    }
}

/// Formats an uptime compactly with its two largest units: `42s`, `1m02s`, `3h04m`, `2d03h`.
#[must_use]
pub fn format_uptime(milliseconds: u64) -> String {
    let seconds = milliseconds / 1000;
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if days > 0 {
        format!("{days}d{:02}h", hours % 24)
    } else if hours > 0 {
        format!("{hours}h{:02}m", minutes % 60)
    } else if minutes > 0 {
        format!("{minutes}m{:02}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// Formats a short span: `230ms` under a second, `1.5s` (one decimal) above, `2s` when whole.
#[must_use]
pub fn format_short_span(milliseconds: u64) -> String {
    if milliseconds < 1000 {
        format!("{milliseconds}ms")
    } else if milliseconds % 1000 == 0 {
        format!("{}s", milliseconds / 1000)
    } else {
        format!("{}s", format_seconds_tenths(milliseconds))
    }
}

/// Formats a byte count in MiB with one decimal: `34.1 MiB`.
#[must_use]
pub fn format_mebibytes(bytes: u64) -> String {
    // Precision loss only past 2^53 bytes, far beyond any resident set.
    #[allow(clippy::cast_precision_loss)]
    let mebibytes = bytes as f64 / (1024.0 * 1024.0);
    format!("{mebibytes:.1} MiB")
}

/// The STATUS cell: the state, plus for how long a poll has been blocking a worker thread
/// when one is: `slow (blocking 230ms)`.
#[must_use]
pub fn format_status(session: &SessionSnapshot) -> String {
    match session.blocking_for_ms {
        Some(blocking_ms) => format!(
            "{} (blocking {})",
            session.state.as_str(),
            format_short_span(blocking_ms)
        ),
        None => session.state.as_str().to_owned(),
    }
}

/// The OUTCOME cell of an ended session: its kind, then the reason or message when it has one.
#[must_use]
pub fn format_outcome(outcome: &SessionOutcome) -> String {
    let detail = match outcome {
        SessionOutcome::Failed { error } => format!(": {error}"),
        SessionOutcome::Panicked {
            message,
            location: Some(location),
        } => format!(": {message} (at {location})"),
        SessionOutcome::Panicked { message, .. } => format!(": {message}"),
        SessionOutcome::Cancelled { reason } => format!(" ({reason})"),
        SessionOutcome::Killed { reason } => format!(" ({reason})"),
        _ => String::new(),
    };
    clean_text(
        &format!("{}{detail}", outcome.kind()),
        OUTCOME_CELL_MAX_CHARS,
    )
}

/// Refusals for a header: the total, and the reasons that have any, most first (ties by
/// name): `worker_full 3, draining 1`, if some do.
#[must_use]
pub fn refusal_summary(
    refusals: &std::collections::BTreeMap<RefusalReason, u64>,
) -> (u64, Option<String>) {
    let mut counted: Vec<(&RefusalReason, &u64)> =
        refusals.iter().filter(|(_, count)| **count > 0).collect();
    counted.sort_by(|left, right| right.1.cmp(left.1).then_with(|| left.0.cmp(right.0)));
    let reasons: Vec<String> = counted
        .into_iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    (
        refusals.values().sum(),
        (!reasons.is_empty()).then(|| reasons.join(", ")),
    )
}

/// Makes text from a snapshot safe and bounded for a terminal cell: control characters are
/// escaped (a tenant name must not be able to move the cursor or start an escape sequence),
/// bidirectional overrides are dropped, empty text becomes `-`, and text longer than
/// `max_chars` is cut with `…`.
#[must_use]
pub fn clean_text(text: &str, max_chars: usize) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            cleaned.extend(character.escape_default());
        } else if !is_bidirectional_control(character) {
            cleaned.push(character);
        }
    }
    if cleaned.is_empty() {
        return "-".to_owned();
    }
    if cleaned.chars().count() > max_chars {
        let mut cut: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        return cut;
    }
    cleaned
}

/// Whether a character reorders the text around it (the "Trojan source" characters).
fn is_bidirectional_control(character: char) -> bool {
    matches!(character, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Formats a byte count in at most five characters, for table cells: `0`, `992B`, `812K`, `9.8M`,
/// `123M`, `1.2G`, `16G`. Units are powers of 1024.
#[must_use]
pub fn format_bytes_compact(bytes: u64) -> String {
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if bytes == 0 {
        return "0".to_owned();
    }
    if bytes < 1024 {
        // With its unit: a bare 992 would read as KiB to anyone used to top and htop.
        return format!("{bytes}B");
    }
    // Precision loss only past 2^53 bytes, far beyond any memory figure.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.5 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// Formats a byte count for reading, in binary units with one decimal above a KiB:
/// `112 B`, `12.3 KiB`, `9.0 MiB`, `1.2 GiB`.
#[must_use]
pub fn format_bytes_human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision loss only past 2^53 bytes, far beyond any memory figure.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats the time of day of a Unix time in milliseconds, in UTC: `22:13:08`.
#[must_use]
pub fn format_time_of_day(unix_ms: u64) -> String {
    let seconds_of_day = (unix_ms / 1_000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds_of_day / 3_600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// Formats how long a poll has been blocking in at most five characters, so that
/// `blocking 230ms` fits a fixed column: `230ms`, `1.2s`, `12s`, `125s`, `16m`, `3h`.
#[must_use]
pub fn format_blocking_span(milliseconds: u64) -> String {
    if milliseconds < 1_000 {
        format!("{milliseconds}ms")
    } else if milliseconds < 9_950 {
        let tenths = (milliseconds + 50) / 100;
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else if milliseconds < 999_500 {
        format!("{}s", (milliseconds + 500) / 1_000)
    } else if milliseconds < 36_000_000 {
        format!("{}m", milliseconds / 60_000)
    } else {
        format!("{}h", milliseconds / 3_600_000)
    }
}

/// Formats how long ago something happened, relative to `now_unix_ms`: `0.4s ago`, `12s ago`,
/// `3m05s ago`; a time after `now` (clocks disagree) shows as `just now`.
#[must_use]
pub fn format_ago(then_unix_ms: u64, now_unix_ms: u64) -> String {
    if then_unix_ms >= now_unix_ms {
        return "just now".to_owned();
    }
    let elapsed_ms = now_unix_ms - then_unix_ms;
    if elapsed_ms < 10_000 {
        format!("{}s ago", format_seconds_tenths(elapsed_ms))
    } else {
        format!("{} ago", format_uptime(elapsed_ms))
    }
}

/// A live session with the fields tables and the status cell read, for unit tests.
#[cfg(test)]
pub(crate) fn test_session(id: &str, agent: &str, tenant: &str, cpu_pct: f64) -> SessionSnapshot {
    let mut session = SessionSnapshot::default();
    session.id = id.parse().expect("a session id");
    session.agent = agent.to_owned();
    session.tenant = tenant.to_owned();
    session.cpu_pct = cpu_pct;
    session
}

#[cfg(test)]
mod tests {
    use openrtc_proto::{CancelReason, KillReason};

    use super::test_session as session;
    use super::*;

    #[test]
    fn sessions_tied_on_a_column_order_by_id_number() {
        let mut sessions: Vec<SessionSnapshot> = ["s-10", "s-2", "s-100", "s-1", "s-9"]
            .into_iter()
            .map(|id| session(id, "a", "t", 1.0))
            .collect();
        sessions.sort_by(|left, right| compare_sessions(SortKey::Cpu, left, right));
        let ids: Vec<String> = sessions.iter().map(|row| row.id.to_string()).collect();
        assert_eq!(ids, ["s-1", "s-2", "s-9", "s-10", "s-100"]);
        assert_eq!(
            compare_sessions(SortKey::Session, &sessions[2], &sessions[3]),
            Ordering::Less,
            "s-9 before s-10"
        );
    }

    #[test]
    fn refusals_are_summed_and_named() {
        let mut refusals = std::collections::BTreeMap::new();
        assert_eq!(refusal_summary(&refusals), (0, None));
        for reason in RefusalReason::ALL {
            refusals.insert(reason, 0);
        }
        assert_eq!(refusal_summary(&refusals), (0, None));
        refusals.insert(RefusalReason::WorkerFull, 3);
        refusals.insert(RefusalReason::Draining, 1);
        assert_eq!(
            refusal_summary(&refusals),
            (4, Some("worker_full 3, draining 1".to_owned()))
        );
        refusals.insert(RefusalReason::TenantCap, 3);
        assert_eq!(
            refusal_summary(&refusals),
            (
                7,
                Some("tenant_cap 3, worker_full 3, draining 1".to_owned())
            ),
            "most first, ties by name"
        );
    }

    #[test]
    fn a_blocking_session_says_for_how_long() {
        let mut slow = session("s-1", "a", "t", 0.0);
        slow.state = SessionState::Slow;
        assert_eq!(format_status(&slow), "slow");
        slow.blocking_for_ms = Some(230);
        assert_eq!(format_status(&slow), "slow (blocking 230ms)");
        slow.blocking_for_ms = Some(2_340);
        assert_eq!(format_status(&slow), "slow (blocking 2.3s)");
        assert_eq!(format_status(&session("s-2", "a", "t", 0.0)), "active");
    }

    #[test]
    fn durations_and_percentages_have_one_decimal() {
        assert_eq!(format_seconds_tenths(0), "0.0");
        assert_eq!(format_seconds_tenths(49), "0.0");
        assert_eq!(format_seconds_tenths(50), "0.1");
        assert_eq!(format_seconds_tenths(1_250), "1.3");
        assert_eq!(format_seconds_tenths(61_999), "62.0");
        assert_eq!(format_cpu_percent(0.0), "0.0");
        assert_eq!(format_cpu_percent(12.345), "12.3");
        assert_eq!(format_cpu_percent(187.96), "188.0");
        assert_eq!(format_cpu_percent(97.25), "97.3");
        assert_eq!(format_cpu_percent(f64::NAN), "-");
    }

    #[test]
    fn uptimes_show_their_two_largest_units() {
        assert_eq!(format_uptime(999), "0s");
        assert_eq!(format_uptime(42_000), "42s");
        assert_eq!(format_uptime(62_000), "1m02s");
        assert_eq!(format_uptime((3 * 3600 + 4 * 60 + 59) * 1000), "3h04m");
        assert_eq!(format_uptime((2 * 86_400 + 3 * 3600) * 1000), "2d03h");
        assert_eq!(format_mebibytes(35_756_442), "34.1 MiB");
        assert_eq!(format_short_span(1_000), "1s");
        assert_eq!(format_short_span(1_500), "1.5s");
    }

    #[test]
    fn hostile_text_cannot_reach_the_terminal() {
        assert_eq!(clean_text("a\u{1b}[2Jb\n", 32), "a\\u{1b}[2Jb\\n");
        assert_eq!(clean_text("ab\u{202e}c", 32), "abc");
        assert_eq!(clean_text("", 32), "-");
        assert_eq!(clean_text("abcdef", 4), "abc…");
    }

    #[test]
    fn ended_sessions_say_how_they_ended() {
        assert_eq!(format_outcome(&SessionOutcome::Completed), "completed");
        assert_eq!(
            format_outcome(&SessionOutcome::Failed {
                error: "connection reset".into()
            }),
            "failed: connection reset"
        );
        assert_eq!(
            format_outcome(&SessionOutcome::Cancelled {
                reason: CancelReason::Operator
            }),
            "cancelled (operator)"
        );
        assert_eq!(
            format_outcome(&SessionOutcome::Killed {
                reason: KillReason::MemoryLimit {
                    live_bytes: 52_533_453,
                    limit_bytes: 50 * 1024 * 1024,
                }
            }),
            "killed (memory_limit: 50.1 MiB live over its 50.0 MiB cap)"
        );
        assert_eq!(
            format_outcome(&SessionOutcome::Panicked {
                message: "bad frame".into(),
                location: Some("src/agents/crashy.rs:20:9".into()),
            }),
            "panicked: bad frame (at src/agents/crashy.rs:20:9)"
        );
        assert_eq!(
            format_outcome(&SessionOutcome::Panicked {
                message: "bad frame".into(),
                location: None,
            }),
            "panicked: bad frame"
        );
    }

    #[test]
    fn compact_byte_counts_fit_five_characters() {
        for (bytes, shown) in [
            (0, "0"),
            (992, "992B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (831_488, "812K"),
            (10_276_044, "9.8M"),
            (128_974_848, "123M"),
            (1_288_490_188, "1.2G"),
            (17_179_869_184, "16G"),
            (1_073_217_536, "1.0G"),
            (u64::MAX, "16E"),
        ] {
            assert_eq!(format_bytes_compact(bytes), shown, "{bytes} bytes");
        }
    }

    #[test]
    fn byte_counts_for_reading_use_binary_units() {
        assert_eq!(format_bytes_human(112), "112 B");
        assert_eq!(format_bytes_human(12_595), "12.3 KiB");
        assert_eq!(format_bytes_human(9 * 1_048_576), "9.0 MiB");
        assert_eq!(format_bytes_human(1_073_741_823), "1.0 GiB");
        assert_eq!(format_bytes_human(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn blocking_spans_fit_five_characters() {
        for (milliseconds, shown) in [
            (0, "0ms"),
            (230, "230ms"),
            (999, "999ms"),
            (1_000, "1.0s"),
            (1_249, "1.2s"),
            (9_949, "9.9s"),
            (9_950, "10s"),
            (125_000, "125s"),
            (999_499, "999s"),
            (999_500, "16m"),
            (35_999_999, "599m"),
            (36_000_000, "10h"),
        ] {
            assert_eq!(
                format_blocking_span(milliseconds),
                shown,
                "{milliseconds} ms"
            );
        }
    }

    #[test]
    fn times_of_day_are_in_utc() {
        assert_eq!(format_time_of_day(0), "00:00:00");
        assert_eq!(format_time_of_day(1_700_000_000_000), "22:13:20");
        assert_eq!(format_time_of_day(86_399_999), "23:59:59");
    }

    #[test]
    fn times_are_shown_relative_to_the_snapshot() {
        assert_eq!(format_ago(1_000, 1_400), "0.4s ago");
        assert_eq!(format_ago(1_000, 13_000), "12s ago");
        assert_eq!(format_ago(0, 185_000), "3m05s ago");
        assert_eq!(format_ago(2_000, 1_000), "just now");
    }

    #[test]
    fn the_status_sort_puts_the_longest_block_first() {
        let mut blocking_long = SessionSnapshot::default();
        blocking_long.id = "s-1".parse().expect("an id");
        blocking_long.state = SessionState::Slow;
        blocking_long.blocking_for_ms = Some(900);
        let mut blocking_short = blocking_long.clone();
        blocking_short.id = "s-2".parse().expect("an id");
        blocking_short.blocking_for_ms = Some(200);
        let mut slow = blocking_short.clone();
        slow.id = "s-3".parse().expect("an id");
        slow.blocking_for_ms = None;
        let mut draining = slow.clone();
        draining.id = "s-4".parse().expect("an id");
        draining.state = SessionState::Draining;
        let mut active = slow.clone();
        active.id = "s-5".parse().expect("an id");
        active.state = SessionState::Active;
        let mut sessions = [&active, &draining, &blocking_short, &slow, &blocking_long];
        sessions.sort_by(|left, right| compare_sessions(SortKey::Status, left, right));
        let ids: Vec<String> = sessions
            .iter()
            .map(|session| session.id.to_string())
            .collect();
        assert_eq!(ids, ["s-1", "s-2", "s-3", "s-4", "s-5"]);
    }
}
