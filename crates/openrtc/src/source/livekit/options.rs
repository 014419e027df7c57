//! The LiveKit worker's options: the server, the credentials, the agent name, and the
//! protocol's timings, with LiveKit's own defaults.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use super::url::UrlError;

/// Which jobs the worker takes (LiveKit's `JobType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveKitJobType {
    /// One job per room (dispatched when the room is created, or by an explicit dispatch).
    #[default]
    Room,
    /// One job per participant, at its first published track.
    Publisher,
    /// One job per participant, when it joins.
    Participant,
}

impl LiveKitJobType {
    /// The protocol's value.
    pub(crate) fn as_proto(self) -> livekit_protocol::JobType {
        match self {
            Self::Room => livekit_protocol::JobType::JtRoom,
            Self::Publisher => livekit_protocol::JobType::JtPublisher,
            Self::Participant => livekit_protocol::JobType::JtParticipant,
        }
    }
}

/// How the worker reaches a LiveKit server and takes its jobs
/// (`AgentPoolBuilder::livekit`).
///
/// Build it with [`LiveKitOptions::new`] or [`LiveKitOptions::from_env`], then adjust it by
/// value. `Debug` leaves the secret out.
#[derive(Clone)]
#[non_exhaustive]
pub struct LiveKitOptions {
    /// The server's URL (`http`, `https`, `ws` or `wss`; a path prefix is kept).
    pub url: String,
    /// The API key.
    pub api_key: String,
    /// The API secret the worker's tokens are signed with.
    pub api_secret: String,
    /// The agent name the worker registers (default empty: every room's automatic dispatch
    /// comes to it; a name takes only the jobs dispatched to that name).
    pub agent_name: String,
    /// Which jobs it takes (default [`LiveKitJobType::Room`]).
    pub job_type: LiveKitJobType,
    /// The load (sessions over capacity) at which it reports itself `FULL` (default 1.0:
    /// offers come while a place is free; lower leaves room for sessions from other sources).
    pub load_threshold: f64,
    /// The server's `agents.target_load` (default 0.7, LiveKit's default): the server sends a
    /// job only while some worker's reported load is under it, so the worker reports its
    /// sessions over capacity on that scale (a full worker reports exactly this), and jobs
    /// come until its cap instead of stopping at 70 % of it.
    pub server_target_load: f64,
    /// How often it reports its status (default 2.5 s, as LiveKit's workers), besides at once
    /// on a change.
    pub status_interval: Duration,
    /// How long an accepted offer holds its places waiting for the assignment (default
    /// 7.5 s, as LiveKit's Python worker).
    pub assignment_timeout: Duration,
    /// Failed connection attempts in a row after which it gives up (default 16, as LiveKit's
    /// Python worker); the delays are 0, 2, 4 … 10, 10 … seconds. A connection that stays
    /// registered 5 s resets the count; one lost sooner counts as a failure, so a server that
    /// keeps closing at once is not retried in a loop.
    pub max_retries: u32,
}

