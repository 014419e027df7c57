//! The rows of the live table: which sessions pass the filters and the search, in the sort
//! order. Rows point into the workers' snapshots, so nothing is copied or formatted here.

use std::cmp::Reverse;

use openrtc_proto::SessionSnapshot;

use super::Settings;
use super::workers::WorkerEntry;
use crate::cli::SortKey;
use crate::top::format::urgency;

/// One table row: a session of a worker, by position in that worker's latest snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRef {
    /// The worker's index among the state's workers.
    pub worker: usize,
    /// The session's index in the worker's snapshot.
    pub session: usize,
}

/// Whether a session passes the status, tenant and agent filters and the search.
#[must_use]
pub fn admits(settings: &Settings, session: &SessionSnapshot) -> bool {
    settings
        .status
        .is_none_or(|wanted| session.state == wanted.state())
        && settings
            .tenant
            .as_deref()
            .is_none_or(|wanted| session.tenant == wanted)
        && settings
            .agent
            .as_deref()
            .is_none_or(|wanted| session.agent == wanted)
        && (settings.search.is_empty()
            || [&session.id.to_string(), &session.agent, &session.tenant]
                .iter()
                .any(|field| contains_ignoring_ascii_case(field, &settings.search)))
}

/// Whether `needle` occurs in `haystack`, ignoring ASCII case, without allocating.
#[must_use]
pub fn contains_ignoring_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Fills `rows` with the sessions of the live workers that pass the filters, sorted by the
/// sort column (reversed when inverted), ties by session id and then worker: the order of
/// [`crate::top::format::compare_sessions`].
///
/// Each row's sort key is computed once (a number, or borrowed text, and the parts of the
/// natural id order), so sorting thousands of rows compares plain keys.
pub(super) fn select_rows(workers: &[WorkerEntry], settings: &Settings, rows: &mut Vec<RowRef>) {
    let mut selected: Vec<(RowRef, &SessionSnapshot)> = Vec::with_capacity(rows.capacity());
    for (worker_index, worker) in workers.iter().enumerate() {
        let Some(snapshot) = worker.snapshot().filter(|_| worker.is_live()) else {
            continue;
        };
        selected.extend(
            snapshot
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, session)| admits(settings, session))
                .map(|(session_index, session)| {
                    let row = RowRef {
                        worker: worker_index,
                        session: session_index,
                    };
                    (row, session)
                }),
        );
    }
    let inverted = settings.sort_inverted;
    match settings.sort {
        SortKey::Session if inverted => sort_by(&mut selected, |session| Reverse(session.id)),
        SortKey::Session => sort_by(&mut selected, |_| ()),
        SortKey::Agent if inverted => {
            sort_by(&mut selected, |session| Reverse(session.agent.as_str()))
        }
        SortKey::Agent => sort_by(&mut selected, |session| session.agent.as_str()),
        SortKey::Tenant if inverted => {
            sort_by(&mut selected, |session| Reverse(session.tenant.as_str()));
        }
        SortKey::Tenant => sort_by(&mut selected, |session| session.tenant.as_str()),
        numeric => sort_by(&mut selected, |session| {
            let biggest_first = !ascending_number(numeric, session);
            if inverted {
                !biggest_first
            } else {
                biggest_first
            }
        }),
    }
    rows.clear();
    rows.extend(selected.into_iter().map(|(row, _)| row));
}

