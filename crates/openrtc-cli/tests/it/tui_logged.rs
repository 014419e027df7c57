//! What sessions logged, in the live view: the detail pane of a session that failed shows the
//! last records its flight recorder kept and the command that reads the rest, also after its
//! worker stops listing it; the worker header shows the log file and its dropped records.
//! Drawn on ratatui's `TestBackend`, compared with insta snapshots of the text; the styles
//! that carry meaning (errors, warnings) are checked cell by cell.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use insta::assert_snapshot;
use openrtc_cli::cli::SortKey;
use openrtc_cli::top::tui::app::{App, AppEvent};
use openrtc_cli::top::tui::conn::ConnEvent;
use openrtc_proto::{PoolSnapshot, SessionOutcome};
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use crate::fixtures::{
    TAKEN_AT_UNIX_MS, busy_worker, ended, hung_up_records, logging_worker, round_of,
};
use crate::tui_render::{app_with, column_of, draw, row_starting_with, sorted_by, text_of};

/// The sizes the pane is checked at: the two usual ones and the smallest supported.
const PANE_SIZES: [(u16, u16); 3] = [(80, 24), (200, 50), (60, 15)];

/// `before` with its session s-1 ended: failed, with `frames` DEBUG frames in what it logged
/// last (and, when `listed` is false, already gone from the recently ended list).
fn s1_failed(before: PoolSnapshot, frames: u64, listed: bool) -> PoolSnapshot {
    let mut after = before;
    let gone = after.sessions.remove(0);
    assert_eq!(gone.id.to_string(), "s-1", "the fixture's first session");
    after.worker.active_sessions -= 1;
    if listed {
        let mut row = ended(
            "s-1",
            &gone.agent,
            &gone.tenant,
            SessionOutcome::Failed {
                error: "peer hung up: connection reset".into(),
            },
            gone.duration_ms,
        );
        row.flight_recorder = hung_up_records(frames);
        after.recently_ended.insert(0, row);
    }
    after
}

