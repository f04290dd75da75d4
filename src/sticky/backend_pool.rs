//! One worker's keep-alive connections to the backends: hyper HTTP/1 connections, idle ones kept per
//! backend, most recently used first.
//!
//! A worker serves its client connections and everything they spawn on one thread (`net::workers`),
//! so its pool ([`BackendPools`] holds one per worker) is used from that thread, and from the health
//! loop's sweep once per check: the lock is all but never contended, and a connection is always read
//! and written on the thread whose reactor it is registered with. hyper-util's pooled
//! client did the same job for every thread at once, hashing the backend's authority into a shared
//! map twice per request and spawning a task per request to put the connection back; here a
//! connection goes back when its answer's body ends ([`PooledBody`]), a backend is found by index.
//!
//! A connection the backend closed while idle (Node closes idle keep-alive connections after 5 s)
//! is skipped when taken. One unused for 90 s is closed when the next request to its backend comes,
//! or by the health loop's [`BackendPools::sweep`], which also closes every idle connection to a
//! backend that takes no requests (down, or retired by a reload): without it a backend that keeps
//! connections open forever would keep a worker's idle ones as long as no request went its way. A
//! request that could not be sent on a reused connection is sent again on another, as hyper-util
//! did: it never reached the backend, so this is safe for any method.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
/// An idle connection unused this long is closed instead of reused (hyper-util's default): a backend
/// that never closes idle connections itself does not collect them from every busy minute.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One worker's backend connections; see the module documentation.
pub(super) struct BackendPool {
    connector: Connector,
    /// Idle connections by backend index, oldest first, each with when it was given back.
    idle: Mutex<Vec<VecDeque<(Sender, Instant)>>>,
    idle_timeout: Duration,
}

