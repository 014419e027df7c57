//! The worker header blocks: who each worker is, how loaded and healthy it is, with
//! sparklines of its sessions and CPU over the last minute; or, in place, that it has gone.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

mod tenancy;

use super::text::sparkline;
use super::{Theme, put_line};
use crate::top::flight_recorder::{log_file_brief, recorders_piece};
use crate::top::format::{
    clean_text, format_bytes_human, format_cpu_percent, format_short_span, format_uptime,
    refusal_summary,
};
use crate::top::tenants::{failure_streak, shared_brief};
use crate::top::tui::state::State;
use crate::top::tui::state::history::{WORKER_HISTORY_WINDOW_MS, WorkerHistory};
use crate::top::tui::state::workers::{Link, WorkerEntry};

/// How many cells a header sparkline of the last minute takes on a screen at least
/// [`WIDE_HEADER_COLUMNS`] wide (five seconds a cell), and on a narrower one (ten seconds).
pub const SPARKLINE_CELLS: (usize, usize) = (12, 6);

/// The width from which headers get the longer sparklines.
pub const WIDE_HEADER_COLUMNS: usize = 100;

/// The widest a worker name gets in a header.
const WORKER_NAME_MAX_CHARS: usize = 32;

/// How many lines a worker's block has at most: its three worker lines and, for a live worker
/// with a snapshot, its tenant lines (see [`tenancy::lines`]).
fn full_block_lines(worker: &WorkerEntry, state: &State, width: usize) -> usize {
    let tenant_lines = match (worker.link(), worker.snapshot()) {
        (Link::Live, Some(snapshot)) => {
            let (upper, config) = tenancy::lines(
                snapshot,
                state.settings().tenant.as_deref(),
                width,
                Theme { color: false },
            );
            upper.len() + usize::from(config.is_some())
        }
        _ => 0,
    };
    3 + tenant_lines
}

/// How many lines each live worker's block takes at most on a screen of this size: as many as
/// let every block fit in a third of the height (a block shows its most important lines
/// first), at least one.
fn lines_per_live_worker(screen: Rect, state: &State) -> usize {
    let budget = usize::from(screen.height / 3).max(2);
    let width = usize::from(screen.width);
    let full: Vec<usize> = state
        .workers()
        .iter()
        .map(|worker| full_block_lines(worker, state, width))
        .collect();
    let longest = full.iter().copied().max().unwrap_or(3);
    (1..=longest)
        .rev()
        .find(|&cap| {
            let lines: usize = full.iter().map(|&lines| lines.min(cap)).sum();
            lines <= budget
        })
        .unwrap_or(1)
}

/// The height of the header blocks on a screen of this size.
#[must_use]
pub fn height(screen: Rect, state: &State) -> u16 {
    let budget = usize::from(screen.height / 3).max(2);
    let per_live = lines_per_live_worker(screen, state);
    let width = usize::from(screen.width);
    let lines: usize = state
        .workers()
        .iter()
        .map(|worker| {
            if worker.is_live() {
                per_live.min(full_block_lines(worker, state, width))
            } else {
                1
            }
        })
        .sum();
    u16::try_from(lines.clamp(1, budget)).unwrap_or(1)
}

/// Draws every worker's block into `area` (the header part of `screen`), as many as fit; a
/// last line counts the ones that do not.
pub fn render(buffer: &mut Buffer, screen: Rect, area: Rect, state: &State, theme: Theme) {
    if area.height == 0 {
        return;
    }
    if state.workers().is_empty() {
        let text = if state.has_data() {
            "no worker answers: waiting for one to start"
        } else {
            "asking the workers for their snapshots…"
        };
        put_line(buffer, area, 0, &Line::styled(text, theme.dim()));
        return;
    }
    let per_live = lines_per_live_worker(screen, state);
    let mut lines: Vec<Line<'static>> = Vec::new();
    for (index, worker) in state.workers().iter().enumerate() {
        let block = worker_block(worker, state, per_live, usize::from(area.width), theme);
        let remaining_workers = state.workers().len() - index;
        if lines.len() + block.len() > usize::from(area.height)
            || (remaining_workers > 1 && lines.len() + block.len() == usize::from(area.height))
        {
            lines.truncate(usize::from(area.height) - 1);
            lines.push(Line::styled(
                format!("… and {remaining_workers} more worker(s): use --worker NAME to pick one"),
                theme.dim(),
            ));
            break;
        }
        lines.extend(block);
    }
    for (offset, line) in (0..).zip(&lines) {
        put_line(buffer, area, offset, line);
    }
}

