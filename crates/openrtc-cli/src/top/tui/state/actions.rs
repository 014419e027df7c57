//! What the operator's actions do to the live view's state: sorting, filtering, searching,
//! moving, opening and closing panes and popups, pausing, and asking to cancel a session.

use super::overlays::{CancelTarget, Overlay, TenantPicker};
use super::{Effect, MAX_SEARCH_CHARS, SORT_CYCLE, Screen, State};
use crate::cli::{SortKey, StatusFilter};
use crate::top::format::clean_text;
use crate::top::tui::conn::{CancelAnswer, ConnCommand};
use crate::top::tui::input::Action;

impl State {
    /// Carries out an action; returns the I/O it needs, if any.
    pub fn apply(&mut self, action: Action) -> Option<Effect> {
        if self.overlay.is_some() {
            return self.apply_in_overlay(action);
        }
        let page = self.page_rows;
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::RefreshNow => {
                self.step_requested = self.paused;
                return Some(Effect::Conn(ConnCommand::RefreshNow));
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                self.step_requested = false;
                return Some(Effect::Conn(ConnCommand::SetPaused(self.paused)));
            }
            Action::CycleSort => {
                let position = SORT_CYCLE
                    .iter()
                    .position(|key| *key == self.settings.sort)
                    .unwrap_or(0);
                self.set_sort(SORT_CYCLE[(position + 1) % SORT_CYCLE.len()]);
            }
            Action::SortLeft | Action::SortRight => {
                let count = SortKey::ALL.len();
                let position = SortKey::ALL
                    .iter()
                    .position(|key| *key == self.settings.sort)
                    .unwrap_or(0);
                let step = if action == Action::SortLeft {
                    count - 1
                } else {
                    1
                };
                self.set_sort(SortKey::ALL[(position + step) % count]);
            }
            Action::InvertSort => {
                self.settings.sort_inverted = !self.settings.sort_inverted;
                self.rebuild_rows();
            }
            Action::CycleStatusFilter => {
                self.settings.status = match self.settings.status {
                    None => Some(StatusFilter::ALL[0]),
                    Some(current) => StatusFilter::ALL
                        .iter()
                        .position(|filter| *filter == current)
                        .and_then(|position| StatusFilter::ALL.get(position + 1).copied()),
                };
                self.rebuild_rows();
            }
            Action::StartSearch => {
                self.overlay = Some(Overlay::Search {
                    before: self.settings.search.clone(),
                });
            }
            Action::OpenTenantPicker => {
                let picker = TenantPicker::build(self);
                self.overlay = Some(Overlay::TenantPicker(picker));
            }
            Action::Enter => {
                if self.screen == Screen::Table {
                    self.open_detail();
                }
            }
            Action::Back => match self.screen {
                Screen::Detail => {
                    self.screen = Screen::Table;
                    self.detail = None;
                }
                Screen::Table if !self.settings.search.is_empty() => {
                    self.settings.search.clear();
                    self.rebuild_rows();
                }
                Screen::Table => {}
            },
            Action::AskCancel => self.ask_cancel(),
            Action::ShowHelp => self.overlay = Some(Overlay::Help),
            Action::Up => self.select(self.selected_row.saturating_sub(1)),
            Action::Down => self.select(self.selected_row + 1),
            Action::PageUp => self.select(self.selected_row.saturating_sub(page)),
            Action::PageDown => self.select(self.selected_row + page),
            Action::Home => self.select(0),
            Action::End => self.select(usize::MAX),
            Action::ConfirmCancel | Action::CloseHelp | Action::Type(_) | Action::Erase => {}
        }
        None
    }

    /// Sorts by `sort` in its natural direction.
    fn set_sort(&mut self, sort: SortKey) {
        self.settings.sort = sort;
        self.settings.sort_inverted = false;
        self.rebuild_rows();
    }

    /// Opens the cancel confirmation for the session of the detail pane or the selected row.
    fn ask_cancel(&mut self) {
        let target = match (self.screen, &self.detail) {
            (Screen::Detail, Some(detail)) if !detail.vanished => Some(CancelTarget {
                socket: detail.key.socket.clone(),
                worker_name: detail.worker_name.clone(),
                session_id: detail.key.session_id,
                agent: detail.last_seen.agent.clone(),
                tenant: detail.last_seen.tenant.clone(),
            }),
            (Screen::Detail, _) => None,
            (Screen::Table, _) => self
                .selected_session()
                .map(|(worker, session)| CancelTarget {
                    socket: worker.socket().to_path_buf(),
                    worker_name: worker.name().to_owned(),
                    session_id: session.id,
                    agent: session.agent.clone(),
                    tenant: session.tenant.clone(),
                }),
        };
        match target {
            Some(target) => self.overlay = Some(Overlay::ConfirmCancel(target)),
            None => self.say("no live session selected to cancel".to_owned(), true),
        }
    }

    /// Carries out an action while a popup or prompt is open.
    fn apply_in_overlay(&mut self, action: Action) -> Option<Effect> {
        let overlay = self.overlay.take()?;
        match overlay {
            Overlay::Help => {
                if action == Action::Quit {
                    return Some(Effect::Quit);
                }
            }
            Overlay::ConfirmCancel(target) => match action {
                Action::ConfirmCancel => {
                    self.say(
                        format!(
                            "asking worker {} to cancel session {}…",
                            clean_text(&target.worker_name, 32),
                            target.session_id
                        ),
                        false,
                    );
                    return Some(Effect::Conn(ConnCommand::Cancel {
                        socket: target.socket,
                        session_id: target.session_id,
                    }));
                }
                Action::Quit => return Some(Effect::Quit),
                _ => {}
            },
            Overlay::Search { before } => match action {
                Action::Type(character) => {
                    if !character.is_control()
                        && self.settings.search.chars().count() < MAX_SEARCH_CHARS
                    {
                        self.settings.search.push(character);
                        self.rebuild_rows();
                    }
                    self.overlay = Some(Overlay::Search { before });
                }
                Action::Erase => {
                    self.settings.search.pop();
                    self.rebuild_rows();
                    self.overlay = Some(Overlay::Search { before });
                }
                Action::Back => {
                    self.settings.search = before;
                    self.rebuild_rows();
                }
                Action::Quit => return Some(Effect::Quit),
                _ => {}
            },
            Overlay::TenantPicker(mut picker) => match action {
                Action::Enter => {
                    self.settings.tenant = picker.chosen().map(str::to_owned);
                    self.rebuild_rows();
                }
                Action::Back => {}
                Action::Quit => return Some(Effect::Quit),
                movement => {
                    picker.navigate(movement, self.page_rows);
                    self.overlay = Some(Overlay::TenantPicker(picker));
                }
            },
        }
        None
    }

    /// Takes in the answer to a cancel request.
    pub fn apply_cancel_answer(&mut self, answer: CancelAnswer) {
        match answer.outcome {
            Ok(session_id) => self.say(
                format!("cancelled session {session_id} (recorded as cancelled by operator)"),
                false,
            ),
            Err(why) => self.say(
                format!(
                    "cannot cancel session {}: {}",
                    answer.session_id,
                    clean_text(&why, 120)
                ),
                true,
            ),
        }
    }
}
