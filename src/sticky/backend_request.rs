//! Requests to backends: the pooled hyper clients, one per worker thread, and [`send`], which turns a
//! client's request into the backend's and tells a backend that cannot be reached (marked down, so the
//! caller tries another) from any other failure (an answer for the client).
//!
//! A client connection is served on one `net::workers` thread with everything it spawns, so its
//! requests take their backend connections from that thread's own pool: a pooled connection is
//! registered with the reactor of the thread that dialled it, and checked out by another thread its
//! every read and write would be a wake-up across cores.

use hyper::body::Incoming;
use hyper::header::ACCEPT_ENCODING;
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::backend::BackendId;
use super::bodies::{full, Body};
use super::connector::Connector;
use super::headers;
use super::state::State;

/// A pooled client to the backends.
pub(super) type BackendClient = Client<Connector, Body>;

/// One [`BackendClient`] per worker thread, indexed by the worker's number.
pub(super) struct BackendClients(Box<[BackendClient]>);

impl BackendClients {
    /// `workers` clients over `connector`'s sockets.
    pub(super) fn new(connector: &Connector, workers: usize) -> Self {
        BackendClients(
            (0..workers.max(1))
                .map(|_| Client::builder(TokioExecutor::new()).build(connector.clone()))
                .collect(),
        )
    }

    /// The client of worker `worker`.
    pub(super) fn of(&self, worker: usize) -> &BackendClient {
        &self.0[worker % self.0.len()]
    }
}

/// Why [`send`] produced no backend answer.
pub(super) enum BackendFailure {
    /// The backend could not be reached (it has been marked down).
    Connect,
    /// An answer to give the client as is.
    Other(Response<Body>),
}

/// Sends `req` to backend `b`; `learning` strips Accept-Encoding so the handshake body is readable,
/// `upgrade` relays a WebSocket upgrade ([`crate::http::is_upgrade_request`]). A backend has
/// `--backend-timeout` to send the response head: one that accepts and never answers gets a 504.
pub(super) async fn send(
    state: &State,
    client: &BackendClient,
    b: BackendId,
    mut req: Request<Body>,
    learning: bool,
    upgrade: bool,
) -> Result<Response<Incoming>, BackendFailure> {
    let backend = &state.backends.get(b);
    let uri = backend.authority.clone().and_then(|authority| {
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(hyper::http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query =
            Some(req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        Uri::from_parts(parts).ok()
    });
    let Some(uri) = uri else {
        return Err(BackendFailure::Other(full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "bad request target\n",
        )));
    };
    let target_authority = req.uri().authority().cloned();
    *req.uri_mut() = uri;
    if let Err(why) = headers::for_backend(req.headers_mut(), target_authority.as_ref(), upgrade) {
        return Err(BackendFailure::Other(full(StatusCode::BAD_REQUEST, "text/plain", why)));
    }
    if learning {
        req.headers_mut().remove(ACCEPT_ENCODING);
    }
    let Ok(answer) = tokio::time::timeout(state.settings.backend_timeout, client.request(req)).await else {
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
        Err(e) if e.is_connect() => {
            if state.backends.mark(b, false) {
                tracing::warn!(backend = %backend.addr, "backend unreachable, marked down: {e}");
            }
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "connect").increment(1);
            Err(BackendFailure::Connect)
        }
        Err(e) if write_timed_out(&e) => {
            tracing::debug!(backend = %backend.addr, "backend read nothing within --idle-timeout");
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "timeout").increment(1);
            Err(BackendFailure::Other(full(
                StatusCode::GATEWAY_TIMEOUT,
                "text/plain",
                "backend read nothing of the request within --idle-timeout\n",
            )))
        }
        Err(e) => {
            tracing::debug!(backend = %backend.addr, error = ?e, "backend request failed");
            metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => "backend").increment(1);
            Err(BackendFailure::Other(full(StatusCode::BAD_GATEWAY, "text/plain", "backend failed\n")))
        }
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
