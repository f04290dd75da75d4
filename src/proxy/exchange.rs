//! One exchange of `tunnelkit proxy` and what it runs against: the state every connection shares
//! ([`Shared`]), the client connection ([`ClientConn`]), what the request loop does next ([`Next`]),
//! and [`Exchange`], through which every answer, error and access-log line of a request goes. The
//! request loop (`server`) and the handlers (`connect`, `forward`, `response`, `upstream`) all build
//! on it, so none of them imports another's loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::client_stream::ClientStream;
use super::pool::Pool;
use super::settings::Settings;
use crate::client::ProxyDialer;
use crate::http::body::BufIo;
use crate::http::response;
use crate::net::{write_all_within, DialError, Dialer};
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
}

/// A client connection: the stream (plain or TLS) with its read buffer.
pub(super) type ClientConn = BufIo<ClientStream>;

/// What the request loop does after one exchange.
pub(super) enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// One request being handled: who asked for what, and since when. Errors and log lines go through it.
pub(super) struct Exchange<'a> {
    pub shared: &'a Shared,
    pub peer: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub started: Instant,
}

impl Exchange<'_> {
    /// Answers with a short error response (the connection is then closed).
    pub async fn fail(
        &self,
        client: &mut ClientConn,
        status: u16,
        proxy_status: Option<&str>,
        detail: &str,
    ) -> Next {
        let msg = response::error(status, proxy_status, detail, &[]);
        let _ = write_all_within(&mut client.io, &msg, self.shared.settings.idle_timeout).await;
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
