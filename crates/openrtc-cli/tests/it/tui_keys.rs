//! Key handling of the live view, without a terminal: key events go to the app as the event
//! loop would hand them over, and what the app asks of the connection thread is read from its
//! command channel.

use std::sync::mpsc::{Receiver, channel};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use openrtc_cli::cli::{SortKey, StatusFilter};
use openrtc_cli::discover::{PollOutcome, SurveyRound, WorkerError, WorkerFailure, WorkerPoll};
use openrtc_cli::top::tui::app::{App, AppEvent, Flow};
use openrtc_cli::top::tui::conn::{CancelAnswer, ConnCommand, ConnEvent};
use openrtc_cli::top::tui::state::workers::Link;
use openrtc_cli::top::tui::state::{OverlayKind, Screen, Settings, State};
use openrtc_proto::PoolSnapshot;

use crate::fixtures::{
    TAKEN_AT_UNIX_MS, busy_worker, crowded_worker, idle_worker, round_of, socket_of,
};

/// The app over some workers' snapshots, and the other end of its command channel.
struct Harness {
    app: App,
    commands: Receiver<ConnCommand>,
}

impl Harness {
    /// An app that has taken in one round with `snapshots`, showing ten rows a page.
    fn new(snapshots: &[PoolSnapshot], settings: Settings) -> Self {
        let mut state = State::new(settings);
        assert!(state.apply_round(round_of(snapshots, TAKEN_AT_UNIX_MS)));
        state.set_page_rows(10);
        let (sender, commands) = channel();
        Self {
            app: App::new(state, sender),
            commands,
        }
    }

    /// Presses one key.
    fn press(&mut self, code: KeyCode) -> Flow {
        self.app
            .handle(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    /// Types each character of `text` as a key press, as a terminal sends them (capitals and
    /// symbols with Shift).
    fn type_text(&mut self, text: &str) {
        for character in text.chars() {
            let modifiers = if character.is_ascii_uppercase() || "<>?".contains(character) {
                KeyModifiers::SHIFT
            } else {
                KeyModifiers::NONE
            };
            let flow = self.app.handle(AppEvent::Key(KeyEvent::new(
                KeyCode::Char(character),
                modifiers,
            )));
            assert_eq!(flow, Flow::Continue { changed: true }, "key {character:?}");
        }
    }

    /// The state.
    fn state(&self) -> &State {
        self.app.state()
    }

    /// The session ids of the rows, in order.
    fn ids(&self) -> Vec<String> {
        let state = self.state();
        state
            .rows()
            .iter()
            .filter_map(|row| state.row(*row))
            .map(|(_, session)| session.id.to_string())
            .collect()
    }

    /// The id of the selected row's session.
    fn selected_id(&self) -> Option<String> {
        let state = self.state();
        let index = state.selected_row()?;
        let (_, session) = state.row(state.rows()[index])?;
        Some(session.id.to_string())
    }

    /// Every command sent to the connection thread since the last call.
    fn sent(&self) -> Vec<ConnCommand> {
        self.commands.try_iter().collect()
    }
}

/// The default settings: CPU order, no filter.
fn defaults() -> Settings {
    Settings {
        refresh_rate_hz: 1.0,
        ..Settings::default()
    }
}

#[test]
fn s_cycles_the_sort_column_and_resorts() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    assert_eq!(harness.ids(), ["s-2", "s-11", "s-1", "s-10"]);
    let mut seen = vec![harness.state().settings().sort];
    for _ in 0..10 {
        harness.type_text("s");
        seen.push(harness.state().settings().sort);
    }
    assert_eq!(
        seen,
        [
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
            SortKey::Cpu,
        ]
    );
    harness.type_text("ss");
    assert_eq!(harness.state().settings().sort, SortKey::Stalls);
    assert_eq!(harness.ids(), ["s-2", "s-10", "s-1", "s-11"]);
    assert!(harness.sent().is_empty(), "sorting needs no new snapshot");
}

#[test]
fn angle_brackets_move_the_sort_column_and_capital_i_inverts_it() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.type_text(">");
    assert_eq!(harness.state().settings().sort, SortKey::Mem);
    harness.type_text("<<");
    assert_eq!(harness.state().settings().sort, SortKey::Dur);
    assert_eq!(
        harness.ids(),
        ["s-1", "s-2", "s-10", "s-11"],
        "longest first"
    );
    harness.type_text("I");
    assert!(harness.state().settings().sort_inverted);
    assert_eq!(
        harness.ids(),
        ["s-11", "s-10", "s-2", "s-1"],
        "shortest first"
    );
    harness.type_text("I");
    assert_eq!(harness.ids(), ["s-1", "s-2", "s-10", "s-11"]);
    // Moving to another column starts from its natural direction again, and wraps around.
    harness.type_text("I<<<<");
    assert_eq!(harness.state().settings().sort, SortKey::Status);
    assert!(!harness.state().settings().sort_inverted);
    harness.type_text(">");
    assert_eq!(harness.state().settings().sort, SortKey::Session);
    harness.type_text("<");
    assert_eq!(harness.state().settings().sort, SortKey::Status);
}

