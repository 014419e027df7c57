//! The options of `openrtc stress` as values: the media URL, the ramp (`10/s`), the agent mix
//! (`echo=80,hot=15,blocker=5`), and the plan they make together (which call starts when,
//! with which agent and tenant). Pure: no I/O, no clock.

use std::time::Duration;

use crate::health::url::{AuthorityFault, host_and_port};

/// The largest ramp accepted, in calls per second.
pub const MAX_RAMP_PER_S: f64 = 10_000.0;

/// A `--url` to dial: `ws://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaUrl {
    /// The URL as given (trimmed).
    pub text: String,
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The TCP port (80 when the URL names none).
    pub port: u16,
}

impl MediaUrl {
    /// `host:port` as a connect address (IPv6 in brackets).
    #[must_use]
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for MediaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a `--url` cannot be dialled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaUrlError {
    /// Only plain `ws://` is spoken (the worker's listener serves no TLS).
    #[error("`{0}`: only ws:// URLs are supported (like ws://127.0.0.1:8080/media)")]
    UnsupportedScheme(String),
    /// No host in it.
    #[error("`{0}` names no host")]
    NoHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{0}` has a bad port")]
    BadPort(String),
}

/// Parses a `--url`: `ws://host:port/path` (the scheme is required; without a port, 80;
/// without a path, the request goes to `/`).
///
/// # Errors
///
/// Another scheme than `ws`, no host, or a bad port.
pub fn parse_media_url(text: &str) -> Result<MediaUrl, MediaUrlError> {
    let trimmed = text.trim();
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ws") => rest,
        _ => return Err(MediaUrlError::UnsupportedScheme(trimmed.to_owned())),
    };
    let authority = rest.find(['/', '?']).map_or(rest, |index| &rest[..index]);
    let (host, port) = host_and_port(authority).map_err(|fault| match fault {
        AuthorityFault::NoHost => MediaUrlError::NoHost(trimmed.to_owned()),
        AuthorityFault::BadPort => MediaUrlError::BadPort(trimmed.to_owned()),
    })?;
    Ok(MediaUrl {
        text: trimmed.to_owned(),
        host: host.to_owned(),
        port,
    })
}

/// How fast calls start: `--ramp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// New calls per second.
    pub calls_per_s: f64,
}

impl Ramp {
    /// When the call numbered `index` (from 0) starts, from the run's start: call 0 at once,
    /// then one every `1 / calls_per_s`.
    #[must_use]
    pub fn start_offset(&self, index: u32) -> Duration {
        Duration::from_secs_f64(f64::from(index) / self.calls_per_s)
    }
}

/// Parses a `--ramp`: `10/s`, `600/m`, or a plain number of calls per second (`2.5`).
///
/// # Errors
///
/// The message for clap to show.
pub fn parse_ramp(text: &str) -> Result<Ramp, String> {
    let trimmed = text.trim();
    let (number, per_s) = match trimmed.split_once('/') {
        Some((number, "s" | "sec")) => (number, 1.0),
        Some((number, "m" | "min")) => (number, 1.0 / 60.0),
        Some(_) => {
            return Err(format!(
                "`{text}`: the unit must be /s or /m (like 10/s or 600/m)"
            ));
        }
        None => (trimmed, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a rate (like 10/s or 600/m)"))?;
    let calls_per_s = value * per_s;
    if !calls_per_s.is_finite() || calls_per_s <= 0.0 || calls_per_s > MAX_RAMP_PER_S {
        return Err(format!(
            "`{text}` must be more than zero and at most {MAX_RAMP_PER_S}/s"
        ));
    }
    Ok(Ramp { calls_per_s })
}

/// Which agents the calls ask for, in percent: `--agent-mix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentMix {
    /// Each agent and its share, in percent, in the order given; the shares add up to 100.
    entries: Vec<(String, u32)>,
}

/// Why an `--agent-mix` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentMixError {
    /// Nothing in it.
    #[error("the agent mix is empty: give agent=percent pairs, like echo=80,hot=20")]
    Empty,
    /// An entry that is not `agent=percent`.
    #[error("`{0}` is not agent=percent (like echo=80)")]
    NotAPair(String),
    /// An entry without an agent name.
    #[error("`{0}` names no agent")]
    NoAgent(String),
    /// A percentage that is not a whole number from 0 to 100.
    #[error("`{entry}`: the percentage must be a whole number from 0 to 100")]
    BadPercent {
        /// The entry.
        entry: String,
    },
    /// The same agent twice.
    #[error("agent `{0}` is given twice")]
    Duplicate(String),
    /// The percentages do not add up to 100.
    #[error("the percentages add up to {0}, not 100")]
    BadSum(u32),
}

