//! Pure: an [`Event`] in its wire form ([`StreamEvent`]), the time of a line, and a line as
//! the bytes written to the file and to subscribers.

use std::time::{SystemTime, UNIX_EPOCH};

use openrtc_proto::{
    BreakerState, MemoryLimitScope, OverflowScope, StreamEvent, StreamLine, StreamRecord,
};

use super::Event;
use crate::admission::Transition;
use crate::session::session_id;
use crate::units::{duration_ms, ns_to_ms};

/// Seconds since the Unix epoch, with a fraction (0 for a clock set before it).
pub(super) fn wall_time_unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Appends the line numbered `seq` to `out`, as one line of JSON ending in a newline.
pub(super) fn encode(
    seq: u64,
    at: SystemTime,
    record: StreamRecord,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, &StreamLine::new(seq, wall_time_unix(at), record))?;
    out.push(b'\n');
    Ok(())
}

/// The `stream_overflow` event for `dropped_count` events dropped by `scope`.
pub(super) fn overflow(scope: OverflowScope, dropped_count: u64) -> StreamRecord {
    StreamRecord::Event(StreamEvent::StreamOverflow {
        scope,
        dropped_count,
    })
}

/// The event as it is written.
pub(super) fn to_wire(event: &Event) -> StreamEvent {
    match event {
        Event::SessionStarted { key, tenant, agent } => StreamEvent::SessionStarted {
            session_id: session_id(*key),
            tenant: tenant.to_string(),
            agent: agent.to_string(),
        },
        Event::SessionFinished {
            key,
            tenant,
            agent,
            outcome,
            duration_ns,
            busy_ns,
            stall_count,
        } => StreamEvent::SessionFinished {
            session_id: session_id(*key),
            tenant: tenant.to_string(),
            agent: agent.to_string(),
            outcome: (**outcome).clone(),
            duration_ms: ns_to_ms(*duration_ns),
            busy_ns: *busy_ns,
            stall_count: *stall_count,
        },
        Event::SessionRefused {
            tenant,
            agent,
            rejected,
        } => StreamEvent::SessionRefused {
            tenant: tenant.to_string(),
            agent: agent.as_deref().map(str::to_owned),
            reason: rejected.reason(),
            message: rejected.to_string(),
        },
        Event::SessionStalled {
            key,
            tenant,
            agent,
            worker,
            duration_ns,
            class,
            cause,
            victim_count,
        } => StreamEvent::SessionStalled {
            session_id: session_id(*key),
            tenant: tenant.to_string(),
            agent: agent.to_string(),
            worker: *worker,
            duration_ms: ns_to_ms(*duration_ns),
            class: *class,
            cause: cause.as_deref().map(str::to_owned),
            victim_count: *victim_count,
        },
        Event::Breaker { tenant, transition } => breaker(tenant, *transition),
        Event::SessionMemoryLimit {
            key,
            tenant,
            agent,
            live_bytes,
            limit_bytes,
        } => StreamEvent::MemoryLimit {
            scope: MemoryLimitScope::Session,
            session_id: Some(session_id(*key)),
            tenant: Some(tenant.to_string()),
            agent: Some(agent.to_string()),
            used_bytes: *live_bytes,
            limit_bytes: *limit_bytes,
        },
        Event::WorkerMemoryLimit {
            rss_bytes,
            limit_bytes,
        } => StreamEvent::MemoryLimit {
            scope: MemoryLimitScope::Worker,
            session_id: None,
            tenant: None,
            agent: None,
            used_bytes: *rss_bytes,
            limit_bytes: *limit_bytes,
        },
        Event::DrainStarted {
            why,
            live_sessions,
            deadline,
        } => StreamEvent::DrainStarted {
            why: (*why).to_owned(),
            live_sessions_count: *live_sessions,
            deadline_ms: duration_ms(*deadline),
        },
        Event::ConfigReloaded { path, version } => StreamEvent::ConfigReloaded {
            path: path.display().to_string(),
            version: version.to_string(),
        },
        Event::TenantIsolation {
            tenant,
            isolated,
            why,
        } => StreamEvent::TenantIsolation {
            tenant: tenant.to_string(),
            isolation: if *isolated { "process" } else { "coroutine" }.to_owned(),
            why: why.to_string(),
        },
    }
}

