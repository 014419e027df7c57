//! Tests of live reloading with real files in a temp dir, the real inotify watcher and a
//! real SIGHUP: edits in place and by rename, an invalid edit logged once, and stopping.

use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use super::*;
use crate::tenant_config::TenantConfigError;

/// How long a wait may take before the test fails: generous, for busy CI machines.
const PATIENCE: Duration = Duration::from_secs(10);

const FIRST: &str = "[defaults]\nmax_sessions = 1\n[max_sessions_per_agent]\necho = 2\n";
const SECOND: &str = "[defaults]\nmax_sessions = 2\n";
const BAD: &str = "[defaults]\nmax_sessions = -1\n";

/// The watcher alone: a SIGHUP raised by another test of the same process (under plain
/// `cargo test`) cannot reload these tests' files.
const WATCH_ONLY: ReloaderOptions = ReloaderOptions {
    watch_file: true,
    reload_on_sighup: false,
    debounce: ReloaderOptions::DEFAULT_DEBOUNCE,
};

/// One captured log line: its level, its message and its fields.
#[derive(Clone, Debug, Default)]
struct Line {
    level: Option<tracing::Level>,
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_owned(), text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .push((field.name().to_owned(), value.to_owned()));
    }
}

/// The log lines of one test, from every thread that logs into its subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Line>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut line = Line {
            level: Some(*event.metadata().level()),
            ..Line::default()
        };
        event.record(&mut line);
        crate::lock(&self.0).push(line);
    }
}

impl Captured {
    /// Captures this thread's log lines (and those of threads that inherit its subscriber)
    /// until the guard is dropped.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn lines_at(&self, level: tracing::Level) -> Vec<Line> {
        crate::lock(&self.0)
            .iter()
            .filter(|line| line.level == Some(level))
            .cloned()
            .collect()
    }
}

/// Waits (polling every 10 ms) until `condition` holds; fails after [`PATIENCE`].
#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[track_caller]
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("the test file is written");
}

/// A config file in a temp dir, its cell, and a reloader that records each config its
/// callback sees (as the `max_sessions` of the defaults).
struct Fixture {
    // Dropped first: the reloader stops before the temp dir goes.
    reloader: Option<Reloader>,
    cell: Arc<TenantConfigCell>,
    reloads_seen: Arc<Mutex<Vec<Option<u32>>>>,
    directory: tempfile::TempDir,
}

impl Fixture {
    #[track_caller]
    fn start(options: ReloaderOptions) -> Self {
        let directory = tempfile::tempdir().expect("a temp dir");
        let path = directory.path().join("tenants.toml");
        write(&path, FIRST);
        let cell = Arc::new(TenantConfigCell::load(&path, &["echo"]).expect("a valid file"));
        let reloads_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reloads_seen);
        let on_reload: OnReload = Box::new(move |config: &TenantConfig| {
            crate::lock(&seen).push(config.policy("any").max_sessions);
        });
        let reloader =
            Reloader::spawn(Arc::clone(&cell), on_reload, options).expect("the reloader starts");
        Self {
            reloader: Some(reloader),
            cell,
            reloads_seen,
            directory,
        }
    }

    fn reloads_seen(&self) -> Vec<Option<u32>> {
        crate::lock(&self.reloads_seen).clone()
    }

    fn path(&self) -> &Path {
        self.cell.path()
    }

    #[track_caller]
    fn wait_for_version(&self, text: &str) {
        let expected = super::super::version_of(text.as_bytes());
        wait_until(&format!("version {expected}"), || {
            self.cell.current().version() == expected
        });
    }
}

#[test]
fn a_valid_edit_is_applied_and_logged_with_both_versions() {
    let captured = Captured::default();
    let _guard = captured.install();
    let fixture = Fixture::start(WATCH_ONLY);
    let first_version = fixture.cell.current().version().to_owned();
    assert_eq!(fixture.cell.snapshot().reloads_count, 1);

    write(fixture.path(), SECOND);
    fixture.wait_for_version(SECOND);

    let second_version = fixture.cell.current().version().to_owned();
    assert_eq!(fixture.cell.current().policy("acme").max_sessions, Some(2));
    wait_until("the callback", || !fixture.reloads_seen().is_empty());
    assert_eq!(fixture.reloads_seen(), [Some(2)]);
    let snapshot = fixture.cell.snapshot();
    assert_eq!(snapshot.version, second_version);
    assert_eq!(snapshot.reloads_count, 2);
    assert_eq!(snapshot.last_error, None);
    assert_eq!(snapshot.path, fixture.path().display().to_string());
    let infos = captured.lines_at(tracing::Level::INFO);
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert_eq!(
        infos[0].message,
        format!(
            "[tenant-config] reloaded {}: version {first_version} -> {second_version}",
            fixture.path().display()
        )
    );
    assert!(
        infos[0]
            .fields
            .contains(&("new_version".to_owned(), second_version.clone())),
        "{infos:?}"
    );
    assert!(
        infos[0]
            .fields
            .contains(&("old_version".to_owned(), first_version)),
        "{infos:?}"
    );
}

