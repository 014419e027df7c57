//! The one definition of the session table's columns, shared by `--once` and the live view:
//! each column's title, alignment, sort key and cell text, how approximate memory is marked,
//! and the order in which a narrow screen gives columns up.

use openrtc_proto::{MemSource, SessionSnapshot};

use super::format::{
    clean_text, format_bytes_compact, format_cpu_percent, format_late, format_seconds_tenths,
    format_status,
};
use super::tui::view::text::Align;
use crate::cli::SortKey;

/// The widest a name cell (worker, session, agent, tenant) gets before it is cut with `…`.
pub const NAME_CELL_MAX_CHARS: usize = 32;

/// A column of the session table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// The worker a session runs in (the live view, when several workers are shown).
    Worker,
    /// The session id.
    Session,
    /// The agent name.
    Agent,
    /// The tenant name.
    Tenant,
    /// How the session is isolated: `coro` (a task of the worker) or `proc` (a process of
    /// its own).
    Iso,
    /// Seconds since the session started.
    Dur,
    /// CPU% over the worker's CPU window.
    Cpu,
    /// Live memory.
    Mem,
    /// Peak memory.
    Peak,
    /// Stalls the session caused.
    Stalls,
    /// A phone call's outbound audio lateness p99 (`-` for a session that is not a call),
    /// with `!` when its audio is degrading.
    Late,
    /// The session's state.
    Status,
}

impl Column {
    /// The session columns, in table order; the worker column, when shown, comes first.
    pub const SESSION_COLUMNS: [Self; 11] = [
        Self::Session,
        Self::Agent,
        Self::Tenant,
        Self::Iso,
        Self::Dur,
        Self::Cpu,
        Self::Mem,
        Self::Peak,
        Self::Stalls,
        Self::Late,
        Self::Status,
    ];

    /// The order in which a screen too narrow for every column gives them up, first given up
    /// first: the isolation (the detail pane shows a process), the tenant (the `t` key still
    /// lists tenants), the peak (MEM tells the present), the calls' lateness (the detail pane
    /// shows it), the agent, the worker, the duration, the stall count, memory, CPU%. SESSION
    /// and STATUS are never given up, and the sort column is kept while any other can go.
    pub const DROP_ORDER: [Self; 10] = [
        Self::Iso,
        Self::Tenant,
        Self::Peak,
        Self::Late,
        Self::Agent,
        Self::Worker,
        Self::Dur,
        Self::Stalls,
        Self::Mem,
        Self::Cpu,
    ];

    /// The column title; the memory titles depend on how approximate figures are marked.
    #[must_use]
    pub fn title(self, marking: MemoryMarking) -> &'static str {
        match self {
            Self::Worker => "WORKER",
            Self::Session => "SESSION",
            Self::Agent => "AGENT",
            Self::Tenant => "TENANT",
            Self::Iso => "ISO",
            Self::Dur => "DUR(s)",
            Self::Cpu => "CPU%",
            Self::Mem => marking.memory_title(),
            Self::Peak => "PEAK",
            Self::Stalls => "STALLS",
            Self::Late => "LATE",
            Self::Status => "STATUS",
        }
    }

    /// How cells of the column are aligned: text left, numbers right.
    #[must_use]
    pub fn alignment(self) -> Align {
        match self {
            Self::Worker
            | Self::Session
            | Self::Agent
            | Self::Tenant
            | Self::Iso
            | Self::Status => Align::Left,
            Self::Dur | Self::Cpu | Self::Mem | Self::Peak | Self::Stalls | Self::Late => {
                Align::Right
            }
        }
    }

    /// The sort key of the column (the worker and isolation columns have none).
    #[must_use]
    pub fn sort_key(self) -> Option<SortKey> {
        match self {
            Self::Worker | Self::Iso => None,
            Self::Session => Some(SortKey::Session),
            Self::Agent => Some(SortKey::Agent),
            Self::Tenant => Some(SortKey::Tenant),
            Self::Dur => Some(SortKey::Dur),
            Self::Cpu => Some(SortKey::Cpu),
            Self::Mem => Some(SortKey::Mem),
            Self::Peak => Some(SortKey::Peak),
            Self::Stalls => Some(SortKey::Stalls),
            Self::Late => Some(SortKey::Late),
            Self::Status => Some(SortKey::Status),
        }
    }

    /// Whether the column holds names, whose width follows the screen.
    #[must_use]
    pub fn is_name(self) -> bool {
        matches!(
            self,
            Self::Worker | Self::Session | Self::Agent | Self::Tenant
        )
    }

    /// The text of one session's cell, as `--once` prints it (the live view shortens only
    /// STATUS, to fit a fixed column). Memory figures of an approximate worker end in `~`
    /// when the marking asks for it.
    #[must_use]
    pub fn cell_text(self, row: &RowSource<'_>, marking: MemoryMarking) -> String {
        let session = row.session;
        match self {
            Self::Worker => clean_text(row.worker_name, NAME_CELL_MAX_CHARS),
            Self::Session => session.id.to_string(),
            Self::Agent => clean_text(&session.agent, NAME_CELL_MAX_CHARS),
            Self::Tenant => clean_text(&session.tenant, NAME_CELL_MAX_CHARS),
            Self::Iso => isolation_cell(session).to_owned(),
            Self::Dur => format_seconds_tenths(session.duration_ms),
            Self::Cpu => format_cpu_percent(session.cpu_pct),
            Self::Mem => marking.memory_cell(session.mem_bytes, row.mem_source),
            Self::Peak => marking.memory_cell(session.mem_peak_bytes, row.mem_source),
            Self::Stalls => session.stall_count.to_string(),
            Self::Late => format_late(session),
            Self::Status => format_status(session),
        }
    }
}