/// A breaker's change of state, with the figures it changed on.
fn breaker(tenant: &str, transition: Transition) -> StreamEvent {
    let (state, failures, samples, window, cooldown, probes) = match transition {
        Transition::Opened {
            failures,
            samples,
            window,
            cooldown,
        } => (
            BreakerState::Open,
            Some(failures),
            Some(samples),
            Some(window),
            Some(cooldown),
            None,
        ),
        Transition::HalfOpen { probes } => {
            (BreakerState::HalfOpen, None, None, None, None, Some(probes))
        }
        Transition::Recovered => (BreakerState::Closed, None, None, None, None, None),
        Transition::Reopened { cooldown } => {
            (BreakerState::Open, None, None, None, Some(cooldown), None)
        }
    };
    StreamEvent::BreakerState {
        tenant: tenant.to_owned(),
        state,
        failures_count: failures,
        samples_count: samples,
        window_ms: window.map(duration_ms),
        cooldown_ms: cooldown.map(duration_ms),
        probes_count: probes,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn line(seq: u64, event: &Event) -> serde_json::Value {
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        encode(seq, at, StreamRecord::Event(to_wire(event)), &mut out).expect("encodes");
        assert_eq!(out.last(), Some(&b'\n'), "one line each");
        assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 1);
        serde_json::from_slice(&out).expect("JSON")
    }

    #[test]
    fn a_finished_session_carries_its_typed_outcome_and_figures() {
        let event = Event::SessionFinished {
            key: 42,
            tenant: "acme".into(),
            agent: "echo".into(),
            outcome: Box::new(openrtc_proto::SessionOutcome::Failed {
                error: "upstream closed".into(),
            }),
            duration_ns: 2_500_000_000,
            busy_ns: 1_234,
            stall_count: 1,
        };
        assert_eq!(
            line(9, &event),
            serde_json::json!({
                "schema_version": 2,
                "kind": "event",
                "seq": 9,
                "wall_time_unix": 1_700_000_000.25,
                "payload": {
                    "event": "session_finished",
                    "session_id": "s-42",
                    "tenant": "acme",
                    "agent": "echo",
                    "outcome": {"kind": "failed", "error": "upstream closed"},
                    "duration_ms": 2500,
                    "busy_ns": 1234,
                    "stall_count": 1,
                },
            })
        );
    }

    #[test]
    fn a_refusal_names_its_reason_and_says_it_in_words() {
        let event = Event::SessionRefused {
            tenant: "acme".into(),
            agent: Some("echo".into()),
            rejected: Box::new(crate::Rejected::WorkerFull { max: 3 }),
        };
        assert_eq!(
            line(1, &event)["payload"],
            serde_json::json!({
                "event": "session_refused",
                "tenant": "acme",
                "agent": "echo",
                "reason": "worker_full",
                "message": "worker is full: 3 concurrent sessions",
            })
        );
    }

    #[test]
    fn breaker_changes_carry_the_figures_of_their_kind() {
        let opened = Event::Breaker {
            tenant: "acme".into(),
            transition: Transition::Opened {
                failures: 3,
                samples: 5,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(30),
            },
        };
        assert_eq!(
            line(1, &opened)["payload"],
            serde_json::json!({
                "event": "breaker_state",
                "tenant": "acme",
                "state": "open",
                "failures_count": 3,
                "samples_count": 5,
                "window_ms": 60_000,
                "cooldown_ms": 30_000,
            })
        );
        let recovered = Event::Breaker {
            tenant: "acme".into(),
            transition: Transition::Recovered,
        };
        assert_eq!(
            line(2, &recovered)["payload"],
            serde_json::json!({"event": "breaker_state", "tenant": "acme", "state": "closed"})
        );
    }

    #[test]
    fn memory_limits_say_whose() {
        let worker = Event::WorkerMemoryLimit {
            rss_bytes: 900,
            limit_bytes: 800,
        };
        assert_eq!(
            line(1, &worker)["payload"],
            serde_json::json!({
                "event": "memory_limit",
                "scope": "worker",
                "used_bytes": 900,
                "limit_bytes": 800,
            })
        );
        let session = Event::SessionMemoryLimit {
            key: 3,
            tenant: "acme".into(),
            agent: "leaky".into(),
            live_bytes: 70,
            limit_bytes: 64,
        };
        let payload = &line(1, &session)["payload"];
        assert_eq!(payload["scope"], "session");
        assert_eq!(payload["session_id"], "s-3");
        assert_eq!(payload["agent"], "leaky");
    }

    #[test]
    fn the_time_before_the_epoch_reads_as_zero() {
        let before = UNIX_EPOCH
            .checked_sub(Duration::from_secs(5))
            .expect("representable");
        assert!(wall_time_unix(before).abs() < f64::EPSILON);
    }
}