#[test]
fn an_invalid_edit_keeps_the_old_config_and_is_logged_once_per_content() {
    let captured = Captured::default();
    let _guard = captured.install();
    let fixture = Fixture::start(WATCH_ONLY);
    let first_version = fixture.cell.current().version().to_owned();

    write(fixture.path(), BAD);
    wait_until("the error", || fixture.cell.snapshot().last_error.is_some());
    let snapshot = fixture.cell.snapshot();
    let error = snapshot.last_error.expect("an error");
    assert!(
        error.starts_with(&format!("{}:2:16: ", fixture.path().display())),
        "{error}"
    );
    assert!(snapshot.last_error_at_unix_ms.is_some());
    assert_eq!(snapshot.version, first_version, "the old version stays");
    assert_eq!(snapshot.reloads_count, 1);
    assert_eq!(fixture.cell.current().agent_cap("echo"), Some(2));

    // The same bad content again: a second attempt (at least a debounce later, so its time
    // differs), no second line.
    let first_failed_at = snapshot.last_error_at_unix_ms;
    write(fixture.path(), BAD);
    wait_until("a second attempt", || {
        fixture.cell.snapshot().last_error_at_unix_ms > first_failed_at
    });
    assert_eq!(fixture.cell.snapshot().last_error, Some(error.clone()));
    let warnings = captured.lines_at(tracing::Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].message,
        format!("[tenant-config] {error}; keeping version {first_version}")
    );

    // Other bad content (an agent that is not registered) is logged again.
    write(fixture.path(), "[max_sessions_per_agent]\nstt = 1\n");
    wait_until("the second error", || {
        fixture
            .cell
            .snapshot()
            .last_error
            .is_some_and(|error| error.contains(":2:1: max_sessions_per_agent names agent"))
    });
    assert_eq!(captured.lines_at(tracing::Level::WARN).len(), 2);

    // A valid edit clears the error.
    write(fixture.path(), SECOND);
    fixture.wait_for_version(SECOND);
    let snapshot = fixture.cell.snapshot();
    assert_eq!(snapshot.last_error, None);
    assert_eq!(snapshot.last_error_at_unix_ms, None);
    assert_eq!(snapshot.reloads_count, 2);
}

#[test]
fn a_file_replaced_by_a_rename_is_reloaded() {
    let fixture = Fixture::start(WATCH_ONLY);
    let temporary = fixture.directory.path().join(".tenants.toml.swp");
    write(&temporary, SECOND);
    std::fs::rename(&temporary, fixture.path()).expect("the rename");
    fixture.wait_for_version(SECOND);
    wait_until("the callback", || !fixture.reloads_seen().is_empty());
    assert_eq!(fixture.reloads_seen(), [Some(2)]);
}

#[test]
fn a_burst_of_writes_makes_one_reload() {
    let fixture = Fixture::start(ReloaderOptions {
        debounce: Duration::from_secs(1),
        ..WATCH_ONLY
    });
    for max_sessions in [7, 8, 9] {
        write(
            fixture.path(),
            &format!("[defaults]\nmax_sessions = {max_sessions}\n"),
        );
    }
    write(fixture.path(), SECOND);
    fixture.wait_for_version(SECOND);
    assert_eq!(fixture.cell.snapshot().reloads_count, 2, "one reload");
    wait_until("the callback", || !fixture.reloads_seen().is_empty());
    assert_eq!(fixture.reloads_seen(), [Some(2)]);
}

#[test]
fn sighup_reloads_a_file_the_watcher_does_not_see() {
    let fixture = Fixture::start(ReloaderOptions {
        watch_file: false,
        ..ReloaderOptions::default()
    });
    write(fixture.path(), SECOND);
    // The handler is in place once `spawn` has returned; nothing else can reload the file.
    signal_hook::low_level::raise(SIGHUP).expect("SIGHUP is raised");
    fixture.wait_for_version(SECOND);
    assert_eq!(fixture.cell.snapshot().reloads_count, 2);
}

#[test]
fn dropping_the_reloader_stops_it_promptly_even_with_a_reload_pending() {
    let mut fixture = Fixture::start(ReloaderOptions {
        debounce: Duration::from_secs(600),
        ..WATCH_ONLY
    });
    write(fixture.path(), SECOND);
    let started = Instant::now();
    drop(fixture.reloader.take());
    assert!(
        started.elapsed() < PATIENCE,
        "stopped in {:?}",
        started.elapsed()
    );
    assert_eq!(
        fixture.cell.snapshot().reloads_count,
        1,
        "the pending reload is dropped"
    );
}

#[test]
fn a_missing_file_at_the_first_load_fails_and_reload_reports_it_later() {
    let directory = tempfile::tempdir().expect("a temp dir");
    let path = directory.path().join("tenants.toml");
    assert!(matches!(
        TenantConfigCell::load(&path, &[]),
        Err(TenantConfigError::Read { .. })
    ));
    write(&path, FIRST);
    let cell = TenantConfigCell::load(&path, &["echo"]).expect("a valid file");
    assert!(matches!(cell.reload(), ReloadOutcome::Unchanged));
    std::fs::remove_file(&path).expect("removed");
    match cell.reload() {
        ReloadOutcome::Failed(TenantConfigError::Read { .. }) => {}
        other => panic!("expected a read error, got {other:?}"),
    }
    assert_eq!(cell.current().agent_cap("echo"), Some(2), "kept");
    write(&path, FIRST);
    assert!(matches!(cell.reload(), ReloadOutcome::Unchanged));
    assert_eq!(
        cell.snapshot().last_error,
        None,
        "back to the version in force"
    );
}
