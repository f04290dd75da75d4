//! `tunnelkit connect` (stdin/stdout through a proxy, for ssh `ProxyCommand`) and
//! `tunnelkit forward` (local port forwards through a proxy).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::dialer::ProxyDialer;
use super::env;
use crate::net::relay::Relay;
use crate::net::{socket, BoxStream, DialError, PipePool, Target};
use crate::shutdown::{self, Drain};

use super::args::{ConnectArgs, ForwardArgs};

/// Picks the proxy: the flag, else the environment for an https-like (tunnelled) destination.
fn proxy_for(flag: &Option<String>, target: &Target) -> Option<String> {
    flag.clone().or_else(|| env::proxy_for("https", target))
}

/// Opens a stream to `target`, through `proxy` if given.
async fn open(proxy: Option<&ProxyDialer>, target: &Target) -> Result<BoxStream, DialError> {
    match proxy {
        Some(p) => p.tunnel(target).await,
        None => {
            let tcp = socket::connect(target)
                .await
                .map_err(|source| DialError::Connect { target: target.to_string(), source })?;
            socket::set_nodelay(&tcp);
            Ok(Box::new(tcp))
        }
    }
}

/// Runs `tunnelkit connect`: stdin/stdout through the proxy, half-close both ways.
pub async fn run_connect(args: ConnectArgs) -> anyhow::Result<()> {
    let proxy = match proxy_for(&args.proxy, &args.target) {
        Some(url) => Some(ProxyDialer::from_url(&url).with_context(|| "--proxy")?),
        None => None,
    };
    let mut stream = open(proxy.as_ref(), &args.target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    // When the remote side ends, so do we (stdout closes with the process), as `nc` does: ssh waits
    // for its ProxyCommand's stdout to close. Our stdin's EOF only half-closes the other way.
    Relay::new(&mut stdio, &mut stream, None).end_with_b().await.context("relay")?;
    Ok(())
}

/// Runs `tunnelkit forward` until SIGTERM/SIGINT.
pub async fn run_forward(args: ForwardArgs) -> anyhow::Result<()> {
    let drain = Drain::new();
    let stop = shutdown::signal();
    let pipes =
        (!args.no_splice && args.max_pipes > 0).then(|| PipePool::new(args.max_pipes, Some(args.pipe_size)));
    for spec in &args.local {
        let listener = TcpListener::bind(spec.bind)
            .await
            .with_context(|| format!("cannot listen on {} (-L {spec})", spec.bind))?;
        let proxy = match proxy_for(&args.proxy, &spec.target) {
            Some(url) => Some(Arc::new(ProxyDialer::from_url(&url).context("--proxy")?)),
            None if args.direct => None,
            None => anyhow::bail!(
                "no proxy configured for -L {spec}; pass --proxy URL or set https_proxy \
                 (or --direct to connect without a proxy)"
            ),
        };
        let local = listener.local_addr()?;
        crate::telemetry::announce(&format!("listening on {local}"));
        if !local.ip().is_loopback() {
            tracing::warn!(
                "-L {spec} listens on {local}, not loopback: anyone who can reach it can use the \
                 forward to {} (bind 127.0.0.1 to keep it local)",
                spec.target
            );
        }
        let spare = (args.prewarm > 0)
            .then(|| prewarm(proxy.clone(), spec.target.clone(), args.prewarm, drain.clone()));
        let target = spec.target.clone();
        let d = drain.clone();
        let pipes = pipes.clone();
        drain.spawn(async move {
            let mut spare = spare;
            loop {
                let (client, peer) = tokio::select! {
                    _ = d.cancelled() => return,
                    x = socket::accept(&listener) => x,
                };
                let ready = spare.as_mut().and_then(take_live);
                let proxy = proxy.clone();
                let target = target.clone();
                let pipes = pipes.clone();
                d.spawn(async move {
                    let upstream = match ready {
                        Some(s) => Ok(s),
                        None => open(proxy.as_deref(), &target).await,
                    };
                    match upstream {
                        Ok(mut up) => {
                            let mut client = client;
                            let _ = Relay::new(&mut client, &mut up, None).splice(pipes.as_ref()).await;
                        }
                        Err(e) => tracing::warn!(%peer, "forward to {target} failed: {e}"),
                    }
                });
            }
        });
    }
    stop.await;
    let left = drain.finish(args.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("{left} connections still open after --shutdown-timeout; closing them");
    }
    Ok(())
}

/// Keeps up to `n` established tunnels ready for the next connections of one forward.
fn prewarm(
    proxy: Option<Arc<ProxyDialer>>,
    target: Target,
    n: usize,
    drain: Drain,
) -> mpsc::Receiver<BoxStream> {
    let (tx, rx) = mpsc::channel(n);
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = drain.cancelled() => return,
                p = tx.reserve() => match p { Ok(p) => p, Err(_) => return },
            };
            match open(proxy.as_deref(), &target).await {
                Ok(s) => permit.send(s),
                Err(e) => {
                    drop(permit);
                    tracing::warn!("prewarming a tunnel to {target} failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    rx
}

/// A prewarmed tunnel that is still open (one the proxy closed meanwhile is dropped).
fn take_live(rx: &mut mpsc::Receiver<BoxStream>) -> Option<BoxStream> {
    while let Ok(mut s) = rx.try_recv() {
        let mut probe = [0u8; 1];
        if s.read(&mut probe).now_or_never().is_none() {
            return Some(s);
        }
    }
    None
}
