//! Relaying an upstream answer to the client: the response head re-written for this hop (hop-by-hop
//! fields dropped, content transfer codings kept, framing re-done), the body streamed, and the
//! connection handed over to the relay after a `101 Switching Protocols`.
//!
//! A response that the origin delimits by closing is re-framed as chunked for HTTP/1.1 clients, so
//! it arrives whole and the client connection can be kept. Every write to the client is bounded by
//! the client idle timeout: a client that stops reading is dropped, not waited on forever.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::exchange::{ClientConn, Exchange, Next};
use super::pool::UpConn;
use crate::http::body::{copy_body_tapped, BodyError, Encode, Tap};
use crate::http::head::{self, Framing, RequestHead, ResponseHead};
use crate::http::next_hop;

use super::inspect::flow::Direction;
use super::inspect::ws_tap::{Messages, WsTap};
use crate::net::relay::{Relay, RelayStats};
use crate::net::{write_all_within, WriteDeadline};

/// A response relayed whole.
pub(super) struct Relayed {
    /// Body bytes sent to the client.
    pub down: u64,
    /// The client connection may carry another request.
    pub keep_client: bool,
    /// The upstream connection ended its message cleanly and may be pooled.
    pub up_reusable: bool,
}

/// Why a response was not relayed whole.
pub(super) enum RelayError {
    /// The upstream's answer is unusable and nothing reached the client yet: answer 502 with this.
    Refused(String),
    /// The exchange broke after bytes reached the client (or the client went away): close.
    Broken(BodyError),
}

/// Writes the response head and streams the body to the client (recording both when the
/// exchange records).
pub(super) async fn deliver(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    up: &mut UpConn,
    head: &RequestHead,
    resp: ResponseHead,
    keep_client: bool,
) -> Result<Relayed, RelayError> {
    let timeouts = ex.live.timeouts;
    ex.note_response(&resp);
    let framing =
        head::response_framing(&resp, &head.method).map_err(|e| RelayError::Refused(e.to_string()))?;
    let client_11 = head.minor >= 1;
    let (encode, keep) = match framing {
        Framing::Close if client_11 => (Encode::Chunked, keep_client),
        Framing::Close => (Encode::Identity, false),
        Framing::Chunked if client_11 => (Encode::Chunked, keep_client),
        Framing::Chunked => (Encode::Identity, false),
        Framing::Length(_) | Framing::Empty => (Encode::Identity, keep_client),
    };
    let up_reusable = framing != Framing::Close
        && !head::has_token(&resp.headers, "connection", "close")
        && (resp.minor >= 1 || head::has_token(&resp.headers, "connection", "keep-alive"));
    if framing == Framing::Chunked {
        // Read the first chunk-size line before committing to a status: a broken one is then still
        // answered with a 502 that says why, instead of a head followed by a cut body.
        first_chunk_line(timeouts.upstream, up).await.map_err(RelayError::Refused)?;
    }
    let out = next_hop::response(head, &resp, framing, encode, keep);
    let mut dst = WriteDeadline::new(&mut client.io, timeouts.idle);
    let mut capture = ex.capture();
    let tap = capture.as_mut().map(|c| c as &mut dyn Tap);
    let copied = copy_body_tapped(up, framing, &mut dst, encode, out, timeouts.upstream, tap).await;
    if let Some(body) = capture {
        ex.note(|f| f.response_body = body);
    }
    match copied {
        Ok(down) => Ok(Relayed { down, keep_client: keep, up_reusable }),
        Err(BodyError::Malformed(why)) if dst.written() == 0 => Err(RelayError::Refused(why)),
        Err(e) => Err(RelayError::Broken(e)),
    }
}

/// Waits until the upstream's buffer holds the first chunk-size line (or enough bytes to know it is
/// too long), then checks it.
async fn first_chunk_line(upstream_timeout: Duration, up: &mut UpConn) -> Result<(), String> {
    loop {
        if let Some(end) = up.buf.iter().position(|&b| b == b'\n') {
            let line = up.buf[..end].strip_suffix(b"\r").ok_or("chunk-size line ended by a bare LF")?;
            return crate::http::body::parse_chunk_size(line).map(|_| ()).map_err(|e| e.to_string());
        }
        if up.buf.len() > 4096 {
            return Err("chunk-size line too long".into());
        }
        match up.fill_within(upstream_timeout).await {
            Ok(0) => return Err("response body ended before its first chunk".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Relays the 101 to the client and then bytes both ways until either side ends. When the
/// exchange records, both directions are watched for WebSocket messages on the way.
pub(super) async fn finish_upgrade(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    mut up: UpConn,
    resp: ResponseHead,
) -> Next {
    let shared = ex.shared;
    ex.note_response(&resp);
    let mut out = next_hop::switching_protocols(&resp);
    // Frames the origin sent right after its 101 are already in our buffer.
    let early_down = std::mem::take(&mut up.buf);
    out.extend_from_slice(&early_down);
    let idle = ex.live.timeouts.idle;
    if write_all_within(&mut client.io, &out, idle).await.is_err() {
        return Next::Close;
    }
    // Read buffers are not kept for the tunnel's life (only a recording tap needs what they held).
    drop(out);
    let early_up = std::mem::take(&mut client.buf);
    if !early_up.is_empty() && write_all_within(&mut up.io, &early_up, idle).await.is_err() {
        return Next::Close;
    }
    metrics::counter!("tunnelkit_proxy_tunnels_total", "kind" => "upgrade").increment(1);
    metrics::gauge!("tunnelkit_proxy_tunnels_active").increment(1.0);
    let tunnel_idle = Some(ex.live.timeouts.tunnel_idle);
    let revoked = ex.revoked();
    let stats = match ex.capture() {
        None => {
            drop((early_up, early_down));
            let relay = Relay::new(&mut client.io, &mut up.io, tunnel_idle).splice(shared.pipes.as_ref());
            to_the_end(relay, revoked).await
        }
        Some(capture) => {
            let (cap, messages) = (capture.cap(), Messages::default());
            let mut c = WsTap::new(&mut client.io, Direction::Up, ex.started, cap, messages.clone());
            let mut u = WsTap::new(&mut up.io, Direction::Down, ex.started, cap, messages.clone());
            c.saw(&early_up);
            u.saw(&early_down);
            let stats = to_the_end(Relay::new(&mut c, &mut u, tunnel_idle), revoked).await;
            ex.note(|f| f.websocket = std::mem::take(&mut *messages.lock().expect("ws messages lock")));
            stats
        }
    };
    metrics::gauge!("tunnelkit_proxy_tunnels_active").decrement(1.0);
    ex.log(101, stats.a_to_b, stats.b_to_a, Some("upgrade"));
    Next::Close
}

/// The relay to its end, or until `revoked` (a reload removed the user); what it moved even when
/// it ended with an error.
async fn to_the_end<A, B>(mut relay: Relay<'_, A, B>, revoked: impl Future<Output = ()>) -> RelayStats
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::select! {
        r = &mut relay => r.unwrap_or_else(|_| relay.stats()),
        () = revoked => relay.stats(),
    }
}

/// Max-Forwards reached zero: OPTIONS and TRACE are answered by the proxy itself.
pub(super) async fn answer_max_forwards(
    ex: &Exchange<'_>,
    client: &mut ClientConn,
    head: &RequestHead,
) -> Next {
    let msg = if head.method == "OPTIONS" {
        b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH, CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    } else {
        next_hop::trace_echo(head)
    };
    let _ = write_all_within(&mut client.io, &msg, ex.live.timeouts.idle).await;
    ex.log(200, 0, msg.len() as u64, Some("max_forwards"));
    Next::Close
}
