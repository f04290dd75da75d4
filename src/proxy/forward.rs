//! Absolute-form forwarding (`GET http://host/path HTTP/1.1`) and WebSocket upgrades.
//!
//! The request is re-written for the next hop (origin-form to an origin, absolute-form to a parent
//! proxy), hop-by-hop fields are dropped by the one rule in [`crate::http::hop`], `Via` is added, and
//! bodies are streamed in both directions with their framing re-done per hop. Sending (with one
//! retry on a dead pooled connection) lives in [`super::upstream`]; relaying the answer in
//! [`super::response`].

use super::pool::PoolKey;
use super::response::{self, RelayError};
use super::server::{metric_method, Client, Exchange, Next};
use super::upstream::{self, Failure, Sent};
use crate::http::head::{self, Framing, RequestHead};
use crate::http::{connection_tokens, is_hop_by_hop, write};
use crate::net::{DialError, Purpose, Target};

/// A parsed absolute-form `http://` request target.
struct AbsoluteUri<'a> {
    authority: &'a str,
    target: Target,
    /// Origin-form: always starts with `/`.
    path: String,
}

fn parse_absolute(uri: &str) -> Result<AbsoluteUri<'_>, String> {
    let rest = match uri.get(..7) {
        Some(s) if s.eq_ignore_ascii_case("http://") => &uri[7..],
        _ if uri.starts_with('/') || uri == "*" => {
            return Err("this is a proxy: send absolute-form requests (http://host/path) or CONNECT".into())
        }
        _ => return Err("only http:// URLs are forwarded; use CONNECT for https".into()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err("credentials in the URL are not forwarded".into());
    }
    let target = Target::parse_with_default_port(authority, 80).map_err(|e| e.to_string())?;
    let path = &rest[end..];
    let path = match path.find('#') {
        Some(i) => &path[..i],
        None => path,
    };
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Ok(AbsoluteUri { authority, target, path })
}

/// True if the client wants the connection kept after this exchange.
fn client_wants_keep_alive(head: &RequestHead) -> bool {
    let close = head::has_token(&head.headers, "connection", "close");
    if head.minor >= 1 {
        !close
    } else {
        head::has_token(&head.headers, "connection", "keep-alive")
            || head::has_token(&head.headers, "proxy-connection", "keep-alive")
    }
}

/// What Max-Forwards (RFC 9110 §7.6.2) asks of an OPTIONS or TRACE request.
enum MaxForwards {
    /// Not present, or not an OPTIONS/TRACE request: forward as is.
    Absent,
    /// At 0: the proxy itself is the final recipient.
    Answer,
    /// Forward with this (decremented) value.
    Forward(u32),
}

fn max_forwards(head: &RequestHead) -> MaxForwards {
    if head.method != "OPTIONS" && head.method != "TRACE" {
        return MaxForwards::Absent;
    }
    let value = head::value(&head.headers, "max-forwards");
    match value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(0) => MaxForwards::Answer,
        Some(n) => MaxForwards::Forward(n - 1),
        None => MaxForwards::Absent,
    }
}

