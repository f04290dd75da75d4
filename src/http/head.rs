//! Strict HTTP/1 message heads (RFC 9112): parsing with limits, and the framing rules that decide
//! where a body ends.
//!
//! Request smuggling lives in the gap between two parsers that disagree about where a message ends,
//! so every ambiguity is an error here rather than a guess: `Content-Length` together with
//! `Transfer-Encoding`, conflicting lengths, a transfer coding list that does not end in `chunked`,
//! `Transfer-Encoding` in HTTP/1.0, obs-fold, bare CR, NUL, whitespace before the colon, more than one
//! `Host`. `httparse` already refuses the character-level cases; [`request_framing`] and
//! [`response_framing`] refuse the semantic ones.

use std::fmt;

/// Largest request or response head we accept (request line or status line plus all fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;

/// One header field, with the name's case as received (some origins care).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name as received.
    pub name: String,
    /// Field value as received (no leading/trailing whitespace; may hold obs-text).
    pub value: Vec<u8>,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Request target as sent (absolute-form, authority-form, origin-form or `*`).
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Fields in order.
    pub headers: Vec<Header>,
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Minor version of the responder.
    pub minor: u8,
    /// Status code.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Fields in order.
    pub headers: Vec<Header>,
}

/// Why a head was rejected. [`HeadError::status`] gives the answer a server owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields: 431.
    TooLarge,
    /// Syntax error: 400.
    Malformed(String),
}

impl HeadError {
    /// The status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "header section larger than {} bytes", MAX_HEAD),
            HeadError::Malformed(m) => f.write_str(m),
        }
    }
}

fn malformed(m: impl Into<String>) -> HeadError {
    HeadError::Malformed(m.into())
}

fn own_headers(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter().map(|h| Header { name: h.name.to_owned(), value: h.value.to_vec() }).collect()
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed (and `buf` is still under the limit); `Ok(Some((head,
/// len)))` gives the head and how many bytes it used.
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let head = RequestHead {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                minor: req.version.unwrap_or(1),
                headers: own_headers(req.headers),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(malformed(format!("malformed request head: {e}"))),
    }
}

/// Parses a response head from the start of `buf` (same contract as [`parse_request`]).
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut storage);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let head = ResponseHead {
                minor: res.version.unwrap_or(1),
                status: res.code.unwrap_or(0),
                reason: res.reason.unwrap_or_default().to_owned(),
                headers: own_headers(res.headers),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(malformed(format!("malformed response head: {e}"))),
    }
}

/// Iterates over the values of every field called `name` (case-insensitive).
pub fn values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// The single value of `name`, if present exactly once.
pub fn value<'a>(headers: &'a [Header], name: &'a str) -> Option<&'a [u8]> {
    let mut it = values(headers, name);
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(v)
}

