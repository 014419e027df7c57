//! Parsing and checking the tenant config file: the TOML as written (every key optional,
//! unknown keys refused), each written value's range at its place in the text, and each
//! tenant's section merged over the defaults (the breaker table field by field).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::error::line_and_column;
use super::{
    AgentCap, BreakerConfig, Isolation, TenantConfig, TenantConfigError, TenantPolicy, version_of,
};

/// Bytes in one of the file's megabytes (`memory_limit_mb`, `max_heap_mb`): a mebibyte.
const BYTES_PER_MB: u64 = 1024 * 1024;

/// The whole file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAsWritten {
    #[serde(default)]
    defaults: SectionAsWritten,
    #[serde(default)]
    tenants: BTreeMap<String, SectionAsWritten>,
    #[serde(default)]
    max_sessions_per_agent: BTreeMap<Spanned<String>, u32>,
}

/// `[defaults]` or one `[tenants.<name>]`, as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionAsWritten {
    max_sessions: Option<u32>,
    memory_limit_mb: Option<Spanned<u32>>,
    max_heap_mb: Option<Spanned<u32>>,
    isolation: Option<Isolation>,
    breaker: Option<BreakerAsWritten>,
}

/// A section's `breaker` key: `true`, `false`, or a table of settings.
enum BreakerAsWritten {
    Switch(bool),
    Table(BreakerTable),
}

/// A `breaker` table, as written; each field keeps its place, for errors.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerTable {
    window_s: Option<Spanned<u64>>,
    min_samples: Option<Spanned<u32>>,
    failure_ratio: Option<Spanned<f64>>,
    cooldown_s: Option<Spanned<u64>>,
    half_open_probes: Option<Spanned<u32>>,
    max_cooldown_s: Option<Spanned<u64>>,
}

impl<'de> Deserialize<'de> for BreakerAsWritten {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BreakerVisitor;

        impl<'de> Visitor<'de> for BreakerVisitor {
            type Value = BreakerAsWritten;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("`true`, `false` or a table of breaker settings")
            }

            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
                Ok(BreakerAsWritten::Switch(enabled))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                BreakerTable::deserialize(MapAccessDeserializer::new(map))
                    .map(BreakerAsWritten::Table)
            }
        }

        deserializer.deserialize_any(BreakerVisitor)
    }
}

impl BreakerTable {
    /// This table's fields, each over the same field of `inherited` (if any).
    fn over(&self, inherited: Option<&Self>) -> Self {
        let Some(inherited) = inherited else {
            return self.clone();
        };
        Self {
            window_s: self.window_s.clone().or_else(|| inherited.window_s.clone()),
            min_samples: self
                .min_samples
                .clone()
                .or_else(|| inherited.min_samples.clone()),
            failure_ratio: self
                .failure_ratio
                .clone()
                .or_else(|| inherited.failure_ratio.clone()),
            cooldown_s: self
                .cooldown_s
                .clone()
                .or_else(|| inherited.cooldown_s.clone()),
            half_open_probes: self
                .half_open_probes
                .clone()
                .or_else(|| inherited.half_open_probes.clone()),
            max_cooldown_s: self
                .max_cooldown_s
                .clone()
                .or_else(|| inherited.max_cooldown_s.clone()),
        }
    }

    /// The settings, the defaults where the table says nothing.
    fn settings(&self) -> BreakerConfig {
        let defaults = BreakerConfig::default();
        let seconds = |field: &Option<Spanned<u64>>, default: Duration| {
            field
                .as_ref()
                .map_or(default, |value| Duration::from_secs(*value.get_ref()))
        };
        BreakerConfig {
            window: seconds(&self.window_s, defaults.window),
            min_samples: self
                .min_samples
                .as_ref()
                .map_or(defaults.min_samples, |value| *value.get_ref()),
            failure_ratio: self
                .failure_ratio
                .as_ref()
                .map_or(defaults.failure_ratio, |value| *value.get_ref()),
            cooldown: seconds(&self.cooldown_s, defaults.cooldown),
            half_open_probes: self
                .half_open_probes
                .as_ref()
                .map_or(defaults.half_open_probes, |value| *value.get_ref()),
            max_cooldown: seconds(&self.max_cooldown_s, defaults.max_cooldown),
        }
    }
}

/// The table a section's `breaker` key inherits from the defaults: the defaults' own table,
/// if they have one.
fn table_of(breaker: Option<&BreakerAsWritten>) -> Option<&BreakerTable> {
    match breaker {
        Some(BreakerAsWritten::Table(table)) => Some(table),
        Some(BreakerAsWritten::Switch(_)) | None => None,
    }
}

/// Parses and checks the bytes of the file at `path`.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<TenantConfig, TenantConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let valid = std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default();
        TenantConfigError::invalid_at(path, valid, Some(valid.len()), "the file is not UTF-8")
    })?;
    let file: FileAsWritten = toml::from_str(text).map_err(|error| {
        TenantConfigError::invalid_at(
            path,
            text,
            error.span().map(|span| span.start),
            error.message(),
        )
    })?;
    let checker = Checker { path, text };
    checker.section(&file.defaults)?;
    for section in file.tenants.values() {
        checker.section(section)?;
    }
    let defaults = checker.policy(None, &file.defaults, None)?;
    let mut tenants = BTreeMap::new();
    for (tenant, section) in &file.tenants {
        let policy = checker.policy(Some(tenant), section, Some(&file.defaults))?;
        tenants.insert(tenant.clone(), policy);
    }
    let agent_caps = file
        .max_sessions_per_agent
        .into_iter()
        .map(|(agent, cap)| {
            let (line, column) = line_and_column(text, agent.span().start);
            (agent.into_inner(), AgentCap { cap, line, column })
        })
        .collect();
    Ok(TenantConfig {
        path: path.to_path_buf(),
        version: version_of(bytes),
        defaults,
        tenants,
        agent_caps,
    })
}