#[test]
fn f_cycles_the_status_filter() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    let mut seen = Vec::new();
    for _ in 0..4 {
        harness.type_text("f");
        seen.push((harness.state().settings().status, harness.ids().len()));
    }
    assert_eq!(
        seen,
        [
            (Some(StatusFilter::Active), 3),
            (Some(StatusFilter::Slow), 1),
            (Some(StatusFilter::Draining), 0),
            (None, 4),
        ]
    );
}

#[test]
fn slash_searches_session_agent_and_tenant_as_you_type() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.type_text("/");
    assert_eq!(harness.state().overlay_kind(), Some(OverlayKind::Search));
    harness.type_text("ECHO");
    assert_eq!(harness.ids(), ["s-1", "s-10"], "agent echo, ignoring case");
    for _ in 0..4 {
        harness.press(KeyCode::Backspace);
    }
    harness.type_text("glob");
    assert_eq!(harness.ids(), ["s-2"], "tenant globex");
    // `q` is text while typing, not quit.
    assert_eq!(
        harness.press(KeyCode::Char('q')),
        Flow::Continue { changed: true }
    );
    assert_eq!(harness.state().settings().search, "globq");
    assert!(harness.ids().is_empty());
    harness.press(KeyCode::Backspace);
    harness.press(KeyCode::Enter);
    assert_eq!(harness.state().overlay_kind(), None);
    assert_eq!(harness.state().settings().search, "glob");

    // A new search abandoned with Esc puts the previous one back.
    harness.type_text("/x");
    assert!(harness.ids().is_empty());
    harness.press(KeyCode::Esc);
    assert_eq!(harness.state().settings().search, "glob");
    assert_eq!(harness.ids(), ["s-2"]);

    // Esc in the table clears the search.
    harness.press(KeyCode::Esc);
    assert_eq!(harness.state().settings().search, "");
    assert_eq!(harness.ids().len(), 4);

    harness.type_text("/s-1");
    harness.press(KeyCode::Enter);
    assert_eq!(harness.ids(), ["s-11", "s-1", "s-10"], "session ids");
}

#[test]
fn t_picks_a_tenant_from_the_list() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    // The selected row is s-2, of tenant globex: the list opens on it.
    harness.type_text("t");
    let Some(openrtc_cli::top::tui::state::Overlay::TenantPicker(picker)) =
        harness.state().overlay()
    else {
        panic!("the tenant list is open");
    };
    let listed: Vec<(Option<&str>, usize, usize)> = picker
        .choices
        .iter()
        .map(|choice| {
            (
                choice.tenant.as_deref(),
                choice.sessions,
                choice.slow_sessions,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (None, 4, 1),
            (Some("acme"), 2, 0),
            (Some("globex"), 1, 1),
            (Some("initech"), 1, 0),
        ]
    );
    assert_eq!(picker.chosen(), Some("globex"));
    harness.press(KeyCode::Up);
    harness.press(KeyCode::Enter);
    assert_eq!(harness.state().settings().tenant.as_deref(), Some("acme"));
    assert_eq!(harness.ids(), ["s-1", "s-10"]);

    // Reopened, the list starts on the current filter; Home picks every tenant again.
    harness.type_text("t");
    harness.press(KeyCode::Home);
    harness.press(KeyCode::Enter);
    assert_eq!(harness.state().settings().tenant, None);
    assert_eq!(harness.ids().len(), 4);

    // Esc closes the list without changing the filter.
    harness.type_text("t");
    harness.press(KeyCode::End);
    harness.press(KeyCode::Esc);
    assert_eq!(harness.state().settings().tenant, None);
    assert_eq!(harness.state().overlay_kind(), None);
}

