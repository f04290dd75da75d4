//! Absolute-form forwarding (`GET http://host/path HTTP/1.1`) and WebSocket upgrades.
//!
//! The request is re-written for the next hop (origin-form to an origin, absolute-form to a parent
//! proxy), hop-by-hop fields are dropped by the one rule in [`crate::http::hop`], `Via` is added, and
//! bodies are streamed in both directions with their framing re-done per hop. A response that the
//! origin delimits by closing is re-framed as chunked for HTTP/1.1 clients, so it arrives whole and
//! the client connection can be kept.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::pool::{PoolKey, UpConn};
use super::server::{metric_method, Client, Exchange, Next, Shared};
use crate::http::body::{copy_body, BodyError, BufIo, Encode};
use crate::http::head::{self, Framing, RequestHead, ResponseHead};
use crate::http::{connection_tokens, is_hop_by_hop};
use crate::net::{relay::Relay, DialError, Dialer, Purpose, Target};

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

pub(super) async fn handle(
    ex: &Exchange<'_>,
    client: &mut Client,
    head: &RequestHead,
    framing: Framing,
) -> Next {
    let shared = ex.shared;
    let uri = match parse_absolute(&head.target) {
        Ok(u) => u,
        Err(e) => {
            return ex.fail(client, 400, Some("http_request_error"), &e).await;
        }
    };
    // Max-Forwards (RFC 9110 §7.6.2): at 0 the proxy itself is the final recipient.
    let mut max_forwards = None;
    if head.method == "OPTIONS" || head.method == "TRACE" {
        if let Some(v) = head::value(&head.headers, "max-forwards") {
            match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
                Some(0) => return answer_max_forwards(ex, client, head).await,
                Some(n) => max_forwards = Some(n - 1),
                None => {}
            }
        }
    }
    let upgrade = head.method == "GET"
        && head::has_token(&head.headers, "connection", "upgrade")
        && head::value(&head.headers, "upgrade").is_some();
    let keep_client = client_wants_keep_alive(head);
    let via_parent = shared.parent.is_some();

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    if via_parent {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(uri.authority.as_bytes());
    }
    out.extend_from_slice(uri.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(uri.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
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
        push_header(&mut out, n, &h.value);
    }
    if let Some(n) = max_forwards {
        push_header(&mut out, "Max-Forwards", n.to_string().as_bytes());
    }
    push_header(&mut out, "Via", format!("1.{} tunnelkit", head.minor).as_bytes());
    match framing {
        Framing::Length(n) => push_header(&mut out, "Content-Length", n.to_string().as_bytes()),
        Framing::Chunked => push_header(&mut out, "Transfer-Encoding", b"chunked"),
        Framing::Empty | Framing::Close => {}
    }
    if upgrade {
        push_header(&mut out, "Connection", b"Upgrade");
    }
    if via_parent {
        if let Some(auth) = shared.parent.as_ref().and_then(|p| p.inner().proxy_authorization()) {
            push_header(&mut out, "Proxy-Authorization", auth.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");

    let key = if via_parent { PoolKey::Parent } else { PoolKey::Origin(uri.target.clone()) };
    if let Some(parent) = &shared.parent {
        // Requests handed to a parent proxy as they are still obey our own policy.
        if let Err(e) = parent.check(&uri.target, Purpose::Http) {
            return ex.dial_failed(client, &e).await;
        }
    }
    let expect_continue = head::has_token(&head.headers, "expect", "100-continue") && head.minor >= 1;
    let idempotent = matches!(head.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE");
    let retry_allowed = framing == Framing::Empty && idempotent && !upgrade;

    // Send the request; a reused connection that turns out dead before any response byte gets one
    // retry on a fresh connection (only for requests that are safe to send twice).
    let mut attempt = 0;
    let (mut up, resp, body_up) = loop {
        attempt += 1;
        let (mut up, reused) = match acquire(shared, &key, &uri.target, attempt > 1).await {
            Ok(x) => x,
            Err(e) => return ex.dial_failed(client, &e).await,
        };
        match send_and_receive(shared, client, &mut up, framing, out.clone(), expect_continue, head).await {
            Ok((resp, body_up)) => break (up, resp, body_up),
            Err(Failure::Retryable) if reused && retry_allowed && attempt == 1 => {
                metrics::counter!("tunnelkit_proxy_upstream_retries_total").increment(1);
                continue;
            }
            Err(Failure::Retryable) => {
                let detail = "upstream closed the connection without answering";
                return ex.fail(client, 502, Some("connection_terminated"), detail).await;
            }
            Err(Failure::Upstream(why)) => {
                let detail = format!("invalid upstream response: {why}");
                return ex.fail(client, 502, Some("http_protocol_error"), &detail).await;
            }
            Err(Failure::Timeout) => {
                let detail = "upstream did not answer in time";
                return ex.fail(client, 504, Some("http_response_timeout"), detail).await;
            }
            Err(Failure::Client(status, detail)) => {
                return ex.fail(client, status, Some("http_request_error"), &detail).await;
            }
            Err(Failure::ClientGone) => return Next::Close,
            Err(Failure::Answered(resp)) => {
                // The origin answered before we sent the body (Expect: 100-continue refused): relay the
                // answer and close both sides, since the body the client may still send is unread.
                let _ = relay_response(shared, client, &mut up, head, resp, false).await;
                ex.log(0, 0, 0, Some("expect_refused"));
                return Next::Close;
            }
        }
    };

    let status = resp.status;
    if upgrade && status == 101 {
        return finish_upgrade(ex, client, up, resp).await;
    }
    let keep = keep_client && !shared.drain.is_triggered();
    let result = relay_response(shared, client, &mut up, head, resp, keep).await;
    let (down, client_keep, up_reusable) = match result {
        Ok(x) => x,
        Err(_) => {
            ex.log(status, body_up, 0, Some("response_body_error"));
            return Next::Close;
        }
    };
    if up_reusable && !upgrade {
        shared.pool.checkin(key, up);
    }
    metrics::counter!("tunnelkit_proxy_requests_total", "method" => metric_method(&head.method), "status" => status.to_string())
        .increment(1);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "up").increment(body_up);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "down").increment(down);
    ex.log(status, body_up, down, None);
    if client_keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A pooled connection, or a new one. `fresh` skips the pool (the retry after a dead reused one).
async fn acquire(
    shared: &Shared,
    key: &PoolKey,
    target: &Target,
    fresh: bool,
) -> Result<(UpConn, bool), DialError> {
    if !fresh {
        if let Some(c) = shared.pool.checkout(key) {
            metrics::counter!("tunnelkit_proxy_upstream_connections_total", "kind" => "reused").increment(1);
            return Ok((c, true));
        }
    }
    let stream = match (&shared.parent, key) {
        (Some(parent), PoolKey::Parent) => match parent.inner().connect_proxy().await? {
            Some(s) => s,
            None => parent.dial(target, Purpose::Http).await?,
        },
        _ => shared.dialer.dial(target, Purpose::Http).await?,
    };
    metrics::counter!("tunnelkit_proxy_upstream_connections_total", "kind" => "new").increment(1);
    Ok((BufIo::new(stream), false))
}

enum Failure {
    /// Nothing came back on the connection (dead pooled connection): safe to retry idempotent requests.
    Retryable,
    /// The upstream broke the protocol.
    Upstream(String),
    /// The upstream sent nothing for too long.
    Timeout,
    /// The client's request body was bad (status, detail).
    Client(u16, String),
    /// The client went away.
    ClientGone,
    /// A final answer arrived before the request body was sent (Expect: 100-continue refused).
    Answered(ResponseHead),
}

/// Sends head and body, then reads the final response head (relaying interim 1xx to the client).
async fn send_and_receive(
    shared: &Shared,
    client: &mut Client,
    up: &mut UpConn,
    framing: Framing,
    out: Vec<u8>,
    expect_continue: bool,
    head: &RequestHead,
) -> Result<(ResponseHead, u64), Failure> {
    let idle = shared.settings.upstream_timeout;
    let client_idle = shared.settings.idle_timeout;
    let body_error = |e: BodyError| match e {
        BodyError::Malformed(m) => Failure::Client(400, m),
        BodyError::Read(_) => Failure::ClientGone,
        BodyError::Timeout => Failure::Client(408, "request body not received in time".into()),
        BodyError::Write(_) => Failure::Retryable,
    };
    let body_up;
    if expect_continue && framing != Framing::Empty {
        up.io.write_all(&out).await.map_err(|_| Failure::Retryable)?;
        // Wait briefly for the origin's verdict; origins that ignore Expect get the body anyway.
        match tokio::time::timeout(Duration::from_secs(1), read_response_head(up, idle)).await {
            Ok(Ok(resp)) if resp.status == 100 => {}
            Ok(Ok(resp)) if resp.status > 100 && resp.status < 200 => {}
            Ok(Ok(resp)) => return Err(Failure::Answered(resp)),
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
        client.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| Failure::ClientGone)?;
        body_up = copy_body(client, framing, &mut up.io, encode_for(framing), Vec::new(), client_idle)
            .await
            .map_err(body_error)?;
    } else {
        body_up = copy_body(client, framing, &mut up.io, encode_for(framing), out, client_idle)
            .await
            .map_err(body_error)?;
    }
    loop {
        let resp = read_response_head(up, idle).await?;
        if resp.status >= 200 || resp.status == 101 {
            return Ok((resp, body_up));
        }
        // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2).
        if head.minor >= 1 && resp.status != 100 {
            let mut interim = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).into_bytes();
            for h in &resp.headers {
                push_header(&mut interim, &h.name, &h.value);
            }
            interim.extend_from_slice(b"\r\n");
            client.io.write_all(&interim).await.map_err(|_| Failure::ClientGone)?;
        }
    }
}

fn encode_for(framing: Framing) -> Encode {
    if framing == Framing::Chunked {
        Encode::Chunked
    } else {
        Encode::Identity
    }
}

async fn read_response_head(up: &mut UpConn, idle: Duration) -> Result<ResponseHead, Failure> {
    let mut got_any = !up.buf.is_empty();
    loop {
        if !up.buf.is_empty() {
            match head::parse_response(&up.buf) {
                Ok(Some((resp, len))) => {
                    let _ = up.buf.split_to(len);
                    return Ok(resp);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Upstream(e.to_string())),
            }
        }
        match up.fill_within(idle).await {
            Ok(0) if !got_any => return Err(Failure::Retryable),
            Ok(0) => return Err(Failure::Upstream("response head cut short".into())),
            Ok(_) => got_any = true,
            Err(BodyError::Timeout) => return Err(Failure::Timeout),
            Err(_) if !got_any => return Err(Failure::Retryable),
            Err(e) => return Err(Failure::Upstream(e.to_string())),
        }
    }
}

/// Writes the response head and streams the body to the client.
///
/// Returns (body bytes, keep the client connection, upstream connection reusable).
async fn relay_response(
    shared: &Shared,
    client: &mut Client,
    up: &mut UpConn,
    head: &RequestHead,
    resp: ResponseHead,
    keep_client: bool,
) -> Result<(u64, bool, bool), BodyError> {
    let framing = match head::response_framing(&resp, &head.method) {
        Ok(f) => f,
        Err(e) => {
            let msg = crate::http::response::error(502, Some("http_protocol_error"), &e.to_string(), &[]);
            let _ = client.io.write_all(&msg).await;
            return Err(BodyError::Malformed(e.to_string()));
        }
    };
    let client_11 = head.minor >= 1;
    let (encode, keep) = match framing {
        Framing::Close if client_11 => (Encode::Chunked, keep_client),
        Framing::Close => (Encode::Identity, false),
        Framing::Chunked if client_11 => (Encode::Chunked, keep_client),
        Framing::Chunked => (Encode::Identity, false),
        Framing::Length(_) | Framing::Empty => (Encode::Identity, keep_client),
    };
    let up_keep = framing != Framing::Close
        && !head::has_token(&resp.headers, "connection", "close")
        && (resp.minor >= 1 || head::has_token(&resp.headers, "connection", "keep-alive"));

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
            && !(bodiless && (head.method == "HEAD" || resp.status == 304))
        {
            continue;
        }
        push_header(&mut out, n, &h.value);
    }
    push_header(&mut out, "Via", format!("1.{} tunnelkit", resp.minor).as_bytes());
    match (framing, encode) {
        (Framing::Length(n), _) => push_header(&mut out, "Content-Length", n.to_string().as_bytes()),
        (Framing::Empty, _) if resp.status != 204 && resp.status != 304 && head.method != "HEAD" => {
            push_header(&mut out, "Content-Length", b"0")
        }
        (_, Encode::Chunked) if framing != Framing::Empty => {
            push_header(&mut out, "Transfer-Encoding", b"chunked")
        }
        _ => {}
    }
    if !keep {
        push_header(&mut out, "Connection", b"close");
    } else if !client_11 {
        push_header(&mut out, "Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    let down = copy_body(up, framing, &mut client.io, encode, out, shared.settings.upstream_timeout).await?;
    Ok((down, keep, up_keep))
}

/// Relays the 101 to the client and then bytes both ways until either side ends.
async fn finish_upgrade(ex: &Exchange<'_>, client: &mut Client, mut up: UpConn, resp: ResponseHead) -> Next {
    let shared = ex.shared;
    let mut out = format!("HTTP/1.1 101 {}\r\n", resp.reason).into_bytes();
    let tokens = connection_tokens(head::values(&resp.headers, "connection"));
    for h in &resp.headers {
        if !is_hop_by_hop(&h.name, &tokens, true) {
            push_header(&mut out, &h.name, &h.value);
        }
    }
    push_header(&mut out, "Connection", b"Upgrade");
    out.extend_from_slice(b"\r\n");
    // Frames the origin sent right after its 101 are already in our buffer.
    out.extend_from_slice(&std::mem::take(&mut up.buf));
    if client.io.write_all(&out).await.is_err() {
        return Next::Close;
    }
    let early = std::mem::take(&mut client.buf);
    if !early.is_empty() && up.io.write_all(&early).await.is_err() {
        return Next::Close;
    }
    metrics::counter!("tunnelkit_proxy_tunnels_total", "kind" => "upgrade").increment(1);
    metrics::gauge!("tunnelkit_proxy_tunnels_active").increment(1.0);
    let mut relay = Relay::new(&mut client.io, &mut up.io, Some(shared.settings.tunnel_idle_timeout));
    let result = (&mut relay).await;
    let stats = result.as_ref().map(|s| *s).unwrap_or_else(|_| relay.stats());
    metrics::gauge!("tunnelkit_proxy_tunnels_active").decrement(1.0);
    ex.log(101, stats.a_to_b, stats.b_to_a, Some("upgrade"));
    Next::Close
}

/// Max-Forwards reached zero: OPTIONS and TRACE are answered by the proxy itself.
async fn answer_max_forwards(ex: &Exchange<'_>, client: &mut Client, head: &RequestHead) -> Next {
    let msg = if head.method == "OPTIONS" {
        b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH, CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    } else {
        // TRACE echoes the request as received, minus credentials.
        let mut echo = format!("{} {} HTTP/1.{}\r\n", head.method, head.target, head.minor).into_bytes();
        for h in &head.headers {
            let n = h.name.as_str();
            if !n.eq_ignore_ascii_case("proxy-authorization")
                && !n.eq_ignore_ascii_case("authorization")
                && !n.eq_ignore_ascii_case("cookie")
            {
                push_header(&mut echo, n, &h.value);
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
    };
    let _ = client.io.write_all(&msg).await;
    ex.log(200, 0, msg.len() as u64, Some("max_forwards"));
    Next::Close
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
