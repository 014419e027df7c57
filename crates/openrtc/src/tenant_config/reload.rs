//! Reloading the tenant config file while the worker runs: `TenantConfigCell` holds the
//! config in force and the reload record, and `Reloader` reloads it on SIGHUP and when the
//! file changes, on a thread of its own.
//!
//! Linux only, as the runtime: the file is watched with inotify (the `notify` crate), and
//! SIGHUP is a Unix signal.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use openrtc_proto::TenantConfigSnapshot;
use signal_hook::consts::SIGHUP;

use super::{TenantConfig, TenantConfigError};
use crate::lock;

/// What the pool runs after each successful reload, with the new config (to apply its
/// breaker settings, for one).
pub(crate) type OnReload = Box<dyn Fn(&TenantConfig) + Send + Sync>;

/// The tenant config in force, and the record of its reloads. Reading the config in force is
/// one lock and one `Arc` clone.
pub(crate) struct TenantConfigCell {
    path: PathBuf,
    registered_agents: Vec<String>,
    current: RwLock<Arc<TenantConfig>>,
    /// Held through a whole reload, so that reloads happen one at a time.
    record: Mutex<ReloadRecord>,
}

/// What a snapshot says of the reloads, and what a failed one needs to log once.
struct ReloadRecord {
    loaded_at_unix_ms: u64,
    reloads_count: u64,
    last_error: Option<TenantConfigError>,
    last_error_at_unix_ms: Option<u64>,
    /// What the last failed attempt read: the version of its bytes, or its read error.
    /// The same failure again is not logged again.
    last_failure_key: Option<String>,
    /// Reloads tried since the first load, whatever their outcome.
    attempts_count: u64,
}

/// What one reload did.
#[derive(Debug)]
pub(crate) enum ReloadOutcome {
    /// The file holds the version in force: nothing changed.
    Unchanged,
    /// A new version is in force.
    Reloaded(Arc<TenantConfig>),
    /// The file cannot be read or is not valid: the old version stays in force.
    Failed(TenantConfigError),
}

impl TenantConfigCell {
    /// Loads the file at `path` (the first load) and checks its agent caps against
    /// `registered_agents`, which every reload checks again.
    pub(crate) fn load(
        path: impl Into<PathBuf>,
        registered_agents: &[&str],
    ) -> Result<Self, TenantConfigError> {
        let path = path.into();
        let config = TenantConfig::load(&path)?;
        config.check_agents(registered_agents)?;
        Ok(Self {
            path,
            registered_agents: registered_agents
                .iter()
                .map(|&agent| agent.to_owned())
                .collect(),
            current: RwLock::new(Arc::new(config)),
            record: Mutex::new(ReloadRecord {
                loaded_at_unix_ms: unix_ms_now(),
                reloads_count: 1,
                last_error: None,
                last_error_at_unix_ms: None,
                last_failure_key: None,
                attempts_count: 0,
            }),
        })
    }

    /// Reloads tried since the first load, whatever their outcome.
    #[cfg(test)]
    pub(crate) fn attempts_count(&self) -> u64 {
        lock(&self.record).attempts_count
    }

    /// The file's path, as given.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force.
    pub(crate) fn current(&self) -> Arc<TenantConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The file, the version in force and the record of reloads, for a pool snapshot.
    pub(crate) fn snapshot(&self) -> TenantConfigSnapshot {
        let record = lock(&self.record);
        let mut snapshot = TenantConfigSnapshot::default();
        snapshot.path = self.path.display().to_string();
        snapshot.version = self.current().version().to_owned();
        snapshot.loaded_at_unix_ms = record.loaded_at_unix_ms;
        snapshot.reloads_count = record.reloads_count;
        snapshot.last_error = record.last_error.as_ref().map(ToString::to_string);
        snapshot.last_error_at_unix_ms = record.last_error_at_unix_ms;
        snapshot
    }

