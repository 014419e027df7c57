//! The session table: column titles with the sort marked, then only the rows on screen, each
//! formatted when drawn, with inline bars for CPU% and memory when the width allows.
//!
//! Columns have fixed widths chosen from the screen width, so they do not jump from one
//! refresh to the next. Narrow screens lose the bars first, then the PEAK column.

use openrtc_proto::{SessionSnapshot, SessionState};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::text::{Align, bar, fit};
use super::{Theme, describe_filters, put_line};
use crate::cli::SortKey;
use crate::top::format::{
    clean_text, format_blocking_span, format_bytes_compact, format_cpu_percent,
    format_seconds_tenths,
};
use crate::top::table::memory_column_title;
use crate::top::tui::state::State;
use crate::top::tui::state::workers::WorkerEntry;

/// The width of the DUR(s) column.
const DURATION_WIDTH: usize = 7;
/// The width of the CPU% figure (the bar comes after it).
const CPU_WIDTH: usize = 5;
/// The width of the memory figures.
const MEMORY_WIDTH: usize = 5;
/// The width of the STALLS column.
const STALLS_WIDTH: usize = 6;
/// The width of the STATUS column: fits `blocking 230ms`.
const STATUS_WIDTH: usize = 14;
/// The narrowest a name column (session, agent, tenant, worker) gets.
const NAME_MIN_WIDTH: usize = 5;
/// The width name columns get before any goes to bars.
const NAME_PREFERRED_WIDTH: usize = 10;
/// The widest the session, agent and tenant columns get.
const NAME_MAX_WIDTHS: [usize; 3] = [24, 20, 20];
/// The widest the worker column gets.
const WORKER_MAX_WIDTH: usize = 16;
/// The narrowest and widest inline bar.
const BAR_WIDTHS: (usize, usize) = (3, 10);

/// The column widths for one screen width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The worker column, when several workers are shown.
    pub worker: Option<usize>,
    /// The session, agent and tenant columns.
    pub names: [usize; 3],
    /// The inline bars after CPU% and MEM (0: none).
    pub bar: usize,
    /// Whether the PEAK column fits.
    pub peak: bool,
}

