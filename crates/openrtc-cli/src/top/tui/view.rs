//! Drawing the live view: render functions over a [`State`], into any ratatui backend (the
//! terminal, or a `TestBackend` in tests). Nothing here changes the state.
//!
//! The screen, top to bottom: one header block per worker, the session table or the detail
//! pane, a status line (position, sort, filters, messages), and the key hints. Popups (help,
//! the cancel confirmation, the tenant list) draw over the rest.

pub mod detail;
pub mod header;
pub mod popups;
pub mod table;
pub mod text;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::state::{Overlay, Screen, State};
use crate::top::format::clean_text;
use text::{Align, fit};

/// The styles of the live view, in color or (with `NO_COLOR` set) in plain attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Whether colors may be used.
    pub color: bool,
}

impl Theme {
    /// Colors unless the `NO_COLOR` convention asks for none.
    #[must_use]
    pub fn from_environment() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self { color: !no_color }
    }

    /// `colored` with colors on, else `plain` (which keeps the meaning with attributes).
    fn pick(self, colored: Style, plain: Style) -> Style {
        if self.color { colored } else { plain }
    }

    /// A foreground color, or nothing without colors.
    fn colored(self, color: Color) -> Style {
        self.pick(Style::new().fg(color), Style::new())
    }

    /// Worker names and section titles.
    #[must_use]
    pub fn title(self) -> Style {
        self.colored(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Something an operator must notice: draining, a gone worker, a blocked thread.
    #[must_use]
    pub fn alert(self) -> Style {
        self.colored(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Slow sessions.
    #[must_use]
    pub fn warning(self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// Less important text: units, labels, draining rows.
    #[must_use]
    pub fn dim(self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }

    /// The column titles.
    #[must_use]
    pub fn column_titles(self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Green),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }

    /// The title of the sort column.
    #[must_use]
    pub fn sorted_column_title(self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        )
    }

    /// The selected row.
    #[must_use]
    pub fn selected_row(self) -> Style {
        self.pick(
            Style::new().bg(Color::Blue).fg(Color::White),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }

    /// The CPU bars.
    #[must_use]
    pub fn cpu_bar(self) -> Style {
        self.colored(Color::Green)
    }

    /// The memory bars.
    #[must_use]
    pub fn memory_bar(self) -> Style {
        self.colored(Color::Magenta)
    }

    /// A key in the hints.
    #[must_use]
    pub fn key(self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Cyan),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }

    /// A success message.
    #[must_use]
    pub fn good_news(self) -> Style {
        self.colored(Color::Green)
    }
}

/// Where each part of the screen goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Areas {
    /// The worker headers.
    pub header: Rect,
    /// The table or the detail pane.
    pub body: Rect,
    /// The status line.
    pub status: Rect,
    /// The key hints.
    pub footer: Rect,
}

/// Splits the screen: headers on top, status line and key hints at the bottom, the body in
/// between.
#[must_use]
pub fn areas(area: Rect, state: &State) -> Areas {
    let bottom_lines = 2.min(area.height);
    let header_height = header::height(area, state).min(area.height - bottom_lines);
    let body_height = area.height - bottom_lines - header_height;
    let row = |y: u16, height: u16| Rect::new(area.x, y, area.width, height);
    Areas {
        header: row(area.y, header_height),
        body: row(area.y + header_height, body_height),
        status: row(area.y + header_height + body_height, bottom_lines.min(1)),
        footer: row(
            area.y + header_height + body_height + 1,
            bottom_lines.saturating_sub(1),
        ),
    }
}

/// How many session rows the table shows on a screen of this size.
#[must_use]
pub fn page_rows(area: Rect, state: &State) -> usize {
    usize::from(areas(area, state).body.height.saturating_sub(1)).max(1)
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, state: &State, theme: Theme) {
    let area = frame.area();
    let parts = areas(area, state);
    let buffer = frame.buffer_mut();
    header::render(buffer, area, parts.header, state, theme);
    match state.screen() {
        Screen::Table => table::render(buffer, parts.body, state, theme),
        Screen::Detail => detail::render(buffer, parts.body, state, theme),
    }
    render_status_line(buffer, parts.status, state, theme);
    render_key_hints(buffer, parts.footer, state, theme);
    match state.overlay() {
        Some(Overlay::Help) => popups::render_help(buffer, area, theme),
        Some(Overlay::ConfirmCancel(target)) => {
            popups::render_cancel_confirmation(buffer, area, target, theme);
        }
        Some(Overlay::TenantPicker(picker)) => {
            popups::render_tenant_picker(buffer, area, picker, theme);
        }
        Some(Overlay::Search { .. }) | None => {}
    }
}

/// Writes one line at the top-left of `area`, clipped to its width.
pub fn put_line(buffer: &mut Buffer, area: Rect, y_offset: u16, line: &Line<'_>) {
    if y_offset < area.height {
        buffer.set_line(area.x, area.y + y_offset, line, area.width);
    }
}

/// A description of the filters and search in effect, as `status=slow tenant=acme /ech`.
#[must_use]
pub fn describe_filters(state: &State) -> String {
    let settings = state.settings();
    let mut parts = Vec::new();
    if let Some(status) = settings.status {
        parts.push(format!("status={}", status.state().as_str()));
    }
    if let Some(tenant) = &settings.tenant {
        parts.push(format!("tenant={}", clean_text(tenant, 24)));
    }
    if let Some(agent) = &settings.agent {
        parts.push(format!("agent={}", clean_text(agent, 24)));
    }
    if !settings.search.is_empty() {
        parts.push(format!("/{}", clean_text(&settings.search, 24)));
    }
    parts.join(" ")
}

/// The status line: the search prompt while typing, else a fresh message or the filters, and
/// the selected row's position on the right.
fn render_status_line(buffer: &mut Buffer, area: Rect, state: &State, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let width = usize::from(area.width);
    let position = match (state.selected_row(), state.rows().len()) {
        (Some(selected), rows) if state.settings().is_filtered() => {
            format!(
                " row {}/{rows} of {} ",
                selected + 1,
                state.total_sessions()
            )
        }
        (Some(selected), rows) => format!(" row {}/{rows} ", selected + 1),
        (None, _) => " no rows ".to_owned(),
    };
    let position = if state.paused() {
        format!(" PAUSED ·{position}")
    } else {
        position
    };
    let position_width = position.chars().count().min(width);
    let left_width = width - position_width;
    let left = if state.overlay_kind() == Some(super::state::OverlayKind::Search) {
        let prompt = format!(
            "search: {}█  (Enter: keep · Esc: cancel)",
            clean_text(&state.settings().search, 64).trim_start_matches('-')
        );
        Span::styled(fit(&prompt, left_width, Align::Left), theme.title())
    } else if let Some(message) = state.message() {
        let style = if message.is_error {
            theme.alert()
        } else {
            theme.good_news()
        };
        Span::styled(fit(&message.text, left_width, Align::Left), style)
    } else if let Some(error) = state.directory_error() {
        Span::styled(fit(error, left_width, Align::Left), theme.alert())
    } else {
        let filters = describe_filters(state);
        let text = if filters.is_empty() {
            "no filter".to_owned()
        } else {
            format!("filter: {filters}")
        };
        Span::styled(fit(&text, left_width, Align::Left), theme.dim())
    };
    let line = Line::from(vec![
        left,
        Span::styled(
            fit(&position, position_width, Align::Right),
            if state.paused() {
                theme.alert()
            } else {
                theme.dim()
            },
        ),
    ]);
    put_line(buffer, area, 0, &line);
}

/// The key hints of the current screen, as many as fit.
fn render_key_hints(buffer: &mut Buffer, area: Rect, state: &State, theme: Theme) {
    if area.height == 0 {
        return;
    }
    let hints: &[(&str, &str)] = match state.screen() {
        Screen::Table => &[
            ("q", "quit"),
            ("?", "help"),
            ("s", "sort"),
            ("f", "filter"),
            ("/", "find"),
            ("t", "tenant"),
            ("⏎", "detail"),
            ("k", "cancel"),
            ("␣", if state.paused() { "resume" } else { "pause" }),
        ],
        Screen::Detail => &[
            ("Esc", "back"),
            ("↑↓", "previous/next"),
            ("k", "cancel"),
            ("␣", if state.paused() { "resume" } else { "pause" }),
            ("q", "quit"),
            ("?", "help"),
        ],
    };
    // Whole hints only, as many as fit: the most useful come first.
    let mut spans = Vec::with_capacity(hints.len() * 2);
    let mut used = 0;
    for (key, meaning) in hints {
        let gap = if used == 0 { "" } else { "  " };
        let hint_width = gap.len() + key.chars().count() + 1 + meaning.chars().count();
        if used + hint_width > usize::from(area.width) {
            break;
        }
        spans.push(Span::raw(gap));
        spans.push(Span::styled(*key, theme.key()));
        spans.push(Span::raw(format!(" {meaning}")));
        used += hint_width;
    }
    put_line(buffer, area, 0, &Line::from(spans));
}
