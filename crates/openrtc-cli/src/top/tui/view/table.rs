//! The session table: column titles with the sort marked, then only the rows on screen, each
//! formatted when drawn, with inline bars for CPU% and memory when the width allows.
//!
//! The columns are those of [`Column`], shared with `--once`. Their widths are chosen from the
//! screen width and the sort column, so they do not jump from one refresh to the next. A
//! screen too narrow for every column at its title's width gives up the bars first, then
//! whole columns in [`Column::DROP_ORDER`] (tenant, peak, agent, …), keeping SESSION, STATUS
//! and the sort column; no title and no session id is cut while a column can still go.

use openrtc_proto::{MemSource, SessionSnapshot, SessionState};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr as _;

use super::text::{Align, bar, fit};
use super::{Theme, describe_filters, put_line};
use crate::cli::SortKey;
use crate::top::columns::{Column, MemoryMarking, RowSource};
use crate::top::format::{clean_text, format_blocking_span, format_late};
use crate::top::tui::state::State;
use crate::top::tui::state::workers::WorkerEntry;

/// The width of the DUR(s) column.
const DURATION_WIDTH: usize = 7;
/// The width of the CPU% figure (the bar comes after it).
const CPU_WIDTH: usize = 5;
/// The width of the memory figures, without the `~` of an approximate one.
const MEMORY_WIDTH: usize = 5;
/// The width of the STALLS figures.
const STALLS_WIDTH: usize = 6;
/// The width of the LATE figures: `1234!`.
const LATE_WIDTH: usize = 5;
/// `coro` or `proc`.
const ISO_WIDTH: usize = 4;
/// The width of the STATUS column: fits `blocking 230ms`.
const STATUS_WIDTH: usize = 14;
/// The width name columns get before any goes to bars.
const NAME_PREFERRED_WIDTH: usize = 10;
/// The narrowest and widest inline bar.
const BAR_WIDTHS: (usize, usize) = (3, 10);
/// The name columns in the order they are given spare cells, one at a time each.
const NAME_GROWTH_ORDER: [Column; 4] = [
    Column::Session,
    Column::Agent,
    Column::Tenant,
    Column::Worker,
];

/// The widest a name column gets.
fn name_max_width(column: Column) -> usize {
    match column {
        Column::Session => 24,
        Column::Worker => 16,
        _ => 20,
    }
}

/// The columns shown on one screen width, with their widths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The columns shown, in table order, each with its width (for CPU% and MEM, the width
    /// of the figure; the bar comes after it).
    pub columns: Vec<(Column, usize)>,
    /// The inline bars after CPU% and MEM (0: none).
    pub bar: usize,
}

impl Layout {
    /// Fits the columns to `width` cells: every column at least as wide as its title (with
    /// the sort arrow on the sort column) and its figures, giving up whole columns in
    /// [`Column::DROP_ORDER`] until they fit (the sort column last); then spare cells go to
    /// the name columns, up to a preferred width, to the bars, and to the names again.
    /// ISO goes first of all when keeping it would leave a name column under its preferred
    /// width (a tenant cut to `inite…` says more than `coro` does).
    #[must_use]
    pub fn fit(
        width: usize,
        with_worker_column: bool,
        sort: SortKey,
        marking: MemoryMarking,
    ) -> Self {
        let (layout, names_squeezed) =
            Self::fit_without(width, with_worker_column, sort, marking, None);
        if names_squeezed && layout.shows(Column::Iso) {
            return Self::fit_without(width, with_worker_column, sort, marking, Some(Column::Iso))
                .0;
        }
        layout
    }

