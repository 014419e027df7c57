//! The tenant config file: per-tenant caps, memory budgets and circuit breakers, and caps per
//! agent, parsed from TOML (`parse`) and reloaded live (`reload`).
//!
//! ```toml
//! [defaults]                   # every tenant's settings, unless its own section says otherwise
//! max_sessions = 50            # concurrent sessions of one tenant (0 refuses them all)
//! memory_limit_mb = 256        # each of its sessions' live heap
//! max_heap_mb = 1024           # its sessions' live heap together
//! isolation = "coroutine"      # or "process": each session in a process of its own
//! [defaults.breaker]           # or `breaker = false` to disable it; `breaker = true`: defaults
//! window_s = 60
//! min_samples = 5
//! failure_ratio = 0.5
//! cooldown_s = 30
//! half_open_probes = 2
//! max_cooldown_s = 300
//!
//! [tenants.acme]               # one tenant's settings over the defaults
//! max_sessions = 5
//! breaker = { cooldown_s = 10 }  # field by field over the defaults' breaker table
//!
//! [max_sessions_per_agent]     # concurrent sessions of one agent (0 refuses them all)
//! echo = 10
//! ```
//!
//! Every key is optional. Without a cap or budget, there is none; without any `breaker` key,
//! every tenant has a breaker with the default settings.

pub(crate) mod cell;
mod error;
mod parse;
pub(crate) mod reload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::TenantConfigError;

/// A tenant circuit breaker's settings (the `breaker` table of the tenant config file).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The sliding window whose outcomes are counted (`window_s`). Longer remembers failures
    /// longer; shorter reacts to a short burst only if it alone meets the other thresholds.
    pub window: Duration,
    /// The fewest outcomes in the window before it may open (`min_samples`): a tenant with
    /// little traffic is not shut out by one or two failures.
    pub min_samples: u32,
    /// The share of failures in the window that opens it once strictly exceeded, in (0, 1]
    /// (`failure_ratio`): with 0.5, 3 failures of 5 open it, 3 of 6 do not.
    pub failure_ratio: f64,
    /// How long it stays open the first time (`cooldown_s`); doubles on each failed probe.
    pub cooldown: Duration,
    /// How many probe sessions must succeed while half-open to close it, and the most in
    /// flight at once (`half_open_probes`).
    pub half_open_probes: u32,
    /// The longest cooldown the doubling reaches (`max_cooldown_s`).
    pub max_cooldown: Duration,
}

impl BreakerConfig {
    /// The default sliding window: 60 s.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
    /// The default fewest outcomes before it may open: 5.
    pub const DEFAULT_MIN_SAMPLES: u32 = 5;
    /// The default share of failures that opens it: one half.
    pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;
    /// The default first cooldown: 30 s.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
    /// The default number of probes while half-open: 2.
    pub const DEFAULT_HALF_OPEN_PROBES: u32 = 2;
    /// The default longest cooldown: 5 minutes.
    pub const DEFAULT_MAX_COOLDOWN: Duration = Duration::from_secs(300);
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Self::DEFAULT_WINDOW,
            min_samples: Self::DEFAULT_MIN_SAMPLES,
            failure_ratio: Self::DEFAULT_FAILURE_RATIO,
            cooldown: Self::DEFAULT_COOLDOWN,
            half_open_probes: Self::DEFAULT_HALF_OPEN_PROBES,
            max_cooldown: Self::DEFAULT_MAX_COOLDOWN,
        }
    }
}

/// How a tenant's sessions are isolated (`isolation`): as coroutines of the worker (the
/// default), or each in a process of its own.
///
/// A process-isolated session is the worker's own binary started again (`/proc/self/exe`,
/// with the worker's arguments) in a child mode: its `main` runs as far as
/// [`crate::AgentPoolBuilder::build`], which there runs the one session with the agents
/// registered so far and exits. So `main` must register the same agents before `build`
/// whatever else it does, and do nothing before `build` that a second copy must not do
/// (bind a port, truncate a file). A phone call's media is relayed between the worker's
/// connection and the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Isolation {
    /// Sessions are tasks of the worker's runtime.
    Coroutine,
    /// Each session runs in a process of its own.
    Process,
}

impl Isolation {
    /// The lowercase name, as in the file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coroutine => "coroutine",
            Self::Process => "process",
        }
    }
}