/// The lines of one worker's block, at most `lines`: who it is, its health, then its tenant
/// lines that matter most (see [`tenancy::lines`]), its memory and lifetime counters, and its
/// tenant config.
fn worker_block(
    worker: &WorkerEntry,
    state: &State,
    lines: usize,
    width: usize,
    theme: Theme,
) -> Vec<Line<'static>> {
    let now_unix_ms = state.now_unix_ms();
    let name = Span::styled(
        clean_text(worker.name(), WORKER_NAME_MAX_CHARS),
        theme.title(),
    );
    let pid = worker
        .pid()
        .map(|pid| format!(" pid {pid}"))
        .unwrap_or_default();
    match (worker.link(), worker.snapshot()) {
        (
            Link::Gone {
                since_unix_ms,
                reason,
            },
            _,
        ) => vec![Line::from(vec![
            name,
            Span::raw(pid),
            Span::styled(
                format!(
                    " GONE for {}: {reason}",
                    format_uptime(now_unix_ms.saturating_sub(*since_unix_ms))
                ),
                theme.alert(),
            ),
            Span::styled(" · reconnects when it comes back", theme.dim()),
        ])],
        (
            Link::Failing {
                since_unix_ms,
                message,
            },
            _,
        ) => vec![Line::from(vec![
            name,
            Span::raw(pid),
            Span::styled(
                format!(
                    " ERROR for {}: {}",
                    format_uptime(now_unix_ms.saturating_sub(*since_unix_ms)),
                    clean_text(message, 200)
                ),
                theme.alert(),
            ),
        ])],
        (Link::Live, None) => vec![Line::from(vec![
            name,
            Span::styled(" waiting for its first snapshot…", theme.dim()),
        ])],
        (Link::Live, Some(snapshot)) => {
            let worker_figures = &snapshot.worker;
            let cells = if width >= WIDE_HEADER_COLUMNS {
                SPARKLINE_CELLS.0
            } else {
                SPARKLINE_CELLS.1
            };
            let (sessions_spark, cpu_spark) = sparklines(worker.history(), cells);
            let mut identity = vec![name, Span::raw(pid)];
            if worker_figures.draining {
                identity.push(Span::styled(" DRAINING", theme.alert()));
            }
            let first: Vec<Segment> = vec![
                identity.into(),
                vec![
                    Span::raw(format!(
                        "cpu {}% ",
                        format_cpu_percent(worker_figures.process_cpu_pct)
                    )),
                    Span::styled(cpu_spark, theme.cpu_bar()),
                ]
                .into(),
                vec![Span::raw(format!(
                    "rss {}",
                    format_bytes_human(worker_figures.rss_bytes)
                ))]
                .into(),
                vec![Span::raw(format!(
                    "up {}",
                    format_uptime(worker_figures.uptime_ms)
                ))]
                .into(),
                vec![Span::raw(format!(
                    "{} worker threads",
                    worker_figures.worker_threads
                ))]
                .into(),
                vec![Span::raw(format!(
                    "{} threads, {} fds",
                    worker_figures.threads_count, worker_figures.open_fds_count
                ))]
                .into(),
            ];
            let mut block = vec![
                join_segments(first, width, theme),
                join_segments(
                    health_segments(worker_figures, sessions_spark, theme),
                    width,
                    theme,
                ),
            ];
            let (tenant_lines, config_line) =
                tenancy::lines(snapshot, state.settings().tenant.as_deref(), width, theme);
            block.extend(tenant_lines);
            block.push(join_segments(
                lifetime_segments(worker_figures, theme),
                width,
                theme,
            ));
            block.extend(config_line);
            block.truncate(lines);
            block
        }
    }
}

/// A piece of a header line, with a shorter form to use when the full one does not fit.
struct Segment {
    full: Vec<Span<'static>>,
    short: Option<Vec<Span<'static>>>,
}