impl Columns {
    /// Fits the columns to `width` cells.
    #[must_use]
    pub fn fit(width: usize, with_worker_column: bool) -> Self {
        let mut peak = true;
        let fixed_width = |peak: bool| {
            let (columns, cells) = (
                9 + usize::from(with_worker_column) - usize::from(!peak),
                DURATION_WIDTH
                    + CPU_WIDTH
                    + MEMORY_WIDTH
                    + if peak { MEMORY_WIDTH } else { 0 }
                    + STALLS_WIDTH
                    + STATUS_WIDTH,
            );
            cells + columns - 1
        };
        let name_columns = 3 + usize::from(with_worker_column);
        let mut free = width.saturating_sub(fixed_width(true));
        if free < name_columns * NAME_MIN_WIDTH + name_columns * 2 {
            peak = false;
            free = width.saturating_sub(fixed_width(false));
        }
        let preferred = (name_columns * NAME_PREFERRED_WIDTH).min(free);
        let spare = free - preferred;
        let bar = if spare >= 2 * (BAR_WIDTHS.0 + 1) {
            (spare / 2 - 1).min(BAR_WIDTHS.1)
        } else {
            0
        };
        let mut name_space = free - if bar > 0 { 2 * (bar + 1) } else { 0 };
        let mut widths = [0; 4];
        let maxima = [
            WORKER_MAX_WIDTH,
            NAME_MAX_WIDTHS[0],
            NAME_MAX_WIDTHS[1],
            NAME_MAX_WIDTHS[2],
        ];
        let first = usize::from(!with_worker_column);
        // Hand out the space one cell at a time, round robin, up to each column's maximum.
        'fill: loop {
            let mut grew = false;
            for column in first..4 {
                if name_space == 0 {
                    break 'fill;
                }
                if widths[column] < maxima[column] {
                    widths[column] += 1;
                    name_space -= 1;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        Self {
            worker: with_worker_column.then_some(widths[0]),
            names: [widths[1], widths[2], widths[3]],
            bar,
            peak,
        }
    }
}

/// Draws the column titles and the rows on screen, or why there are none.
pub fn render(buffer: &mut Buffer, area: Rect, state: &State, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let columns = Columns::fit(usize::from(area.width), state.shows_worker_column());
    let approximate = state
        .live_snapshots()
        .any(|snapshot| !snapshot.worker.mem_source.is_exact());
    let memory_title = memory_column_title(if approximate {
        openrtc_proto::MemSource::RssShare
    } else {
        openrtc_proto::MemSource::Tracked
    });
    let titles = title_line(state, columns, memory_title, usize::from(area.width), theme);
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
        let line = session_line(worker, session, columns, largest_memory, selected, theme);
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
    columns: Columns,
    memory_title: &str,
    width: usize,
    theme: Theme,
) -> Line<'static> {
    let settings = state.settings();
    let descending = settings.sort.is_numeric() != settings.sort_inverted;
    let arrow = if descending { "▼" } else { "▲" };
    let mut spans = Vec::new();
    let mut used = 0;
    let mut title = |text: &str, cell_width: usize, align: Align, key: Option<SortKey>| {
        let sorted = key.is_some_and(|key| key == settings.sort);
        let text = if sorted {
            format!("{text}{arrow}")
        } else {
            text.to_owned()
        };
        let style = if sorted {
            theme.sorted_column_title()
        } else {
            theme.column_titles()
        };
        let gap = if used == 0 { "" } else { " " };
        spans.push(Span::styled(gap, theme.column_titles()));
        spans.push(Span::styled(fit(&text, cell_width, align), style));
        used += gap.len() + cell_width;
    };
    if let Some(worker_width) = columns.worker {
        title("WORKER", worker_width, Align::Left, None);
    }
    title(
        "SESSION",
        columns.names[0],
        Align::Left,
        Some(SortKey::Session),
    );
    title("AGENT", columns.names[1], Align::Left, Some(SortKey::Agent));
    title(
        "TENANT",
        columns.names[2],
        Align::Left,
        Some(SortKey::Tenant),
    );
    title("DUR(s)", DURATION_WIDTH, Align::Right, Some(SortKey::Dur));
    let bar_cells = if columns.bar > 0 { columns.bar + 1 } else { 0 };
    title(
        "CPU%",
        CPU_WIDTH + bar_cells,
        Align::Left,
        Some(SortKey::Cpu),
    );
    title(
        memory_title,
        MEMORY_WIDTH + bar_cells,
        Align::Left,
        Some(SortKey::Mem),
    );
    if columns.peak {
        title("PEAK", MEMORY_WIDTH, Align::Right, Some(SortKey::Peak));
    }
    title("STALLS", STALLS_WIDTH, Align::Right, Some(SortKey::Stalls));
    title("STATUS", STATUS_WIDTH, Align::Left, Some(SortKey::Status));
    spans.push(Span::styled(
        " ".repeat(width.saturating_sub(used)),
        theme.column_titles(),
    ));
    Line::from(spans)
}

/// One session's row. Slow rows are highlighted; a session blocking a thread now shows for
/// how long in its STATUS cell, in the alert style.
fn session_line(
    worker: &WorkerEntry,
    session: &SessionSnapshot,
    columns: Columns,
    largest_memory: u64,
    selected: bool,
    theme: Theme,
) -> Line<'static> {
    let row_style = match session.state {
        _ if selected => Style::new(),
        SessionState::Slow => theme.warning(),
        SessionState::Draining => theme.dim(),
        _ => Style::new(),
    };
    let mut spans: Vec<Span<'static>> = Vec::with_capacity(24);
    let mut cell = |text: String, style: Style| {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(text, style));
    };
    if let Some(worker_width) = columns.worker {
        cell(
            fit(&clean_text(worker.name(), 64), worker_width, Align::Left),
            row_style,
        );
    }
    for (text, width) in [&session.id, &session.agent, &session.tenant]
        .into_iter()
        .zip(columns.names)
    {
        cell(fit(&clean_text(text, 64), width, Align::Left), row_style);
    }
    cell(
        fit(
            &format_seconds_tenths(session.duration_ms),
            DURATION_WIDTH,
            Align::Right,
        ),
        row_style,
    );
    cell(
        fit(
            &format_cpu_percent(session.cpu_pct),
            CPU_WIDTH,
            Align::Right,
        ),
        row_style,
    );
    let bar_style = |style: Style| if selected { Style::new() } else { style };
    if columns.bar > 0 {
        cell(
            bar(session.cpu_pct / 100.0, columns.bar),
            bar_style(theme.cpu_bar()),
        );
    }
    cell(
        fit(
            &format_bytes_compact(session.mem_bytes),
            MEMORY_WIDTH,
            Align::Right,
        ),
        row_style,
    );
    if columns.bar > 0 {
        // Precision loss only past 2^53 bytes; the ratio is for drawing.
        #[allow(clippy::cast_precision_loss)]
        let fraction = if largest_memory == 0 {
            0.0
        } else {
            session.mem_bytes as f64 / largest_memory as f64
        };
        cell(bar(fraction, columns.bar), bar_style(theme.memory_bar()));
    }
    if columns.peak {
        cell(
            fit(
                &format_bytes_compact(session.mem_peak_bytes),
                MEMORY_WIDTH,
                Align::Right,
            ),
            row_style,
        );
    }
    cell(
        fit(&session.stall_count.to_string(), STALLS_WIDTH, Align::Right),
        row_style,
    );
    match session.blocking_for_ms {
        Some(blocking_ms) => cell(
            fit(
                &format!("blocking {}", format_blocking_span(blocking_ms)),
                STATUS_WIDTH,
                Align::Left,
            ),
            if selected {
                Style::new()
            } else {
                theme.alert()
            },
        ),
        None => cell(
            fit(session.state.as_str(), STATUS_WIDTH, Align::Left),
            row_style,
        ),
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The total width of a row laid out with these columns.
    fn row_width(columns: Columns) -> usize {
        let bars = if columns.bar > 0 {
            2 * (columns.bar + 1)
        } else {
            0
        };
        let cells = columns.worker.map_or(0, |width| width + 1)
            + columns.names.iter().sum::<usize>()
            + 2
            + DURATION_WIDTH
            + CPU_WIDTH
            + MEMORY_WIDTH
            + if columns.peak { MEMORY_WIDTH + 1 } else { 0 }
            + STALLS_WIDTH
            + STATUS_WIDTH
            + 5;
        cells + bars
    }

    #[test]
    fn columns_fit_every_width_from_60() {
        for width in 60..=300 {
            for with_worker in [false, true] {
                let columns = Columns::fit(width, with_worker);
                assert!(
                    row_width(columns) <= width,
                    "{width} wide, worker column {with_worker}: {columns:?}"
                );
                // Four name columns share 15 cells at 60 wide: the narrowest gets 3.
                let narrowest = if with_worker { 3 } else { 5 };
                assert!(
                    columns.names.iter().all(|name| *name >= narrowest),
                    "{columns:?}"
                );
            }
        }
    }

    #[test]
    fn wide_screens_get_bars_and_narrow_ones_lose_peak() {
        let wide = Columns::fit(200, false);
        assert_eq!(wide.bar, BAR_WIDTHS.1);
        assert_eq!(wide.names, NAME_MAX_WIDTHS);
        assert!(wide.peak);
        let normal = Columns::fit(80, false);
        assert_eq!(normal.bar, 0);
        assert!(normal.peak);
        assert_eq!(normal.names, [10, 10, 10]);
        let narrow = Columns::fit(60, false);
        assert!(!narrow.peak);
        assert_eq!(narrow.bar, 0);
    }
}
