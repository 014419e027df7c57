//! Screens of the live view drawn on ratatui's `TestBackend` at 80×24 and 200×50 (and the
//! smallest supported size, 60×15), compared with insta snapshots of the text; styles that
//! carry meaning (slow rows, a blocked thread, the selection) are checked cell by cell.

use std::sync::mpsc::{Receiver, channel};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use insta::assert_snapshot;
use openrtc_cli::cli::{SortKey, StatusFilter};
use openrtc_cli::discover::{PollOutcome, QueryError, SurveyRound, WorkerError, WorkerPoll};
use openrtc_cli::top::tui::app::{App, AppEvent};
use openrtc_cli::top::tui::conn::{ConnCommand, ConnEvent};
use openrtc_cli::top::tui::state::{Settings, State};
use openrtc_cli::top::tui::view::Theme;
use openrtc_proto::PoolSnapshot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use crate::fixtures::{
    TAKEN_AT_UNIX_MS, blocker_worker, busy_worker, calls_worker, crowded_worker, draining_worker,
    idle_worker, preempted_worker, round_of, socket_of,
};

/// The two sizes every screen is checked at.
const SIZES: [(u16, u16); 2] = [(80, 24), (200, 50)];

/// An app that has taken in one round with `snapshots`.
pub(crate) fn app_with(
    snapshots: &[PoolSnapshot],
    settings: Settings,
) -> (App, Receiver<ConnCommand>) {
    let mut state = State::new(settings);
    state.apply_round(round_of(snapshots, TAKEN_AT_UNIX_MS));
    let (sender, commands) = channel();
    (App::new(state, sender), commands)
}

/// Settings with this sort and nothing else.
pub(crate) fn sorted_by(sort: SortKey) -> Settings {
    Settings {
        sort,
        refresh_rate_hz: 1.0,
        ..Settings::default()
    }
}

/// Presses keys, one character each.
fn press(app: &mut App, keys: &str) {
    for character in keys.chars() {
        let code = match character {
            '\n' => KeyCode::Enter,
            '\u{1b}' => KeyCode::Esc,
            other => KeyCode::Char(other),
        };
        app.handle(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }
}

/// Draws the app on a `width` × `height` test terminal and returns the buffer.
pub(crate) fn draw(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    app.draw(&mut terminal, Theme { color: true })
        .expect("drawing on a test terminal");
    terminal.backend().buffer().clone()
}

/// The buffer as text, one quoted line per row (as `TestBackend` prints itself).
pub(crate) fn text_of(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    let mut text = String::new();
    for row in buffer.content.chunks(width) {
        text.push('"');
        let mut skip = 0;
        for cell in row {
            if skip == 0 {
                text.push_str(cell.symbol());
            }
            skip = usize::max(skip, unicode_width::UnicodeWidthStr::width(cell.symbol()))
                .saturating_sub(1);
        }
        text.push_str("\"\n");
    }
    text
}

/// The row of the screen whose text starts with `prefix` (after leading spaces).
#[track_caller]
pub(crate) fn row_starting_with(buffer: &Buffer, prefix: &str) -> u16 {
    let text = text_of(buffer);
    let index = text
        .lines()
        .position(|line| line.trim_start_matches('"').starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in\n{text}"));
    u16::try_from(index).expect("a screen row")
}

/// The column where `needle` starts on screen row `y`.
#[track_caller]
pub(crate) fn column_of(buffer: &Buffer, y: u16, needle: &str) -> u16 {
    let line: String = (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol().to_owned())
        .collect();
    let byte_index = line
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on row {y}: {line:?}"));
    u16::try_from(line[..byte_index].chars().count()).expect("a screen column")
}

/// The column titles of the table (the one line naming STATUS), as text.
#[track_caller]
fn title_row(buffer: &Buffer) -> String {
    let text = text_of(buffer);
    text.lines()
        .find(|line| line.contains("STATUS"))
        .unwrap_or_else(|| panic!("no column titles in\n{text}"))
        .trim_matches('"')
        .trim_end()
        .to_owned()
}

/// Draws the app at both sizes and compares each screen with its snapshot; `expected` must
/// appear on both.
#[track_caller]
fn check_screens(app: &mut App, name: &str, expected: &str) {
    for (width, height) in SIZES {
        let text = text_of(&draw(app, width, height));
        assert!(
            text.contains(expected),
            "{expected:?} missing at {width}x{height}:\n{text}"
        );
        assert_snapshot!(format!("{name}_{width}x{height}"), text);
    }
}

#[test]
fn an_empty_pool() {
    let (mut app, _commands) = app_with(&[idle_worker("demo", 4242)], sorted_by(SortKey::Cpu));
    check_screens(&mut app, "an_empty_pool", "(no live sessions)");
}

#[test]
fn a_slow_session_blocking_a_thread_now() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Session));
    check_screens(&mut app, "a_slow_session", "blocking 230ms");

    let buffer = draw(&mut app, 80, 24);
    let selected = row_starting_with(&buffer, "s-1 ");
    assert_eq!(buffer[(0, selected)].bg, Color::Blue, "the selected row");
    let slow = row_starting_with(&buffer, "s-2 ");
    assert_eq!(buffer[(0, slow)].fg, Color::Yellow, "a slow row stands out");
    let blocking = column_of(&buffer, slow, "blocking");
    assert_eq!(buffer[(blocking, slow)].fg, Color::Red);
    assert!(buffer[(blocking, slow)].modifier.contains(Modifier::BOLD));
    let calm = row_starting_with(&buffer, "s-10 ");
    assert_eq!(buffer[(0, calm)].fg, Color::Reset, "an active row is plain");
}

