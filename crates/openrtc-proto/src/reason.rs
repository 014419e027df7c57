//! Why a launch was refused and why a session was stopped: typed reasons, never sentences.
//!
//! Each reason has a stable snake_case name on the wire and a `Display` with the human text
//! that `top` and log lines show.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a worker refused to launch a session; the key of `WorkerSnapshot::refusals`.
///
/// Serialized as its name (`"worker_full"`), also as a JSON object key. The variants are
/// declared in the alphabetical order of their names, so a map of refusals lists them in the
/// same order as a map keyed by the names would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// The routed agent already runs its cap of sessions (`max_sessions_per_agent`).
    AgentCap,
    /// The tenant's circuit breaker is open (or half-open with its probes taken).
    BreakerOpen,
    /// The worker is draining or shutting down and accepts no new session.
    Draining,
    /// The application's request filter refused the job.
    Filtered,
    /// The pool has stopped: its runtime is gone.
    Stopped,
    /// The tenant already runs its cap of sessions (`max_sessions`).
    TenantCap,
    /// The tenant's sessions together hold more live heap than its budget (`max_heap_mb`).
    TenantHeap,
    /// The job names an agent that is not registered.
    UnknownAgent,
    /// The worker already runs its maximum number of concurrent sessions.
    WorkerFull,
}

impl RefusalReason {
    /// Every reason, in the order of [`Self::index`].
    pub const ALL: [Self; 9] = [
        Self::AgentCap,
        Self::BreakerOpen,
        Self::Draining,
        Self::Filtered,
        Self::Stopped,
        Self::TenantCap,
        Self::TenantHeap,
        Self::UnknownAgent,
        Self::WorkerFull,
    ];

    /// The reason's position in [`Self::ALL`], for tables of counters indexed by reason.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::AgentCap => 0,
            Self::BreakerOpen => 1,
            Self::Draining => 2,
            Self::Filtered => 3,
            Self::Stopped => 4,
            Self::TenantCap => 5,
            Self::TenantHeap => 6,
            Self::UnknownAgent => 7,
            Self::WorkerFull => 8,
        }
    }

    /// The stable name used on the wire, in log lines and in tables.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AgentCap => "agent_cap",
            Self::BreakerOpen => "breaker_open",
            Self::Draining => "draining",
            Self::Filtered => "filtered",
            Self::Stopped => "stopped",
            Self::TenantCap => "tenant_cap",
            Self::TenantHeap => "tenant_heap",
            Self::UnknownAgent => "unknown_agent",
            Self::WorkerFull => "worker_full",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a session was cancelled (asked to stop, then dropped after the grace period).
///
/// On the wire: `{"kind":"operator"}`. A plain name (`"operator"`), as older workers sent it,
/// is read too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelReason {
    /// An operator asked for it (`PoolHandle::cancel`, `k` in `openrtc top`).
    Operator,
    /// The worker was draining and the drain timeout passed.
    DrainTimeout,
    /// The worker was shut down.
    Shutdown,
    /// The session's job source ended it: a LiveKit server terminated its job (the dispatch
    /// was deleted, or the room closed).
    Terminated,
}

impl CancelReason {
    /// Every reason.
    pub const ALL: [Self; 4] = [
        Self::Operator,
        Self::DrainTimeout,
        Self::Shutdown,
        Self::Terminated,
    ];

    /// The stable name used on the wire and in log lines.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::DrainTimeout => "drain_timeout",
            Self::Shutdown => "shutdown",
            Self::Terminated => "terminated",
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a session was killed (stopped at once, without a grace period).
///
/// On the wire: `{"kind":"operator"}` or
/// `{"kind":"memory_limit","live_bytes":52531200,"limit_bytes":52428800}`. A plain
/// `"operator"`, as older workers sent it, is read too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KillReason {
    /// An operator asked for it (`PoolHandle::kill`).
    Operator,
    /// Its live heap crossed its memory cap (tracking allocator only).
    MemoryLimit {
        /// Its live bytes when it was seen over the cap.
        live_bytes: u64,
        /// The cap.
        limit_bytes: u64,
    },
    /// Its isolated process's resident memory crossed the process's limit (process
    /// isolation: the worker killed the process).
    RssLimit {
        /// The process's resident bytes when it was seen over the limit.
        rss_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// Its isolated process died of a signal (a crash such as `SIGSEGV` or `SIGABRT`, or a
    /// `SIGKILL` from outside the worker, the kernel's OOM killer's included).
    Signal {
        /// The signal's number.
        signal: i32,
    },
}

impl KillReason {
    /// The stable name of the reason (its `kind` on the wire).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::RssLimit { .. } => "rss_limit",
            Self::Signal { .. } => "signal",
        }
    }
}

