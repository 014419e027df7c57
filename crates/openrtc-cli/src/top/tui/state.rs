//! The live view's state: the workers and their snapshots, the filtered and sorted rows, the
//! selection, what is open on screen, and the operator's settings. Pure: it changes only
//! through [`State::apply_round`], [`State::apply`] and [`State::apply_cancel_answer`], and
//! asks for I/O by returning an [`Effect`].

pub mod history;
pub mod rows;
pub mod workers;

mod actions;
mod overlays;

use std::path::{Path, PathBuf};

use openrtc_proto::{EndedSessionSnapshot, MemSource, SessionId, SessionSnapshot};

pub use overlays::{CancelTarget, Overlay, OverlayKind, TenantChoice, TenantPicker};

use super::conn::ConnCommand;
use crate::cli::{SortKey, StatusFilter, TopArgs};
use crate::discover::{PollOutcome, SurveyRound};
use rows::RowRef;
use workers::WorkerEntry;

/// The order the `s` key cycles through the sort columns: the incident views first.
pub const SORT_CYCLE: [SortKey; 10] = [
    SortKey::Cpu,
    SortKey::Mem,
    SortKey::Stalls,
    SortKey::Status,
    SortKey::Dur,
    SortKey::Peak,
    SortKey::Session,
    SortKey::Agent,
    SortKey::Tenant,
    SortKey::Late,
];

/// The longest search the prompt accepts, in characters.
pub const MAX_SEARCH_CHARS: usize = 64;

/// How long a message stays in the status line, in milliseconds of snapshot time.
pub const MESSAGE_LIFETIME_MS: u64 = 10_000;

/// What the operator chose: sort, filters, search, and the refresh rate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// The sort column.
    pub sort: SortKey,
    /// Whether the sort column's natural order is reversed (`I`).
    pub sort_inverted: bool,
    /// Only sessions in this state, when set (`--status`, `f`).
    pub status: Option<StatusFilter>,
    /// Only sessions of this tenant, when set (`--tenant`, `t`).
    pub tenant: Option<String>,
    /// Only sessions of this agent, when set (`--agent`).
    pub agent: Option<String>,
    /// Only sessions whose id, agent or tenant contains this, ignoring case (`/`).
    pub search: String,
    /// Only the worker with this name (`--worker`).
    pub worker_name: Option<String>,
    /// Snapshots asked for per second.
    pub refresh_rate_hz: f64,
}

impl Settings {
    /// The settings the command-line arguments ask for.
    #[must_use]
    pub fn from_args(args: &TopArgs) -> Self {
        Self {
            sort: args.sort,
            sort_inverted: false,
            status: args.status,
            tenant: args.tenant.clone(),
            agent: args.agent.clone(),
            search: String::new(),
            worker_name: args.worker.clone(),
            refresh_rate_hz: args.refresh_rate,
        }
    }

    /// Whether any filter or search narrows the rows.
    #[must_use]
    pub fn is_filtered(&self) -> bool {
        self.status.is_some()
            || self.tenant.is_some()
            || self.agent.is_some()
            || !self.search.is_empty()
    }
}

/// What fills the body of the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The session table.
    Table,
    /// One session's detail pane.
    Detail,
}

/// A session, by worker socket and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey {
    /// The worker's socket.
    pub socket: PathBuf,
    /// The session id.
    pub session_id: SessionId,
}

/// The session the detail pane shows, as last seen.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailTarget {
    /// Which session.
    pub key: SessionKey,
    /// Its latest row.
    pub last_seen: SessionSnapshot,
    /// Its worker's name.
    pub worker_name: String,
    /// Where its worker's memory figures come from.
    pub mem_source: MemSource,
    /// How it ended, once it has and its worker still lists it.
    pub ended: Option<EndedSessionSnapshot>,
    /// Whether it is no longer live (ended, or its worker is gone).
    pub vanished: bool,
}

/// A line for the status bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub is_error: bool,
    /// When it was set, in milliseconds since the Unix epoch.
    pub set_at_unix_ms: u64,
}

/// I/O the state asks the live view to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Leave top.
    Quit,
    /// Tell the connection thread something.
    Conn(ConnCommand),
}

