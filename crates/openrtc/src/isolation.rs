//! Process isolation: a session that runs in a process of its own, one child per session,
//! with its row in the worker like any other.
//!
//! A session of a tenant whose config asks for `isolation = "process"`, of a tenant moved to
//! process isolation for its offences, or whose launch asks for it, passes the same admission
//! chain and gets the same cell and id; its root task is then not the agent but a proxy that
//! starts the agent in a child process and follows it:
//! - `spawner`: the thread that starts children (the worker's own binary, in its child mode)
//!   and reaps them;
//! - `child`: the child's side, entered from the pool builder, running the one session in a
//!   small pool of its own, measured by the same probe;
//! - `parent`: the worker's side, the session's root task: the control channel, the child's
//!   rows and outcome, cancels, the process's `/proc` figures and its memory limit, and the
//!   typed outcome of a crash;
//! - `wire` (pure): the control channel's messages and framing;
//! - `offences` (pure): automatic isolation of a tenant that keeps hurting its neighbours.
//!
//! What a process costs and what it buys: a child is the worker's binary with one runtime
//! thread and the probe's threads (a few MB resident, started in milliseconds); a crash, a
//! runaway allocation or a blocking call in it cannot touch the worker's threads, its heap or
//! its other sessions.

mod child;
pub(crate) mod offences;
mod parent;
mod spawner;
mod wire;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use openrtc_proto::{ProcessSnapshot, SessionSnapshot};

pub(crate) use child::run as run_child;
pub(crate) use parent::run as run_parent;
pub(crate) use spawner::Spawner;
pub(crate) use wire::StartSession;

/// Set in a child's environment to the worker's pid: the pool builder of a process started
/// with it runs one isolated session instead of a worker.
pub(crate) const PARENT_ENV: &str = "OPENRTC_ISOLATION_PARENT";

/// How often a child sends its session's row, and the worker reads the child's `/proc`
/// figures.
pub(crate) const ROW_INTERVAL: Duration = Duration::from_millis(200);

/// The worker's pid if this process was started as an isolated session's child.
pub(crate) fn parent_from_env() -> Option<u32> {
    std::env::var(PARENT_ENV).ok()?.parse().ok()
}

/// Why a session runs in a process of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Its tenant's config says `isolation = "process"`.
    Config,
    /// Its tenant was moved to process isolation for its offences.
    Automatic,
    /// Its launch asked for it ([`crate::JobRequest::isolation`]).
    Request,
}

impl Why {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Automatic => "automatic",
            Self::Request => "request",
        }
    }
}

/// An isolated session's process as the worker sees it: written by the session's proxy,
/// read by snapshots.
#[derive(Debug)]
pub(crate) struct ProcessState {
    why: Why,
    /// The session's heap cap, if any: enforced in the child, and the process's resident
    /// limit over its start.
    heap_limit_bytes: Option<u64>,
    pid: AtomicU32,
    rss_bytes: AtomicU64,
    /// 0: no limit.
    rss_limit_bytes: AtomicU64,
    cpu_ns: AtomicU64,
    cpu_pct_bits: AtomicU64,
    start_us: AtomicU64,
    /// The child's last row of its session (its own probe's figures).
    row: Mutex<Option<SessionSnapshot>>,
}

impl ProcessState {
    pub(crate) fn new(why: Why, heap_limit_bytes: Option<u64>) -> Self {
        Self {
            why,
            heap_limit_bytes,
            pid: AtomicU32::new(0),
            rss_bytes: AtomicU64::new(0),
            rss_limit_bytes: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            cpu_pct_bits: AtomicU64::new(0),
            start_us: AtomicU64::new(0),
            row: Mutex::new(None),
        }
    }

    pub(crate) fn heap_limit_bytes(&self) -> Option<u64> {
        self.heap_limit_bytes
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// The process as a snapshot shows it.
    pub(crate) fn snapshot(&self) -> ProcessSnapshot {
        let mut snapshot = ProcessSnapshot::default();
        // First: a start seen here comes with the resident memory read at that start.
        snapshot.start_us = self.start_us.load(Ordering::Acquire);
        snapshot.pid = self.pid();
        snapshot.why = self.why.as_str().to_owned();
        snapshot.rss_bytes = self.rss_bytes.load(Ordering::Relaxed);
        let limit = self.rss_limit_bytes.load(Ordering::Relaxed);
        snapshot.rss_limit_bytes = (limit != 0).then_some(limit);
        snapshot.cpu_ns = self.cpu_ns.load(Ordering::Relaxed);
        snapshot.cpu_pct =
            (f64::from_bits(self.cpu_pct_bits.load(Ordering::Relaxed)) * 100.0).round() / 100.0;
        snapshot
    }

    /// The child's last row of its session, if it has sent one.
    pub(crate) fn row(&self) -> Option<SessionSnapshot> {
        crate::lock(&self.row).clone()
    }
}

/// An isolated session's process exited without telling how its session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    /// It exited with this code.
    #[error("its process exited with code {code} before its session ended")]
    Exited { code: i32 },
    /// It could not be started.
    #[error(transparent)]
    Spawn(#[from] spawner::SpawnError),
    /// Its child refused the session (the agent is unknown to the child's binary, or the
    /// child's pool refused it).
    #[error("its process refused the session: {0}")]
    Refused(String),
    /// The control channel failed.
    #[error("its process's control channel failed: {0}")]
    Channel(std::io::Error),
    /// It did not report its session running in time.
    #[error(
        "its process did not start its session within {secs} s (does the binary's main build the same pool before anything else?)"
    )]
    NoStart { secs: u64 },
}
