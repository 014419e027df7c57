//! The pool's end of the event stream: the bounded lock-free queue events are pushed onto,
//! the count of those it dropped, and the socket subscribers waiting for the events thread to
//! take them on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc;

use super::{Emitted, Event, SUBSCRIBER_BUFFER_LINES};
use crate::lock;

/// One line of the stream, shared by every subscriber it goes to.
pub(crate) type Line = Arc<[u8]>;

/// The queue between the places events happen and the events thread.
#[derive(Debug)]
pub(crate) struct EventHub {
    queue: ArrayQueue<Emitted>,
    /// Events dropped because the queue was full.
    dropped_count: AtomicU64,
    /// The events thread, woken when the queue fills up or a subscriber arrives.
    thread: OnceLock<std::thread::Thread>,
    /// New subscribers, until the events thread takes them on.
    joining: Mutex<Vec<mpsc::Sender<Line>>>,
    /// Whether `joining` has any: checked before each event is written, so that a
    /// subscriber sees every event emitted after it subscribed.
    has_joining: AtomicBool,
    /// Set when the events thread has stopped: no one would serve a new subscriber.
    closed: AtomicBool,
}

impl EventHub {
    /// A hub whose queue holds `capacity` events (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped_count: AtomicU64::new(0),
            thread: OnceLock::new(),
            joining: Mutex::default(),
            has_joining: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `event`, stamped with the time now; drops and counts it if the queue is full.
    /// Never blocks: one push onto a lock-free queue, and a wake of the events thread once
    /// the queue is half full.
    pub(crate) fn emit(&self, event: Event) {
        let emitted = Emitted {
            at: SystemTime::now(),
            event,
        };
        if self.queue.push(emitted).is_err() {
            self.dropped_count.fetch_add(1, Ordering::Relaxed);
        }
        if self.queue.len() * 2 >= self.queue.capacity() {
            self.wake();
        }
    }

    /// Events dropped so far because the queue was full.
    pub(crate) fn dropped_count(&self) -> u64 {
        self.dropped_count.load(Ordering::Relaxed)
    }

    /// A new subscriber's end of its channel: every line written from now on (or a
    /// `stream_overflow` line for those it was too slow for), until the worker stops.
    /// `None` once the events thread has stopped.
    pub(crate) fn subscribe(&self) -> Option<mpsc::Receiver<Line>> {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER_LINES);
        {
            let mut joining = lock(&self.joining);
            // Checked under the lock the events thread empties when it stops, so a subscriber
            // is either taken on or told no.
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            joining.push(sender);
            self.has_joining.store(true, Ordering::Release);
        }
        self.wake();
        Some(receiver)
    }

    /// The next queued event.
    pub(super) fn pop(&self) -> Option<Emitted> {
        self.queue.pop()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queue's capacity.
    pub(super) fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// The subscribers that arrived since the last call (one atomic load when none did).
    pub(super) fn take_joining(&self) -> Vec<mpsc::Sender<Line>> {
        if !self.has_joining.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.joining))
    }

    /// Records the events thread, to wake it.
    pub(super) fn set_thread(&self, thread: std::thread::Thread) {
        // A pool runs once: there is one events thread per hub.
        let _ = self.thread.set(thread);
    }

    /// Wakes the events thread (if it runs).
    pub(super) fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// The events thread has stopped: refuses new subscribers and closes the waiting ones.
    pub(super) fn close(&self) {
        let mut joining = lock(&self.joining);
        self.closed.store(true, Ordering::Release);
        joining.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_started() -> Event {
        Event::DrainStarted {
            why: "begin_drain",
            live_sessions: 0,
            deadline: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let hub = EventHub::new(2);
        for _ in 0..5 {
            hub.emit(drain_started());
        }
        assert_eq!(hub.dropped_count(), 3);
        assert!(hub.pop().is_some());
        hub.emit(drain_started());
        assert_eq!(
            hub.dropped_count(),
            3,
            "a popped place takes the next event"
        );
        assert!(hub.pop().is_some());
        assert!(hub.pop().is_some());
        assert!(hub.pop().is_none());
    }

    #[test]
    fn a_closed_hub_refuses_subscribers_and_drops_those_waiting() {
        let hub = EventHub::new(4);
        let mut waiting = hub.subscribe().expect("open");
        hub.close();
        assert!(hub.subscribe().is_none());
        assert!(
            waiting.try_recv().is_err() && waiting.is_closed(),
            "a subscriber no thread took on is closed"
        );
    }
}
