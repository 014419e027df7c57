//! The detail pane of one session: what it is, its state, for a session that ended badly the
//! last records it logged (see `logged`), CPU and memory now and over the time top has
//! watched it, its child tasks, its tracked calls (see `calls`), its phone call's audio
//! health (see `media`), its last stalls, and its metadata.

mod calls;
mod logged;
mod media;
mod process;

use openrtc_proto::{SessionSnapshot, StallClass, StallPart, StallSnapshot, WorkerSnapshot};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::text::{Align, fit, largest, mean, sparkline, squeeze, wrap};
use super::{Theme, put_line};
use crate::top::format::{
    clean_text, format_ago, format_blocking_span, format_bytes_human, format_cpu_percent,
    format_outcome, format_short_span, format_time_of_day, format_uptime,
};
use crate::top::tui::state::history::SessionHistory;
use crate::top::tui::state::{DetailTarget, State};

/// The width of the labels on the left of the pane.
const LABEL_WIDTH: usize = 10;

/// The fewest lines an ended session's records get, however short the pane.
const MIN_RECORD_LINES: usize = 3;

/// Draws the detail pane of the session chosen with Enter.
pub fn render(buffer: &mut Buffer, area: Rect, state: &State, theme: Theme) {
    let Some(detail) = state.detail() else {
        return;
    };
    let worker = state.detail_worker();
    let history = worker.and_then(|worker| worker.session_history(detail.key.session_id));
    let worker_figures = worker
        .and_then(|worker| worker.snapshot())
        .map(|snapshot| &snapshot.worker);
    let lines = detail_lines(
        detail,
        history,
        worker_figures,
        state.now_unix_ms(),
        (usize::from(area.width), usize::from(area.height)),
        theme,
    );
    for (offset, line) in (0..area.height).zip(&lines) {
        put_line(buffer, area, offset, line);
    }
}

/// A label cell.
fn label(text: &str, theme: Theme) -> Span<'static> {
    Span::styled(fit(text, LABEL_WIDTH, Align::Left), theme.dim())
}

/// How many lines an ended session's records may take in a pane `height` lines high: about
/// half of it, so its figures, stalls and metadata still show below on a tall screen.
fn record_lines(height: usize) -> usize {
    (height / 2).saturating_sub(2).max(MIN_RECORD_LINES)
}

