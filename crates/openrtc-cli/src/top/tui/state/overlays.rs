//! The popups and prompts that open over the live view: help, the cancel confirmation, the
//! search prompt and the tenant filter list.

use std::collections::BTreeMap;
use std::path::PathBuf;

use openrtc_proto::{BreakerState, SessionId, SessionState};

use super::State;
use crate::top::tui::input::Action;

/// A popup or prompt open over the screen.
#[derive(Clone, Debug, PartialEq)]
pub enum Overlay {
    /// The key help.
    Help,
    /// "Cancel this session?"
    ConfirmCancel(CancelTarget),
    /// The search prompt; the search applies as it is typed, and Esc puts back `before`.
    Search {
        /// The search before the prompt opened.
        before: String,
    },
    /// The tenant filter list.
    TenantPicker(TenantPicker),
}

/// The kinds of [`Overlay`], for key mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayKind {
    /// [`Overlay::Help`].
    Help,
    /// [`Overlay::ConfirmCancel`].
    ConfirmCancel,
    /// [`Overlay::Search`].
    Search,
    /// [`Overlay::TenantPicker`].
    TenantPicker,
}

impl Overlay {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> OverlayKind {
        match self {
            Self::Help => OverlayKind::Help,
            Self::ConfirmCancel(_) => OverlayKind::ConfirmCancel,
            Self::Search { .. } => OverlayKind::Search,
            Self::TenantPicker(_) => OverlayKind::TenantPicker,
        }
    }
}

/// The session a confirmed cancel goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelTarget {
    /// Its worker's socket.
    pub socket: PathBuf,
    /// Its worker's name.
    pub worker_name: String,
    /// Its full id.
    pub session_id: SessionId,
    /// Its agent.
    pub agent: String,
    /// Its tenant.
    pub tenant: String,
}

/// One line of the tenant filter list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantChoice {
    /// The tenant, or `None` for "every tenant".
    pub tenant: Option<String>,
    /// Its live sessions.
    pub sessions: usize,
    /// Those of them slow now.
    pub slow_sessions: usize,
    /// Its circuit breaker when it is open or half-open on any worker shown (open first).
    pub breaker: Option<BreakerState>,
}

/// The tenant filter list: every tenant the workers list (with live sessions or not, so a
/// tenant refused by its breaker is there too), how many sessions it has, and its breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPicker {
    /// "Every tenant" first, then the tenants by name.
    pub choices: Vec<TenantChoice>,
    /// The highlighted line.
    pub index: usize,
}

impl TenantPicker {
    /// The list for the live sessions of `state`, highlighting the current tenant filter, or
    /// else the selected session's tenant (so `t` then Enter narrows to it).
    #[must_use]
    pub fn build(state: &State) -> Self {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut breakers: BTreeMap<&str, BreakerState> = BTreeMap::new();
        let mut total = (0, 0);
        for snapshot in state.live_snapshots() {
            for (tenant, figures) in &snapshot.tenants {
                counts.entry(tenant.as_str()).or_default();
                let state = figures.breaker.state;
                if matches!(state, BreakerState::Open | BreakerState::HalfOpen) {
                    let worst = breakers.entry(tenant.as_str()).or_insert(state);
                    if state == BreakerState::Open {
                        *worst = BreakerState::Open;
                    }
                }
            }
            for session in &snapshot.sessions {
                let slow = usize::from(session.state == SessionState::Slow);
                let entry = counts.entry(session.tenant.as_str()).or_default();
                entry.0 += 1;
                entry.1 += slow;
                total.0 += 1;
                total.1 += slow;
            }
        }
        let mut choices = vec![TenantChoice {
            tenant: None,
            sessions: total.0,
            slow_sessions: total.1,
            breaker: None,
        }];
        choices.extend(
            counts
                .into_iter()
                .map(|(tenant, (sessions, slow_sessions))| TenantChoice {
                    tenant: Some(tenant.to_owned()),
                    sessions,
                    slow_sessions,
                    breaker: breakers.get(tenant).copied(),
                }),
        );
        let wanted = state.settings().tenant.clone().or_else(|| {
            state
                .selected_session()
                .map(|(_, session)| session.tenant.clone())
        });
        let index = wanted
            .and_then(|wanted| {
                choices
                    .iter()
                    .position(|choice| choice.tenant.as_deref() == Some(wanted.as_str()))
            })
            .unwrap_or(0);
        Self { choices, index }
    }

    /// The highlighted tenant (`None` for every tenant).
    #[must_use]
    pub fn chosen(&self) -> Option<&str> {
        self.choices
            .get(self.index)
            .and_then(|choice| choice.tenant.as_deref())
    }

    /// Moves the highlight; `page` is how far a page key moves it.
    pub fn navigate(&mut self, movement: Action, page: usize) {
        let last = self.choices.len().saturating_sub(1);
        self.index = match movement {
            Action::Up => self.index.saturating_sub(1),
            Action::Down => (self.index + 1).min(last),
            Action::PageUp => self.index.saturating_sub(page),
            Action::PageDown => (self.index + page).min(last),
            Action::Home => 0,
            Action::End => last,
            _ => self.index,
        };
    }
}
