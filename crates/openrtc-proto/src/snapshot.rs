//! The pool snapshot: plain data describing one worker and every session it hosts.
//!
//! Raw counters end in `_ns`, `_ms`, `_bytes` or `_count`. Structs are `#[non_exhaustive]`:
//! build them from `Default` and set fields, so adding a field never breaks a reader. Every
//! field has a default when absent, and session rows leave out empty optional fields (no
//! stall, no metadata) to keep a 10,000-session snapshot small.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CancelReason, KillReason, RefusalReason, SessionId};

mod livekit;
mod media;
mod process;
mod row;
mod tenant;

pub use livekit::{LiveKitJobSnapshot, LiveKitWorkerSnapshot};
pub use media::CallMediaSnapshot;
pub use process::ProcessSnapshot;
pub use row::SessionSnapshotRef;
pub use tenant::{
    AgentSnapshot, AutoIsolationSnapshot, BreakerSnapshot, BreakerState, TenantConfigSnapshot,
    TenantSnapshot,
};

/// Everything a worker knows about itself and its sessions at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The layout version ([`crate::SNAPSHOT_VERSION`]).
    pub version: u32,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// The worker header.
    pub worker: WorkerSnapshot,
    /// One row per live session, in launch order.
    pub sessions: Vec<SessionSnapshot>,
    /// The most recently ended sessions, newest first (a bounded list).
    pub recently_ended: Vec<EndedSessionSnapshot>,
    /// Per tenant, by name: its sessions (`sessions_by_tenant`), caps, refusals, breaker and
    /// heap.
    pub tenants: BTreeMap<String, TenantSnapshot>,
    /// Per registered agent, by name: its sessions (`sessions_by_agent`), cap and refusals.
    pub agents: BTreeMap<String, AgentSnapshot>,
    /// The tenant config file in force, if the pool has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_config: Option<TenantConfigSnapshot>,
    /// Tracked calls (`Session::track`) of every session, live and ended, by label (at most 64
    /// labels a worker; the rest count under `other`), each with its duration histogram.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, CallStatsSnapshot>,
    /// Sessions started, and how the ended ones ended, per tenant and agent, sorted by tenant
    /// then agent: one entry per pair that has started a session. Each field summed over the
    /// entries is the worker's `totals`. At most [`MAX_TENANT_AGENT_PAIRS`] pairs; the
    /// sessions of later pairs count under tenant [`OTHER_TENANT`] with their agent. Absent
    /// from older workers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub totals_by_tenant_agent: Vec<TenantAgentTotals>,
}

/// How many (tenant, agent) pairs a worker counts apart in
/// [`PoolSnapshot::totals_by_tenant_agent`]; later pairs count under [`OTHER_TENANT`].
pub const MAX_TENANT_AGENT_PAIRS: usize = 1024;

/// The tenant the sessions of (tenant, agent) pairs past [`MAX_TENANT_AGENT_PAIRS`] count
/// under (a tenant actually named `other` shares its entries).
pub const OTHER_TENANT: &str = "other";

/// One tenant's sessions of one agent: started, and how the ended ones ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TenantAgentTotals {
    /// The tenant ([`OTHER_TENANT`] for pairs past the cap).
    pub tenant: String,
    /// The agent.
    pub agent: String,
    /// Its sessions started and ended, by outcome.
    pub totals: SessionTotals,
}

