//! Sending a forwarded request upstream and reading the answer's head: a pooled connection or a new
//! one, the request head and body, `Expect: 100-continue`, interim responses, and one retry when a
//! reused connection turns out dead before any response byte (only for requests safe to send twice).

use std::time::Duration;

use super::exchange::{ClientConn, Exchange, Shared};
use super::live::Timeouts;
use super::pool::{PoolKey, UpConn};
use crate::http::body::{copy_body_tapped, BodyError, BufIo, Encode, Tap};
use crate::http::head::{self, Framing, RequestHead, ResponseHead};
use crate::http::{connection_tokens, is_hop_by_hop, write};
use crate::net::{write_all_within, DialError, Dialer, Purpose, Target, WriteDeadline};

/// Why a request got no usable response head.
pub(super) enum SendFailure {
    /// No connection to the next hop.
    Dial(DialError),
    /// Nothing came back on the connection (dead pooled connection): safe to retry idempotent requests.
    Retryable,
    /// The upstream broke the protocol.
    Upstream(String),
    /// The upstream sent nothing, or read nothing, for too long.
    Timeout,
    /// The client's request body was bad (status, detail).
    Client(u16, String),
    /// The client went away.
    ClientGone,
    /// TLS with an intercepted origin failed (words naming the reason and the fix).
    Tls(String),
}

/// A request sent, and the head of its final answer.
pub(super) struct Sent {
    pub up: UpConn,
    pub resp: ResponseHead,
    /// Request body bytes sent.
    pub body_up: u64,
    /// The answer came before the body was sent (Expect: 100-continue refused): the body the client
    /// may still send is unread, so both connections must close after the answer.
    pub early: bool,
}

impl SendFailure {
    /// The status, RFC 9209 error type and detail the client is answered with.
    pub(super) fn describe(self) -> (u16, &'static str, String) {
        match self {
            SendFailure::Retryable => {
                (502, "connection_terminated", "upstream closed the connection without answering".into())
            }
            SendFailure::Upstream(why) => {
                (502, "http_protocol_error", format!("invalid upstream response: {why}"))
            }
            SendFailure::Timeout => (504, "http_response_timeout", "upstream did not answer in time".into()),
            SendFailure::Client(status, detail) => (status, "http_request_error", detail),
            SendFailure::Dial(e) => (e.http_status(), e.proxy_status_error(), e.to_string()),
            SendFailure::ClientGone => (502, "proxy_internal_error", "client went away".into()),
            SendFailure::Tls(why) => (502, "tls_certificate_error", why),
        }
    }
}

/// Sends `out` (the request head) and the body, and reads the final response head. A reused
/// connection found dead gets one retry on a new one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_with_retry(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    head: &RequestHead,
    framing: Framing,
    upgrade: bool,
    key: &PoolKey,
    target: &Target,
    mut out: Vec<u8>,
) -> Result<Sent, SendFailure> {
    let shared = ex.shared;
    let expect_continue = head::has_token(&head.headers, "expect", "100-continue") && head.minor >= 1;
    let retry_allowed = framing == Framing::Empty && head::is_idempotent(&head.method) && !upgrade;
    let mut attempt = 0;
    let mut capture = ex.capture();
    loop {
        attempt += 1;
        let (mut up, reused) = acquire(shared, key, target, attempt > 1).await?;
        tracing::debug!(%target, reused, "{} {}: sending upstream", head.method, head.target);
        // Only a request that may be retried needs its head kept for a second attempt.
        let head_bytes = if retry_allowed { out.clone() } else { std::mem::take(&mut out) };
        let tap = capture.as_mut().map(|c| c as &mut dyn Tap);
        match send_and_receive(
            &ex.live.timeouts,
            client,
            &mut up,
            framing,
            head_bytes,
            expect_continue,
            head,
            tap,
        )
        .await
        {
            Ok((resp, body_up, early)) => {
                if let Some(body) = capture {
                    ex.note(|f| f.request_body = body);
                }
                return Ok(Sent { up, resp, body_up, early });
            }
            Err(SendFailure::Retryable) if reused && retry_allowed && attempt == 1 => {
                tracing::debug!(%target, "pooled connection was dead; retrying on a new one");
                metrics::counter!("tunnelkit_proxy_upstream_retries_total").increment(1);
            }
            Err(f) => return Err(f),
        }
    }
}

