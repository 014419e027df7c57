//! The reporter thread: explains each diagnosed stall (symbolizing its stack) and finishes
//! each stall once its victims have reported in (filling them in and writing the
//! `[slow-session]` line), then unloads the debug info once it has gone unused for
//! [`SYMBOLS_KEPT`]. The first symbolization loads debug info (tens of milliseconds), which
//! is why this runs beside the scanning thread rather than on it.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::classify::{StallClass, StallDiagnosis, WatchedTime};
use crate::probe::StallEvent;
use crate::session::{KEPT_VICTIMS, SessionCell, StallCause, Victim};
use crate::stack::capture;
use crate::stack::symbols;
use crate::units::ns_to_ms;

use super::scan::Diagnosed;

/// The target of this module's log lines: the watchdog's, as before it was split, so filters
/// such as `RUST_LOG=openrtc::watchdog=warn` and the lines' prefix stay the same.
const LOG_TARGET: &str = "openrtc::watchdog";

/// How long the debug info stays loaded after the last symbolization.
const SYMBOLS_KEPT: Duration = Duration::from_secs(60);

/// A finished stall held back while the polls it delayed report in.
pub(super) struct Pending {
    pub(super) stall: StallEvent,
    /// Its class, if it was diagnosed in progress.
    pub(super) class: Option<StallClass>,
    /// How its thread spent the part of it the watchdog watched.
    pub(super) watched: Option<WatchedTime>,
    /// Each delayed session once, with its longest wait.
    pub(super) victims: Vec<(Arc<SessionCell>, u64)>,
}

/// What the scanner hands the reporter thread, in order: a stall is explained before it is
/// finished.
pub(super) enum Report {
    /// A diagnosed stall that has ended: symbolize its stack and fill in its cause.
    Explain {
        cell: Arc<SessionCell>,
        worker: u32,
        seq: u64,
        diagnosed: Diagnosed,
    },
    /// A stall whose victims have had their grace period: fill them in and log the stall.
    Finish(Pending),
}

/// The scanner's end of the channel to the reporter thread.
pub(super) struct ReportSender {
    /// To the reporter thread, which symbolizes, logs and completes each stall in turn: the
    /// first symbolization loads debug info (tens of milliseconds), which would hold up
    /// scanning.
    reports: mpsc::Sender<Report>,
    /// Reports handled on this thread once the reporter is gone.
    orphaned: Reporter,
}

impl ReportSender {
    pub(super) fn new(reports: mpsc::Sender<Report>) -> Self {
        Self {
            reports,
            orphaned: Reporter::default(),
        }
    }

    /// Hands a report to the reporter thread, or handles it here if that thread is gone (it
    /// panicked), rather than lose it.
    pub(super) fn send(&mut self, report: Report) {
        if let Err(mpsc::SendError(report)) = self.reports.send(report) {
            self.orphaned.handle(report);
        }
    }
}

