//! The upstream keep-alive pool: idle upstream connections keyed by where they lead (an origin, or
//! the parent proxy for absolute-form requests) and by the thread that put them back.
//!
//! A socket's readiness is reported to the reactor of the worker thread that registered it (the one
//! that dialled it, `net::workers`). Reused on another worker, every read and write of it would be
//! a wake-up across threads (an eventfd write and a second scheduler pass: half a syscall per
//! request in `strace -c` of a GET load), so a thread takes back only what it put in.
//!
//! A connection goes back only after a response that was framed and read to its end, so the next
//! request starts on a clean stream. Connections idle longer than the limit, or that the far side
//! closed or wrote to while pooled, are dropped.
//!
//! Every checkout probes the connection, however recently it came back: an origin that sends bytes
//! after the end of a message (a body on a 204 or a HEAD answer, extra bytes after a Content-Length
//! body) would otherwise have them read as the answer to the next client's request, which may be
//! another user's (pool poisoning). The probe costs no syscall when nothing arrived: tokio answers
//! from the readiness it already tracks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::io::AsyncReadExt;

use crate::http::body::BufIo;
use crate::net::{BoxStream, Target};

/// An upstream connection with its read buffer.
pub type UpConn = BufIo<BoxStream>;

/// Where a pooled connection leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PoolKey {
    /// Directly to an origin.
    Origin(Target),
    /// To the parent proxy (`--upstream`), usable for any origin in absolute-form.
    Parent,
    /// TLS to an intercepted origin, opened with this SNI (`None`: the client sent none).
    Tls(Target, Option<String>),
}

/// One thread's idle connections, by where they lead.
type ThreadPool = HashMap<PoolKey, Vec<(UpConn, Instant)>>;

/// Idle upstream connections, per thread that put them back.
pub struct Pool {
    idle: Mutex<HashMap<ThreadId, ThreadPool>>,
    idle_timeout: Duration,
    max_per_key: usize,
}

impl Pool {
    /// An empty pool that drops connections idle longer than `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Self {
        Pool { idle: Mutex::new(HashMap::new()), idle_timeout, max_per_key: 64 }
    }

    /// Takes a live idle connection for `key`, most recently used first.
    pub fn checkout(&self, key: &PoolKey) -> Option<UpConn> {
        let here = std::thread::current().id();
        loop {
            let (mut conn, since) = {
                let mut idle = self.idle.lock().expect("pool lock");
                // Looked up by reference: no key is built or cloned per request.
                let mine = idle.get_mut(&here)?;
                let list = mine.get_mut(key)?;
                let entry = list.pop();
                if list.is_empty() {
                    mine.remove(key);
                }
                entry?
            };
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            if is_quiet(&mut conn) {
                return Some(conn);
            }
            metrics::counter!("tunnelkit_proxy_upstream_discarded_total", "reason" => "not_quiet")
                .increment(1);
            tracing::debug!("pooled upstream connection had stray bytes or was closed: dropped");
        }
    }

    /// Returns a connection that finished a response cleanly.
    pub fn checkin(&self, key: PoolKey, mut conn: UpConn) {
        if !conn.buf.is_empty() || !is_quiet(&mut conn) {
            metrics::counter!("tunnelkit_proxy_upstream_discarded_total", "reason" => "not_quiet")
                .increment(1);
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(std::thread::current().id()).or_default().entry(key).or_default();
        if list.len() < self.max_per_key {
            list.push((conn, Instant::now()));
        }
    }

    /// Drops every connection idle past the limit (called periodically, so the origin sees closes).
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().expect("pool lock");
        for mine in idle.values_mut() {
            mine.retain(|_, list| {
                list.retain(|(_, since)| since.elapsed() < self.idle_timeout);
                !list.is_empty()
            });
        }
    }

    /// Drops everything (shutdown).
    pub fn clear(&self) {
        self.idle.lock().expect("pool lock").clear();
    }
}

/// True if the connection has nothing to read: data or EOF means the origin closed it or wrote past
/// the end of its message, and a pending read means it is open and quiet.
fn is_quiet(conn: &mut UpConn) -> bool {
    let mut probe = [0u8; 1];
    conn.io.read(&mut probe).now_or_never().is_none()
}
