//! One exchange of `tunnelkit proxy` and what it runs against: the state every connection shares
//! ([`Shared`]), the client connection ([`ClientConn`]), what the request loop does next ([`Next`]),
//! and [`Exchange`], through which every answer, error and access-log line of a request goes. The
//! request loop (`server`) and the handlers (`connect`, `forward`, `response`, `upstream`) all build
//! on it, so none of them imports another's loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::client_stream::ClientStream;
use super::inspect::flow::{CapturedBody, Flow, FlowKind, Header};
use super::inspect::recorder::Recorder;
use super::intercept::Interceptor;
use super::live::Live;
use super::pool::Pool;
use super::settings::Settings;
use crate::client::ProxyDialer;
use crate::http::body::BufIo;
use crate::http::head::{RequestHead, ResponseHead};
use crate::http::response;
use crate::net::{write_all_within, BoxStream, DialError, Dialer, PipePool, Target};
use crate::reload::revoke::Revocations;
use crate::shutdown::Drain;
use crate::telemetry::access_log::AccessLog;

/// State shared by every connection of one proxy.
pub(super) struct Shared {
    pub settings: Settings,
    /// Dials CONNECT targets and origins (directly under the policy, or through `--upstream`).
    pub dialer: Arc<dyn Dialer>,
    /// The parent proxy, when it is an HTTP one that takes absolute-form requests as they are.
    /// `dialer` already goes through it (for CONNECT); this is for the requests it takes whole.
    pub parent: Option<Arc<ProxyDialer>>,
    pub pool: Pool,
    pub access_log: AccessLog,
    pub drain: Drain,
    /// Set when the proxy port is served over TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Set with `--intercept`.
    pub interceptor: Option<Interceptor>,
    /// Set with `--inspect`, `--flows-log` or `--har`.
    pub recorder: Option<Recorder>,
    /// Pipes for splicing tunnels (`--max-pipes`); `None` with `--no-splice`.
    pub pipes: Option<PipePool>,
    /// Users and policy in force: replaced whole by a reload.
    pub live: Arc<ArcSwap<Live>>,
    /// The tunnels of users a reload removed, closed after the grace.
    pub revocations: Revocations,
}

/// A client connection: the stream (plain or TLS) with its read buffer.
pub(super) type ClientConn = BufIo<ClientStream>;

/// What the request loop does after one exchange.
pub(super) enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close the connection.
    Close,
    /// A CONNECT answered `200` whose host is intercepted: the connection's owner hands it, with
    /// the origin connection dialled for it, to the [`Interceptor`].
    Intercept(Box<InterceptStart>),
}

/// What an intercepted CONNECT leaves for the take-over: the origin and the stream dialled to it.
pub(super) struct InterceptStart {
    pub target: Target,
    /// The CONNECT's request-target (`host:port`), for URLs.
    pub authority: String,
    pub upstream: BoxStream,
    /// The user the CONNECT authenticated as, whose removal by a reload ends the connection.
    pub user: Option<String>,
}

/// Where the requests of an intercepted connection go: the CONNECT's origin, over TLS.
pub(super) struct Origin {
    pub target: Target,
    /// `host:port` as the CONNECT named it: the authority of the URLs logged and recorded.
    pub authority: String,
    /// The client's SNI, sent to the origin as is.
    pub sni: Option<String>,
    /// Why TLS with the origin failed, if it did: every request is then answered 502 with it.
    pub refused: Option<String>,
}

/// One request being handled: who asked for what, and since when. Errors and log lines go through it.
pub(super) struct Exchange<'a> {
    pub shared: &'a Shared,
    pub peer: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub started: Instant,
    /// Set inside an intercepted CONNECT: requests are origin-form and go to this origin.
    pub origin: Option<&'a Origin>,
    /// The users and policy in force when the request began: the request keeps them to its end.
    pub live: Arc<Live>,
    /// The user the request authenticated as (none when the proxy has no users).
    pub user: Option<String>,
    /// The flow being recorded (only when recording is on), handed to the recorder by
    /// [`Exchange::log`], the one place every exchange ends.
    pub flow: Option<Mutex<Flow>>,
}