#[test]
fn the_cpu_and_memory_bars_on_a_wide_screen() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Session));
    let buffer = draw(&mut app, 200, 50);
    let row = row_starting_with(&buffer, "s-2 ");
    let cpu = column_of(&buffer, row, "97.3 ");
    let bar: String = (cpu + 4..cpu + 15)
        .map(|x| buffer[(x, row)].symbol().to_owned())
        .collect();
    assert_eq!(bar, " █████████▊", "97.3% of one core is 9.7 cells of 10");
    // Memory bars are relative to the largest session: s-2's 9 MiB fills its bar.
    let memory = column_of(&buffer, row, "9.0M ");
    let bar: String = (memory + 4..memory + 15)
        .map(|x| buffer[(x, row)].symbol().to_owned())
        .collect();
    assert_eq!(bar, " ██████████");
    assert_eq!(buffer[(memory + 5, row)].fg, Color::Magenta);
    assert_eq!(buffer[(cpu + 5, row)].fg, Color::Green);
}

#[test]
fn the_detail_pane_with_history() {
    let mut rounds = Vec::new();
    for (step, cpu_pct) in [5.0, 20.0, 60.0, 97.0, 40.0, 10.0, 97.25]
        .into_iter()
        .enumerate()
    {
        let mut snapshot = busy_worker();
        let earlier_ms = (6 - step as u64) * 500;
        snapshot.taken_at_unix_ms = TAKEN_AT_UNIX_MS - earlier_ms;
        snapshot.sessions[1].cpu_pct = cpu_pct;
        snapshot.sessions[1].mem_bytes = (3 + step as u64) * 1_048_576;
        rounds.push(round_of(&[snapshot], TAKEN_AT_UNIX_MS - earlier_ms));
    }
    let mut state = State::new(sorted_by(SortKey::Cpu));
    for round in rounds {
        state.apply_round(round);
    }
    let (sender, _commands) = channel();
    let mut app = App::new(state, sender);
    // The selection followed s-11, the busiest at first; s-2 is on top now.
    app.handle(AppEvent::Key(KeyEvent::new(
        KeyCode::Home,
        KeyModifiers::NONE,
    )));
    press(&mut app, "\n");
    check_screens(
        &mut app,
        "the_detail_pane",
        "blocked worker thread 1 for 180ms",
    );
    let text = text_of(&draw(&mut app, 200, 50));
    assert!(text.contains("▁▂▅█▄▂█ highest 97.3% over 3s"), "{text}");
    assert!(text.contains("\"caller\": \"+1 555 0100\""), "{text}");
    // The newest stall: its cause, the agent's frames marked, who it delayed.
    assert!(
        text.contains("→ llm::cache::lookup  src/llm/cache.rs:88"),
        "{text}"
    );
    assert!(
        text.contains("delayed: s-1 170ms, s-10 95ms and 1 more"),
        "{text}"
    );
    assert!(
        text.contains("lost 310ms to 2 stalls of other sessions"),
        "{text}"
    );
}

