//! The worker's side of an isolated session: its root task, which starts the child, follows
//! it and turns how it ended into the session's typed outcome.
//!
//! The task holds the session's place, id and row like any other root task; its own polls
//! are a few per [`super::ROW_INTERVAL`] (a row to store, `/proc` to read). What it does:
//! - asks the spawner thread for a child and sends it the session's `start`;
//! - stores each row the child sends (the child's probe's figures, which the session's
//!   snapshot row shows) and reads the process's resident memory and CPU time from
//!   `/proc/<pid>` on the same cadence;
//! - kills the process's group when its resident memory crosses its limit: the session's
//!   heap cap over what the process held when its session started (a process has a runtime
//!   and threads besides the session, which the cap does not count);
//! - passes a cancel on to the child (a kill, or the end of the cancel grace, drops this task,
//!   whose guard kills the process's group);
//! - for a phone call, takes the session's `CallMedia` and relays it: the caller's events to
//!   the child, the child's frames (encoded there) to the call's connection, counted and timed
//!   here as the session's own `send` would be, so the call's media health is the worker's;
//! - ends with the outcome the child reported, or, if the process died without one, with
//!   `killed (signal)` for a death by signal and `failed` with the exit code otherwise.

use std::os::unix::process::ExitStatusExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::offences::Offence;
use super::wire::{self, MAX_FRAME_BYTES, StartSession, ToChild, ToParent};
use super::{ProcessError, ProcessState, Spawner};
use crate::session::{SessionCell, SessionOutcome, StopRequest};
use crate::{AgentError, KillReason};

/// How long a child may take to report its session running. One that does not (its `main`
/// never reaches the pool builder, or does something else first) is killed and its session
/// fails with words that say so.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Kills the child's process group if the session's task is dropped while the child lives
/// (a kill, the end of a cancel grace, the runtime's shutdown). The spawner reaps it.
struct KillOnDrop {
    pid: u32,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            crate::os::kill_process_group(self.pid);
        }
    }
}

/// The process's CPU over the last second or so, from its CPU time at two moments.
struct CpuWindow {
    since: Instant,
    cpu_at_since: std::time::Duration,
}

impl CpuWindow {
    /// The % of one core over the window once it is a second long (then a new one starts).
    fn observe(&mut self, now: Instant, cpu: std::time::Duration) -> Option<f64> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < std::time::Duration::from_secs(1) {
            return None;
        }
        let used = cpu.saturating_sub(self.cpu_at_since);
        self.since = now;
        self.cpu_at_since = cpu;
        Some(used.as_secs_f64() / elapsed.as_secs_f64() * 100.0)
    }
}

