//! Session-scoped logging: every `tracing` record emitted while a session's code runs names
//! that session, goes to the worker's JSONL log file, and is kept in the session's flight
//! recorder.
//!
//! The runtime knows which session a thread is running (`current`: the poll wrapper and the
//! session helpers set it), so the [`SessionLayer`] adds `session_id`, `tenant` and `agent` to
//! each record without the agent writing them. A worker's log file (`.log_file(path)` or
//! `OPENRTC_LOG_FILE`) gets one JSON object per line (`record`) through a bounded queue to a
//! writer thread (`sink`): logging never waits for the disk. Each session keeps its last
//! records in a ring (`recorder`), `DEBUG` ones included, written out and shown in the
//! ended-session row when it fails, panics, is killed or stalls.
//!
//! Install the layer once per process: [`init`] sets up stderr output and the layer together;
//! an application with its own subscriber adds [`layer`] to it.

pub(crate) mod current;
pub(crate) mod record;
pub(crate) mod recorder;
pub(crate) mod sink;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::session::SessionCell;
use record::{Header, Labels};
use recorder::{FlightRecorder, Kept};
use sink::LogSink;

/// The environment variable naming the log file when the application does not.
pub const LOG_FILE_ENV: &str = "OPENRTC_LOG_FILE";

/// How long a pool's stop waits for its log file to be written out.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The most verbose level a flight recorder keeps.
const RECORDER_LEVEL: Level = Level::DEBUG;

/// Whether a [`SessionLayer`] has been added to a subscriber in this process.
static LAYER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Every open log file, for records emitted outside sessions (each file gets them once).
static SINKS: RwLock<Vec<Weak<LogSink>>> = RwLock::new(Vec::new());

/// The `tracing` layer that labels records with their session and writes the log file.
///
/// It takes events at `DEBUG` and above (the flight recorders keep them); the log file gets
/// `INFO` and above, plus the runtime's own `DEBUG` records (refusals). [`layer`] gives it
/// with its own per-layer filter, so it never hides spans or records from the other layers of
/// a subscriber. Add it beside your own layers, not under a global filter that drops `DEBUG`,
/// or flight recorders keep only what passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionLayer {
    _private: (),
}

