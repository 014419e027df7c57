//! The routing check: which registered agent a job runs, or its refusal.
//!
//! In this order, the first that names an agent decides:
//!
//! 1. the job's explicit agent (`JobRequest::agent`);
//! 2. the application's router (`AgentPoolBuilder::router`), when it returns a name;
//! 3. the `agent` key of the job's metadata;
//! 4. the longest registered `<agent>-` prefix of the metadata's `room` (the room or stream
//!    name): `sales-eu-42` goes to `sales-eu` rather than `sales` when both are registered;
//! 5. the default agent: the first registered.
//!
//! A name from 1 to 3 that is not registered is refused, never rerouted to another agent.

use std::panic::AssertUnwindSafe;

use crate::{JobRequest, Rejected};

/// An application's routing function: the agent for a job, or `None` to route it by its
/// metadata and room name.
pub(crate) type Router = dyn Fn(&JobRequest) -> Option<String> + Send + Sync;

/// The position of the agent the job goes to among the `registered` agents (in
/// registration order; the builder refuses a pool without agents, so there is a first).
pub(crate) fn route(
    request: &JobRequest,
    router: Option<&Router>,
    registered: &[&str],
) -> Result<usize, Rejected> {
    let named = |name: &str| {
        registered
            .iter()
            .position(|registered| *registered == name)
            .ok_or_else(|| Rejected::UnknownAgent {
                name: name.to_owned(),
            })
    };
    if let Some(name) = &request.agent {
        return named(name);
    }
    if let Some(router) = router {
        // A router that panics refuses the job it panicked on; the worker goes on.
        match std::panic::catch_unwind(AssertUnwindSafe(|| router(request))) {
            Ok(Some(name)) => return named(&name),
            Ok(None) => {}
            Err(payload) => {
                return Err(Rejected::Filtered {
                    reason: format!(
                        "the router panicked: {}",
                        crate::panics::payload_message(&*payload)
                    ),
                });
            }
        }
    }
    match request.metadata.get("agent") {
        Some(serde_json::Value::String(name)) => return named(name),
        Some(other) => {
            return Err(Rejected::UnknownAgent {
                name: other.to_string(),
            });
        }
        None => {}
    }
    if let Some(room) = request.metadata.get("room").and_then(|room| room.as_str()) {
        let longest = registered
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                room.strip_prefix(**name)
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(_, name)| name.len());
        if let Some((position, _)) = longest {
            return Ok(position);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const AGENTS: [&str; 4] = ["default-bot", "sales", "sales-eu", "support"];

    #[track_caller]
    fn check(request: JobRequest, router: Option<&Router>, expected: Result<&str, Rejected>) {
        let routed = route(&request, router, &AGENTS).map(|position| AGENTS[position]);
        assert_eq!(routed, expected);
    }

    fn unknown(name: &str) -> Rejected {
        Rejected::UnknownAgent { name: name.into() }
    }

    #[test]
    fn an_explicit_name_wins_and_an_unknown_one_is_refused_not_rerouted() {
        let room = json!({"agent": "support", "room": "sales-eu-7"});
        check(
            JobRequest::new().agent("sales").metadata(room.clone()),
            None,
            Ok("sales"),
        );
        check(
            JobRequest::new().agent("nope").metadata(room),
            None,
            Err(unknown("nope")),
        );
    }

    #[test]
    fn the_metadata_agent_comes_before_the_room_prefix() {
        check(
            JobRequest::new().metadata(json!({"agent": "support", "room": "sales-1"})),
            None,
            Ok("support"),
        );
        check(
            JobRequest::new().metadata(json!({"agent": "ghost", "room": "sales-1"})),
            None,
            Err(unknown("ghost")),
        );
        check(
            JobRequest::new().metadata(json!({"agent": 7})),
            None,
            Err(unknown("7")),
        );
    }

    #[test]
    fn the_longest_matching_prefix_wins_whatever_the_registration_order() {
        check(
            JobRequest::new().metadata(json!({"room": "sales-eu-42"})),
            None,
            Ok("sales-eu"),
        );
        check(
            JobRequest::new().metadata(json!({"room": "sales-us-42"})),
            None,
            Ok("sales"),
        );
        // A prefix must end at a dash: "salesforce-1" is not a "sales" room.
        check(
            JobRequest::new().metadata(json!({"room": "salesforce-1"})),
            None,
            Ok("default-bot"),
        );
        check(
            JobRequest::new().metadata(json!({"room": "sales"})),
            None,
            Ok("default-bot"),
        );
    }

    #[test]
    fn without_any_hint_the_first_agent_is_the_default() {
        check(JobRequest::new(), None, Ok("default-bot"));
        check(
            JobRequest::new().metadata(json!({"room": 5})),
            None,
            Ok("default-bot"),
        );
    }

    #[test]
    fn the_router_comes_after_an_explicit_name_and_before_the_metadata() {
        let router: &Router =
            &|request: &JobRequest| (request.tenant == "acme").then(|| "support".to_owned());
        let room = json!({"agent": "sales", "room": "sales-eu-1"});
        check(
            JobRequest::new().tenant("acme").metadata(room.clone()),
            Some(router),
            Ok("support"),
        );
        check(
            JobRequest::new().tenant("beta").metadata(room.clone()),
            Some(router),
            Ok("sales"),
        );
        check(
            JobRequest::new().tenant("acme").agent("sales-eu"),
            Some(router),
            Ok("sales-eu"),
        );
        let lost: &Router = &|_: &JobRequest| Some("ghost".to_owned());
        check(JobRequest::new(), Some(lost), Err(unknown("ghost")));
    }

    #[test]
    fn a_router_that_panics_refuses_that_job_only() {
        let router: &Router = &|request: &JobRequest| {
            assert!(request.tenant != "bad", "no route for bad tenants");
            None
        };
        let refused = route(&JobRequest::new().tenant("bad"), Some(router), &AGENTS);
        assert_eq!(
            refused,
            Err(Rejected::Filtered {
                reason: "the router panicked: no route for bad tenants".into()
            })
        );
        check(JobRequest::new(), Some(router), Ok("default-bot"));
    }
}