/// A session's isolation as the ISO column shows it: `proc` when it runs in a process of its
/// own, `coro` when it is a task of the worker.
#[must_use]
pub fn isolation_cell(session: &SessionSnapshot) -> &'static str {
    if session.process.is_some() {
        "proc"
    } else {
        "coro"
    }
}

/// One session row and what the table needs to know of its worker.
#[derive(Clone, Copy, Debug)]
pub struct RowSource<'a> {
    /// The worker's name.
    pub worker_name: &'a str,
    /// Whether the worker's memory figures are exact.
    pub mem_source: MemSource,
    /// The session.
    pub session: &'a SessionSnapshot,
}

/// How approximate memory figures (`mem_source: rss_share`, an equal share of the worker's
/// RSS) are marked in a table showing the sessions of one or more workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryMarking {
    /// Every figure shown is exact: `MEM`, plain figures.
    #[default]
    Exact,
    /// Every figure shown is approximate: the title says so once, `MEM~`.
    Approximate,
    /// Exact and approximate workers side by side: the title is `MEM`, and each approximate
    /// figure (MEM and PEAK) ends in `~`.
    Mixed,
}

impl MemoryMarking {
    /// The marking for a table showing workers with these memory sources (no worker: exact).
    #[must_use]
    pub fn of(sources: impl IntoIterator<Item = MemSource>) -> Self {
        let (mut exact, mut approximate) = (false, false);
        for source in sources {
            if source.is_exact() {
                exact = true;
            } else {
                approximate = true;
            }
        }
        match (exact, approximate) {
            (_, false) => Self::Exact,
            (false, true) => Self::Approximate,
            (true, true) => Self::Mixed,
        }
    }

    /// The title of the memory column: `MEM~` only when every figure is approximate.
    #[must_use]
    pub fn memory_title(self) -> &'static str {
        match self {
            Self::Approximate => "MEM~",
            Self::Exact | Self::Mixed => "MEM",
        }
    }

    /// Whether approximate figures carry a `~` of their own.
    #[must_use]
    pub fn marks_cells(self) -> bool {
        self == Self::Mixed
    }

    /// A memory cell: the compact figure, and when this marking marks cells, `~` after an
    /// approximate figure or a space after an exact one (so the digits stay aligned).
    #[must_use]
    pub fn memory_cell(self, bytes: u64, mem_source: MemSource) -> String {
        let mut text = format_bytes_compact(bytes);
        if self.marks_cells() {
            text.push(if mem_source.is_exact() { ' ' } else { '~' });
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_title_says_approximate_only_when_every_worker_is() {
        use MemSource::{RssShare, Tracked};
        assert_eq!(MemoryMarking::of([]), MemoryMarking::Exact);
        assert_eq!(MemoryMarking::of([Tracked, Tracked]), MemoryMarking::Exact);
        assert_eq!(
            MemoryMarking::of([RssShare, RssShare]),
            MemoryMarking::Approximate
        );
        assert_eq!(MemoryMarking::of([Tracked, RssShare]), MemoryMarking::Mixed);
        assert_eq!(MemoryMarking::Exact.memory_title(), "MEM");
        assert_eq!(MemoryMarking::Approximate.memory_title(), "MEM~");
        assert_eq!(MemoryMarking::Mixed.memory_title(), "MEM");
    }

    #[test]
    fn only_a_mixed_table_marks_approximate_cells() {
        let mib = 9 * 1_048_576;
        assert_eq!(
            MemoryMarking::Mixed.memory_cell(mib, MemSource::RssShare),
            "9.0M~"
        );
        assert_eq!(
            MemoryMarking::Mixed.memory_cell(mib, MemSource::Tracked),
            "9.0M ",
            "a space keeps the digits aligned with the marked figures"
        );
        assert_eq!(
            MemoryMarking::Approximate.memory_cell(mib, MemSource::RssShare),
            "9.0M"
        );
    }

    #[test]
    fn every_column_but_session_and_status_can_be_given_up_once() {
        let mut droppable: Vec<Column> = Column::DROP_ORDER.to_vec();
        droppable.sort_by_key(|column| format!("{column:?}"));
        droppable.dedup();
        assert_eq!(droppable.len(), Column::DROP_ORDER.len());
        for column in Column::SESSION_COLUMNS {
            let kept = matches!(column, Column::Session | Column::Status);
            assert_eq!(!Column::DROP_ORDER.contains(&column), kept, "{column:?}");
        }
        for key in SortKey::ALL {
            assert_eq!(
                Column::SESSION_COLUMNS
                    .iter()
                    .filter(|column| column.sort_key() == Some(key))
                    .count(),
                1,
                "{key:?} names one column"
            );
        }
    }
}
