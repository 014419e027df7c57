//! The text of `openrtc top`: the filter and sort of sessions and every formatting function
//! from a [`PoolSnapshot`] to printable lines. Pure functions, no I/O.

use std::cmp::Ordering;
use std::fmt::Write as _;

use openrtc_proto::{
    EndedSessionSnapshot, PoolSnapshot, SessionOutcome, SessionSnapshot, SessionState,
    WorkerSnapshot,
};

use crate::cli::SortKey;

/// How many recently ended sessions a worker block lists at most.
pub const RECENTLY_ENDED_ROWS: usize = 5;

/// The widest a name cell (session, agent, tenant) gets before it is cut with `…`.
const NAME_CELL_MAX_CHARS: usize = 32;

/// The widest an ended session's outcome cell gets before it is cut with `…`.
const OUTCOME_CELL_MAX_CHARS: usize = 72;

/// The spaces between two table columns.
const COLUMN_GAP: &str = "  ";

/// Which sessions to show and in which order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewOptions {
    /// The sort column.
    pub sort: SortKey,
    /// Only sessions in this state, when set.
    pub status: Option<SessionState>,
    /// Only sessions of this tenant, when set.
    pub tenant: Option<String>,
    /// Only sessions of this agent, when set.
    pub agent: Option<String>,
}

impl ViewOptions {
    /// Whether any filter is set.
    #[must_use]
    pub fn is_filtered(&self) -> bool {
        self.status.is_some() || self.tenant.is_some() || self.agent.is_some()
    }

    /// Whether a live session passes every filter.
    #[must_use]
    pub fn admits(&self, session: &SessionSnapshot) -> bool {
        self.status.is_none_or(|state| session.state == state)
            && self.admits_names(&session.agent, &session.tenant)
    }

    /// Whether an agent and tenant pass the agent and tenant filters (the state filter does
    /// not apply to ended sessions).
    #[must_use]
    pub fn admits_names(&self, agent: &str, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|wanted| tenant == wanted)
            && self.agent.as_deref().is_none_or(|wanted| agent == wanted)
    }

    /// The filters in effect, as `status=slow, tenant=acme`.
    fn describe_filters(&self) -> String {
        let mut filters = Vec::new();
        if let Some(state) = self.status {
            filters.push(format!("status={}", state.as_str()));
        }
        if let Some(tenant) = &self.tenant {
            filters.push(format!(
                "tenant={}",
                clean_text(tenant, NAME_CELL_MAX_CHARS)
            ));
        }
        if let Some(agent) = &self.agent {
            filters.push(format!("agent={}", clean_text(agent, NAME_CELL_MAX_CHARS)));
        }
        filters.join(", ")
    }
}

/// The live sessions that pass the filters, sorted by the sort column.
///
/// Numeric columns sort descending and text columns ascending; ties are broken by session id
/// in numeric order ([`compare_session_ids`]).
#[must_use]
pub fn select_sessions<'snapshot>(
    sessions: &'snapshot [SessionSnapshot],
    options: &ViewOptions,
) -> Vec<&'snapshot SessionSnapshot> {
    let mut selected: Vec<&SessionSnapshot> = sessions
        .iter()
        .filter(|session| options.admits(session))
        .collect();
    selected.sort_by(|left, right| {
        let by_column = match options.sort {
            SortKey::Cpu => right.cpu_pct.total_cmp(&left.cpu_pct),
            SortKey::Dur => right.duration_ms.cmp(&left.duration_ms),
            SortKey::Stalls => right.stall_count.cmp(&left.stall_count),
            SortKey::Agent => left.agent.cmp(&right.agent),
            SortKey::Session => Ordering::Equal,
        };
        by_column.then_with(|| compare_session_ids(&left.id, &right.id))
    });
    selected
}

/// Orders session ids so that `s-2` comes before `s-10`: ids are compared by their text
/// before the trailing digits, then by the number those digits spell, then as plain text.
///
/// This is a total order for any strings, as `sort_by` requires.
#[must_use]
pub fn compare_session_ids(left: &str, right: &str) -> Ordering {
    natural_key(left).cmp(&natural_key(right))
}

