//! The server's URL as the control WebSocket's URL, and as a room's signalling URL (pure).
//!
//! As LiveKit's Python worker does: `http` becomes `ws` and `https` becomes `wss`, the path
//! is kept without its trailing `/`, and `/agent` is appended, so `https://host/prefix`
//! becomes `wss://host/prefix/agent`.

use thiserror::Error;

/// Why a server URL cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// Its scheme is none of `http`, `https`, `ws`, `wss`.
    #[error("the scheme must be http, https, ws or wss")]
    Scheme,
    /// It names no host.
    #[error("it names no host")]
    NoHost,
    /// It carries a query or a fragment.
    #[error("it must not carry a query or a fragment")]
    Query,
}

/// The control WebSocket's URL for the server at `url`.
pub(crate) fn agent_url(url: &str) -> Result<String, UrlError> {
    endpoint_url(url, "agent")
}

/// A room's signalling WebSocket URL for the server at `url` (`…/rtc`, before its query).
pub(crate) fn rtc_url(url: &str) -> Result<String, UrlError> {
    endpoint_url(url, "rtc")
}

/// `url` with a WebSocket scheme and `/<endpoint>` appended to its path.
fn endpoint_url(url: &str, endpoint: &str) -> Result<String, UrlError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::Scheme)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(UrlError::Scheme),
    };
    if rest.contains(['?', '#']) {
        return Err(UrlError::Query);
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.starts_with(':') {
        return Err(UrlError::NoHost);
    }
    Ok(format!(
        "{scheme}://{authority}{}/{endpoint}",
        path.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_become_websocket_schemes_and_agent_is_appended() {
        let cases = [
            ("http://127.0.0.1:7880", "ws://127.0.0.1:7880/agent"),
            ("http://127.0.0.1:7880/", "ws://127.0.0.1:7880/agent"),
            ("https://lk.example.com", "wss://lk.example.com/agent"),
            (
                "wss://lk.example.com/prefix/",
                "wss://lk.example.com/prefix/agent",
            ),
            ("ws://host/a/b", "ws://host/a/b/agent"),
            ("HTTP://host", "ws://host/agent"),
        ];
        for (given, expected) in cases {
            assert_eq!(agent_url(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_their_reason() {
        assert_eq!(agent_url("127.0.0.1:7880"), Err(UrlError::Scheme));
        assert_eq!(agent_url("ftp://host"), Err(UrlError::Scheme));
        assert_eq!(agent_url("http://"), Err(UrlError::NoHost));
        assert_eq!(agent_url("http://:7880/x"), Err(UrlError::NoHost));
        assert_eq!(agent_url("http://host/?a=1"), Err(UrlError::Query));
    }
}
