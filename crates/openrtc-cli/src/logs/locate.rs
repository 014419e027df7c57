//! Finding the log file when no FILE is given: ask the running workers for their snapshots
//! through [`discover`] (every worker in the socket directory, or `--socket`, or `--worker`)
//! and take the one worker's `log_file`. Choosing among the answers is pure
//! ([`choose_log_file`]); only [`find_log_file`] does I/O.

use std::path::{Path, PathBuf};

use openrtc_proto::PoolSnapshot;

use crate::discover::{self, DiscoverError, Survey, Target};
use crate::top::format::clean_text;

/// Why no log file could be found through the workers; each ends the command with status 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// The socket directory could not be read, or the one worker asked gave no snapshot.
    #[error("{0}; pass the log FILE to read instead")]
    Discover(#[from] DiscoverError),
    /// No worker answered.
    #[error("{hint}; pass the log FILE to read instead")]
    NoWorker {
        /// Where the workers were looked for.
        hint: String,
    },
    /// The workers that answered write no log file.
    #[error(
        "{workers} {verb} no log file: start the worker with `.log_file(path)` or \
         OPENRTC_LOG_FILE=path, or pass the log FILE to read",
        verb = if *several { "write" } else { "writes" }
    )]
    NoLogFile {
        /// The workers, named.
        workers: String,
        /// Whether there are several.
        several: bool,
    },
    /// Several workers write log files and none was chosen.
    #[error(
        "several workers write log files; choose one with --worker NAME or --socket PATH, or \
         pass the FILE:{listing}"
    )]
    Several {
        /// One line per worker: name, pid, socket and log file.
        listing: String,
    },
}

/// One worker that answered, and where it is.
#[derive(Clone, Debug)]
pub struct Answer<'a> {
    /// The socket it was asked on (`None` when not known).
    pub socket: Option<&'a Path>,
    /// Its snapshot.
    pub snapshot: &'a PoolSnapshot,
}

