//! Judging one `GET /health` answer: whether it is a health report at all, what status it
//! gives (a response slower than [`SLOW_RESPONSE`] is itself a `degraded` finding, added on
//! this side as `slow_response`), and the exit status that deserves. Pure: no I/O.

use std::time::Duration;

use openrtc_proto::{HEALTH_VERSION, HealthReport, HealthStatus};

use super::client::{HttpResponse, excerpt};
use crate::Exit;

/// An answer slower than this is reported as `degraded` (`slow_response`), whatever it says:
/// a health endpoint that takes seconds is itself a sign of trouble.
pub const SLOW_RESPONSE: Duration = Duration::from_secs(2);

/// A finding this client adds to the worker's own issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIssue {
    /// Its code, like the worker's (`slow_response`).
    pub code: &'static str,
    /// In words.
    pub message: String,
}

/// A health report as received and judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The report.
    pub report: HealthReport,
    /// The body as received, for `--json`.
    pub raw: String,
    /// Findings added here (`slow_response`).
    pub client_issues: Vec<ClientIssue>,
    /// The status: the report's, at least `degraded` with a client issue.
    pub status: HealthStatus,
}

/// What one look at the endpoint found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A health report.
    Report(Box<Verdict>),
    /// Nothing answered (refused, timed out, closed early): the message says why.
    Unreachable(String),
    /// Something answered, but not with a health report: the message says what.
    BadAnswer(String),
}

/// The state compared between looks in `--continuous` mode: a line is printed when it
/// changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The report's status.
    Health(HealthStatus),
    /// Nothing answered.
    Unreachable,
    /// Something answered, not with a health report.
    BadAnswer,
}

impl State {
    /// Its name as printed: `ok`, `degraded`, `critical`, `unreachable`, `bad_answer`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Health(status) => status.as_str(),
            Self::Unreachable => "unreachable",
            Self::BadAnswer => "bad_answer",
        }
    }

    /// The exit status it deserves: 0 for `ok`, 1 for `degraded` or `critical`, 2 when no
    /// report could be had.
    #[must_use]
    pub fn exit(self) -> Exit {
        match self {
            Self::Health(HealthStatus::Ok) => Exit::Success,
            Self::Health(_) => Exit::Unhealthy,
            Self::Unreachable | Self::BadAnswer => Exit::Failure,
        }
    }
}

impl Observation {
    /// Its state.
    #[must_use]
    pub fn state(&self) -> State {
        match self {
            Self::Report(verdict) => State::Health(verdict.status),
            Self::Unreachable(_) => State::Unreachable,
            Self::BadAnswer(_) => State::BadAnswer,
        }
    }
}