/// Every line of the pane, most important first (the pane is cut at the bottom), for a pane
/// of `(width, height)` cells; `worker` is the session's worker's header, for its log file.
#[must_use]
pub fn detail_lines(
    detail: &DetailTarget,
    history: Option<&SessionHistory>,
    worker: Option<&WorkerSnapshot>,
    now_unix_ms: u64,
    (width, height): (usize, usize),
    theme: Theme,
) -> Vec<Line<'static>> {
    let session = &detail.last_seen;
    let approximate = !detail.mem_source.is_exact();
    let memory_label = if approximate { "mem~" } else { "mem" };
    let mut lines = vec![Line::styled(
        fit(
            &format!(
                "session {} · agent {} · tenant {} · worker {}",
                session.id,
                clean_text(&session.agent, 48),
                clean_text(&session.tenant, 48),
                clean_text(&detail.worker_name, 48)
            ),
            width,
            Align::Left,
        ),
        theme.column_titles(),
    )];

    let mut state_spans = vec![label("state", theme)];
    if detail.vanished {
        let ended = detail.ended.as_ref().map_or_else(
            || "no longer live (its worker stopped answering, or it ended)".to_owned(),
            |ended| {
                format!(
                    "ended {}: {} (figures below are its last seen)",
                    format_ago(ended.ended_at_unix_ms, now_unix_ms),
                    format_outcome(&ended.outcome)
                )
            },
        );
        state_spans.push(Span::styled(ended, theme.alert()));
    } else {
        let style = match session.state {
            openrtc_proto::SessionState::Slow => theme.warning(),
            _ => ratatui::style::Style::new(),
        };
        state_spans.push(Span::styled(session.state.as_str().to_owned(), style));
        if let Some(blocking_ms) = session.blocking_for_ms {
            state_spans.push(Span::styled(
                format!(
                    " · blocking a worker thread for {} now",
                    format_blocking_span(blocking_ms)
                ),
                theme.alert(),
            ));
        }
    }
    lines.push(Line::from(state_spans));
    if let Some(ended) = &detail.ended {
        lines.extend(logged::lines(
            ended,
            worker,
            width,
            record_lines(height),
            theme,
        ));
    }

    let busy_ms = session.busy_ns / 1_000_000;
    // Shares for display only: both figures are far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let busy_share_pct = if session.duration_ms == 0 {
        0.0
    } else {
        busy_ms as f64 * 100.0 / session.duration_ms as f64
    };
    lines.push(Line::from(vec![
        label("started", theme),
        Span::raw(format!(
            "{} at {} UTC · busy {} in {} polls ({}% of its life)",
            format_ago(session.started_at_unix_ms, now_unix_ms),
            format_time_of_day(session.started_at_unix_ms),
            format_short_span(busy_ms),
            session.poll_count,
            format_cpu_percent(busy_share_pct)
        )),
    ]));

    let sparklines = history.map(|history| history_sparklines(history, width));
    let mut cpu_spans = vec![
        label("cpu", theme),
        Span::raw(format!("{:>8}% ", format_cpu_percent(session.cpu_pct))),
    ];
    if let Some(sparklines) = &sparklines {
        cpu_spans.push(Span::styled(sparklines.cpu.clone(), theme.cpu_bar()));
        cpu_spans.push(Span::styled(
            format!(
                " highest {}% over {}",
                format_cpu_percent(sparklines.cpu_peak),
                sparklines.watched
            ),
            theme.dim(),
        ));
    }
    lines.push(Line::from(cpu_spans));

    let mut memory_spans = vec![
        label(memory_label, theme),
        Span::raw(format!("{:>9} ", format_bytes_human(session.mem_bytes))),
    ];
    if let Some(sparklines) = sparklines {
        memory_spans.push(Span::styled(sparklines.memory, theme.memory_bar()));
        memory_spans.push(Span::styled(
            format!(" over {}", sparklines.watched),
            theme.dim(),
        ));
    }
    lines.push(Line::from(memory_spans));

    let mut memory_facts = format!(
        "peak {} · {} allocations",
        format_bytes_human(session.mem_peak_bytes),
        session.alloc_count
    );
    if approximate {
        memory_facts.push_str(" · approximate: an equal share of the worker's RSS");
    }
    lines.push(Line::from(vec![
        label("", theme),
        Span::styled(memory_facts, theme.dim()),
    ]));

    lines.push(calls::children_line(session, theme));
    lines.extend(calls::call_lines(session, theme));
    lines.extend(media::media_lines(session, theme));
    lines.extend(process::process_lines(session, theme));
    lines.extend(process::livekit_lines(session, theme));

    lines.extend(stall_lines(session, now_unix_ms, width, theme));

    lines.push(Line::from(vec![label("metadata", theme)]));
    lines.extend(metadata_lines(&session.metadata));
    lines
}

/// A session's sparklines over the time top has watched it.
struct HistorySparklines {
    /// The CPU% sparkline.
    cpu: String,
    /// The highest CPU% seen.
    cpu_peak: f64,
    /// The memory sparkline.
    memory: String,
    /// How long top has watched the session.
    watched: String,
}

