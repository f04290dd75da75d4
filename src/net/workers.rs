//! A pool of single-threaded runtimes, one per core by default, that connections are handed to.
//!
//! A connection handed to a worker runs there with everything it spawns: a tunnel's reader and writer,
//! its streams' relays, the dials they make. tokio's work-stealing scheduler would otherwise move those
//! tasks between cores at every wake-up, and the frames they pass to each other with them; for one
//! tunnel, whose bytes all cross one WebSocket anyway, that costs more than a second core gives. On the
//! 2-core bench machine one stream through a tunnel went from 24 to 33 Gbit/s with both ends on one
//! thread (bench/results/tunnel-*.md), and a CONNECT through the proxy from 38 to 51 Gbit/s. Many
//! connections still spread over every core, one per worker in turn. The workers stop when the pool is
//! dropped, abandoning whatever still runs there (servers drain their connections first).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Handles on the running workers. Dropping it stops them.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Most workers accepted: far more than any machine has cores.
const MAX_WORKERS: usize = 1024;
/// Descriptors one worker holds (its epoll instance, its waker, slack).
const FDS_PER_WORKER: u64 = 4;

/// Checks a `--workers` value: at most [`MAX_WORKERS`], and few enough that their own descriptors
/// leave most of the process's descriptor limit for connections.
pub fn check_count(n: usize) -> Result<usize, crate::config::ConfigError> {
    crate::config::check_count("workers", n, 0, MAX_WORKERS)?;
    let limit = fd_limit();
    if (n as u64) * FDS_PER_WORKER > limit / 2 {
        return Err(crate::config::ConfigError::invalid(
            crate::config::flag_and_key("workers"),
            format!(
                "{n} workers would use {} of the {limit} file descriptors this process may open \
                 (ulimit -n); use fewer workers (0 = one per core) or raise the limit",
                (n as u64) * FDS_PER_WORKER
            ),
        ));
    }
    Ok(n)
}

/// The soft limit on open file descriptors.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

impl Workers {
    /// Starts `n` workers (0: one per available core), each a current-thread runtime on its own OS
    /// thread.
    pub fn start(n: usize) -> io::Result<Arc<Workers>> {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let stopped = stop.clone().cancelled_owned();
            let spawned =
                std::thread::Builder::new().name(format!("tunnelkit-worker-{i}")).spawn(move || {
                    rt.block_on(async move {
                        tokio::select! {
                            _ = stopped => {}
                            _ = keep_a_timer_pending() => {}
                        }
                    })
                });
            if let Err(e) = spawned {
                stop.cancel();
                return Err(e);
            }
        }
        Ok(Arc::new(Workers { handles, next: AtomicUsize::new(0), stop }))
    }

    /// How many workers run (never zero).
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Runs `serve(tcp, peer)` on the next worker in turn. The socket is moved to that worker's
    /// reactor first, so its readiness events are handled on the thread that serves it.
    pub fn serve<F, Fut>(&self, tcp: TcpStream, peer: SocketAddr, serve: F)
    where
        F: FnOnce(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_numbered(tcp, peer, move |tcp, peer, _| serve(tcp, peer));
    }

    /// As [`Workers::serve`], telling `serve` the number of the worker it runs on (below
    /// [`Workers::count`]), for servers that keep something per worker (a connection pool).
    pub fn serve_numbered<F, Fut>(&self, tcp: TcpStream, peer: SocketAddr, serve: F)
    where
        F: FnOnce(TcpStream, SocketAddr, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => return tracing::debug!(%peer, "cannot hand a connection to a worker: {e}"),
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp, peer, i).await,
                Err(e) => tracing::debug!(%peer, "cannot register a connection with its worker: {e}"),
            }
        });
    }
}

/// How often a worker's own timer fires; see [`keep_a_timer_pending`].
const TIMER_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps a timer due within [`TIMER_TICK`] on the worker's clock, for ever.
///
/// tokio wakes its driver (a write to the runtime's eventfd, then an `epoll_wait` that returns at
/// once) whenever a timer is registered that is due before every pending one, or while none is
/// pending. Connections arm timers per request (hyper's header timeout while it waits for a head,
/// backend deadlines), so a worker whose connections were all busy paid that wake-up at the next
/// request: 0.17 `write`s per handshake through `tunnelkit sticky`. With this one always due soon,
/// later deadlines never come first, and the price is one wake-up a second.
async fn keep_a_timer_pending() {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_are_served_on_worker_threads() {
        let workers = Workers::start(2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (tcp, peer) = listener.accept().await.unwrap();
            workers.serve(tcp, peer, |mut tcp, _| async move {
                let name = std::thread::current().name().unwrap_or_default().to_owned();
                let _ = tcp.write_all(name.as_bytes()).await;
            });
            let mut name = String::new();
            c.read_to_string(&mut name).await.unwrap();
            assert!(name.starts_with("tunnelkit-worker-"), "served on {name:?}");
        }
    }

    #[tokio::test]
    async fn dropping_the_pool_stops_its_workers() {
        let workers = Workers::start(1).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let (started, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (held, held_rx) = tokio::sync::oneshot::channel::<()>();
        workers.serve(tcp, peer, move |_tcp, _| async move {
            let _held = held;
            let _ = started.send(());
            std::future::pending::<()>().await;
        });
        started_rx.await.unwrap();
        drop(workers);
        // The worker's runtime is dropped with its tasks: the never-ending one lets go of `held`.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), held_rx).await;
        assert!(matches!(ended, Ok(Err(_))), "the worker kept running: {ended:?}");
    }
}