/// Judges an HTTP answer that took `elapsed`: 200 or 503 with a health report is a
/// [`Verdict`]; anything else a [`Observation::BadAnswer`].
#[must_use]
pub fn judge(response: &HttpResponse, elapsed: Duration) -> Observation {
    if response.status != 200 && response.status != 503 {
        return Observation::BadAnswer(format!(
            "HTTP status {} (a health endpoint answers 200 or 503): {:?}",
            response.status,
            excerpt(&response.body)
        ));
    }
    let value: serde_json::Value = match serde_json::from_slice(&response.body) {
        Ok(value) => value,
        Err(error) => {
            return Observation::BadAnswer(format!(
                "the answer is not JSON ({error}): {:?}",
                excerpt(&response.body)
            ));
        }
    };
    let is_report = value.as_object().is_some_and(|object| {
        object.contains_key("status") && object.contains_key("schema_version")
    });
    if !is_report {
        return Observation::BadAnswer(format!(
            "the answer is JSON but not a health report (no status and schema_version): {:?}",
            excerpt(&response.body)
        ));
    }
    let raw = if response.body.contains(&b'\n') {
        value.to_string()
    } else {
        String::from_utf8_lossy(&response.body).trim().to_owned()
    };
    let report: HealthReport = match serde_json::from_value(value) {
        Ok(report) => report,
        Err(error) => {
            return Observation::BadAnswer(format!("the health report cannot be read: {error}"));
        }
    };
    if report.schema_version != HEALTH_VERSION {
        return Observation::BadAnswer(format!(
            "the health report has layout version {}, this openrtc reads version {HEALTH_VERSION}",
            report.schema_version
        ));
    }
    let mut client_issues = Vec::new();
    let mut status = report.status;
    if elapsed > SLOW_RESPONSE {
        client_issues.push(ClientIssue {
            code: "slow_response",
            message: format!(
                "the health endpoint took {} ms to answer (over {} s)",
                elapsed.as_millis(),
                SLOW_RESPONSE.as_secs()
            ),
        });
        status = status.max(HealthStatus::Degraded);
    }
    Observation::Report(Box::new(Verdict {
        report,
        raw,
        client_issues,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use openrtc_proto::{HealthIssue, HealthIssueCode};

    use super::*;

    fn report(status: HealthStatus) -> HealthReport {
        let mut report = HealthReport::default();
        report.schema_version = HEALTH_VERSION;
        report.status = status;
        if status != HealthStatus::Ok {
            report.issues.push(HealthIssue::new(
                HealthIssueCode::WorkerBlocked,
                status,
                "blocked",
            ));
        }
        report
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn answer_of(status: u16, report: &HealthReport) -> HttpResponse {
        answer(status, &serde_json::to_string(report).expect("serialize"))
    }

    #[test]
    fn statuses_map_to_exit_statuses() {
        assert_eq!(State::Health(HealthStatus::Ok).exit().code(), 0);
        assert_eq!(State::Health(HealthStatus::Degraded).exit().code(), 1);
        assert_eq!(State::Health(HealthStatus::Critical).exit().code(), 1);
        assert_eq!(State::Unreachable.exit().code(), 2);
        assert_eq!(State::BadAnswer.exit().code(), 2);
        assert_eq!(State::Unreachable.as_str(), "unreachable");
    }

    #[test]
    fn reports_are_judged_and_passed_through() {
        let critical = report(HealthStatus::Critical);
        let observation = judge(&answer_of(503, &critical), Duration::from_millis(5));
        let Observation::Report(verdict) = observation else {
            panic!("a report: {observation:?}");
        };
        assert_eq!(verdict.status, HealthStatus::Critical);
        assert_eq!(verdict.report, critical);
        assert_eq!(
            verdict.raw,
            serde_json::to_string(&critical).expect("serialize")
        );
        assert!(verdict.client_issues.is_empty());
    }

    #[test]
    fn a_slow_answer_is_degraded_but_never_better_than_the_report() {
        let slow = SLOW_RESPONSE + Duration::from_millis(1);
        let ok = judge(&answer_of(200, &report(HealthStatus::Ok)), slow);
        assert_eq!(ok.state(), State::Health(HealthStatus::Degraded));
        let Observation::Report(verdict) = ok else {
            panic!("a report");
        };
        assert_eq!(verdict.client_issues[0].code, "slow_response");
        let critical = judge(&answer_of(503, &report(HealthStatus::Critical)), slow);
        assert_eq!(critical.state(), State::Health(HealthStatus::Critical));
        let in_time = judge(&answer_of(200, &report(HealthStatus::Ok)), SLOW_RESPONSE);
        assert_eq!(in_time.state(), State::Health(HealthStatus::Ok));
    }

    #[test]
    fn anything_else_is_a_bad_answer() {
        let ok = serde_json::to_string(&report(HealthStatus::Ok)).expect("serialize");
        for (status, body) in [
            (200, "not json"),
            (200, "{}"),
            (200, "[1]"),
            (200, r#"{"status":"fine","schema_version":1}"#),
            (200, r#"{"status":"ok","schema_version":99}"#),
            (404, ok.as_str()),
            (500, ok.as_str()),
        ] {
            let observation = judge(&answer(status, body), Duration::ZERO);
            assert_eq!(observation.state(), State::BadAnswer, "{status} {body}");
        }
    }
}