    /// Reads the file again and puts it in force if it is a new, valid version; logs what
    /// happened (a failure once per failing content).
    pub(crate) fn reload(&self) -> ReloadOutcome {
        let mut record = lock(&self.record);
        record.attempts_count += 1;
        let in_force = self.current();
        let (failure_key, attempt) = match std::fs::read(&self.path) {
            Err(error) => {
                let error = TenantConfigError::read(&self.path, &error);
                (error.to_string(), Err(error))
            }
            Ok(bytes) => {
                let version = super::version_of(&bytes);
                if version == in_force.version() {
                    // Back to (or still at) the version in force: an earlier failure is over.
                    record.last_error = None;
                    record.last_error_at_unix_ms = None;
                    record.last_failure_key = None;
                    return ReloadOutcome::Unchanged;
                }
                let registered: Vec<&str> =
                    self.registered_agents.iter().map(String::as_str).collect();
                let attempt = TenantConfig::from_bytes(&self.path, &bytes)
                    .and_then(|config| config.check_agents(&registered).map(|()| config));
                (version, attempt)
            }
        };
        match attempt {
            Err(error) => {
                if record.last_failure_key.as_deref() != Some(failure_key.as_str()) {
                    tracing::warn!(
                        event = "tenant_config_rejected",
                        path = %self.path.display(),
                        version = in_force.version(),
                        %error,
                        "[tenant-config] {error}; keeping version {}",
                        in_force.version()
                    );
                    record.last_failure_key = Some(failure_key);
                }
                record.last_error = Some(error.clone());
                record.last_error_at_unix_ms = Some(unix_ms_now());
                ReloadOutcome::Failed(error)
            }
            Ok(config) => {
                let config = Arc::new(config);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&config);
                record.loaded_at_unix_ms = unix_ms_now();
                record.reloads_count += 1;
                record.last_error = None;
                record.last_error_at_unix_ms = None;
                record.last_failure_key = None;
                tracing::info!(
                    event = "tenant_config_reloaded",
                    path = %self.path.display(),
                    old_version = in_force.version(),
                    new_version = config.version(),
                    "[tenant-config] reloaded {}: version {} -> {}",
                    self.path.display(),
                    in_force.version(),
                    config.version()
                );
                ReloadOutcome::Reloaded(config)
            }
        }
    }
}

/// What wakes the reloader thread.
enum Input {
    /// The watcher saw the file (or its directory entry) change, or lost track of events.
    FileChanged,
    /// SIGHUP arrived.
    Hangup,
    /// The reloader is being dropped.
    Stop,
}

/// What a [`Reloader`] reacts to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReloaderOptions {
    /// Reload when the file changes (default: yes).
    pub(crate) watch_file: bool,
    /// Reload on SIGHUP (default: yes).
    pub(crate) reload_on_sighup: bool,
    /// How long the file must be quiet after a change before it is reloaded, so that a burst
    /// of events (an editor's write, rename and chmod) makes one reload.
    pub(crate) debounce: Duration,
}

impl ReloaderOptions {
    /// The default debounce: 200 ms.
    pub(crate) const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
}

impl Default for ReloaderOptions {
    fn default() -> Self {
        Self {
            watch_file: true,
            reload_on_sighup: true,
            debounce: Self::DEFAULT_DEBOUNCE,
        }
    }
}

