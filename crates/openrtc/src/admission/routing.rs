//! The routing check: which registered agent a job runs, or its refusal.

use crate::Rejected;

/// The position of the agent a job asks for among the `registered` agents (in registration
/// order): the one it names, or the first when it names none. An unknown name is refused,
/// never rerouted to another agent.
pub(super) fn route<'n>(
    requested: Option<&str>,
    registered: impl IntoIterator<Item = &'n str>,
) -> Result<usize, Rejected> {
    match requested {
        Some(name) => registered
            .into_iter()
            .position(|registered| registered == name)
            .ok_or_else(|| Rejected::UnknownAgent {
                name: name.to_owned(),
            }),
        // The builder refuses a pool without agents, so there is a first one.
        None => Ok(0),
    }
}
