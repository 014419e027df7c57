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
mod tests;