impl AgentMix {
    /// Every agent and its percentage, in the order given.
    #[must_use]
    pub fn entries(&self) -> &[(String, u32)] {
        &self.entries
    }

    /// The agent of the call numbered `index`. Every run of 100 consecutive calls has each
    /// agent exactly its percentage of times, spread over the run (the position in the run
    /// is stepped by 61, which is prime to 100), so a short run still gets a mix.
    #[must_use]
    pub fn agent_for(&self, index: u64) -> &str {
        let slot = u32::try_from((index % 100) * 61 % 100).unwrap_or(0);
        let mut upto = 0;
        for (agent, percent) in &self.entries {
            upto += percent;
            if slot < upto {
                return agent;
            }
        }
        self.entries.last().map_or("", |(agent, _)| agent.as_str())
    }
}

/// Parses an `--agent-mix`: `echo=80,hot=15,blocker=5`, whole percentages adding up to 100.
///
/// # Errors
///
/// Empty, an entry that is not `agent=percent`, a bad percentage, an agent given twice, or
/// a sum other than 100.
pub fn parse_agent_mix(text: &str) -> Result<AgentMix, AgentMixError> {
    let mut entries: Vec<(String, u32)> = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (agent, percent) = entry
            .split_once('=')
            .ok_or_else(|| AgentMixError::NotAPair(entry.to_owned()))?;
        let agent = agent.trim();
        if agent.is_empty() {
            return Err(AgentMixError::NoAgent(entry.to_owned()));
        }
        let percent = match percent.trim().trim_end_matches('%').parse::<u32>() {
            Ok(percent) if percent <= 100 => percent,
            _ => {
                return Err(AgentMixError::BadPercent {
                    entry: entry.to_owned(),
                });
            }
        };
        if entries.iter().any(|(known, _)| known == agent) {
            return Err(AgentMixError::Duplicate(agent.to_owned()));
        }
        entries.push((agent.to_owned(), percent));
    }
    if entries.is_empty() {
        return Err(AgentMixError::Empty);
    }
    let sum = entries.iter().map(|(_, percent)| percent).sum::<u32>();
    if sum != 100 {
        return Err(AgentMixError::BadSum(sum));
    }
    entries.retain(|(_, percent)| *percent > 0);
    Ok(AgentMix { entries })
}

/// One call of the run, as planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCall {
    /// The call's number, from 0.
    pub index: u32,
    /// The agent it asks for (`customParameters.agent`).
    pub agent: String,
    /// Its tenant (`customParameters.tenant`): `tenant-1` to `tenant-<tenants>`, in turn.
    pub tenant: String,
    /// When it starts, from the run's start.
    pub start_offset: Duration,
}

