//! The per-tenant circuit breaker: a pure state machine (closed, open, half-open) over the
//! outcomes of a tenant's sessions, told the time by its caller.
//!
//! - **Closed**: every launch is admitted. Each success and failure is counted, with its
//!   time, in a sliding window of [`BreakerSettings::window`]. After a failure is counted,
//!   the breaker opens when the window holds at least [`BreakerSettings::min_samples`]
//!   outcomes and the share of failures is strictly over [`BreakerSettings::failure_ratio`]
//!   (3 failures of 5 open it at 0.5; 3 of 6 do not).
//! - **Open**: launches are refused with the time left of the cooldown. The first launch
//!   after the cooldown turns the breaker half-open and is admitted as a probe.
//! - **Half-open**: probes are admitted while the probes in flight plus those that already
//!   succeeded are fewer than [`BreakerSettings::half_open_probes`]; other launches are
//!   refused with a zero retry-after (a place comes back when a probe ends, not at a known
//!   time). Once that many probes have succeeded the breaker closes (its window cleared, its
//!   cooldown back to the base). One failed probe reopens it with the cooldown doubled, up to
//!   [`BreakerSettings::max_cooldown`].
//!
//! An ignored outcome (a drain, shutdown or operator stop) is never counted and resets
//! nothing; an ignored probe only gives its place back. The outcome of a session admitted
//! before the breaker opened, or as a probe of an earlier half-open round, decides nothing
//! while the breaker is open or half-open. Once closed again, every success and failure is
//! counted, whenever its session was admitted.
//!
//! The window is a fixed ring of [`WINDOW_BUCKETS`] counters, each covering `window / 60`:
//! its memory is the same whatever the rate of outcomes, and counting it costs the same
//! (a capped list of outcomes would either grow with the rate or, once full, forget
//! outcomes that are still inside the window). The price is granularity: an outcome stops
//! counting between `window - window / 60` and `window` after it was recorded (exactly at
//! `window` for one recorded at the start of its bucket), never later.

use std::time::Duration;

use openrtc_proto::{BreakerSnapshot, BreakerState};
use tokio::time::Instant;

use crate::Rejected;
use crate::session::Verdict;
use crate::units::duration_ms;

/// How many counters the sliding window is cut into.
pub(crate) const WINDOW_BUCKETS: usize = 60;

/// How a tenant's breaker decides (the tenant config's `breaker` table); replaceable live
/// with [`Breaker::set_settings`].
pub(crate) use crate::tenant_config::BreakerConfig as BreakerSettings;

/// The probes needed and allowed, zero read as one.
fn probes(settings: &BreakerSettings) -> u32 {
    settings.half_open_probes.max(1)
}

/// The most the cooldown may grow to: `max_cooldown`, or the base if that is longer.
fn cooldown_cap(settings: &BreakerSettings) -> Duration {
    settings.max_cooldown.max(settings.cooldown)
}

/// What the breaker gave an admitted launch; the pool keeps it with the session and hands it
/// back with the session's verdict ([`Breaker::record`]) or, if a later check refuses the
/// launch, to [`Breaker::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BreakerTicket {
    /// The half-open round the launch is a probe of, if it is one.
    probe_round: Option<u64>,
}

impl BreakerTicket {
    /// Whether the launch was admitted as a half-open probe.
    #[cfg(test)]
    pub(crate) fn is_probe(self) -> bool {
        self.probe_round.is_some()
    }
}

/// A launch the breaker refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BreakerRefusal {
    /// How long until the breaker lets probes through: the time left of the cooldown while
    /// open, zero while half-open with every probe place taken (retry when a probe ends).
    pub(crate) retry_after: Duration,
}

impl BreakerRefusal {
    /// The refusal as the launch returns it, for `tenant`.
    pub(crate) fn into_rejected(self, tenant: &str) -> Rejected {
        Rejected::BreakerOpen {
            tenant: tenant.to_owned(),
            retry_after: self.retry_after,
        }
    }
}

/// A launch the breaker admitted, and the change of state admitting it made, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BreakerAdmission {
    /// What to hand back with the session's verdict.
    pub(crate) ticket: BreakerTicket,
    /// [`Transition::HalfOpen`] when this launch is the first probe after the cooldown.
    pub(crate) transition: Option<Transition>,
}

/// A change of the breaker's state, for the caller to log ([`log_transition`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Transition {
    /// It opened from closed: the window held `failures` of `samples` outcomes.
    Opened {
        /// Failures in the window.
        failures: u32,
        /// Outcomes in the window.
        samples: u32,
        /// The window's length.
        window: Duration,
        /// How long it refuses.
        cooldown: Duration,
    },
    /// The cooldown ended: it admits up to `probes` probe sessions.
    HalfOpen {
        /// The probes that must succeed.
        probes: u32,
    },
    /// Enough probes succeeded: it closed.
    Recovered,
    /// A probe failed: it opened again, for a longer cooldown.
    Reopened {
        /// How long it refuses now.
        cooldown: Duration,
    },
}

