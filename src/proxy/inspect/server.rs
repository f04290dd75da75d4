//! The inspector's HTTP server (`--inspect ADDR`): the page, the JSON API over the [`Recorder`], a
//! HAR download and a server-sent event stream of new flows.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` (and `/page.js`, `/page.css`) | the page |
//! | `GET /api/flows` | JSON array of [`Summary`], oldest first |
//! | `GET /api/flows/{id}` | one [`Detail`]; 404 once the flow has left the ring |
//! | `GET /api/har` | HAR 1.2 of the ring, as an attachment |
//! | `GET /api/events` | `text/event-stream`: `event: flow` with a [`Summary`] per new flow, `event: lagged` with a count when this client fell behind, a comment every 15 s |
//!
//! Other paths are 404, other methods on these paths 405. What it protects, and how:
//! - With proxy users, every route wants `Authorization: Basic` with the same credentials (401
//!   and `WWW-Authenticate: Basic realm="tunnelkit inspector"` otherwise).
//! - Without users it is meant to listen on loopback, where any web page the user opens could
//!   still reach it by DNS rebinding (a hostile name re-pointed at 127.0.0.1 makes the page
//!   same-origin with the inspector). So without users a request must name the inspector by an IP
//!   literal or `localhost` in `Host`; any other name is 403.
//! - Captured headers carry `[redacted]` for `Proxy-Authorization` (done at record time).
//! - Each answer has a CSP allowing only `'self'` (the page has no inline script), `nosniff`, no
//!   caching and no referrer.
//! - Work per request is bounded: the ring is, bodies are decoded up to `--inspect-body-max` on the
//!   blocking pool, one HAR is built at a time, at most [`MAX_CONNECTIONS`] connections are served
//!   (an event stream holds one), and a client that stops reading is cut off after [`WRITE_STALL`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};

use super::api::{Detail, Summary};
use super::flow::{Flow, FlowId};
use super::har::har;
use super::recorder::Recorder;
use crate::net::WriteDeadline;
use crate::policy::auth::Users;
use crate::shutdown::Drain;

/// Connections served at once; more get a 503. A page holds two or three (one is its event stream).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may leave a write blocked (not reading) before its connection is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// How long a client has to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the event stream sends a comment, so proxies and browsers keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// The page may load only itself; nothing may frame it.
const CSP: &str =
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
struct Inspector {
    recorder: Recorder,
    users: Option<Arc<Users>>,
    /// One HAR at a time: each holds every body of the ring, decoded.
    har_builds: Semaphore,
    shutdown: Drain,
}

/// Serves the inspector on `listener` until `shutdown` triggers; then idle connections close, event
/// streams end and running answers finish (connections are spawned on `shutdown`, so
/// [`Drain::finish`] waits for them). `users` is the proxy's: when there are any, every route
/// asks for the same credentials.
pub async fn serve(listener: TcpListener, recorder: Recorder, users: Option<Arc<Users>>, shutdown: Drain) {
    let users = users.filter(|u| !u.is_empty());
    let inspector =
        Arc::new(Inspector { recorder, users, har_builds: Semaphore::new(1), shutdown: shutdown.clone() });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = crate::net::socket::accept(&listener) => accepted,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shutdown.spawn(refuse(tcp));
            continue;
        };
        let io = TokioIo::new(WriteDeadline::new(tcp, WRITE_STALL).holding(slot));
        let (http, inspector, drain) = (http.clone(), inspector.clone(), shutdown.clone());
        shutdown.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let inspector = inspector.clone();
                async move { Ok::<_, Infallible>(inspector.answer(req).await) }
            });
            let conn = http.serve_connection(io, svc);
            tokio::pin!(conn);
            // Errors are the client's (a reset, a timeout, a malformed head): nothing to add.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = drain.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// A fast 503 for a connection over [`MAX_CONNECTIONS`].
async fn refuse(mut tcp: TcpStream) {
    let msg = crate::http::response::error(503, None, "the inspector is serving too many connections", &[]);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(&msg).await?;
        tcp.shutdown().await
    })
    .await;
}

/// The routes; see the module's table.
enum Route {
    Page,
    Script,
    Style,
    Flows,
    Flow(Option<FlowId>),
    Har,
    Events,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        Some(match path {
            "/" | "/index.html" => Route::Page,
            "/page.js" => Route::Script,
            "/page.css" => Route::Style,
            "/api/flows" => Route::Flows,
            "/api/har" => Route::Har,
            "/api/events" => Route::Events,
            _ => Route::Flow(path.strip_prefix("/api/flows/")?.parse().ok().map(FlowId)),
        })
    }
}