/// The worker header of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkerSnapshot {
    /// The worker's name.
    pub name: String,
    /// The worker's process id.
    pub pid: u32,
    /// Time since the pool's runtime started.
    pub uptime_ms: u64,
    /// The number of Tokio worker threads that run sessions.
    pub worker_threads: u32,
    /// Sessions live now.
    pub active_sessions: u32,
    /// The hard cap on concurrent sessions.
    pub max_sessions: u32,
    /// Whether the worker has stopped accepting sessions.
    pub draining: bool,
    /// The stall threshold: a poll at least this long is a stall.
    pub slow_threshold_ms: u64,
    /// How long a session keeps the `slow` state after its last stall ended.
    pub slow_hold_ms: u64,
    /// The window over which session `cpu_pct` figures are measured.
    pub cpu_window_ms: u64,
    /// Sessions started, and how the ended ones ended, since the worker started.
    pub totals: SessionTotals,
    /// Launches refused, by reason (every reason is listed, with 0 when none was refused).
    pub refusals: BTreeMap<RefusalReason, u64>,
    /// Stalls recorded since the worker started (each poll at or over the threshold, once).
    pub stalls_total_count: u64,
    /// Of `stalls_total_count`, the stalls the host caused (class `preempted`).
    pub stalls_preempted_count: u64,
    /// Polls running over the threshold right now (worker threads blocked this instant).
    pub stalls_in_progress_count: u32,
    /// Stalls recorded over the last minute.
    pub stalls_last_minute_count: u64,
    /// The process's resident set size, from `/proc/self/status`.
    pub rss_bytes: u64,
    /// The process's CPU use over the last CPU window, as a percentage of one core (all
    /// threads: can exceed 100).
    pub process_cpu_pct: f64,
    /// The process's threads.
    pub threads_count: u32,
    /// The process's open file descriptors.
    pub open_fds_count: u32,
    /// Where session memory figures come from.
    pub mem_source: MemSource,
    /// Live heap bytes tracked by the tracking allocator, all buckets together (0 without it).
    pub tracked_bytes: u64,
    /// Tracked live bytes allocated outside any session (the runtime's own, and the app's).
    pub runtime_bytes: u64,
    /// Tracked live bytes allocated by sessions that have ended and not freed yet.
    pub ended_bytes: u64,
    /// The per-session memory cap, if set (a session over it is killed).
    pub session_memory_limit_bytes: Option<u64>,
    /// The worker's RSS warning level, if set.
    pub memory_warn_bytes: Option<u64>,
    /// The worker's RSS limit, if set (crossing it drains the worker and exits).
    pub memory_limit_bytes: Option<u64>,
    /// Tracked live bytes of the state loaded once by the pool's prewarm and shared by every
    /// session (part of `runtime_bytes`); `None` without a prewarm or without the tracking
    /// allocator.
    pub shared_bytes: Option<u64>,
    /// Agent failures and panics in a row, across tenants (any other outcome resets it).
    pub consecutive_failures_count: u32,
    /// How many in a row drain the worker, if set.
    pub consecutive_failure_limit: Option<u32>,
    /// The JSONL log file the worker writes (`.log_file`), as it was given; `None` without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    /// Records written to the log file since the worker started.
    pub log_records_written_count: u64,
    /// Records the log file's writer could not keep up with and dropped (never blocking a
    /// worker thread for them).
    pub log_records_dropped_count: u64,
    /// Bytes held now by the live sessions' flight recorders (each bounded).
    pub flight_recorder_bytes: u64,
    /// The lifecycle event stream's file (`.event_stream`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_stream: Option<String>,
    /// Events the stream dropped because its writer could not keep up.
    pub event_stream_dropped_count: u64,
    /// The process's limit on open file descriptors (`RLIMIT_NOFILE`, soft), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_fds_limit_count: Option<u64>,
    /// A worker thread polling one session this long is blocked (`blocked_after`).
    pub blocked_after_ms: u64,
    /// A worker thread blocked this long drains the worker (`restart_after`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_after_ms: Option<u64>,
    /// The address the HTTP health endpoints are served on, once bound (`http_addr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    /// The address the media WebSocket listener takes calls on, once bound
    /// (`media_listener`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_addr: Option<String>,
    /// Its registration with a LiveKit server, when it takes LiveKit jobs (`livekit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub livekit: Option<LiveKitWorkerSnapshot>,
    /// Each worker thread that has polled a session, in worker order: idle, or polling a
    /// session since when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_thread_states: Vec<WorkerThreadSnapshot>,
    /// Every stall since the worker started, by duration (per bucket, not cumulative).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stall_duration_buckets: Vec<StallBucket>,
    /// The sum of every stall's duration.
    pub stall_duration_sum_ns: u64,
    /// The busy time of every session that has ended (the live ones' is in their rows).
    pub ended_busy_ns: u64,
    /// Child tasks (`Session::spawn`) of every session, live and ended.
    pub tasks: TaskCountsSnapshot,
    /// Child tasks that ended (completed, failed or cancelled) over the last minute.
    pub tasks_ended_last_minute_count: u64,
    /// Of those, the ones that failed (panicked).
    pub tasks_failed_last_minute_count: u64,
    /// Tracked calls that blocked a worker thread over the last minute, by label (only labels
    /// with at least one).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub calls_blocking_last_minute: BTreeMap<String, u64>,
    /// CPU time the hypervisor gave to other guests while this host's CPUs wanted to run
    /// (`steal` in `/proc/stat`), over the last CPU window, in % of all the host's CPU time;
    /// `None` where the kernel does not report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_steal_pct: Option<f64>,
}