/// Reloads a [`TenantConfigCell`] on SIGHUP and when its file changes, on the `openrtc-config`
/// thread, and runs a callback after each successful reload. Dropping it stops it promptly
/// and joins its threads.
///
/// The file is watched through its parent directory (not recursively), filtered on its
/// name, so that an editor replacing the file by a rename is seen. SIGHUP is read by a small
/// `openrtc-config-signals` thread that forwards it. Once a reloader has run, SIGHUP stays
/// caught by the process (and does nothing) after it is dropped: a signal's default action
/// cannot be put back.
pub(crate) struct Reloader {
    inputs: mpsc::Sender<Input>,
    thread: Option<JoinHandle<()>>,
    signals: Option<(signal_hook::iterator::Handle, JoinHandle<()>)>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// Starts reloading `cell` as `options` say, running `on_reload` after each reload that
    /// put a new version in force. SIGHUP's handler is in place when this returns.
    ///
    /// # Errors
    ///
    /// The watch on the file's directory, the SIGHUP handler or a thread cannot be set up.
    pub(crate) fn spawn(
        cell: Arc<TenantConfigCell>,
        on_reload: OnReload,
        options: ReloaderOptions,
    ) -> std::io::Result<Self> {
        let (inputs, receiver) = mpsc::channel();
        let watcher = if options.watch_file {
            Some(watch(cell.path(), inputs.clone())?)
        } else {
            None
        };
        let signals = if options.reload_on_sighup {
            let mut signals = signal_hook::iterator::Signals::new([SIGHUP])?;
            let handle = signals.handle();
            let sender = inputs.clone();
            let thread = std::thread::Builder::new()
                .name("openrtc-config-signals".to_owned())
                .spawn(move || {
                    for _ in signals.forever() {
                        if sender.send(Input::Hangup).is_err() {
                            break;
                        }
                    }
                });
            match thread {
                Ok(thread) => Some((handle, thread)),
                Err(error) => {
                    handle.close();
                    return Err(error);
                }
            }
        } else {
            None
        };
        let mut reloader = Self {
            inputs,
            thread: None,
            signals,
            watcher,
        };
        let debounce = options.debounce;
        // The thread logs where the thread that starts it logs.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        reloader.thread = Some(
            std::thread::Builder::new()
                .name("openrtc-config".to_owned())
                .spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        run(&cell, &on_reload, &receiver, debounce);
                    });
                })?,
        );
        Ok(reloader)
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        // The watcher first: its thread holds a sender.
        drop(self.watcher.take());
        if let Some((handle, thread)) = self.signals.take() {
            handle.close();
            // A panic on that thread has been reported by the panic hook already.
            let _ = thread.join();
        }
        let _ = self.inputs.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Watches the directory of the file at `path`, sending [`Input::FileChanged`] for each
/// event about the file (by name) that may change what it holds.
fn watch(path: &Path, inputs: mpsc::Sender<Input>) -> std::io::Result<notify::RecommendedWatcher> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Events may have been lost: read the file again to be sure.
            Err(_) => true,
            Ok(event) => {
                changes_content(event.kind)
                    && event
                        .paths
                        .iter()
                        .any(|changed| changed.file_name() == file_name.as_deref())
            }
        };
        if relevant {
            let _ = inputs.send(Input::FileChanged);
        }
    })
    .map_err(std::io::Error::other)?;
    watcher
        .watch(&directory, RecursiveMode::NonRecursive)
        .map_err(std::io::Error::other)?;
    Ok(watcher)
}

/// Whether an event of this kind may change what the file holds. Opening and reading it (as
/// each reload does) do not.
fn changes_content(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

/// The reloader thread: reloads at once on SIGHUP, and once the file has been quiet for
/// `debounce` after a change (or `4 * debounce` after the first change of a long burst).
fn run(
    cell: &TenantConfigCell,
    on_reload: &OnReload,
    inputs: &mpsc::Receiver<Input>,
    debounce: Duration,
) {
    // When a change is pending: the first change of the burst, and when to reload.
    let mut pending: Option<(Instant, Instant)> = None;
    loop {
        let input = match pending {
            None => inputs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((_, due)) => inputs.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match input {
            Ok(Input::FileChanged) => {
                let now = Instant::now();
                let first = pending.map_or(now, |(first, _)| first);
                pending = Some((first, (now + debounce).min(first + 4 * debounce)));
                continue;
            }
            Ok(Input::Hangup) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
        pending = None;
        if let ReloadOutcome::Reloaded(config) = cell.reload() {
            on_reload(&config);
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests;