impl fmt::Debug for LiveKitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitOptions")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("agent_name", &self.agent_name)
            .field("job_type", &self.job_type)
            .field("load_threshold", &self.load_threshold)
            .field("server_target_load", &self.server_target_load)
            .field("status_interval", &self.status_interval)
            .field("assignment_timeout", &self.assignment_timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// Why LiveKit options cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveKitConfigError {
    /// A required environment variable is not set.
    #[error(
        "{0} is not set (LiveKit's worker needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET)"
    )]
    MissingEnv(&'static str),
    /// The URL cannot be used.
    #[error("LiveKit URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: UrlError,
    },
    /// The URL needs TLS (`https`, `wss`), which this build's control connection lacks.
    #[error(
        "LiveKit URL {0:?} needs TLS, which this build of the LiveKit worker does not include \
         yet: use ws:// or http:// to a TLS-terminating proxy on the same host"
    )]
    Tls(String),
    /// The API key or secret is empty.
    #[error("the LiveKit API {0} is empty")]
    EmptyCredential(&'static str),
    /// The load threshold is not in (0, 1] (the value given, as written by `{}`).
    #[error("the LiveKit load threshold must be in (0, 1], not {0}")]
    LoadThreshold(String),
    /// The server's target load is not in (0, 1] (the value given, as written by `{}`).
    #[error("the LiveKit server's target load must be in (0, 1], not {0}")]
    ServerTargetLoad(String),
    /// A duration that must be positive is zero.
    #[error("the LiveKit {0} must be longer than zero")]
    ZeroDuration(&'static str),
}

impl LiveKitOptions {
    /// Options for the server at `url` with this key and secret, LiveKit's defaults otherwise.
    #[must_use]
    pub fn new(
        url: impl Into<String>,
        api_key: impl Into<String>,
        api_secret: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            agent_name: String::new(),
            job_type: LiveKitJobType::Room,
            load_threshold: 1.0,
            server_target_load: 0.7,
            status_interval: Duration::from_millis(2500),
            assignment_timeout: Duration::from_millis(7500),
            max_retries: 16,
        }
    }

    /// Options from LiveKit's environment variables: `LIVEKIT_URL`, `LIVEKIT_API_KEY`,
    /// `LIVEKIT_API_SECRET` (required), and `LIVEKIT_AGENT_NAME_OVERRIDE` or
    /// `LIVEKIT_AGENT_NAME` (the first set wins).
    ///
    /// # Errors
    ///
    /// [`LiveKitConfigError::MissingEnv`] naming the first required variable missing.
    pub fn from_env() -> Result<Self, LiveKitConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Options from variables looked up by `get` (the environment, or a test's map).
    pub(crate) fn from_vars(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LiveKitConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|value| !value.is_empty())
                .ok_or(LiveKitConfigError::MissingEnv(name))
        };
        let mut options = Self::new(
            required("LIVEKIT_URL")?,
            required("LIVEKIT_API_KEY")?,
            required("LIVEKIT_API_SECRET")?,
        );
        if let Some(name) = get("LIVEKIT_AGENT_NAME_OVERRIDE")
            .filter(|name| !name.is_empty())
            .or_else(|| get("LIVEKIT_AGENT_NAME"))
        {
            options.agent_name = name;
        }
        Ok(options)
    }

    /// Registers this agent name (explicit dispatch only).
    #[must_use]
    pub fn agent_name(mut self, name: impl Into<String>) -> Self {
        self.agent_name = name.into();
        self
    }

    /// Takes jobs of this type.
    #[must_use]
    pub fn job_type(mut self, job_type: LiveKitJobType) -> Self {
        self.job_type = job_type;
        self
    }

    /// Reports `FULL` at this load (sessions over capacity, in (0, 1]).
    #[must_use]
    pub fn load_threshold(mut self, threshold: f64) -> Self {
        self.load_threshold = threshold;
        self
    }

    /// Reports load on the scale of a server whose `agents.target_load` is this, in (0, 1].
    #[must_use]
    pub fn server_target_load(mut self, target_load: f64) -> Self {
        self.server_target_load = target_load;
        self
    }

    /// Holds an accepted offer's places this long for its assignment.
    #[must_use]
    pub fn assignment_timeout(mut self, timeout: Duration) -> Self {
        self.assignment_timeout = timeout;
        self
    }

    /// Reports the status this often (besides at once on a change).
    #[must_use]
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// Gives up after this many failed connection attempts in a row.
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Checks the options; returns the control WebSocket's URL.
    pub(crate) fn validate(&self) -> Result<String, LiveKitConfigError> {
        let url = super::url::agent_url(&self.url).map_err(|reason| LiveKitConfigError::Url {
            url: self.url.clone(),
            reason,
        })?;
        if url.starts_with("wss://") {
            return Err(LiveKitConfigError::Tls(self.url.clone()));
        }
        if self.api_key.is_empty() {
            return Err(LiveKitConfigError::EmptyCredential("key"));
        }
        if self.api_secret.is_empty() {
            return Err(LiveKitConfigError::EmptyCredential("secret"));
        }
        if !(self.load_threshold > 0.0 && self.load_threshold <= 1.0) {
            return Err(LiveKitConfigError::LoadThreshold(
                self.load_threshold.to_string(),
            ));
        }
        if !(self.server_target_load > 0.0 && self.server_target_load <= 1.0) {
            return Err(LiveKitConfigError::ServerTargetLoad(
                self.server_target_load.to_string(),
            ));
        }
        if self.status_interval.is_zero() {
            return Err(LiveKitConfigError::ZeroDuration("status interval"));
        }
        if self.assignment_timeout.is_zero() {
            return Err(LiveKitConfigError::ZeroDuration("assignment timeout"));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn from_vars_reads_livekit_variables_and_the_override_wins() {
        let options = LiveKitOptions::from_vars(vars(&[
            ("LIVEKIT_URL", "http://127.0.0.1:7880"),
            ("LIVEKIT_API_KEY", "key"),
            ("LIVEKIT_API_SECRET", "secret"),
            ("LIVEKIT_AGENT_NAME", "plain"),
            ("LIVEKIT_AGENT_NAME_OVERRIDE", "override"),
        ]))
        .expect("all set");
        assert_eq!(options.url, "http://127.0.0.1:7880");
        assert_eq!(options.agent_name, "override");
        assert_eq!(
            options.validate().as_deref(),
            Ok("ws://127.0.0.1:7880/agent")
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error = LiveKitOptions::from_vars(vars(&[
            ("LIVEKIT_URL", "http://h"),
            ("LIVEKIT_API_SECRET", "s"),
        ]))
        .expect_err("no key");
        assert_eq!(error, LiveKitConfigError::MissingEnv("LIVEKIT_API_KEY"));
        assert!(error.to_string().contains("LIVEKIT_API_KEY is not set"));
    }

    #[test]
    fn validate_refuses_bad_values_with_their_reason() {
        let base = LiveKitOptions::new("http://h", "k", "s");
        assert!(matches!(
            LiveKitOptions::new("h:7880", "k", "s").validate(),
            Err(LiveKitConfigError::Url { .. })
        ));
        assert!(matches!(
            LiveKitOptions::new("https://lk.example.com", "k", "s").validate(),
            Err(LiveKitConfigError::Tls(url)) if url == "https://lk.example.com"
        ));
        assert_eq!(
            LiveKitOptions::new("http://h", "", "s").validate(),
            Err(LiveKitConfigError::EmptyCredential("key"))
        );
        assert_eq!(
            base.clone().load_threshold(1.5).validate(),
            Err(LiveKitConfigError::LoadThreshold("1.5".to_owned()))
        );
        assert_eq!(
            base.clone().assignment_timeout(Duration::ZERO).validate(),
            Err(LiveKitConfigError::ZeroDuration("assignment timeout"))
        );
        assert!(
            !format!("{base:?}").contains("\"s\""),
            "the secret stays out of Debug"
        );
    }
}