impl<'a> Exchange<'a> {
    /// An exchange for a request with this head (`None`: no head was read), recording its flow
    /// when the proxy records.
    pub fn new(
        shared: &'a Shared,
        peer: SocketAddr,
        head: Option<&'a RequestHead>,
        target: &'a str,
        origin: Option<&'a Origin>,
    ) -> Exchange<'a> {
        let method = head.map_or("-", |h| h.method.as_str());
        let flow = shared.recorder.as_ref().map(|r| {
            let kind = match (origin, method) {
                (Some(_), _) => FlowKind::Intercepted,
                (None, "CONNECT") => FlowKind::Tunnelled,
                (None, _) => FlowKind::Plain,
            };
            let mut flow = Flow::new(kind, peer, method, target, r.body_max());
            if let Some(h) = head {
                flow.http_version = format!("HTTP/1.{}", h.minor);
                flow.request_headers = h.headers.iter().map(|f| Header::new(&f.name, &f.value)).collect();
            }
            Mutex::new(flow)
        });
        let live = shared.live.load_full();
        Exchange { shared, peer, method, target, started: Instant::now(), origin, live, user: None, flow }
    }

    /// An empty body capture when recording (what [`crate::http::body::copy_body_tapped`] fills).
    pub fn capture(&self) -> Option<CapturedBody> {
        self.flow
            .as_ref()
            .map(|_| CapturedBody::new(self.shared.recorder.as_ref().map_or(0, |r| r.body_max())))
    }

    /// Records what reached the flow (no-op when not recording).
    pub fn note(&self, what: impl FnOnce(&mut Flow)) {
        if let Some(f) = &self.flow {
            what(&mut f.lock().expect("flow lock"));
        }
    }

    /// Records the answer's head as it came from upstream.
    pub fn note_response(&self, resp: &ResponseHead) {
        let wait = self.started.elapsed();
        self.note(|f| {
            f.wait = Some(wait);
            f.status = Some(resp.status);
            f.reason = resp.reason.clone();
            f.response_headers = resp.headers.iter().map(|h| Header::new(&h.name, &h.value)).collect();
        });
    }

    /// Answers with a short error response (the connection is then closed).
    pub async fn fail(
        &self,
        client: &mut ClientConn,
        status: u16,
        proxy_status: Option<&str>,
        detail: &str,
    ) -> Next {
        let msg = response::error(status, proxy_status, detail, &[]);
        let _ = write_all_within(&mut client.io, &msg, self.live.timeouts.idle).await;
        self.log(status, 0, 0, proxy_status);
        metrics::counter!("tunnelkit_proxy_requests_total", "method" => metric_method(self.method), "status" => status.to_string())
            .increment(1);
        Next::Close
    }

    /// Answers a failed dial with the status its error maps to (403, 502, 504).
    pub async fn dial_failed(&self, client: &mut ClientConn, e: &DialError) -> Next {
        tracing::debug!(method = self.method, target = self.target, "not dialled: {e}");
        metrics::counter!("tunnelkit_proxy_errors_total", "kind" => e.proxy_status_error()).increment(1);
        self.fail(client, e.http_status(), Some(e.proxy_status_error()), &e.to_string()).await
    }

    /// Resolves when a reload has removed the user of this exchange and the grace has passed (never
    /// without a user); a tunnel races its relay against it.
    pub fn revoked(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let token = self.user.as_deref().map(|u| self.shared.revocations.watch(u));
        async move {
            match token {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        }
    }

    /// Writes the access-log line for this exchange.
    pub fn log(&self, status: u16, up: u64, down: u64, note: Option<&str>) {
        tracing::debug!(
            peer = %self.peer,
            method = self.method,
            target = self.target,
            status,
            up,
            down,
            note = note.unwrap_or("-"),
            "exchange finished"
        );
        self.shared.access_log.finished(
            self.peer,
            self.method,
            self.target,
            status,
            up,
            down,
            self.started,
            note,
        );
        self.record(status, up, down, note);
    }

    /// Hands the finished flow to the recorder. The CONNECT of an intercepted connection is not a
    /// flow of its own: its requests are.
    fn record(&self, status: u16, up: u64, down: u64, note: Option<&str>) {
        let (Some(recorder), Some(flow)) = (&self.shared.recorder, &self.flow) else { return };
        if note == Some("intercepted") {
            return;
        }
        let mut flow = std::mem::replace(
            &mut *flow.lock().expect("flow lock"),
            Flow::new(FlowKind::Plain, self.peer, "-", "-", 0),
        );
        flow.duration = self.started.elapsed();
        if status != 0 {
            if flow.status != Some(status) {
                // The proxy answered itself (an error page, a 407): what the client got is the status.
                flow.reason = crate::http::response::reason(status).to_owned();
                if flow.status.is_some() {
                    flow.response_headers.clear();
                }
            }
            flow.status = Some(status);
        }
        flow.bytes_up = up;
        flow.bytes_down = down;
        flow.error = note.map(str::to_owned);
        recorder.record(flow);
    }
}

/// Bounds metric label cardinality: unknown methods share one label.
pub(super) fn metric_method(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}