/// [`SessionLayer`] behind its per-layer filter (events at `DEBUG` and above), as [`layer`]
/// returns it.
pub type FilteredSessionLayer<S> = Filtered<SessionLayer, FilterFn<fn(&Metadata<'_>) -> bool>, S>;

/// The layer to add to an application's own subscriber:
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt as _;
/// use tracing_subscriber::util::SubscriberInitExt as _;
/// use tracing_subscriber::Layer as _;
///
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::new("info")))
///     .with(openrtc::telemetry::layer())
///     .init();
/// ```
#[must_use]
pub fn layer<S>() -> FilteredSessionLayer<S>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    let filter: FilterFn<fn(&Metadata<'_>) -> bool> =
        FilterFn::new(wanted as fn(&Metadata<'_>) -> bool).with_max_level_hint(RECORDER_LEVEL);
    SessionLayer::default().with_filter(filter)
}

/// Installs the process's subscriber: readable lines on stderr (filtered by `RUST_LOG`, else
/// `info`; colours only on a terminal and without `NO_COLOR`) and the [`SessionLayer`].
///
/// # Errors
///
/// If the process already has a global subscriber.
pub fn init() -> Result<(), tracing_subscriber::util::TryInitError> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(stderr)
        .with(layer())
        .try_init()
}

/// Whether a [`SessionLayer`] is in place, so that a log file gets records.
pub(crate) fn layer_installed() -> bool {
    LAYER_INSTALLED.load(Ordering::Relaxed)
}

impl<S: Subscriber> Layer<S> for SessionLayer {
    fn on_layer(&mut self, _subscriber: &mut S) {
        LAYER_INSTALLED.store(true, Ordering::Relaxed);
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if !wanted(metadata) || metadata.target() == sink::WRITER_TARGET {
            return;
        }
        current::with_current(|cell| match cell {
            Some(cell) => session_record(cell, event),
            None => worker_record(event),
        });
    }
}

/// Whether the layer wants records like these at all.
fn wanted(metadata: &Metadata<'_>) -> bool {
    metadata.is_event() && *metadata.level() <= RECORDER_LEVEL
}

/// Whether the log file takes a record: `INFO` and above, and the runtime's own `DEBUG`.
fn file_takes(level: Level, target: &str) -> bool {
    level <= Level::INFO
        || (level == Level::DEBUG && (target == "openrtc" || target.starts_with("openrtc::")))
}

fn session_record(cell: &SessionCell, event: &tracing::Event<'_>) {
    let metadata = event.metadata();
    let level = *metadata.level();
    let log = cell.log();
    let sink = log
        .sink
        .as_ref()
        .filter(|_| file_takes(level, metadata.target()));
    let at_unix_us = record::now_unix_us();
    let header = Header {
        at_unix_us,
        level,
        target: metadata.target(),
        labels: Some(Labels {
            session_id: cell.id(),
            tenant: cell.tenant(),
            agent: cell.agent(),
        }),
        worker: &log.worker,
        pid: log.pid,
    };
    let line: Arc<str> = Arc::from(record::render(&header, event));
    cell.recorder().push(Kept {
        at_unix_us,
        level,
        line: Arc::clone(&line),
        in_file: sink.is_some(),
    });
    if let Some(sink) = sink {
        sink.send(line);
    }
}

fn worker_record(event: &tracing::Event<'_>) {
    let metadata = event.metadata();
    let level = *metadata.level();
    if !file_takes(level, metadata.target()) {
        return;
    }
    let sinks = SINKS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if sinks.is_empty() {
        return;
    }
    let at_unix_us = record::now_unix_us();
    for sink in sinks.iter().filter_map(Weak::upgrade) {
        let header = Header {
            at_unix_us,
            level,
            target: metadata.target(),
            labels: None,
            worker: &sink.worker,
            pid: sink.pid(),
        };
        sink.send(Arc::from(record::render(&header, event)));
    }
}

/// A pool's logging: its worker's name, its log file (if any) and the bytes its sessions'
/// flight recorders hold.
#[derive(Debug)]
pub(crate) struct PoolLog {
    pub(crate) worker: Arc<str>,
    pid: u32,
    pub(crate) sink: Option<Arc<LogSink>>,
    recorder_bytes: Arc<AtomicU64>,
}

impl PoolLog {
    /// The logging of a pool named `worker`, writing to `log_file` if given.
    pub(crate) fn new(worker: &str, log_file: Option<&Path>) -> std::io::Result<Self> {
        let worker: Arc<str> = Arc::from(worker);
        let sink = match log_file {
            Some(path) => {
                let sink = LogSink::open(path, Arc::clone(&worker), sink::QUEUE_CAPACITY)?;
                let mut sinks = SINKS
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                sinks.retain(|sink| sink.strong_count() > 0);
                sinks.push(Arc::downgrade(&sink));
                Some(sink)
            }
            None => None,
        };
        Ok(Self {
            worker,
            pid: std::process::id(),
            sink,
            recorder_bytes: Arc::default(),
        })
    }

    /// Says where the log goes as the pool starts, and warns if nothing will reach it.
    pub(crate) fn announce(&self) {
        let Some(sink) = &self.sink else { return };
        if layer_installed() {
            tracing::info!(
                event = "log_file",
                path = %sink.path().display(),
                "[log-file] writing JSON lines to {}",
                sink.path().display()
            );
        } else {
            tracing::warn!(
                event = "log_file",
                path = %sink.path().display(),
                "[log-file] {} stays empty: the process's tracing subscriber has no \
                 openrtc::telemetry layer (call openrtc::telemetry::init(), or add \
                 openrtc::telemetry::layer() to your subscriber)",
                sink.path().display()
            );
        }
    }

    /// Waits (a few seconds at most) until the log file has every record queued so far.
    pub(crate) fn flush(&self) {
        if let Some(sink) = &self.sink {
            sink.flush(FLUSH_WAIT);
        }
    }

    /// A flight recorder for a new session of this pool.
    pub(crate) fn recorder(&self) -> FlightRecorder {
        FlightRecorder::new(Arc::clone(&self.recorder_bytes))
    }

    /// Bytes held by the flight recorders of this pool's sessions.
    pub(crate) fn recorder_bytes(&self) -> u64 {
        self.recorder_bytes.load(Ordering::Relaxed)
    }

    /// Writes what `cell`'s flight recorder kept and the file does not have yet (after a
    /// stall), each line marked `from_flight_recorder`.
    pub(crate) fn replay_unwritten(&self, cell: &SessionCell) {
        let Some(sink) = &self.sink else { return };
        for kept in cell.recorder().take_unwritten(record::now_unix_us()) {
            sink.send(Arc::from(record::mark_replayed(&kept.line)));
        }
    }

    /// At the end of a session that failed, panicked or was killed: empties its flight
    /// recorder into the log file (what the file does not have yet) and returns it for the
    /// ended-session row. Any other end just empties it.
    pub(crate) fn session_ended(
        &self,
        cell: &SessionCell,
        keep: bool,
    ) -> Vec<openrtc_proto::LogRecordSnapshot> {
        let kept = cell.recorder().drain(record::now_unix_us());
        if !keep {
            return Vec::new();
        }
        if let Some(sink) = &self.sink {
            for record in kept.iter().filter(|record| !record.in_file) {
                sink.send(Arc::from(record::mark_replayed(&record.line)));
            }
        }
        kept.iter().map(recorder::to_snapshot).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    /// Counts the spans and events it is given, at every level.
    #[derive(Clone, Default)]
    struct Counting {
        spans: Arc<AtomicU64>,
        events: Arc<AtomicU64>,
    }

    impl<S: tracing::Subscriber> Layer<S> for Counting {
        fn on_new_span(
            &self,
            _attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _ctx: Context<'_, S>,
        ) {
            self.spans.fetch_add(1, Ordering::Relaxed);
        }

        fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_session_layer_hides_nothing_from_the_other_layers() {
        let counting = Counting::default();
        let subscriber = tracing_subscriber::registry()
            .with(super::layer())
            .with(counting.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::trace_span!("request", id = 7);
            let _entered = span.enter();
            tracing::trace!("a trace record");
            tracing::info!("an info record");
        });
        assert_eq!(counting.spans.load(Ordering::Relaxed), 1);
        assert_eq!(counting.events.load(Ordering::Relaxed), 2);
    }
}