    /// [`Self::fit`] with one column left out from the start; also says whether a name column
    /// ended under its preferred width.
    fn fit_without(
        width: usize,
        with_worker_column: bool,
        sort: SortKey,
        marking: MemoryMarking,
        left_out: Option<Column>,
    ) -> (Self, bool) {
        let minimum = |column: Column| minimum_width(column, sort, marking);
        let mut shown: Vec<Column> = with_worker_column
            .then_some(Column::Worker)
            .into_iter()
            .chain(Column::SESSION_COLUMNS)
            .filter(|column| Some(*column) != left_out)
            .collect();
        let needed = |shown: &[Column]| {
            shown.iter().map(|column| minimum(*column)).sum::<usize>() + shown.len() - 1
        };
        let sorted_last = Column::DROP_ORDER
            .iter()
            .filter(|column| column.sort_key() != Some(sort))
            .chain(
                Column::DROP_ORDER
                    .iter()
                    .filter(|column| column.sort_key() == Some(sort)),
            );
        for column in sorted_last {
            if needed(&shown) <= width {
                break;
            }
            shown.retain(|kept| kept != column);
        }

        let mut widths: Vec<(Column, usize)> = shown
            .iter()
            .map(|column| (*column, minimum(*column)))
            .collect();
        let mut free = width.saturating_sub(needed(&shown));
        let preferred = |column: Column| NAME_PREFERRED_WIDTH.min(name_max_width(column));
        grow_names(&mut widths, &mut free, preferred);
        let names_squeezed = widths
            .iter()
            .any(|(column, width)| column.is_name() && *width < preferred(*column));
        let bars_fit = shown.contains(&Column::Cpu) && shown.contains(&Column::Mem);
        let bar = if bars_fit && free >= 2 * (BAR_WIDTHS.0 + 1) {
            (free / 2 - 1).min(BAR_WIDTHS.1)
        } else {
            0
        };
        if bar > 0 {
            free -= 2 * (bar + 1);
        }
        grow_names(&mut widths, &mut free, name_max_width);
        (
            Self {
                columns: widths,
                bar,
            },
            names_squeezed,
        )
    }

    /// Whether a column is shown.
    #[must_use]
    pub fn shows(&self, column: Column) -> bool {
        self.columns.iter().any(|(shown, _)| *shown == column)
    }

    /// The cells a column takes on screen: its width, and its bar after it for CPU% and MEM.
    fn cell_width(&self, column: Column, width: usize) -> usize {
        if self.bar > 0 && matches!(column, Column::Cpu | Column::Mem) {
            width + self.bar + 1
        } else {
            width
        }
    }

    /// The width of a whole row: every cell and the single spaces between them.
    #[must_use]
    pub fn row_width(&self) -> usize {
        self.columns
            .iter()
            .map(|(column, width)| self.cell_width(*column, *width))
            .sum::<usize>()
            + self.columns.len().saturating_sub(1)
    }
}

/// The narrowest a column gets: its figures' width, and its whole title, with the sort arrow
/// on the sort column.
fn minimum_width(column: Column, sort: SortKey, marking: MemoryMarking) -> usize {
    let figures = match column {
        Column::Dur => DURATION_WIDTH,
        Column::Cpu => CPU_WIDTH,
        Column::Mem | Column::Peak => MEMORY_WIDTH + usize::from(marking.marks_cells()),
        Column::Stalls => STALLS_WIDTH,
        Column::Late => LATE_WIDTH,
        Column::Iso => ISO_WIDTH,
        Column::Status => STATUS_WIDTH,
        Column::Worker | Column::Session | Column::Agent | Column::Tenant => 0,
    };
    let arrow = usize::from(column.sort_key() == Some(sort));
    figures.max(column.title(marking).width() + arrow)
}

/// Hands out `free` cells to the shown name columns, one at a time each in
/// [`NAME_GROWTH_ORDER`], until each has reached `limit` or nothing is left.
fn grow_names(widths: &mut [(Column, usize)], free: &mut usize, limit: impl Fn(Column) -> usize) {
    loop {
        let mut grew = false;
        for name in NAME_GROWTH_ORDER {
            if *free == 0 {
                return;
            }
            if let Some((_, width)) = widths.iter_mut().find(|(column, _)| *column == name) {
                if *width < limit(name) {
                    *width += 1;
                    *free -= 1;
                    grew = true;
                }
            }
        }
        if !grew {
            return;
        }
    }
}

/// How the memory figures of the workers shown are marked.
fn memory_marking(state: &State) -> MemoryMarking {
    MemoryMarking::of(
        state
            .live_snapshots()
            .map(|snapshot| snapshot.worker.mem_source),
    )
}

