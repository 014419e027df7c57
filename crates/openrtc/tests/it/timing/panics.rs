//! A session's panic costs its worker thread and its siblings nothing: no stall, no output of
//! std's on the worker, a backtrace symbolized on another thread, and panics outside sessions
//! still reach the application's own hook.
//!
//! The checks run in a fresh process of this test binary: the panic hook and the tracing
//! subscriber are process-wide, and only a fresh process makes its panic the first one
//! symbolized (the one that loads the debug info).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openrtc::proto::{SessionOutcome as Wire, SessionState};
use openrtc::{AgentPool, JobRequest, Session, agent_fn};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::support::{RunningPool, TestPool as _, wait_for};

use super::wait_for_cue;

/// The root task's panic message.
const ROOT_MESSAGE: &str = "frame 7 is malformed";
/// The child task's panic message.
const CHILD_MESSAGE: &str = "child could not decode";
/// The panic of a plain thread, outside any session.
const PLAIN_MESSAGE: &str = "outside any session";
/// The name of the test that runs in the fresh process.
const FRESH_TEST: &str = "timing::panics::panic_checks_in_a_fresh_process";

#[test]
fn a_panicking_session_costs_its_worker_nothing() {
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([FRESH_TEST, "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the fresh process failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "it ran the checks:\n{stdout}");
    // std's default output (reached through the application's hook) shows the plain thread's
    // panic, with the backtrace RUST_BACKTRACE asks for, and nothing of the sessions' panics.
    assert!(stderr.contains("thread 'plain'"), "{stderr}");
    assert_eq!(stderr.matches("panicked at").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("stack backtrace:").count(), 1, "{stderr}");
    assert!(!stderr.contains(ROOT_MESSAGE), "{stderr}");
    assert!(!stderr.contains(CHILD_MESSAGE), "{stderr}");
}

/// One tracing event: the thread it was logged on and its fields (`message` is its text).
#[derive(Clone, Debug)]
struct Captured {
    thread: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    fn text(&self) -> &str {
        self.field("message")
    }
}

static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

/// Panics the application's own hook saw: thread name and message.
static HOOK_SAW: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn events_starting(prefix: &str) -> Vec<Captured> {
    locked(&EVENTS)
        .iter()
        .filter(|event| event.text().starts_with(prefix))
        .cloned()
        .collect()
}

/// A layer that keeps every event, with the name of the thread that logged it.
struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        struct Fields(BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        locked(&EVENTS).push(Captured {
            thread: std::thread::current().name().unwrap_or("").to_owned(),
            fields: fields.0,
        });
    }
}

/// Ticks every 5 ms like a live session, counting its frames, until cancelled.
async fn ticker(session: Session, frames: Arc<AtomicU64>) -> Result<(), openrtc::AgentError> {
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            _ = ticks.tick() => { frames.fetch_add(1, Ordering::Relaxed); }
            () = session.cancelled() => return Ok(()),
        }
    }
}

