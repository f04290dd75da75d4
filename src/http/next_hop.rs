//! Message heads re-written for the next hop: what a forwarding proxy sends on after reading a head.
//!
//! The rules live here once, for plain forwarding and (later) intercepted traffic alike: hop-by-hop
//! fields go (the one rule of [`super::hop`]), `Via` is added, and the framing fields are re-derived
//! from how this hop frames the body, never copied, because the previous hop's framing is not ours.

use super::body::Encode;
use super::head::{self, Framing, RequestHead, ResponseHead};
use super::hop::{connection_tokens, is_hop_by_hop};
use super::write;

/// Where and how a request goes on.
#[derive(Debug, Clone, Copy)]
pub struct RequestHop<'a> {
    /// `host[:port]` as the client wrote it (becomes `Host`).
    pub authority: &'a str,
    /// Origin-form target, starting with `/`.
    pub path: &'a str,
    /// Send absolute-form (`http://authority/path`), as a parent proxy expects.
    pub absolute: bool,
    /// How the request body is framed on this hop.
    pub framing: Framing,
    /// The request asks for a protocol upgrade (its `Upgrade` field travels on).
    pub upgrade: bool,
    /// Max-Forwards already decremented, for OPTIONS and TRACE (RFC 9110 §7.6.2).
    pub max_forwards: Option<u32>,
    /// Our own credentials for a parent proxy.
    pub proxy_authorization: Option<&'a str>,
}

