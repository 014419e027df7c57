//! Where `openrtc health` asks: `--url` (a base `http://host:port`, the full `/health` URL,
//! or just `host:port`) turned into host, port and path, and the durations its options take.
//! Pure: no I/O.

use std::time::Duration;

/// The health URL asked when neither `--url` nor a worker's snapshot names one.
pub const DEFAULT_HEALTH_URL: &str = "http://127.0.0.1:14159/health";

/// An HTTP endpoint to `GET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The path, starting with `/`.
    pub path: String,
}

impl Endpoint {
    /// `host:port` as a connect address and `Host` header (IPv6 in brackets).
    #[must_use]
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// Why a `--url` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Only plain HTTP is spoken.
    #[error("`{0}`: only http:// URLs are supported (the worker serves plain HTTP)")]
    UnsupportedScheme(String),
    /// No host in it.
    #[error("`{0}` names no host")]
    NoHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{0}` has a bad port")]
    BadPort(String),
}

/// Which part of a URL's `host[:port]` is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthorityFault {
    /// No host (or an unclosed `[`).
    NoHost,
    /// A port that is not a number from 1 to 65535.
    BadPort,
}

/// A URL's `host[:port]`, an IPv6 host in brackets (`[::1]:8080`); port 80 when absent
/// (pure). Shared by `--url` of `health` and of `stress`.
pub(crate) fn host_and_port(authority: &str) -> Result<(&str, u16), AuthorityFault> {
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(AuthorityFault::NoHost)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(AuthorityFault::NoHost);
    }
    let port = match port_text {
        None => 80,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(AuthorityFault::BadPort),
        },
    };
    Ok((host, port))
}

/// Parses a `--url`: `http://host:port`, `http://host:port/`, `http://host:port/health`,
/// `host:port`; a bare base (no path, or `/`) gets `/health`. Without a port, 80.
///
/// # Errors
///
/// Another scheme than `http`, no host, or a bad port.
pub fn parse_health_url(text: &str) -> Result<Endpoint, UrlError> {
    let trimmed = text.trim();
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(UrlError::UnsupportedScheme(trimmed.to_owned())),
        None => trimmed,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    let path = match path {
        "" | "/" => "/health".to_owned(),
        path if path.starts_with('?') => format!("/health{path}"),
        path => path.to_owned(),
    };
    let (host, port) = host_and_port(authority).map_err(|fault| match fault {
        AuthorityFault::NoHost => UrlError::NoHost(trimmed.to_owned()),
        AuthorityFault::BadPort => UrlError::BadPort(trimmed.to_owned()),
    })?;
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        path,
    })
}

/// Parses a duration option: `100ms`, `2s`, `1.5s`, `5m`, or a plain number of seconds;
/// zero is refused.
///
/// # Errors
///
/// The message for clap to show.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, unit_s) = if let Some(number) = trimmed.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = trimmed.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = trimmed.strip_suffix('m') {
        (number, 60.0)
    } else {
        (trimmed, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (like 100ms, 2s, 5m)"))?;
    let seconds = value * unit_s;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 {
        return Err(format!("`{text}` must be more than zero and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16, path: &str) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    #[test]
    fn bases_and_full_urls_name_the_health_path() {
        for (text, expected) in [
            (
                "http://127.0.0.1:14159",
                endpoint("127.0.0.1", 14159, "/health"),
            ),
            (
                "http://127.0.0.1:14159/",
                endpoint("127.0.0.1", 14159, "/health"),
            ),
            (
                "http://127.0.0.1:14159/health",
                endpoint("127.0.0.1", 14159, "/health"),
            ),
            ("127.0.0.1:8080", endpoint("127.0.0.1", 8080, "/health")),
            (
                "HTTP://lb.internal/x/health",
                endpoint("lb.internal", 80, "/x/health"),
            ),
            ("http://[::1]:9000", endpoint("::1", 9000, "/health")),
            (" localhost:1 ", endpoint("localhost", 1, "/health")),
        ] {
            assert_eq!(parse_health_url(text), Ok(expected), "{text}");
        }
        assert_eq!(
            endpoint("::1", 9000, "/health").to_string(),
            "http://[::1]:9000/health"
        );
        assert_eq!(
            parse_health_url(DEFAULT_HEALTH_URL)
                .expect("the default parses")
                .to_string(),
            DEFAULT_HEALTH_URL
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(matches!(
            parse_health_url("https://host:1/health"),
            Err(UrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_health_url("http://:80"),
            Err(UrlError::NoHost(_))
        ));
        assert!(matches!(parse_health_url(""), Err(UrlError::NoHost(_))));
        for bad in ["host:0", "host:65536", "host:port", "[::1]:x"] {
            assert!(
                matches!(parse_health_url(bad), Err(UrlError::BadPort(_))),
                "{bad}"
            );
        }
        let message = parse_health_url("https://x")
            .expect_err("https")
            .to_string();
        assert!(message.contains("only http://"), "{message}");
    }

    #[test]
    fn durations_take_units_and_refuse_zero() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["0s", "-1s", "soon", "", "2d", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
