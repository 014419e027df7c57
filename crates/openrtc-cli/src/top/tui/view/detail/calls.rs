//! The detail pane's tracked calls (`Session::track`) and child task counts: a compact table
//! of the session's call labels, the worst first, and the children line.

use openrtc_proto::{CallStatsSnapshot, SessionSnapshot};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::label;
use crate::top::format::{clean_text, format_blocking_span};
use crate::top::tui::view::Theme;
use crate::top::tui::view::text::{Align, fit};

/// The most call labels the pane lists; the rest are summed up in one line.
const SHOWN_LABELS: usize = 4;

/// The width of the label column of the calls table.
const CALL_LABEL_WIDTH: usize = 14;

/// A duration in microseconds, short: `850µs`, `45ms`, `2.3s`.
#[must_use]
pub(super) fn format_call_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else {
        format_blocking_span(us / 1_000)
    }
}

/// The children line: by how they ended when the worker counts that, else running and ended.
pub(super) fn children_line(session: &SessionSnapshot, theme: Theme) -> Line<'static> {
    let tasks = session.tasks;
    if tasks.spawned_count == 0 {
        return Line::from(vec![
            label("children", theme),
            Span::raw(format!(
                "{} running · {} ended",
                session.children_live_count, session.children_finished_count
            )),
        ]);
    }
    let panicked_style = if tasks.panicked_count > 0 {
        theme.alert()
    } else {
        Style::new()
    };
    Line::from(vec![
        label("children", theme),
        Span::raw(format!(
            "{} running · {} completed · ",
            tasks.running_count, tasks.completed_count
        )),
        Span::styled(format!("{} panicked", tasks.panicked_count), panicked_style),
        Span::raw(format!(" · {} cancelled", tasks.cancelled_count)),
    ])
}

/// The calls table: a title line, then one line per label, blocking calls first, then
/// failures, then the busiest; nothing when the session tracked no call.
pub(super) fn call_lines(session: &SessionSnapshot, theme: Theme) -> Vec<Line<'static>> {
    if session.calls.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![Line::from(vec![
        label("calls", theme),
        Span::styled(
            format!(
                "{}{:>6}{:>6}{:>6}{:>5}{:>5}{:>6}",
                fit("label", CALL_LABEL_WIDTH, Align::Left),
                "count",
                "p95",
                "max",
                "fail",
                "slow",
                "block"
            ),
            theme.dim(),
        ),
    ])];
    let mut calls: Vec<(&String, &CallStatsSnapshot)> = session.calls.iter().collect();
    calls.sort_by(|(_, a), (_, b)| {
        (b.blocking_count, b.failed_count, b.count).cmp(&(
            a.blocking_count,
            a.failed_count,
            a.count,
        ))
    });
    for (name, stats) in calls.iter().take(SHOWN_LABELS) {
        let failed_style = if stats.failed_count > 0 {
            theme.warning()
        } else {
            Style::new()
        };
        let blocking_style = if stats.blocking_count > 0 {
            theme.alert()
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            label("", theme),
            Span::raw(format!(
                "{}{:>6}{:>6}{:>6}",
                fit(&clean_text(name, 64), CALL_LABEL_WIDTH, Align::Left),
                stats.count,
                format_call_us(stats.p95_us),
                format_call_us(stats.max_us),
            )),
            Span::styled(format!("{:>5}", stats.failed_count), failed_style),
            Span::raw(format!("{:>5}", stats.slow_count)),
            Span::styled(format!("{:>6}", stats.blocking_count), blocking_style),
        ]));
    }
    let more = calls.len().saturating_sub(SHOWN_LABELS);
    if more > 0 {
        lines.push(Line::from(vec![
            label("", theme),
            Span::styled(
                format!("and {more} more label{}", if more == 1 { "" } else { "s" }),
                theme.dim(),
            ),
        ]));
    }
    lines
}