#[test]
#[ignore = "run in a fresh process by timing::panics::a_panicking_session_costs_its_worker_nothing"]
fn panic_checks_in_a_fresh_process() {
    // The application's own hook, installed before the pool: it notes each panic it sees,
    // then prints as std does.
    let std_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        locked(&HOOK_SAW).push((thread, message));
        std_hook(info);
    }));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
        .expect("the first subscriber of this process");

    let dir = tempfile::tempdir().expect("tempdir");
    let frames = Arc::new(AtomicU64::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let panic_line = Arc::new(AtomicU32::new(0));
    let child_join_was_panic = Arc::new(AtomicBool::new(false));
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("ticker", {
                let frames = Arc::clone(&frames);
                agent_fn(move |session: Session| ticker(session, Arc::clone(&frames)))
            })
            .agent("crashing", {
                let go = Arc::clone(&go);
                let panic_line = Arc::clone(&panic_line);
                agent_fn(move |_session: Session| {
                    let go = Arc::clone(&go);
                    let panic_line = Arc::clone(&panic_line);
                    async move {
                        wait_for_cue(&go).await;
                        panic_line.store(line!() + 1, Ordering::Release);
                        panic!("{ROOT_MESSAGE}");
                    }
                })
            })
            .agent("parent", {
                let child_join_was_panic = Arc::clone(&child_join_was_panic);
                agent_fn(move |session: Session| {
                    let child_join_was_panic = Arc::clone(&child_join_was_panic);
                    async move {
                        let child = session.spawn(async {
                            tokio::task::yield_now().await;
                            panic!("{CHILD_MESSAGE}");
                        });
                        let joined: Result<(), _> = child.await;
                        child_join_was_panic.store(
                            joined.is_err_and(|error| error.is_panic()),
                            Ordering::Release,
                        );
                        session.cancelled().await;
                        Ok(())
                    }
                })
            })
            // One worker thread: the sibling waits behind the panicking poll if it is slow.
            .worker_threads(1)
            .panic_backtraces(true)
            .socket_path(dir.path().join("w.sock")),
    );
    let sibling = pool.handle().launch(JobRequest::new()).expect("room").id();
    wait_for("the sibling to tick", || {
        (frames.load(Ordering::Relaxed) >= 3).then_some(())
    });
    let crashing = pool
        .handle()
        .launch(JobRequest::new().agent("crashing").tenant("acme"))
        .expect("room")
        .id();
    wait_for("the crashing session to run", || pool.row(crashing));
    go.store(true, Ordering::Release);
    let ended = pool.wait_ended(crashing);
    let frames_at_panic = frames.load(Ordering::Relaxed);

    // (a) The outcome: the exact message, and where: this file, the panic's line.
    let line = panic_line.load(Ordering::Acquire);
    let Wire::Panicked { message, location } = &ended.outcome else {
        panic!("expected a panic, got {:?}", ended.outcome);
    };
    assert_eq!(message, ROOT_MESSAGE);
    let location = location.as_deref().expect("the location is recorded");
    let column = location
        .strip_prefix(&format!("{}:{line}:", file!()))
        .unwrap_or_else(|| panic!("{location} is {}:{line}:<column>", file!()));
    assert!(
        column.parse::<u32>().is_ok_and(|column| column > 0),
        "{location}"
    );

    // (b) The panicking poll is no stall, though it is the process's first panic symbolized
    // (before, the first one symbolized on the worker thread for about 190 ms). The bound is
    // the stall threshold: busy time is wall time, and a busy host may preempt the poll.
    assert_eq!(ended.stall_count, 0, "{ended:?}");
    assert!(
        ended.busy_ns < 50_000_000,
        "the session's polls took {} ns in all",
        ended.busy_ns
    );

    // (c) The sibling on the same worker thread keeps running, never delayed.
    wait_for("the sibling to tick on after the panic", || {
        (frames.load(Ordering::Relaxed) >= frames_at_panic + 3).then_some(())
    });
    let row = pool.row(sibling).expect("the sibling is live");
    assert_eq!(row.state, SessionState::Active);
    assert_eq!(row.stall_count, 0);
    assert_eq!(row.delayed_by_stalls_count, 0, "{row:?}");

    // One `[session-panic]` line, on the worker thread, with its fields.
    let lines = events_starting("[session-panic] ");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let panic_event = &lines[0];
    assert_eq!(
        panic_event.text(),
        format!(
            "[session-panic] session_id={crashing} tenant=acme agent=crashing root task \
             panicked at {location}: {ROOT_MESSAGE}"
        )
    );
    assert_eq!(panic_event.field("session_id"), crashing.to_string());
    assert_eq!(panic_event.field("tenant"), "acme");
    assert_eq!(panic_event.field("agent"), "crashing");
    assert_eq!(panic_event.field("location"), location);
    assert_eq!(panic_event.field("panic_message"), ROOT_MESSAGE);
    let worker_thread = panic_event.thread.clone();
    assert!(worker_thread.ends_with("-worker"), "{worker_thread}");

    // The backtrace, symbolized and logged on the reporter thread, names the panic's line.
    let backtrace = wait_for("the backtrace", || {
        events_starting("[session-panic-backtrace] ")
            .into_iter()
            .next()
    });
    assert_ne!(backtrace.thread, worker_thread);
    assert_eq!(backtrace.thread, "openrtc-panics");
    assert_eq!(backtrace.field("session_id"), crashing.to_string());
    let text = backtrace.text();
    assert!(
        text.starts_with(&format!(
            "[session-panic-backtrace] session_id={crashing} tenant=acme agent=crashing \
             panicked at {location}: {ROOT_MESSAGE}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("tests/it/timing/panics.rs:{line})")),
        "{text}"
    );

    // A child task's panic: one line naming the session, the join handle yields it, and the
    // session goes on.
    let parent = pool
        .handle()
        .launch(JobRequest::new().agent("parent"))
        .expect("room")
        .id();
    let child_line = wait_for("the child's panic line", || {
        events_starting("[session-panic] ")
            .into_iter()
            .find(|event| event.field("task") == "child")
    });
    assert_eq!(child_line.field("session_id"), parent.to_string());
    assert_eq!(child_line.field("panic_message"), CHILD_MESSAGE);
    assert_eq!(child_line.thread, worker_thread);
    wait_for("the parent to see the child's panic", || {
        child_join_was_panic.load(Ordering::Acquire).then_some(())
    });
    assert!(
        pool.row(parent).is_some(),
        "the parent session is still live"
    );

    // A panic outside any session reaches the application's hook, as before the pool.
    let plain = std::thread::Builder::new()
        .name("plain".into())
        .spawn(|| panic!("{PLAIN_MESSAGE}"))
        .expect("spawn")
        .join();
    assert!(plain.is_err());
    assert_eq!(
        *locked(&HOOK_SAW),
        [("plain".to_owned(), PLAIN_MESSAGE.to_owned())],
        "the application's hook sees exactly the panic outside sessions"
    );
    assert_eq!(events_starting("[session-panic] ").len(), 2);
    drop(pool);
}