impl fmt::Display for KillReason {
    /// `operator`, or `memory_limit: 50.1 MiB live over its 50.0 MiB cap`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Operator => formatter.write_str("operator"),
            Self::MemoryLimit {
                live_bytes,
                limit_bytes,
            } => write!(
                formatter,
                "memory_limit: {} live over its {} cap",
                Mib(live_bytes),
                Mib(limit_bytes)
            ),
            Self::RssLimit {
                rss_bytes,
                limit_bytes,
            } => write!(
                formatter,
                "rss_limit: its process at {} resident over its {} limit",
                Mib(rss_bytes),
                Mib(limit_bytes)
            ),
            Self::Signal { signal } => match signal_name(signal) {
                Some(name) => write!(formatter, "signal: its process died of {name} ({signal})"),
                None => write!(formatter, "signal: its process died of signal {signal}"),
            },
        }
    }
}

/// The usual name of a Linux signal a crashed or killed process dies of.
#[must_use]
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// Bytes shown as MiB with one decimal.
struct Mib(u64);

impl fmt::Display for Mib {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:.1} MiB", self.0 as f64 / (1024.0 * 1024.0))
    }
}

// The derives above (`remote = "Self"`) give inherent `serialize`/`deserialize` functions with
// the tagged shape; the trait impls below write that shape and read it or a plain name.

impl Serialize for CancelReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Self::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for CancelReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TaggedOrName(std::marker::PhantomData))
    }
}

impl TaggedReason for CancelReason {
    const EXPECTING: &'static str = "a cancel reason such as {\"kind\":\"operator\"}";
    const NAMES: &'static [&'static str] = &["operator", "drain_timeout", "shutdown", "terminated"];

    fn by_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    fn tagged<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize(deserializer)
    }
}

impl Serialize for KillReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Self::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for KillReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TaggedOrName(std::marker::PhantomData))
    }
}

impl TaggedReason for KillReason {
    const EXPECTING: &'static str = "a kill reason such as {\"kind\":\"operator\"}";
    // Older workers sent a memory-limit kill as a sentence; its figures are not read back out
    // of text, so of the plain names only `operator` is accepted.
    const NAMES: &'static [&'static str] = &["operator"];

    fn by_name(name: &str) -> Option<Self> {
        (name == "operator").then_some(Self::Operator)
    }

    fn tagged<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize(deserializer)
    }
}

/// A reason written as a tagged object, that older workers wrote as a plain name.
trait TaggedReason: Sized {
    /// What the reader expected, for error messages.
    const EXPECTING: &'static str;
    /// The plain names read.
    const NAMES: &'static [&'static str];

    /// The reason a plain name stands for.
    fn by_name(name: &str) -> Option<Self>;

    /// Reads the tagged object.
    fn tagged<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Reads a reason from its tagged object, or from a plain name.
struct TaggedOrName<T>(std::marker::PhantomData<T>);

