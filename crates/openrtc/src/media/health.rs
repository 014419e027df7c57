//! Per-call media health, measured in the worker over a sliding window: what the caller hears.
//!
//! - **Inbound gaps**: chunk numbers missing from the provider's sequence, and stream-time
//!   jumps (a chunk whose `timestamp` advanced more than the previous chunk's duration per
//!   chunk number, 20 ms for 20 ms chunks).
//! - **Inbound jitter**: each chunk's arrival against its expected arrival, the first chunk's
//!   arrival plus the stream time since it (`timestamp − first timestamp`); the figure is the
//!   p99 of |arrival − expected|.
//! - **Outbound lateness**: the agent's audio forms a playout timeline, as the provider plays
//!   it: its first chunk is due when it is sent, and each next chunk when the one before has
//!   played (`max(due, sent) + its duration`). A chunk sent after its due time is late by
//!   `sent − due`: the caller heard that much silence in the middle of the agent's speech. A
//!   chunk sent more than [`PAUSE`] after its due time starts a new timeline and is not late
//!   (the agent paused: a silent agent is not late), and so does the first chunk after a
//!   `clear`. Figures are over the last [`WINDOW`].
//!
//! Each direction keeps its last [`RING_SAMPLES`] chunks in a fixed ring (no growth; a call
//! sending more than 51 chunks a second has a window shorter than [`WINDOW`]), behind one
//! `Mutex` per call: the call's pump takes it once per inbound frame, the session once per
//! 20 ms chunk it sends, a snapshot once per call. Both writers are tasks of the same session,
//! so it is uncontended but for a snapshot; a snapshot copies the window out and sorts it
//! outside the lock. The p99s are exact (nearest rank over the window's chunks); a sample's
//! time is kept in whole milliseconds, its figure in microseconds. The rings take 12 KiB a
//! call, allocated once when it connects.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::call::CallCounters;

/// How far back the window's figures look.
pub const WINDOW: Duration = Duration::from_secs(10);

/// An underrun longer than this is the agent pausing, not its audio being late.
pub const PAUSE: Duration = Duration::from_millis(500);

/// A call whose outbound lateness p99 is over this is degrading.
pub const DEGRADING_LATENESS_P99_MS: f64 = 40.0;

/// A call whose inbound jitter p99 is over this is degrading.
pub const DEGRADING_JITTER_P99_MS: f64 = 60.0;

/// Chunks kept per direction: 10 s of 20 ms chunks, with room to spare.
pub(crate) const RING_SAMPLES: usize = 512;

const WINDOW_US: u64 = 10_000_000;
const PAUSE_US: u64 = 500_000;
const US_PER_MS: u64 = 1_000;

/// One inbound chunk (or one dropped event): when it came (ms since the call started: 49
/// days fit) and what was wrong with it. 16 bytes: the ring is 8 KiB.
#[derive(Clone, Copy, Debug)]
struct InSample {
    at_ms: u32,
    /// |arrival − expected|, or [`NO_JITTER`] when the chunk had no timestamp.
    jitter_us: u32,
    missing_count: u32,
    jump_count: u8,
    /// Events dropped at this moment (saturating).
    dropped_count: u8,
}

impl Default for InSample {
    fn default() -> Self {
        Self {
            at_ms: 0,
            jitter_us: NO_JITTER,
            missing_count: 0,
            jump_count: 0,
            dropped_count: 0,
        }
    }
}

/// An inbound sample without a jitter figure.
const NO_JITTER: u32 = u32::MAX;

/// One outbound chunk: when it was sent (ms since the call started) and how late. 8 bytes.
#[derive(Clone, Copy, Debug, Default)]
struct OutSample {
    at_ms: u32,
    late_us: u32,
}

/// A fixed ring of the last [`RING_SAMPLES`] samples.
#[derive(Debug)]
struct Ring<T> {
    samples: Box<[T; RING_SAMPLES]>,
    next: usize,
    len: usize,
}

impl<T: Copy + Default> Default for Ring<T> {
    fn default() -> Self {
        Self {
            samples: Box::new([T::default(); RING_SAMPLES]),
            next: 0,
            len: 0,
        }
    }
}