#[test]
fn the_detail_pane_of_a_session_that_has_ended() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Session));
    press(&mut app, "\n");
    let mut after = busy_worker();
    let ended = after.sessions.remove(0);
    after.recently_ended.insert(
        0,
        crate::fixtures::ended(
            &ended.id.to_string(),
            &ended.agent,
            &ended.tenant,
            openrtc_proto::SessionOutcome::Cancelled {
                reason: openrtc_proto::CancelReason::Operator,
            },
            ended.duration_ms,
        ),
    );
    app.handle(AppEvent::Conn(ConnEvent::Round(round_of(
        &[after],
        TAKEN_AT_UNIX_MS + 1_000,
    ))));
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(text.contains("session s-1 · agent echo"), "{text}");
    assert!(
        text.contains("ended 3.5s ago: cancelled (operator)"),
        "the pane stays on the ended session and says how it ended:\n{text}"
    );
}

#[test]
fn a_filtered_view() {
    let settings = Settings {
        status: Some(StatusFilter::Active),
        tenant: Some("acme".into()),
        ..sorted_by(SortKey::Dur)
    };
    let (mut app, _commands) = app_with(&[busy_worker()], settings);
    press(&mut app, "/s-1\n");
    check_screens(
        &mut app,
        "a_filtered_view",
        "filter: status=active tenant=acme /s-1",
    );

    press(&mut app, "/x");
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("(no sessions match: status=active tenant=acme /s-1x)"),
        "{text}"
    );
    assert!(text.contains("search: s-1x█"), "{text}");
}

#[test]
fn the_help_screen() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, "?");
    check_screens(&mut app, "the_help_screen", "openrtc top: keys");
}

#[test]
fn the_cancel_confirmation_and_the_tenant_list() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, "k");
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(text.contains("cancel this session?"), "{text}");
    assert!(text.contains("s-2 · agent llm · tenant globex"), "{text}");
    assert_snapshot!("the_cancel_confirmation_80x24", text);
    press(&mut app, "nt");
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("globex") && text.contains("1 session, 1 slow"),
        "{text}"
    );
    assert_snapshot!("the_tenant_list_80x24", text);
}

#[test]
fn a_tiny_terminal() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Cpu));
    let buffer = draw(&mut app, 60, 15);
    let text = text_of(&buffer);
    assert!(text.contains("blocking 230ms"), "{text}");
    let titles = title_row(&buffer);
    assert!(
        titles.starts_with("SESSION ") && titles.contains(" CPU%▼ ") && titles.contains("STATUS"),
        "SESSION, STATUS and the sort column stay whole on 60 columns: {titles:?}"
    );
    assert!(!titles.contains('…'), "no title is cut: {titles:?}");
    assert!(
        !titles.contains("TENANT") && !titles.contains("PEAK"),
        "TENANT, then PEAK give way on 60 columns: {titles:?}"
    );
    assert_eq!(
        row_starting_with(&buffer, "s-11 "),
        5,
        "session ids are whole"
    );
    assert_snapshot!("a_tiny_terminal_table_60x15", text);
    press(&mut app, "\n");
    let text = text_of(&draw(&mut app, 60, 15));
    assert!(text.contains("session s-2"), "{text}");
    assert_snapshot!("a_tiny_terminal_detail_60x15", text);
    press(&mut app, "\u{1b}?");
    assert_snapshot!(
        "a_tiny_terminal_help_60x15",
        text_of(&draw(&mut app, 60, 15))
    );
}

#[test]
fn a_worker_with_approximate_memory_shows_mem_tilde() {
    let (mut app, _commands) = app_with(&[draining_worker()], sorted_by(SortKey::Cpu));
    check_screens(&mut app, "approximate_memory", "MEM~");
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(text.contains("DRAINING"), "{text}");
    assert!(text.contains("MEM~ = equal share of RSS"), "{text}");
}