/// The line a transition is logged with, for `tenant`.
pub(crate) fn transition_message(tenant: &str, transition: &Transition) -> String {
    match *transition {
        Transition::Opened {
            failures,
            samples,
            window,
            cooldown,
        } => format!(
            "[circuit-breaker] tenant '{tenant}' opened after {failures}/{samples} failures in \
             {}s; refusing new sessions for {}s",
            seconds(window),
            seconds(cooldown),
        ),
        Transition::HalfOpen { probes } => {
            format!("[circuit-breaker] tenant '{tenant}' half-open: probing with {probes} sessions")
        }
        Transition::Recovered => format!("[circuit-breaker] tenant '{tenant}' recovered"),
        Transition::Reopened { cooldown } => format!(
            "[circuit-breaker] tenant '{tenant}' reopened after a failed probe; refusing new \
             sessions for {}s",
            seconds(cooldown),
        ),
    }
}

/// A duration in seconds: a whole number when whole, else the shortest decimal.
fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        duration.as_secs_f64().to_string()
    }
}

/// Logs `transition` of `tenant`'s breaker: a warning when it opens or reopens, info
/// otherwise, with the figures as structured fields beside [`transition_message`]'s line.
pub(crate) fn log_transition(tenant: &str, transition: &Transition) {
    let message = transition_message(tenant, transition);
    match *transition {
        Transition::Opened {
            failures,
            samples,
            window,
            cooldown,
        } => tracing::warn!(
            event = "circuit_breaker",
            tenant,
            state = BreakerState::Open.as_str(),
            failures,
            samples,
            window_ms = duration_ms(window),
            cooldown_ms = duration_ms(cooldown),
            "{message}"
        ),
        Transition::HalfOpen { probes } => tracing::info!(
            event = "circuit_breaker",
            tenant,
            state = BreakerState::HalfOpen.as_str(),
            probes,
            "{message}"
        ),
        Transition::Recovered => tracing::info!(
            event = "circuit_breaker",
            tenant,
            state = BreakerState::Closed.as_str(),
            "{message}"
        ),
        Transition::Reopened { cooldown } => tracing::warn!(
            event = "circuit_breaker",
            tenant,
            state = BreakerState::Open.as_str(),
            cooldown_ms = duration_ms(cooldown),
            "{message}"
        ),
    }
}

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    /// Refusing since `since`, for the breaker's current cooldown.
    Open {
        since: Instant,
    },
    /// Probing: `in_flight` probes of `round` running, `succeeded` already succeeded.
    HalfOpen {
        round: u64,
        in_flight: u32,
        succeeded: u32,
    },
}

/// One counter of the window: the outcomes recorded in the bucket numbered `index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    index: u64,
    successes: u32,
    failures: u32,
}

/// The sliding window: [`WINDOW_BUCKETS`] buckets in a ring, bucket `n` covering
/// `origin + n * width` up to the next. A slot holding an older number than the one due is
/// stale and counts nothing, so nothing is ever swept.
#[derive(Clone, Debug)]
struct Window {
    /// The start of bucket 0: the first outcome recorded since the window was cleared.
    origin: Option<Instant>,
    /// `window / 60` in nanoseconds, at least 1.
    width_ns: u128,
    /// The newest bucket number recorded: time never runs backwards in the window, so an
    /// outcome stamped a little before the newest one is counted with it.
    newest: u64,
    buckets: [Bucket; WINDOW_BUCKETS],
}

impl Window {
    fn new(window: Duration) -> Self {
        Self::new_with_width(Self::width_ns(window))
    }

    fn width_ns(window: Duration) -> u128 {
        (window.as_nanos() / WINDOW_BUCKETS as u128).max(1)
    }

    /// The number of the bucket `now` falls in (0 before anything is recorded).
    fn index_at(&self, now: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(elapsed / self.width_ns)
            .unwrap_or(u64::MAX)
            .max(self.newest)
    }

    fn record(&mut self, now: Instant, failed: bool) {
        self.origin.get_or_insert(now);
        let index = self.index_at(now);
        self.add(index, u32::from(!failed), u32::from(failed));
    }

    /// Adds counts to bucket `index`, replacing a stale slot; an older bucket than the one
    /// in its slot is dropped (it is out of the window).
    fn add(&mut self, index: u64, successes: u32, failures: u32) {
        let slot = &mut self.buckets[(index % WINDOW_BUCKETS as u64) as usize];
        if slot.index < index || (slot.successes == 0 && slot.failures == 0) {
            *slot = Bucket {
                index,
                successes: 0,
                failures: 0,
            };
        }
        if slot.index == index {
            slot.successes = slot.successes.saturating_add(successes);
            slot.failures = slot.failures.saturating_add(failures);
        }
        self.newest = self.newest.max(index);
    }

    /// The outcomes and the failures among them counted at `now`.
    fn counts(&self, now: Instant) -> (u32, u32) {
        let current = self.index_at(now);
        let oldest = current.saturating_sub(WINDOW_BUCKETS as u64 - 1);
        let (mut samples, mut failures) = (0_u32, 0_u32);
        for bucket in &self.buckets {
            if (oldest..=current).contains(&bucket.index) {
                samples = samples
                    .saturating_add(bucket.successes)
                    .saturating_add(bucket.failures);
                failures = failures.saturating_add(bucket.failures);
            }
        }
        (samples, failures)
    }

    fn clear(&mut self) {
        *self = Self::new_with_width(self.width_ns);
    }

