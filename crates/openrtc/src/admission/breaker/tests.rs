//! The breaker's unit tests: thresholds, the window, half-open probes, backoff, reloads and
//! its log lines, with time passed in.

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
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(2),
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