/// Child tasks (from `Session::spawn`), by how they ended.
///
/// A child's output is not inspected (`spawn` takes any output), so a child that returns an
/// `Err` counts as completed: `failed_count` counts the children that panicked, the one
/// failure known for certain, and equals `panicked_count`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TaskCountsSnapshot {
    /// Child tasks spawned.
    pub spawned_count: u64,
    /// Of those, still running.
    pub running_count: u64,
    /// Ended by returning.
    pub completed_count: u64,
    /// Ended in failure: a panic (see the type's note).
    pub failed_count: u64,
    /// Ended by a panic (logged as `[session-panic] … child task panicked`).
    pub panicked_count: u64,
    /// Dropped before they ended: aborted through their join handle, when their session
    /// ended, or at shutdown.
    pub cancelled_count: u64,
}

impl TaskCountsSnapshot {
    /// Whether no child task was ever spawned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spawned_count == 0
    }
}

/// One label's tracked calls (`Session::track`, `Session::track_blocking`).
///
/// Percentiles come from a log-bucket histogram (four buckets per power of two): each is the
/// upper bound of its bucket, within 25 % above the true value, and never above `max_us`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CallStatsSnapshot {
    /// Calls that completed.
    pub count: u64,
    /// Of those, calls whose output was a failure (`Err`).
    pub failed_count: u64,
    /// Calls that took longer than the slow call threshold.
    pub slow_count: u64,
    /// Calls during one of whose polls a worker thread was blocked at least the stall
    /// threshold (never a `track_blocking` call: it runs off the worker threads).
    pub blocking_count: u64,
    /// Median duration, in microseconds.
    pub p50_us: u64,
    /// 95th percentile duration, in microseconds.
    pub p95_us: u64,
    /// 99th percentile duration, in microseconds.
    pub p99_us: u64,
    /// Longest duration, in microseconds.
    pub max_us: u64,
    /// The sum of every call's duration, in microseconds (each truncated to a whole
    /// microsecond): with `count`, the mean.
    pub duration_sum_us: u64,
    /// Every call by duration, per bucket (not cumulative), the last bucket's bound `None`
    /// (`+Inf`). Filled in the worker's map ([`PoolSnapshot::calls`]) only, for `/metrics`;
    /// empty, and left out, in session rows. Absent from older workers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duration_buckets: Vec<CallBucket>,
}

/// One bucket of a label's call duration histogram.
///
/// Its bound is an exact edge of the histogram the calls are counted in, so no call is
/// misplaced: a bucket holds the calls that took less than `le_us` microseconds and at least
/// the previous bucket's bound. (A duration is measured in nanoseconds and counted in whole
/// microseconds, truncated: only a call of exactly `le_us` microseconds, to the nanosecond,
/// counts in the next bucket.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CallBucket {
    /// Its upper bound in microseconds; `None` for the last bucket (`+Inf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub le_us: Option<u64>,
    /// Calls in it (not counting those of lower buckets).
    pub count: u64,
}

/// One bucket of the stall duration histogram.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StallBucket {
    /// Its upper bound, inclusive; `None` for the last bucket (`+Inf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub le_ms: Option<u64>,
    /// Stalls in it (not counting those of lower buckets).
    pub count: u64,
}

/// What one worker thread of the pool's runtime is doing at the snapshot's instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkerThreadSnapshot {
    /// The thread's 0-based worker index (in the order threads first polled a session).
    pub worker: u32,
    /// Its kernel thread id.
    pub tid: i32,
    /// The session it is polling now; `None` while it is idle (parked, or running the
    /// runtime's own work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// That session's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// That session's agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How long the current poll has run; `None` while idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_for_ms: Option<u64>,
    /// Whether the current poll has run past `blocked_after`.
    pub blocked: bool,
}

