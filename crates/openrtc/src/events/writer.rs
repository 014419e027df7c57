//! The `openrtc-events` thread: takes events off the queue, numbers them, and writes each line
//! to the stream's file and to every socket subscriber; reports drops in the stream itself;
//! writes a snapshot line every interval and one last one as it stops.
//!
//! `seq` is given as a line is written, so the lines it writes are numbered without a gap;
//! events dropped by the queue never get a number and are counted by a `stream_overflow`
//! line written before the next event. The file is appended to through a buffer that is
//! flushed whenever the queue is empty, so a reader sees every event within a tick.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use openrtc_proto::{OverflowScope, StreamRecord};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::envelope;
use super::hub::{EventHub, Line};
use crate::RunError;
use crate::pool::PoolShared;

/// The longest the thread sleeps while the queue fills slowly: the delay before a reader
/// sees an event, at worst.
const TICK: Duration = Duration::from_millis(50);

/// The running events thread; [`EventsThread::stop`] writes what is queued and joins it.
#[derive(Debug)]
pub(crate) struct EventsThread {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EventsThread {
    /// Opens the stream's file, if the pool has one (appending; created with mode 0600, as it
    /// names sessions and their metadata), and starts the thread.
    pub(crate) fn start(shared: Arc<PoolShared>) -> Result<Self, RunError> {
        let output = match &shared.config.event_stream {
            None => None,
            Some(stream) => Some(Output {
                file: BufWriter::new(open(&stream.path).map_err(|source| {
                    RunError::EventStream {
                        path: stream.path.clone(),
                        source,
                    }
                })?),
                path: stream.path.clone(),
                interval: stream.interval,
                failing: false,
            }),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("openrtc-events".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                let shared = Arc::clone(&shared);
                move || run(&shared, output, &stop)
            })
            .map_err(|source| RunError::Thread {
                name: "openrtc-events",
                source,
            })?;
        shared.events.set_thread(thread.thread().clone());
        Ok(Self { stop, thread })
    }

    /// Writes what is still queued, a last snapshot line, flushes the file and joins the
    /// thread. Call it once nothing emits any more (the runtime and the watchdog are gone).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("the event stream thread panicked");
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The stream's file.
struct Output {
    file: BufWriter<File>,
    path: PathBuf,
    interval: Duration,
    /// Whether the last write failed (logged once until one succeeds again).
    failing: bool,
}

impl Output {
    fn write(&mut self, line: &[u8]) {
        let result = self.file.write_all(line);
        self.note(result);
    }

    fn flush(&mut self) {
        let result = self.file.flush();
        self.note(result);
    }

