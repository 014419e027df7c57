//! Keys to actions: what each key means on the current screen. Pure: no terminal, no state
//! changes; [`super::state::State::apply`] carries the actions out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{OverlayKind, State};

/// Something the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave top.
    Quit,
    /// Ask the workers for a snapshot now (even while paused).
    RefreshNow,
    /// Sort by the next column of the sort cycle.
    CycleSort,
    /// Sort by the column left of the current one.
    SortLeft,
    /// Sort by the column right of the current one.
    SortRight,
    /// Reverse the sort order.
    InvertSort,
    /// Show the next status filter: all, active, slow, draining.
    CycleStatusFilter,
    /// Start typing a search.
    StartSearch,
    /// Open the tenant filter list.
    OpenTenantPicker,
    /// Open the detail pane of the selected session, or pick the highlighted list entry.
    Enter,
    /// Close what is open: a popup, the search prompt, the detail pane; in the table, clear
    /// the search.
    Back,
    /// Ask to cancel the selected session (a confirmation follows).
    AskCancel,
    /// Confirm the pending cancel.
    ConfirmCancel,
    /// Stop or resume updates.
    TogglePause,
    /// Show the help.
    ShowHelp,
    /// Close the help.
    CloseHelp,
    /// Move the selection up one row.
    Up,
    /// Move the selection down one row.
    Down,
    /// Move the selection up one page.
    PageUp,
    /// Move the selection down one page.
    PageDown,
    /// Move the selection to the first row.
    Home,
    /// Move the selection to the last row.
    End,
    /// Type a character into the search.
    Type(char),
    /// Erase the last character of the search.
    Erase,
}

/// The action a key press asks for in the current state, if any. Key releases are ignored;
/// Ctrl-C quits from anywhere (in raw mode it arrives as a key, not a signal).
#[must_use]
pub fn action_for(state: &State, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    if control && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return Some(Action::Quit);
    }
    if control || key.modifiers.contains(KeyModifiers::ALT) {
        return None;
    }
    match state.overlay_kind() {
        Some(OverlayKind::Help) => Some(Action::CloseHelp),
        Some(OverlayKind::ConfirmCancel) => Some(match key.code {
            KeyCode::Char('y' | 'Y') => Action::ConfirmCancel,
            _ => Action::Back,
        }),
        Some(OverlayKind::Search) => match key.code {
            KeyCode::Enter => Some(Action::Enter),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Char(character) => Some(Action::Type(character)),
            _ => None,
        },
        Some(OverlayKind::TenantPicker) => match key.code {
            KeyCode::Enter => Some(Action::Enter),
            KeyCode::Esc | KeyCode::Char('q' | 't') => Some(Action::Back),
            code => navigation(code),
        },
        None => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('r') => Some(Action::RefreshNow),
            KeyCode::Char('s') => Some(Action::CycleSort),
            KeyCode::Char('<') => Some(Action::SortLeft),
            KeyCode::Char('>') => Some(Action::SortRight),
            KeyCode::Char('I') => Some(Action::InvertSort),
            KeyCode::Char('f') => Some(Action::CycleStatusFilter),
            KeyCode::Char('/') => Some(Action::StartSearch),
            KeyCode::Char('t') => Some(Action::OpenTenantPicker),
            KeyCode::Enter => Some(Action::Enter),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Char('k') => Some(Action::AskCancel),
            KeyCode::Char(' ') => Some(Action::TogglePause),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::ShowHelp),
            code => navigation(code),
        },
    }
}

/// The movement keys, shared by the table and the tenant list.
fn navigation(code: KeyCode) -> Option<Action> {
    match code {
        KeyCode::Up => Some(Action::Up),
        KeyCode::Down => Some(Action::Down),
        KeyCode::PageUp => Some(Action::PageUp),
        KeyCode::PageDown => Some(Action::PageDown),
        KeyCode::Home => Some(Action::Home),
        KeyCode::End => Some(Action::End),
        _ => None,
    }
}