/// Draws the column titles and the rows on screen, or why there are none.
pub fn render(buffer: &mut Buffer, area: Rect, state: &State, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let marking = memory_marking(state);
    let layout = Layout::fit(
        usize::from(area.width),
        state.shows_worker_column(),
        state.settings().sort,
        marking,
    );
    let titles = title_line(state, &layout, marking, usize::from(area.width), theme);
    put_line(buffer, area, 0, &titles);

    let rows_area = Rect::new(area.x, area.y + 1, area.width, area.height - 1);
    if state.rows().is_empty() {
        let why = if !state.workers().iter().any(WorkerEntry::is_live) {
            "(no worker answers)".to_owned()
        } else if state.total_sessions() == 0 {
            "(no live sessions)".to_owned()
        } else {
            format!("(no sessions match: {})", describe_filters(state))
        };
        put_line(buffer, rows_area, 0, &Line::styled(why, theme.dim()));
        return;
    }
    let largest_memory = state
        .live_snapshots()
        .flat_map(|snapshot| snapshot.sessions.iter().map(|session| session.mem_bytes))
        .max()
        .unwrap_or(0);
    let visible = state
        .rows()
        .iter()
        .enumerate()
        .skip(state.scroll_offset())
        .take(usize::from(rows_area.height));
    for (offset, (index, row)) in (0..).zip(visible) {
        let Some((worker, session)) = state.row(*row) else {
            continue;
        };
        let selected = state.selected_row() == Some(index);
        let row = RowSource {
            worker_name: worker.name(),
            mem_source: worker
                .snapshot()
                .map_or(MemSource::default(), |snapshot| snapshot.worker.mem_source),
            session,
        };
        let line = session_line(&row, &layout, marking, largest_memory, selected, theme);
        let line_area = Rect::new(rows_area.x, rows_area.y + offset, rows_area.width, 1);
        if selected {
            buffer.set_style(line_area, theme.selected_row());
        }
        put_line(buffer, line_area, 0, &line);
    }
}

/// The titles of the columns; the sort column is marked with ▼ (descending) or ▲.
fn title_line(
    state: &State,
    layout: &Layout,
    marking: MemoryMarking,
    width: usize,
    theme: Theme,
) -> Line<'static> {
    let settings = state.settings();
    let descending = settings.sort.is_numeric() != settings.sort_inverted;
    let arrow = if descending { "▼" } else { "▲" };
    let mut spans = Vec::new();
    let mut used = 0;
    for (column, column_width) in &layout.columns {
        let sorted = column.sort_key() == Some(settings.sort);
        let title = column.title(marking);
        let text = if sorted {
            format!("{title}{arrow}")
        } else {
            title.to_owned()
        };
        let style = if sorted {
            theme.sorted_column_title()
        } else {
            theme.column_titles()
        };
        // The titles over a figure and its bar start where the cell starts.
        let align = if matches!(column, Column::Cpu | Column::Mem) {
            Align::Left
        } else {
            column.alignment()
        };
        let cell_width = layout.cell_width(*column, *column_width);
        let gap = if used == 0 { "" } else { " " };
        spans.push(Span::styled(gap, theme.column_titles()));
        spans.push(Span::styled(fit(&text, cell_width, align), style));
        used += gap.len() + cell_width;
    }
    spans.push(Span::styled(
        " ".repeat(width.saturating_sub(used)),
        theme.column_titles(),
    ));
    Line::from(spans)
}

