//! The backends: address, health, and how a new session picks one.
//!
//! A reload (SIGHUP) may add backends and remove some ([`Backends::update`]). Indexes stay stable
//! because the sid store and the sid tags translate through them: an added backend is appended, a
//! removed one stays in the list *retired* (never healthy again, so its sessions get the fast 400
//! like a dead backend's and it takes no new ones), and one put back is un-retired where it was.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::uri::Authority;

use tokio_util::sync::CancellationToken;

/// How new sessions are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Fewest live Engine.IO sessions (from handshake to session end).
    LeastSessions,
    /// In turn.
    RoundRobin,
    /// At random.
    Random,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "least-sessions" => Ok(Balance::LeastSessions),
            "round-robin" => Ok(Balance::RoundRobin),
            "random" => Ok(Balance::Random),
            _ => Err(format!("`{s}` is not a balance mode; use least-sessions, round-robin or random")),
        }
    }
}

/// One Socket.IO server.
pub struct Backend {
    /// `host:port`.
    pub addr: String,
    /// `addr` parsed once, for request URIs.
    pub authority: Option<Authority>,
    /// `tunnelkit_sticky_sessions_total{backend}`, registered once rather than per handshake.
    pub sessions_total: metrics::Counter,
    healthy: AtomicBool,
    /// Removed from the configuration by a reload.
    retired: AtomicBool,
    /// Cancelled when the backend goes down, to close its WebSocket tunnels at once.
    tunnels: Mutex<CancellationToken>,
    /// Open WebSocket-only sessions (no polling handshake, so no binding counts them).
    websocket_sessions: Arc<AtomicUsize>,
}

impl Backend {
    /// True if it passed its last health check (backends start healthy) and is still configured.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_retired()
    }

    /// True once a reload removed it from the configuration (until one puts it back).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Closes its WebSocket tunnels (it went down or was removed), so their clients reconnect.
    fn close_tunnels(&self) {
        let mut t = self.tunnels.lock().expect("token lock");
        t.cancel();
        *t = CancellationToken::new();
    }

    /// A token cancelled when this backend is marked down.
    pub fn tunnel_token(&self) -> CancellationToken {
        self.tunnels.lock().expect("token lock").child_token()
    }

    /// Counts a WebSocket-only session as live until the returned guard is dropped (its tunnel
    /// ended).
    pub fn websocket_session(&self) -> WebSocketSession {
        self.websocket_sessions.fetch_add(1, Ordering::Relaxed);
        WebSocketSession(self.websocket_sessions.clone())
    }

    /// Open WebSocket-only sessions.
    pub fn websocket_sessions(&self) -> usize {
        self.websocket_sessions.load(Ordering::Relaxed)
    }
}

/// A live WebSocket-only session; dropping it ends the session's count.
pub struct WebSocketSession(Arc<AtomicUsize>);

impl Drop for WebSocketSession {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One backend: its place in the configured `--backend` list. Only [`Backends`] and the sid store
/// (which resolves addresses against the same list) make them, so one is always in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(usize);

impl BackendId {
    /// The backend at `index` of the configured list; callers check the range.
    pub(super) fn at(index: usize) -> Self {
        BackendId(index)
    }

    /// Its place in the configured list (for per-backend counts).
    pub fn index(self) -> usize {
        self.0
    }
}

/// All backends and the balancing state.
pub struct Backends {
    /// In configuration order, then in the order reloads added them; indexed by [`BackendId`].
    /// Swapped whole by [`Backends::update`], read without a lock on every request.
    list: ArcSwap<Vec<Arc<Backend>>>,
    balance: Balance,
    next: AtomicUsize,
}

/// What a reload changed in the backend list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendChanges {
    /// Addresses now taking new sessions that did not before.
    pub added: Vec<String>,
    /// Addresses retired: their sessions end, they take no new ones.
    pub removed: Vec<String>,
}

fn backend(addr: String) -> Arc<Backend> {
    Arc::new(Backend {
        authority: addr.parse().ok(),
        sessions_total: metrics::counter!("tunnelkit_sticky_sessions_total", "backend" => addr.clone()),
        addr,
        healthy: AtomicBool::new(true),
        retired: AtomicBool::new(false),
        tunnels: Mutex::new(CancellationToken::new()),
        websocket_sessions: Arc::new(AtomicUsize::new(0)),
    })
}

impl Backends {
    /// Backends at `addrs`, all initially healthy. Call it after the metrics recorder is installed:
    /// per-backend metric handles are registered here.
    pub fn new(addrs: Vec<String>, balance: Balance) -> Self {
        let list = addrs.into_iter().map(backend).collect();
        Backends { list: ArcSwap::from_pointee(list), balance, next: AtomicUsize::new(0) }
    }