/// Everything the live view shows, and how to change it.
#[derive(Clone, Debug)]
pub struct State {
    settings: Settings,
    workers: Vec<WorkerEntry>,
    rows: Vec<RowRef>,
    rounds_applied: u64,
    now_unix_ms: u64,
    directory_error: Option<String>,
    selected_row: usize,
    selected_key: Option<SessionKey>,
    follows_selection: bool,
    scroll_offset: usize,
    page_rows: usize,
    screen: Screen,
    detail: Option<DetailTarget>,
    overlay: Option<Overlay>,
    paused: bool,
    step_requested: bool,
    message: Option<Message>,
}

impl State {
    /// An empty state with these settings; nothing is known until the first round.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            workers: Vec::new(),
            rows: Vec::new(),
            rounds_applied: 0,
            now_unix_ms: 0,
            directory_error: None,
            selected_row: 0,
            selected_key: None,
            follows_selection: false,
            scroll_offset: 0,
            page_rows: 1,
            screen: Screen::Table,
            detail: None,
            overlay: None,
            paused: false,
            step_requested: false,
            message: None,
        }
    }

    /// The operator's settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The known workers, by name then process id.
    #[must_use]
    pub fn workers(&self) -> &[WorkerEntry] {
        &self.workers
    }

    /// The rows that pass the filters, in sort order.
    #[must_use]
    pub fn rows(&self) -> &[RowRef] {
        &self.rows
    }

    /// The worker and session a row points at.
    #[must_use]
    pub fn row(&self, row: RowRef) -> Option<(&WorkerEntry, &SessionSnapshot)> {
        let worker = self.workers.get(row.worker)?;
        Some((worker, worker.snapshot()?.sessions.get(row.session)?))
    }

    /// The worker and session of the selected row, when there are rows.
    #[must_use]
    pub fn selected_session(&self) -> Option<(&WorkerEntry, &SessionSnapshot)> {
        self.row(*self.rows.get(self.selected_row)?)
    }

    /// How many live sessions the live workers hold, filtered or not.
    #[must_use]
    pub fn total_sessions(&self) -> usize {
        self.live_snapshots()
            .map(|snapshot| snapshot.sessions.len())
            .sum()
    }

    /// Whether at least one round has been applied.
    #[must_use]
    pub fn has_data(&self) -> bool {
        self.rounds_applied > 0
    }

    /// When the latest round ended, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn now_unix_ms(&self) -> u64 {
        self.now_unix_ms
    }

    /// Why the socket directory could not be read in the latest round, if it could not.
    #[must_use]
    pub fn directory_error(&self) -> Option<&str> {
        self.directory_error.as_deref()
    }

    /// The index of the selected row, when there are rows.
    #[must_use]
    pub fn selected_row(&self) -> Option<usize> {
        (!self.rows.is_empty()).then_some(self.selected_row)
    }

    /// The index of the first row on screen.
    #[must_use]
    pub fn scroll_offset(&self) -> usize {
        self.scroll_offset
    }

    /// How many rows the table shows at once (set by the live view from the screen size).
    #[must_use]
    pub fn page_rows(&self) -> usize {
        self.page_rows
    }

    /// What fills the body of the screen.
    #[must_use]
    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// The session of the detail pane.
    #[must_use]
    pub fn detail(&self) -> Option<&DetailTarget> {
        self.detail.as_ref()
    }

    /// The worker of the detail pane's session, while it is known.
    #[must_use]
    pub fn detail_worker(&self) -> Option<&WorkerEntry> {
        let detail = self.detail.as_ref()?;
        self.workers
            .iter()
            .find(|worker| worker.socket() == detail.key.socket)
    }

    /// The popup or prompt open over the screen.
    #[must_use]
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// Which kind of popup or prompt is open.
    #[must_use]
    pub fn overlay_kind(&self) -> Option<OverlayKind> {
        self.overlay.as_ref().map(Overlay::kind)
    }

    /// Whether updates are paused.
    #[must_use]
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The status-bar message, while it is fresh.
    #[must_use]
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref().filter(|message| {
            self.now_unix_ms.saturating_sub(message.set_at_unix_ms) < MESSAGE_LIFETIME_MS
        })
    }

    /// Whether rows carry a worker column: more than one worker is known.
    #[must_use]
    pub fn shows_worker_column(&self) -> bool {
        self.workers.len() > 1
    }

    /// Sets how many rows the table shows at once, keeping the selection on screen.
    pub fn set_page_rows(&mut self, page_rows: usize) {
        self.page_rows = page_rows.max(1);
        self.keep_selection_visible();
    }

    /// The snapshots of the workers that answered the latest round.
    pub fn live_snapshots(&self) -> impl Iterator<Item = &openrtc_proto::PoolSnapshot> {
        self.workers
            .iter()
            .filter(|worker| worker.is_live())
            .filter_map(WorkerEntry::snapshot)
    }

    /// Takes in a survey round: new snapshots, workers gone or failing. Ignored while paused,
    /// unless a refresh was asked for. Returns whether anything changed.
    pub fn apply_round(&mut self, round: SurveyRound) -> bool {
        if self.paused && !self.step_requested {
            return false;
        }
        self.step_requested = false;
        self.rounds_applied += 1;
        self.now_unix_ms = round.finished_at_unix_ms;
        self.directory_error = round.directory_error.map(|error| error.to_string());
        for worker in &mut self.workers {
            worker.seen_in_round = false;
        }
        for poll in round.polls {
            match poll.outcome {
                PollOutcome::Snapshot(snapshot) => {
                    let wanted = self.settings.worker_name.as_deref();
                    if wanted.is_some_and(|name| snapshot.worker.name != name) {
                        continue;
                    }
                    let index = self.entry_for(&poll.socket, &snapshot.worker.name);
                    let worker = &mut self.workers[index];
                    worker.accept(&poll.socket, *snapshot, self.rounds_applied);
                    worker.seen_in_round = true;
                }
                PollOutcome::NotListening => {
                    if let Some(worker) = self.worker_at_mut(&poll.socket) {
                        worker.mark_gone(round.finished_at_unix_ms, "nobody listens on its socket");
                        worker.seen_in_round = true;
                    }
                }
                PollOutcome::Failed(failure) => {
                    let index = match self.position_of(&poll.socket) {
                        Some(index) => index,
                        None => {
                            self.workers.push(WorkerEntry::new(poll.socket.clone()));
                            self.workers.len() - 1
                        }
                    };
                    let worker = &mut self.workers[index];
                    worker.mark_failing(round.finished_at_unix_ms, failure.failure.to_string());
                    worker.seen_in_round = true;
                }
            }
        }
        for worker in &mut self.workers {
            if !worker.seen_in_round {
                worker.mark_gone(round.finished_at_unix_ms, "its socket was removed");
            }
        }
        self.workers
            .sort_by(|left, right| left.order_key().cmp(&right.order_key()));
        self.rebuild_rows();
        self.refresh_detail();
        true
    }

    /// The index of the entry for a socket that answered with a snapshot from a worker named
    /// `name`: the socket's own entry, else a gone worker of that name coming back under a
    /// new socket, else a new entry.
    fn entry_for(&mut self, socket: &Path, name: &str) -> usize {
        if let Some(index) = self.position_of(socket) {
            return index;
        }
        let returning = self
            .workers
            .iter()
            .position(|worker| !worker.is_live() && worker.name() == name);
        match returning {
            Some(index) => index,
            None => {
                self.workers.push(WorkerEntry::new(socket.to_path_buf()));
                self.workers.len() - 1
            }
        }
    }

    /// The index of the entry for a socket.
    fn position_of(&self, socket: &Path) -> Option<usize> {
        self.workers
            .iter()
            .position(|worker| worker.socket() == socket)
    }

    /// The entry for a socket.
    fn worker_at_mut(&mut self, socket: &Path) -> Option<&mut WorkerEntry> {
        self.workers
            .iter_mut()
            .find(|worker| worker.socket() == socket)
    }

    /// Refilters and resorts the rows. Once the operator has moved the selection, it follows
    /// its session wherever the new order puts it (or keeps its place when the session is
    /// gone); until then, and again after Home, it stays on the first row.
    fn rebuild_rows(&mut self) {
        let mut rows = std::mem::take(&mut self.rows);
        rows::select_rows(&self.workers, &self.settings, &mut rows);
        self.rows = rows;
        let followed = self
            .selected_key
            .as_ref()
            .filter(|_| self.follows_selection);
        let found = followed.and_then(|key| {
            let worker_index = self.position_of(&key.socket)?;
            self.rows.iter().position(|row| {
                row.worker == worker_index
                    && self
                        .row(*row)
                        .is_some_and(|(_, session)| session.id == key.session_id)
            })
        });
        match found {
            Some(index) => self.selected_row = index,
            None => {
                self.selected_row = self.selected_row.min(self.rows.len().saturating_sub(1));
                self.remember_selected_key();
            }
        }
        self.keep_selection_visible();
    }

    /// Notes which session the selected row shows, so the selection can follow it.
    fn remember_selected_key(&mut self) {
        self.selected_key = self.selected_session().map(|(worker, session)| SessionKey {
            socket: worker.socket().to_path_buf(),
            session_id: session.id,
        });
    }

    /// Scrolls so that the selected row is on screen and no page is emptier than it needs be.
    fn keep_selection_visible(&mut self) {
        if self.selected_row < self.scroll_offset {
            self.scroll_offset = self.selected_row;
        } else if self.selected_row >= self.scroll_offset + self.page_rows {
            self.scroll_offset = self.selected_row + 1 - self.page_rows;
        }
        self.scroll_offset = self
            .scroll_offset
            .min(self.rows.len().saturating_sub(self.page_rows));
    }

    /// Updates the detail pane's session from the latest snapshots.
    fn refresh_detail(&mut self) {
        let Some(detail) = &self.detail else {
            return;
        };
        let key = detail.key.clone();
        let Some(worker) = self
            .workers
            .iter()
            .find(|worker| worker.socket() == key.socket)
        else {
            if let Some(detail) = &mut self.detail {
                detail.vanished = true;
            }
            return;
        };
        let snapshot = worker.snapshot().filter(|_| worker.is_live());
        let live = snapshot.and_then(|snapshot| {
            snapshot
                .sessions
                .iter()
                .find(|session| session.id == key.session_id)
        });
        let ended = snapshot.and_then(|snapshot| {
            snapshot
                .recently_ended
                .iter()
                .find(|ended| ended.id == key.session_id)
        });
        let (live, ended) = (live.cloned(), ended.cloned());
        let mem_source = snapshot.map(|snapshot| snapshot.worker.mem_source);
        if let Some(detail) = &mut self.detail {
            detail.vanished = live.is_none();
            if let Some(live) = live {
                detail.last_seen = live;
            }
            if ended.is_some() {
                detail.ended = ended;
            }
            if let Some(mem_source) = mem_source {
                detail.mem_source = mem_source;
            }
        }
    }

    /// Opens the detail pane on the selected session.
    fn open_detail(&mut self) {
        let Some((worker, session)) = self.selected_session() else {
            return;
        };
        self.detail = Some(DetailTarget {
            key: SessionKey {
                socket: worker.socket().to_path_buf(),
                session_id: session.id,
            },
            last_seen: session.clone(),
            worker_name: worker.name().to_owned(),
            mem_source: worker
                .snapshot()
                .map_or(MemSource::default(), |snapshot| snapshot.worker.mem_source),
            ended: None,
            vanished: false,
        });
        self.screen = Screen::Detail;
    }

    /// Moves the selection to `row` (clamped), following it on screen and in the detail pane.
    fn select(&mut self, row: usize) {
        self.selected_row = row.min(self.rows.len().saturating_sub(1));
        self.follows_selection = row > 0;
        self.remember_selected_key();
        self.keep_selection_visible();
        if self.screen == Screen::Detail {
            self.open_detail();
        }
    }

    /// Sets the status-bar message.
    fn say(&mut self, text: String, is_error: bool) {
        self.message = Some(Message {
            text,
            is_error,
            set_at_unix_ms: self.now_unix_ms,
        });
    }
}