/// The log file of the one worker that writes one (`log_file` as the worker reported it,
/// relative paths left to the caller).
///
/// # Errors
///
/// No worker answered, none writes a log file, or several do.
pub fn choose_log_file<'a>(
    answers: &[Answer<'a>],
    hint: &str,
) -> Result<(Answer<'a>, String), LocateError> {
    if answers.is_empty() {
        return Err(LocateError::NoWorker {
            hint: hint.to_owned(),
        });
    }
    let writing: Vec<(&Answer<'a>, &String)> = answers
        .iter()
        .filter_map(|answer| {
            answer
                .snapshot
                .worker
                .log_file
                .as_ref()
                .filter(|path| !path.is_empty())
                .map(|path| (answer, path))
        })
        .collect();
    match writing.as_slice() {
        [] => Err(LocateError::NoLogFile {
            workers: answers
                .iter()
                .map(|answer| worker_name(answer.snapshot))
                .collect::<Vec<_>>()
                .join(", "),
            several: answers.len() > 1,
        }),
        [(answer, path)] => Ok(((*answer).clone(), (*path).clone())),
        several => Err(LocateError::Several {
            listing: several
                .iter()
                .map(|(answer, path)| {
                    let socket = answer
                        .socket
                        .map(|socket| format!(" (socket {})", socket.display()))
                        .unwrap_or_default();
                    format!(
                        "\n  {}{socket}: {}",
                        worker_name(answer.snapshot),
                        clean_text(path, usize::MAX)
                    )
                })
                .collect(),
        }),
    }
}

/// `worker NAME pid PID`, safe for a terminal.
fn worker_name(snapshot: &PoolSnapshot) -> String {
    format!(
        "worker {} pid {}",
        clean_text(&snapshot.worker.name, 64),
        snapshot.worker.pid
    )
}

/// Asks the workers of `target` (only those named `worker_name`, when given) and returns the
/// one worker's log file. A relative path is taken from the worker's working directory
/// (through `/proc/PID/cwd`) when that can be read. Workers that could not be asked are
/// reported on standard error by `report`.
///
/// # Errors
///
/// See [`LocateError`].
pub fn find_log_file(
    target: &Target,
    worker_name: Option<&str>,
    report: impl Fn(&str),
) -> Result<PathBuf, LocateError> {
    let found: Survey = discover::survey(target, worker_name)?;
    for failure in &found.failures {
        report(&failure.to_string());
    }
    if found.snapshots.is_empty() && !found.failures.is_empty() {
        return Err(LocateError::NoWorker {
            hint: "no worker gave its snapshot".to_owned(),
        });
    }
    let sockets: Vec<(Option<PathBuf>, &PoolSnapshot)> = found
        .snapshots
        .iter()
        .map(|snapshot| (socket_of(target, snapshot), snapshot))
        .collect();
    let answers: Vec<Answer<'_>> = sockets
        .iter()
        .map(|(socket, snapshot)| Answer {
            socket: socket.as_deref(),
            snapshot,
        })
        .collect();
    let (answer, path) = choose_log_file(&answers, &target.no_worker_hint(worker_name))?;
    Ok(resolve(Path::new(&path), answer.snapshot.worker.pid))
}

/// The socket a snapshot came from: the one socket, or the worker's standard socket name in
/// the directory.
fn socket_of(target: &Target, snapshot: &PoolSnapshot) -> Option<PathBuf> {
    match target {
        Target::Socket(path) => Some(path.clone()),
        Target::Directory(dir) => Some(dir.join(openrtc_proto::socket_file_name(
            &snapshot.worker.name,
            snapshot.worker.pid,
        ))),
    }
}

/// A relative log file path, resolved against the worker's working directory when readable.
fn resolve(path: &Path, pid: u32) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &str, pid: u32, log_file: Option<&str>) -> PoolSnapshot {
        let mut snapshot = PoolSnapshot::default();
        snapshot.worker.name = name.to_owned();
        snapshot.worker.pid = pid;
        snapshot.worker.log_file = log_file.map(str::to_owned);
        snapshot
    }

    fn choose(snapshots: &[PoolSnapshot]) -> Result<String, String> {
        let answers: Vec<Answer<'_>> = snapshots
            .iter()
            .map(|snapshot| Answer {
                socket: None,
                snapshot,
            })
            .collect();
        choose_log_file(&answers, "no running openrtc worker found in /run/openrtc")
            .map(|(_, path)| path)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_one_worker_with_a_log_file_is_chosen() {
        assert_eq!(
            choose(&[
                snapshot("edge", 1, None),
                snapshot("demo", 2, Some("/var/log/demo.jsonl"))
            ]),
            Ok("/var/log/demo.jsonl".to_owned())
        );
    }

    #[test]
    fn no_worker_no_log_file_and_several_are_explained() {
        assert_eq!(
            choose(&[]),
            Err(
                "no running openrtc worker found in /run/openrtc; pass the log FILE to read \
                 instead"
                    .to_owned()
            )
        );
        let none = choose(&[snapshot("demo", 2, None)]).expect_err("no log file");
        assert_eq!(
            none,
            "worker demo pid 2 writes no log file: start the worker with `.log_file(path)` \
             or OPENRTC_LOG_FILE=path, or pass the log FILE to read"
        );
        let several = choose(&[
            snapshot("demo", 2, Some("/a.jsonl")),
            snapshot("edge", 3, Some("/b.jsonl")),
        ])
        .expect_err("several");
        assert!(
            several.contains("--worker NAME or --socket PATH")
                && several.contains("\n  worker demo pid 2: /a.jsonl")
                && several.contains("\n  worker edge pid 3: /b.jsonl"),
            "{several}"
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_worker_s_directory() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            resolve(Path::new("logs/w.jsonl"), std::process::id()),
            cwd.join("logs/w.jsonl")
        );
        assert_eq!(
            resolve(Path::new("/abs/w.jsonl"), std::process::id()),
            PathBuf::from("/abs/w.jsonl")
        );
    }
}