/// The sort key of [`compare_session_ids`]: (text before the trailing digits, number of
/// significant digits, the significant digits, the whole id). Comparing the digit count before
/// the digits orders numbers of any length without parsing them.
fn natural_key(id: &str) -> (&str, usize, &str, &str) {
    let prefix = id.trim_end_matches(|c: char| c.is_ascii_digit());
    let significant_digits = id[prefix.len()..].trim_start_matches('0');
    (prefix, significant_digits.len(), significant_digits, id)
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
        SessionOutcome::Panicked { message } => format!(": {message}"),
        SessionOutcome::Cancelled { reason } | SessionOutcome::Killed { reason } => {
            format!(" ({reason})")
        }
        _ => String::new(),
    };
    clean_text(
        &format!("{}{detail}", outcome.kind()),
        OUTCOME_CELL_MAX_CHARS,
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

/// The two header lines of a worker block: who it is and what it holds, then its lifetime
/// counters.
#[must_use]
pub fn worker_header(worker: &WorkerSnapshot) -> String {
    let threads_word = if worker.worker_threads == 1 {
        "thread"
    } else {
        "threads"
    };
    let mut header = format!(
        "worker {} pid {} · up {} · {} {threads_word} · sessions {}/{} · rss {}",
        clean_text(&worker.name, NAME_CELL_MAX_CHARS),
        worker.pid,
        format_uptime(worker.uptime_ms),
        worker.worker_threads,
        worker.active_sessions,
        worker.max_sessions,
        format_mebibytes(worker.rss_bytes),
    );
    if worker.draining {
        header.push_str(" · DRAINING");
    }

    let totals = &worker.totals;
    let _ = write!(
        header,
        "\nstarted {} completed {} failed {} panicked {} cancelled {} killed {}",
        totals.started_count,
        totals.completed_count,
        totals.failed_count,
        totals.panicked_count,
        totals.cancelled_count,
        totals.killed_count,
    );

    let refused_total: u64 = worker.refusals.values().sum();
    let _ = write!(header, " · refused {refused_total}");
    let refusal_reasons: Vec<String> = worker
        .refusals
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{} {count}", clean_text(reason, NAME_CELL_MAX_CHARS)))
        .collect();
    if !refusal_reasons.is_empty() {
        let _ = write!(header, " ({})", refusal_reasons.join(", "));
    }

    let _ = write!(
        header,
        " · stalls {} ({} now",
        worker.stalls_total_count, worker.stalls_in_progress_count
    );
    if worker.slow_threshold_ms > 0 {
        let _ = write!(header, ", ≥{}", format_short_span(worker.slow_threshold_ms));
    }
    header.push(')');
    if worker.cpu_window_ms > 0 {
        let _ = write!(
            header,
            " · cpu% over {}",
            format_short_span(worker.cpu_window_ms)
        );
    }
    header.push('\n');
    header
}

/// How a table column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alignment {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

/// Lays out a table: every column as wide as its widest cell or title, columns separated by
/// two spaces, no trailing spaces, every line prefixed by `indent`.
fn render_table(columns: &[(&str, Alignment)], rows: &[Vec<String>], indent: &str) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, (title, _))| {
            rows.iter()
                .map(|row| row[index].chars().count())
                .chain(std::iter::once(title.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let titles: Vec<String> = columns
        .iter()
        .map(|(title, _)| (*title).to_owned())
        .collect();
    let mut table = String::new();
    for row in std::iter::once(&titles).chain(rows) {
        let mut line = indent.to_owned();
        for (index, ((_, alignment), cell)) in columns.iter().zip(row).enumerate() {
            if index > 0 {
                line.push_str(COLUMN_GAP);
            }
            let width = widths[index];
            let _ = match alignment {
                Alignment::Left => write!(line, "{cell:<width$}"),
                Alignment::Right => write!(line, "{cell:>width$}"),
            };
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// The live-session table: the column titles, then one row per session in the given order.
#[must_use]
pub fn session_table(sessions: &[&SessionSnapshot]) -> String {
    let columns = [
        ("SESSION", Alignment::Left),
        ("AGENT", Alignment::Left),
        ("TENANT", Alignment::Left),
        ("DUR(s)", Alignment::Right),
        ("CPU%", Alignment::Right),
        ("STALLS", Alignment::Right),
        ("STATUS", Alignment::Left),
    ];
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|session| {
            vec![
                clean_text(&session.id, NAME_CELL_MAX_CHARS),
                clean_text(&session.agent, NAME_CELL_MAX_CHARS),
                clean_text(&session.tenant, NAME_CELL_MAX_CHARS),
                format_seconds_tenths(session.duration_ms),
                format_cpu_percent(session.cpu_pct),
                session.stall_count.to_string(),
                format_status(session),
            ]
        })
        .collect();
    render_table(&columns, &rows, "")
}

/// The `recently ended:` section: a title and an indented table of the given sessions.
#[must_use]
pub fn recently_ended_section(ended: &[&EndedSessionSnapshot]) -> String {
    let columns = [
        ("SESSION", Alignment::Left),
        ("AGENT", Alignment::Left),
        ("TENANT", Alignment::Left),
        ("DUR(s)", Alignment::Right),
        ("OUTCOME", Alignment::Left),
    ];
    let rows: Vec<Vec<String>> = ended
        .iter()
        .map(|session| {
            vec![
                clean_text(&session.id, NAME_CELL_MAX_CHARS),
                clean_text(&session.agent, NAME_CELL_MAX_CHARS),
                clean_text(&session.tenant, NAME_CELL_MAX_CHARS),
                format_seconds_tenths(session.duration_ms),
                format_outcome(&session.outcome),
            ]
        })
        .collect();
    format!("recently ended:\n{}", render_table(&columns, &rows, "  "))
}

/// One worker's whole block: header, session table (or why it is empty), and the most
/// recently ended sessions that pass the agent and tenant filters.
#[must_use]
pub fn render_worker(snapshot: &PoolSnapshot, options: &ViewOptions) -> String {
    let mut block = worker_header(&snapshot.worker);
    let selected = select_sessions(&snapshot.sessions, options);
    block.push_str(&session_table(&selected));
    if snapshot.sessions.is_empty() {
        block.push_str("(no live sessions)\n");
    } else if selected.is_empty() {
        let _ = writeln!(
            block,
            "(no matching sessions: {})",
            options.describe_filters()
        );
    } else if options.is_filtered() {
        let _ = writeln!(
            block,
            "({} of {} sessions shown: {})",
            selected.len(),
            snapshot.sessions.len(),
            options.describe_filters()
        );
    }

    let ended: Vec<&EndedSessionSnapshot> = snapshot
        .recently_ended
        .iter()
        .filter(|session| options.admits_names(&session.agent, &session.tenant))
        .take(RECENTLY_ENDED_ROWS)
        .collect();
    if !ended.is_empty() {
        block.push('\n');
        block.push_str(&recently_ended_section(&ended));
    }
    block
}

/// Every worker's block, ordered by worker name then pid, separated by blank lines.
#[must_use]
pub fn render_workers(snapshots: &[&PoolSnapshot], options: &ViewOptions) -> String {
    let mut ordered = snapshots.to_vec();
    ordered.sort_by(|left, right| {
        (&left.worker.name, left.worker.pid).cmp(&(&right.worker.name, right.worker.pid))
    });
    ordered
        .iter()
        .map(|snapshot| render_worker(snapshot, options))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live session with the fields the table shows.
    fn session(id: &str, agent: &str, tenant: &str, cpu_pct: f64) -> SessionSnapshot {
        let mut session = SessionSnapshot::default();
        session.id = id.to_owned();
        session.agent = agent.to_owned();
        session.tenant = tenant.to_owned();
        session.cpu_pct = cpu_pct;
        session
    }

    /// The ids of the selected sessions, in order.
    fn ids(selected: &[&SessionSnapshot]) -> Vec<String> {
        selected.iter().map(|session| session.id.clone()).collect()
    }

    /// Options sorting by `sort` without filters.
    fn sorted_by(sort: SortKey) -> ViewOptions {
        ViewOptions {
            sort,
            ..ViewOptions::default()
        }
    }

    #[test]
    fn session_ids_sort_by_their_number() {
        let mut ids = vec!["s-10", "s-2", "s-1", "t-1", "s-02", "s-", "s-100", "x"];
        ids.sort_by(|left, right| compare_session_ids(left, right));
        assert_eq!(
            ids,
            vec!["s-", "s-1", "s-02", "s-2", "s-10", "s-100", "t-1", "x"]
        );
        assert_eq!(compare_session_ids("s-9", "s-10"), Ordering::Less);
        assert_eq!(
            compare_session_ids("s-99999999999999999999999", "s-100000000000000000000000"),
            Ordering::Less,
            "numbers wider than u64 still order by value"
        );
    }

    #[test]
    fn numeric_columns_sort_descending_with_ties_by_id() {
        let mut sessions = vec![
            session("s-10", "b", "t", 5.0),
            session("s-2", "a", "t", 5.0),
            session("s-3", "c", "t", 50.0),
            session("s-1", "a", "t", 0.5),
        ];
        sessions[0].duration_ms = 100;
        sessions[1].duration_ms = 9_000;
        sessions[2].duration_ms = 100;
        sessions[3].stall_count = 4;
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Cpu))),
            ["s-3", "s-2", "s-10", "s-1"]
        );
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Dur))),
            ["s-2", "s-3", "s-10", "s-1"]
        );
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Stalls))),
            ["s-1", "s-2", "s-3", "s-10"]
        );
    }

    #[test]
    fn text_columns_sort_ascending_with_ties_by_id() {
        let sessions = vec![
            session("s-10", "b", "t", 1.0),
            session("s-9", "a", "t", 2.0),
            session("s-1", "b", "t", 3.0),
        ];
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Agent))),
            ["s-9", "s-1", "s-10"]
        );
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Session))),
            ["s-1", "s-9", "s-10"]
        );
    }

    #[test]
    fn filters_are_exact_and_combine() {
        let mut sessions = vec![
            session("s-1", "echo", "acme", 1.0),
            session("s-2", "echo", "acme-eu", 2.0),
            session("s-3", "llm", "acme", 3.0),
            session("s-4", "echo", "acme", 4.0),
        ];
        sessions[3].state = SessionState::Slow;
        let acme = ViewOptions {
            tenant: Some("acme".into()),
            ..ViewOptions::default()
        };
        assert_eq!(
            ids(&select_sessions(&sessions, &acme)),
            ["s-4", "s-3", "s-1"]
        );
        let acme_echo = ViewOptions {
            agent: Some("echo".into()),
            ..acme.clone()
        };
        assert_eq!(ids(&select_sessions(&sessions, &acme_echo)), ["s-4", "s-1"]);
        let acme_echo_slow = ViewOptions {
            status: Some(SessionState::Slow),
            ..acme_echo
        };
        assert_eq!(ids(&select_sessions(&sessions, &acme_echo_slow)), ["s-4"]);
        let draining = ViewOptions {
            status: Some(SessionState::Draining),
            ..ViewOptions::default()
        };
        assert!(select_sessions(&sessions, &draining).is_empty());
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
    fn an_empty_table_has_titles_only() {
        assert_eq!(
            session_table(&[]),
            "SESSION  AGENT  TENANT  DUR(s)  CPU%  STALLS  STATUS\n"
        );
    }

    #[test]
    fn columns_fit_their_content_and_numbers_align_right() {
        let mut long = session("s-1", "transcriber", "acme", 187.5);
        long.duration_ms = 123_456;
        let short = session("s-22", "a", "b", 3.0);
        let table = session_table(&[&long, &short]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "SESSION  AGENT        TENANT  DUR(s)   CPU%  STALLS  STATUS",
                "s-1      transcriber  acme     123.5  187.5       0  active",
                "s-22     a            b          0.0    3.0       0  active",
            ]
        );
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
                reason: "operator".into()
            }),
            "cancelled (operator)"
        );
    }

    #[test]
    fn a_filter_matching_nothing_still_shows_the_header() {
        let mut snapshot = PoolSnapshot::default();
        snapshot.worker.name = "demo".into();
        snapshot.sessions.push(session("s-1", "echo", "acme", 1.0));
        let nobody = ViewOptions {
            tenant: Some("globex".into()),
            ..ViewOptions::default()
        };
        let block = render_worker(&snapshot, &nobody);
        assert!(block.starts_with("worker demo pid 0"), "{block}");
        assert!(
            block.ends_with("(no matching sessions: tenant=globex)\n"),
            "{block}"
        );
        let unfiltered = render_worker(&PoolSnapshot::default(), &ViewOptions::default());
        assert!(unfiltered.ends_with("(no live sessions)\n"), "{unfiltered}");
    }
}
