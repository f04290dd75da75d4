//! Who may make a `ws-server` listen, and how much (`ws-client -R`): at most `--max-listeners` per
//! tunnel, and all tunnels together within the process's file descriptor budget, so remote forwards
//! cannot use up the descriptors that connections and dials need. An unspecified address (`0.0.0.0`,
//! `::`) is reachable from every network the server is on and needs `--allow-public-listen`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The server-wide part: the flags and the count of listeners across all tunnels.
#[derive(Debug)]
pub struct ListenLimits {
    /// Listeners one tunnel may have (`--max-listeners`).
    pub per_tunnel: usize,
    /// Whether unspecified addresses may be bound (`--allow-public-listen`).
    pub allow_public: bool,
    /// Listeners all tunnels together may have (a quarter of the descriptor limit).
    pub total_cap: usize,
    total: AtomicUsize,
}

/// One listener counted against its tunnel and the server; released when dropped.
#[derive(Debug)]
pub struct ListenerSlot {
    limits: Arc<ListenLimits>,
    tunnel: Arc<AtomicUsize>,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.tunnel.fetch_sub(1, Ordering::Relaxed);
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The soft limit on open file descriptors (`ulimit -n`), if it can be read.
pub fn fd_limit() -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    // rlim_t is u64 on Linux but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    let soft = r.rlim_cur as u64;
    ok.then_some(soft)
}

impl ListenLimits {
    /// Limits from the flags; the server-wide cap is a quarter of the descriptor limit (at least 16).
    pub fn new(per_tunnel: usize, allow_public: bool) -> Self {
        let total_cap = fd_limit().map_or(1024, |n| (n / 4).clamp(16, 1 << 20) as usize);
        ListenLimits { per_tunnel, allow_public, total_cap, total: AtomicUsize::new(0) }
    }

    /// Checks the address against `--allow-public-listen`.
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), String> {
        if addr.ip().is_unspecified() && !self.allow_public {
            return Err(format!(
                "{addr} would be reachable from every network the server is on; bind a loopback \
                 address (-R 127.0.0.1:{}:HOST:PORT), or the server must run with --allow-public-listen",
                addr.port()
            ));
        }
        Ok(())
    }

    /// Takes a slot for one more listener of the tunnel whose count is `tunnel`, or says which limit
    /// is reached.
    pub fn take(self: &Arc<Self>, tunnel: &Arc<AtomicUsize>) -> Result<ListenerSlot, String> {
        if tunnel.fetch_add(1, Ordering::Relaxed) >= self.per_tunnel {
            tunnel.fetch_sub(1, Ordering::Relaxed);
            return Err(format!(
                "this tunnel already has {} remote listeners, the server's --max-listeners",
                self.per_tunnel
            ));
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.total_cap {
            self.total.fetch_sub(1, Ordering::Relaxed);
            tunnel.fetch_sub(1, Ordering::Relaxed);
            return Err(format!(
                "the server has {} remote listeners, all its file descriptor budget allows",
                self.total_cap
            ));
        }
        Ok(ListenerSlot { limits: self.clone(), tunnel: tunnel.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tunnel_cap_and_release() {
        let limits = Arc::new(ListenLimits::new(2, false));
        let t = Arc::new(AtomicUsize::new(0));
        let a = limits.take(&t).unwrap();
        let _b = limits.take(&t).unwrap();
        assert!(limits.take(&t).unwrap_err().contains("--max-listeners"));
        drop(a);
        assert!(limits.take(&t).is_ok(), "a closed listener frees its slot");
        let e = limits.check_addr("0.0.0.0:2222".parse().unwrap()).unwrap_err();
        assert!(e.contains("--allow-public-listen"), "{e}");
        assert!(limits.check_addr("127.0.0.1:2222".parse().unwrap()).is_ok());
        assert!(ListenLimits::new(1, true).check_addr("[::]:2222".parse().unwrap()).is_ok());
    }
}
