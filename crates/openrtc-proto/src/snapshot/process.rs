//! An isolated session's process, in the row of a session that runs in a process of its own
//! (process isolation): the worker's child process, seen from the worker.

use serde::{Deserialize, Serialize};

/// The child process that runs one isolated session. The row's own figures (busy time, polls,
/// stalls, memory) are the child's, measured by the same probe inside it; these are the
/// operating system's figures of the whole process, read from `/proc/<pid>` by the worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProcessSnapshot {
    /// The process id (0 until the process has started).
    pub pid: u32,
    /// Why the session is isolated: `config` (its tenant's `isolation = "process"`),
    /// `automatic` (its tenant was moved to process isolation for its offences) or `request`
    /// (its launch asked for it).
    pub why: String,
    /// Resident memory of the process.
    pub rss_bytes: u64,
    /// The resident memory at which the worker kills the process, if it has a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_limit_bytes: Option<u64>,
    /// CPU time of the process, user and system, every thread's.
    pub cpu_ns: u64,
    /// The process's CPU over its last second, in % of one core.
    pub cpu_pct: f64,
    /// From the worker's spawn to the child's session running, in microseconds.
    pub start_us: u64,
}