/// Checks values and makes the errors of one file.
struct Checker<'file> {
    path: &'file Path,
    text: &'file str,
}

impl Checker<'_> {
    fn error_at(&self, offset: Option<usize>, message: String) -> TenantConfigError {
        TenantConfigError::invalid_at(self.path, self.text, offset, message)
    }

    /// Fails at `value`'s place if it is not above zero.
    fn above_zero<T: PartialOrd + Default>(
        &self,
        key: &str,
        value: Option<&Spanned<T>>,
    ) -> Result<(), TenantConfigError> {
        match value {
            Some(value) if *value.get_ref() <= T::default() => Err(self.error_at(
                Some(value.span().start),
                format!("{key} must be greater than zero"),
            )),
            _ => Ok(()),
        }
    }

    /// Checks each value a section writes, at its place.
    fn section(&self, section: &SectionAsWritten) -> Result<(), TenantConfigError> {
        self.above_zero("memory_limit_mb", section.memory_limit_mb.as_ref())?;
        self.above_zero("max_heap_mb", section.max_heap_mb.as_ref())?;
        let Some(table) = table_of(section.breaker.as_ref()) else {
            return Ok(());
        };
        self.above_zero("window_s", table.window_s.as_ref())?;
        self.above_zero("min_samples", table.min_samples.as_ref())?;
        if let Some(ratio) = &table.failure_ratio {
            let value = *ratio.get_ref();
            let in_range = value > 0.0 && value <= 1.0;
            if !in_range {
                return Err(self.error_at(
                    Some(ratio.span().start),
                    format!("failure_ratio must be greater than 0 and at most 1, not {value}"),
                ));
            }
        }
        self.above_zero("cooldown_s", table.cooldown_s.as_ref())?;
        self.above_zero("half_open_probes", table.half_open_probes.as_ref())?;
        self.above_zero("max_cooldown_s", table.max_cooldown_s.as_ref())
    }

    /// The settings of `tenant`: its `section` over the `defaults` section, key by key (the
    /// defaults alone when `tenant` is `None`, with `section` the defaults).
    fn policy(
        &self,
        tenant: Option<&str>,
        section: &SectionAsWritten,
        defaults: Option<&SectionAsWritten>,
    ) -> Result<TenantPolicy, TenantConfigError> {
        let empty = SectionAsWritten::default();
        let defaults = defaults.unwrap_or(&empty);
        let megabytes = |own: &Option<Spanned<u32>>, inherited: &Option<Spanned<u32>>| {
            own.as_ref()
                .or(inherited.as_ref())
                .map(|mb| u64::from(*mb.get_ref()) * BYTES_PER_MB)
        };
        Ok(TenantPolicy {
            max_sessions: section.max_sessions.or(defaults.max_sessions),
            breaker: self.breaker(tenant, section.breaker.as_ref(), defaults.breaker.as_ref())?,
            session_memory_limit_bytes: megabytes(
                &section.memory_limit_mb,
                &defaults.memory_limit_mb,
            ),
            max_heap_bytes: megabytes(&section.max_heap_mb, &defaults.max_heap_mb),
            isolation: section.isolation.or(defaults.isolation),
        })
    }

    /// The breaker of a section whose key is `own`, over the defaults' key `defaults` (for a
    /// tenant): `false` disables it; `true` takes the defaults' table (or the built-in
    /// settings); a table goes field by field over the defaults' table; no key at all takes
    /// the defaults' choice, and an enabled breaker if nothing says otherwise.
    fn breaker(
        &self,
        tenant: Option<&str>,
        own: Option<&BreakerAsWritten>,
        defaults: Option<&BreakerAsWritten>,
    ) -> Result<Option<BreakerConfig>, TenantConfigError> {
        let (own, inherited) = match own {
            Some(own) => (Some(own), table_of(defaults)),
            None => (defaults, None),
        };
        let table = match own {
            Some(BreakerAsWritten::Switch(false)) => return Ok(None),
            Some(BreakerAsWritten::Switch(true)) | None => inherited.cloned().unwrap_or_default(),
            Some(BreakerAsWritten::Table(own_table)) => own_table.over(inherited),
        };
        let settings = table.settings();
        if settings.max_cooldown < settings.cooldown {
            // Point at the most specific of the two keys: the section's own before the
            // inherited ones, the cap before the cooldown.
            let own_table = table_of(own);
            let place = [
                own_table.and_then(|own_table| own_table.max_cooldown_s.as_ref()),
                own_table.and_then(|own_table| own_table.cooldown_s.as_ref()),
                table.max_cooldown_s.as_ref(),
                table.cooldown_s.as_ref(),
            ]
            .into_iter()
            .flatten()
            .next()
            .map(|value| value.span().start);
            let whose = tenant.map_or_else(String::new, |tenant| format!("tenant {tenant:?}: "));
            return Err(self.error_at(
                place,
                format!(
                    "{whose}max_cooldown_s ({}) must be at least cooldown_s ({})",
                    settings.max_cooldown.as_secs(),
                    settings.cooldown.as_secs()
                ),
            ));
        }
        Ok(Some(settings))
    }
}