/// Where a snapshot's per-session memory figures come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemSource {
    /// Exact: the tracking allocator charges every allocation to the session polled when it
    /// was made.
    Tracked,
    /// An approximation: process RSS divided equally among live sessions (no tracking
    /// allocator installed). Views mark these figures as approximate (`MEM~`).
    #[default]
    RssShare,
}

impl MemSource {
    /// Whether per-session figures are exact.
    #[must_use]
    pub fn is_exact(self) -> bool {
        matches!(self, Self::Tracked)
    }
}

/// Lifetime session counters of a worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SessionTotals {
    /// Sessions admitted.
    pub started_count: u64,
    /// Sessions whose agent returned `Ok`.
    pub completed_count: u64,
    /// Sessions whose agent returned an error.
    pub failed_count: u64,
    /// Sessions whose agent panicked.
    pub panicked_count: u64,
    /// Sessions cancelled (operator, drain deadline, shutdown).
    pub cancelled_count: u64,
    /// Sessions killed by a hard limit or an operator kill.
    pub killed_count: u64,
}

/// The state of a live session.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionState {
    /// Running normally.
    #[default]
    Active,
    /// Blocking a worker thread now, or did so within the slow hold (a stall the host caused
    /// by preempting the thread does not count).
    Slow,
    /// The worker is draining; the session is finishing.
    Draining,
}

impl SessionState {
    /// The lowercase name used on the wire and in tables.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Slow => "slow",
            Self::Draining => "draining",
        }
    }
}

/// One live session.
///
/// It is written through [`SessionSnapshotRef`], the one definition of a row's JSON (which
/// fields are left out when empty included), so a worker writing rows straight from its own
/// state and a program serializing owned rows write the same document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// The session id, unique for the worker's lifetime.
    pub id: SessionId,
    /// The agent running it.
    pub agent: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The request's metadata.
    pub metadata: serde_json::Value,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Time since it started.
    pub duration_ms: u64,
    /// Its state.
    pub state: SessionState,
    /// Busy time over the last CPU window as a percentage of one core (htop convention).
    pub cpu_pct: f64,
    /// Lifetime busy time: wall time inside its polls (children included), not thread CPU time.
    pub busy_ns: u64,
    /// Lifetime number of polls of its tasks.
    pub poll_count: u64,
    /// Stalls it caused (polls at or over the threshold), those the host caused included.
    pub stall_count: u64,
    /// Of `stall_count`, the stalls during which its thread was mostly kept off the CPU by
    /// the host (class `preempted`): they do not count against the session.
    pub preempted_stall_count: u64,
    /// Its last finished stall.
    pub last_stall: Option<StallSnapshot>,
    /// Its most recent finished stalls, oldest first (a bounded list; `last_stall` is the
    /// last of them).
    pub recent_stalls: Vec<StallSnapshot>,
    /// When a poll of this session is blocking a worker thread right now: for how long so far.
    pub blocking_for_ms: Option<u64>,
    /// Time its tasks lost to other sessions' stalls: ready to run, queued on a worker thread
    /// that another session was blocking (summed over stalls, the longest wait per stall).
    pub delayed_by_stalls_ns: u64,
    /// How many other sessions' stalls delayed it.
    pub delayed_by_stalls_count: u64,
    /// Its live heap bytes: exact with `mem_source: tracked`, else an equal share of RSS.
    pub mem_bytes: u64,
    /// The highest `mem_bytes` it has reached.
    pub mem_peak_bytes: u64,
    /// Allocations it has made (0 without the tracking allocator).
    pub alloc_count: u64,
    /// Its child tasks (from `Session::spawn`) still running.
    pub children_live_count: u64,
    /// Its child tasks that have ended.
    pub children_finished_count: u64,
    /// Its child tasks by how they ended.
    pub tasks: TaskCountsSnapshot,
    /// Its tracked calls by label (at most 64 labels; the rest count under `other`).
    pub calls: BTreeMap<String, CallStatsSnapshot>,
    /// Its phone call's media health, when it came from the media listener.
    pub media: Option<CallMediaSnapshot>,
    /// Its process, when it runs isolated in a process of its own (absent: a coroutine in
    /// the worker, sharing its address space).
    pub process: Option<ProcessSnapshot>,
    /// Its LiveKit job, when a LiveKit server dispatched it.
    pub livekit: Option<LiveKitJobSnapshot>,
}

