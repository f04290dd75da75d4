//! Requests to backends: [`send`] turns a client's request into the backend's, sends it over a
//! connection of the worker's [`BackendPool`], and tells a backend that cannot be reached (marked
//! down, so the caller tries another) from any other failure (an answer for the client).

use std::sync::Arc;

use hyper::header::{HeaderValue, ACCEPT_ENCODING, HOST};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::{Request, Response, StatusCode, Uri};

use super::backend::BackendId;
use super::backend_pool::{BackendPool, ConnectError, PooledBody};
use super::bodies::{full, Body};
use super::headers;
use super::state::State;

/// Why [`send`] produced no backend answer.
pub(super) enum BackendFailure {
    /// The backend could not be reached (it has been marked down).
    Connect,
    /// An answer to give the client as is.
    Other(Response<Body>),
}

/// Sends `req` to backend `b` over a connection of `pool`; `learning` strips Accept-Encoding so the
/// handshake body is readable, `upgrade` relays a WebSocket upgrade
/// ([`crate::http::is_upgrade_request`]). A backend has `--backend-timeout` to send the response
/// head: one that accepts and never answers gets a 504.
pub(super) async fn send(
    state: &State,
    pool: &Arc<BackendPool>,
    b: BackendId,
    mut req: Request<Body>,
    learning: bool,
    upgrade: bool,
) -> Result<Response<PooledBody>, BackendFailure> {
    let backend = &state.backends.get(b);
    let Some(authority) = &backend.authority else {
        return Err(BackendFailure::Other(full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "bad request target\n",
        )));
    };
    let target_authority = req.uri().authority().cloned();
    // The backend gets the origin form (`/path?query`), as from any client.
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    if let Err(why) = headers::for_backend(req.headers_mut(), target_authority.as_ref(), upgrade) {
        return Err(BackendFailure::Other(full(StatusCode::BAD_REQUEST, "text/plain", why)));
    }
    if !req.headers().contains_key(HOST) {
        // An HTTP/1.0 client may send none: the backend's address stands in.
        if let Ok(host) = host_of(authority) {
            req.headers_mut().insert(HOST, host);
        }
    }
    if learning {
        req.headers_mut().remove(ACCEPT_ENCODING);
    }
    let answer =
        tokio::time::timeout(state.settings.backend_timeout, request(pool, b, authority, req, upgrade));
    let Ok(answer) = answer.await else {
        tracing::debug!(backend = %backend.addr, "no answer within --backend-timeout");
        metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "timeout").increment(1);
        return Err(BackendFailure::Other(full(
            StatusCode::GATEWAY_TIMEOUT,
            "text/plain",
            "backend did not answer within --backend-timeout\n",
        )));
    };
    match answer {
        Ok(r) => Ok(r),
        Err(Failed::Connect(e)) => {
            if state.backends.mark(b, false) {
                tracing::warn!(backend = %backend.addr, "backend unreachable, marked down: {e}");
            }
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "connect").increment(1);
            Err(BackendFailure::Connect)
        }
        Err(Failed::Request(e)) if write_timed_out(&e) => {
            tracing::debug!(backend = %backend.addr, "backend read nothing within --idle-timeout");
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "timeout").increment(1);
            Err(BackendFailure::Other(full(
                StatusCode::GATEWAY_TIMEOUT,
                "text/plain",
                "backend read nothing of the request within --idle-timeout\n",
            )))
        }
        Err(Failed::Request(e)) => {
            tracing::debug!(backend = %backend.addr, error = ?e, "backend request failed");
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "backend").increment(1);
            Err(BackendFailure::Other(full(StatusCode::BAD_GATEWAY, "text/plain", "backend failed\n")))
        }
    }
}

/// How [`request`] failed.
enum Failed {
    /// No connection to the backend could be made.
    Connect(ConnectError),
    /// The exchange failed.
    Request(hyper::Error),
}

/// Sends `req` on an idle connection to `b`, or a new one. A request that a reused connection could
/// not take (it closed meanwhile) was not sent, so it goes on the next one.
async fn request(
    pool: &Arc<BackendPool>,
    b: BackendId,
    authority: &Authority,
    mut req: Request<Body>,
    upgrade: bool,
) -> Result<Response<PooledBody>, Failed> {
    loop {
        let (mut sender, reused) = match pool.take(b) {
            Some(s) => (s, true),
            None => (pool.connect(authority).await.map_err(Failed::Connect)?, false),
        };
        if let Err(e) = sender.ready().await {
            if reused {
                continue;
            }
            return Err(Failed::Request(e));
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                // An upgraded connection becomes the tunnel: it never goes back.
                let back = (!upgrade).then(|| (pool.clone(), b, sender));
                return Ok(resp.map(|body| PooledBody::new(body, back)));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(Failed::Request(e.into_error())),
            },
        }
    }
}

/// The `Host` value for `authority`, without the default port (as hyper's client writes it).
fn host_of(authority: &Authority) -> Result<HeaderValue, hyper::header::InvalidHeaderValue> {
    match authority.port_u16() {
        Some(80) | None => HeaderValue::from_str(authority.host()),
        Some(_) => HeaderValue::from_str(authority.as_str()),
    }
}

/// True if a request failed because writing it to the backend made no progress within
/// `--idle-timeout` (the `TimedOut` of [`crate::net::WriteDeadline`], somewhere in the chain).
fn write_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cause = c.source();
    }
    false
}
