//! One blocking HTTP `GET` of a plain `http://` endpoint, through `ureq` (no TLS, no proxy,
//! no redirects followed): the status code and the body, whatever the status (a critical
//! `/health` answers 503 with its report). One timeout bounds the whole exchange, from name
//! resolution to the body's last byte. `ureq`'s errors are sorted here into the few kinds
//! `openrtc health` tells apart: nothing answered, or something answered that is not HTTP.

use std::io;
use std::time::Duration;

use super::url::Endpoint;

/// The largest body read; a health report is a few KiB.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The `User-Agent` sent.
const USER_AGENT: &str = "openrtc-health";

/// An HTTP answer: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (200, 503, …).
    pub status: u16,
    /// The body, decoded from chunked transfer if it was.
    pub body: Vec<u8>,
}

/// Why an HTTP `GET` gave no answer to judge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The host name did not resolve.
    #[error("cannot resolve {authority}: {error}")]
    Resolve {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// Nothing accepted the connection (refused, or no route to it).
    #[error("cannot connect to {authority}: {error}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The whole answer did not arrive within the timeout.
    #[error("no complete answer from {authority} within {} ms", timeout.as_millis())]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Sending or reading failed mid-way, or the request could not be made.
    #[error("the connection to {authority} failed: {error}")]
    Transfer {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The answer is not HTTP this client understands, or stops short.
    #[error("not an HTTP answer: {0}")]
    Malformed(String),
    /// The body is at least [`MAX_ANSWER_BYTES`] long.
    #[error("the answer is longer than {} MiB", MAX_ANSWER_BYTES / (1024 * 1024))]
    TooLong,
}

/// `GET`s `endpoint`, all within `timeout`; any status code is an answer.
///
/// # Errors
///
/// See [`HttpError`].
pub fn get(endpoint: &Endpoint, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let authority = endpoint.authority();
    let sorted = |error: ureq::Error| sort_error(error, &authority, timeout);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(USER_AGENT)
        .timeout_global(Some(timeout))
        .build()
        .new_agent();
    let mut response = agent
        .get(endpoint.to_string())
        .header("Accept", "application/json")
        .call()
        .map_err(sorted)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES as u64)
        .read_to_vec()
        .map_err(sorted)?;
    Ok(HttpResponse { status, body })
}

/// Which [`HttpError`] a `ureq` error is.
fn sort_error(error: ureq::Error, authority: &str, timeout: Duration) -> HttpError {
    let authority = authority.to_owned();
    match error {
        ureq::Error::Timeout(_) => HttpError::Timeout { authority, timeout },
        ureq::Error::HostNotFound => HttpError::Resolve {
            authority,
            error: io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address"),
        },
        ureq::Error::Io(error) if is_connect_error(&error) => {
            HttpError::Connect { authority, error }
        }
        ureq::Error::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            HttpError::Malformed(
                "the server closed the connection before a complete answer".to_owned(),
            )
        }
        ureq::Error::Protocol(error) => HttpError::Malformed(error.to_string()),
        ureq::Error::LargeResponseHeader(size_bytes, limit_bytes) => HttpError::Malformed(format!(
            "the header is {size_bytes} bytes, more than {limit_bytes}"
        )),
        ureq::Error::BodyExceedsLimit(_) => HttpError::TooLong,
        error => HttpError::Transfer {
            authority,
            error: error.into_io(),
        },
    }
}

/// Whether an I/O error means nothing accepted the connection.
fn is_connect_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

/// The start of a byte string, as text for a message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    crate::top::format::clean_text(&text, 80)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;

    /// Generous: nothing here should wait, but CI machines are busy.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Serves `answer` raw to one connection, after reading the request head, then closes.
    fn serve_once(answer: &'static [u8]) -> (Endpoint, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let port = listener.local_addr().expect("its address").port();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("one connection");
            let mut head = Vec::new();
            let mut byte = [0_u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = stream.write_all(answer);
        });
        let endpoint = Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
            path: "/health".to_owned(),
        };
        (endpoint, handle)
    }

    fn get_once(answer: &'static [u8]) -> Result<HttpResponse, HttpError> {
        let (endpoint, server) = serve_once(answer);
        let result = get(&endpoint, PATIENCE);
        server.join().expect("the server thread");
        result
    }

    #[test]
    fn an_error_status_still_gives_its_body() {
        let response = get_once(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}",
        )
        .expect("a 503 is an answer");
        assert_eq!(response.status, 503);
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn chunked_and_close_delimited_bodies_are_read() {
        let chunked = get_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(chunked.body, b"abcde");
        let closed = get_once(b"HTTP/1.0 200 OK\r\n\r\nnot json").expect("read to the end");
        assert_eq!(
            (closed.status, closed.body.as_slice()),
            (200, &b"not json"[..])
        );
    }

    #[test]
    fn a_redirect_is_an_answer_not_followed() {
        let response = get_once(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .expect("a 302 is an answer");
        assert_eq!((response.status, response.body.len()), (302, 0));
    }

    #[test]
    fn broken_answers_are_malformed() {
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let result = get_once(bad);
            assert!(
                matches!(result, Err(HttpError::Malformed(_))),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_closed_port_cannot_be_connected_to() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let port = listener.local_addr().expect("its address").port();
        drop(listener);
        let endpoint = Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
            path: "/health".to_owned(),
        };
        let result = get(&endpoint, PATIENCE);
        assert!(
            matches!(&result, Err(HttpError::Connect { error, .. })
                if error.kind() == io::ErrorKind::ConnectionRefused),
            "{result:?}"
        );
    }
}