/// The CPU and memory sparklines over the watched time, squeezed into the room left on a
/// line (CPU as the mean of each squeezed run, memory as its highest).
fn history_sparklines(history: &SessionHistory, width: usize) -> HistorySparklines {
    let room = width.saturating_sub(LABEL_WIDTH + 9 + 30).max(8);
    let cpu: Vec<f64> = history
        .points()
        .iter()
        .map(|point| f64::from(point.cpu_pct))
        .collect();
    let memory: Vec<f64> = history
        .points()
        .iter()
        .map(|point| f64::from(point.mem_bytes))
        .collect();
    let as_options = |values: Vec<f64>| values.into_iter().map(Some).collect::<Vec<_>>();
    HistorySparklines {
        cpu: sparkline(&as_options(squeeze(&cpu, room, mean)), 100.0),
        cpu_peak: cpu.iter().copied().fold(0.0, f64::max),
        memory: sparkline(&as_options(squeeze(&memory, room, largest)), 0.0),
        watched: format_uptime(history.watched_ms()),
    }
}

/// The stall count and the last stalls, newest first: when, how long, which thread, what the
/// thread was doing (`sleep in std::thread::sleep at src/agent.rs:42`) and how many other
/// sessions it delayed. The newest stall also shows its stack, from the library call down to
/// the agent's frames, and the sessions it delayed; then the time this session lost to other
/// sessions' stalls.
fn stall_lines(
    session: &SessionSnapshot,
    now_unix_ms: u64,
    width: usize,
    theme: Theme,
) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![
        label("stalls", theme),
        Span::raw(if session.stall_count == 0 {
            "none".to_owned()
        } else {
            format!(
                "{} in total{} · the last {}, newest first:",
                session.stall_count,
                match session.preempted_stall_count {
                    0 => String::new(),
                    count => format!(" ({count} the host's)"),
                },
                session.recent_stalls.len()
            )
        }),
    ])];
    for (index, stall) in session.recent_stalls.iter().rev().enumerate() {
        let delayed = match stall.victim_count {
            0 => String::new(),
            count => format!(
                " · delayed {count} session{}",
                if count == 1 { "" } else { "s" }
            ),
        };
        // The newest stall's cause gets a line of its own, so narrow terminals keep its start.
        let newest = index == 0;
        let cause_inline = stall
            .cause
            .as_deref()
            .filter(|_| !newest)
            .map_or_else(String::new, |cause| {
                format!(" ({})", clean_text(cause, 120))
            });
        lines.push(Line::from(vec![
            label("", theme),
            Span::raw(format!(
                "{:<12} blocked worker thread {} for {}{cause_inline}{delayed}",
                format_ago(stall.ended_at_unix_ms, now_unix_ms),
                stall.worker,
                format_blocking_span(stall.duration_ns / 1_000_000),
            )),
        ]));
        if newest {
            if let Some(cause) = stall.cause.as_deref() {
                lines.extend(wrapped_lines(
                    &format!("  {}", clean_text(cause, 160)),
                    width,
                    4,
                    Style::new(),
                    theme,
                ));
            }
            if let Some(time) = stall
                .thread_time
                .filter(|_| matches!(stall.class, Some(StallClass::Cpu | StallClass::Preempted)))
            {
                lines.extend(wrapped_lines(
                    &format!("  {}", time.describe(stall.is_host_caused())),
                    width,
                    4,
                    Style::new(),
                    theme,
                ));
            }
            if !stall.pending.is_empty() {
                let parts: Vec<&str> = stall
                    .pending
                    .iter()
                    .map(|part| match part {
                        StallPart::Cause => "cause and stack",
                        StallPart::Victims => "victims",
                        _ => "more",
                    })
                    .collect();
                lines.push(Line::from(vec![
                    label("", theme),
                    Span::raw(format!("  still coming: {}", parts.join(", "))),
                ]));
            }
            lines.extend(stack_lines(stall, width, theme));
            if !stall.victims.is_empty() {
                let named: Vec<String> = stall
                    .victims
                    .iter()
                    .map(|victim| {
                        format!(
                            "{} {}",
                            victim.session_id,
                            format_blocking_span(victim.delay_ns / 1_000_000)
                        )
                    })
                    .collect();
                let more = usize::try_from(stall.victim_count)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(named.len());
                lines.push(Line::from(vec![
                    label("", theme),
                    Span::raw(format!(
                        "  delayed: {}{}",
                        named.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    )),
                ]));
            }
        }
    }
    if session.delayed_by_stalls_count > 0 {
        lines.push(Line::from(vec![
            label("delayed", theme),
            Span::raw(format!(
                "lost {} to {} stall{} of other sessions",
                format_blocking_span(session.delayed_by_stalls_ns / 1_000_000),
                session.delayed_by_stalls_count,
                if session.delayed_by_stalls_count == 1 {
                    ""
                } else {
                    "s"
                }
            )),
        ]));
    }
    lines
}

