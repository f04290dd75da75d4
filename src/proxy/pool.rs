//! The upstream keep-alive pool, shared by every worker thread: idle upstream connections keyed by
//! where they lead (an origin, or the parent proxy for absolute-form requests).
//!
//! A connection goes back only after a response that was framed and read to its end, so the next
//! request starts on a clean stream. Connections idle longer than the limit, or that the far side
//! closed while pooled (checked without blocking at checkout), are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::io::AsyncReadExt;

use crate::http::body::BufIo;
use crate::net::{BoxStream, Target};

/// Connections idle less than this are handed out without a liveness probe.
const FRESH: Duration = Duration::from_millis(250);

/// An upstream connection with its read buffer.
pub type UpConn = BufIo<BoxStream>;

/// Where a pooled connection leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PoolKey {
    /// Directly to an origin.
    Origin(Target),
    /// To the parent proxy (`--upstream`), usable for any origin in absolute-form.
    Parent,
}

/// Idle upstream connections.
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<(UpConn, Instant)>>>,
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
        loop {
            let (mut conn, since) = {
                let mut idle = self.idle.lock().expect("pool lock");
                let list = idle.get_mut(key)?;
                let entry = list.pop();
                if list.is_empty() {
                    idle.remove(key);
                }
                entry?
            };
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Under load connections come back within microseconds; skip the extra syscall then
            // (a connection that died that fast is caught by the retry of idempotent requests).
            if since.elapsed() < FRESH {
                return Some(conn);
            }
            // A pooled connection must have nothing to read: data or EOF means the origin closed it
            // or broke framing, and a pending read means it is still open and quiet.
            let mut probe = [0u8; 1];
            match conn.io.read(&mut probe).now_or_never() {
                None => return Some(conn),
                Some(_) => continue,
            }
        }
    }

    /// Returns a connection that finished a response cleanly.
    pub fn checkin(&self, key: PoolKey, conn: UpConn) {
        if !conn.buf.is_empty() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(key).or_default();
        if list.len() < self.max_per_key {
            list.push((conn, Instant::now()));
        }
    }

    /// Drops every connection idle past the limit (called periodically, so the origin sees closes).
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|_, list| {
            list.retain(|(_, since)| since.elapsed() < self.idle_timeout);
            !list.is_empty()
        });
    }

    /// Drops everything (shutdown).
    pub fn clear(&self) {
        self.idle.lock().expect("pool lock").clear();
    }
}