/// One stall: a poll that held a worker thread at least the threshold.
///
/// The record is in the snapshot as soon as the watchdog sees the poll end (within a few
/// milliseconds): its start, exact duration, worker and class (when the stall was diagnosed
/// while in progress). The parts that take longer are filled in later and listed in
/// `pending` until then: the cause in words and the stack (symbolized off the worker
/// threads), and the victims (the sessions it delayed report in within 50 ms).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StallSnapshot {
    /// Its exact duration.
    pub duration_ns: u64,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_at_unix_ms: u64,
    /// The 0-based index of the runtime worker thread it blocked.
    pub worker: u32,
    /// What the blocked thread was doing, when the watchdog saw the stall in progress.
    /// Absent for stalls too short for its scan, or over its diagnosis budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<StallClass>,
    /// The parts of this record still being filled in; empty once it is complete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<StallPart>,
    /// How the blocked thread spent the part of the stall the watchdog watched: on a CPU, or
    /// runnable and waiting for one. Absent when the stall was too short to be watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_time: Option<ThreadTimeSnapshot>,
    /// The syscall the thread was blocked in, when it was in one (`clock_nanosleep`, `futex`,
    /// `recvfrom`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The diagnosis in words: `sleep in std::thread::sleep at src/agents/blocker.rs:42`, or
    /// `io in recvfrom on tcp 127.0.0.1:5432` when no stack was captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The blocked thread's stack as captured during the stall, innermost first: the library
    /// calls above the agent's code, then the agent's frames; the runtime's own frames below
    /// them are cut off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<FrameSnapshot>,
    /// Why `frames` is empty when the stall was diagnosed: `the thread did not take the
    /// signal within 20 ms`, `stack capture is off`, `over the capture budget`, ….
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_note: Option<String>,
    /// How many other sessions it delayed: their tasks were ready while it held the thread
    /// and ran on that thread after it.
    pub victim_count: u64,
    /// The sessions it delayed, longest delay first (at most 16; `victim_count` counts all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub victims: Vec<VictimSnapshot>,
}

impl StallSnapshot {
    /// Whether the host, not the session, made this stall: its thread was runnable but kept
    /// off the CPU for most of it. Such a stall still counts (the session's calls were late),
    /// but nothing that punishes a session or a tenant counts it.
    #[must_use]
    pub fn is_host_caused(&self) -> bool {
        self.class.is_some_and(StallClass::is_host_caused)
    }
}

/// What a stuck worker thread was doing, by the kind of wait it was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StallClass {
    /// On a CPU: a busy loop or a long computation.
    Cpu,
    /// Runnable but kept off the CPU for most of the stall: the host was busy (other
    /// processes, or a hypervisor's steal), not the session.
    Preempted,
    /// Sleeping on a timer (`nanosleep`, `clock_nanosleep`), as in `std::thread::sleep`.
    Sleep,
    /// Waiting for a lock: a futex wait (`std::sync::Mutex`, `Condvar`, blocking channels,
    /// `thread::park`) or an `flock`.
    Lock,
    /// Waiting in a blocking read, write, poll, select, connect, accept or fsync.
    Io,
    /// In uninterruptible sleep outside an I/O call, as in a page fault on a slow mapping.
    Fault,
    /// None of the above, or the thread could not be read (it may have exited).
    Unknown,
}

impl StallClass {
    /// The lowercase name used on the wire, in log lines and in tables.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Preempted => "preempted",
            Self::Sleep => "sleep",
            Self::Lock => "lock",
            Self::Io => "io",
            Self::Fault => "fault",
            Self::Unknown => "unknown",
        }
    }

    /// Whether a stall of this class was the host's doing rather than the session's.
    #[must_use]
    pub fn is_host_caused(self) -> bool {
        matches!(self, Self::Preempted)
    }
}

impl std::fmt::Display for StallClass {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A part of a stall record that is filled in after the stall ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StallPart {
    /// `cause`, `frames` and `stack_note`: the captured stack is being symbolized.
    Cause,
    /// `victim_count` and `victims`: the delayed sessions are reporting in.
    Victims,
}

/// How a blocked worker thread spent the part of a stall the watchdog watched (from the
/// first scan that saw the poll running to the last one before it ended), from the kernel's
/// per-thread scheduler statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ThreadTimeSnapshot {
    /// The wall time watched.
    pub watched_ns: u64,
    /// Of it, time the thread ran on a CPU.
    pub on_cpu_ns: u64,
    /// Of it, time the thread was runnable and waited in a run queue for a CPU.
    pub run_queue_ns: u64,
}