impl From<Vec<Span<'static>>> for Segment {
    fn from(full: Vec<Span<'static>>) -> Self {
        Self { full, short: None }
    }
}

/// Joins segments of a header line with ` · `, keeping only those that fit in `width` whole,
/// in their full or else their short form (segments come most important first; a line is
/// never cut mid-word). The first segment is always kept, cut at the edge if it must be.
fn join_segments(segments: Vec<Segment>, width: usize, theme: Theme) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    let width_of = |spans: &[Span<'static>]| spans.iter().map(Span::width).sum::<usize>();
    for (index, segment) in segments.into_iter().enumerate() {
        let separator = if index == 0 { 0 } else { 3 };
        let room = width.saturating_sub(used + separator);
        let chosen = if index == 0 || width_of(&segment.full) <= room {
            segment.full
        } else {
            match segment.short {
                Some(short) if width_of(&short) <= room => short,
                _ => break,
            }
        };
        if index > 0 {
            spans.push(Span::styled(" · ", theme.dim()));
        }
        used += separator + width_of(&chosen);
        spans.extend(chosen);
    }
    Line::from(spans)
}

/// The segments of the second header line: sessions and load, stalls, refusals (most
/// frequent reason first), and agent failures in a row when there are any.
fn health_segments(
    worker: &openrtc_proto::WorkerSnapshot,
    sessions_spark: String,
    theme: Theme,
) -> Vec<Segment> {
    let load_pct = if worker.max_sessions > 0 {
        u64::from(worker.active_sessions) * 100 / u64::from(worker.max_sessions)
    } else {
        0
    };
    let sessions = vec![
        Span::raw(format!(
            "sessions {}/{} ({load_pct}%) ",
            worker.active_sessions, worker.max_sessions
        )),
        Span::styled(sessions_spark, theme.memory_bar()),
    ];
    let stalls_text = format!(
        "stalls {} in 1m, {} now",
        worker.stalls_last_minute_count, worker.stalls_in_progress_count
    );
    let stalls_style = if worker.stalls_in_progress_count > 0 {
        theme.alert()
    } else if worker.stalls_last_minute_count > 0 {
        theme.warning()
    } else {
        ratatui::style::Style::new()
    };
    let short_stalls = vec![Span::styled(stalls_text, stalls_style)];
    let mut stalls = short_stalls.clone();
    if worker.slow_threshold_ms > 0 {
        stalls.push(Span::styled(
            format!(" (≥{})", format_short_span(worker.slow_threshold_ms)),
            theme.dim(),
        ));
    }
    let (refused, reasons) = refusal_summary(&worker.refusals);
    let short_refusals = vec![Span::raw(format!("refused {refused}"))];
    let mut refusals = short_refusals.clone();
    if let Some(reasons) = reasons {
        refusals.push(Span::styled(format!(" ({reasons})"), theme.warning()));
    }
    let mut segments = vec![
        sessions.into(),
        Segment {
            full: stalls,
            short: Some(short_stalls),
        },
        Segment {
            full: refusals,
            short: Some(short_refusals),
        },
    ];
    if let Some(streak) = failure_streak(worker) {
        segments.push(vec![tenancy::span(streak, theme)].into());
    }
    segments
}

