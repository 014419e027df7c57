//! Reloading the tenant config file while the worker runs: `Reloader` reloads a
//! `TenantConfigCell` on SIGHUP and when the file changes, on a thread of its own.
//!
//! Linux only, as the runtime: the file is watched with inotify (the `notify` crate), and
//! SIGHUP is a Unix signal.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use signal_hook::consts::SIGHUP;

use super::TenantConfig;
use super::cell::{ReloadOutcome, TenantConfigCell};

/// What the pool runs after each successful reload, with the new config (to apply its
/// breaker settings, for one).
pub(crate) type OnReload = Box<dyn Fn(&TenantConfig) + Send + Sync>;

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
/// name, so that an editor replacing the file by a rename is seen. Writing the new file
/// beside the old one and renaming it over is the safe way to change it: a file rewritten
/// in place could be read half written if the writer pauses longer than the debounce (the
/// half then fails to parse, or is taken if it is valid on its own). SIGHUP is read by a small
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
            // A panicking callback must not stop the reloads (the panic hook reports it).
            let applied = std::panic::catch_unwind(AssertUnwindSafe(|| on_reload(&config)));
            if applied.is_err() {
                tracing::warn!(
                    event = "tenant_config_callback_panicked",
                    version = config.version(),
                    "[tenant-config] applying version {} panicked",
                    config.version()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
