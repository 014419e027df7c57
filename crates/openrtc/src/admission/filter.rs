//! The last admission check: the application's own request filter.

use std::panic::AssertUnwindSafe;

use crate::{JobRequest, Rejected};

/// An application's filter: `Err(reason)` refuses the job with [`Rejected::Filtered`].
pub(crate) type RequestFilter = dyn Fn(&JobRequest) -> Result<(), String> + Send + Sync;

/// Runs the filter on the job; a filter that panics refuses that job, and the worker goes on.
pub(super) fn check(filter: Option<&RequestFilter>, request: &JobRequest) -> Result<(), Rejected> {
    let Some(filter) = filter else {
        return Ok(());
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| filter(request))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Rejected::Filtered { reason }),
        Err(payload) => Err(Rejected::Filtered {
            reason: format!(
                "the request filter panicked: {}",
                crate::panics::payload_message(&*payload)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_s_reason_is_the_refusal_s() {
        let filter: &RequestFilter = &|request: &JobRequest| {
            if request.tenant == "banned" {
                Err("tenant banned".to_owned())
            } else {
                Ok(())
            }
        };
        assert_eq!(check(Some(filter), &JobRequest::new()), Ok(()));
        assert_eq!(
            check(Some(filter), &JobRequest::new().tenant("banned")),
            Err(Rejected::Filtered {
                reason: "tenant banned".into()
            })
        );
        assert_eq!(check(None, &JobRequest::new().tenant("banned")), Ok(()));
    }

    #[test]
    fn a_filter_that_panics_refuses_the_job_it_panicked_on() {
        let filter: &RequestFilter = &|request: &JobRequest| {
            assert!(request.metadata.is_null(), "metadata not expected");
            Ok(())
        };
        let refused = check(
            Some(filter),
            &JobRequest::new().metadata(serde_json::json!({"x": 1})),
        );
        assert_eq!(
            refused,
            Err(Rejected::Filtered {
                reason: "the request filter panicked: metadata not expected".into()
            })
        );
        assert_eq!(check(Some(filter), &JobRequest::new()), Ok(()));
    }
}