impl ThreadTimeSnapshot {
    /// The share of the watched time the thread ran, in percent (0 when nothing was watched).
    #[must_use]
    pub fn on_cpu_pct(&self) -> f64 {
        if self.watched_ns == 0 {
            0.0
        } else {
            self.on_cpu_ns as f64 * 100.0 / self.watched_ns as f64
        }
    }

    /// In words, as the stall's log line and `top` say it: `on a CPU 12ms of 76ms watched
    /// (16%), 64ms waiting for one`, and for a stall the host caused, that it did.
    #[must_use]
    pub fn describe(&self, host_caused: bool) -> String {
        let mut words = format!(
            "on a CPU {}ms of {}ms watched ({:.0}%), {}ms waiting for one",
            self.on_cpu_ns / 1_000_000,
            self.watched_ns / 1_000_000,
            self.on_cpu_pct(),
            self.run_queue_ns / 1_000_000,
        );
        if host_caused {
            words.push_str(
                ": the host kept the thread off the CPU, not counted against the session",
            );
        }
        words
    }
}

/// A session delayed by another session's stall.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct VictimSnapshot {
    /// The delayed session.
    pub session_id: SessionId,
    /// How much of the stall it waited through (its longest wait, over its tasks).
    pub delay_ns: u64,
}

/// One frame of a captured stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FrameSnapshot {
    /// The function, demangled (`std::thread::sleep`), or its address in hex.
    pub function: String,
    /// The source file, when the binary carries line tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Whether this is the agent's own code (not the standard library, a dependency or the
    /// runtime); the first such frame is where the agent blocked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionOutcome {
    /// The agent returned `Ok`.
    Completed,
    /// The agent returned an error.
    Failed {
        /// The error, as displayed.
        error: String,
    },
    /// The agent panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked, `file:line:column`, when known (absent from older workers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
    /// The session was cancelled: asked to stop, then dropped after the grace period.
    Cancelled {
        /// Why: `{"kind":"operator"}`, `drain_timeout` or `shutdown`.
        reason: CancelReason,
    },
    /// The session was killed at once, without a grace period.
    Killed {
        /// Why, with its figures: `{"kind":"memory_limit","live_bytes":…,"limit_bytes":…}`.
        reason: KillReason,
    },
}

impl SessionOutcome {
    /// The outcome's kind: `completed`, `failed`, `panicked`, `cancelled` or `killed`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed { .. } => "failed",
            Self::Panicked { .. } => "panicked",
            Self::Cancelled { .. } => "cancelled",
            Self::Killed { .. } => "killed",
        }
    }
}

/// A session that has ended, kept for a while so "what just died?" has an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EndedSessionSnapshot {
    /// The session id.
    pub id: SessionId,
    /// The agent that ran it.
    pub agent: String,
    /// Its tenant.
    pub tenant: String,
    /// How it ended.
    pub outcome: SessionOutcome,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_at_unix_ms: u64,
    /// How long it lived.
    pub duration_ms: u64,
    /// Its lifetime busy time.
    pub busy_ns: u64,
    /// Stalls it caused.
    pub stall_count: u64,
    /// The highest live heap it reached (see `WorkerSnapshot::mem_source`).
    pub mem_peak_bytes: u64,
    /// What the session logged last before it failed, panicked, was killed or stalled
    /// (its flight recorder, oldest first); empty for a session that ended well.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flight_recorder: Vec<LogRecordSnapshot>,
}

/// One log record as a session's flight recorder kept it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LogRecordSnapshot {
    /// When it was emitted, in microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The emitting module's target.
    pub target: String,
    /// The runtime's stable event name (`slow_session`, …), for the runtime's own records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The message with the record's other fields as `key=value` after it.
    pub message: String,
}

impl Default for EndedSessionSnapshot {
    fn default() -> Self {
        Self::new(
            SessionId::default(),
            String::new(),
            String::new(),
            SessionOutcome::Completed,
        )
    }
}