/// Every call of the run: `calls` of them, started by the ramp, agents from the mix, tenants
/// in turn.
#[must_use]
pub fn plan(calls: u32, ramp: Ramp, mix: &AgentMix, tenants: u32) -> Vec<PlannedCall> {
    let tenants = tenants.max(1);
    (0..calls)
        .map(|index| PlannedCall {
            index,
            agent: mix.agent_for(u64::from(index)).to_owned(),
            tenant: format!("tenant-{}", index % tenants + 1),
            start_offset: ramp.start_offset(index),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::url::parse_duration;

    #[test]
    fn ramps_are_per_second_or_per_minute() {
        assert_eq!(parse_ramp("10/s"), Ok(Ramp { calls_per_s: 10.0 }));
        assert_eq!(parse_ramp("600/m"), Ok(Ramp { calls_per_s: 10.0 }));
        assert_eq!(parse_ramp("2.5"), Ok(Ramp { calls_per_s: 2.5 }));
        let ramp = parse_ramp("20/s").expect("a ramp");
        assert_eq!(ramp.start_offset(0), Duration::ZERO);
        assert_eq!(ramp.start_offset(5), Duration::from_millis(250));
        for bad in ["", "/s", "ten/s", "10/h", "0/s", "-1/s", "inf", "20000/s"] {
            assert!(parse_ramp(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_ramp("10/h"),
            Err("`10/h`: the unit must be /s or /m (like 10/s or 600/m)".to_owned())
        );
    }

    #[test]
    fn durations_take_seconds_and_minutes() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn mixes_must_add_up_to_100() {
        let mix = parse_agent_mix("echo=80, hot=15,blocker=5").expect("a mix");
        assert_eq!(
            mix.entries(),
            [
                ("echo".to_owned(), 80),
                ("hot".to_owned(), 15),
                ("blocker".to_owned(), 5)
            ]
        );
        assert_eq!(
            parse_agent_mix("echo=80,hot=15").map(|_| ()),
            Err(AgentMixError::BadSum(95))
        );
        assert_eq!(
            AgentMixError::BadSum(95).to_string(),
            "the percentages add up to 95, not 100"
        );
        assert_eq!(parse_agent_mix(""), Err(AgentMixError::Empty));
        assert_eq!(
            parse_agent_mix("echo"),
            Err(AgentMixError::NotAPair("echo".to_owned()))
        );
        assert_eq!(
            parse_agent_mix("=100"),
            Err(AgentMixError::NoAgent("=100".to_owned()))
        );
        assert_eq!(
            parse_agent_mix("echo=1.5,hot=98.5"),
            Err(AgentMixError::BadPercent {
                entry: "echo=1.5".to_owned()
            })
        );
        assert_eq!(
            parse_agent_mix("echo=150"),
            Err(AgentMixError::BadPercent {
                entry: "echo=150".to_owned()
            })
        );
        assert_eq!(
            parse_agent_mix("echo=50,echo=50"),
            Err(AgentMixError::Duplicate("echo".to_owned()))
        );
        assert_eq!(
            parse_agent_mix("echo=100%,hot=0").map(|mix| mix.entries().len()),
            Ok(1),
            "a 0% agent is never dialled"
        );
    }

    #[test]
    fn every_hundred_calls_follow_the_mix_exactly() {
        let mix = parse_agent_mix("echo=80,hot=15,blocker=5").expect("a mix");
        for start in [0_u64, 100, 37] {
            let mut counts = std::collections::BTreeMap::new();
            for index in start..start + 100 {
                *counts.entry(mix.agent_for(index)).or_insert(0) += 1;
            }
            assert_eq!(counts["echo"], 80);
            assert_eq!(counts["hot"], 15);
            assert_eq!(counts["blocker"], 5);
        }
        let first_ten: Vec<&str> = (0..10).map(|index| mix.agent_for(index)).collect();
        assert!(
            first_ten.contains(&"hot"),
            "a short run gets a mix: {first_ten:?}"
        );
    }

    #[test]
    fn the_plan_rotates_tenants_and_ramps() {
        let mix = parse_agent_mix("echo=100").expect("a mix");
        let calls = plan(4, Ramp { calls_per_s: 2.0 }, &mix, 3);
        let tenants: Vec<&str> = calls.iter().map(|call| call.tenant.as_str()).collect();
        assert_eq!(tenants, ["tenant-1", "tenant-2", "tenant-3", "tenant-1"]);
        assert_eq!(calls[3].start_offset, Duration::from_millis(1500));
        assert!(calls.iter().all(|call| call.agent == "echo"));
    }

    #[test]
    fn media_urls_are_plain_websockets() {
        let url = parse_media_url("ws://127.0.0.1:8080/media").expect("a URL");
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 8080));
        assert_eq!(url.authority(), "127.0.0.1:8080");
        let url = parse_media_url("ws://[::1]:9/media").expect("a URL");
        assert_eq!(url.authority(), "[::1]:9");
        assert_eq!(
            parse_media_url("ws://example.com").map(|url| url.port),
            Ok(80)
        );
        assert!(matches!(
            parse_media_url("wss://example.com/media"),
            Err(MediaUrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_media_url("127.0.0.1:8080"),
            Err(MediaUrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_media_url("ws://:8080/media"),
            Err(MediaUrlError::NoHost(_))
        ));
        assert!(matches!(
            parse_media_url("ws://host:99999/media"),
            Err(MediaUrlError::BadPort(_))
        ));
    }
}