/// The request head for the next hop.
pub fn request(head: &RequestHead, hop: &RequestHop<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + head.headers.len() * 32);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    if hop.absolute {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(hop.authority.as_bytes());
    }
    out.extend_from_slice(hop.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write::header(&mut out, "Host", hop.authority.as_bytes());
    let tokens = connection_tokens(head::values(&head.headers, "connection"));
    for h in &head.headers {
        let n = h.name.as_str();
        if is_hop_by_hop(n, &tokens, hop.upgrade)
            || n.eq_ignore_ascii_case("host")
            || n.eq_ignore_ascii_case("content-length")
            || (hop.max_forwards.is_some() && n.eq_ignore_ascii_case("max-forwards"))
        {
            continue;
        }
        write::header(&mut out, n, &h.value);
    }
    if let Some(n) = hop.max_forwards {
        write::header(&mut out, "Max-Forwards", n.to_string().as_bytes());
    }
    write::header(&mut out, "Via", format!("1.{} tunnelkit", head.minor).as_bytes());
    match hop.framing {
        Framing::Length(n) => write::header(&mut out, "Content-Length", n.to_string().as_bytes()),
        Framing::Chunked => {
            write::transfer_encoding(&mut out, &head::content_transfer_codings(&head.headers), true)
        }
        Framing::Empty | Framing::Close => {}
    }
    if hop.upgrade {
        write::header(&mut out, "Connection", b"Upgrade");
    }
    if let Some(auth) = hop.proxy_authorization {
        write::header(&mut out, "Proxy-Authorization", auth.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The response head for the client of `req`: the upstream framed its body as `framing`, this hop
/// sends it as `encode`, and `keep` says whether the client connection stays open.
pub fn response(
    req: &RequestHead,
    resp: &ResponseHead,
    framing: Framing,
    encode: Encode,
    keep: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + resp.headers.len() * 32);
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).as_bytes());
    let tokens = connection_tokens(head::values(&resp.headers, "connection"));
    let bodiless = framing == Framing::Empty;
    for h in &resp.headers {
        let n = h.name.as_str();
        if is_hop_by_hop(n, &tokens, false) {
            continue;
        }
        // Content-Length is re-derived from the framing, except where the response has no body but
        // the field describes the representation (HEAD, 304).
        if n.eq_ignore_ascii_case("content-length")
            && !(bodiless && (req.method == "HEAD" || resp.status == 304))
        {
            continue;
        }
        write::header(&mut out, n, &h.value);
    }
    write::header(&mut out, "Via", format!("1.{} tunnelkit", resp.minor).as_bytes());
    // Content codings (gzip in `gzip, chunked`, or a non-chunked final coding of a close-delimited
    // body) describe the payload and travel on; only the chunked framing is per hop.
    let codings = if bodiless { Vec::new() } else { head::content_transfer_codings(&resp.headers) };
    match (framing, encode) {
        (Framing::Length(n), _) => write::header(&mut out, "Content-Length", n.to_string().as_bytes()),
        (Framing::Empty, _) if resp.status != 204 && resp.status != 304 && req.method != "HEAD" => {
            write::header(&mut out, "Content-Length", b"0")
        }
        (Framing::Empty, _) => {}
        (_, Encode::Chunked) => write::transfer_encoding(&mut out, &codings, true),
        (_, Encode::Identity) => write::transfer_encoding(&mut out, &codings, false),
    }
    if !keep {
        write::header(&mut out, "Connection", b"close");
    } else if req.minor == 0 {
        write::header(&mut out, "Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The `101 Switching Protocols` head for the client: the upgrade's own fields kept, the rest of
/// the hop-by-hop fields dropped.
pub fn switching_protocols(resp: &ResponseHead) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 101 {}\r\n", resp.reason).into_bytes();
    let tokens = connection_tokens(head::values(&resp.headers, "connection"));
    for h in &resp.headers {
        if !is_hop_by_hop(&h.name, &tokens, true) {
            write::header(&mut out, &h.name, &h.value);
        }
    }
    write::header(&mut out, "Connection", b"Upgrade");
    out.extend_from_slice(b"\r\n");
    out
}

/// The answer to a TRACE that reached Max-Forwards 0: the request as received, minus credentials
/// (RFC 9110 §9.3.8 lets a proxy leave out fields that are likely to be sensitive).
pub fn trace_echo(head: &RequestHead) -> Vec<u8> {
    let mut echo = format!("{} {} HTTP/1.{}\r\n", head.method, head.target, head.minor).into_bytes();
    for h in &head.headers {
        let n = h.name.as_str();
        if !n.eq_ignore_ascii_case("proxy-authorization")
            && !n.eq_ignore_ascii_case("authorization")
            && !n.eq_ignore_ascii_case("cookie")
        {
            write::header(&mut echo, n, &h.value);
        }
    }
    echo.extend_from_slice(b"\r\n");
    let mut m = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        echo.len()
    )
    .into_bytes();
    m.extend_from_slice(&echo);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> RequestHead {
        head::parse_request(text.as_bytes()).expect("valid").expect("complete").0
    }

    fn resp(text: &str) -> ResponseHead {
        head::parse_response(text.as_bytes()).expect("valid").expect("complete").0
    }

    fn hop(framing: Framing) -> RequestHop<'static> {
        RequestHop {
            authority: "example.com",
            path: "/a",
            absolute: false,
            framing,
            upgrade: false,
            max_forwards: None,
            proxy_authorization: None,
        }
    }

    #[test]
    fn requests_lose_hop_by_hop_fields_and_get_via_and_our_framing() {
        let head = req("POST http://example.com/a HTTP/1.1\r\nHost: example.com\r\nConnection: x-secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nTransfer-Encoding: gzip, chunked\r\nAccept: */*\r\n\r\n");
        let out = String::from_utf8(request(&head, &hop(Framing::Chunked))).unwrap();
        assert!(out.starts_with("POST /a HTTP/1.1\r\nHost: example.com\r\n"), "{out}");
        assert!(out.contains("Accept: */*\r\n"));
        assert!(out.contains("Via: 1.1 tunnelkit\r\n"));
        assert!(out.contains("Transfer-Encoding: gzip, chunked\r\n"));
        for gone in ["X-Secret", "Keep-Alive", "Connection"] {
            assert!(!out.contains(gone), "{gone} forwarded: {out}");
        }
    }

    #[test]
    fn a_parent_gets_absolute_form_and_our_credentials() {
        let head = req(
            "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: client\r\n\r\n",
        );
        let h = RequestHop { absolute: true, proxy_authorization: Some("Basic b3Vy"), ..hop(Framing::Empty) };
        let out = String::from_utf8(request(&head, &h)).unwrap();
        assert!(out.starts_with("GET http://example.com/a HTTP/1.1\r\n"), "{out}");
        assert!(out.contains("Proxy-Authorization: Basic b3Vy\r\n"));
        assert!(!out.contains("client"), "the client's proxy credentials are hop-by-hop: {out}");
    }

    #[test]
    fn max_forwards_is_replaced_by_the_decremented_value() {
        let head =
            req("OPTIONS http://example.com/ HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 3\r\n\r\n");
        let out =
            String::from_utf8(request(&head, &RequestHop { max_forwards: Some(2), ..hop(Framing::Empty) }))
                .unwrap();
        assert!(out.contains("Max-Forwards: 2\r\n") && !out.contains("Max-Forwards: 3"), "{out}");
    }

    #[test]
    fn responses_keep_content_length_only_where_it_describes_the_representation() {
        let get = req("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n");
        let head_req = req("HEAD http://a/ HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        let to_head =
            String::from_utf8(response(&head_req, &r, Framing::Empty, Encode::Identity, true)).unwrap();
        assert!(to_head.contains("Content-Length: 10\r\n"), "{to_head}");
        let closed = resp("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n");
        let rechunked =
            String::from_utf8(response(&get, &closed, Framing::Close, Encode::Chunked, true)).unwrap();
        assert!(rechunked.contains("Transfer-Encoding: chunked\r\n"), "{rechunked}");
        assert!(rechunked.contains("Content-Encoding: gzip\r\n"));
        let old = req("GET http://a/ HTTP/1.0\r\nHost: a\r\n\r\n");
        let kept =
            String::from_utf8(response(&old, &r, Framing::Length(10), Encode::Identity, true)).unwrap();
        assert!(kept.contains("Connection: keep-alive\r\n"), "{kept}");
    }

    #[test]
    fn switching_protocols_keeps_the_upgrade() {
        let r = resp(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
             Keep-Alive: 1\r\nSec-WebSocket-Accept: x\r\n\r\n",
        );
        let out = String::from_utf8(switching_protocols(&r)).unwrap();
        assert!(out.contains("Upgrade: websocket\r\n") && out.contains("Sec-WebSocket-Accept: x\r\n"));
        assert!(out.ends_with("Connection: Upgrade\r\n\r\n") && !out.contains("Keep-Alive"), "{out}");
    }

    #[test]
    fn trace_echo_leaves_out_credentials() {
        let head =
            req("TRACE http://a/ HTTP/1.1\r\nHost: a\r\nCookie: c\r\nAuthorization: x\r\nX-Y: z\r\n\r\n");
        let out = String::from_utf8(trace_echo(&head)).unwrap();
        assert!(out.contains("X-Y: z\r\n") && !out.contains("Cookie") && !out.contains("Authorization"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nContent-Type: message/http\r\n"));
    }
}