/// Why [`BackendPool::connect`] failed.
pub(super) type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl BackendPool {
    /// An empty pool dialling through `connector`.
    pub(super) fn new(connector: Connector) -> Self {
        Self::with_idle_timeout(connector, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(connector: Connector, idle_timeout: Duration) -> Self {
        BackendPool { connector, idle: Mutex::new(Vec::new()), idle_timeout }
    }

    /// An idle connection to `b` that is still open, the most recently used first.
    pub(super) fn take(&self, b: BackendId) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(b.index())?;
        while let Some((s, since)) = list.pop_back() {
            if self.stale(since) {
                // The newest is too old, so are all the others: close them all.
                list.clear();
                return None;
            }
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
            idle.resize_with(b.index() + 1, VecDeque::new);
        }
        let list = &mut idle[b.index()];
        while list.front().is_some_and(|(_, since)| self.stale(*since)) {
            list.pop_front();
        }
        if list.len() >= MAX_IDLE {
            list.retain(|(s, _)| !s.is_closed());
            if list.len() >= MAX_IDLE {
                return;
            }
        }
        list.push_back((sender, Instant::now()));
    }

    /// True for an idle connection given back at `since` and unused for the idle timeout since.
    fn stale(&self, since: Instant) -> bool {
        since.elapsed() >= self.idle_timeout
    }

    /// Closes the idle connections unused for the idle timeout or closed by their backend, and
    /// every idle one to a backend for which `gone` is true.
    fn sweep(&self, gone: impl Fn(BackendId) -> bool) {
        let mut idle = self.idle.lock().expect("pool lock");
        for (i, list) in idle.iter_mut().enumerate() {
            if gone(BackendId::at(i)) {
                list.clear();
            } else {
                // Dropping a connection's sender closes it.
                list.retain(|(s, since)| !self.stale(*since) && !s.is_closed());
            }
        }
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

/// One [`BackendPool`] per worker thread, indexed by the worker's number.
pub(super) struct BackendPools(Box<[Arc<BackendPool>]>);

impl BackendPools {
    /// `workers` pools dialling through `connector`.
    pub(super) fn new(connector: &Connector, workers: usize) -> Self {
        BackendPools((0..workers.max(1)).map(|_| Arc::new(BackendPool::new(connector.clone()))).collect())
    }

    /// The pool of worker `worker`.
    pub(super) fn of(&self, worker: usize) -> &Arc<BackendPool> {
        &self.0[worker % self.0.len()]
    }

    /// Closes, in every worker's pool, the idle connections past the idle timeout and every idle
    /// connection to a backend for which `gone` is true (one that takes no requests now).
    pub(super) fn sweep(&self, gone: impl Fn(BackendId) -> bool) {
        for pool in self.0.iter() {
            pool.sweep(&gone);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend that answers every request on a connection with a fixed body, counting
    /// connections; with `close_after_one`, it closes each connection after its first answer. It
    /// never closes an idle connection itself, and it counts the ones closed from our side.
    async fn backend(close_after_one: bool) -> (Authority, Arc<AtomicUsize>) {
        let (authority, accepted, _) = backend_counting_closes(close_after_one).await;
        (authority, accepted)
    }

    async fn backend_counting_closes(
        close_after_one: bool,
    ) -> (Authority, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (count, closes) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let closes = closes.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => {
                                    closes.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                        if close_after_one {
                            return;
                        }
                    }
                });
            }
        });
        (authority, accepted, closed)
    }

    async fn get(pool: &Arc<BackendPool>, authority: &Authority) -> Bytes {
        let b = BackendId::at(0);
        let mut sender = match pool.take(b) {
            Some(s) => s,
            None => pool.connect(authority).await.unwrap(),
        };
        sender.ready().await.unwrap();
        let req = hyper::Request::get("/").header("host", "x").body(super::super::bodies::empty()).unwrap();
        let resp = sender.try_send_request(req).await.map_err(|e| e.into_error()).unwrap();
        let body = PooledBody::new(resp.into_body(), Some((pool.clone(), b, sender)));
        body.collect().await.unwrap().to_bytes()
    }

    fn pool() -> Arc<BackendPool> {
        Arc::new(BackendPool::new(Connector::new(Duration::from_secs(5), Duration::from_secs(5))))
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_closed_not_used() {
        let (authority, accepted) = backend(false).await;
        let connector = Connector::new(Duration::from_secs(5), Duration::from_secs(5));
        let pool = Arc::new(BackendPool::with_idle_timeout(connector, Duration::from_millis(50)));
        assert_eq!(get(&pool, &authority).await, "ok");
        assert_eq!(get(&pool, &authority).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused while fresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(get(&pool, &authority).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new one after the timeout");
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_is_used_again() {
        let (authority, accepted) = backend(false).await;
        let pool = pool();
        for _ in 0..3 {
            assert_eq!(get(&pool, &authority).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_taken() {
        let (authority, accepted) = backend(true).await;
        let pool = pool();
        assert_eq!(get(&pool, &authority).await, "ok");
        // Give the connection's task the time to see the close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(pool.take(BackendId::at(0)).is_none());
        assert_eq!(get(&pool, &authority).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_sweep_closes_stale_idle_connections_and_those_to_a_backend_gone() {
        let (authority, accepted, closed) = backend_counting_closes(false).await;
        let connector = Connector::new(Duration::from_secs(5), Duration::from_secs(5));
        // Long enough that the first sweep comes well within it even on a loaded machine.
        let pool = Arc::new(BackendPool::with_idle_timeout(connector, Duration::from_secs(1)));
        let pools = BackendPools(vec![pool.clone()].into_boxed_slice());
        let closed_soon = |n: usize| {
            let closed = closed.clone();
            async move {
                for _ in 0..100 {
                    if closed.load(Ordering::SeqCst) >= n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        };
        // A fresh idle connection to a backend that takes requests stays.
        assert_eq!(get(&pool, &authority).await, "ok");
        pools.sweep(|_| false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(closed.load(Ordering::SeqCst), 0);
        // Past the idle timeout, the sweep closes it with no request to its backend.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pools.sweep(|_| false);
        assert!(closed_soon(1).await, "the stale connection is closed");
        // A backend that takes no requests loses its idle connections at once.
        assert_eq!(get(&pool, &authority).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        pools.sweep(|b| b == BackendId::at(0));
        assert!(closed_soon(2).await, "the connection to the backend gone is closed");
        assert!(pool.take(BackendId::at(0)).is_none());
    }
}