#[test]
fn several_workers_one_gone_one_failing() {
    let (mut app, _commands) = app_with(
        &[busy_worker(), idle_worker("edge", 7), draining_worker()],
        sorted_by(SortKey::Cpu),
    );
    // The worker named edge goes away and the draining one stops answering; twelve seconds
    // later they still have not come back.
    for at_unix_ms in [TAKEN_AT_UNIX_MS + 1_000, TAKEN_AT_UNIX_MS + 13_000] {
        let mut round = round_of(&[busy_worker()], at_unix_ms);
        round.polls.push(WorkerPoll {
            socket: socket_of("edge", 7),
            outcome: PollOutcome::NotListening,
        });
        round.polls.push(WorkerPoll {
            socket: socket_of("edge-eu.1", 77),
            outcome: PollOutcome::Failed(std::sync::Arc::new(WorkerError {
                socket: socket_of("edge-eu.1", 77),
                failure: QueryError::Timeout(std::io::ErrorKind::WouldBlock.into()).into(),
            })),
        });
        app.handle(AppEvent::Conn(ConnEvent::Round(round)));
    }
    check_screens(
        &mut app,
        "several_workers",
        "GONE for 12s: nobody listens on its socket",
    );
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("ERROR for 12s: no answer within 5s"),
        "{text}"
    );
    assert!(
        text.contains("WORKER"),
        "rows say which worker they belong to:\n{text}"
    );
}

#[test]
fn a_long_table_shows_the_position() {
    let (mut app, _commands) = app_with(&[crowded_worker(500)], sorted_by(SortKey::Cpu));
    let page_down = || AppEvent::Key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    // Before the first draw the page size is not known: a page is one row.
    for _ in 0..3 {
        app.handle(page_down());
    }
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(text.contains("row 4/500"), "{text}");
    // Eighteen rows fit at 80×24.
    for _ in 0..3 {
        app.handle(page_down());
    }
    let buffer = draw(&mut app, 80, 24);
    let text = text_of(&buffer);
    assert!(text.contains("row 58/500"), "{text}");
    let selected = row_starting_with(&buffer, "s-443 ");
    assert_eq!(
        selected, 21,
        "the selected row is the last on screen:\n{text}"
    );
    assert_eq!(buffer[(0, selected)].bg, Color::Blue);
    assert_snapshot!("a_long_table_80x24", text);
}

#[test]
fn before_the_first_answer() {
    let (sender, _commands) = channel();
    let mut app = App::new(State::new(sorted_by(SortKey::Cpu)), sender);
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("asking the workers for their snapshots…"),
        "{text}"
    );
    app.handle(AppEvent::Conn(ConnEvent::Round(SurveyRound::default())));
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("no worker answers: waiting for one to start"),
        "{text}"
    );
}

#[test]
fn any_screen_size_draws_without_panicking() {
    for keys in ["", "\n", "?", "k", "t", "/s"] {
        let (mut app, _commands) =
            app_with(&[busy_worker(), draining_worker()], sorted_by(SortKey::Cpu));
        press(&mut app, keys);
        for width in (1..=81).step_by(8) {
            for height in 1..=16 {
                let text = text_of(&draw(&mut app, width, height));
                assert_eq!(text.lines().count(), usize::from(height), "{keys:?}");
            }
        }
    }
}

#[test]
fn without_colors_the_meaning_is_kept_in_attributes() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Session));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    app.draw(&mut terminal, Theme { color: false })
        .expect("drawing on a test terminal");
    let buffer = terminal.backend().buffer().clone();
    let selected = row_starting_with(&buffer, "s-1 ");
    assert!(buffer[(0, selected)].modifier.contains(Modifier::REVERSED));
    let slow = row_starting_with(&buffer, "s-2 ");
    assert!(buffer[(0, slow)].modifier.contains(Modifier::BOLD));
    assert_eq!(buffer[(0, slow)].fg, Color::Reset);
    let every_cell_uncolored = buffer
        .content
        .iter()
        .all(|cell| cell.fg == Color::Reset && cell.bg == Color::Reset);
    assert!(every_cell_uncolored, "NO_COLOR means no color at all");
}