#[test]
fn the_tenant_list_names_tenants_without_sessions_and_breakers_not_closed() {
    use openrtc_proto::{BreakerState, TenantSnapshot};
    let mut worker = busy_worker();
    let tenant = |state: BreakerState| {
        let mut tenant = TenantSnapshot::default();
        tenant.breaker.state = state;
        tenant
    };
    // A tenant refused by its open breaker has no live session, yet it is the one to look at.
    worker
        .tenants
        .insert("umbrella".into(), tenant(BreakerState::Open));
    worker
        .tenants
        .insert("acme".into(), tenant(BreakerState::HalfOpen));
    worker
        .tenants
        .insert("initech".into(), tenant(BreakerState::Closed));
    let mut harness = Harness::new(&[worker], defaults());
    harness.type_text("t");
    let Some(openrtc_cli::top::tui::state::Overlay::TenantPicker(picker)) =
        harness.state().overlay()
    else {
        panic!("the tenant list is open");
    };
    let listed: Vec<(Option<&str>, usize, Option<BreakerState>)> = picker
        .choices
        .iter()
        .map(|choice| (choice.tenant.as_deref(), choice.sessions, choice.breaker))
        .collect();
    assert_eq!(
        listed,
        [
            (None, 4, None),
            (Some("acme"), 2, Some(BreakerState::HalfOpen)),
            (Some("globex"), 1, None),
            (Some("initech"), 1, None),
            (Some("umbrella"), 0, Some(BreakerState::Open)),
        ]
    );
    harness.press(KeyCode::End);
    harness.press(KeyCode::Enter);
    assert_eq!(
        harness.state().settings().tenant.as_deref(),
        Some("umbrella")
    );
    assert!(harness.ids().is_empty(), "no live session of umbrella");
}

#[test]
fn enter_opens_the_detail_pane_and_esc_goes_back() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.press(KeyCode::Down);
    assert_eq!(harness.selected_id().as_deref(), Some("s-11"));
    harness.press(KeyCode::Enter);
    assert_eq!(harness.state().screen(), Screen::Detail);
    let detail = harness.state().detail().expect("a detail target");
    assert_eq!(detail.key.session_id, id("s-11"));
    assert_eq!(detail.key.socket, socket_of("demo", 4242));
    // Up and Down move through the sessions in the pane.
    harness.press(KeyCode::Down);
    assert_eq!(
        harness
            .state()
            .detail()
            .map(|detail| detail.key.session_id.to_string()),
        Some("s-1".to_owned())
    );
    harness.press(KeyCode::Esc);
    assert_eq!(harness.state().screen(), Screen::Table);
    assert!(harness.state().detail().is_none());
    assert_eq!(harness.selected_id().as_deref(), Some("s-1"));
}

#[test]
fn k_then_y_sends_exactly_one_cancel_for_the_selected_session() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.press(KeyCode::Down);
    harness.type_text("k");
    assert_eq!(
        harness.state().overlay_kind(),
        Some(OverlayKind::ConfirmCancel)
    );
    assert!(
        harness.sent().is_empty(),
        "nothing is sent before the confirmation"
    );
    harness.type_text("y");
    assert_eq!(
        harness.sent(),
        [ConnCommand::Cancel {
            socket: socket_of("demo", 4242),
            session_id: id("s-11"),
        }]
    );
    assert_eq!(harness.state().overlay_kind(), None);
    assert!(harness.sent().is_empty(), "exactly one request");

    // Any other key keeps the session.
    harness.type_text("k");
    harness.press(KeyCode::Enter);
    harness.type_text("kn");
    harness.type_text("k");
    harness.press(KeyCode::Esc);
    assert!(harness.sent().is_empty());
    assert_eq!(harness.state().overlay_kind(), None);

    // The worker's answer shows in the status line.
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::CancelAnswered(CancelAnswer {
            session_id: id("s-11"),
            outcome: Ok(id("s-11")),
        })));
    let message = harness.state().message().expect("a message");
    assert!(!message.is_error);
    assert!(
        message.text.contains("cancelled session s-11"),
        "{message:?}"
    );
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::CancelAnswered(CancelAnswer {
            session_id: id("s-99"),
            outcome: Err("no live session matches s-99".into()),
        })));
    let message = harness.state().message().expect("a message");
    assert!(message.is_error);
    assert!(
        message.text.contains("no live session matches s-99"),
        "{message:?}"
    );
}

#[test]
fn k_in_the_detail_pane_cancels_that_session() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.press(KeyCode::End);
    harness.press(KeyCode::Enter);
    harness.type_text("ky");
    assert_eq!(
        harness.sent(),
        [ConnCommand::Cancel {
            socket: socket_of("demo", 4242),
            session_id: id("s-10"),
        }]
    );
}