impl<T: Copy> Ring<T> {
    fn push(&mut self, sample: T) {
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % RING_SAMPLES;
        self.len = (self.len + 1).min(RING_SAMPLES);
    }

    fn last_mut(&mut self) -> Option<&mut T> {
        (self.len > 0).then(|| &mut self.samples[(self.next + RING_SAMPLES - 1) % RING_SAMPLES])
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let start = (self.next + RING_SAMPLES - self.len) % RING_SAMPLES;
        (0..self.len).map(move |offset| &self.samples[(start + offset) % RING_SAMPLES])
    }
}

/// The inbound side's state: the stream's origin and the last chunk seen.
#[derive(Debug, Default)]
struct InState {
    /// The first timestamped chunk: its arrival and its stream time.
    origin: Option<(u64, u64)>,
    last_chunk: Option<u64>,
    /// The last timestamped chunk's stream time and duration.
    last_stream: Option<(u64, u64)>,
}

/// A call's measurements, pure: times are passed in (µs since the call's start).
#[derive(Debug, Default)]
pub(crate) struct Windows {
    inbound: Ring<InSample>,
    outbound: Ring<OutSample>,
    state: InState,
    /// When the agent's next chunk is due on its playout timeline, if one is running.
    due_us: Option<u64>,
}

/// What one inbound chunk showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InboundGaps {
    /// Chunk numbers missing just before it.
    pub(crate) missing_count: u64,
    /// Whether its stream time jumped past the audio before it.
    pub(crate) jumped: bool,
}

/// The window's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WindowFigures {
    pub(crate) inbound_jitter_p99_ms: f64,
    pub(crate) outbound_lateness_p99_ms: f64,
    pub(crate) frames_missing_count: u64,
    pub(crate) frames_dropped_count: u64,
    pub(crate) stream_jumps_count: u64,
}

impl WindowFigures {
    /// Whether the caller is hearing trouble: lateness or jitter over its threshold, or any
    /// chunk missing or dropped in the window.
    pub(crate) fn degrading(&self) -> bool {
        self.outbound_lateness_p99_ms > DEGRADING_LATENESS_P99_MS
            || self.inbound_jitter_p99_ms > DEGRADING_JITTER_P99_MS
            || self.frames_missing_count > 0
            || self.frames_dropped_count > 0
    }
}

impl Windows {
    /// An inbound audio chunk arrived at `at_us`: its chunk number and stream time (if the
    /// provider gave them) and its audio's duration.
    pub(crate) fn inbound(
        &mut self,
        at_us: u64,
        chunk: Option<u64>,
        timestamp_ms: Option<u64>,
        duration_us: u64,
    ) -> InboundGaps {
        let state = &mut self.state;
        let steps = match (state.last_chunk, chunk) {
            (Some(last), Some(now)) if now > last => now - last,
            _ => 1,
        };
        let missing_count = steps - 1;
        if chunk.is_some() {
            state.last_chunk = chunk;
        }
        let mut jumped = false;
        let mut jitter_us = NO_JITTER;
        if let Some(stream_ms) = timestamp_ms {
            if let Some((last_ms, last_duration_us)) = state.last_stream {
                let allowed_us = last_duration_us.max(US_PER_MS) * steps;
                jumped = stream_ms.saturating_sub(last_ms) * US_PER_MS > allowed_us;
            }
            state.last_stream = Some((stream_ms, duration_us));
            let (first_at_us, first_ms) = *state.origin.get_or_insert((at_us, stream_ms));
            let expected_us =
                first_at_us.saturating_add(stream_ms.saturating_sub(first_ms) * US_PER_MS);
            jitter_us = clamp_u32(at_us.abs_diff(expected_us)).min(NO_JITTER - 1);
        }
        self.inbound.push(InSample {
            at_ms: at_ms(at_us),
            jitter_us,
            missing_count: clamp_u32(missing_count),
            jump_count: u8::from(jumped),
            dropped_count: 0,
        });
        InboundGaps {
            missing_count,
            jumped,
        }
    }

