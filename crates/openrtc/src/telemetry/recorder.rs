//! A session's flight recorder: the last records it logged, kept in a small ring so that when
//! it fails, panics, is killed or stalls, what led up to it can be shown and written out even
//! where the log file's level dropped it.
//!
//! Bounded three ways: at most [`MAX_RECORDS`] records, none older than [`MAX_AGE_US`], at most
//! [`MAX_BYTES`] of text. A push never waits: if another thread of the same session is
//! pushing at that instant, the record is left out of the ring (and counted).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use openrtc_proto::LogRecordSnapshot;
use tracing::Level;

use crate::lock;

/// The most records a ring keeps.
pub(crate) const MAX_RECORDS: usize = 200;
/// The oldest record a ring keeps, in microseconds (10 s).
pub(crate) const MAX_AGE_US: u64 = 10_000_000;
/// The most bytes of record text a ring keeps (64 KiB).
pub(crate) const MAX_BYTES: usize = 64 * 1024;

/// One kept record: its JSON line and whether the log file already has it.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    pub(crate) at_unix_us: u64,
    pub(crate) level: Level,
    pub(crate) line: Arc<str>,
    pub(crate) in_file: bool,
}

/// The ring of one session.
#[derive(Debug)]
pub(crate) struct FlightRecorder {
    ring: Mutex<Ring>,
    /// The pool's total of bytes held by every session's ring.
    total_bytes: Arc<AtomicU64>,
    /// Records left out because the ring was busy.
    pub(crate) missed_count: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    records: VecDeque<Kept>,
    bytes: usize,
}

impl FlightRecorder {
    pub(crate) fn new(total_bytes: Arc<AtomicU64>) -> Self {
        Self {
            ring: Mutex::default(),
            total_bytes,
            missed_count: AtomicU64::new(0),
        }
    }

    /// Keeps a record, dropping the oldest ones past the bounds. Never waits.
    pub(crate) fn push(&self, record: Kept) {
        let mut ring = match self.ring.try_lock() {
            Ok(ring) => ring,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.missed_count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let oldest_kept = record.at_unix_us.saturating_sub(MAX_AGE_US);
        let before = ring.bytes;
        ring.bytes += record.line.len();
        ring.records.push_back(record);
        while let Some(front) = ring.records.front() {
            let over = ring.records.len() > MAX_RECORDS
                || ring.bytes > MAX_BYTES
                || front.at_unix_us < oldest_kept;
            if !over || ring.records.len() == 1 {
                break;
            }
            if let Some(dropped) = ring.records.pop_front() {
                ring.bytes -= dropped.line.len();
            }
        }
        self.adjust_total(before, ring.bytes);
    }

    /// The records of the last [`MAX_AGE_US`] before `now_unix_us` that the log file does not
    /// have yet, marked as written from now on (for a stall: written once, however many
    /// stalls follow).
    pub(crate) fn take_unwritten(&self, now_unix_us: u64) -> Vec<Kept> {
        let oldest = now_unix_us.saturating_sub(MAX_AGE_US);
        let mut ring = lock(&self.ring);
        ring.records
            .iter_mut()
            .filter(|kept| !kept.in_file && kept.at_unix_us >= oldest)
            .map(|kept| {
                let copy = kept.clone();
                kept.in_file = true;
                copy
            })
            .collect()
    }

    /// Empties the ring: the records of the last [`MAX_AGE_US`] before `now_unix_us`, oldest
    /// first (at a session's end).
    pub(crate) fn drain(&self, now_unix_us: u64) -> Vec<Kept> {
        let oldest = now_unix_us.saturating_sub(MAX_AGE_US);
        let mut ring = lock(&self.ring);
        let before = ring.bytes;
        let records: Vec<Kept> = ring
            .records
            .drain(..)
            .filter(|kept| kept.at_unix_us >= oldest)
            .collect();
        ring.bytes = 0;
        self.adjust_total(before, 0);
        records
    }

    /// Bytes of text this ring holds now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.ring).bytes
    }