impl<'de, T: TaggedReason> serde::de::Visitor<'de> for TaggedOrName<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(T::EXPECTING)
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<T, E> {
        T::by_name(name).ok_or_else(|| E::unknown_variant(name, T::NAMES))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::tagged(serde::de::value::MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn refusal_reasons_are_map_keys_by_name() {
        let refusals: BTreeMap<RefusalReason, u64> =
            RefusalReason::ALL.into_iter().zip(1..).collect();
        let value = serde_json::to_value(&refusals).expect("serializes");
        assert_eq!(
            value,
            json!({
                "agent_cap": 1, "breaker_open": 2, "draining": 3, "filtered": 4, "stopped": 5,
                "tenant_cap": 6, "tenant_heap": 7, "unknown_agent": 8, "worker_full": 9
            })
        );
        let text = serde_json::to_string(&refusals).expect("serializes");
        assert_eq!(
            text,
            r#"{"agent_cap":1,"breaker_open":2,"draining":3,"filtered":4,"stopped":5,"tenant_cap":6,"tenant_heap":7,"unknown_agent":8,"worker_full":9}"#,
            "listed in the order of their names"
        );
        let back: BTreeMap<RefusalReason, u64> = serde_json::from_str(&text).expect("reads");
        assert_eq!(back, refusals);
        for (position, reason) in RefusalReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), position);
            assert_eq!(reason.to_string(), reason.as_str());
        }
        let error = serde_json::from_str::<BTreeMap<RefusalReason, u64>>(r#"{"tired":1}"#)
            .expect_err("an unknown reason");
        assert!(error.to_string().contains("tired"), "{error}");
    }

    #[test]
    fn reasons_are_tagged_objects_on_the_wire() {
        let cases = [
            (
                serde_json::to_value(CancelReason::Operator),
                json!({"kind": "operator"}),
            ),
            (
                serde_json::to_value(CancelReason::DrainTimeout),
                json!({"kind": "drain_timeout"}),
            ),
            (
                serde_json::to_value(CancelReason::Shutdown),
                json!({"kind": "shutdown"}),
            ),
            (
                serde_json::to_value(KillReason::Operator),
                json!({"kind": "operator"}),
            ),
            (
                serde_json::to_value(KillReason::MemoryLimit {
                    live_bytes: 52_533_453,
                    limit_bytes: 52_428_800,
                }),
                json!({"kind": "memory_limit", "live_bytes": 52_533_453, "limit_bytes": 52_428_800}),
            ),
        ];
        for (written, expected) in cases {
            assert_eq!(written.expect("serializes"), expected);
        }
        for reason in CancelReason::ALL {
            let value = serde_json::to_value(reason).expect("serializes");
            let back: CancelReason = serde_json::from_value(value).expect("reads");
            assert_eq!(back, reason);
        }
        let memory = KillReason::MemoryLimit {
            live_bytes: 7,
            limit_bytes: 5,
        };
        let value = serde_json::to_value(memory).expect("serializes");
        let back: KillReason = serde_json::from_value(value).expect("reads");
        assert_eq!(back, memory);
        for (reason, expected) in [
            (
                KillReason::RssLimit {
                    rss_bytes: 9,
                    limit_bytes: 8,
                },
                json!({"kind": "rss_limit", "rss_bytes": 9, "limit_bytes": 8}),
            ),
            (
                KillReason::Signal { signal: 11 },
                json!({"kind": "signal", "signal": 11}),
            ),
        ] {
            let value = serde_json::to_value(reason).expect("serializes");
            assert_eq!(value, expected);
            let back: KillReason = serde_json::from_value(value).expect("reads");
            assert_eq!(back, reason);
        }
    }

    #[test]
    fn a_process_s_death_names_its_signal() {
        assert_eq!(
            KillReason::Signal { signal: 11 }.to_string(),
            "signal: its process died of SIGSEGV (11)"
        );
        assert_eq!(
            KillReason::Signal { signal: 63 }.to_string(),
            "signal: its process died of signal 63"
        );
        assert_eq!(
            KillReason::RssLimit {
                rss_bytes: 3 * 1024 * 1024,
                limit_bytes: 2 * 1024 * 1024,
            }
            .to_string(),
            "rss_limit: its process at 3.0 MiB resident over its 2.0 MiB limit"
        );
    }

    #[test]
    fn plain_names_from_older_workers_are_read_and_sentences_are_not() {
        for reason in CancelReason::ALL {
            let old = serde_json::to_string(reason.as_str()).expect("a string");
            let read: CancelReason = serde_json::from_str(&old).expect("a plain name reads");
            assert_eq!(read, reason);
        }
        let read: KillReason = serde_json::from_str(r#""operator""#).expect("a plain name");
        assert_eq!(read, KillReason::Operator);
        let error = serde_json::from_str::<KillReason>(
            r#""memory_limit: 50.1 MiB live over its 50.0 MiB cap""#,
        )
        .expect_err("a sentence is not a reason");
        assert!(error.to_string().contains("unknown variant"), "{error}");
        let error = serde_json::from_str::<CancelReason>(r#"{"kind":"bored"}"#)
            .expect_err("an unknown kind");
        assert!(error.to_string().contains("bored"), "{error}");
        let error = serde_json::from_str::<KillReason>(r#"{"kind":"memory_limit"}"#)
            .expect_err("a memory-limit kill carries its figures");
        assert!(error.to_string().contains("live_bytes"), "{error}");
    }

    #[test]
    fn reasons_display_as_human_text() {
        assert_eq!(CancelReason::DrainTimeout.to_string(), "drain_timeout");
        assert_eq!(KillReason::Operator.to_string(), "operator");
        assert_eq!(
            KillReason::MemoryLimit {
                live_bytes: 52_533_453,
                limit_bytes: 50 * 1024 * 1024,
            }
            .to_string(),
            "memory_limit: 50.1 MiB live over its 50.0 MiB cap"
        );
        assert_eq!(RefusalReason::WorkerFull.to_string(), "worker_full");
    }
}