    /// Makes `addrs` the configured backends (a reload): new addresses are appended, healthy until
    /// a check says otherwise; addresses no longer listed are retired and their WebSocket tunnels
    /// closed, as when a backend goes down; a retired address listed again is back in rotation.
    pub fn update(&self, addrs: &[String]) -> BackendChanges {
        let mut changes = BackendChanges::default();
        let mut list: Vec<Arc<Backend>> = self.list.load().iter().cloned().collect();
        for b in &list {
            let keep = addrs.contains(&b.addr);
            let was_retired = b.retired.swap(!keep, Ordering::Relaxed);
            match (was_retired, keep) {
                (false, false) => {
                    b.close_tunnels();
                    metrics::gauge!("tunnelkit_sticky_backend_up", "backend" => b.addr.clone()).set(0.0);
                    changes.removed.push(b.addr.clone());
                }
                (true, true) => changes.added.push(b.addr.clone()),
                _ => {}
            }
        }
        for addr in addrs {
            if !list.iter().any(|b| &b.addr == addr) {
                list.push(backend(addr.clone()));
                changes.added.push(addr.clone());
            }
        }
        self.list.store(Arc::new(list));
        changes
    }

    /// Every address ever configured, retired ones included, indexed by [`BackendId`]: what the sid
    /// store and the sid tags translate indexes with.
    pub fn addrs(&self) -> Vec<String> {
        self.list.load().iter().map(|b| b.addr.clone()).collect()
    }

    /// Marks a backend up or down; returns true if that changed its state. Going down closes its
    /// WebSocket tunnels so their clients reconnect at once.
    pub fn mark(&self, id: BackendId, up: bool) -> bool {
        let b = self.get(id);
        let was = b.healthy.swap(up, Ordering::Relaxed);
        if was && !up {
            b.close_tunnels();
        }
        metrics::gauge!("tunnelkit_sticky_backend_up", "backend" => b.addr.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        was != up
    }

    /// Picks a healthy backend for a new session, skipping `exclude`. `sessions` is the live session
    /// count per backend.
    pub fn pick(&self, sessions: &[usize], exclude: &[BackendId]) -> Option<BackendId> {
        // Runs on every handshake: no allocation, two passes over a handful of backends.
        let list = self.list.load();
        let candidates = || {
            list.iter()
                .enumerate()
                .map(|(i, b)| (BackendId(i), b))
                .filter(|(id, b)| b.is_healthy() && !exclude.contains(id))
                .map(|(id, _)| id)
        };
        let load = |id: BackendId| sessions.get(id.0).copied().unwrap_or(0);
        let count = candidates().count();
        if count == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match self.balance {
            Balance::RoundRobin => candidates().nth(turn % count),
            Balance::Random => candidates().nth(rand::random_range(0..count)),
            Balance::LeastSessions => {
                // Ties are broken in turn, so equal backends share new sessions.
                let min = candidates().map(load).min().unwrap_or(0);
                let tied = candidates().filter(|i| load(*i) == min).count();
                candidates().filter(|i| load(*i) == min).nth(turn % tied)
            }
        }
    }

    /// Any healthy backend, in turn (for paths outside the Engine.IO path).
    pub fn any(&self) -> Option<BackendId> {
        self.pick(&[], &[])
    }

    /// The backend `id`.
    pub fn get(&self, id: BackendId) -> Arc<Backend> {
        self.list.load()[id.0].clone()
    }

    /// Every backend, in configuration order (retired ones included), as of now.
    pub fn iter(&self) -> impl Iterator<Item = (BackendId, Arc<Backend>)> {
        let list = self.list.load_full();
        (0..list.len()).map(move |i| (BackendId(i), list[i].clone()))
    }

    /// How many backends there are, retired ones included (never zero: settings refuse an empty
    /// list, and a reload never shortens it).
    pub fn count(&self) -> usize {
        self.list.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_healthy_least_loaded() {
        let b = Backends::new(vec!["a".into(), "b".into(), "c".into()], Balance::LeastSessions);
        let id = BackendId;
        assert_eq!(b.pick(&[3, 1, 2], &[]), Some(id(1)));
        b.mark(id(1), false);
        assert_eq!(b.pick(&[3, 1, 2], &[]), Some(id(2)));
        assert_eq!(b.pick(&[3, 1, 2], &[id(2)]), Some(id(0)));
        b.mark(id(0), false);
        b.mark(id(2), false);
        assert_eq!(b.pick(&[0, 0, 0], &[]), None);
        let rr = Backends::new(vec!["a".into(), "b".into()], Balance::RoundRobin);
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&[], &[]).unwrap().index()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn a_reload_appends_added_backends_and_retires_removed_ones_in_place() {
        let b = Backends::new(vec!["a".into(), "b".into()], Balance::RoundRobin);
        let changes = b.update(&["b".into(), "c".into()]);
        assert_eq!(changes, BackendChanges { added: vec!["c".into()], removed: vec!["a".into()] });
        assert_eq!(b.addrs(), vec!["a", "b", "c"], "indexes stay where they were");
        assert!(!b.get(BackendId(0)).is_healthy() && b.get(BackendId(0)).is_retired());
        let picks: Vec<_> = (0..4).map(|_| b.pick(&[], &[]).unwrap().index()).collect();
        assert!(picks.iter().all(|i| *i != 0), "{picks:?}");
        let back = b.update(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(back.added, vec!["a".to_owned()]);
        assert!(b.get(BackendId(0)).is_healthy());
    }
}
