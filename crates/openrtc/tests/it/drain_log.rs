//! The drain's three log lines (start, cancel at the deadline, end), captured from `tracing`
//! with their structured fields: a drain where one session ends by itself, one ends when
//! cancelled at the deadline, and one ignores the cancel and is dropped after the grace.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use openrtc::proto::SessionOutcome as Wire;
use openrtc::{AgentPool, JobRequest, Session, agent_fn};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use crate::support::{RunningPool, TestPool as _, wait_for};

/// One captured event: its message and its other fields, each as text.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub(crate) level: tracing::Level,
    pub(crate) target: String,
    pub(crate) message: String,
    pub(crate) fields: BTreeMap<String, String>,
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_owned(), text);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }
}

/// Every event of the runtime's targets (`openrtc::…`), from every test of this binary.
static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

struct CaptureLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("openrtc::") {
            return;
        }
        let mut captured = Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: String::new(),
            fields: BTreeMap::new(),
        };
        event.record(&mut captured);
        EVENTS
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(captured);
    }
}

/// Installs the capturing subscriber for the whole test binary (once).
pub(crate) fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(CaptureLayer);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
}

/// The captured events of worker `worker` whose `event` field is `name`.
fn events(worker: &str, name: &str) -> Vec<Captured> {
    events_with("worker", worker, name)
}

/// The captured events whose field `field` is `value` and whose `event` field is `name`.
pub(crate) fn events_with(field: &str, value: &str, name: &str) -> Vec<Captured> {
    EVENTS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .iter()
        .filter(|event| {
            event.fields.get(field).map(String::as_str) == Some(value)
                && event.fields.get("event").map(String::as_str) == Some(name)
        })
        .cloned()
        .collect()
}

/// The one event `name` of `worker`, once it has been logged.
#[track_caller]
fn one_event(worker: &str, name: &str) -> Captured {
    let found = wait_for(&format!("the {name} line"), || {
        let found = events(worker, name);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.len(), 1, "one {name} line: {found:?}");
    found.into_iter().next().expect("one")
}

#[track_caller]
fn assert_fields(event: &Captured, expected: &[(&str, &str)]) {
    let shown: Vec<(&str, &str)> = event
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(shown, expected, "{event:?}");
}

#[test]
fn drain_logs_its_start_its_deadline_and_its_end_with_exact_figures() {
    capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = "drain-log";
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Mutex::new(Some(released));
    let pool = RunningPool::start(
        AgentPool::builder()
            .worker_name(worker)
            .worker_threads(2)
            .socket_path(dir.path().join("w.sock"))
            .agent(
                "by-itself",
                agent_fn(move |_session: Session| {
                    let released = released
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .take();
                    async move {
                        if let Some(released) = released {
                            let _ = released.await;
                        }
                        Ok(())
                    }
                }),
            )
            .agent(
                "on-cancel",
                agent_fn(|session: Session| async move {
                    session.cancelled().await;
                    Ok(())
                }),
            )
            .agent(
                "stubborn",
                agent_fn(|_session: Session| async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }),
            )
            .drain_timeout(Duration::from_secs(2))
            .cancel_grace(Duration::from_secs(1)),
    );
    let handle = pool.handle().clone();
    let ids: Vec<_> = ["by-itself", "on-cancel", "stubborn"]
        .into_iter()
        .map(|agent| {
            handle
                .launch(JobRequest::new().agent(agent))
                .expect("room")
                .id()
        })
        .collect();
    wait_for("three live sessions", || {
        (pool.snapshot().worker.active_sessions == 3).then_some(())
    });
    handle.begin_drain();

    let start = one_event(worker, "drain_start");
    assert_eq!(start.level, tracing::Level::INFO);
    assert_eq!(
        start.message,
        "[drain] begin_drain: accepting no new session; waiting up to 2s for the 3 live \
         sessions to end, then cancelling the rest"
    );
    assert_fields(
        &start,
        &[
            ("cancel_grace_ms", "1000"),
            ("deadline_ms", "2000"),
            ("event", "drain_start"),
            ("live_sessions", "3"),
            ("why", "begin_drain"),
            ("worker", worker),
        ],
    );
    // Only now, with the start counted, does the first session end by itself.
    release.send(()).expect("the first session waits");
    assert_eq!(pool.wait_ended(ids[0]).outcome, Wire::Completed);

    let cancel = one_event(worker, "drain_cancel");
    assert_eq!(cancel.level, tracing::Level::WARN);
    assert_eq!(
        cancel.message,
        "[drain] deadline reached: cancelling 2 sessions; any still running 1s later is dropped"
    );
    assert_fields(
        &cancel,
        &[
            ("cancel_grace_ms", "1000"),
            ("cancelling", "2"),
            ("event", "drain_cancel"),
            ("why", "deadline reached"),
            ("worker", worker),
        ],
    );

    pool.drain_and_join().expect("the pool ran");
    let end = one_event(worker, "drain_end");
    assert_eq!(end.level, tracing::Level::WARN, "a session was dropped");
    assert_eq!(
        end.message,
        "[drain] done: 1 ended by themselves, 1 on cancel, 1 dropped after the cancel grace; \
         run returns Ok (exit code 0)"
    );
    assert_fields(
        &end,
        &[
            ("dropped", "1"),
            ("ended_by_themselves", "1"),
            ("ended_on_cancel", "1"),
            ("event", "drain_end"),
            ("exit_code", "0"),
            ("still_running", "0"),
            ("worker", worker),
        ],
    );
    let snapshot = handle.runtime_snapshot();
    let cancelled = Wire::Cancelled {
        reason: openrtc::CancelReason::DrainTimeout,
    };
    for id in &ids[1..] {
        let ended = snapshot
            .recently_ended
            .iter()
            .find(|ended| ended.id == *id)
            .expect("ended");
        assert_eq!(ended.outcome, cancelled, "{}", ended.agent);
    }
}