impl EndedSessionSnapshot {
    /// An ended-session row (fields are public; this exists because the struct is
    /// `#[non_exhaustive]` and has no meaningful default outcome).
    #[must_use]
    pub fn new(id: SessionId, agent: String, tenant: String, outcome: SessionOutcome) -> Self {
        Self {
            id,
            agent,
            tenant,
            outcome,
            ended_at_unix_ms: 0,
            duration_ms: 0,
            busy_ns: 0,
            stall_count: 0,
            mem_peak_bytes: 0,
            flight_recorder: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_s_location_is_an_additive_field() {
        let old_worker = r#"{"kind":"panicked","message":"bad frame"}"#;
        let read: SessionOutcome = serde_json::from_str(old_worker).expect("old shape reads");
        assert_eq!(
            read,
            SessionOutcome::Panicked {
                message: "bad frame".into(),
                location: None,
            }
        );
        assert_eq!(serde_json::to_string(&read).expect("writes"), old_worker);
        let located = SessionOutcome::Panicked {
            message: "bad frame".into(),
            location: Some("src/agents/crashy.rs:20:9".into()),
        };
        let json = serde_json::to_string(&located).expect("writes");
        assert_eq!(
            json,
            r#"{"kind":"panicked","message":"bad frame","location":"src/agents/crashy.rs:20:9"}"#
        );
        assert_eq!(
            serde_json::from_str::<SessionOutcome>(&json).expect("reads"),
            located
        );
    }

    #[test]
    fn outcomes_have_the_documented_json_shapes() {
        use serde_json::json;
        let cases = [
            (SessionOutcome::Completed, json!({"kind": "completed"})),
            (
                SessionOutcome::Failed {
                    error: "bad frame".into(),
                },
                json!({"kind": "failed", "error": "bad frame"}),
            ),
            (
                SessionOutcome::Panicked {
                    message: "boom".into(),
                    location: Some("src/a.rs:1:2".into()),
                },
                json!({"kind": "panicked", "message": "boom", "location": "src/a.rs:1:2"}),
            ),
            (
                SessionOutcome::Cancelled {
                    reason: CancelReason::Operator,
                },
                json!({"kind": "cancelled", "reason": {"kind": "operator"}}),
            ),
            (
                SessionOutcome::Cancelled {
                    reason: CancelReason::DrainTimeout,
                },
                json!({"kind": "cancelled", "reason": {"kind": "drain_timeout"}}),
            ),
            (
                SessionOutcome::Cancelled {
                    reason: CancelReason::Shutdown,
                },
                json!({"kind": "cancelled", "reason": {"kind": "shutdown"}}),
            ),
            (
                SessionOutcome::Killed {
                    reason: KillReason::Operator,
                },
                json!({"kind": "killed", "reason": {"kind": "operator"}}),
            ),
            (
                SessionOutcome::Killed {
                    reason: KillReason::MemoryLimit {
                        live_bytes: 52_533_453,
                        limit_bytes: 52_428_800,
                    },
                },
                json!({
                    "kind": "killed",
                    "reason": {"kind": "memory_limit", "live_bytes": 52_533_453, "limit_bytes": 52_428_800}
                }),
            ),
        ];
        for (outcome, expected) in cases {
            assert_eq!(
                serde_json::to_value(&outcome).expect("serializes"),
                expected,
                "{outcome:?}"
            );
            let back: SessionOutcome = serde_json::from_value(expected).expect("reads");
            assert_eq!(back, outcome);
        }
    }

    #[test]
    fn an_older_worker_s_ended_row_still_reads() {
        // The version 1 layout as workers wrote it before reasons were typed: plain names.
        let old = r#"{"id":"s-12","agent":"echo","tenant":"acme",
            "outcome":{"kind":"cancelled","reason":"drain_timeout"},"ended_at_unix_ms":5}"#;
        let row: EndedSessionSnapshot = serde_json::from_str(old).expect("reads");
        assert_eq!(row.id.as_u64(), 12);
        assert_eq!(
            row.outcome,
            SessionOutcome::Cancelled {
                reason: CancelReason::DrainTimeout
            }
        );
        let bad =
            r#"{"id":"session-12","agent":"echo","tenant":"acme","outcome":{"kind":"completed"}}"#;
        let error = serde_json::from_str::<EndedSessionSnapshot>(bad).expect_err("a bad id");
        assert!(
            error
                .to_string()
                .contains("\"session-12\" is not a session id"),
            "{error}"
        );
    }
}