#[test]
fn a_paused_view_says_so() {
    let (mut app, commands) = app_with(&[busy_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, " ");
    assert_eq!(commands.try_recv(), Ok(ConnCommand::SetPaused(true)));
    let text = text_of(&draw(&mut app, 80, 24));
    let status_line = text.lines().nth(22).unwrap_or_default();
    assert!(status_line.contains("PAUSED · row 1/4"), "{text}");
    assert!(text.contains("␣ resume"), "{text}");
}

#[test]
fn the_sort_arrow_is_whole_on_a_120_column_screen() {
    let (mut app, _commands) = app_with(&[busy_worker()], sorted_by(SortKey::Stalls));
    let buffer = draw(&mut app, 120, 30);
    let text = text_of(&buffer);
    let titles = title_row(&buffer);
    assert!(titles.contains(" STALLS▼ "), "{titles:?}");
    assert!(!titles.contains('…'), "no title is cut: {titles:?}");
    let y = row_starting_with(&buffer, "SESSION");
    let arrow = column_of(&buffer, y, "▼");
    assert_eq!(
        buffer[(arrow, y)].bg,
        Color::Cyan,
        "the arrow is in the sort style"
    );
    // The most stalls first: s-2 caused six.
    assert_eq!(row_starting_with(&buffer, "s-2 "), y + 1, "{text}");
    assert_snapshot!("sorted_by_stalls_120x30", text);
}

#[test]
fn exact_and_approximate_workers_side_by_side_mark_each_approximate_figure() {
    // The demo worker tracks memory exactly; edge-eu.1 only knows an equal share of its RSS.
    let (mut app, _commands) =
        app_with(&[busy_worker(), draining_worker()], sorted_by(SortKey::Cpu));
    check_screens(&mut app, "mixed_memory_sources", "9.0M ");
    for (width, height) in SIZES {
        let buffer = draw(&mut app, width, height);
        let text = text_of(&buffer);
        let titles = title_row(&buffer);
        assert!(
            titles.contains(" MEM ") && !titles.contains("MEM~"),
            "the title does not call exact figures approximate: {titles:?}"
        );
        let rows: Vec<&str> = text
            .lines()
            .map(|line| line.trim_matches('"'))
            .filter(|line| {
                (line.starts_with("demo ") || line.starts_with("edge-")) && line.contains(" s-")
            })
            .collect();
        assert_eq!(rows.len(), 6, "{text}");
        for row in rows {
            let approximate = row.starts_with("edge-");
            assert_eq!(
                row.contains("M~ "),
                approximate,
                "{width}x{height}: only edge-eu.1's figures end in ~: {row:?}"
            );
        }
    }
    // With only approximate workers the title says it once and the figures stay plain.
    let (mut app, _commands) = app_with(&[draining_worker()], sorted_by(SortKey::Cpu));
    let buffer = draw(&mut app, 80, 24);
    assert!(title_row(&buffer).contains("MEM~"));
    let text = text_of(&buffer);
    let rows: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("\"s-"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().all(|row| !row.contains('~')), "{text}");
}

#[test]
fn long_stack_frames_wrap_in_the_detail_pane_at_80_columns() {
    let (mut app, _commands) = app_with(&[blocker_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, "\n");
    let buffer = draw(&mut app, 80, 24);
    let text = text_of(&buffer);
    let lines: Vec<&str> = text.lines().map(|line| line.trim_matches('"')).collect();
    assert!(
        lines
            .iter()
            .any(|line| line.trim() == "examples/demo/src/agents/blocker.rs:28"),
        "the agent frame's file:line is whole, on a line of its own:\n{text}"
    );
    let agent_frame = lines
        .iter()
        .position(|line| line.trim() == "→ <openrtc_demo::agents::blocker::Blocker as")
        .unwrap_or_else(|| panic!("the agent frame starts a line:\n{text}"));
    assert_eq!(
        lines[agent_frame + 1].trim(),
        "openrtc::agent::Agent>::run::{{closure}}",
        "the function goes on, wrapped at a space:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.trim() == "library/std/src/thread/functions.rs:107"),
        "library frames wrap too:\n{text}"
    );
    assert!(
        !lines.iter().any(|line| line.contains('…')),
        "nothing in the pane is cut:\n{text}"
    );
    assert_snapshot!("the_detail_pane_long_frames_80x24", text);
}

#[test]
fn a_stall_the_host_caused_says_so_in_the_detail_pane() {
    let (mut app, _commands) = app_with(&[preempted_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, "\n");
    let text = text_of(&draw(&mut app, 100, 30));
    assert!(text.contains("1 in total (1 the host's)"), "{text}");
    assert!(
        text.contains("on a CPU 12ms of 76ms watched (16%), 64ms waiting for one: the host kept"),
        "{text}"
    );
    assert!(text.contains("still coming: victims"), "{text}");
    assert_snapshot!("the_detail_pane_preempted_100x30", text);
}

#[test]
fn tracked_calls_and_child_tasks_in_the_detail_pane() {
    let (mut app, _commands) = app_with(&[calls_worker()], sorted_by(SortKey::Cpu));
    press(&mut app, "\n");
    let buffer = draw(&mut app, 80, 24);
    let text = text_of(&buffer);
    assert!(
        text.contains("2 running · 4 completed · 1 panicked · 2 cancelled"),
        "{text}"
    );
    // Blocking first, then failures, then the busiest; one label left over.
    let db = row_starting_with(&buffer, "          db.query");
    let tts = row_starting_with(&buffer, "          tts.cartesia");
    let cache = row_starting_with(&buffer, "          cache.get");
    assert!(db < tts && tts < cache, "{text}");
    assert!(text.contains("and 1 more label"), "{text}");
    assert!(
        text.contains("db.query         340  45ms 180ms    0    0     2"),
        "{text}"
    );
    assert!(text.contains("cache.get        800 420µs 950µs"), "{text}");
    // The blocking count is in the alert style, a zero one is not.
    let width = buffer.area.width;
    let line: String = (0..width)
        .map(|x| buffer[(x, db)].symbol().to_owned())
        .collect();
    let blocking = line.trim_end().chars().count() - 1;
    let alert = Theme { color: true }.alert();
    assert_eq!(
        buffer[(blocking as u16, db)].fg,
        alert.fg.unwrap_or(Color::Reset)
    );
    assert_ne!(
        buffer[(blocking as u16, cache)].fg,
        alert.fg.unwrap_or(Color::Reset)
    );
    assert_snapshot!("tracked_calls_80x24", text);
    let text = text_of(&draw(&mut app, 60, 15));
    assert!(text.contains("calls     label          count"), "{text}");
    assert_snapshot!("tracked_calls_60x15", text);
}

#[test]
fn a_degrading_call_is_flagged_in_the_late_column_and_its_figures_are_in_the_detail_pane() {
    let mut worker = busy_worker();
    for session in &mut worker.sessions {
        let (late_ms, degrading) = match session.id.to_string().as_str() {
            "s-2" => (181.6, true),
            "s-1" => (2.4, false),
            _ => continue,
        };
        let mut media = openrtc_proto::CallMediaSnapshot::default();
        media.provider = "twilio".into();
        media.stream_id = "MZ1".into();
        media.frames_in_count = 500;
        media.frames_out_count = 480;
        media.window_ms = 10_000;
        media.window_frames_missing_count = 3;
        media.frames_missing_count = 7;
        media.inbound_jitter_p99_ms = 12.0;
        media.outbound_lateness_p99_ms = late_ms;
        media.degrading = degrading;
        session.media = Some(media);
    }
    let (mut app, _commands) = app_with(&[worker.clone()], sorted_by(SortKey::Late));
    let buffer = draw(&mut app, 80, 24);
    let text = text_of(&buffer);
    assert!(title_row(&buffer).contains("LATE▼"), "{text}");
    let late = row_starting_with(&buffer, "s-2 ");
    let prompt = row_starting_with(&buffer, "s-1 ");
    let plain = row_starting_with(&buffer, "s-10 ");
    assert!(late < prompt && prompt < plain, "latest first: {text}");
    // Unselected (sorted by session, s-1 is selected), a degrading call's LATE is in the
    // warning style.
    let (mut by_session, _commands) = app_with(&[worker.clone()], sorted_by(SortKey::Session));
    let unselected = draw(&mut by_session, 80, 24);
    let row = row_starting_with(&unselected, "s-2 ");
    let flag = column_of(&unselected, row, "182!");
    let warning = Theme { color: true }.warning();
    assert_eq!(
        unselected[(flag, row)].fg,
        warning.fg.unwrap_or(Color::Reset),
        "{}",
        text_of(&unselected)
    );
    // LATE is right-aligned just before STATUS.
    column_of(&buffer, prompt, "    2 active");
    column_of(&buffer, plain, "    - active");
    // The selection starts on the first row, the degrading call.
    press(&mut app, "\n");
    let text = text_of(&draw(&mut app, 120, 40));
    assert!(
        text.contains("twilio stream MZ1 · 500 frames in, 480 out"),
        "{text}"
    );
    assert!(
        text.contains(
            "late p99 182ms · jitter p99 12ms · missing 3 · dropped 0 · jumps 0 (last 10 s) · degrading"
        ),
        "{text}"
    );
    assert!(text.contains("since it started: 7 missing"), "{text}");
}
