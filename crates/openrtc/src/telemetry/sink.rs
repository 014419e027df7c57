//! The JSONL log file: a bounded queue from the threads that log to one writer thread.
//!
//! A record is handed over with a `try_send`: a worker thread never waits for the disk. When
//! the queue is full the record is dropped and counted; once per [`CHECK_INTERVAL`] the
//! writer writes (and logs to stderr) how many were dropped since it last said so. The writer
//! appends, flushes whenever the queue runs empty, and reopens the file when its path no
//! longer names the file it has open (moved away by a log rotator, or deleted) or when the
//! process gets SIGHUP, so rotation loses and duplicates nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// How many records may wait for the writer before new ones are dropped.
pub(crate) const QUEUE_CAPACITY: usize = 16 * 1024;

/// How often the writer looks for rotation and reports drops.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The target of the writer's own lines, which the log layer leaves out of the file (the
/// writer writes them itself, so they cannot be dropped by the queue they report on).
pub(crate) const WRITER_TARGET: &str = "openrtc::log_file";

enum Message {
    Line(Arc<str>),
    /// Write out everything before this, then answer.
    Flush(mpsc::Sender<()>),
}

/// One pool's log file and its writer thread.
#[derive(Debug)]
pub(crate) struct LogSink {
    path: PathBuf,
    pub(crate) worker: Arc<str>,
    pid: u32,
    /// `None` once closed (only in `drop`).
    sender: Option<SyncSender<Message>>,
    counts: Arc<Counts>,
    hangup: Option<signal_hook::SigId>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Flush(_) => "Flush",
        })
    }
}

/// Records written and dropped, shared with the writer.
#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    dropped: AtomicU64,
    hangup: Arc<AtomicBool>,
}

