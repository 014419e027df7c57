//! Admission: the ordered chain of checks a launch passes before its session is accepted.
//!
//! [`admit`] runs the checks in this order, and the first refusal wins (it is what the
//! launch returns and what is counted):
//!
//! 1. `draining`: a stopped worker refuses with `stopped`, then a draining one with
//!    `draining`.
//! 2. `routing`: the job's agent must be registered (a job that names none gets the first
//!    agent). It runs before any place is reserved, so an unknown name is refused as such
//!    whatever the load, and reserves nothing.
//! 3. `capacity`: a place among the worker's `max_concurrent_sessions`, reserved atomically
//!    (exact under concurrent launches) as a [`Reservation`].
//!
//! Policies still to come go after capacity, in this order: tenant circuit breaker, tenant
//! cap, agent cap (which needs the routed agent), user filter. Each runs holding the
//! reservations of the checks before it, and takes its own the same way; a refusal drops
//! them, which releases each exactly once. An admitted launch keeps its reservations once its
//! session is registered; from then on the session's end releases its place.

#[cfg_attr(
    not(test),
    expect(dead_code, reason = "wired into the admission chain next")
)]
mod breaker;
mod capacity;
mod draining;
mod routing;

use std::sync::atomic::{AtomicBool, AtomicU32};

#[expect(unused_imports, reason = "wired into the admission chain next")]
pub(crate) use breaker::{
    Breaker, BreakerAdmission, BreakerRefusal, BreakerSettings, BreakerTicket, Transition,
    log_transition,
};
pub(crate) use capacity::Reservation;

use crate::Rejected;

/// What the chain is shown of the pool at one launch, taken under the pool's lifecycle lock.
pub(crate) struct Gate<'a> {
    /// Whether the pool's runtime is gone.
    pub(crate) stopped: bool,
    /// Whether the pool is draining (read by the chain, in its turn).
    pub(crate) draining: &'a AtomicBool,
    /// The live sessions, and the places reserved for sessions being launched.
    pub(crate) active: &'a AtomicU32,
    /// The worker's cap on concurrent sessions.
    pub(crate) max_sessions: u32,
}

/// A launch that passed every check: the agent it is routed to and its place.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    /// The position of the routed agent among the registered agents.
    pub(crate) agent: usize,
    /// The place reserved for the session; released if dropped before it is kept.
    pub(crate) reservation: Reservation<'a>,
}

/// Runs the admission chain for a job asking for `requested` (an agent name, or `None` for
/// the default), against the agents `registered` in registration order.
pub(crate) fn admit<'a, 'n>(
    gate: &Gate<'a>,
    requested: Option<&str>,
    registered: impl IntoIterator<Item = &'n str>,
) -> Result<Admitted<'a>, Rejected> {
    draining::check(gate.stopped, gate.draining)?;
    let agent = routing::route(requested, registered)?;
    let reservation = capacity::reserve(gate.active, gate.max_sessions)?;
    // The policies to come (tenant breaker, tenant cap, agent cap, user filter) go here, in
    // that order, each refusing with `?` while `reservation` is held.
    Ok(Admitted { agent, reservation })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    const AGENTS: [&str; 2] = ["echo", "hot"];

    /// Runs the chain against a pool with `active` of `max` places taken.
    #[track_caller]
    fn check(
        stopped: bool,
        draining: bool,
        requested: Option<&str>,
        active: u32,
        max: u32,
    ) -> (Result<usize, Rejected>, u32) {
        let draining = AtomicBool::new(draining);
        let active = AtomicU32::new(active);
        let gate = Gate {
            stopped,
            draining: &draining,
            active: &active,
            max_sessions: max,
        };
        let result = admit(&gate, requested, AGENTS).map(|admitted| {
            admitted.reservation.keep();
            admitted.agent
        });
        (result, active.load(Ordering::Acquire))
    }

    fn unknown() -> Rejected {
        Rejected::UnknownAgent {
            name: "nope".into(),
        }
    }

    #[test]
    fn stopped_wins_over_every_other_refusal() {
        assert_eq!(
            check(true, true, Some("nope"), 2, 2),
            (Err(Rejected::Stopped), 2)
        );
        assert_eq!(check(true, false, None, 0, 2), (Err(Rejected::Stopped), 0));
    }

    #[test]
    fn draining_wins_over_routing_and_capacity() {
        assert_eq!(
            check(false, true, Some("nope"), 2, 2),
            (Err(Rejected::Draining), 2)
        );
        assert_eq!(check(false, true, None, 0, 2), (Err(Rejected::Draining), 0));
    }

    #[test]
    fn an_unknown_agent_is_refused_before_capacity_and_reserves_nothing() {
        assert_eq!(check(false, false, Some("nope"), 2, 2), (Err(unknown()), 2));
        assert_eq!(check(false, false, Some("nope"), 0, 2), (Err(unknown()), 0));
    }

    #[test]
    fn a_full_worker_refuses_with_its_cap_and_reserves_nothing() {
        assert_eq!(
            check(false, false, Some("hot"), 2, 2),
            (Err(Rejected::WorkerFull { max: 2 }), 2)
        );
    }

    #[test]
    fn an_admitted_launch_is_routed_and_holds_one_place() {
        assert_eq!(check(false, false, None, 0, 2), (Ok(0), 1));
        assert_eq!(check(false, false, Some("hot"), 1, 2), (Ok(1), 2));
    }

    #[test]
    fn a_reservation_dropped_before_it_is_kept_is_released_once() {
        let draining = AtomicBool::new(false);
        let active = AtomicU32::new(0);
        let gate = Gate {
            stopped: false,
            draining: &draining,
            active: &active,
            max_sessions: 2,
        };
        let first = admit(&gate, None, AGENTS).expect("room");
        let second = admit(&gate, None, AGENTS).expect("room");
        assert_eq!(active.load(Ordering::Acquire), 2);
        assert_eq!(
            admit(&gate, None, AGENTS).map(|admitted| admitted.agent),
            Err(Rejected::WorkerFull { max: 2 })
        );
        // As when a later policy refuses: the admission is dropped, its place freed.
        drop(first);
        assert_eq!(active.load(Ordering::Acquire), 1);
        second.reservation.keep();
        assert_eq!(active.load(Ordering::Acquire), 1);
        assert!(admit(&gate, None, AGENTS).is_ok());
        assert_eq!(active.load(Ordering::Acquire), 1);
    }
}