/// An app whose detail pane was opened on s-1 while it was live, after rounds in which s-1
/// failed.
fn pane_on_failed_s1(rounds: Vec<PoolSnapshot>) -> App {
    let (mut app, _commands) = app_with(&[logging_worker()], sorted_by(SortKey::Session));
    app.handle(AppEvent::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    for (round, snapshot) in (1..).zip(rounds) {
        app.handle(AppEvent::Conn(ConnEvent::Round(round_of(
            &[snapshot],
            TAKEN_AT_UNIX_MS + round * 1_000,
        ))));
    }
    app
}

/// The row of the screen whose text, after its leading spaces, starts with `prefix`.
#[track_caller]
fn row_of(buffer: &Buffer, prefix: &str) -> u16 {
    let index = lines_of(buffer)
        .iter()
        .position(|line| line.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in\n{}", text_of(buffer)));
    u16::try_from(index).expect("a screen row")
}

/// The text lines of a screen, without their quotes and trailing spaces.
fn lines_of(buffer: &Buffer) -> Vec<String> {
    text_of(buffer)
        .lines()
        .map(|line| line.trim_matches('"').trim_end().to_owned())
        .collect()
}

#[test]
fn the_detail_pane_of_a_failed_session_shows_its_last_records() {
    let mut app = pane_on_failed_s1(vec![s1_failed(logging_worker(), 24, true)]);
    for (width, height) in PANE_SIZES {
        let buffer = draw(&mut app, width, height);
        let text = text_of(&buffer);
        let lines = lines_of(&buffer);
        let title = lines
            .iter()
            .position(|line| line.starts_with("logged    last "))
            .unwrap_or_else(|| panic!("no records title at {width}x{height}:\n{text}"));
        assert!(
            lines[title - 1].starts_with("state     ended 3.5s ago: failed: peer hung up"),
            "the records follow the state line at {width}x{height}:\n{text}"
        );
        // The newest record, the failure, is the last one, whole up to the screen's width.
        let failure = row_of(&buffer, "22:13:17.500 ERROR session failed");
        assert!(usize::from(failure) > title, "{text}");
        let x = column_of(&buffer, failure, "ERROR");
        assert_eq!(buffer[(x, failure)].fg, Color::Red, "{width}x{height}");
        assert!(buffer[(x, failure)].modifier.contains(Modifier::BOLD));
        assert_eq!(
            buffer[(column_of(&buffer, failure, "22:13"), failure)].fg,
            Color::DarkGray,
            "times are dim"
        );
        if width >= 80 {
            let warning = row_of(&buffer, "22:13:17.100 WARN");
            assert!(warning < failure, "oldest first: {text}");
            let x = column_of(&buffer, warning, "send failed");
            assert_eq!(buffer[(x, warning)].fg, Color::Yellow, "{width}x{height}");
        }
        assert!(
            text.contains("the rest: openrtc logs"),
            "the command that reads the rest at {width}x{height}:\n{text}"
        );
        assert_snapshot!(format!("failed_session_records_{width}x{height}"), text);
    }
    // At 80×24 the records take about half the pane: the newest that fit in seven lines,
    // the warnings and the failure wrapped; the figures follow below.
    let lines = lines_of(&draw(&mut app, 80, 24));
    assert!(
        lines.contains(&"logged    last 3 of 28 records kept before it ended (UTC):".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"                             peak_bytes=1572864".to_owned()),
        "the failure is whole:\n{lines:#?}"
    );
    assert!(
        lines.contains(
            &"          the rest: openrtc logs /var/log/openrtc/demo.jsonl --session s-1"
                .to_owned()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with("started   ")),
        "{lines:#?}"
    );
    // No screen size makes the pane panic or draw past its lines.
    for width in (1..=81).step_by(8) {
        for height in 1..=16 {
            let text = text_of(&draw(&mut app, width, height));
            assert_eq!(text.lines().count(), usize::from(height));
        }
    }
    // At 60×15 the newest record still shows, its start whole, before the figures.
    let lines = lines_of(&draw(&mut app, 60, 15));
    assert!(
        lines.contains(&"logged    last 1 of 28 records kept before it ended (UTC):".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with("started   ")),
        "{lines:#?}"
    );
}

#[test]
fn the_records_stay_when_the_worker_stops_listing_the_session() {
    let mut app = pane_on_failed_s1(vec![
        s1_failed(logging_worker(), 2, true),
        s1_failed(logging_worker(), 2, false),
    ]);
    let text = text_of(&draw(&mut app, 200, 50));
    assert!(
        text.contains("ended 4.5s ago: failed: peer hung up"),
        "the pane keeps how it ended:\n{text}"
    );
    assert!(
        text.contains("logged    last 6 records before it ended (UTC):"),
        "and every record, all six fitting:\n{text}"
    );
    assert!(
        text.contains("22:13:11.000 INFO  joined room room=s-9"),
        "{text}"
    );
    assert!(text.contains("22:13:17.500 ERROR session failed"), "{text}");
}

#[test]
fn a_session_that_kept_no_records_or_a_worker_without_a_log_file_shows_less() {
    // Completed: its flight recorder kept nothing, so the pane has no records section.
    let (mut app, _commands) = app_with(&[logging_worker()], sorted_by(SortKey::Session));
    app.handle(AppEvent::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    let mut after = s1_failed(logging_worker(), 2, true);
    after.recently_ended[0].outcome = SessionOutcome::Completed;
    after.recently_ended[0].flight_recorder.clear();
    app.handle(AppEvent::Conn(ConnEvent::Round(round_of(
        &[after],
        TAKEN_AT_UNIX_MS + 1_000,
    ))));
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(text.contains("ended 3.5s ago: completed"), "{text}");
    assert!(!text.contains("logged "), "{text}");

    // A worker without a log file: the records, and no command pointing at a file.
    let mut before = busy_worker();
    before.recently_ended.clear();
    let mut app = pane_on_failed_s1(vec![s1_failed(before, 2, true)]);
    let text = text_of(&draw(&mut app, 80, 24));
    assert!(
        text.contains("logged    last 3 of 6 records kept"),
        "{text}"
    );
    assert!(!text.contains("openrtc logs"), "{text}");
}

#[test]
fn the_header_shows_the_log_file_and_warns_about_dropped_records() {
    let (mut app, _commands) = app_with(&[logging_worker()], sorted_by(SortKey::Cpu));
    // At 80 columns the warning takes its short form, right after the memory figures.
    let buffer = draw(&mut app, 80, 24);
    let row = row_starting_with(&buffer, "mem tracked");
    let x = column_of(&buffer, row, "log: 12 dropped");
    assert_eq!(buffer[(x, row)].fg, Color::Yellow, "{}", text_of(&buffer));
    // At 200 columns, with the file's name.
    let buffer = draw(&mut app, 200, 50);
    let text = text_of(&buffer);
    assert!(
        text.contains(
            "\"mem tracked 29.0 MiB (runtime 4.1 MiB, ended 204.8 KiB) · log: demo.jsonl (12 dropped) · session cap"
        ),
        "{text}"
    );
    assert_snapshot!("log_file_header_200x50", text);

    // Nothing dropped: the file is context, dim, after how sessions ended, then the flight
    // recorders' bytes.
    let mut calm = logging_worker();
    calm.worker.log_records_dropped_count = 0;
    let (mut app, _commands) = app_with(&[calm], sorted_by(SortKey::Cpu));
    let buffer = draw(&mut app, 200, 50);
    let text = text_of(&buffer);
    assert!(
        text.contains(" killed 0 · log: demo.jsonl · flight recorders: 38.5 KiB "),
        "{text}"
    );
    let row = row_starting_with(&buffer, "mem tracked");
    let x = column_of(&buffer, row, "log: demo.jsonl");
    assert_eq!(buffer[(x, row)].fg, Color::DarkGray, "{text}");
    let narrow = text_of(&draw(&mut app, 80, 24));
    assert!(
        !narrow.contains("log:"),
        "room goes to the memory figures first:\n{narrow}"
    );
}
