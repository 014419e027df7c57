//! The pool's prewarm: state loaded once per worker before any session starts, shared by every
//! session, and the tracked heap it holds.
//!
//! The prewarm future runs as one task on the pool's runtime, before the queued sessions start.
//! Each of its polls is charged to an allocator account of its own (a `shared` account: not a
//! session's, never retired while the pool lives), the way a session's polls are charged to
//! the session's. So the figure is exact for what those polls allocated and still hold,
//! wherever it is freed later; the shared value's own `Arc` is allocated in its last poll and
//! counts too. Work the prewarm hands to other tasks or threads (`tokio::spawn`,
//! `spawn_blocking`, a thread of its own) is charged to the `runtime` bucket and is not in the
//! figure: load inside the prewarm future itself (blocking there is fine, no session runs yet)
//! to have it counted. Snapshots add the shared accounts' bytes to `runtime_bytes`, so the
//! buckets still add up to the tracked total.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::alloc::accounts;
use crate::pool::drain::DrainCause;
use crate::pool::{Control, PoolShared};
use crate::units::{duration_ms, format_mib};
use crate::{AgentError, RunError};

/// The shared value, type-erased.
pub(crate) type SharedValue = Arc<dyn Any + Send + Sync>;

/// The prewarm's future, boxed: it yields the shared value.
type PrewarmFuture = Pin<Box<dyn Future<Output = Result<SharedValue, AgentError>> + Send>>;

/// The prewarm as the builder was given it, not run yet.
pub(crate) struct Prewarm {
    load: Box<dyn FnOnce() -> PrewarmFuture + Send>,
    /// The shared value's type, for `Debug` and log lines.
    type_name: &'static str,
}

impl std::fmt::Debug for Prewarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prewarm")
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl Prewarm {
    /// Erases a prewarm function: the value it loads becomes the pool's shared value. The
    /// function itself is called inside the prewarm's first poll, so what it allocates counts.
    pub(crate) fn new<F, Fut, T, E>(prewarm: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + Sync + 'static,
        E: Into<AgentError>,
    {
        Self {
            load: Box::new(move || {
                Box::pin(async move {
                    let value = prewarm().await.map_err(Into::into)?;
                    Ok(Arc::new(value) as SharedValue)
                })
            }),
            type_name: std::any::type_name::<T>(),
        }
    }
}

/// The loaded shared value and the account that measures it.
#[derive(Debug)]
pub(crate) struct Prewarmed {
    /// Declared first: dropped before the account is given back.
    value: SharedValue,
    account: SharedAccount,
}

impl PoolShared {
    /// The pool's shared value, if the prewarm loaded one of type `T`.
    pub(crate) fn shared_value<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let prewarmed = self.prewarmed.get()?;
        Arc::clone(&prewarmed.value).downcast::<T>().ok()
    }

    /// The tracked live bytes the prewarm still holds; `None` without a prewarm or without
    /// the tracking allocator.
    pub(crate) fn shared_bytes(&self) -> Option<u64> {
        self.prewarmed.get()?.account.live_bytes()
    }

    /// Runs the prewarm, if any, on `runtime` and keeps its value; logs how it went.
    ///
    /// # Errors
    ///
    /// [`RunError::Prewarm`] if it returned an error or panicked.
    ///
    /// A stop that comes while it loads (`interrupt`: SIGINT or SIGTERM, a drain or shutdown
    /// asked through a handle) aborts it: `Ok(Some(stop))`, and no session starts.
    pub(crate) fn run_prewarm(
        &self,
        prewarm: Option<Prewarm>,
        runtime: &tokio::runtime::Runtime,
        interrupt: impl Future<Output = (Control, DrainCause)>,
    ) -> Result<Option<Control>, RunError> {
        let Some(prewarm) = prewarm else {
            return Ok(None);
        };
        let worker = self.config.worker_name.as_str();
        let account = SharedAccount::claim();
        let started = Instant::now();
        let task = InAccount {
            future: (prewarm.load)(),
            account: account.index.unwrap_or(0),
        };
        let mut loading = runtime.spawn(task);
        let joined = runtime.block_on(async {
            tokio::select! {
                joined = &mut loading => Ok(joined),
                stop = interrupt => Err(stop),
            }
        });
        let joined = match joined {
            Ok(joined) => joined,
            Err((stop, cause)) => {
                loading.abort();
                tracing::warn!(
                    event = "prewarm_interrupted",
                    worker,
                    why = cause.as_str(),
                    "[prewarm] {}: stopping before it loaded; no session started",
                    cause.as_str()
                );
                return Ok(Some(stop));
            }
        };
        let loaded = match joined {
            Ok(loaded) => loaded,
            Err(join_error) => Err(AgentError::msg(match join_error.try_into_panic() {
                Ok(payload) => format!("panicked: {}", crate::panics::payload_message(&*payload)),
                Err(join_error) => join_error.to_string(),
            })),
        };
        let value = match loaded {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(
                    event = "prewarm_failed",
                    worker,
                    shared_type = prewarm.type_name,
                    error = %error,
                    "[prewarm] failed: {error}"
                );
                return Err(RunError::Prewarm {
                    source: error.into_boxed(),
                });
            }
        };
        let elapsed_ms = duration_ms(started.elapsed());
        let shared_bytes = account.live_bytes();
        let shared = shared_bytes.map_or_else(
            || "(not measured: no tracking allocator)".to_owned(),
            format_mib,
        );
        tracing::info!(
            event = "prewarm",
            worker,
            shared_type = prewarm.type_name,
            elapsed_ms,
            shared_bytes,
            "[prewarm] loaded in {elapsed_ms} ms; {shared} shared"
        );
        // `run` runs once: the cell is empty (were it not, the new value is dropped here).
        let _ = self.prewarmed.set(Prewarmed { value, account });
        Ok(None)
    }
}

/// The allocator account the prewarm's polls are charged to, given back when dropped.
#[derive(Debug)]
struct SharedAccount {
    /// `None` without the tracking allocator, or with every account in use (then the
    /// prewarm's blocks go to the `runtime` bucket and no figure is kept).
    index: Option<u32>,
}

impl SharedAccount {
    fn claim() -> Self {
        Self {
            index: crate::alloc::is_installed()
                .then(accounts::claim_shared)
                .flatten(),
        }
    }

    fn live_bytes(&self) -> Option<u64> {
        self.index
            .map(|index| accounts::account(index).live_bytes())
    }
}

impl Drop for SharedAccount {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            // Nothing is charged to it any more: its polls are over. Blocks it still owns
            // (a value kept beyond the pool) keep it, retired, in the `ended` bucket.
            accounts::release(index);
        }
    }
}

/// A future whose polls are charged to an allocator account (0: the `runtime` bucket).
struct InAccount {
    future: PrewarmFuture,
    account: u32,
}

impl Future for InAccount {
    type Output = Result<SharedValue, AgentError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _entered = EnteredAccount::enter(self.account);
        self.future.as_mut().poll(cx)
    }
}

/// Restores the thread's previous account when dropped, a panicking poll included.
struct EnteredAccount {
    previous: u32,
}

impl EnteredAccount {
    fn enter(account: u32) -> Self {
        Self {
            previous: crate::alloc::enter_account(account),
        }
    }
}

impl Drop for EnteredAccount {
    fn drop(&mut self) {
        crate::alloc::leave_account(self.previous);
    }
}
