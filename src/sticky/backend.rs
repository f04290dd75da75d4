//! The backends: address, health, and how a new session picks one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

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
    healthy: AtomicBool,
    /// Cancelled when the backend goes down, to close its WebSocket tunnels at once.
    tunnels: Mutex<CancellationToken>,
}

impl Backend {
    /// True if it passed its last health check (backends start healthy).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A token cancelled when this backend is marked down.
    pub fn tunnel_token(&self) -> CancellationToken {
        self.tunnels.lock().expect("token lock").child_token()
    }
}

/// All backends and the balancing state.
pub struct Backends {
    /// In configuration order; indexes are what the sid store keeps.
    pub list: Vec<Backend>,
    balance: Balance,
    next: AtomicUsize,
}

impl Backends {
    /// Backends at `addrs`, all initially healthy.
    pub fn new(addrs: Vec<String>, balance: Balance) -> Self {
        let list = addrs
            .into_iter()
            .map(|addr| Backend {
                addr,
                healthy: AtomicBool::new(true),
                tunnels: Mutex::new(CancellationToken::new()),
            })
            .collect();
        Backends { list, balance, next: AtomicUsize::new(0) }
    }

    /// Marks a backend up or down; returns true if that changed its state. Going down closes its
    /// WebSocket tunnels so their clients reconnect at once.
    pub fn mark(&self, i: usize, up: bool) -> bool {
        let b = &self.list[i];
        let was = b.healthy.swap(up, Ordering::Relaxed);
        if was && !up {
            let mut t = b.tunnels.lock().expect("token lock");
            t.cancel();
            *t = CancellationToken::new();
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
    pub fn pick(&self, sessions: &[usize], exclude: &[usize]) -> Option<usize> {
        let candidates: Vec<usize> =
            (0..self.list.len()).filter(|i| self.list[*i].is_healthy() && !exclude.contains(i)).collect();
        if candidates.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(match self.balance {
            Balance::RoundRobin => candidates[turn % candidates.len()],
            Balance::Random => candidates[rand::random_range(0..candidates.len())],
            Balance::LeastSessions => {
                // Ties are broken in turn, so equal backends share new sessions.
                let min =
                    candidates.iter().map(|i| sessions.get(*i).copied().unwrap_or(0)).min().unwrap_or(0);
                let tied: Vec<usize> = candidates
                    .into_iter()
                    .filter(|i| sessions.get(*i).copied().unwrap_or(0) == min)
                    .collect();
                tied[turn % tied.len()]
            }
        })
    }

    /// Any healthy backend, in turn (for paths outside the Engine.IO path).
    pub fn any(&self) -> Option<usize> {
        self.pick(&[], &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_healthy_least_loaded() {
        let b = Backends::new(vec!["a".into(), "b".into(), "c".into()], Balance::LeastSessions);
        assert_eq!(b.pick(&[3, 1, 2], &[]), Some(1));
        b.mark(1, false);
        assert_eq!(b.pick(&[3, 1, 2], &[]), Some(2));
        assert_eq!(b.pick(&[3, 1, 2], &[2]), Some(0));
        b.mark(0, false);
        b.mark(2, false);
        assert_eq!(b.pick(&[0, 0, 0], &[]), None);
        let rr = Backends::new(vec!["a".into(), "b".into()], Balance::RoundRobin);
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&[], &[]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }
}