/// The most frames of a stack the pane shows.
const SHOWN_FRAMES: usize = 6;

/// The text lines of `text` wrapped to the pane's `width` after the label column, each after
/// an empty label; lines after the first are indented by `indent` more cells.
fn wrapped_lines(
    text: &str,
    width: usize,
    indent: usize,
    style: Style,
    theme: Theme,
) -> Vec<Line<'static>> {
    wrap(text, width.saturating_sub(LABEL_WIDTH), indent)
        .into_iter()
        .map(|line| Line::from(vec![label("", theme), Span::styled(line, style)]))
        .collect()
}

/// The indent of a frame's continuation lines: under the function name, past the arrow.
const FRAME_CONTINUATION_INDENT: usize = 6;

/// A stall's stack, from two frames above the agent's code to the agent's last frame (the
/// agent's own frames stand out), or why there is none. A frame too long for the pane is
/// wrapped, never cut: its `file:line` then starts a line of its own.
fn stack_lines(stall: &StallSnapshot, width: usize, theme: Theme) -> Vec<Line<'static>> {
    if stall.frames.is_empty() {
        return stall
            .stack_note
            .as_deref()
            .map(|note| {
                wrapped_lines(
                    &format!("  no stack: {}", clean_text(note, 120)),
                    width,
                    4,
                    theme.dim(),
                    theme,
                )
            })
            .unwrap_or_default();
    }
    let room = width.saturating_sub(LABEL_WIDTH);
    let first_user = stall.frames.iter().position(|frame| frame.user);
    let start = first_user.map_or(0, |first| first.saturating_sub(2));
    let mut lines = Vec::new();
    for frame in stall.frames.iter().skip(start).take(SHOWN_FRAMES) {
        let place = match (&frame.file, frame.line) {
            (Some(file), Some(line)) => format!("{}:{line}", clean_text(file, 200)),
            (Some(file), None) => clean_text(file, 200),
            _ => String::new(),
        };
        let function = format!(
            "  {} {}",
            if frame.user { "→" } else { " " },
            clean_text(&frame.function, 200)
        );
        let style = if frame.user {
            Style::new()
        } else {
            theme.dim()
        };
        let whole = if place.is_empty() {
            function.clone()
        } else {
            format!("{function}  {place}")
        };
        if unicode_width::UnicodeWidthStr::width(whole.as_str()) <= room || place.is_empty() {
            lines.extend(wrapped_lines(
                &whole,
                width,
                FRAME_CONTINUATION_INDENT,
                style,
                theme,
            ));
        } else {
            lines.extend(wrapped_lines(
                &function,
                width,
                FRAME_CONTINUATION_INDENT,
                style,
                theme,
            ));
            lines.extend(wrapped_lines(
                &format!("{}{place}", " ".repeat(FRAME_CONTINUATION_INDENT)),
                width,
                FRAME_CONTINUATION_INDENT,
                style,
                theme,
            ));
        }
    }
    lines
}

/// The metadata as indented, cleaned JSON lines.
fn metadata_lines(metadata: &serde_json::Value) -> Vec<Line<'static>> {
    if metadata.is_null() {
        return vec![Line::raw(format!("{}(none)", " ".repeat(LABEL_WIDTH)))];
    }
    let pretty = serde_json::to_string_pretty(metadata).unwrap_or_default();
    pretty
        .lines()
        .map(|line| {
            Line::raw(format!(
                "{}{}",
                " ".repeat(LABEL_WIDTH),
                clean_text(line, 400)
            ))
        })
        .collect()
}