impl LogSink {
    /// Opens (creates, appends to) `path` and starts its writer.
    pub(crate) fn open(path: &Path, worker: Arc<str>, capacity: usize) -> io::Result<Arc<Self>> {
        let file = open_append(path)?;
        let counts = Arc::new(Counts::default());
        let hangup =
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&counts.hangup))
                .ok();
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let writer = Writer {
            path: path.to_owned(),
            identity: identity(&file),
            file: BufWriter::with_capacity(64 * 1024, file),
            worker: Arc::clone(&worker),
            pid: std::process::id(),
            counts: Arc::clone(&counts),
            reported_dropped: 0,
            broken: false,
        };
        // Not joined: a writer stuck on a full pipe or a hung disk must not hang the pool's
        // stop. It ends by itself once the queue is closed and written out; `flush` (with a
        // deadline) is how the pool's stop waits for it.
        std::thread::Builder::new()
            .name("openrtc-log".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            worker,
            pid: std::process::id(),
            sender: Some(sender),
            counts,
            hangup,
        }))
    }

    /// The file's path, as it was given.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// This process's id, as every line carries it.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues one line (without its newline). Never waits: a full queue drops it.
    pub(crate) fn send(&self, line: Arc<str>) {
        if let Some(sender) = &self.sender {
            if let Err(TrySendError::Full(_)) = sender.try_send(Message::Line(line)) {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records written so far.
    pub(crate) fn written_count(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }

    /// Records dropped so far.
    pub(crate) fn dropped_count(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every line queued before this call is written and
    /// flushed. For the pool's stop and for tests; not for worker threads.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let (done, wait) = mpsc::channel();
        let mut request = Message::Flush(done);
        // A full queue (a writer stuck on a pipe nobody reads) must not hold the caller past
        // its deadline either, so no blocking `send`.
        loop {
            match sender.try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    request = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what is left.
        self.sender.take();
        if let Some(hangup) = self.hangup {
            signal_hook::low_level::unregister(hangup);
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The device and inode of an open file, to tell whether its path still names it.
fn identity(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|meta| (meta.dev(), meta.ino()))
}

struct Writer {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    file: BufWriter<File>,
    worker: Arc<str>,
    pid: u32,
    counts: Arc<Counts>,
    reported_dropped: u64,
    /// Whether the last write failed (logged once until a write succeeds again).
    broken: bool,
}

impl Writer {
    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        let mut last_check = Instant::now();
        loop {
            match receiver.recv_timeout(CHECK_INTERVAL) {
                Ok(message) => {
                    self.handle(message);
                    // Write what is queued, then flush once the queue is empty.
                    while let Ok(message) = receiver.try_recv() {
                        self.handle(message);
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.report_drops();
                    self.flush();
                    return;
                }
            }
            let hangup = self.counts.hangup.swap(false, Ordering::Relaxed);
            if hangup || last_check.elapsed() >= CHECK_INTERVAL {
                last_check = Instant::now();
                self.report_drops();
                self.reopen_if_rotated(hangup);
            }
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Line(line) => self.write_line(&line),
            Message::Flush(done) => {
                self.flush();
                let _ = done.send(());
            }
        }
    }

    fn write_line(&mut self, line: &str) {
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"));
        match written {
            Ok(()) => {
                self.counts.written.fetch_add(1, Ordering::Relaxed);
                self.broken = false;
            }
            Err(error) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                self.report_error(
                    "write",
                    &error,
                    "records are dropped until it can be written again",
                );
            }
        }
    }

    fn flush(&mut self) {
        let _ = self.file.flush();
    }

    /// Says how many records were dropped since the last time, in the file and on stderr.
    fn report_drops(&mut self) {
        let dropped = self.counts.dropped.load(Ordering::Relaxed);
        let new = dropped.saturating_sub(self.reported_dropped);
        if new == 0 {
            return;
        }
        self.reported_dropped = dropped;
        let message = format!(
            "[log-file] dropped {new} records: the log file's writer could not keep up \
             ({dropped} in all)"
        );
        tracing::warn!(
            target: WRITER_TARGET,
            event = "log_records_dropped",
            dropped_count = new,
            dropped_total = dropped,
            "{message}"
        );
        let header = super::record::Header {
            at_unix_us: super::record::now_unix_us(),
            level: tracing::Level::WARN,
            target: WRITER_TARGET,
            labels: None,
            worker: &self.worker,
            pid: self.pid,
        };
        let line = super::record::render_parts(
            &header,
            &message,
            &format!(
                ",\"event\":\"log_records_dropped\",\"dropped_count\":{new},\"dropped_total\":{dropped}"
            ),
        );
        self.write_line(&line);
    }

    /// Reopens the path if it names another file than the one open (or none), or if asked.
    fn reopen_if_rotated(&mut self, asked: bool) {
        let on_disk = std::fs::metadata(&self.path)
            .ok()
            .map(|meta| (meta.dev(), meta.ino()));
        if !asked && on_disk.is_some() && on_disk == self.identity {
            return;
        }
        self.flush();
        match open_append(&self.path) {
            Ok(file) => {
                self.identity = identity(&file);
                self.file = BufWriter::with_capacity(64 * 1024, file);
            }
            Err(error) => self.report_error("reopen", &error, "still writing to the old file"),
        }
    }

    /// Logs a failure to `doing` the file, once until a write succeeds again.
    fn report_error(&mut self, doing: &str, error: &io::Error, meanwhile: &str) {
        if self.broken {
            return;
        }
        self.broken = true;
        tracing::error!(
            target: WRITER_TARGET,
            event = "log_file_error",
            path = %self.path.display(),
            %error,
            "[log-file] cannot {doing} {}: {error}; {meanwhile}",
            self.path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn lines_are_appended_and_a_rotated_file_is_followed_without_loss() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("worker.jsonl");
        std::fs::write(&path, "earlier\n").expect("seed the file");
        let sink = LogSink::open(&path, "w".into(), 1024).expect("opens");
        for n in 0..100 {
            sink.send(Arc::from(format!("{{\"n\":{n}}}")));
        }
        assert!(sink.flush(Duration::from_secs(10)));
        std::fs::rename(&path, dir.path().join("worker.jsonl.1")).expect("rotate");
        // Until the writer notices, lines still go to the old file: none is lost.
        for n in 100..200 {
            sink.send(Arc::from(format!("{{\"n\":{n}}}")));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            sink.send(Arc::from("{\"tick\":true}"));
            assert!(sink.flush(Duration::from_secs(10)));
            assert!(
                Instant::now() < deadline,
                "the writer never reopened the path"
            );
            std::thread::yield_now();
        }
        for n in 200..300 {
            sink.send(Arc::from(format!("{{\"n\":{n}}}")));
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let old = lines(&dir.path().join("worker.jsonl.1"));
        let new = lines(&path);
        assert_eq!(old[0], "earlier", "appended, not truncated");
        let numbers: Vec<u64> = old
            .iter()
            .chain(&new)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|value| value["n"].as_u64())
            .collect();
        assert_eq!(
            numbers,
            (0..300).collect::<Vec<_>>(),
            "none lost, none twice"
        );
        assert_eq!(sink.dropped_count(), 0);
        assert_eq!(sink.written_count(), (old.len() - 1 + new.len()) as u64);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_the_file_says_how_many() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("worker.jsonl");
        let sink = LogSink::open(&path, "w".into(), 4).expect("opens");
        // Hold the writer: a flush request it cannot answer until the file is written. A
        // queue of 4 cannot take 10_000 lines sent back to back faster than a disk.
        let mut sent = 0_u64;
        while sink.dropped_count() == 0 {
            sink.send(Arc::from("{}"));
            sent += 1;
            assert!(sent < 10_000_000, "the queue never filled");
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let dropped = sink.dropped_count();
        // Closing the queue makes the writer report what it has not reported yet, and end.
        drop(sink);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lines, report) = loop {
            let lines = lines(&path);
            let report = lines
                .iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|value| {
                    value["event"] == "log_records_dropped" && value["dropped_total"] == dropped
                });
            if report.is_some() {
                break (lines, report);
            }
            assert!(
                Instant::now() < deadline,
                "the drops are never reported in the file"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(report.is_some());
        let written = lines.iter().filter(|line| *line == "{}").count() as u64;
        assert!(dropped >= 1);
        assert_eq!(
            written + dropped,
            sent,
            "every record is written or counted as dropped"
        );
    }

    #[test]
    fn an_unwritable_path_is_an_error_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = LogSink::open(&dir.path().join("no/such/dir/w.jsonl"), "w".into(), 4)
            .expect_err("cannot open");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