    /// An inbound event at `at_us` was dropped (the session was too slow to take it).
    pub(crate) fn dropped(&mut self, at_us: u64) {
        let at_ms = at_ms(at_us);
        match self.inbound.last_mut() {
            Some(last) if last.at_ms == at_ms && last.dropped_count < u8::MAX => {
                last.dropped_count += 1;
            }
            _ => self.inbound.push(InSample {
                at_ms,
                dropped_count: 1,
                ..InSample::default()
            }),
        }
    }

    /// The agent sent a chunk of `duration_us` of audio at `at_us`; returns how late it was.
    pub(crate) fn outbound(&mut self, at_us: u64, duration_us: u64) -> u64 {
        let late_us = match self.due_us {
            Some(due) if at_us > due && at_us - due <= PAUSE_US => at_us - due,
            _ => 0,
        };
        let starts_us = match self.due_us {
            Some(due) if at_us <= due => due,
            _ => at_us,
        };
        self.due_us = Some(starts_us + duration_us);
        self.outbound.push(OutSample {
            at_ms: at_ms(at_us),
            late_us: clamp_u32(late_us),
        });
        late_us
    }

    /// The agent cleared its queued audio: its next chunk starts a new timeline.
    pub(crate) fn cleared(&mut self) {
        self.due_us = None;
    }

    /// The figures over the window ending at `now_us` (the tests' shorthand).
    #[cfg(test)]
    fn figures(&self, now_us: u64) -> WindowFigures {
        self.collect(now_us).figures()
    }

    /// The window's samples ending at `now_us`, copied out (to be sorted outside the lock).
    fn collect(&self, now_us: u64) -> Collected {
        let now_ms = now_us / US_PER_MS;
        let in_window = |at_ms: u32| u64::from(at_ms) + WINDOW_US / US_PER_MS > now_ms;
        let mut collected = Collected::default();
        for sample in self.inbound.iter().filter(|sample| in_window(sample.at_ms)) {
            let counts = &mut collected.counts;
            counts.frames_missing_count += u64::from(sample.missing_count);
            counts.frames_dropped_count += u64::from(sample.dropped_count);
            counts.stream_jumps_count += u64::from(sample.jump_count);
            if sample.jitter_us != NO_JITTER {
                collected.jitter_us[collected.jitter_len] = sample.jitter_us;
                collected.jitter_len += 1;
            }
        }
        for sample in self
            .outbound
            .iter()
            .filter(|sample| in_window(sample.at_ms))
        {
            collected.late_us[collected.late_len] = sample.late_us;
            collected.late_len += 1;
        }
        collected
    }
}

/// A window's samples, copied out of the rings.
struct Collected {
    counts: WindowFigures,
    jitter_us: [u32; RING_SAMPLES],
    jitter_len: usize,
    late_us: [u32; RING_SAMPLES],
    late_len: usize,
}

impl Default for Collected {
    fn default() -> Self {
        Self {
            counts: WindowFigures::default(),
            jitter_us: [0; RING_SAMPLES],
            jitter_len: 0,
            late_us: [0; RING_SAMPLES],
            late_len: 0,
        }
    }
}

impl Collected {
    /// The figures: the counts, and the p99s of the sorted samples.
    fn figures(mut self) -> WindowFigures {
        let mut figures = self.counts;
        figures.inbound_jitter_p99_ms = p99_ms(&mut self.jitter_us[..self.jitter_len]);
        figures.outbound_lateness_p99_ms = p99_ms(&mut self.late_us[..self.late_len]);
        figures
    }
}

/// The p99 (nearest rank) of `values_us`, in ms; 0 for none.
fn p99_ms(values_us: &mut [u32]) -> f64 {
    if values_us.is_empty() {
        return 0.0;
    }
    values_us.sort_unstable();
    let rank = (values_us.len() * 99).div_ceil(100).max(1);
    f64::from(values_us[rank - 1]) / 1_000.0
}