pub(super) async fn handle(
    ex: &Exchange<'_>,
    client: &mut Client,
    head: &RequestHead,
    framing: Framing,
) -> Next {
    let shared = ex.shared;
    let uri = match parse_absolute(&head.target) {
        Ok(u) => u,
        Err(e) => return ex.fail(client, 400, Some("http_request_error"), &e).await,
    };
    let max_forwards = match max_forwards(head) {
        MaxForwards::Answer => return response::answer_max_forwards(ex, client, head).await,
        MaxForwards::Forward(n) => Some(n),
        MaxForwards::Absent => None,
    };
    let upgrade = crate::http::is_upgrade_request(&head.method, head.headers.as_slice());
    let keep_client = client_wants_keep_alive(head);
    let out = request_head(ex, head, &uri, framing, upgrade, max_forwards);

    let key = if shared.parent.is_some() { PoolKey::Parent } else { PoolKey::Origin(uri.target.clone()) };
    if let Some(parent) = &shared.parent {
        // Requests handed to a parent proxy as they are still obey our own policy.
        if let Err(e) = parent.check(&uri.target, Purpose::Http) {
            return ex.dial_failed(client, &e).await;
        }
    }
    let sent = upstream::send_with_retry(ex, client, head, framing, upgrade, &key, &uri.target, out).await;
    let Sent { mut up, resp, body_up, early } = match sent {
        Ok(x) => x,
        Err(Failure::Dial(e)) => return ex.dial_failed(client, &e).await,
        Err(Failure::ClientGone) => return Next::Close,
        Err(f) => {
            let (status, kind, detail) = f.describe();
            return ex.fail(client, status, Some(kind), &detail).await;
        }
    };
    if early {
        // The origin answered before we sent the body (Expect: 100-continue refused): relay the
        // answer and close both sides, since the body the client may still send is unread.
        let status = resp.status;
        let down = response::deliver(shared, client, &mut up, head, resp, false).await.map_or(0, |r| r.down);
        ex.log(status, 0, down, Some("expect_refused"));
        return Next::Close;
    }

    let status = resp.status;
    if status == 407 && shared.parent.is_some() {
        let target = uri.target.to_string();
        let e = DialError::ParentRefused { status, reason: resp.reason.clone(), target };
        return ex.dial_failed(client, &e).await;
    }
    if status == 101 {
        if upgrade {
            return response::finish_upgrade(ex, client, up, resp).await;
        }
        let detail = "upstream switched protocols although the request asked for no upgrade";
        return ex.fail(client, 502, Some("http_protocol_error"), detail).await;
    }
    let keep = keep_client && !shared.drain.is_triggered();
    let relayed = match response::deliver(shared, client, &mut up, head, resp, keep).await {
        Ok(r) => r,
        Err(RelayError::Refused(detail)) => {
            // Nothing had reached the client yet: it gets a 502 that names the problem.
            return ex.fail(client, 502, Some("http_protocol_error"), &detail).await;
        }
        Err(RelayError::Broken(e)) => {
            tracing::debug!(target = %head.target, "response cut short: {e}");
            ex.log(status, body_up, 0, Some("response_body_error"));
            return Next::Close;
        }
    };
    if relayed.up_reusable && !upgrade {
        shared.pool.checkin(key, up);
    }
    metrics::counter!("tunnelkit_proxy_requests_total", "method" => metric_method(&head.method), "status" => status.to_string())
        .increment(1);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "up").increment(body_up);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "down").increment(relayed.down);
    ex.log(status, body_up, relayed.down, None);
    if relayed.keep_client {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The request head for the next hop: origin-form to an origin, absolute-form to a parent proxy.
fn request_head(
    ex: &Exchange<'_>,
    head: &RequestHead,
    uri: &AbsoluteUri<'_>,
    framing: Framing,
    upgrade: bool,
    max_forwards: Option<u32>,
) -> Vec<u8> {
    let parent = ex.shared.parent.as_ref();
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    if parent.is_some() {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(uri.authority.as_bytes());
    }
    out.extend_from_slice(uri.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write::header(&mut out, "Host", uri.authority.as_bytes());
    let tokens = connection_tokens(head::values(&head.headers, "connection"));
    for h in &head.headers {
        let n = h.name.as_str();
        if is_hop_by_hop(n, &tokens, upgrade)
            || n.eq_ignore_ascii_case("host")
            || n.eq_ignore_ascii_case("content-length")
            || (max_forwards.is_some() && n.eq_ignore_ascii_case("max-forwards"))
        {
            continue;
        }
        write::header(&mut out, n, &h.value);
    }
    if let Some(n) = max_forwards {
        write::header(&mut out, "Max-Forwards", n.to_string().as_bytes());
    }
    write::header(&mut out, "Via", format!("1.{} tunnelkit", head.minor).as_bytes());
    match framing {
        Framing::Length(n) => write::header(&mut out, "Content-Length", n.to_string().as_bytes()),
        Framing::Chunked => {
            write::transfer_encoding(&mut out, &head::content_transfer_codings(&head.headers), true)
        }
        Framing::Empty | Framing::Close => {}
    }
    if upgrade {
        write::header(&mut out, "Connection", b"Upgrade");
    }
    if let Some(auth) = parent.and_then(|p| p.inner().proxy_authorization()) {
        write::header(&mut out, "Proxy-Authorization", auth.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris() {
        let u = parse_absolute("http://Example.com:8080/a?b#frag").unwrap();
        assert_eq!(u.authority, "Example.com:8080");
        assert_eq!(u.target.to_string(), "example.com:8080");
        assert_eq!(u.path, "/a?b");
        assert_eq!(parse_absolute("HTTP://a").unwrap().path, "/");
        assert_eq!(parse_absolute("http://a?x=1").unwrap().path, "/?x=1");
        assert!(parse_absolute("/index.html").is_err());
        assert!(parse_absolute("https://a/").is_err());
        assert!(parse_absolute("http://user:pw@a/").is_err());
        assert!(parse_absolute("http:///x").is_err());
    }
}
