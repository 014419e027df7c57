//! The text of `openrtc top`: the filter and sort of sessions and every formatting function
//! from a [`PoolSnapshot`] to printable lines. Pure functions, no I/O.

use std::fmt::Write as _;

use openrtc_proto::{
    EndedSessionSnapshot, MemSource, PoolSnapshot, SessionSnapshot, SessionState, WorkerSnapshot,
};

use super::columns::{Column, MemoryMarking, NAME_CELL_MAX_CHARS, RowSource};
use super::flight_recorder::{once_log_line, once_section};
use super::format::{
    clean_text, compare_sessions, format_mebibytes, format_outcome, format_seconds_tenths,
    format_short_span, format_uptime, refusal_summary,
};
use super::tenants::{failure_streak, once_lines};
use super::tui::view::text::Align;
use crate::cli::SortKey;

/// How many recently ended sessions a worker block lists at most.
pub const RECENTLY_ENDED_ROWS: usize = 5;

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
/// in numeric order (`SessionId`'s order: `s-2` before `s-10`).
#[must_use]
pub fn select_sessions<'snapshot>(
    sessions: &'snapshot [SessionSnapshot],
    options: &ViewOptions,
) -> Vec<&'snapshot SessionSnapshot> {
    let mut selected: Vec<&SessionSnapshot> = sessions
        .iter()
        .filter(|session| options.admits(session))
        .collect();
    selected.sort_by(|left, right| compare_sessions(options.sort, left, right));
    selected
}

/// The snapshot `--format json` prints for these options: the same shape and worker figures,
/// with only the live sessions that pass the filters, in the sort order, and only the recently
/// ended sessions that pass the agent and tenant filters.
#[must_use]
pub fn filtered_snapshot(snapshot: &PoolSnapshot, options: &ViewOptions) -> PoolSnapshot {
    let mut filtered = snapshot.clone();
    filtered.sessions = select_sessions(&snapshot.sessions, options)
        .into_iter()
        .cloned()
        .collect();
    filtered
        .recently_ended
        .retain(|session| options.admits_names(&session.agent, &session.tenant));
    filtered
}