/// A pooled connection, or a new one. `fresh` skips the pool (the retry after a dead reused one).
async fn acquire(
    shared: &Shared,
    key: &PoolKey,
    target: &Target,
    fresh: bool,
) -> Result<(UpConn, bool), SendFailure> {
    if !fresh {
        if let Some(c) = shared.pool.checkout(key) {
            metrics::counter!("tunnelkit_proxy_upstream_connections_total", "kind" => "reused").increment(1);
            return Ok((c, true));
        }
    }
    let dial = |purpose| async move { shared.dialer.dial(target, purpose).await.map_err(SendFailure::Dial) };
    let stream = match (&shared.parent, key, &shared.interceptor) {
        (Some(parent), PoolKey::Parent, _) => {
            match parent.connect_proxy().await.map_err(SendFailure::Dial)? {
                Some(s) => s,
                None => dial(Purpose::Http).await?,
            }
        }
        // The CONNECT that this intercepted connection came from passed the tunnel port list.
        (_, PoolKey::Tls(_, sni), Some(interceptor)) => {
            let tcp = dial(Purpose::Tunnel).await?;
            interceptor.connect_origin(target, sni.as_deref(), tcp).await.map_err(SendFailure::Tls)?
        }
        _ => dial(Purpose::Http).await?,
    };
    tracing::debug!(%target, "dialled a new upstream connection");
    metrics::counter!("tunnelkit_proxy_upstream_connections_total", "kind" => "new").increment(1);
    Ok((BufIo::new(stream), false))
}

/// Sends head and body, then reads the final response head (relaying interim 1xx to the client).
/// Returns the head, the body bytes sent, and whether the answer came before the body.
#[allow(clippy::too_many_arguments)]
async fn send_and_receive(
    timeouts: &Timeouts,
    client: &mut ClientConn,
    up: &mut UpConn,
    framing: Framing,
    out: Vec<u8>,
    expect_continue: bool,
    head: &RequestHead,
    tap: Option<&mut dyn Tap>,
) -> Result<(ResponseHead, u64, bool), SendFailure> {
    let idle = timeouts.upstream;
    let client_idle = timeouts.idle;
    let body_error = |e: BodyError| match e {
        BodyError::Malformed(m) => SendFailure::Client(400, m),
        BodyError::Read(_) => SendFailure::ClientGone,
        BodyError::Timeout => SendFailure::Client(408, "request body not received in time".into()),
        BodyError::Write(e) if e.kind() == std::io::ErrorKind::TimedOut => SendFailure::Timeout,
        BodyError::Write(_) => SendFailure::Retryable,
    };
    let encode = if framing == Framing::Chunked { Encode::Chunked } else { Encode::Identity };
    // With `Expect: 100-continue` the head goes alone and the body waits for the origin's verdict;
    // otherwise the head is coalesced with the first body bytes.
    let first = if expect_continue && framing != Framing::Empty {
        write_all_within(&mut up.io, &out, idle).await.map_err(|_| SendFailure::Retryable)?;
        // Wait briefly for the origin's verdict; origins that ignore Expect get the body anyway.
        match tokio::time::timeout(Duration::from_secs(1), read_response_head(up, idle)).await {
            Ok(Ok(resp)) if resp.status == 100 => {}
            Ok(Ok(resp)) if resp.status > 100 && resp.status < 200 => {}
            Ok(Ok(resp)) => return Ok((resp, 0, true)),
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
        write_all_within(&mut client.io, b"HTTP/1.1 100 Continue\r\n\r\n", client_idle)
            .await
            .map_err(|_| SendFailure::ClientGone)?;
        Vec::new()
    } else {
        out
    };
    // An origin that stops reading the upload must not hold the exchange forever.
    let mut dst = WriteDeadline::new(&mut up.io, idle);
    let body_up = copy_body_tapped(client, framing, &mut dst, encode, first, client_idle, tap)
        .await
        .map_err(body_error)?;
    loop {
        let resp = read_response_head(up, idle).await?;
        if resp.status >= 200 || resp.status == 101 {
            return Ok((resp, body_up, false));
        }
        // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2), without hop-by-hop fields.
        if head.minor >= 1 && resp.status != 100 {
            let mut interim = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).into_bytes();
            let tokens = connection_tokens(head::values(&resp.headers, "connection"));
            for h in &resp.headers {
                if !is_hop_by_hop(&h.name, &tokens, false) {
                    write::header(&mut interim, &h.name, &h.value);
                }
            }
            interim.extend_from_slice(b"\r\n");
            write_all_within(&mut client.io, &interim, client_idle)
                .await
                .map_err(|_| SendFailure::ClientGone)?;
        }
    }
}

async fn read_response_head(up: &mut UpConn, idle: Duration) -> Result<ResponseHead, SendFailure> {
    let mut got_any = !up.buf.is_empty();
    loop {
        if !up.buf.is_empty() {
            match head::parse_response(&up.buf) {
                Ok(Some((resp, len))) => {
                    let _ = up.buf.split_to(len);
                    return Ok(resp);
                }
                Ok(None) => {}
                Err(e) => return Err(SendFailure::Upstream(e.to_string())),
            }
        }
        match up.fill_within(idle).await {
            Ok(0) if !got_any => return Err(SendFailure::Retryable),
            Ok(0) => return Err(SendFailure::Upstream("response head cut short".into())),
            Ok(_) => got_any = true,
            Err(BodyError::Timeout) => return Err(SendFailure::Timeout),
            Err(_) if !got_any => return Err(SendFailure::Retryable),
            Err(e) => return Err(SendFailure::Upstream(e.to_string())),
        }
    }
}
