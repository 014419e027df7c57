//! Asking every worker at once: where to look ([`Target`]), one round of asking
//! ([`survey_round`], what the live view's connection thread runs at each refresh) and its
//! summary for commands that print once ([`survey`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openrtc_proto::{PoolSnapshot, Response, SNAPSHOT_VERSION};

use super::{DiscoverError, WorkerError, WorkerFailure};
use crate::Exit;
use crate::top::format;

/// Where to look for workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every socket in this directory.
    Directory(PathBuf),
    /// This one socket.
    Socket(PathBuf),
}

impl Target {
    /// The one-line hint printed when no worker answers; `worker_name` is the `--worker`
    /// filter, if any.
    #[must_use]
    pub fn no_worker_hint(&self, worker_name: Option<&str>) -> String {
        let worker = match worker_name {
            Some(name) => format!("worker named {}", format::clean_text(name, 64)),
            None => "worker".to_owned(),
        };
        match self {
            Self::Directory(dir) => {
                format!("no running openrtc {worker} found in {}", dir.display())
            }
            Self::Socket(path) => {
                format!("no running openrtc {worker} found at {}", path.display())
            }
        }
    }

    /// The sockets to ask: the one socket, or every worker socket in the directory (only
    /// those named `<worker_name>-<pid>.sock` when `worker_name` is given).
    ///
    /// # Errors
    ///
    /// Fails only when the socket directory exists but cannot be read.
    pub fn sockets(&self, worker_name: Option<&str>) -> Result<Vec<PathBuf>, DiscoverError> {
        match self {
            Self::Directory(dir) => {
                let mut sockets = super::list_worker_sockets(dir).map_err(|error| {
                    DiscoverError::SocketDirectory {
                        dir: dir.clone(),
                        error,
                    }
                })?;
                if let Some(name) = worker_name {
                    sockets.retain(|socket| super::socket_belongs_to(socket, name));
                }
                Ok(sockets)
            }
            Self::Socket(path) => Ok(vec![path.clone()]),
        }
    }
}

/// What one worker said when asked for its snapshot.
#[derive(Clone, Debug)]
pub enum PollOutcome {
    /// Its snapshot.
    Snapshot(Box<PoolSnapshot>),
    /// Nobody listens on the socket: the worker has gone away (or the file is left over).
    NotListening,
    /// The worker is there but refused or answered something unusable.
    Failed(Arc<WorkerError>),
}

/// One worker socket and what asking it gave.
#[derive(Clone, Debug)]
pub struct WorkerPoll {
    /// The socket asked.
    pub socket: PathBuf,
    /// What came back.
    pub outcome: PollOutcome,
}

/// One round of asking every worker.
#[derive(Clone, Debug, Default)]
pub struct SurveyRound {
    /// Every socket asked, in socket path order.
    pub polls: Vec<WorkerPoll>,
    /// Why the socket directory could not be read, when it could not.
    pub directory_error: Option<Arc<DiscoverError>>,
    /// When the round ended, in milliseconds since the Unix epoch.
    pub finished_at_unix_ms: u64,
}

/// Milliseconds since the Unix epoch by the system clock (0 if it is set before 1970).
#[must_use]
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Asks every worker socket of `target` for its snapshot, all at once, each on its own
/// thread, so that one slow worker does not hold up the others' answers for long.
#[must_use]
pub fn survey_round(target: &Target, worker_name: Option<&str>) -> SurveyRound {
    let sockets = match target.sockets(worker_name) {
        Ok(sockets) => sockets,
        Err(error) => {
            return SurveyRound {
                polls: Vec::new(),
                directory_error: Some(Arc::new(error)),
                finished_at_unix_ms: unix_now_ms(),
            };
        }
    };
    SurveyRound {
        polls: poll_workers(sockets),
        directory_error: None,
        finished_at_unix_ms: unix_now_ms(),
    }
}

/// Asks each worker for its snapshot, each on its own thread when there are several.
fn poll_workers(sockets: Vec<PathBuf>) -> Vec<WorkerPoll> {
    if sockets.len() == 1 {
        sockets.into_iter().map(poll_worker).collect()
    } else {
        std::thread::scope(|scope| {
            let pending: Vec<_> = sockets
                .into_iter()
                .map(|socket| scope.spawn(move || poll_worker(socket)))
                .collect();
            pending
                .into_iter()
                .filter_map(|handle| handle.join().ok())
                .collect()
        })
    }
}

/// Asks one worker for its snapshot.
fn poll_worker(socket: PathBuf) -> WorkerPoll {
    let outcome = match ask_for_snapshot(&socket) {
        Ok(Some(snapshot)) => PollOutcome::Snapshot(Box::new(snapshot)),
        Ok(None) => PollOutcome::NotListening,
        Err(failure) => PollOutcome::Failed(Arc::new(failure)),
    };
    WorkerPoll { socket, outcome }
}

/// Asks one worker for its snapshot: `Ok(None)` when nobody listens there.
///
/// # Errors
///
/// The worker refused, or answered something unusable.
pub fn ask_for_snapshot(socket: &Path) -> Result<Option<PoolSnapshot>, WorkerError> {
    let failure = match super::query_snapshot(socket) {
        Ok(Response::Snapshot { snapshot }) if snapshot.version == SNAPSHOT_VERSION => {
            return Ok(Some(*snapshot));
        }
        Err(error) if error.is_not_listening() => return Ok(None),
        Ok(Response::Snapshot { snapshot }) => WorkerFailure::SnapshotVersion {
            version: snapshot.version,
        },
        Ok(Response::Error { code, message }) => WorkerFailure::Refused { code, message },
        Ok(other) => WorkerFailure::UnexpectedAnswer {
            answer: format!("{other:?}"),
        },
        Err(error) => WorkerFailure::Query(error),
    };
    Err(WorkerError {
        socket: socket.to_owned(),
        failure,
    })
}

/// What one round of asking the workers found, for commands that print once.
#[derive(Debug, Default)]
pub struct Survey {
    /// The snapshots of the workers that answered.
    pub snapshots: Vec<PoolSnapshot>,
    /// The workers that are there but refused or could not be understood.
    pub failures: Vec<Arc<WorkerError>>,
}

impl Survey {
    /// The exit status this survey deserves: any snapshot is success; else any failure is an
    /// error; else nobody was there.
    #[must_use]
    pub fn exit(&self) -> Exit {
        if !self.snapshots.is_empty() {
            Exit::Success
        } else if self.failures.is_empty() {
            Exit::NoWorker
        } else {
            Exit::Failure
        }
    }
}

/// Asks every worker of `target` for its snapshot, all at once (only the workers named
/// `worker_name`, when given). Sockets nobody listens on are skipped.
///
/// # Errors
///
/// Fails only when the socket directory exists but cannot be read.
pub fn survey(target: &Target, worker_name: Option<&str>) -> Result<Survey, DiscoverError> {
    let mut found = Survey::default();
    for poll in poll_workers(target.sockets(worker_name)?) {
        match poll.outcome {
            PollOutcome::Snapshot(snapshot) => {
                if worker_name.is_none_or(|name| snapshot.worker.name == name) {
                    found.snapshots.push(*snapshot);
                }
            }
            PollOutcome::NotListening => {}
            PollOutcome::Failed(failure) => found.failures.push(failure),
        }
    }
    Ok(found)
}