/// The settings in force for one tenant: its own section merged over the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TenantPolicy {
    /// Its cap on concurrent sessions, if any; 0 refuses every session.
    pub max_sessions: Option<u32>,
    /// Its circuit breaker's settings; `None` when it has no breaker (`breaker = false`).
    pub breaker: Option<BreakerConfig>,
    /// Each of its sessions' live heap cap, in bytes, if any (`memory_limit_mb`).
    pub session_memory_limit_bytes: Option<u64>,
    /// Its sessions' live heap budget together, in bytes, if any (`max_heap_mb`).
    pub max_heap_bytes: Option<u64>,
    /// The isolation its section asks for, if any.
    pub isolation: Option<Isolation>,
}

/// A parsed and checked tenant config file.
///
/// ```
/// use openrtc::TenantConfig;
///
/// let text = "[defaults]\nmax_sessions = 50\n[tenants.acme]\nmax_sessions = 5\n";
/// let config = TenantConfig::from_bytes("tenants.toml", text.as_bytes())?;
/// assert_eq!(config.policy("acme").max_sessions, Some(5));
/// assert_eq!(config.policy("initech").max_sessions, Some(50));
///
/// let error = TenantConfig::from_bytes("tenants.toml", b"[defaults]\nmax_sessions = -1\n")
///     .unwrap_err();
/// assert!(error.to_string().starts_with("tenants.toml:2:16: "));
/// # Ok::<(), openrtc::TenantConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TenantConfig {
    path: PathBuf,
    version: String,
    defaults: TenantPolicy,
    tenants: BTreeMap<String, TenantPolicy>,
    agent_caps: BTreeMap<String, AgentCap>,
}

/// One agent's cap, with where the file names the agent (for [`TenantConfig::check_agents`]).
#[derive(Clone, Debug, PartialEq)]
struct AgentCap {
    cap: u32,
    line: u32,
    column: u32,
}

impl TenantConfig {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not UTF-8, or is not a valid tenant config; the error
    /// says where.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TenantConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| TenantConfigError::read(path, &error))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses `bytes` as the content of the file at `path` (which is only used in errors and
    /// reports).
    ///
    /// # Errors
    ///
    /// The bytes are not UTF-8, or not a valid tenant config; the error says where.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self, TenantConfigError> {
        parse::parse(path.as_ref(), bytes)
    }

    /// The path of the file, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version: 16 hex digits of a hash (FNV-1a, 64 bits) of the file's bytes, the same
    /// for the same bytes in every process.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The settings in force for `tenant`: its own section over the defaults (the defaults
    /// alone for a tenant the file does not name).
    #[must_use]
    pub fn policy(&self, tenant: &str) -> TenantPolicy {
        self.tenants.get(tenant).unwrap_or(&self.defaults).clone()
    }

    /// The cap on concurrent sessions of `agent`, if the file sets one (0 refuses them all).
    #[must_use]
    pub fn agent_cap(&self, agent: &str) -> Option<u32> {
        self.agent_caps.get(agent).map(|agent_cap| agent_cap.cap)
    }

    /// The tenants the file names in a section of their own, in name order.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// The agents the file sets a cap for, with their caps, in name order.
    pub fn agent_caps(&self) -> impl Iterator<Item = (&str, u32)> {
        self.agent_caps
            .iter()
            .map(|(agent, agent_cap)| (agent.as_str(), agent_cap.cap))
    }

    /// Checks that every agent the file caps is one of `registered`.
    ///
    /// # Errors
    ///
    /// The first (in name order) agent cap that names an unregistered agent, at its key.
    pub fn check_agents(&self, registered: &[&str]) -> Result<(), TenantConfigError> {
        match self
            .agent_caps
            .iter()
            .find(|(agent, _)| !registered.contains(&agent.as_str()))
        {
            None => Ok(()),
            Some((agent, agent_cap)) => Err(TenantConfigError::Invalid {
                path: self.path.clone(),
                line: Some(agent_cap.line),
                column: Some(agent_cap.column),
                message: format!(
                    "max_sessions_per_agent names agent {agent:?}, which is not registered"
                ),
            }),
        }
    }
}

/// The version of a file's bytes: FNV-1a (64 bits), as 16 lowercase hex digits. Stable across
/// processes and builds, unlike the standard library's hasher.
fn version_of(bytes: &[u8]) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests;
