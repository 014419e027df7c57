//! The lifecycle event stream: what happened to sessions and to the worker, as JSON lines in
//! a file (`AgentPoolBuilder::event_stream`) and live to socket subscribers.
//!
//! The runtime emits an [`Event`] where the thing happens (a launch admitted or refused, a
//! session's end, a stall's report, a breaker's change, a memory limit, a drain, a config
//! reload). Emitting never blocks and never waits: it pushes onto the pool's bounded
//! lock-free queue ([`EventHub`]), and a full queue drops the event and counts it. The
//! `openrtc-events` thread ([`EventsThread`]) numbers and writes the lines, reports drops in
//! the stream itself, writes a snapshot every interval, and hands every line to the socket's
//! subscribers, each through a bounded channel of its own.
//!
//! - `envelope`: pure: an event as its wire form, and a line as bytes.
//! - `hub`: the queue, its drop count, and the subscribers waiting to be served.
//! - `writer`: the thread.

mod envelope;
mod hub;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openrtc_proto::StallClass;

use crate::Rejected;
use crate::admission::Transition;

pub(crate) use hub::EventHub;
pub(crate) use writer::EventsThread;

/// How many events the queue holds by default before it drops them.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Lines a socket subscriber may have waiting before it misses some.
pub(crate) const SUBSCRIBER_BUFFER_LINES: usize = 1024;

/// Where the event stream is written, and how often it gets a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamFile {
    /// The file, as given (appended to).
    pub(crate) path: PathBuf,
    /// The time between two snapshot lines.
    pub(crate) interval: Duration,
}

/// Something that happened, as the runtime tells the stream. Cheap to build where it happens:
/// names are shared `Arc`s, and the larger parts are boxed so a queue slot stays small.
#[derive(Debug)]
pub(crate) enum Event {
    SessionStarted {
        key: u64,
        tenant: Arc<str>,
        agent: Arc<str>,
    },
    SessionFinished {
        key: u64,
        tenant: Arc<str>,
        agent: Arc<str>,
        outcome: Box<openrtc_proto::SessionOutcome>,
        duration_ns: u64,
        busy_ns: u64,
        stall_count: u64,
    },
    SessionRefused {
        tenant: Arc<str>,
        /// The agent it was routed to, when routing got that far.
        agent: Option<Arc<str>>,
        rejected: Box<Rejected>,
    },
    SessionStalled {
        key: u64,
        tenant: Arc<str>,
        agent: Arc<str>,
        worker: u32,
        duration_ns: u64,
        class: Option<StallClass>,
        cause: Option<Arc<str>>,
        victim_count: u64,
    },
    Breaker {
        tenant: Arc<str>,
        transition: Transition,
    },
    SessionMemoryLimit {
        key: u64,
        tenant: Arc<str>,
        agent: Arc<str>,
        live_bytes: u64,
        limit_bytes: u64,
    },
    WorkerMemoryLimit {
        rss_bytes: u64,
        limit_bytes: u64,
    },
    DrainStarted {
        why: &'static str,
        live_sessions: u64,
        deadline: Duration,
    },
    ConfigReloaded {
        path: Box<Path>,
        version: Box<str>,
    },
    TenantIsolation {
        tenant: Arc<str>,
        /// Moved to process isolation (`true`) or back to coroutines.
        isolated: bool,
        why: Box<str>,
    },
}

/// An event with the time it was emitted.
#[derive(Debug)]
pub(crate) struct Emitted {
    pub(crate) at: SystemTime,
    pub(crate) event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_slot_stays_small() {
        // Every slot of the queue is allocated up front: keep the largest event small.
        let size = std::mem::size_of::<Emitted>();
        assert!(size <= 112, "an emitted event takes {size} bytes");
    }
}