/// The segments of the third header line: where memory figures come from, the state shared
/// by every session (see [`shared_brief`]), the memory limits, how sessions ended, then the
/// log file and what the flight recorders hold. A log file that dropped records comes right
/// after the memory figures instead, so that narrow screens keep the warning.
fn lifetime_segments(worker: &openrtc_proto::WorkerSnapshot, theme: Theme) -> Vec<Segment> {
    let memory = if worker.mem_source.is_exact() {
        format!(
            "mem tracked {} (runtime {}, ended {})",
            format_bytes_human(worker.tracked_bytes),
            format_bytes_human(worker.runtime_bytes),
            format_bytes_human(worker.ended_bytes)
        )
    } else {
        "MEM~ = equal share of RSS".to_owned()
    };
    let mut segments: Vec<Segment> = vec![vec![Span::styled(memory, theme.dim())].into()];
    let log_file = log_file_brief(worker).map(|(full, short)| Segment {
        full: vec![tenancy::span(full, theme)],
        short: short.map(|short| vec![tenancy::span(short, theme)]),
    });
    let (log_warning, log_file) = match log_file {
        Some(segment) if worker.log_records_dropped_count > 0 => (Some(segment), None),
        other => (None, other),
    };
    segments.extend(log_warning);
    if let (Some(shared), Some(shared_bytes)) = (shared_brief(worker), worker.shared_bytes) {
        segments.push(Segment {
            full: vec![tenancy::span(shared, theme)],
            short: Some(vec![Span::styled(
                format!("shared: {}", format_bytes_human(shared_bytes)),
                theme.dim(),
            )]),
        });
    }
    if let Some(livekit) = crate::top::livekit::livekit_piece(worker) {
        segments.push(vec![tenancy::span(livekit, theme)].into());
    }
    for (label, bytes) in [
        ("session cap", worker.session_memory_limit_bytes),
        ("warn at", worker.memory_warn_bytes),
        ("limit", worker.memory_limit_bytes),
    ] {
        if let Some(bytes) = bytes {
            segments.push(
                vec![Span::styled(
                    format!("{label} {}", format_bytes_human(bytes)),
                    theme.dim(),
                )]
                .into(),
            );
        }
    }
    let totals = &worker.totals;
    segments.push(vec![Span::raw(format!("started {}", totals.started_count))].into());
    segments.push(
        vec![Span::raw(format!(
            "completed {} failed {} panicked {} cancelled {} killed {}",
            totals.completed_count,
            totals.failed_count,
            totals.panicked_count,
            totals.cancelled_count,
            totals.killed_count
        ))]
        .into(),
    );
    segments.extend(log_file);
    if let Some(recorders) = recorders_piece(worker) {
        segments.push(vec![tenancy::span(recorders, theme)].into());
    }
    segments
}

/// The sessions and CPU sparklines of a worker, `cells` wide: one cell per slice of the last
/// minute (ending at its latest snapshot), each showing the highest figure in that slice,
/// dotted before top started watching.
#[must_use]
pub fn sparklines(history: &WorkerHistory, cells: usize) -> (String, String) {
    let cells = cells.max(1);
    let bucket_ms = WORKER_HISTORY_WINDOW_MS / cells as u64;
    let mut sessions = vec![None; cells];
    let mut cpu = vec![None; cells];
    let newest = history
        .samples()
        .last()
        .map_or(0, |sample| sample.taken_at_unix_ms);
    for sample in history.samples() {
        let cells_from_end = newest.saturating_sub(sample.taken_at_unix_ms) / bucket_ms;
        let Some(cell) = usize::try_from(cells_from_end)
            .ok()
            .and_then(|from_end| (cells - 1).checked_sub(from_end))
        else {
            continue;
        };
        let session_count = f64::from(sample.active_sessions);
        sessions[cell] =
            Some(sessions[cell].map_or(session_count, |seen: f64| seen.max(session_count)));
        cpu[cell] = Some(cpu[cell].map_or(sample.process_cpu_pct, |seen: f64| {
            seen.max(sample.process_cpu_pct)
        }));
    }
    (sparkline(&sessions, 0.0), sparkline(&cpu, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::tui::state::history::WorkerSample;

    #[test]
    fn worker_sparklines_cover_the_last_minute_by_slices() {
        let mut history = WorkerHistory::default();
        for (second, sessions, cpu_pct) in [
            (0, 10, 0.0),
            (30, 20, 50.0),
            (31, 40, 25.0),
            (59, 40, 100.0),
        ] {
            history.record(WorkerSample {
                taken_at_unix_ms: 100_000 + second * 1_000,
                active_sessions: sessions,
                process_cpu_pct: cpu_pct,
            });
        }
        // Twelve slices of five seconds ending at second 59: second 0 is in the first slice,
        // seconds 30 and 31 share the seventh (the highest figure wins), second 59 is in the
        // last; slices without a sample are dotted.
        let (sessions, cpu) = sparklines(&history, 12);
        assert_eq!(sessions, "▃·····█····█");
        assert_eq!(cpu, "▁·····▅····█");
        let (sessions, _) = sparklines(&history, 6);
        assert_eq!(sessions, "▃··█·█");
    }
}