    fn new_with_width(width_ns: u128) -> Self {
        Self {
            origin: None,
            width_ns,
            newest: 0,
            buckets: [Bucket::default(); WINDOW_BUCKETS],
        }
    }

    /// Recuts the window for a new length, keeping each bucket's counts at its start time
    /// (the counts older than the new length drop out as they would have).
    fn resize(&mut self, window: Duration) {
        let width_ns = Self::width_ns(window);
        if width_ns == self.width_ns {
            return;
        }
        let old = std::mem::replace(self, Self::new_with_width(width_ns));
        let Some(origin) = old.origin else {
            return;
        };
        self.origin = Some(origin);
        let mut buckets = old.buckets;
        buckets.sort_unstable_by_key(|bucket| bucket.index);
        for bucket in buckets {
            if bucket.successes == 0 && bucket.failures == 0 {
                continue;
            }
            let start_ns = u128::from(bucket.index) * old.width_ns;
            let index = u64::try_from(start_ns / width_ns).unwrap_or(u64::MAX);
            self.add(index, bucket.successes, bucket.failures);
        }
    }
}

/// One tenant's circuit breaker. Pure: it is told the time (`tokio::time::Instant`, so
/// paused-time tests drive it) and returns its transitions for the caller to log.
#[derive(Clone, Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: State,
    window: Window,
    /// The cooldown it is open for, or last opened for; the base while closed.
    cooldown: Duration,
    /// The number of the latest half-open round (a probe's ticket names its round).
    rounds: u64,
    /// Times it opened (from closed or after a failed probe).
    opened_count: u64,
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self {
            window: Window::new(settings.window),
            cooldown: settings.cooldown,
            settings,
            state: State::Closed,
            rounds: 0,
            opened_count: 0,
        }
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Replaces the settings (a config reload), keeping the state, the window's counts and
    /// the cooldown in force. A lower `half_open_probes` that the probes which already
    /// succeeded meet closes it now ([`Transition::Recovered`]).
    pub(crate) fn set_settings(&mut self, settings: BreakerSettings) -> Option<Transition> {
        self.window.resize(settings.window);
        self.settings = settings;
        match self.state {
            State::Closed => {
                self.cooldown = self.settings.cooldown;
                None
            }
            State::Open { .. } => None,
            State::HalfOpen { succeeded, .. } => {
                (succeeded >= probes(&self.settings)).then(|| self.recover())
            }
        }
    }

    /// Admits or refuses a launch at `now`. While open, the first launch after the cooldown
    /// turns the breaker half-open and is admitted as its first probe.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<BreakerAdmission, BreakerRefusal> {
        let probes = probes(&self.settings);
        match &mut self.state {
            State::Closed => Ok(BreakerAdmission {
                ticket: BreakerTicket { probe_round: None },
                transition: None,
            }),
            State::Open { since } => {
                let left = self
                    .cooldown
                    .saturating_sub(now.saturating_duration_since(*since));
                if !left.is_zero() {
                    return Err(BreakerRefusal { retry_after: left });
                }
                self.rounds += 1;
                self.state = State::HalfOpen {
                    round: self.rounds,
                    in_flight: 1,
                    succeeded: 0,
                };
                Ok(BreakerAdmission {
                    ticket: BreakerTicket {
                        probe_round: Some(self.rounds),
                    },
                    transition: Some(Transition::HalfOpen { probes }),
                })
            }
            State::HalfOpen {
                round,
                in_flight,
                succeeded,
            } => {
                if in_flight.saturating_add(*succeeded) >= probes {
                    return Err(BreakerRefusal {
                        retry_after: Duration::ZERO,
                    });
                }
                *in_flight += 1;
                Ok(BreakerAdmission {
                    ticket: BreakerTicket {
                        probe_round: Some(*round),
                    },
                    transition: None,
                })
            }
        }
    }

    /// Gives back the probe place of a launch the breaker admitted and a later check refused.
    /// Does nothing for a launch that is not a probe of the current round.
    pub(crate) fn release(&mut self, ticket: BreakerTicket) {
        if let Some(in_flight) = self.current_probe(ticket) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Records the verdict of a session that ended at `now`, admitted with `ticket`.
    pub(crate) fn record(
        &mut self,
        ticket: BreakerTicket,
        verdict: Verdict,
        now: Instant,
    ) -> Option<Transition> {
        match verdict {
            Verdict::Ignored => {
                self.release(ticket);
                None
            }
            Verdict::Success | Verdict::Failure => {
                let failed = verdict == Verdict::Failure;
                match self.state {
                    State::Closed => self.count(now, failed),
                    State::Open { .. } => None,
                    State::HalfOpen { .. } => self.probe_ended(ticket, failed, now),
                }
            }
        }
    }

    /// Counts an outcome while closed, and opens if it was the failure too many.
    fn count(&mut self, now: Instant, failed: bool) -> Option<Transition> {
        self.window.record(now, failed);
        if !failed {
            return None;
        }
        let (samples, failures) = self.window.counts(now);
        let enough_samples = samples >= self.settings.min_samples.max(1);
        let too_many_failures =
            f64::from(failures) / f64::from(samples) > self.settings.failure_ratio;
        if !(enough_samples && too_many_failures) {
            return None;
        }
        self.cooldown = self.settings.cooldown;
        self.state = State::Open { since: now };
        self.opened_count += 1;
        Some(Transition::Opened {
            failures,
            samples,
            window: self.settings.window,
            cooldown: self.cooldown,
        })
    }

    /// A session ended while half-open: only a probe of this round decides.
    fn probe_ended(
        &mut self,
        ticket: BreakerTicket,
        failed: bool,
        now: Instant,
    ) -> Option<Transition> {
        let probes = probes(&self.settings);
        let cap = cooldown_cap(&self.settings);
        let State::HalfOpen {
            round,
            in_flight,
            succeeded,
        } = &mut self.state
        else {
            return None;
        };
        if ticket.probe_round != Some(*round) {
            return None;
        }
        *in_flight = in_flight.saturating_sub(1);
        if failed {
            self.cooldown = self.cooldown.saturating_mul(2).min(cap);
            self.state = State::Open { since: now };
            self.opened_count += 1;
            return Some(Transition::Reopened {
                cooldown: self.cooldown,
            });
        }
        *succeeded += 1;
        (*succeeded >= probes).then(|| self.recover())
    }

    /// Closes: the window cleared, the cooldown back to the base.
    fn recover(&mut self) -> Transition {
        self.state = State::Closed;
        self.window.clear();
        self.cooldown = self.settings.cooldown;
        Transition::Recovered
    }

    /// The in-flight count of the current round, if `ticket` is one of its probes.
    fn current_probe(&mut self, ticket: BreakerTicket) -> Option<&mut u32> {
        match &mut self.state {
            State::HalfOpen {
                round, in_flight, ..
            } if ticket.probe_round == Some(*round) => Some(in_flight),
            _ => None,
        }
    }

    /// The breaker at `now`, for the tenant's snapshot.
    pub(crate) fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let (samples, failures) = self.window.counts(now);
        let mut snapshot = BreakerSnapshot::default();
        snapshot.window_samples_count = samples;
        snapshot.window_failures_count = failures;
        snapshot.window_ms = duration_ms(self.settings.window);
        snapshot.cooldown_ms = duration_ms(self.cooldown);
        snapshot.opened_count = self.opened_count;
        match self.state {
            State::Closed => snapshot.state = BreakerState::Closed,
            State::Open { since } => {
                snapshot.state = BreakerState::Open;
                let left = self
                    .cooldown
                    .saturating_sub(now.saturating_duration_since(since));
                snapshot.retry_after_ms = Some(duration_ms(left));
            }
            State::HalfOpen {
                in_flight,
                succeeded,
                ..
            } => {
                snapshot.state = BreakerState::HalfOpen;
                snapshot.probes_in_flight_count = in_flight;
                if in_flight.saturating_add(succeeded) >= probes(&self.settings) {
                    snapshot.retry_after_ms = Some(0);
                }
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A fixed base instant, and the instant `seconds` after it.
    struct Clock {
        base: Instant,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                base: Instant::now(),
            }
        }

        fn at(&self, seconds: f64) -> Instant {
            self.base + Duration::from_secs_f64(seconds)
        }
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// Admits a launch that the test expects to be admitted.
    #[track_caller]
    fn admit(breaker: &mut Breaker, now: Instant) -> BreakerAdmission {
        breaker.admit(now).expect("the breaker admits this launch")
    }

    /// Admits a launch and records its verdict at the same instant; returns the transition.
    #[track_caller]
    fn run(breaker: &mut Breaker, verdict: Verdict, now: Instant) -> Option<Transition> {
        let admission = admit(breaker, now);
        assert_eq!(admission.transition, None);
        breaker.record(admission.ticket, verdict, now)
    }

    /// Runs `verdicts` in order at `now` and returns every transition they made.
    #[track_caller]
    fn run_all(breaker: &mut Breaker, verdicts: &[Verdict], now: Instant) -> Vec<Transition> {
        verdicts
            .iter()
            .filter_map(|verdict| run(breaker, *verdict, now))
            .collect()
    }

    use Verdict::{Failure as F, Ignored as I, Success as S};

    fn opened(failures: u32, samples: u32) -> Transition {
        Transition::Opened {
            failures,
            samples,
            window: BreakerSettings::DEFAULT_WINDOW,
            cooldown: BreakerSettings::DEFAULT_COOLDOWN,
        }
    }

    /// A default breaker opened at `now` by 3 failures of 5.
    fn opened_at(now: Instant) -> Breaker {
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut breaker, &[S, S, F, F, F], now), [opened(3, 5)]);
        breaker
    }

    /// A default breaker opened at `now`, turned half-open by a probe admitted at `probe_at`.
    fn half_open(now: Instant, probe_at: Instant) -> (Breaker, BreakerTicket) {
        let mut breaker = opened_at(now);
        let admission = admit(&mut breaker, probe_at);
        assert_eq!(
            admission.transition,
            Some(Transition::HalfOpen { probes: 2 })
        );
        assert!(admission.ticket.is_probe());
        (breaker, admission.ticket)
    }

    fn refusal(retry_after: Duration) -> Result<BreakerAdmission, BreakerRefusal> {
        Err(BreakerRefusal { retry_after })
    }

    #[test]
    fn defaults_are_the_documented_figures() {
        let settings = BreakerSettings::default();
        assert_eq!(settings.window, secs(60));
        assert_eq!(settings.min_samples, 5);
        assert_eq!(settings.failure_ratio, 0.5);
        assert_eq!(settings.cooldown, secs(30));
        assert_eq!(settings.half_open_probes, 2);
        assert_eq!(settings.max_cooldown, secs(300));
        assert_eq!(Breaker::new(settings).settings(), &settings);
    }

    #[test]
    fn three_failures_of_five_open_it() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut breaker, &[S, S, F, F], clock.at(0.0)), []);
        assert_eq!(run(&mut breaker, F, clock.at(1.0)), Some(opened(3, 5)));
        assert_eq!(breaker.snapshot(clock.at(1.0)).state, BreakerState::Open);
    }

    #[test]
    fn three_failures_of_six_do_not_open_it_and_the_next_failure_does() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(
            run_all(&mut breaker, &[S, S, S, F, F, F], clock.at(0.0)),
            []
        );
        assert_eq!(breaker.snapshot(clock.at(0.0)).state, BreakerState::Closed);
        assert_eq!(run(&mut breaker, F, clock.at(0.0)), Some(opened(4, 7)));
    }

    #[test]
    fn a_success_never_opens_it_even_over_the_ratio() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        // 4 failures of 4 are under min_samples; the fifth outcome is a success: 4/5 is over
        // the ratio, but only a failure is checked.
        assert_eq!(run_all(&mut breaker, &[F, F, F, F, S], clock.at(0.0)), []);
        assert_eq!(run(&mut breaker, F, clock.at(0.0)), Some(opened(5, 6)));
    }

    #[test]
    fn fewer_outcomes_than_min_samples_never_open_it() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut breaker, &[S, S, F, F], clock.at(0.0)), []);
        let mut all_failures = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut all_failures, &[F, F, F, F], clock.at(0.0)), []);
        assert_eq!(run(&mut all_failures, F, clock.at(0.0)), Some(opened(5, 5)));

        let mut eager = Breaker::new(BreakerSettings {
            min_samples: 2,
            ..BreakerSettings::default()
        });
        assert_eq!(run(&mut eager, F, clock.at(0.0)), None);
        assert!(matches!(
            run(&mut eager, F, clock.at(0.0)),
            Some(Transition::Opened {
                failures: 2,
                samples: 2,
                ..
            })
        ));
    }

    #[test]
    fn outcomes_older_than_the_window_drop_out() {
        let clock = Clock::new();
        let sequence = |last: f64| {
            let mut breaker = Breaker::new(BreakerSettings::default());
            assert_eq!(run_all(&mut breaker, &[F, F], clock.at(0.0)), []);
            assert_eq!(run_all(&mut breaker, &[S, S], clock.at(30.0)), []);
            let transition = run(&mut breaker, F, clock.at(last));
            (transition, breaker.snapshot(clock.at(last)))
        };
        // Just inside the window, the first two failures still count: 3 of 5.
        let (transition, _) = sequence(59.999);
        assert_eq!(transition, Some(opened(3, 5)));
        // At the window's length they are gone: 1 failure of 3.
        let (transition, snapshot) = sequence(60.0);
        assert_eq!(transition, None);
        assert_eq!(
            (
                snapshot.window_samples_count,
                snapshot.window_failures_count
            ),
            (3, 1)
        );
    }

    #[test]
    fn the_window_empties_with_time_alone() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut breaker, &[S, F, F], clock.at(5.0)), []);
        let counts = |now: f64| {
            let snapshot = breaker.snapshot(clock.at(now));
            (
                snapshot.window_samples_count,
                snapshot.window_failures_count,
            )
        };
        assert_eq!(counts(5.0), (3, 2));
        assert_eq!(counts(64.9), (3, 2));
        assert_eq!(counts(65.0), (0, 0));
        assert_eq!(counts(3600.0), (0, 0));
    }

    #[test]
    fn a_window_of_any_rate_keeps_exact_counts_in_fixed_memory() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings {
            min_samples: u32::MAX,
            ..BreakerSettings::default()
        });
        // Ten thousand outcomes a second for two minutes: the last minute is counted.
        for second in 0..120_u32 {
            for n in 0..10_000_u32 {
                let verdict = if n % 4 == 0 { F } else { S };
                breaker.record(
                    BreakerTicket { probe_round: None },
                    verdict,
                    clock.at(f64::from(second)),
                );
            }
        }
        let snapshot = breaker.snapshot(clock.at(119.5));
        assert_eq!(snapshot.window_samples_count, 600_000);
        assert_eq!(snapshot.window_failures_count, 150_000);
        assert_eq!(snapshot.state, BreakerState::Closed);
    }

    #[test]
    fn open_refuses_with_the_time_left_of_the_cooldown() {
        let clock = Clock::new();
        let mut breaker = opened_at(clock.at(10.0));
        assert_eq!(breaker.admit(clock.at(10.0)), refusal(secs(30)));
        assert_eq!(
            breaker.admit(clock.at(25.5)),
            refusal(Duration::from_millis(14_500))
        );
        assert_eq!(
            breaker
                .admit(clock.at(25.5))
                .map_err(|refused| refused.into_rejected("acme")),
            Err(Rejected::BreakerOpen {
                tenant: "acme".into(),
                retry_after: Duration::from_millis(14_500),
            })
        );
        match breaker.admit(clock.at(39.999)) {
            Err(refused) => assert!(
                refused.retry_after > Duration::ZERO
                    && refused.retry_after <= Duration::from_millis(2),
                "{refused:?}"
            ),
            Ok(admission) => panic!("admitted before the cooldown ended: {admission:?}"),
        }
        let admission = admit(&mut breaker, clock.at(40.0));
        assert!(admission.ticket.is_probe());
        assert_eq!(
            admission.transition,
            Some(Transition::HalfOpen { probes: 2 })
        );
    }

    #[test]
    fn half_open_admits_exactly_its_probes_and_closes_when_they_all_succeed() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(31.0));
        let second = admit(&mut breaker, clock.at(31.0));
        assert!(second.ticket.is_probe());
        assert_eq!(second.transition, None);
        assert_eq!(breaker.admit(clock.at(31.0)), refusal(Duration::ZERO));
        assert_eq!(breaker.record(first, S, clock.at(32.0)), None);
        // One succeeded, one in flight: both places are spoken for.
        assert_eq!(breaker.admit(clock.at(32.0)), refusal(Duration::ZERO));
        assert_eq!(
            breaker.record(second.ticket, S, clock.at(33.0)),
            Some(Transition::Recovered)
        );
        let snapshot = breaker.snapshot(clock.at(33.0));
        assert_eq!(snapshot.state, BreakerState::Closed);
        assert_eq!(snapshot.window_samples_count, 0);
        let admission = admit(&mut breaker, clock.at(33.0));
        assert!(!admission.ticket.is_probe());
    }

    #[test]
    fn one_failed_probe_reopens_it_with_the_cooldown_doubled() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(30.0));
        let second = admit(&mut breaker, clock.at(30.0)).ticket;
        assert_eq!(breaker.record(first, S, clock.at(31.0)), None);
        assert_eq!(
            breaker.record(second, F, clock.at(32.0)),
            Some(Transition::Reopened { cooldown: secs(60) })
        );
        assert_eq!(breaker.admit(clock.at(32.0)), refusal(secs(60)));
        assert_eq!(breaker.admit(clock.at(91.0)), refusal(secs(1)));
        let admission = admit(&mut breaker, clock.at(92.0));
        assert_eq!(
            admission.transition,
            Some(Transition::HalfOpen { probes: 2 })
        );
    }

    #[test]
    fn repeated_failed_probes_double_the_cooldown_up_to_its_cap() {
        let clock = Clock::new();
        let (mut breaker, mut probe) = half_open(clock.at(0.0), clock.at(30.0));
        let mut now = 30.0;
        let mut cooldowns = Vec::new();
        for _ in 0..6 {
            match breaker.record(probe, F, clock.at(now)) {
                Some(Transition::Reopened { cooldown }) => {
                    cooldowns.push(cooldown.as_secs());
                    now += cooldown.as_secs_f64();
                }
                other => panic!("a failed probe reopens the breaker, not {other:?}"),
            }
            probe = admit(&mut breaker, clock.at(now)).ticket;
        }
        assert_eq!(cooldowns, [60, 120, 240, 300, 300, 300]);
        assert_eq!(breaker.snapshot(clock.at(now)).opened_count, 7);
    }

    #[test]
    fn recovery_resets_the_cooldown_to_the_base() {
        let clock = Clock::new();
        let (mut breaker, probe) = half_open(clock.at(0.0), clock.at(30.0));
        assert_eq!(
            breaker.record(probe, F, clock.at(30.0)),
            Some(Transition::Reopened { cooldown: secs(60) })
        );
        let first = admit(&mut breaker, clock.at(90.0)).ticket;
        let second = admit(&mut breaker, clock.at(90.0)).ticket;
        assert_eq!(breaker.record(first, S, clock.at(91.0)), None);
        assert_eq!(
            breaker.record(second, S, clock.at(91.0)),
            Some(Transition::Recovered)
        );
        assert_eq!(breaker.snapshot(clock.at(91.0)).cooldown_ms, 30_000);
        assert_eq!(
            run_all(&mut breaker, &[S, S, F, F, F], clock.at(100.0)),
            [opened(3, 5)]
        );
        assert_eq!(breaker.admit(clock.at(100.0)), refusal(secs(30)));
    }

    #[test]
    fn ignored_outcomes_are_never_counted_and_reset_nothing() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(
            run_all(&mut breaker, &[S, S, F, F, I, I, I, I, I], clock.at(0.0)),
            []
        );
        let snapshot = breaker.snapshot(clock.at(0.0));
        assert_eq!(
            (
                snapshot.window_samples_count,
                snapshot.window_failures_count
            ),
            (4, 2)
        );
        assert_eq!(run(&mut breaker, F, clock.at(0.0)), Some(opened(3, 5)));
        // While open, an ignored end changes nothing either.
        let before = breaker.snapshot(clock.at(1.0));
        breaker.record(BreakerTicket { probe_round: None }, I, clock.at(1.0));
        assert_eq!(breaker.snapshot(clock.at(1.0)), before);
    }

    #[test]
    fn an_ignored_probe_frees_its_place_without_a_verdict() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(30.0));
        let second = admit(&mut breaker, clock.at(30.0)).ticket;
        assert_eq!(breaker.admit(clock.at(30.0)), refusal(Duration::ZERO));
        assert_eq!(breaker.record(first, I, clock.at(31.0)), None);
        let snapshot = breaker.snapshot(clock.at(31.0));
        assert_eq!(snapshot.state, BreakerState::HalfOpen);
        assert_eq!(snapshot.probes_in_flight_count, 1);
        assert_eq!(snapshot.retry_after_ms, None);
        let third = admit(&mut breaker, clock.at(31.0)).ticket;
        assert!(third.is_probe());
        // The ignored probe did not count as a success: two more are needed.
        assert_eq!(breaker.record(second, S, clock.at(32.0)), None);
        assert_eq!(
            breaker.record(third, S, clock.at(32.0)),
            Some(Transition::Recovered)
        );
    }

    #[test]
    fn release_gives_a_probe_place_back() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(30.0));
        let second = admit(&mut breaker, clock.at(30.0)).ticket;
        assert_eq!(breaker.admit(clock.at(30.0)), refusal(Duration::ZERO));
        breaker.release(second);
        assert_eq!(breaker.snapshot(clock.at(30.0)).probes_in_flight_count, 1);
        let third = admit(&mut breaker, clock.at(30.0)).ticket;
        assert_eq!(breaker.admit(clock.at(30.0)), refusal(Duration::ZERO));
        // Releasing a launch that is no probe gives nothing back.
        breaker.release(BreakerTicket { probe_round: None });
        assert_eq!(breaker.admit(clock.at(30.0)), refusal(Duration::ZERO));
        assert_eq!(breaker.record(first, S, clock.at(31.0)), None);
        assert_eq!(
            breaker.record(third, S, clock.at(31.0)),
            Some(Transition::Recovered)
        );
    }

    #[test]
    fn outcomes_of_sessions_admitted_before_it_opened_decide_nothing() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        let old: Vec<BreakerTicket> = (0..4)
            .map(|_| admit(&mut breaker, clock.at(0.0)).ticket)
            .collect();
        assert_eq!(
            run_all(&mut breaker, &[S, S, F, F, F], clock.at(1.0)),
            [opened(3, 5)]
        );
        let before = breaker.snapshot(clock.at(2.0));
        assert_eq!(breaker.record(old[0], F, clock.at(2.0)), None);
        assert_eq!(breaker.record(old[1], S, clock.at(2.0)), None);
        assert_eq!(breaker.snapshot(clock.at(2.0)), before);
        let probe = admit(&mut breaker, clock.at(31.0)).ticket;
        assert_eq!(breaker.record(old[2], S, clock.at(32.0)), None);
        assert_eq!(breaker.record(old[3], F, clock.at(32.0)), None);
        let snapshot = breaker.snapshot(clock.at(32.0));
        assert_eq!(snapshot.state, BreakerState::HalfOpen);
        assert_eq!(snapshot.probes_in_flight_count, 1);
        assert_eq!(
            breaker.record(probe, F, clock.at(33.0)),
            Some(Transition::Reopened { cooldown: secs(60) })
        );
    }

    #[test]
    fn a_probe_of_an_earlier_round_decides_nothing() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(30.0));
        let late = admit(&mut breaker, clock.at(30.0)).ticket;
        assert!(matches!(
            breaker.record(first, F, clock.at(31.0)),
            Some(Transition::Reopened { .. })
        ));
        let current = admit(&mut breaker, clock.at(91.0)).ticket;
        assert_eq!(breaker.record(late, S, clock.at(92.0)), None);
        assert_eq!(breaker.record(late, F, clock.at(92.0)), None);
        breaker.release(late);
        let snapshot = breaker.snapshot(clock.at(92.0));
        assert_eq!(snapshot.state, BreakerState::HalfOpen);
        assert_eq!(snapshot.probes_in_flight_count, 1);
        assert_eq!(breaker.record(current, S, clock.at(93.0)), None);
    }

    #[test]
    fn new_settings_keep_the_state_and_the_window() {
        let clock = Clock::new();
        let mut breaker = Breaker::new(BreakerSettings::default());
        assert_eq!(run_all(&mut breaker, &[S, F, F], clock.at(0.0)), []);
        let longer = BreakerSettings {
            window: secs(120),
            cooldown: secs(10),
            ..BreakerSettings::default()
        };
        assert_eq!(breaker.set_settings(longer), None);
        assert_eq!(breaker.settings(), &longer);
        let snapshot = breaker.snapshot(clock.at(90.0));
        assert_eq!(
            (
                snapshot.window_samples_count,
                snapshot.window_failures_count,
                snapshot.window_ms,
                snapshot.cooldown_ms,
            ),
            (3, 2, 120_000, 10_000)
        );
        assert_eq!(breaker.snapshot(clock.at(120.0)).window_samples_count, 0);
        // Still counting the old outcomes: 3 failures of 5 open it, for the new cooldown.
        assert_eq!(
            run_all(&mut breaker, &[S, F], clock.at(90.0)),
            [Transition::Opened {
                failures: 3,
                samples: 5,
                window: secs(120),
                cooldown: secs(10),
            }]
        );
        // Open: a new cooldown does not shorten the one in force.
        assert_eq!(
            breaker.set_settings(BreakerSettings {
                cooldown: secs(1),
                ..longer
            }),
            None
        );
        assert_eq!(breaker.admit(clock.at(95.0)), refusal(secs(5)));
        assert_eq!(breaker.snapshot(clock.at(95.0)).state, BreakerState::Open);
    }

    #[test]
    fn fewer_probes_in_new_settings_can_close_it_at_once() {
        let clock = Clock::new();
        let (mut breaker, first) = half_open(clock.at(0.0), clock.at(30.0));
        let second = admit(&mut breaker, clock.at(30.0)).ticket;
        assert_eq!(breaker.record(first, S, clock.at(31.0)), None);
        let one_probe = BreakerSettings {
            half_open_probes: 1,
            ..BreakerSettings::default()
        };
        assert_eq!(breaker.set_settings(one_probe), Some(Transition::Recovered));
        assert_eq!(breaker.snapshot(clock.at(31.0)).state, BreakerState::Closed);
        // The probe still running is counted like any session once closed.
        assert_eq!(breaker.record(second, F, clock.at(32.0)), None);
        assert_eq!(breaker.snapshot(clock.at(32.0)).window_failures_count, 1);
    }

    #[test]
    fn snapshots_give_the_figures_of_each_state() {
        let clock = Clock::new();
        let fresh = Breaker::new(BreakerSettings::default()).snapshot(clock.at(0.0));
        let mut expected = BreakerSnapshot::default();
        expected.state = BreakerState::Closed;
        expected.window_ms = 60_000;
        expected.cooldown_ms = 30_000;
        assert_eq!(fresh, expected);

        let mut breaker = opened_at(clock.at(0.0));
        let open = breaker.snapshot(clock.at(12.0));
        expected.state = BreakerState::Open;
        expected.window_samples_count = 5;
        expected.window_failures_count = 3;
        expected.retry_after_ms = Some(18_000);
        expected.opened_count = 1;
        assert_eq!(open, expected);

        let first = admit(&mut breaker, clock.at(30.0)).ticket;
        let half_open = breaker.snapshot(clock.at(30.0));
        expected.state = BreakerState::HalfOpen;
        expected.retry_after_ms = None;
        expected.probes_in_flight_count = 1;
        assert_eq!(half_open, expected);
        let _second = admit(&mut breaker, clock.at(30.0));
        let full = breaker.snapshot(clock.at(30.0));
        assert_eq!(full.probes_in_flight_count, 2);
        assert_eq!(full.retry_after_ms, Some(0));

        breaker.record(first, F, clock.at(40.0));
        let reopened = breaker.snapshot(clock.at(40.0));
        assert_eq!(reopened.state, BreakerState::Open);
        assert_eq!(reopened.cooldown_ms, 60_000);
        assert_eq!(reopened.retry_after_ms, Some(60_000));
        assert_eq!(reopened.probes_in_flight_count, 0);
        assert_eq!(reopened.opened_count, 2);
    }

    #[test]
    fn transitions_are_worded_exactly() {
        assert_eq!(
            transition_message("acme", &opened(3, 5)),
            "[circuit-breaker] tenant 'acme' opened after 3/5 failures in 60s; refusing new \
             sessions for 30s"
        );
        assert_eq!(
            transition_message(
                "acme",
                &Transition::Opened {
                    failures: 4,
                    samples: 7,
                    window: Duration::from_millis(1_500),
                    cooldown: Duration::from_millis(250),
                }
            ),
            "[circuit-breaker] tenant 'acme' opened after 4/7 failures in 1.5s; refusing new \
             sessions for 0.25s"
        );
        assert_eq!(
            transition_message("acme", &Transition::HalfOpen { probes: 2 }),
            "[circuit-breaker] tenant 'acme' half-open: probing with 2 sessions"
        );
        assert_eq!(
            transition_message("acme", &Transition::Recovered),
            "[circuit-breaker] tenant 'acme' recovered"
        );
        assert_eq!(
            transition_message("acme", &Transition::Reopened { cooldown: secs(60) }),
            "[circuit-breaker] tenant 'acme' reopened after a failed probe; refusing new \
             sessions for 60s"
        );
    }

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .expect("the log buffer is not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transitions_are_logged_at_their_level_with_their_fields() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_transition("acme", &opened(3, 5));
            log_transition("acme", &Transition::HalfOpen { probes: 2 });
            log_transition("acme", &Transition::Recovered);
            log_transition("acme", &Transition::Reopened { cooldown: secs(60) });
        });
        let text = String::from_utf8(captured.0.lock().expect("not poisoned").clone())
            .expect("the log is UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, (level, state)) in lines.iter().zip([
            ("WARN", "open"),
            ("INFO", "half_open"),
            ("INFO", "closed"),
            ("WARN", "open"),
        ]) {
            assert!(line.trim_start().starts_with(level), "{line}");
            assert!(line.contains("event=\"circuit_breaker\""), "{line}");
            assert!(line.contains("tenant=\"acme\""), "{line}");
            assert!(line.contains(&format!("state=\"{state}\"")), "{line}");
        }
        assert!(lines[0].contains("[circuit-breaker] tenant 'acme' opened after 3/5"));
        assert!(lines[0].contains("failures=3 samples=5 window_ms=60000 cooldown_ms=30000"));
        assert!(lines[1].contains("probes=2"));
        assert!(lines[3].contains("cooldown_ms=60000"));
    }
}
