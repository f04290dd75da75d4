//! A TCP relay that misbehaves on command, placed between a tunnel client and its server: it can reset
//! every connection it carries, stop forwarding without closing (a blackhole), or refuse new connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Handle on a running relay.
#[derive(Clone)]
pub struct ChaosRelay {
    pub addr: SocketAddr,
    /// Bumped to reset every live connection.
    epoch: Arc<watch::Sender<u64>>,
    /// Reset everything each time this many more bytes have been carried (0 = never).
    reset_every: Arc<AtomicU64>,
    carried: Arc<AtomicU64>,
    blackhole: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Connections turned away (reset at once) while refusing.
    pub refused: Arc<AtomicU64>,
}

impl ChaosRelay {
    /// Starts a relay to `upstream` on an ephemeral loopback port.
    pub async fn start(upstream: SocketAddr) -> ChaosRelay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = ChaosRelay {
            addr: l.local_addr().unwrap(),
            epoch: Arc::new(watch::channel(0).0),
            reset_every: Arc::default(),
            carried: Arc::default(),
            blackhole: Arc::default(),
            refuse: Arc::default(),
            accepted: Arc::default(),
            refused: Arc::default(),
        };
        let r = relay.clone();
        tokio::spawn(async move {
            loop {
                let Ok((down, _)) = l.accept().await else { return };
                let _ = socket2::SockRef::from(&down).set_linger(Some(Duration::ZERO));
                if r.refuse.load(Ordering::SeqCst) {
                    r.refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                r.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = TcpStream::connect(upstream).await else { continue };
                let _ = socket2::SockRef::from(&up).set_linger(Some(Duration::ZERO));
                tokio::spawn(carry(down, up, r.clone()));
            }
        });
        relay
    }

    /// Resets (RST) every connection currently carried.
    pub fn reset_all(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Resets every connection each time `bytes` more bytes have crossed the relay (either way), so
    /// resets land in the middle of a transfer however fast it runs.
    pub fn reset_every_bytes(&self, bytes: u64) {
        self.reset_every.store(bytes, Ordering::SeqCst);
    }

    /// Counts carried bytes and fires the byte-based reset.
    fn carried(&self, n: usize) {
        let every = self.reset_every.load(Ordering::SeqCst);
        let before = self.carried.fetch_add(n as u64, Ordering::SeqCst);
        if every > 0 && before / every != (before + n as u64) / every {
            self.reset_all();
        }
    }

    /// Stops (or resumes) forwarding bytes on every connection, without closing any.
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }

    /// Refuses (or accepts again) new connections.
    pub fn set_refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }
}

async fn carry(down: TcpStream, up: TcpStream, relay: ChaosRelay) {
    let mut epoch = relay.epoch.subscribe();
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    let start = *epoch.borrow_and_update();
    tokio::select! {
        _ = pump(dr, uw, &relay) => {}
        _ = pump(ur, dw, &relay) => {}
        _ = async { while epoch.changed().await.is_ok() { if *epoch.borrow() != start { return } } } => {}
    }
    // Dropping both sockets (linger 0) sends resets, like a middlebox killing the flow.
}

/// Copies one direction, holding bytes back while the blackhole is on.
async fn pump(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, relay: &ChaosRelay) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        while relay.blackhole.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        relay.carried(n);
    }
}