/// Runs the isolated session: its whole life, as its root task.
pub(crate) async fn run(
    cell: Arc<SessionCell>,
    spawner: Arc<Spawner>,
    mut start: StartSession,
    state: Arc<ProcessState>,
) -> SessionOutcome {
    let asked = Instant::now();
    // A call's media is relayed from here; the child makes its own from the start frame.
    let mut media = cell.take_media();
    start.call_start = media.as_ref().map(|media| media.start_text().to_string());
    let mut media_open = media.is_some();
    let spawned = match spawner.spawn().await {
        Ok(spawned) => spawned,
        Err(error) => return failed(ProcessError::Spawn(error)),
    };
    let pid = spawned.pid;
    state.pid.store(pid, Ordering::Relaxed);
    let mut guard = KillOnDrop { pid, armed: true };
    let channel = spawned
        .control
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(spawned.control));
    let channel = match channel {
        Ok(channel) => channel,
        Err(error) => return failed(ProcessError::Channel(error)),
    };
    let (read, mut write) = channel.into_split();
    let mut frames = FramedRead::new(
        read,
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME_BYTES)
            .new_codec(),
    );
    let heap_limit_bytes = start.memory_limit_bytes;
    let mut channel_open = match wire::encode(&ToChild::Start(start)) {
        Ok(frame) => write.write_all(&frame).await.is_ok(),
        Err(_) => false,
    };
    let mut exit = spawned.exit;
    let mut reported: Option<SessionOutcome> = None;
    let mut over_limit: Option<KillReason> = None;
    let mut cancel_sent = false;
    let mut own_stalls_seen = 0_u64;
    let mut ticker = tokio::time::interval(super::ROW_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu = CpuWindow {
        since: Instant::now(),
        cpu_at_since: std::time::Duration::ZERO,
    };
    let mut started = false;
    let start_deadline = tokio::time::Instant::from_std(asked + START_TIMEOUT);
    let status = loop {
        tokio::select! {
            status = &mut exit => break status.ok(),
            () = tokio::time::sleep_until(start_deadline), if !started && reported.is_none() => {
                started = true;
                reported = Some(failed(ProcessError::NoStart {
                    secs: START_TIMEOUT.as_secs(),
                }));
                crate::os::kill_process_group(pid);
            }
            frame = frames.next(), if channel_open => match frame {
                Some(Ok(body)) => match wire::decode::<ToParent>(&body) {
                    Ok(ToParent::Started) => {
                        started = true;
                        let micros = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
                        if let Some((rss, _)) = crate::os::process_figures(pid) {
                            state.rss_bytes.store(rss, Ordering::Relaxed);
                            if let Some(limit) = heap_limit_bytes {
                                state.rss_limit_bytes.store(rss.saturating_add(limit), Ordering::Relaxed);
                            }
                        }
                        state.start_us.store(micros, Ordering::Release);
                    }
                    Ok(ToParent::Row { row }) => {
                        // Its own stalls (not the host's) count against its tenant, isolated
                        // or not: they keep an automatically isolated tenant isolated.
                        let own = row.stall_count.saturating_sub(row.preempted_stall_count);
                        if let Some(pool) = cell.pool() {
                            // Its heap is its tenant's, for the tenant's heap budget.
                            pool.tenants
                                .get_or_create(cell.tenant())
                                .note_isolated_heap(cell.key(), row.mem_bytes);
                            for _ in own_stalls_seen..own.min(own_stalls_seen + 16) {
                                pool.note_offence(cell.tenant(), Offence::Stall);
                            }
                        }
                        own_stalls_seen = own_stalls_seen.max(own);
                        *crate::lock(&state.row) = Some(*row);
                    }
                    Ok(ToParent::Outcome { outcome }) => reported = Some(from_wire(outcome)),
                    Ok(ToParent::Refused { reason }) => {
                        reported = Some(failed(ProcessError::Refused(reason)));
                    }
                    Ok(ToParent::Media { out }) => {
                        if let Some(media) = &media {
                            // A closed call: the session hears of it as `MediaClosed`.
                            let _ = media.forward(out.into()).await;
                        }
                    }
                    Err(error) => {
                        // A child that sends what is not a message is not to be trusted.
                        channel_open = false;
                        tracing::warn!(pid, %error, "[isolation] killing the process of session {}: {error}", cell.id());
                        crate::os::kill_process_group(pid);
                    }
                },
                Some(Err(error)) => {
                    channel_open = false;
                    // A frame over the limit is the child's fault; a reset or a broken pipe is
                    // its death, which its exit status tells.
                    if error.kind() == std::io::ErrorKind::InvalidData {
                        tracing::warn!(pid, %error, "[isolation] killing the process of session {}: {error}", cell.id());
                        crate::os::kill_process_group(pid);
                    }
                }
                None => channel_open = false,
            },
            event = next_event(&mut media), if media_open && channel_open => {
                let message = match event {
                    Some(event) => ToChild::Media { event: event.into() },
                    None => {
                        media_open = false;
                        ToChild::MediaClosed
                    }
                };
                if let Ok(frame) = wire::encode(&message) {
                    let _ = write.write_all(&frame).await;
                }
            }
            () = cell.cancellation().cancelled(), if !cancel_sent => {
                cancel_sent = true;
                // A kill aborts this task instead (and the guard kills the process).
                if let Some(StopRequest::Cancel(reason)) = cell.stop_request() {
                    if let Ok(frame) = wire::encode(&ToChild::Cancel { reason }) {
                        let _ = write.write_all(&frame).await;
                    }
                }
            }
            _ = ticker.tick() => {
                if let Some((rss_bytes, cpu_time)) = crate::os::process_figures(pid) {
                    state.rss_bytes.store(rss_bytes, Ordering::Relaxed);
                    state.cpu_ns.store(
                        u64::try_from(cpu_time.as_nanos()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    if let Some(pct) = cpu.observe(Instant::now(), cpu_time) {
                        state.cpu_pct_bits.store(pct.to_bits(), Ordering::Relaxed);
                    }
                    let limit_bytes = state.rss_limit_bytes.load(Ordering::Relaxed);
                    if limit_bytes != 0 && rss_bytes > limit_bytes && over_limit.is_none() {
                        over_limit = Some(KillReason::RssLimit { rss_bytes, limit_bytes });
                        crate::os::kill_process_group(pid);
                    }
                }
            }
        }
    };
    // Reaped: there is no process left to kill.
    guard.armed = false;
    if let Some(reason) = over_limit {
        return SessionOutcome::Killed(reason);
    }
    if let Some(outcome) = reported {
        return outcome;
    }
    match status {
        Some(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => SessionOutcome::Killed(KillReason::Signal { signal }),
            (None, Some(code)) => failed(ProcessError::Exited { code }),
            (None, None) => failed(ProcessError::Exited { code: -1 }),
        },
        None => failed(ProcessError::Spawn(super::spawner::SpawnError::Gone)),
    }
}

/// The call's next event from its caller; never, for a session that is not a call.
async fn next_event(
    media: &mut Option<crate::media::CallMedia>,
) -> Option<crate::media::MediaEvent> {
    match media {
        Some(media) => media.recv().await,
        None => std::future::pending().await,
    }
}

fn failed(error: ProcessError) -> SessionOutcome {
    SessionOutcome::Failed(AgentError::from(error))
}

/// The child's report of its session's end, as the worker's own outcome.
fn from_wire(outcome: openrtc_proto::SessionOutcome) -> SessionOutcome {
    use openrtc_proto::SessionOutcome as Wire;
    match outcome {
        Wire::Completed => SessionOutcome::Completed,
        Wire::Failed { error } => SessionOutcome::Failed(AgentError::msg(error)),
        Wire::Panicked { message, location } => SessionOutcome::Panicked { message, location },
        Wire::Cancelled { reason } => SessionOutcome::Cancelled(reason),
        Wire::Killed { reason } => SessionOutcome::Killed(reason),
        // A kind this worker does not know (a newer child): its words, as a failure.
        other => SessionOutcome::Failed(AgentError::msg(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_averaged_over_windows_of_a_second() {
        let start = Instant::now();
        let mut window = CpuWindow {
            since: start,
            cpu_at_since: std::time::Duration::ZERO,
        };
        let ms = std::time::Duration::from_millis;
        assert_eq!(window.observe(start + ms(200), ms(100)), None, "too short");
        let pct = window.observe(start + ms(1000), ms(250)).expect("a second");
        assert!((pct - 25.0).abs() < 1e-9, "{pct}");
        let pct = window
            .observe(start + ms(3000), ms(2250))
            .expect("two seconds");
        assert!((pct - 100.0).abs() < 1e-9, "{pct}");
    }

    #[test]
    fn a_child_s_outcome_is_the_worker_s_outcome() {
        use openrtc_proto::SessionOutcome as Wire;
        assert!(matches!(
            from_wire(Wire::Completed),
            SessionOutcome::Completed
        ));
        let SessionOutcome::Panicked { message, location } = from_wire(Wire::Panicked {
            message: "boom".into(),
            location: Some("src/a.rs:1:2".into()),
        }) else {
            panic!("a panic stays a panic");
        };
        assert_eq!(
            (message.as_str(), location.as_deref()),
            ("boom", Some("src/a.rs:1:2"))
        );
        let killed = from_wire(Wire::Killed {
            reason: KillReason::MemoryLimit {
                live_bytes: 2,
                limit_bytes: 1,
            },
        });
        assert!(matches!(
            killed,
            SessionOutcome::Killed(KillReason::MemoryLimit { .. })
        ));
        let SessionOutcome::Failed(error) = from_wire(Wire::Failed { error: "no".into() }) else {
            panic!("a failure stays a failure");
        };
        assert_eq!(error.to_string(), "no");
    }
}