impl Inspector {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let mut response = self.route(&req).await;
        let headers = response.headers_mut();
        headers.insert("content-security-policy", HeaderValue::from_static(CSP));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        headers.entry("cache-control").or_insert(HeaderValue::from_static("no-store"));
        response
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        // Credentials first, so that nothing (not even which paths exist) is told to a stranger.
        if let Some(users) = &self.users {
            if !users.verify_header(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes())) {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "the inspector wants the proxy's user name and password\n",
                );
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static("Basic realm=\"tunnelkit inspector\""),
                );
                return r;
            }
        } else if !host_resists_rebinding(req) {
            return text(
                StatusCode::FORBIDDEN,
                "open the inspector as http://127.0.0.1:PORT/ or http://localhost:PORT/: without proxy users \
                 it answers no other host name (DNS rebinding protection)\n",
            );
        }
        let Some(route) = Route::parse(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "no such page: the inspector is at /, its API under /api/\n");
        };
        if req.method() != Method::GET {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "the inspector only answers GET\n");
            r.headers_mut().insert("allow", HeaderValue::from_static("GET"));
            return r;
        }
        match route {
            Route::Page => asset(PAGE, "text/html; charset=utf-8"),
            Route::Script => asset(SCRIPT, "text/javascript; charset=utf-8"),
            Route::Style => asset(STYLE, "text/css; charset=utf-8"),
            Route::Flows => {
                let flows = self.recorder.flows();
                json(&flows.iter().map(|f| Summary::of(f)).collect::<Vec<_>>())
            }
            Route::Flow(id) => match id.and_then(|id| self.recorder.get(id)) {
                Some(flow) => {
                    let body_max = self.recorder.body_max();
                    match tokio::task::spawn_blocking(move || Detail::of(&flow, body_max)).await {
                        Ok(detail) => json(&detail),
                        Err(e) => text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &format!("could not show the flow: {e}\n"),
                        ),
                    }
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "no such flow: it may have left the ring (--inspect-flows keeps the last ones)\n",
                ),
            },
            Route::Har => self.har().await,
            Route::Events => self.events(),
        }
    }

    async fn har(&self) -> Response<Body> {
        let Ok(_one_at_a_time) = self.har_builds.acquire().await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "the inspector is shutting down\n");
        };
        let (flows, body_max) = (self.recorder.flows(), self.recorder.body_max());
        let built = tokio::task::spawn_blocking(move || serde_json::to_vec(&har(&flows, body_max)));
        match built.await {
            Ok(Ok(bytes)) => {
                let mut r = full(StatusCode::OK, "application/json", Bytes::from(bytes));
                r.headers_mut().insert(
                    "content-disposition",
                    HeaderValue::from_static("attachment; filename=\"tunnelkit-flows.har\""),
                );
                r
            }
            Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("could not build the HAR: {e}\n")),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("could not build the HAR: {e}\n")),
        }
    }

    /// The event stream. The subscription is taken before the answer's head goes out, so a client
    /// that has seen the head hears of every flow recorded after it.
    fn events(&self) -> Response<Body> {
        let state = EventStream {
            flows: self.recorder.subscribe(),
            keepalive: tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE),
            shutdown: self.shutdown.clone(),
            greeted: false,
        };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            let chunk = s.next().await?;
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), s))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-store")
            .body(StreamBody::new(stream).boxed())
            .expect("static response parts are valid")
    }
}

/// One client's event stream: new flows, lag reports and keep-alive comments, until shutdown.
struct EventStream {
    flows: broadcast::Receiver<Arc<Flow>>,
    keepalive: tokio::time::Interval,
    shutdown: Drain,
    greeted: bool,
}

impl EventStream {
    /// The next chunk of the stream, `None` at its end.
    async fn next(&mut self) -> Option<String> {
        if !self.greeted {
            self.greeted = true;
            // Browsers retry a dropped stream after `retry` ms.
            return Some("retry: 2000\n: connected\n\n".to_owned());
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            _ = self.keepalive.tick() => Some(": keep-alive\n\n".to_owned()),
            next = self.flows.recv() => match next {
                Ok(flow) => {
                    let summary = serde_json::to_string(&Summary::of(&flow)).ok()?;
                    Some(format!("event: flow\nid: {}\ndata: {summary}\n\n", flow.id.0))
                }
                // The page refetches /api/flows when it hears it missed some.
                Err(broadcast::error::RecvError::Lagged(missed)) => Some(format!("event: lagged\ndata: {missed}\n\n")),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// True when `Host` is absent, an IP literal or `localhost`: names a DNS rebinding attack cannot
/// use, since it needs a name of its own that resolves to us.
fn host_resists_rebinding(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return req.headers().get(HOST).is_none();
    };
    let host = host.trim();
    if host.starts_with('[') {
        return host.split(']').next().is_some_and(|ip| ip[1..].parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name =
        host.rsplit_once(':').map_or(host, |(name, _)| name).trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

fn asset(content: &'static str, content_type: &'static str) -> Response<Body> {
    full(StatusCode::OK, content_type, Bytes::from_static(content.as_bytes()))
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => full(StatusCode::OK, "application/json", Bytes::from(bytes)),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("could not encode the answer: {e}\n")),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", Bytes::from(message.to_owned()))
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body).boxed())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests;