    fn adjust_total(&self, before: usize, after: usize) {
        let (before, after) = (before as u64, after as u64);
        if after >= before {
            self.total_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.total_bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

impl Drop for FlightRecorder {
    fn drop(&mut self) {
        let ring = self
            .ring
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = ring.bytes;
        ring.bytes = 0;
        self.adjust_total(held, 0);
    }
}

/// A kept record as snapshots show it: its message followed by its own fields as
/// `key=value`, without the keys every record has.
pub(crate) fn to_snapshot(kept: &Kept) -> LogRecordSnapshot {
    let mut record = LogRecordSnapshot::default();
    record.at_unix_us = kept.at_unix_us;
    record.level = kept.level.as_str().to_owned();
    let Ok(InOrder(fields)) = serde_json::from_str(&kept.line) else {
        record.message = kept.line.to_string();
        return record;
    };
    let mut extra = String::new();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("target", serde_json::Value::String(target)) => record.target = target,
            ("message", serde_json::Value::String(message)) => record.message = message,
            ("event", serde_json::Value::String(event)) => record.event = Some(event),
            (
                "ts"
                | "level"
                | "session_id"
                | "tenant"
                | "agent"
                | "worker"
                | "pid"
                | "from_flight_recorder",
                _,
            ) => {}
            (key, serde_json::Value::String(text)) => extra.push_str(&format!(" {key}={text}")),
            (key, value) => extra.push_str(&format!(" {key}={value}")),
        }
    }
    record.message.push_str(&extra);
    record
}

/// A JSON object's fields in the order the line has them.
struct InOrder(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<InOrder, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(InOrder(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(at_unix_us: u64, text_bytes: usize) -> Kept {
        Kept {
            at_unix_us,
            level: Level::DEBUG,
            line: Arc::from("x".repeat(text_bytes)),
            in_file: false,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_records_within_its_three_bounds() {
        let total = Arc::new(AtomicU64::new(0));
        let recorder = FlightRecorder::new(Arc::clone(&total));
        for n in 0..(MAX_RECORDS as u64 + 50) {
            recorder.push(kept(1_000_000 + n, 10));
        }
        let now = 1_000_000 + MAX_RECORDS as u64 + 50;
        assert_eq!(recorder.take_unwritten(now).len(), MAX_RECORDS);
        assert_eq!(total.load(Ordering::Relaxed), 10 * MAX_RECORDS as u64);
        // Age: a record 10 s after the last pushes every older one out.
        recorder.push(kept(now + MAX_AGE_US + 1, 10));
        assert_eq!(recorder.bytes(), 10);
        // Bytes: big records push older ones out, but the newest is always kept.
        recorder.push(kept(now + MAX_AGE_US + 2, MAX_BYTES / 2));
        recorder.push(kept(now + MAX_AGE_US + 3, MAX_BYTES / 2));
        assert_eq!(recorder.bytes(), MAX_BYTES);
        recorder.push(kept(now + MAX_AGE_US + 4, MAX_BYTES * 2));
        assert_eq!(recorder.bytes(), MAX_BYTES * 2);
        assert_eq!(total.load(Ordering::Relaxed), MAX_BYTES as u64 * 2);
        drop(recorder);
        assert_eq!(
            total.load(Ordering::Relaxed),
            0,
            "a dropped ring gives its bytes back"
        );
    }

    #[test]
    fn unwritten_records_are_taken_once_and_drain_empties_the_ring() {
        let total = Arc::new(AtomicU64::new(0));
        let recorder = FlightRecorder::new(Arc::clone(&total));
        recorder.push(kept(100, 5));
        recorder.push(Kept {
            in_file: true,
            ..kept(200, 5)
        });
        recorder.push(kept(300, 5));
        let taken: Vec<u64> = recorder
            .take_unwritten(400)
            .iter()
            .map(|k| k.at_unix_us)
            .collect();
        assert_eq!(taken, [100, 300]);
        assert!(recorder.take_unwritten(400).is_empty(), "taken only once");
        let drained: Vec<u64> = recorder.drain(400).iter().map(|k| k.at_unix_us).collect();
        assert_eq!(drained, [100, 200, 300]);
        assert_eq!(total.load(Ordering::Relaxed), 0);
        assert!(recorder.drain(400).is_empty());
    }

    #[test]
    fn a_snapshot_record_shows_the_message_then_the_record_s_own_fields() {
        let line = "{\"ts\":\"2026-12-06T23:51:13.000001Z\",\"level\":\"WARN\",\
                    \"target\":\"openrtc::watchdog\",\"message\":\"[slow-session] blocked\",\
                    \"session_id\":\"s-3\",\"tenant\":\"t\",\"agent\":\"a\",\"worker\":\"w\",\
                    \"pid\":1,\"event\":\"slow_session\",\"stall_ms\":80,\"class\":\"sleep\"}";
        let record = to_snapshot(&Kept {
            at_unix_us: 7,
            level: Level::WARN,
            line: Arc::from(line),
            in_file: true,
        });
        assert_eq!(record.at_unix_us, 7);
        assert_eq!(record.level, "WARN");
        assert_eq!(record.target, "openrtc::watchdog");
        assert_eq!(record.event.as_deref(), Some("slow_session"));
        assert_eq!(
            record.message,
            "[slow-session] blocked stall_ms=80 class=sleep"
        );
    }
}