/// Microseconds since the call started as the rings' milliseconds.
fn at_ms(at_us: u64) -> u32 {
    clamp_u32(at_us / US_PER_MS)
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// A call's health, shared by its pump, its [`CallMedia`](super::CallMedia) and the
/// snapshot: lifetime counters (atomics) and the window (one small `Mutex`).
#[derive(Debug)]
pub(crate) struct CallHealth {
    pub(crate) counters: CallCounters,
    windows: Mutex<Windows>,
    origin: Instant,
}

impl Default for CallHealth {
    fn default() -> Self {
        Self {
            counters: CallCounters::default(),
            windows: Mutex::default(),
            origin: Instant::now(),
        }
    }
}

impl CallHealth {
    /// Microseconds since the call started.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs `f` on the window.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Windows) -> R) -> R {
        f(&mut crate::lock(&self.windows))
    }

    /// The window's figures now: the samples are copied under the lock and sorted after.
    pub(crate) fn figures(&self) -> WindowFigures {
        let now_us = self.now_us();
        self.with(|windows| windows.collect(now_us)).figures()
    }
}

/// A call's row in the snapshot: its stream, lifetime counters and window figures.
pub(crate) fn snapshot(
    start: &super::protocol::StreamStart,
    health: &CallHealth,
) -> openrtc_proto::CallMediaSnapshot {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let figures = health.figures();
    let counters = &health.counters;
    let mut media = openrtc_proto::CallMediaSnapshot::default();
    media.provider = format!("{:?}", start.provider).to_lowercase();
    media.stream_id.clone_from(&start.stream_id);
    media.frames_in_count = load(&counters.frames_in);
    media.frames_out_count = load(&counters.frames_out);
    media.frames_missing_count = load(&counters.frames_missing);
    media.frames_dropped_count = load(&counters.frames_dropped);
    media.stream_jumps_count = load(&counters.stream_jumps);
    media.window_ms = WINDOW_US / US_PER_MS;
    media.window_frames_missing_count = figures.frames_missing_count;
    media.window_frames_dropped_count = figures.frames_dropped_count;
    media.window_stream_jumps_count = figures.stream_jumps_count;
    media.inbound_jitter_p99_ms = figures.inbound_jitter_p99_ms;
    media.outbound_lateness_p99_ms = figures.outbound_lateness_p99_ms;
    media.degrading = figures.degrading();
    media
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK_US: u64 = 20_000;
    const MS: u64 = 1_000;

    #[test]
    fn steady_audio_has_no_gaps_and_no_jitter() {
        let mut windows = Windows::default();
        for n in 0..100 {
            let gaps = windows.inbound(n * CHUNK_US, Some(n + 1), Some(n * 20), CHUNK_US);
            assert_eq!(gaps, InboundGaps::default());
        }
        let figures = windows.figures(100 * CHUNK_US);
        assert_eq!(figures, WindowFigures::default());
        assert!(!figures.degrading());
    }

    #[test]
    fn missing_chunk_numbers_and_stream_time_jumps_are_counted_exactly() {
        let mut windows = Windows::default();
        windows.inbound(0, Some(1), Some(0), CHUNK_US);
        // Chunks 2 to 4 never came; the stream time moved with them (not a jump).
        let gaps = windows.inbound(80 * MS, Some(5), Some(80), CHUNK_US);
        assert_eq!(gaps.missing_count, 3);
        assert!(!gaps.jumped);
        // The next chunk in sequence, but 100 ms of stream time later: a jump.
        let gaps = windows.inbound(100 * MS, Some(6), Some(180), CHUNK_US);
        assert_eq!(gaps.missing_count, 0);
        assert!(gaps.jumped);
        let figures = windows.figures(200 * MS);
        assert_eq!(figures.frames_missing_count, 3);
        assert_eq!(figures.stream_jumps_count, 1);
        assert!(figures.degrading());
        // Ten seconds later they have left the window.
        let later = windows.figures(200 * MS + WINDOW_US);
        assert_eq!(later.frames_missing_count, 0);
        assert_eq!(later.stream_jumps_count, 0);
    }

    #[test]
    fn jitter_p99_is_the_99th_percentile_of_the_arrival_deviations() {
        let mut windows = Windows::default();
        // 100 chunks: 98 on time, one 30 ms late, one 7 ms early.
        for n in 0..100_u64 {
            let at_us = match n {
                50 => n * CHUNK_US + 30 * MS,
                70 => n * CHUNK_US - 7 * MS,
                _ => n * CHUNK_US,
            };
            windows.inbound(at_us, Some(n), Some(n * 20), CHUNK_US);
        }
        // Nearest rank 99 of 100 sorted deviations: 0 ×98, 7, 30 → 7 ms.
        let figures = windows.figures(2_000 * MS);
        assert!(
            (figures.inbound_jitter_p99_ms - 7.0).abs() < 1e-9,
            "{figures:?}"
        );
        assert!(!figures.degrading());
    }

    #[test]
    fn a_prompt_agent_is_never_late() {
        let mut windows = Windows::default();
        for n in 0..50 {
            assert_eq!(windows.outbound(n * CHUNK_US, CHUNK_US), 0);
        }
        // A burst ahead of time is queued, not late.
        for _ in 0..20 {
            assert_eq!(windows.outbound(50 * CHUNK_US, CHUNK_US), 0);
        }
        assert_eq!(windows.figures(51 * CHUNK_US).outbound_lateness_p99_ms, 0.0);
    }

    #[test]
    fn a_chunk_sent_100_ms_after_its_due_time_is_100_ms_late() {
        let mut windows = Windows::default();
        assert_eq!(windows.outbound(0, CHUNK_US), 0);
        assert_eq!(windows.outbound(20 * MS, CHUNK_US), 0);
        // Due at 40 ms, sent at 140 ms.
        assert_eq!(windows.outbound(140 * MS, CHUNK_US), 100 * MS);
        // The timeline moved with it: the next chunk is due at 160 ms.
        assert_eq!(windows.outbound(160 * MS, CHUNK_US), 0);
        let figures = windows.figures(200 * MS);
        assert!((figures.outbound_lateness_p99_ms - 100.0).abs() < 1e-9);
        assert!(figures.degrading());
    }

    #[test]
    fn a_silent_then_resuming_agent_is_not_late() {
        let mut windows = Windows::default();
        for n in 0..10 {
            windows.outbound(n * CHUNK_US, CHUNK_US);
        }
        // A second of silence, then it speaks again: a new timeline.
        for n in 0..10 {
            assert_eq!(windows.outbound(1_200 * MS + n * CHUNK_US, CHUNK_US), 0);
        }
        // After a clear, too, however soon.
        windows.cleared();
        assert_eq!(windows.outbound(1_500 * MS, CHUNK_US), 0);
        assert_eq!(windows.figures(1_600 * MS).outbound_lateness_p99_ms, 0.0);
    }

    #[test]
    fn an_agent_sleeping_200_ms_between_chunks_is_180_ms_late_each_time() {
        let mut windows = Windows::default();
        for n in 0..20 {
            let late_us = windows.outbound(n * 200 * MS, CHUNK_US);
            assert_eq!(late_us, if n == 0 { 0 } else { 180 * MS });
        }
        let figures = windows.figures(4_000 * MS);
        assert!((figures.outbound_lateness_p99_ms - 180.0).abs() < 1e-9);
    }

    #[test]
    fn dropped_events_count_in_the_window_and_the_ring_stays_bounded() {
        let mut windows = Windows::default();
        for n in 0..(RING_SAMPLES as u64 * 3) {
            windows.inbound(n * MS, Some(n), Some(n), MS);
        }
        windows.dropped(RING_SAMPLES as u64 * 3 * MS - MS);
        windows.dropped(RING_SAMPLES as u64 * 3 * MS);
        assert_eq!(windows.inbound.len, RING_SAMPLES);
        let figures = windows.figures(RING_SAMPLES as u64 * 3 * MS);
        assert_eq!(figures.frames_dropped_count, 2);
        assert!(figures.degrading());
    }

    #[test]
    fn a_call_s_rings_take_12_kib() {
        assert_eq!(std::mem::size_of::<InSample>(), 16);
        assert_eq!(std::mem::size_of::<OutSample>(), 8);
        assert_eq!(RING_SAMPLES * (16 + 8), 12 * 1024);
    }

    #[test]
    fn the_p99_is_by_nearest_rank() {
        assert_eq!(p99_ms(&mut []), 0.0);
        assert_eq!(p99_ms(&mut [5_000]), 5.0);
        let mut values: Vec<u32> = (1..=200).map(|ms| ms * 1_000).collect();
        assert_eq!(p99_ms(&mut values), 198.0);
    }
}
