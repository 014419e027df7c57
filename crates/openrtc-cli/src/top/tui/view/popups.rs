//! The popups drawn over the live view: the key help, the cancel confirmation and the tenant
//! filter list. Each is a bordered box centred on the screen and shrunk to fit it.

use ratatui::buffer::Buffer;
use ratatui::layout::{Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget as _};

use super::text::{Align, fit};
use super::{Theme, put_line};
use crate::top::format::clean_text;
use crate::top::tui::state::{CancelTarget, TenantPicker};

/// The help lines: a key and what it does.
const HELP: [(&str, &str); 16] = [
    ("q  Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("r", "refresh now, also while paused"),
    ("Space", "pause or resume updates"),
    ("s", "next sort column (CPU, MEM, STALLS, …)"),
    ("<  >", "sort by the column left / right"),
    ("I", "invert the sort order"),
    ("f", "status filter: all, active, slow, draining"),
    ("/", "search session, agent, tenant (Esc clears)"),
    ("t", "tenant filter: pick from the list"),
    ("Enter", "session detail (↑↓ move, Esc back)"),
    ("k", "cancel the selected session (asks first)"),
    ("↑↓ PgUp PgDn", "move the selection"),
    ("Home End", "first / last row"),
    ("MEM~  1.2M~", "approximate memory: an equal share of RSS"),
    ("blocking 1.2s", "a poll holds a worker thread right now"),
];

/// A box of `width` × `height` cells centred in `area`, shrunk to fit it.
#[must_use]
pub fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// Clears a box, draws its border and title, and returns the inside less a one-cell margin
/// on the left and right.
fn open_box(buffer: &mut Buffer, area: Rect, title: &str, theme: Theme) -> Rect {
    Clear.render(area, buffer);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), theme.title()));
    let inside = block.inner(area).inner(Margin {
        horizontal: 1,
        vertical: 0,
    });
    block.render(area, buffer);
    inside
}

/// The key help.
pub fn render_help(buffer: &mut Buffer, area: Rect, theme: Theme) {
    let height = u16::try_from(HELP.len() + 2).unwrap_or(u16::MAX);
    let popup = centred(area, 64, height);
    let inside = open_box(buffer, popup, "openrtc top: keys", theme);
    for (offset, (key, meaning)) in (0..inside.height).zip(HELP) {
        let line = Line::from(vec![
            Span::styled(fit(key, 14, Align::Left), theme.title()),
            Span::raw(meaning),
        ]);
        put_line(buffer, inside, offset, &line);
    }
}

/// "Cancel this session?", with what the worker will do.
pub fn render_cancel_confirmation(
    buffer: &mut Buffer,
    area: Rect,
    target: &CancelTarget,
    theme: Theme,
) {
    let popup = centred(area, 60, 8);
    let inside = open_box(buffer, popup, "cancel this session?", theme);
    let lines = [
        Line::from(vec![
            Span::styled(target.session_id.to_string(), theme.title()),
            Span::raw(format!(
                " · agent {} · tenant {}",
                clean_text(&target.agent, 16),
                clean_text(&target.tenant, 16)
            )),
        ]),
        Line::raw(format!("on worker {}", clean_text(&target.worker_name, 32))),
        Line::styled(
            "The worker cancels it and records it as cancelled",
            theme.dim(),
        ),
        Line::styled("(operator).", theme.dim()),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(": cancel it · "),
            Span::styled("any other key", theme.key()),
            Span::raw(": keep it"),
        ]),
    ];
    for (offset, line) in (0..inside.height).zip(&lines) {
        put_line(buffer, inside, offset, line);
    }
}

/// The tenant filter list, scrolled to keep the highlighted line in view.
pub fn render_tenant_picker(buffer: &mut Buffer, area: Rect, picker: &TenantPicker, theme: Theme) {
    let wanted_height = u16::try_from(picker.choices.len() + 3).unwrap_or(u16::MAX);
    let popup = centred(area, 50, wanted_height.max(5));
    let inside = open_box(buffer, popup, "tenant filter", theme);
    if inside.height == 0 {
        return;
    }
    let list_height = usize::from(inside.height - 1);
    let first = picker
        .index
        .saturating_sub(list_height.saturating_sub(1))
        .min(picker.choices.len().saturating_sub(list_height));
    let width = usize::from(inside.width);
    for (offset, (index, choice)) in (0..).zip(
        picker
            .choices
            .iter()
            .enumerate()
            .skip(first)
            .take(list_height),
    ) {
        let name = choice.tenant.as_deref().map_or_else(
            || "(every tenant)".to_owned(),
            |tenant| clean_text(tenant, 40),
        );
        let plural = if choice.sessions == 1 { "" } else { "s" };
        let mut counts = if choice.slow_sessions > 0 {
            format!(
                "{} session{plural}, {} slow",
                choice.sessions, choice.slow_sessions
            )
        } else {
            format!("{} session{plural}", choice.sessions)
        };
        if let Some(breaker) = choice.breaker {
            counts.push_str(&format!(", breaker {}", breaker.as_str()));
        }
        let name_width = width.saturating_sub(counts.chars().count() + 1);
        let text = format!("{} {counts}", fit(&name, name_width, Align::Left));
        let style = if index == picker.index {
            theme.selected_row()
        } else {
            ratatui::style::Style::new()
        };
        put_line(
            buffer,
            inside,
            offset,
            &Line::styled(fit(&text, width, Align::Left), style),
        );
    }
    let hint = Line::styled("↑↓ move · Enter pick · Esc close", theme.dim());
    put_line(buffer, inside, inside.height - 1, &hint);
}
