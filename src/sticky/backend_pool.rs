//! One worker's keep-alive connections to the backends: hyper HTTP/1 connections, idle ones kept per
//! backend, most recently used first.
//!
//! A worker serves its client connections and everything they spawn on one thread (`net::workers`),
//! so its pool is only ever used from that thread: the lock is never contended, and a connection is
//! always read and written on the thread whose reactor it is registered with. hyper-util's pooled
//! client did the same job for every thread at once, hashing the backend's authority into a shared
//! map twice per request and spawning a task per request to put the connection back; here a
//! connection goes back when its answer's body ends ([`PooledBody`]), a backend is found by index.
//!
//! A connection the backend closed while idle (Node closes idle keep-alive connections after 5 s)
//! is skipped when taken, and a request that could not be sent on a reused connection is sent again
//! on another, as hyper-util did: it never reached the backend, so this is safe for any method.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::http::uri::Authority;
use hyper::Uri;
use tower_service::Service;

use super::backend::BackendId;
use super::bodies::Body;
use super::connector::Connector;

/// The sending half of one backend connection.
pub(super) type Sender = SendRequest<Body>;

/// Most idle connections kept per backend per worker; past it, a connection is closed after its
/// answer. Closed ones are only swept out when the list is full.
const MAX_IDLE: usize = 1024;

/// One worker's backend connections; see the module documentation.
pub(super) struct BackendPool {
    connector: Connector,
    /// Idle connections by backend index.
    idle: Mutex<Vec<Vec<Sender>>>,
}

/// Why [`BackendPool::connect`] failed.
pub(super) type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl BackendPool {
    /// An empty pool dialling through `connector`.
    pub(super) fn new(connector: Connector) -> Self {
        BackendPool { connector, idle: Mutex::new(Vec::new()) }
    }

    /// An idle connection to `b` that is still open, the most recently used first.
    pub(super) fn take(&self, b: BackendId) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(b.index())?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `sender`, whose last answer was read to its end, for the next request to `b`.
    fn put(&self, b: BackendId, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() <= b.index() {
            idle.resize_with(b.index() + 1, Vec::new);
        }
        let list = &mut idle[b.index()];
        if list.len() >= MAX_IDLE {
            list.retain(|s| !s.is_closed());
            if list.len() >= MAX_IDLE {
                return;
            }
        }
        list.push(sender);
    }

    /// A new connection to `authority`, driven by a task on this worker (it hands the socket over
    /// after a `101 Switching Protocols`).
    pub(super) async fn connect(&self, authority: &Authority) -> Result<Sender, ConnectError> {
        let uri = Uri::builder().scheme("http").authority(authority.clone()).path_and_query("/").build()?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            // Its errors reach the request that was on it.
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }
}

/// A backend's answer body that gives its connection back to the pool once read to its end (or
/// dropped at its end: an empty body is never polled). Dropped earlier, the connection closes with it.
pub(super) struct PooledBody {
    body: Incoming,
    back: Option<(Arc<BackendPool>, BackendId, Sender)>,
}

impl PooledBody {
    /// `body`, giving `back`'s connection back to its pool at its end; `None` for a connection that
    /// must not be reused (an upgrade's).
    pub(super) fn new(body: Incoming, back: Option<(Arc<BackendPool>, BackendId, Sender)>) -> Self {
        PooledBody { body, back }
    }

    fn release(&mut self) {
        if let Some((pool, b, sender)) = self.back.take() {
            pool.put(b, sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
