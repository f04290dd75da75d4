//! Absolute-form forwarding (`GET http://host/path HTTP/1.1`) and WebSocket upgrades.
//!
//! The request is re-written for the next hop (origin-form to an origin, absolute-form to a parent
//! proxy), hop-by-hop fields are dropped by the one rule in [`crate::http::hop`], `Via` is added, and
//! bodies are streamed in both directions with their framing re-done per hop. Sending (with one
//! retry on a dead pooled connection) lives in [`super::upstream`]; relaying the answer in
//! [`super::response`].

use super::exchange::{metric_method, ClientConn, Exchange, Next, Origin};
use super::pool::PoolKey;
use super::response::{self, RelayError};
use super::upstream::{self, SendFailure, Sent};
use crate::http::head::{self, Framing, RequestHead};
use crate::http::next_hop::{self, RequestHop};
use crate::net::{check_unresolved, DialError, Purpose, Target};

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

/// A request ready to go on: where to, and the head to send.
struct Plan<'a> {
    uri: AbsoluteUri<'a>,
    /// The request asks for a protocol upgrade.
    upgrade: bool,
    /// The client wants its connection kept after this exchange.
    keep_client: bool,
    /// Pooled connections to the origin, or to the parent proxy.
    key: PoolKey,
    /// The head for the next hop (taken when it is sent).
    out: Vec<u8>,
}

/// Forwards one absolute-form request: parse it, send it (one retry on a dead pooled connection),
/// relay the answer.
pub(super) async fn handle(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    head: &RequestHead,
    framing: Framing,
) -> Next {
    if let Some(why) = ex.origin.and_then(|o| o.refused.as_deref()) {
        return ex.fail(client, 502, Some("tls_certificate_error"), why).await;
    }
    let mut plan = match plan(ex, head, framing) {
        Ok(p) => p,
        Err(Refusal::Answer) => return response::answer_max_forwards(ex, client, head).await,
        Err(Refusal::BadRequest(e)) => return ex.fail(client, 400, Some("http_request_error"), &e).await,
        Err(Refusal::Denied(e)) => return ex.dial_failed(client, &e).await,
    };
    let out = std::mem::take(&mut plan.out);
    let sent =
        upstream::send_with_retry(ex, client, head, framing, plan.upgrade, &plan.key, &plan.uri.target, out)
            .await;
    match sent {
        Ok(sent) => relay(ex, client, head, sent, plan).await,
        Err(SendFailure::Dial(e)) => ex.dial_failed(client, &e).await,
        Err(SendFailure::ClientGone) => Next::Close,
        Err(f) => {
            let (status, kind, detail) = f.describe();
            ex.fail(client, status, Some(kind), &detail).await
        }
    }
}

/// Why a request is not sent on.
enum Refusal {
    /// Max-Forwards reached 0: the proxy answers itself.
    Answer,
    /// The request target is not one we forward (400).
    BadRequest(String),
    /// Our policy refuses the destination.
    Denied(DialError),
}

/// Reads the request target and options and builds the head for the next hop.
fn plan<'a>(ex: &Exchange<'a>, head: &'a RequestHead, framing: Framing) -> Result<Plan<'a>, Refusal> {
    let shared = ex.shared;
    if let Some(origin) = ex.origin {
        return plan_intercepted(head, framing, origin);
    }
    let uri = parse_absolute(&head.target).map_err(Refusal::BadRequest)?;
    let max_forwards = match max_forwards(head) {
        MaxForwards::Answer => return Err(Refusal::Answer),
        MaxForwards::Forward(n) => Some(n),
        MaxForwards::Absent => None,
    };
    if shared.parent.is_some() {
        // Requests handed to a parent proxy as they are still obey our own policy.
        check_unresolved(&ex.live.policy, &uri.target, Purpose::Http).map_err(Refusal::Denied)?;
    }
    let upgrade = crate::http::is_upgrade_request(&head.method, head.headers.as_slice());
    let authorization = shared.parent.as_ref().and_then(|p| p.proxy_authorization());
    let hop = RequestHop {
        authority: uri.authority,
        path: &uri.path,
        absolute: shared.parent.is_some(),
        framing,
        upgrade,
        max_forwards,
        proxy_authorization: authorization.as_deref(),
    };
    let out = next_hop::request(head, &hop);
    let key = if shared.parent.is_some() { PoolKey::Parent } else { PoolKey::Origin(uri.target.clone()) };
    Ok(Plan { upgrade, keep_client: client_wants_keep_alive(head), key, out, uri })
}

/// A request inside an intercepted CONNECT: origin-form, to the CONNECT's origin over TLS (never
/// to a parent proxy as a whole request: the dialer already reaches the origin through it).
fn plan_intercepted<'a>(
    head: &'a RequestHead,
    framing: Framing,
    origin: &'a Origin,
) -> Result<Plan<'a>, Refusal> {
    let origin_form = head.target.starts_with('/') || (head.target == "*" && head.method == "OPTIONS");
    if !origin_form {
        return Err(Refusal::BadRequest(format!(
            "inside an intercepted connection requests are origin-form (/path), not {:?}",
            head.target
        )));
    }
    let max_forwards = match max_forwards(head) {
        MaxForwards::Answer => return Err(Refusal::Answer),
        MaxForwards::Forward(n) => Some(n),
        MaxForwards::Absent => None,
    };
    let upgrade = crate::http::is_upgrade_request(&head.method, head.headers.as_slice());
    let hop = RequestHop {
        authority: &origin.authority,
        path: &head.target,
        absolute: false,
        framing,
        upgrade,
        max_forwards,
        proxy_authorization: None,
    };
    let out = next_hop::request(head, &hop);
    let uri = AbsoluteUri {
        authority: &origin.authority,
        target: origin.target.clone(),
        path: head.target.clone(),
    };
    let key = PoolKey::Tls(origin.target.clone(), origin.sni.clone());
    Ok(Plan { upgrade, keep_client: client_wants_keep_alive(head), key, out, uri })
}

/// Relays the upstream's answer: the response (pooling the upstream connection if it ended cleanly),
/// a protocol switch, or the refusal of a held-back body.
async fn relay(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    head: &RequestHead,
    sent: Sent,
    plan: Plan<'_>,
) -> Next {
    let shared = ex.shared;
    let Sent { mut up, resp, body_up, early } = sent;
    let Plan { uri, upgrade, keep_client, key, .. } = plan;
    let status = resp.status;
    if early {
        // The origin answered before we sent the body (Expect: 100-continue refused): relay the
        // answer and close both sides, since the body the client may still send is unread.
        let down = response::deliver(ex, client, &mut up, head, resp, false).await.map_or(0, |r| r.down);
        ex.log(status, 0, down, Some("expect_refused"));
        return Next::Close;
    }
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
    let relayed = match response::deliver(ex, client, &mut up, head, resp, keep).await {
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
    if ex.origin.is_some() {
        metrics::counter!("tunnelkit_proxy_intercepted_requests_total", "method" => metric_method(&head.method), "status" => status.to_string())
            .increment(1);
    }
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "up").increment(body_up);
    metrics::counter!("tunnelkit_proxy_bytes_total", "direction" => "down").increment(relayed.down);
    ex.log(status, body_up, relayed.down, None);
    if relayed.keep_client {
        Next::KeepAlive
    } else {
        Next::Close
    }
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
