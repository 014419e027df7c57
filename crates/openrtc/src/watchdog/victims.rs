//! Finished stalls waiting for their victims: the polls of other sessions that waited
//! through a stall report in (the probe times every wake) for [`VICTIM_GRACE`] before the
//! stall is handed to the reporter to be finished and logged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::classify::StallClass;
use crate::pool::PoolShared;
use crate::session::StallRecord;
use crate::units::duration_ns;

use super::report::{Pending, Report, ReportSender};
use super::scan::SlotScanner;

/// How long a finished stall waits for the polls it delayed before it is logged and kept:
/// they run on its thread right after it, so they report within microseconds unless the
/// thread has a long queue. A delay reported later is not attached to the stall.
pub(super) const VICTIM_GRACE: Duration = Duration::from_millis(50);

/// The finished stalls held back while the polls they delayed report in.
#[derive(Default)]
pub(super) struct Victims {
    /// Finished stalls waiting for the polls they delayed, oldest first.
    pending: VecDeque<Pending>,
}

impl Victims {
    /// Takes finished stalls from the probe (unmarking their sessions at once), attaches the
    /// polls they delayed, and reports each stall once [`VICTIM_GRACE`] has passed since it
    /// ended (all of them when `finishing`).
    pub(super) fn report_finished_stalls(
        &mut self,
        shared: &PoolShared,
        slots: &mut SlotScanner,
        reports: &mut ReportSender,
        finishing: bool,
    ) {
        let probe = Arc::clone(shared.probe());
        let threshold_ns = probe.clock.ticks_to_nanos(probe.threshold_ticks);
        while let Some(stall) = probe.stalls.pop() {
            // The poll has returned: unmark its session now rather than at the next scan, so
            // no snapshot shows it blocking once its stall is over.
            let (diagnosed, watched) = slots.take_finished(stall.worker, stall.seq, &probe.clock);
            let class = crate::classify::judge(
                diagnosed
                    .as_ref()
                    .map(|diagnosed| diagnosed.diagnosis.class),
                watched,
                stall.duration_ns,
                threshold_ns,
            );
            if class == Some(StallClass::Preempted) {
                shared.stalls_preempted.fetch_add(1, Ordering::Relaxed);
            } else {
                // The session's own stall: an offence of its tenant (automatic isolation).
                shared.note_offence(
                    stall.cell.tenant(),
                    crate::isolation::offences::Offence::Stall,
                );
            }
            // The record goes in at once; its cause and victims are filled in when known. A
            // stall without a slot (seq 0) can have neither.
            stall.cell.push_stall(StallRecord {
                seq: stall.seq,
                duration_ns: stall.duration_ns,
                ended_ns: stall.ended_ns,
                worker: stall.worker,
                class,
                syscall: diagnosed
                    .as_ref()
                    .and_then(|diagnosed| diagnosed.diagnosis.syscall),
                watched,
                cause: None,
                cause_pending: diagnosed.is_some(),
                victim_count: 0,
                victims: Arc::new([]),
                victims_pending: stall.seq != 0,
            });
            if let Some(mut diagnosed) = diagnosed {
                if let Some(class) = class {
                    diagnosed.diagnosis.class = class;
                }
                reports.send(Report::Explain {
                    cell: Arc::clone(&stall.cell),
                    worker: stall.worker,
                    seq: stall.seq,
                    diagnosed,
                });
            }
            self.pending.push_back(Pending {
                stall,
                class,
                watched,
                victims: Vec::new(),
            });
        }
        while let Some(delay) = probe.delays.pop() {
            let Some(pending) = self.pending.iter_mut().find(|pending| {
                pending.stall.worker == delay.worker && pending.stall.seq == delay.stall_seq
            }) else {
                // Its stall was reported already: the delay came in past the grace period.
                continue;
            };
            match pending
                .victims
                .iter_mut()
                .find(|(cell, _)| cell.key() == delay.cell.key())
            {
                Some((_, delay_ns)) => *delay_ns = (*delay_ns).max(delay.delay_ns),
                None => pending.victims.push((delay.cell, delay.delay_ns)),
            }
        }
        let now_ns = probe.clock.now_ns();
        let grace_ns = duration_ns(VICTIM_GRACE);
        while let Some(pending) = self.pending.front() {
            if !finishing && now_ns.saturating_sub(pending.stall.ended_ns) < grace_ns {
                break;
            }
            if let Some(pending) = self.pending.pop_front() {
                reports.send(Report::Finish(pending));
            }
        }
    }
}
