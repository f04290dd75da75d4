//! How the balancer connects to backends (`backend_pool`): hyper's `HttpConnector` (TCP_NODELAY, a
//! connect timeout), with every backend socket wrapped in a [`WriteDeadline`] so a backend that stops reading
//! (an upload it never takes, a WebSocket it no longer drains) fails the request after
//! `--idle-timeout` instead of holding it forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use crate::net::WriteDeadline;

/// A backend socket.
pub type BackendIo = TokioIo<WriteDeadline<tokio::net::TcpStream>>;

/// Connects to backends; see the module documentation.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    idle: Duration,
}

impl Connector {
    /// Plain TCP to backends, `TCP_NODELAY`, `connect_timeout` to connect, and writes bounded by
    /// `idle`.
    pub fn new(connect_timeout: Duration, idle: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        Connector { http, idle }
    }

    /// The inner connector, for clients whose requests are bounded otherwise (health checks).
    pub fn plain(&self) -> HttpConnector {
        self.http.clone()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = BackendIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<BackendIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let idle = self.idle;
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            Ok(TokioIo::new(WriteDeadline::new(tcp, idle)))
        })
    }
}
