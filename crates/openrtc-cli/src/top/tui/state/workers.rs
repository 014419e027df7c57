//! The workers the live view knows: one entry per worker socket, with its latest snapshot,
//! whether it still answers, and the histories kept for it.
//!
//! A worker that goes away keeps its entry (shown in place as gone) until it comes back: at
//! the same socket, or, in a socket directory, as a new process with the same name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use openrtc_proto::{PoolSnapshot, SOCKET_SUFFIX, SessionId};

use super::history::{SessionHistory, WorkerHistory, WorkerSample};

/// Whether a worker answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// It answered the latest round with a snapshot.
    Live,
    /// It stopped answering: its socket is gone or nobody listens on it.
    Gone {
        /// When top noticed, in milliseconds since the Unix epoch.
        since_unix_ms: u64,
        /// Why top thinks so, for the header.
        reason: &'static str,
    },
    /// It is there but refused, timed out, or answered something unusable.
    Failing {
        /// When it started failing, in milliseconds since the Unix epoch.
        since_unix_ms: u64,
        /// What went wrong, as one printable line.
        message: String,
    },
}

/// One worker known to the live view.
#[derive(Clone, Debug)]
pub struct WorkerEntry {
    socket: PathBuf,
    name: String,
    link: Link,
    snapshot: Option<PoolSnapshot>,
    history: WorkerHistory,
    session_histories: HashMap<SessionId, SessionHistory>,
    /// Set when the entry was part of the round being applied.
    pub(super) seen_in_round: bool,
}

impl WorkerEntry {
    /// An entry for a socket that has not answered with a snapshot yet; its name is guessed
    /// from the socket file name (`<name>-<pid>.sock`).
    #[must_use]
    pub fn new(socket: PathBuf) -> Self {
        let name = name_from_socket(&socket);
        Self {
            socket,
            name,
            link: Link::Live,
            snapshot: None,
            history: WorkerHistory::default(),
            session_histories: HashMap::new(),
            seen_in_round: false,
        }
    }

    /// The socket it answers on.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id, once it has answered.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.snapshot.as_ref().map(|snapshot| snapshot.worker.pid)
    }

    /// Whether it answers.
    #[must_use]
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Whether its latest snapshot is current (it answered the latest round).
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.link == Link::Live && self.snapshot.is_some()
    }

    /// Its latest snapshot, current or not.
    #[must_use]
    pub fn snapshot(&self) -> Option<&PoolSnapshot> {
        self.snapshot.as_ref()
    }

    /// Its session count and CPU over the last minute.
    #[must_use]
    pub fn history(&self) -> &WorkerHistory {
        &self.history
    }

    /// The CPU and memory history of one of its sessions.
    #[must_use]
    pub fn session_history(&self, session_id: SessionId) -> Option<&SessionHistory> {
        self.session_histories.get(&session_id)
    }

    /// The sort key of entries: by name, then process id.
    pub(super) fn order_key(&self) -> (&str, u32) {
        (&self.name, self.pid().unwrap_or(0))
    }

    /// Takes a new snapshot: it answered. `round` numbers the update, so the histories of
    /// sessions that have ended can be dropped.
    pub(super) fn accept(&mut self, socket: &Path, snapshot: PoolSnapshot, round: u64) {
        let new_process = self.pid().is_some_and(|pid| pid != snapshot.worker.pid);
        if new_process {
            self.history.clear();
            self.session_histories.clear();
        }
        socket.clone_into(&mut self.socket);
        self.link = Link::Live;
        snapshot.worker.name.clone_into(&mut self.name);
        self.history.record(WorkerSample {
            taken_at_unix_ms: snapshot.taken_at_unix_ms,
            active_sessions: snapshot.worker.active_sessions,
            process_cpu_pct: snapshot.worker.process_cpu_pct,
        });
        for session in &snapshot.sessions {
            match self.session_histories.get_mut(&session.id) {
                Some(history) => history.record(
                    session.cpu_pct,
                    session.mem_bytes,
                    snapshot.taken_at_unix_ms,
                    round,
                ),
                None => {
                    self.session_histories.insert(
                        session.id,
                        SessionHistory::new(
                            session.cpu_pct,
                            session.mem_bytes,
                            snapshot.taken_at_unix_ms,
                            round,
                        ),
                    );
                }
            }
        }
        self.session_histories
            .retain(|_, history| history.seen_in_round == round);
        self.snapshot = Some(snapshot);
    }

    /// Notes that it stopped answering, unless already noted.
    pub(super) fn mark_gone(&mut self, now_unix_ms: u64, reason: &'static str) {
        if !matches!(self.link, Link::Gone { .. }) {
            self.link = Link::Gone {
                since_unix_ms: now_unix_ms,
                reason,
            };
        }
    }

    /// Notes that it answered with an error.
    pub(super) fn mark_failing(&mut self, now_unix_ms: u64, message: String) {
        let since_unix_ms = match &self.link {
            Link::Failing { since_unix_ms, .. } => *since_unix_ms,
            _ => now_unix_ms,
        };
        self.link = Link::Failing {
            since_unix_ms,
            message,
        };
    }
}

/// The worker name in a socket file name `<name>-<pid>.sock`, or the whole file name when it
/// is not shaped so.
fn name_from_socket(socket: &Path) -> String {
    let file_name = socket
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match openrtc_proto::parse_socket_file_name(&file_name) {
        Some((name, _)) => name.to_owned(),
        None => file_name
            .strip_suffix(SOCKET_SUFFIX)
            .unwrap_or(&file_name)
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_guessed_from_socket_files() {
        assert_eq!(name_from_socket(Path::new("/d/demo-42.sock")), "demo");
        assert_eq!(
            name_from_socket(Path::new("/d/edge-eu.1-7.sock")),
            "edge-eu.1"
        );
        assert_eq!(name_from_socket(Path::new("/d/custom.sock")), "custom");
        assert_eq!(name_from_socket(Path::new("/d/a-b.sock")), "a-b");
    }
}