    fn note(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    event = "event_stream_write_failed",
                    path = %self.path.display(),
                    %error,
                    "[event-stream] cannot write {}: {error}; lines are lost until a write \
                     succeeds",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

fn run(shared: &PoolShared, output: Option<Output>, stop: &AtomicBool) {
    let hub = &*shared.events;
    let mut next_snapshot = output
        .as_ref()
        .map(|output| Instant::now() + output.interval);
    let mut writer = Writer {
        shared,
        output,
        subscribers: Vec::new(),
        seq: 0,
        reported_dropped: 0,
        buf: Vec::with_capacity(4096),
    };
    loop {
        let stopping = stop.load(Ordering::Acquire);
        writer.take_on(hub.take_joining());
        writer.write_queued(hub);
        if let (Some(due), Some(output)) = (next_snapshot, &writer.output) {
            let now = Instant::now();
            if now >= due {
                let interval = output.interval;
                writer.write_snapshot();
                // Keeps the cadence, unless the thread fell a whole interval behind.
                let next = due + interval;
                next_snapshot = Some(if next <= now { now + interval } else { next });
            }
        }
        writer.catch_up_subscribers();
        if stopping {
            while !hub.is_empty() {
                writer.write_queued(hub);
            }
            writer.report_drops(hub);
            if writer.output.is_some() {
                writer.write_snapshot();
            }
            writer.flush();
            break;
        }
        if hub.is_empty() {
            writer.flush();
            let wait = next_snapshot.map_or(TICK, |due| {
                due.saturating_duration_since(Instant::now()).min(TICK)
            });
            std::thread::park_timeout(wait);
        }
    }
    hub.close();
}

/// The thread's state: the file, the subscribers and the numbering.
struct Writer<'a> {
    shared: &'a PoolShared,
    output: Option<Output>,
    subscribers: Vec<Subscriber>,
    /// The last number given.
    seq: u64,
    /// The queue's drop count already reported in the stream.
    reported_dropped: u64,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn take_on(&mut self, joining: Vec<mpsc::Sender<Line>>) {
        self.subscribers
            .extend(joining.into_iter().map(|sender| Subscriber {
                sender,
                missed_count: 0,
                last_missed_seq: 0,
            }));
    }

    /// Reports the queue's new drops, then writes the events queued now (at most one queue's
    /// worth, so snapshots and subscribers are not held up by a steady flow).
    fn write_queued(&mut self, hub: &EventHub) {
        self.report_drops(hub);
        for _ in 0..hub.capacity() {
            let Some(emitted) = hub.pop() else {
                break;
            };
            // A subscriber that subscribed before this event was emitted gets it.
            self.take_on(hub.take_joining());
            if self.has_readers() {
                let record = StreamRecord::Event(envelope::to_wire(&emitted.event));
                self.write(emitted.at, record);
            }
        }
    }

    /// Writes a `stream_overflow` line if the queue dropped events since the last one.
    fn report_drops(&mut self, hub: &EventHub) {
        let dropped = hub.dropped_count();
        if dropped > self.reported_dropped {
            let new = dropped - self.reported_dropped;
            self.reported_dropped = dropped;
            self.write(
                SystemTime::now(),
                envelope::overflow(OverflowScope::Stream, new),
            );
        }
    }

    fn write_snapshot(&mut self) {
        let at = SystemTime::now();
        let snapshot = crate::introspect::snapshot(self.shared);
        self.write(at, StreamRecord::Snapshot(Box::new(snapshot)));
    }

    /// Whether anyone reads the lines: the file or a subscriber.
    fn has_readers(&self) -> bool {
        self.output.is_some() || !self.subscribers.is_empty()
    }

    /// Numbers and writes one line, to the file and every subscriber; nothing (and no
    /// number) when no one reads.
    fn write(&mut self, at: SystemTime, record: StreamRecord) {
        if !self.has_readers() {
            return;
        }
        let seq = self.seq + 1;
        self.buf.clear();
        if let Err(error) = envelope::encode(seq, at, record, &mut self.buf) {
            tracing::error!(%error, "[event-stream] cannot serialize a line; it is skipped");
            return;
        }
        self.seq = seq;
        if let Some(output) = &mut self.output {
            output.write(&self.buf);
        }
        if !self.subscribers.is_empty() {
            let line: Line = Arc::from(self.buf.as_slice());
            self.subscribers
                .retain_mut(|subscriber| subscriber.offer(seq, &line));
        }
    }

    /// Tells subscribers that missed lines, if their channel has room now, and lets go of
    /// those that have gone.
    fn catch_up_subscribers(&mut self) {
        self.subscribers.retain_mut(Subscriber::catch_up);
    }

    fn flush(&mut self) {
        if let Some(output) = &mut self.output {
            output.flush();
        }
    }
}

/// A socket subscriber, as the events thread serves it.
struct Subscriber {
    sender: mpsc::Sender<Line>,
    /// Lines it missed since the last `stream_overflow` it was sent.
    missed_count: u64,
    /// The number of the last of them.
    last_missed_seq: u64,
}

impl Subscriber {
    /// Offers the line numbered `seq`, after the overflow line it is owed; `false` once the
    /// subscriber has gone.
    fn offer(&mut self, seq: u64, line: &Line) -> bool {
        if !self.catch_up() {
            return false;
        }
        if self.missed_count > 0 {
            return self.miss(seq);
        }
        match self.sender.try_send(Arc::clone(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => self.miss(seq),
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Sends the overflow line it is owed, if its channel has room; `false` once it has gone.
    fn catch_up(&mut self) -> bool {
        if self.missed_count == 0 {
            return !self.sender.is_closed();
        }
        let mut line = Vec::new();
        let overflow = envelope::overflow(OverflowScope::Subscriber, self.missed_count);
        if envelope::encode(self.last_missed_seq, SystemTime::now(), overflow, &mut line).is_err() {
            return true;
        }
        match self.sender.try_send(line.into()) {
            Ok(()) => {
                self.missed_count = 0;
                true
            }
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Closed(_)) => false,
        }
    }

    fn miss(&mut self, seq: u64) -> bool {
        self.missed_count += 1;
        self.last_missed_seq = seq;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Arc::from(text.as_bytes())
    }

    fn read_all(receiver: &mut mpsc::Receiver<Line>) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        while let Ok(line) = receiver.try_recv() {
            lines.push(serde_json::from_slice(&line).unwrap_or(serde_json::Value::Null));
        }
        lines
    }

    #[test]
    fn a_slow_subscriber_is_told_what_it_missed_with_the_last_missed_number() {
        let (sender, mut receiver) = mpsc::channel(2);
        let mut subscriber = Subscriber {
            sender,
            missed_count: 0,
            last_missed_seq: 0,
        };
        for seq in 1..=5 {
            assert!(subscriber.offer(seq, &line(&format!("{{\"seq\":{seq}}}"))));
        }
        // Lines 1 and 2 fit; 3 to 5 were missed.
        let first = read_all(&mut receiver);
        assert_eq!(
            first,
            [serde_json::json!({"seq": 1}), serde_json::json!({"seq": 2})]
        );
        assert!(subscriber.offer(6, &line("{\"seq\":6}")));
        let next = read_all(&mut receiver);
        assert_eq!(next.len(), 2, "{next:?}");
        assert_eq!(next[0]["seq"], 5, "the overflow line closes the gap 3..=5");
        assert_eq!(next[0]["payload"]["event"], "stream_overflow");
        assert_eq!(next[0]["payload"]["scope"], "subscriber");
        assert_eq!(next[0]["payload"]["dropped_count"], 3);
        assert_eq!(next[1], serde_json::json!({"seq": 6}));
    }

    #[test]
    fn a_subscriber_that_has_gone_is_let_go() {
        let (sender, receiver) = mpsc::channel(2);
        let mut subscriber = Subscriber {
            sender,
            missed_count: 0,
            last_missed_seq: 0,
        };
        assert!(subscriber.catch_up());
        drop(receiver);
        assert!(!subscriber.catch_up());
        assert!(!subscriber.offer(1, &line("{}")));
    }
}
