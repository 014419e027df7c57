//! `RunningPool`: a pool run on a background thread, for programs (and tests, and benchmarks)
//! whose own thread does something else while the pool runs.

use std::thread::JoinHandle;

use crate::{AgentPool, PoolHandle, RunError};

/// A pool running on a thread of its own: made by [`AgentPool::run_in_background`].
///
/// It does not listen for SIGINT or SIGTERM (the program's signals stay the program's): stop
/// it with [`RunningPool::drain_and_join`], which drains as a signal would, or by dropping
/// it. **Dropping it shuts the pool down rather than draining it**: live sessions are
/// cancelled at once (outcome `cancelled (shutdown)`) and dropped after the cancel grace,
/// and the drop returns when the pool's thread has ended.
///
/// ```no_run
/// use openrtc::{AgentPool, JobRequest, Session, agent_fn};
///
/// let pool = AgentPool::builder()
///     .agent("echo", agent_fn(|session: Session| async move {
///         session.cancelled().await;
///         Ok(())
///     }))
///     .build()?
///     .run_in_background()?;
/// let id = pool.handle().launch(JobRequest::new())?.id();
/// pool.handle().cancel(id)?;
/// pool.drain_and_join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RunningPool {
    handle: PoolHandle,
    /// The pool's thread; `None` once joined, or if the pool had already stopped when it was
    /// started (a drain or shutdown asked for before it ran).
    thread: Option<JoinHandle<Result<(), RunError>>>,
}

impl AgentPool {
    /// Runs the pool on a new thread (named `<worker_name>-pool`) and returns once its
    /// runtime runs: sessions launched before are started, and launches through the handle
    /// go straight to the runtime. Signals are not handled; see [`RunningPool`].
    ///
    /// # Errors
    ///
    /// A [`RunError`] if the thread cannot be started, or the runtime, the watchdog or the
    /// socket cannot be set up (then sessions launched before are ended as
    /// `cancelled (shutdown)`).
    pub fn run_in_background(self) -> Result<RunningPool, RunError> {
        let handle = self.handle();
        let name = format!("{}-pool", self.shared.config.worker_name);
        let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // The supervisor polls this future once the runtime runs, and never again
                // needs it: handles stop the pool.
                self.run_until(async move {
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                })
            })
            .map_err(|source| RunError::Thread {
                name: "pool",
                source,
            })?;
        if running.recv().is_ok() {
            return Ok(RunningPool {
                handle,
                thread: Some(thread),
            });
        }
        // The future was dropped unpolled: `run` failed to start, or a stop asked for before
        // it ran was seen first and the pool has already drained.
        join(thread)?;
        Ok(RunningPool {
            handle,
            thread: None,
        })
    }
}

impl RunningPool {
    /// The pool's handle (clone it to keep it beyond the guard).
    #[must_use]
    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    /// Drains the pool as SIGTERM would (`PoolHandle::begin_drain`: no new session; live ones
    /// get up to the drain timeout, then are cancelled) and waits for its thread to end.
    ///
    /// # Errors
    ///
    /// What `run` returned: [`RunError::MemoryLimit`] if the worker crossed its memory limit.
    pub fn drain_and_join(mut self) -> Result<(), RunError> {
        self.handle.begin_drain();
        self.thread.take().map_or(Ok(()), join)
    }
}

impl Drop for RunningPool {
    /// Shuts the pool down (not a drain) and waits for its thread to end.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            // A panic on the pool's thread is not passed on from a drop.
            let _ = thread.join();
        }
    }
}

/// Waits for the pool's thread and returns what `run` returned; a panic there goes on here.
fn join(thread: JoinHandle<Result<(), RunError>>) -> Result<(), RunError> {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