#[test]
fn space_pauses_updates_and_r_still_refreshes() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.type_text(" ");
    assert!(harness.state().paused());
    assert_eq!(harness.sent(), [ConnCommand::SetPaused(true)]);

    // A round arriving while paused changes nothing.
    let quieter = round_of(&[idle_worker("demo", 4242)], TAKEN_AT_UNIX_MS + 1_000);
    let flow = harness
        .app
        .handle(AppEvent::Conn(ConnEvent::Round(quieter.clone())));
    assert_eq!(flow, Flow::Continue { changed: false });
    assert_eq!(harness.ids().len(), 4);

    // `r` asks for one and takes it in, paused or not.
    harness.type_text("r");
    assert_eq!(harness.sent(), [ConnCommand::RefreshNow]);
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::Round(quieter.clone())));
    assert!(harness.ids().is_empty());
    assert!(harness.state().paused());
    let busy_again = round_of(&[busy_worker()], TAKEN_AT_UNIX_MS + 2_000);
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::Round(busy_again)));
    assert!(harness.ids().is_empty(), "one refresh, not a resume");

    harness.type_text(" ");
    assert!(!harness.state().paused());
    assert_eq!(harness.sent(), [ConnCommand::SetPaused(false)]);
}

#[test]
fn paging_keys_move_the_selection_and_the_view() {
    let mut harness = Harness::new(&[crowded_worker(95)], defaults());
    let state = harness.state();
    assert_eq!((state.selected_row(), state.scroll_offset()), (Some(0), 0));
    assert_eq!(
        harness.selected_id().as_deref(),
        Some("s-95"),
        "busiest first"
    );
    let mut positions = Vec::new();
    for code in [
        KeyCode::Up,
        KeyCode::PageDown,
        KeyCode::Down,
        KeyCode::PageDown,
        KeyCode::End,
        KeyCode::Down,
        KeyCode::PageUp,
        KeyCode::Up,
        KeyCode::Home,
    ] {
        harness.press(code);
        let state = harness.state();
        positions.push((
            state.selected_row().unwrap_or(usize::MAX),
            state.scroll_offset(),
        ));
    }
    assert_eq!(
        positions,
        [
            (0, 0),
            (10, 1),
            (11, 2),
            (21, 12),
            (94, 85),
            (94, 85),
            (84, 84),
            (83, 83),
            (0, 0),
        ]
    );
}

#[test]
fn the_selection_follows_its_session_when_the_order_changes() {
    let mut harness = Harness::new(&[crowded_worker(30)], defaults());
    harness.press(KeyCode::Down);
    harness.press(KeyCode::Down);
    assert_eq!(harness.selected_id().as_deref(), Some("s-28"));
    let unbound = KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT);
    assert_eq!(
        harness.app.handle(AppEvent::Key(unbound)),
        Flow::Continue { changed: false }
    );
    harness.type_text("<");
    assert_eq!(harness.state().settings().sort, SortKey::Dur);
    assert_eq!(harness.selected_id().as_deref(), Some("s-28"));
    assert_eq!(harness.state().selected_row(), Some(27));
    assert_eq!(
        harness.state().scroll_offset(),
        18,
        "the selection stays on screen"
    );
}

#[test]
fn until_the_operator_moves_the_selection_stays_on_the_first_row() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    assert_eq!(harness.selected_id().as_deref(), Some("s-2"));
    let mut calmer = busy_worker();
    calmer.sessions[1].cpu_pct = 0.5;
    let later = round_of(&[calmer], TAKEN_AT_UNIX_MS + 1_000);
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::Round(later.clone())));
    assert_eq!(harness.state().selected_row(), Some(0));
    assert_eq!(
        harness.selected_id().as_deref(),
        Some("s-11"),
        "the new top row"
    );

    // Once moved, it follows; Home goes back to staying on top.
    harness.press(KeyCode::Down);
    assert_eq!(harness.selected_id().as_deref(), Some("s-1"));
    harness.app.handle(AppEvent::Conn(ConnEvent::Round(round_of(
        &[busy_worker()],
        TAKEN_AT_UNIX_MS + 2_000,
    ))));
    assert_eq!(harness.selected_id().as_deref(), Some("s-1"));
    assert_eq!(harness.state().selected_row(), Some(2));
    harness.press(KeyCode::Home);
    harness.app.handle(AppEvent::Conn(ConnEvent::Round(later)));
    assert_eq!(harness.selected_id().as_deref(), Some("s-11"));
}