/// Sorts by `primary`, then session id (by number), then worker.
fn sort_by<'snapshot, Key: Ord>(
    selected: &mut [(RowRef, &'snapshot SessionSnapshot)],
    primary: impl Fn(&'snapshot SessionSnapshot) -> Key,
) {
    selected.sort_by_cached_key(|(row, session)| (primary(session), session.id, row.worker));
}

/// A numeric column's value as a number that orders as the value does (smallest first).
fn ascending_number(sort: SortKey, session: &SessionSnapshot) -> u64 {
    match sort {
        SortKey::Dur => session.duration_ms,
        SortKey::Cpu => ordered_bits(session.cpu_pct),
        SortKey::Mem => session.mem_bytes,
        SortKey::Peak => session.mem_peak_bytes,
        SortKey::Stalls => session.stall_count,
        SortKey::Late => ordered_bits(crate::top::format::late_key(session)),
        SortKey::Status => {
            let (rank, blocking_ms) = urgency(session);
            (u64::from(rank) << 60) | blocking_ms.min((1 << 60) - 1)
        }
        SortKey::Session | SortKey::Agent | SortKey::Tenant => 0,
    }
}

/// The bits of a float rearranged so that unsigned order is [`f64::total_cmp`]'s order.
fn ordered_bits(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use openrtc_proto::{PoolSnapshot, SessionId, SessionState};

    use super::*;
    use crate::discover::{PollOutcome, SurveyRound, WorkerPoll};
    use crate::top::format::compare_sessions;
    use crate::top::tui::state::State;

    /// A small deterministic pseudo-random generator (64-bit LCG), so the test is repeatable.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    /// A worker snapshot whose sessions have few distinct values, so ties are common.
    fn tied_snapshot(name: &str, random: &mut Lcg) -> PoolSnapshot {
        let mut snapshot = PoolSnapshot::default();
        snapshot.worker.name = name.to_owned();
        for _ in 0..300 {
            let mut session = SessionSnapshot::default();
            session.id = SessionId::from_u64(random.next(400) + 1).expect("not zero");
            session.agent = ["echo", "hot", "llm"][random.next(3) as usize].to_owned();
            session.tenant = ["acme", "globex", ""][random.next(3) as usize].to_owned();
            session.duration_ms = random.next(5) * 1_000;
            session.cpu_pct = [0.0, -0.0, 0.1, 12.5, 97.3, f64::NAN][random.next(6) as usize];
            session.mem_bytes = random.next(4) << 20;
            session.mem_peak_bytes = random.next(4) << 21;
            session.stall_count = random.next(3);
            session.state = [
                SessionState::Active,
                SessionState::Slow,
                SessionState::Draining,
            ][random.next(3) as usize];
            session.blocking_for_ms = (random.next(4) == 0).then(|| random.next(3) * 100);
            snapshot.sessions.push(session);
        }
        snapshot
    }

    #[test]
    fn the_fast_sort_matches_the_reference_order_for_every_column() {
        let mut random = Lcg(7);
        let mut round = SurveyRound::default();
        for name in ["alpha", "beta"] {
            round.polls.push(WorkerPoll {
                socket: PathBuf::from(format!("/run/{name}-1.sock")),
                outcome: PollOutcome::Snapshot(Box::new(tied_snapshot(name, &mut random))),
            });
        }
        for sort in SortKey::ALL {
            for inverted in [false, true] {
                let settings = Settings {
                    sort,
                    sort_inverted: inverted,
                    ..Settings::default()
                };
                let mut state = State::new(settings.clone());
                state.apply_round(round.clone());
                let mut rows = Vec::new();
                select_rows(state.workers(), &settings, &mut rows);
                assert_eq!(rows.len(), 600);
                let mut expected = rows.clone();
                expected.sort_by(|left, right| {
                    let (Some((_, left_session)), Some((_, right_session))) =
                        (state.row(*left), state.row(*right))
                    else {
                        panic!("rows point at sessions");
                    };
                    let by_column =
                        crate::top::format::compare_by_column(sort, left_session, right_session);
                    let by_column = if inverted {
                        by_column.reverse()
                    } else {
                        by_column
                    };
                    by_column
                        .then_with(|| {
                            compare_sessions(SortKey::Session, left_session, right_session)
                        })
                        .then_with(|| left.worker.cmp(&right.worker))
                });
                assert_eq!(rows, expected, "sort {sort:?}, inverted {inverted}");
            }
        }
    }

    #[test]
    fn the_search_ignores_ascii_case() {
        assert!(contains_ignoring_ascii_case("Transcriber", "SCRIB"));
        assert!(contains_ignoring_ascii_case("s-12", ""));
        assert!(!contains_ignoring_ascii_case("s-12", "s-123"));
        assert!(contains_ignoring_ascii_case("ümlaut-acme", "ACME"));
    }
}