/// True if any comma-separated element of any `name` field equals `token` (case-insensitive).
pub fn has_token(headers: &[Header], name: &str, token: &str) -> bool {
    values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses all `Content-Length` fields; they must agree and be plain digits.
fn content_length(headers: &[Header]) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for v in values(headers, "content-length") {
        for part in v.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                return Err(format!("invalid Content-Length `{}`", String::from_utf8_lossy(v)));
            }
            let n: u64 = std::str::from_utf8(part).ok().and_then(|s| s.parse().ok()).ok_or("bad length")?;
            match found {
                Some(prev) if prev != n => return Err("conflicting Content-Length values".into()),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// Parses the transfer codings; returns true if `chunked` is the final one, false if codings are
/// present but chunked is not last. Errors on syntax problems and on `chunked` applied twice.
fn transfer_codings_end_in_chunked(headers: &[Header]) -> Result<Option<bool>, String> {
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let mut any = false;
    for v in values(headers, "transfer-encoding") {
        any = true;
        for part in v.split(|&b| b == b',') {
            let part = part.trim_ascii();
            // A coding is a token, optionally followed by parameters; chunked takes none.
            let name = part.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(format!("invalid Transfer-Encoding `{}`", String::from_utf8_lossy(v)));
            }
            if name.eq_ignore_ascii_case(b"chunked") && name.len() != part.len() {
                return Err("chunked takes no parameters".into());
            }
            codings.push(name.to_ascii_lowercase());
        }
    }
    if !any {
        return Ok(None);
    }
    let chunked_count = codings.iter().filter(|c| c.as_slice() == b"chunked").count();
    let last_chunked = codings.last().is_some_and(|c| c.as_slice() == b"chunked");
    if chunked_count > 1 || (chunked_count == 1 && !last_chunked) {
        return Err("chunked must be applied exactly once, last".into());
    }
    Ok(Some(last_chunked))
}

/// True for methods that may be sent twice (RFC 9110 §9.2.2): a request on a reused connection that
/// died before any answer may be retried once only if this holds.
pub fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

/// The transfer codings of a message other than a final `chunked`, as written (e.g. `gzip` for
/// `Transfer-Encoding: gzip, chunked`). Framing is re-done per hop, but these codings describe the
/// content and must reach the next hop intact (RFC 9112 §6.1).
pub fn content_transfer_codings(headers: &[Header]) -> Vec<&[u8]> {
    let mut codings: Vec<&[u8]> = values(headers, "transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .collect();
    if codings.last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
        codings.pop();
    }
    codings
}

/// Decides how a request body is framed, refusing every ambiguous combination (all are 400).
pub fn request_framing(head: &RequestHead) -> Result<Framing, HeadError> {
    let te = transfer_codings_end_in_chunked(&head.headers).map_err(malformed)?;
    let cl = content_length(&head.headers).map_err(malformed)?;
    match (te, cl) {
        (Some(_), Some(_)) => Err(malformed("both Transfer-Encoding and Content-Length")),
        (Some(_), None) if head.minor == 0 => Err(malformed("Transfer-Encoding in an HTTP/1.0 request")),
        (Some(true), None) => Ok(Framing::Chunked),
        (Some(false), None) => Err(malformed("Transfer-Encoding does not end in chunked")),
        (None, Some(0)) | (None, None) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// Decides how a response body is framed (RFC 9112 §6.3). Errors mean the upstream is broken (502).
pub fn response_framing(head: &ResponseHead, request_method: &str) -> Result<Framing, HeadError> {
    if request_method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::Empty);
    }
    let te = transfer_codings_end_in_chunked(&head.headers).map_err(malformed)?;
    let cl = content_length(&head.headers).map_err(malformed)?;
    match (te, cl) {
        (Some(_), Some(_)) => Err(malformed("upstream sent both Transfer-Encoding and Content-Length")),
        (Some(true), None) if head.minor >= 1 => Ok(Framing::Chunked),
        (Some(_), None) => Ok(Framing::Close),
        (None, Some(0)) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::Close),
    }
}

/// Checks the request-level rules beyond framing: one `Host` (required in HTTP/1.1).
pub fn check_request(head: &RequestHead) -> Result<Framing, HeadError> {
    let hosts = values(&head.headers, "host").count();
    if hosts > 1 {
        return Err(malformed("more than one Host field"));
    }
    if hosts == 0 && head.minor == 1 && head.method != "CONNECT" {
        return Err(malformed("HTTP/1.1 request without Host"));
    }
    request_framing(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Framing, HeadError> {
        let (head, _) = parse_request(raw.as_bytes())?.expect("complete");
        check_request(&head)
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            req("POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            req("POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            req("POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(req(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
        for bad in [
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_codings_keep_all_but_a_final_chunked() {
        let codings = |raw: &str| {
            let (h, _) = parse_response(raw.as_bytes()).unwrap().unwrap();
            content_transfer_codings(&h.headers)
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(codings("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), ["gzip"]);
        assert_eq!(
            codings("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: br\r\n\r\n"),
            ["gzip", "br"]
        );
        assert!(codings("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_empty());
    }

    #[test]
    fn too_large() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        while raw.len() <= MAX_HEAD {
            raw.push_str("X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_request(raw.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }
}
