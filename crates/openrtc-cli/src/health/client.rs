//! A minimal blocking HTTP/1.1 `GET` over a [`TcpStream`]: plain `http://` only,
//! `Connection: close`, the status code and the body (by `Content-Length`, chunked, or to the
//! end of the connection). One timeout bounds the connect and the whole exchange. Parsing the
//! raw answer ([`parse_response`]) is pure and kept apart from the I/O ([`get`]).

use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

use super::url::Endpoint;

/// The largest answer read; a health report is a few KiB.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

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
    /// Nothing accepted the connection (refused, unreachable, or not within the timeout).
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
    /// Sending or reading failed mid-way.
    #[error("the connection to {authority} failed: {error}")]
    Transfer {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// The answer is not HTTP this client understands.
    #[error("not an HTTP answer: {0}")]
    Malformed(String),
    /// The answer is longer than [`MAX_ANSWER_BYTES`].
    #[error("the answer is longer than {} MiB", MAX_ANSWER_BYTES / (1024 * 1024))]
    TooLong,
}

/// `GET`s `endpoint`, within `timeout` for connecting and again for the whole exchange.
///
/// # Errors
///
/// See [`HttpError`].
pub fn get(endpoint: &Endpoint, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let authority = endpoint.authority();
    let addresses: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|error| HttpError::Resolve {
            authority: authority.clone(),
            error,
        })?
        .collect();
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    let mut connected = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(error) => last_error = error,
        }
    }
    let Some(mut stream) = connected else {
        return Err(HttpError::Connect {
            authority,
            error: last_error,
        });
    };
    let deadline = Instant::now() + timeout;
    let transfer = |error: io::Error| match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout {
            authority: authority.clone(),
            timeout,
        },
        _ => HttpError::Transfer {
            authority: authority.clone(),
            error,
        },
    };
    stream.set_write_timeout(Some(timeout)).map_err(transfer)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: openrtc-health\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        endpoint.path
    );
    stream.write_all(request.as_bytes()).map_err(transfer)?;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 16 * 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HttpError::Timeout {
                authority: authority.clone(),
                timeout,
            });
        }
        stream.set_read_timeout(Some(remaining)).map_err(transfer)?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                if answer.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError::TooLong);
                }
                if complete_response(&answer) {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(transfer(error)),
        }
    }
    parse_response(&answer)
}

/// Whether `answer` already holds a whole response with a `Content-Length` body (so the
/// client need not wait for the server to close).
fn complete_response(answer: &[u8]) -> bool {
    let Some(head_end) = find(answer, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..head_end]);
    content_length(&head).is_some_and(|length| answer.len() >= head_end + 4 + length)
}

/// Splits a raw HTTP/1.x answer into status code and body.
///
/// # Errors
///
/// No status line, no end of headers, a bad `Content-Length` or chunk, or a body cut short.
pub fn parse_response(answer: &[u8]) -> Result<HttpResponse, HttpError> {
    if answer.is_empty() {
        return Err(HttpError::Malformed(
            "the server closed the connection without answering".to_owned(),
        ));
    }
    let head_end = find(answer, b"\r\n\r\n").ok_or_else(|| {
        HttpError::Malformed(format!("no end of headers in {:?}", excerpt(answer)))
    })?;
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .ok()
            .filter(|code| (100..=999).contains(code)),
        _ => None,
    }
    .ok_or_else(|| HttpError::Malformed(format!("bad status line {status_line:?}")))?;
    let body = &answer[head_end + 4..];
    let chunked = header(&head, "transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(body)?
    } else if let Some(length) = content_length(&head) {
        body.get(..length)
            .ok_or_else(|| {
                HttpError::Malformed(format!(
                    "the body is cut short: {} of {length} bytes",
                    body.len()
                ))
            })?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok(HttpResponse { status, body })
}

/// The value of header `name` (case-insensitive) in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The `Content-Length`, if present and a number.
fn content_length(head: &str) -> Option<usize> {
    header(head, "content-length")?.parse().ok()
}

/// Decodes a chunked body.
fn decode_chunked(mut body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut decoded = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")
            .ok_or_else(|| HttpError::Malformed("a chunk size line is cut short".to_owned()))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("bad chunk size {size_text:?}")))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(decoded);
        }
        let chunk = body
            .get(..size)
            .ok_or_else(|| HttpError::Malformed("a chunk is cut short".to_owned()))?;
        decoded.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The start of a byte string, as text for a message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    crate::top::format::clean_text(&text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_answer_is_split() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                       Content-Length: 2\r\n\r\n{}";
        assert!(complete_response(answer));
        assert!(!complete_response(&answer[..answer.len() - 1]));
        let response = parse_response(answer).expect("parses");
        assert_eq!(response.status, 503);
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn chunked_and_close_delimited_bodies_are_read() {
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).expect("chunked").body, b"abcde");
        let closed = b"HTTP/1.0 200 OK\r\n\r\nnot json";
        let response = parse_response(closed).expect("read to the end");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"not json"[..])
        );
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
            assert!(
                matches!(parse_response(bad), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