#[test]
fn help_opens_with_a_question_mark_and_any_key_closes_it() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    harness.type_text("?");
    assert_eq!(harness.state().overlay_kind(), Some(OverlayKind::Help));
    harness.type_text("s");
    assert_eq!(harness.state().overlay_kind(), None);
    assert_eq!(
        harness.state().settings().sort,
        SortKey::Cpu,
        "the key only closed the help"
    );
}

#[test]
fn q_and_ctrl_c_quit_and_key_releases_are_ignored() {
    let mut harness = Harness::new(&[busy_worker()], defaults());
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert_eq!(
        harness.app.handle(AppEvent::Key(release)),
        Flow::Continue { changed: false }
    );
    assert_eq!(harness.press(KeyCode::Char('q')), Flow::Quit);
    let control_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    harness.type_text("/");
    assert_eq!(harness.app.handle(AppEvent::Key(control_c)), Flow::Quit);
    assert_eq!(harness.app.handle(AppEvent::Signal), Flow::Quit);
}

#[test]
fn a_worker_that_goes_away_is_shown_in_place_and_comes_back_under_a_new_pid() {
    let mut harness = Harness::new(&[busy_worker(), idle_worker("edge", 7)], defaults());
    assert_eq!(harness.state().workers().len(), 2);
    assert!(harness.state().shows_worker_column());

    let gone = SurveyRound {
        polls: vec![WorkerPoll {
            socket: socket_of("demo", 4242),
            outcome: PollOutcome::NotListening,
        }],
        directory_error: None,
        finished_at_unix_ms: TAKEN_AT_UNIX_MS + 1_000,
    };
    harness.app.handle(AppEvent::Conn(ConnEvent::Round(gone)));
    let workers = harness.state().workers();
    assert_eq!(workers.len(), 2, "both stay on screen");
    assert_eq!(
        workers[0].link(),
        &Link::Gone {
            since_unix_ms: TAKEN_AT_UNIX_MS + 1_000,
            reason: "nobody listens on its socket",
        }
    );
    assert_eq!(
        workers[1].link(),
        &Link::Gone {
            since_unix_ms: TAKEN_AT_UNIX_MS + 1_000,
            reason: "its socket was removed",
        }
    );
    assert!(harness.ids().is_empty());

    // The demo worker restarts as a new process, with a new socket.
    let mut restarted = busy_worker();
    restarted.worker.pid = 5000;
    harness.app.handle(AppEvent::Conn(ConnEvent::Round(round_of(
        &[restarted],
        TAKEN_AT_UNIX_MS + 2_000,
    ))));
    let workers = harness.state().workers();
    assert_eq!(workers.len(), 2, "it takes its old place");
    assert_eq!(workers[0].pid(), Some(5000));
    assert_eq!(workers[0].socket(), socket_of("demo", 5000));
    assert_eq!(workers[0].link(), &Link::Live);
    assert_eq!(harness.ids().len(), 4);

    // A worker that answers with an error is shown with it.
    let failing = SurveyRound {
        polls: vec![WorkerPoll {
            socket: socket_of("demo", 5000),
            outcome: PollOutcome::Failed(std::sync::Arc::new(WorkerError {
                socket: socket_of("demo", 5000),
                failure: WorkerFailure::Refused {
                    code: openrtc_proto::ErrorCode::TooManyClients,
                    message: "too many clients".into(),
                },
            })),
        }],
        directory_error: None,
        finished_at_unix_ms: TAKEN_AT_UNIX_MS + 3_000,
    };
    harness
        .app
        .handle(AppEvent::Conn(ConnEvent::Round(failing)));
    assert!(matches!(
        harness.state().workers()[0].link(),
        Link::Failing { message, .. } if message.contains("too many clients")
    ));
}

#[test]
fn the_worker_flag_keeps_other_workers_out() {
    let settings = Settings {
        worker_name: Some("edge".into()),
        ..defaults()
    };
    let harness = Harness::new(&[busy_worker(), idle_worker("edge", 7)], settings);
    let names: Vec<&str> = harness
        .state()
        .workers()
        .iter()
        .map(|worker| worker.name())
        .collect();
    assert_eq!(names, ["edge"]);
    assert!(!harness.state().shows_worker_column());
}

/// The session id written `text`.
#[track_caller]
fn id(text: &str) -> openrtc_proto::SessionId {
    text.parse().expect("a session id")
}