/// One session's row. Slow rows are highlighted; a session blocking a thread now shows for
/// how long in its STATUS cell, in the alert style.
fn session_line(
    row: &RowSource<'_>,
    layout: &Layout,
    marking: MemoryMarking,
    largest_memory: u64,
    selected: bool,
    theme: Theme,
) -> Line<'static> {
    let session: &SessionSnapshot = row.session;
    let row_style = match session.state {
        _ if selected => Style::new(),
        SessionState::Slow => theme.warning(),
        SessionState::Draining => theme.dim(),
        _ => Style::new(),
    };
    let bar_style = |style: Style| if selected { Style::new() } else { style };
    let mut spans: Vec<Span<'static>> = Vec::with_capacity(24);
    let mut cell = |text: String, style: Style| {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(text, style));
    };
    for (column, width) in &layout.columns {
        match column {
            Column::Status => match session.blocking_for_ms {
                Some(blocking_ms) => cell(
                    fit(
                        &format!("blocking {}", format_blocking_span(blocking_ms)),
                        *width,
                        Align::Left,
                    ),
                    if selected {
                        Style::new()
                    } else {
                        theme.alert()
                    },
                ),
                None => cell(fit(session.state.as_str(), *width, Align::Left), row_style),
            },
            Column::Worker => cell(
                fit(&clean_text(row.worker_name, 64), *width, Align::Left),
                row_style,
            ),
            Column::Late => {
                let degrading = session.media.as_ref().is_some_and(|media| media.degrading);
                let style = if degrading && !selected {
                    theme.warning()
                } else {
                    row_style
                };
                cell(fit(&format_late(session), *width, Align::Right), style);
            }
            other => {
                let text = other.cell_text(row, marking);
                cell(fit(&text, *width, other.alignment()), row_style);
                if layout.bar > 0 && *other == Column::Cpu {
                    cell(
                        bar(session.cpu_pct / 100.0, layout.bar),
                        bar_style(theme.cpu_bar()),
                    );
                }
                if layout.bar > 0 && *other == Column::Mem {
                    // Precision loss only past 2^53 bytes; the ratio is for drawing.
                    #[allow(clippy::cast_precision_loss)]
                    let fraction = if largest_memory == 0 {
                        0.0
                    } else {
                        session.mem_bytes as f64 / largest_memory as f64
                    };
                    cell(bar(fraction, layout.bar), bar_style(theme.memory_bar()));
                }
            }
        }
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of a layout, without their widths.
    fn shown(layout: &Layout) -> Vec<Column> {
        layout.columns.iter().map(|(column, _)| *column).collect()
    }

    #[test]
    fn columns_fit_every_width_from_60_with_whole_titles() {
        for width in 60..=300 {
            for with_worker in [false, true] {
                for sort in SortKey::ALL {
                    for marking in [MemoryMarking::Exact, MemoryMarking::Mixed] {
                        let layout = Layout::fit(width, with_worker, sort, marking);
                        let context = format!("{width} wide, worker {with_worker}, {sort:?}");
                        assert!(layout.row_width() <= width, "{context}: {layout:?}");
                        for (column, column_width) in &layout.columns {
                            assert!(
                                *column_width >= minimum_width(*column, sort, marking),
                                "{context}: {column:?} is cut in {layout:?}"
                            );
                        }
                        assert!(layout.shows(Column::Session) && layout.shows(Column::Status));
                        assert!(
                            layout
                                .columns
                                .iter()
                                .any(|(column, _)| column.sort_key() == Some(sort)),
                            "{context}: the sort column is kept"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_screens_give_up_columns_in_the_documented_order() {
        let at = |width, sort| shown(&Layout::fit(width, false, sort, MemoryMarking::Exact));
        use Column::{Agent, Cpu, Dur, Late, Mem, Peak, Session, Stalls, Status, Tenant};
        assert_eq!(
            at(80, SortKey::Cpu),
            [
                Session, Agent, Tenant, Dur, Cpu, Mem, Peak, Stalls, Late, Status
            ]
        );
        assert_eq!(
            at(73, SortKey::Cpu),
            [Session, Agent, Dur, Cpu, Mem, Peak, Stalls, Late, Status],
            "the tenant goes first"
        );
        assert_eq!(
            at(61, SortKey::Cpu),
            [Session, Agent, Dur, Cpu, Mem, Stalls, Late, Status],
            "then the peak"
        );
        assert_eq!(
            at(60, SortKey::Cpu),
            [Session, Agent, Dur, Cpu, Mem, Stalls, Status],
            "then the calls' lateness"
        );
        assert_eq!(
            at(60, SortKey::Late),
            [Session, Dur, Cpu, Mem, Stalls, Late, Status],
            "unless it is the sort column"
        );
        assert_eq!(
            at(60, SortKey::Tenant),
            [Session, Tenant, Dur, Cpu, Mem, Stalls, Status],
            "the sort column stays while others can go"
        );
        assert_eq!(at(40, SortKey::Cpu), [Session, Cpu, Mem, Status]);
        let with_worker = shown(&Layout::fit(66, true, SortKey::Cpu, MemoryMarking::Exact));
        assert_eq!(
            with_worker,
            [
                Column::Worker,
                Session,
                Agent,
                Dur,
                Cpu,
                Mem,
                Stalls,
                Status
            ]
        );
    }

    #[test]
    fn wide_screens_get_bars_and_the_widest_names() {
        let wide = Layout::fit(200, false, SortKey::Cpu, MemoryMarking::Exact);
        assert_eq!(wide.bar, BAR_WIDTHS.1);
        let names: Vec<usize> = wide
            .columns
            .iter()
            .filter(|(column, _)| column.is_name())
            .map(|(_, width)| *width)
            .collect();
        assert_eq!(names, [24, 20, 20]);
        let normal = Layout::fit(86, false, SortKey::Cpu, MemoryMarking::Exact);
        assert_eq!(normal.bar, 0);
        assert_eq!(
            normal.columns[..3],
            [
                (Column::Session, 10),
                (Column::Agent, 10),
                (Column::Tenant, 10)
            ]
        );
    }

    #[test]
    fn the_sort_column_is_wide_enough_for_its_arrow() {
        let by_stalls = Layout::fit(120, false, SortKey::Stalls, MemoryMarking::Exact);
        assert!(
            by_stalls.columns.contains(&(Column::Stalls, 7)),
            "{by_stalls:?}"
        );
        let by_cpu = Layout::fit(120, false, SortKey::Cpu, MemoryMarking::Exact);
        assert!(by_cpu.columns.contains(&(Column::Stalls, 6)), "{by_cpu:?}");
    }
}
