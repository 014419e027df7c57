//! The tenant config in force and the record of its reloads (`TenantConfigCell`): what the
//! launch path reads, what a snapshot reports, and one reload of the file (logged).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openrtc_proto::TenantConfigSnapshot;

use super::{TenantConfig, TenantConfigError};
use crate::lock;

/// The tenant config in force, and the record of its reloads. Reading the config in force is
/// one lock and one `Arc` clone.
pub(crate) struct TenantConfigCell {
    path: PathBuf,
    registered_agents: Vec<String>,
    current: RwLock<Arc<TenantConfig>>,
    /// Held through a whole reload, so that reloads happen one at a time.
    record: Mutex<ReloadRecord>,
}

/// What a snapshot says of the reloads, and what a failed one needs to log once.
struct ReloadRecord {
    loaded_at_unix_ms: u64,
    reloads_count: u64,
    last_error: Option<TenantConfigError>,
    last_error_at_unix_ms: Option<u64>,
    /// What the last failed attempt read: the version of its bytes, or its read error.
    /// The same failure again is not logged again.
    last_failure_key: Option<String>,
}

/// What one reload did.
#[derive(Debug)]
pub(crate) enum ReloadOutcome {
    /// The file holds the version in force: nothing changed.
    Unchanged,
    /// A new version is in force.
    Reloaded(Arc<TenantConfig>),
    /// The file cannot be read or is not valid: the old version stays in force (the cell
    /// has logged it and keeps it for snapshots; the error is here for tests).
    Failed(
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "the cell logs and keeps the error")
        )]
        TenantConfigError,
    ),
}

impl TenantConfigCell {
    /// Loads the file at `path` (the first load) and checks its agent caps against
    /// `registered_agents`, which every reload checks again.
    pub(crate) fn load(
        path: impl Into<PathBuf>,
        registered_agents: &[&str],
    ) -> Result<Self, TenantConfigError> {
        let path = path.into();
        let config = TenantConfig::load(&path)?;
        config.check_agents(registered_agents)?;
        Ok(Self {
            path,
            registered_agents: registered_agents
                .iter()
                .map(|&agent| agent.to_owned())
                .collect(),
            current: RwLock::new(Arc::new(config)),
            record: Mutex::new(ReloadRecord {
                loaded_at_unix_ms: unix_ms_now(),
                reloads_count: 1,
                last_error: None,
                last_error_at_unix_ms: None,
                last_failure_key: None,
            }),
        })
    }

    /// The file's path, as given.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force.
    pub(crate) fn current(&self) -> Arc<TenantConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The file, the version in force and the record of reloads, for a pool snapshot.
    pub(crate) fn snapshot(&self) -> TenantConfigSnapshot {
        let record = lock(&self.record);
        let mut snapshot = TenantConfigSnapshot::default();
        snapshot.path = self.path.display().to_string();
        snapshot.version = self.current().version().to_owned();
        snapshot.loaded_at_unix_ms = record.loaded_at_unix_ms;
        snapshot.reloads_count = record.reloads_count;
        snapshot.last_error = record.last_error.as_ref().map(ToString::to_string);
        snapshot.last_error_at_unix_ms = record.last_error_at_unix_ms;
        snapshot
    }

    /// Reads the file again and puts it in force if it is a new, valid version; logs what
    /// happened (a failure once per failing content).
    pub(crate) fn reload(&self) -> ReloadOutcome {
        let mut record = lock(&self.record);
        let in_force = self.current();
        let (failure_key, attempt) = match std::fs::read(&self.path) {
            Err(error) => {
                let error = TenantConfigError::read(&self.path, &error);
                (error.to_string(), Err(error))
            }
            Ok(bytes) => {
                let version = super::version_of(&bytes);
                if version == in_force.version() {
                    // Back to (or still at) the version in force: an earlier failure is over.
                    record.last_error = None;
                    record.last_error_at_unix_ms = None;
                    record.last_failure_key = None;
                    return ReloadOutcome::Unchanged;
                }
                let registered: Vec<&str> =
                    self.registered_agents.iter().map(String::as_str).collect();
                let attempt = TenantConfig::from_bytes(&self.path, &bytes)
                    .and_then(|config| config.check_agents(&registered).map(|()| config));
                (version, attempt)
            }
        };
        match attempt {
            Err(error) => {
                if record.last_failure_key.as_deref() != Some(failure_key.as_str()) {
                    tracing::warn!(
                        event = "tenant_config_rejected",
                        path = %self.path.display(),
                        version = in_force.version(),
                        %error,
                        "[tenant-config] {error}; keeping version {}",
                        in_force.version()
                    );
                    record.last_failure_key = Some(failure_key);
                }
                record.last_error = Some(error.clone());
                record.last_error_at_unix_ms = Some(unix_ms_now());
                ReloadOutcome::Failed(error)
            }
            Ok(config) => {
                let config = Arc::new(config);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&config);
                record.loaded_at_unix_ms = unix_ms_now();
                record.reloads_count += 1;
                record.last_error = None;
                record.last_error_at_unix_ms = None;
                record.last_failure_key = None;
                tracing::info!(
                    event = "tenant_config_reloaded",
                    path = %self.path.display(),
                    old_version = in_force.version(),
                    new_version = config.version(),
                    "[tenant-config] reloaded {}: version {} -> {}",
                    self.path.display(),
                    in_force.version(),
                    config.version()
                );
                ReloadOutcome::Reloaded(config)
            }
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