/// The two header lines of a worker block: who it is and what it holds, then its lifetime
/// counters.
#[must_use]
pub fn worker_header(worker: &WorkerSnapshot) -> String {
    let threads_word = if worker.worker_threads == 1 {
        "worker thread"
    } else {
        "worker threads"
    };
    let mut header = format!(
        "worker {} pid {} · up {} · {} {threads_word} · sessions {}/{} · rss {} · cpu {:.1}% · {} threads in all · {} fds",
        clean_text(&worker.name, NAME_CELL_MAX_CHARS),
        worker.pid,
        format_uptime(worker.uptime_ms),
        worker.worker_threads,
        worker.active_sessions,
        worker.max_sessions,
        format_mebibytes(worker.rss_bytes),
        worker.process_cpu_pct,
        worker.threads_count,
        worker.open_fds_count,
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

    let (refused_total, refusal_reasons) = refusal_summary(&worker.refusals);
    let _ = write!(header, " · refused {refused_total}");
    if let Some(reasons) = refusal_reasons {
        let _ = write!(header, " ({reasons})");
    }
    if let Some(streak) = failure_streak(worker) {
        let _ = write!(header, " · {}", streak.text);
    }

    let _ = write!(
        header,
        " · stalls {} ({} now",
        worker.stalls_total_count, worker.stalls_in_progress_count
    );
    if worker.stalls_preempted_count > 0 {
        let _ = write!(header, ", {} the host's", worker.stalls_preempted_count);
    }
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

/// Lays out a table: every column as wide as its widest cell or title, columns separated by
/// two spaces, no trailing spaces, every line prefixed by `indent`.
pub(crate) fn render_table(
    columns: &[(&str, Align)],
    rows: &[Vec<String>],
    indent: &str,
) -> String {
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
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// The live-session table of one worker, laid out as [`Column::SESSION_COLUMNS`] say: the
/// column titles, then one row per session in the given order. `mem_source` says whether the
/// memory figures are exact (`MEM`) or approximate (`MEM~`).
#[must_use]
pub fn session_table(
    worker_name: &str,
    sessions: &[&SessionSnapshot],
    mem_source: MemSource,
) -> String {
    let marking = MemoryMarking::of([mem_source]);
    let columns: Vec<(&str, Align)> = Column::SESSION_COLUMNS
        .iter()
        .map(|column| (column.title(marking), column.alignment()))
        .collect();
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|session| {
            let row = RowSource {
                worker_name,
                mem_source,
                session,
            };
            Column::SESSION_COLUMNS
                .iter()
                .map(|column| column.cell_text(&row, marking))
                .collect()
        })
        .collect();
    render_table(&columns, &rows, "")
}

/// The `recently ended:` section: a title and an indented table of the given sessions.
#[must_use]
pub fn recently_ended_section(ended: &[&EndedSessionSnapshot]) -> String {
    let columns = [
        ("SESSION", Align::Left),
        ("AGENT", Align::Left),
        ("TENANT", Align::Left),
        ("DUR(s)", Align::Right),
        ("OUTCOME", Align::Left),
    ];
    let rows: Vec<Vec<String>> = ended
        .iter()
        .map(|session| {
            vec![
                session.id.to_string(),
                clean_text(&session.agent, NAME_CELL_MAX_CHARS),
                clean_text(&session.tenant, NAME_CELL_MAX_CHARS),
                format_seconds_tenths(session.duration_ms),
                format_outcome(&session.outcome),
            ]
        })
        .collect();
    format!("recently ended:\n{}", render_table(&columns, &rows, "  "))
}

/// One worker's whole block: header, its log file line (see [`once_log_line`]), the tenant
/// lines and table (see [`once_lines`]), session table (or why it is empty), and the most
/// recently ended sessions that pass the agent and tenant filters, each followed by the last
/// records it logged when it kept any (see [`once_section`]).
#[must_use]
pub fn render_worker(snapshot: &PoolSnapshot, options: &ViewOptions) -> String {
    let mut block = worker_header(&snapshot.worker);
    block.push_str(&once_log_line(&snapshot.worker));
    block.push_str(&once_lines(snapshot, options.tenant.as_deref()));
    let selected = select_sessions(&snapshot.sessions, options);
    block.push_str(&session_table(
        &snapshot.worker.name,
        &selected,
        snapshot.worker.mem_source,
    ));
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
        for session in &ended {
            let section = once_section(session, &snapshot.worker);
            if !section.is_empty() {
                block.push('\n');
                block.push_str(&section);
            }
        }
    }
    block
}

/// Every worker's block, ordered by worker name then pid, separated by blank lines.
#[must_use]
pub fn render_workers(snapshots: &[&PoolSnapshot], options: &ViewOptions) -> String {
    by_worker(snapshots.iter().copied())
        .iter()
        .map(|snapshot| render_worker(snapshot, options))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The snapshots in the order workers are shown: by name, then pid.
#[must_use]
pub fn by_worker<'a>(
    snapshots: impl IntoIterator<Item = &'a PoolSnapshot>,
) -> Vec<&'a PoolSnapshot> {
    let mut ordered: Vec<&PoolSnapshot> = snapshots.into_iter().collect();
    ordered.sort_by(|left, right| {
        (&left.worker.name, left.worker.pid).cmp(&(&right.worker.name, right.worker.pid))
    });
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::format::test_session as session;

    /// The ids of the selected sessions, in order.
    fn ids(selected: &[&SessionSnapshot]) -> Vec<String> {
        selected
            .iter()
            .map(|session| session.id.to_string())
            .collect()
    }

    /// Options sorting by `sort` without filters.
    fn sorted_by(sort: SortKey) -> ViewOptions {
        ViewOptions {
            sort,
            ..ViewOptions::default()
        }
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
    fn an_empty_table_has_titles_only() {
        assert_eq!(
            session_table("demo", &[], MemSource::Tracked),
            "SESSION  AGENT  TENANT  ISO  DUR(s)  CPU%  MEM  PEAK  STALLS  LATE  STATUS\n"
        );
    }

    #[test]
    fn columns_fit_their_content_and_numbers_align_right() {
        let mut long = session("s-1", "transcriber", "acme", 187.5);
        long.duration_ms = 123_456;
        // In a process of its own: `proc` in the ISO column.
        long.process = Some(openrtc_proto::ProcessSnapshot::default());
        let short = session("s-22", "a", "b", 3.0);
        long.mem_bytes = 10_276_044;
        long.mem_peak_bytes = 128_974_848;
        let table = session_table("demo", &[&long, &short], MemSource::RssShare);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "SESSION  AGENT        TENANT  ISO   DUR(s)   CPU%  MEM~  PEAK  STALLS  LATE  STATUS",
                "s-1      transcriber  acme    proc   123.5  187.5  9.8M  123M       0     -  active",
                "s-22     a            b       coro     0.0    3.0     0     0       0     -  active",
            ]
        );
    }

    #[test]
    fn calls_show_their_lateness_flagged_when_degrading_and_sort_by_it() {
        let call = |id: &str, late_ms: f64, degrading: bool| {
            let mut row = session(id, "echo", "acme", 1.0);
            let mut media = openrtc_proto::CallMediaSnapshot::default();
            media.outbound_lateness_p99_ms = late_ms;
            media.degrading = degrading;
            row.media = Some(media);
            row
        };
        let prompt = call("s-1", 2.4, false);
        let late = call("s-2", 181.6, true);
        let plain = session("s-3", "echo", "acme", 1.0);
        let table = session_table("demo", &[&prompt, &late, &plain], MemSource::Tracked);
        let late_cells: Vec<&str> = table
            .lines()
            .map(|line| line.split_whitespace().nth(9).unwrap_or(""))
            .collect();
        assert_eq!(late_cells, ["LATE", "2", "182!", "-"], "{table}");
        let sessions = [prompt, late, plain];
        assert_eq!(
            ids(&select_sessions(&sessions, &sorted_by(SortKey::Late))),
            ["s-2", "s-1", "s-3"],
            "latest first, sessions that are not calls last"
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