/// The reporter thread: handles what the scanner sends, in order, and unloads the debug info
/// once no stack has been symbolized for [`SYMBOLS_KEPT`]. Returns when the scanner has
/// stopped and every stall it sent is reported.
pub(super) fn report_stalls(finished: &mpsc::Receiver<Report>) {
    let mut reporter = Reporter::default();
    loop {
        let until_unload = reporter.symbolized_at.map_or(SYMBOLS_KEPT, |at: Instant| {
            SYMBOLS_KEPT.saturating_sub(at.elapsed())
        });
        match finished.recv_timeout(until_unload) {
            Ok(report) => reporter.handle(report),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if reporter
            .symbolized_at
            .is_some_and(|at| at.elapsed() >= SYMBOLS_KEPT)
        {
            reporter.symbolized_at = None;
            symbols::unload();
        }
    }
}

/// The reporter's state: the causes explained for stalls not yet finished, and when a stack
/// was last symbolized.
#[derive(Default)]
struct Reporter {
    /// Causes by (worker, poll sequence number), until their stall is finished.
    explained: HashMap<(u32, u64), StallCause>,
    symbolized_at: Option<Instant>,
}

impl Reporter {
    fn handle(&mut self, report: Report) {
        match report {
            Report::Explain {
                cell,
                worker,
                seq,
                diagnosed,
            } => {
                if matches!(diagnosed.stack, Some(Ok(_))) {
                    self.symbolized_at = Some(Instant::now());
                }
                let cause = explain(diagnosed);
                cell.complete_stall(worker, seq, |record| {
                    record.cause = Some(cause.clone());
                    record.cause_pending = false;
                });
                self.explained.insert((worker, seq), cause);
            }
            Report::Finish(pending) => {
                let cause = self
                    .explained
                    .remove(&(pending.stall.worker, pending.stall.seq));
                finish(pending, cause);
            }
        }
    }
}

/// Completes a stall whose victims have reported in: charges the sessions it delayed, fills
/// in its victims and writes its `[slow-session]` line.
fn finish(pending: Pending, cause: Option<StallCause>) {
    let Pending {
        stall,
        class,
        watched,
        mut victims,
    } = pending;
    victims.sort_by(|(_, left), (_, right)| right.cmp(left));
    for (cell, delay_ns) in &victims {
        cell.note_delayed_by_stall(*delay_ns);
    }
    let kept: Arc<[Victim]> = victims
        .iter()
        .take(KEPT_VICTIMS)
        .map(|(cell, delay_ns)| Victim {
            session: cell.id(),
            delay_ns: *delay_ns,
        })
        .collect();
    stall
        .cell
        .complete_stall(stall.worker, stall.seq, |record| {
            record.victim_count = victims.len() as u64;
            record.victims = kept;
            record.victims_pending = false;
        });
    let mut because: Vec<String> = Vec::new();
    if let Some(cause) = &cause {
        because.push(cause.summary.to_string());
    } else if let Some(class) = class {
        because.push(class.to_string());
    }
    if let Some(watched) =
        watched.filter(|_| matches!(class, Some(StallClass::Cpu | StallClass::Preempted)))
    {
        because.push(
            watched
                .to_wire()
                .describe(class == Some(StallClass::Preempted)),
        );
    }
    because.push(match victims.first() {
        None => "no other session delayed".to_owned(),
        Some((_, longest_ns)) => format!(
            "{} session{} delayed, up to {}ms",
            victims.len(),
            if victims.len() == 1 { "" } else { "s" },
            ns_to_ms(*longest_ns)
        ),
    });
    let stall_ms = ns_to_ms(stall.duration_ns);
    if let Some(pool) = stall.cell.pool() {
        pool.events.emit(crate::events::Event::SessionStalled {
            key: stall.cell.key(),
            tenant: Arc::clone(stall.cell.tenant_name()),
            agent: Arc::clone(stall.cell.agent_name()),
            worker: stall.worker,
            duration_ns: stall.duration_ns,
            class,
            cause: cause.as_ref().map(|cause| Arc::clone(&cause.summary)),
            victim_count: victims.len() as u64,
        });
    }
    // In the session's logging scope: the line joins its flight recorder, which then goes to
    // the log file with what led up to the stall.
    crate::telemetry::current::scope(&stall.cell, || {
        tracing::warn!(
            target: LOG_TARGET,
            event = "slow_session",
            session_id = %stall.cell.id(),
            tenant = stall.cell.tenant(),
            agent = stall.cell.agent(),
            worker_thread = stall.worker,
            stall_ms,
            class = class.map(StallClass::as_str),
            victim_count = victims.len(),
            "[slow-session] session_id={} tenant={} agent={} blocked worker {} for {stall_ms}ms ({})",
            stall.cell.id(),
            stall.cell.tenant(),
            stall.cell.agent(),
            stall.worker,
            because.join("; ")
        );
    });
    stall.cell.log().replay_unwritten(&stall.cell);
}

/// Turns a stall diagnosed in progress into its cause: symbolizes the stack, and says what
/// blocked in words (`sleep in std::thread::sleep at src/agents/blocker.rs:42`).
fn explain(diagnosed: Diagnosed) -> StallCause {
    let Diagnosed {
        diagnosis, stack, ..
    } = diagnosed;
    let (stack, stack_note) = match stack {
        None => (None, Some("stack capture is off".into())),
        Some(Ok(raw)) => {
            let stack = symbols::symbolize(&raw);
            let note = stack.top_user.is_none().then(|| {
                "no frame of the agent's code was found on the stack (is it built with frame \
                 pointers?)"
                    .into()
            });
            (Some(Arc::new(stack)), note)
        }
        Some(Err(failed)) => (None, Some(capture_failure(failed, &diagnosis).into())),
    };
    StallCause {
        summary: describe(&diagnosis, stack.as_deref()).into(),
        stack,
        stack_note,
    }
}

/// The diagnosis in words, naming the agent's blocking call and its place when the stack has
/// them: `io in <std::net::TcpStream as std::io::Read>::read at src/db.rs:17 on tcp 10.0.0.5:5432`.
fn describe(diagnosis: &StallDiagnosis, stack: Option<&crate::stack::Stack>) -> String {
    let (Some(call), Some(frame)) = (
        stack.and_then(crate::stack::Stack::blocking_call),
        stack.and_then(crate::stack::Stack::top_user_frame),
    ) else {
        return diagnosis.to_string();
    };
    let mut words = format!("{} in {call}", diagnosis.class);
    match frame.location() {
        Some(location) => words.push_str(&format!(" at {location}")),
        None if call != frame.function => words.push_str(&format!(" from {}", frame.function)),
        None => {}
    }
    if let Some(target) = &diagnosis.fd_target {
        words.push_str(&format!(" on {target}"));
    }
    words
}

/// Why a stack was not captured, in words for the stall's record.
fn capture_failure(failed: capture::Failed, diagnosis: &StallDiagnosis) -> String {
    match failed {
        capture::Failed::NotAnswered(deadline) => format!(
            "the thread did not take the capture signal within {} ms{}",
            deadline.as_millis(),
            match diagnosis.thread_state {
                Some('D') => " (it was in uninterruptible sleep)",
                Some('R') => " (it was waiting for a CPU)",
                _ => "",
            }
        ),
        capture::Failed::Unavailable(capture::Unavailable::Architecture) => {
            "stack capture is not available on this architecture".to_owned()
        }
        capture::Failed::Unavailable(capture::Unavailable::NoFreeSignal) => {
            "no real-time signal is free for stack capture".to_owned()
        }
        capture::Failed::NoStackBounds => "the thread's stack bounds are unknown".to_owned(),
        capture::Failed::ThreadGone => "the thread had exited".to_owned(),
    }
}
