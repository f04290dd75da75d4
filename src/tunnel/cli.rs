//! `tunnelkit ws-server` and `tunnelkit ws-client`: flags → [`Server`] / [`Client`], plus the client's
//! entries: `-L` local forwards, `-R` remote forwards and a `--socks` SOCKS5 entry whose CONNECTs become
//! streams. In multi mode every entry shares one tunnel, created on demand (again after an idle close or
//! an expiry); in single mode each connection gets a tunnel of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::args::{ClientArgs, ServerArgs};
use super::backoff::Backoff;
use super::client::{Client, ConnectError};
use super::compat::CompatContext;
use super::exposure;
use super::handle::Tunnel;
use super::rst;
use super::server::{Server, ServerOptions};
use super::settings::{Limits, Mode};
use super::stream::TunnelStream;
use crate::client::ProxyDialer;
use crate::net::socks::SocksServer;
use crate::net::workers::Workers;
use crate::net::{
    relay, socket, BoxStream, DialError, DialFuture, Dialer, DirectDialer, ForwardSpec, Purpose, Target,
};
use crate::policy::{Policy, Users};
use crate::shutdown::{self, Drain};
use crate::telemetry::access_log::AccessLog;

/// Runs `tunnelkit ws-server` until SIGINT/SIGTERM.
pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    exposure::check_server(&args)?;
    // Tunnels carry any TCP service, so every port is open unless --connect-ports narrows it; the address
    // policy (no private or special-purpose ranges without --allow) is what keeps the server from being
    // an open door into its own network.
    let ports = args.connect_ports.clone().unwrap_or_else(|| "1-65535".parse().expect("static"));
    let policy = Policy::new().allow(args.allow.clone()).connect_ports(ports);
    let policy = Arc::new(policy);
    let dialer: Arc<dyn Dialer> = Arc::new(DirectDialer::new(policy.clone(), Duration::from_secs(10)));
    let mut opts = ServerOptions::new(dialer.clone(), policy);
    opts.path = args.path.clone();
    opts.tokens = args.token.clone();
    opts.limits = Limits {
        max_tunnels: args.max_tunnels,
        max_streams: args.max_streams,
        heartbeat: args.heartbeat,
        max_keep_broken: args.max_keep_broken,
        max_tunnels_per_token: args.max_tunnels_per_token.unwrap_or((args.max_tunnels / 4).max(1)),
        max_listeners: args.max_listeners,
        allow_public_listen: args.allow_public_listen,
        max_stream_memory: args.max_stream_memory,
        ..Limits::default()
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        opts.tls = Some(Arc::new(crate::net::tls::server_config(cert, key)?));
    }
    if args.compat.is_some() {
        let mut ctx =
            CompatContext::new(dialer, args.compat_target.clone(), args.max_keep_broken, args.max_tunnels);
        ctx.max_tunnels_per_token = opts.limits.max_tunnels_per_token;
        opts.compat = Some(Arc::new(ctx));
    }
    opts.workers = Some(Workers::start(args.workers).context("--workers: cannot start the worker threads")?);
    let metrics = match args.metrics {
        Some(addr) => Some(crate::telemetry::serve_metrics(addr).await?),
        None => None,
    };
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("--listen {}", args.listen))?;
    crate::telemetry::announce(&format!("listening on {}", listener.local_addr()?));
    if let Some(addr) = metrics {
        crate::telemetry::announce(&format!("metrics listening on {addr}"));
    }
    let drain = Drain::new();
    let server = Server::new(opts);
    tokio::spawn(server.serve(listener, drain.clone()));
    shutdown::signal().await;
    drain.trigger();
    Ok(())
}

/// Gives out the shared tunnel of a multi-mode client, creating it when there is none (first use, after an
/// idle close, after an expiry) and registering the `-R` forwards on each new tunnel.
struct TunnelSource {
    client: Client,
    remote: Vec<ForwardSpec>,
    current: Mutex<SourceState>,
}

/// The live tunnel, or how the last attempt to get one ended.
#[derive(Default)]
struct SourceState {
    tunnel: Option<Tunnel>,
    /// When the last connect attempt gave up, and why (refused, and its message).
    failed: Option<(Instant, bool, String)>,
}

impl TunnelSource {
    async fn tunnel(self: &Arc<Self>) -> Result<Tunnel, ConnectError> {
        let asked = Instant::now();
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.tunnel.as_ref().filter(|t| t.end_reason().is_none()) {
            return Ok(t.clone());
        }
        // Connections that queued behind an attempt share its failure instead of each starting a
        // full retry schedule of their own (which would make the last of them wait N times as long).
        if let Some((at, refused, why)) = &cur.failed {
            if *at >= asked {
                return Err(if *refused {
                    ConnectError::Refused(why.clone())
                } else {
                    ConnectError::Failed(anyhow::anyhow!("{why}"))
                });
            }
        }
        let t = match connect_retrying(&self.client).await {
            Ok(t) => t,
            Err(e) => {
                let refused = matches!(e, ConnectError::Refused(_));
                let why = match &e {
                    ConnectError::Refused(why) => why.clone(),
                    ConnectError::Failed(e) => format!("{e:#}"),
                };
                cur.failed = Some((Instant::now(), refused, why));
                return Err(e);
            }
        };
        let mut targets = HashMap::new();
        for spec in &self.remote {
            let (id, bound) = t
                .listen(&spec.bind.to_string())
                .await
                .map_err(|e| ConnectError::Refused(format!("-R {}: {e}", spec.bind)))?;
            crate::telemetry::announce(&format!("remote listening on {bound}"));
            targets.insert(format!("listen:{id}"), spec.target.clone());
        }
        tokio::spawn(serve_incoming(t.clone(), targets));
        cur.tunnel = Some(t.clone());
        cur.failed = None;
        Ok(t)
    }
}

/// Connects, retrying failures that may pass (server down, network) with backoff; refusals are final.
async fn connect_retrying(client: &Client) -> Result<Tunnel, ConnectError> {
    let mut backoff = Backoff::new();
    let mut attempts = 0;
    loop {
        match client.connect().await {
            Ok(t) => return Ok(t),
            Err(ConnectError::Refused(why)) => return Err(ConnectError::Refused(why)),
            Err(e) => {
                attempts += 1;
                if attempts == 1 || attempts % 10 == 0 {
                    tracing::warn!("cannot reach the tunnel server (attempt {attempts}): {e}");
                }
                if attempts >= 8 {
                    return Err(e);
                }
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}

/// Streams the server opens back to us (`-R`): dial the local target registered for that listener.
async fn serve_incoming(tunnel: Tunnel, targets: HashMap<String, Target>) {
    let dialer = DirectDialer::new(Arc::new(Policy::allow_all()), Duration::from_secs(10));
    let dialer = Arc::new(dialer);
    while let Some(stream) = tunnel.accept().await {
        let Some(target) = targets.get(stream.target()).cloned() else {
            stream.reset(rst::POLICY, "this client only accepts streams of its -R forwards");
            continue;
        };
        let dialer = dialer.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            match dialer.dial(&target, Purpose::Tunnel).await {
                Ok(mut local) => {
                    stream.confirm();
                    let _ = relay(&mut stream, &mut local, None).await;
                }
                Err(e) => stream.reset(rst::DIAL_FAILED, &e.to_string()),
            }
        });
    }
}

/// Opens streams through the client's tunnel(s): the `--socks` entry's dialer.
struct TunnelDialer {
    source: Arc<TunnelSource>,
    mode: Mode,
}

impl TunnelDialer {
    async fn open(&self, target: &Target) -> Result<TunnelStream, DialError> {
        let tunnel = match self.mode {
            Mode::Multi => self.source.tunnel().await,
            Mode::Single => self.source.client.connect().await,
        }
        .map_err(|e| DialError::Upstream(format!("tunnel: {e}")))?;
        tunnel.open(&target.to_string()).map_err(|e| DialError::Upstream(format!("tunnel: {e}")))
    }
}

impl Dialer for TunnelDialer {
    fn dial<'a>(&'a self, target: &'a Target, _purpose: Purpose) -> DialFuture<'a> {
        Box::pin(async move {
            let stream = self.open(target).await?;
            // SOCKS must answer success or failure before data flows: wait for the server's dial.
            stream.connected().await.map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    DialError::Upstream(format!("refused by policy: {e}"))
                }
                _ => DialError::Connect { target: target.to_string(), source: e },
            })?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// Runs `tunnelkit ws-client` until SIGINT/SIGTERM or a final refusal.
pub async fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let mode: Mode = args.mode.parse().map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    exposure::warn_client(&args);
    let mut client = Client::new(&args.url)?
        .token(args.token.clone())
        .mode(mode)
        .keep_broken_tunnel(args.keep_broken_tunnel)
        .idle_timeout(Some(args.idle_timeout));
    if let Some(url) = &args.proxy {
        client = client.proxy(Some(ProxyDialer::from_url(url).context("--proxy")?));
    }
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("--ca {}: cannot read", ca.display()))?;
        client = client.with_roots(&[&pem]).with_context(|| format!("--ca {}", ca.display()))?;
    }
    if args.local.is_empty() && args.remote.is_empty() && args.socks.is_none() {
        anyhow::bail!("ws-client: nothing to do: give -L, -R or --socks");
    }
    if mode == Mode::Single && !args.remote.is_empty() {
        anyhow::bail!("-R needs --mode multi: a single-mode tunnel carries one stream opened by the client");
    }
    let source = Arc::new(TunnelSource {
        client,
        remote: args.remote.clone(),
        current: Mutex::new(SourceState::default()),
    });
    // Come up only once the server has accepted us, so a wrong token or URL fails at once.
    if mode == Mode::Multi {
        source.tunnel().await.map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    }
    for spec in &args.local {
        let listener = TcpListener::bind(spec.bind).await.with_context(|| format!("-L {}", spec.bind))?;
        crate::telemetry::announce(&format!("listening on {}", listener.local_addr()?));
        tokio::spawn(serve_local(listener, spec.target.to_string(), source.clone(), mode));
    }
    if let Some(addr) = args.socks {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("--socks {addr}"))?;
        crate::telemetry::announce(&format!("socks5 listening on {}", listener.local_addr()?));
        let dialer: Arc<dyn Dialer> = Arc::new(TunnelDialer { source: source.clone(), mode });
        let socks = Arc::new(SocksServer::new(dialer, Arc::new(Users::default()), AccessLog::disabled()));
        tokio::spawn(socks.serve(listener, Drain::new()));
    }
    if !args.remote.is_empty() {
        // Remote forwards need a tunnel at all times: recreate it whenever it ends.
        let source = source.clone();
        tokio::spawn(async move {
            loop {
                match source.tunnel().await {
                    Ok(t) => {
                        let why = t.closed().await;
                        tracing::warn!("tunnel ended ({why}); reconnecting for the -R forwards");
                    }
                    Err(e) => {
                        tracing::error!("cannot re-establish the tunnel for -R: {e}");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
    }
    shutdown::signal().await;
    match source.current.lock().await.tunnel.as_ref().filter(|t| t.end_reason().is_none()) {
        Some(t) => {
            tracing::info!(tunnel = %t.id(), "shutting down on a signal: closing the tunnel");
            t.close().await;
        }
        None => tracing::info!("shutting down on a signal"),
    }
    Ok(())
}

/// `-L`: each accepted connection becomes a stream to `target` (0-RTT: bytes flow before the server's dial
/// completes; a refusal resets the local connection).
async fn serve_local(listener: TcpListener, target: String, source: Arc<TunnelSource>, mode: Mode) {
    loop {
        let (tcp, peer) = socket::accept(&listener).await;
        let source = source.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let tunnel = match mode {
                Mode::Multi => source.tunnel().await,
                Mode::Single => source.client.connect().await,
            };
            let tunnel = match tunnel {
                Ok(t) => t,
                Err(e) => return tracing::warn!(%peer, "no tunnel for -L connection: {e}"),
            };
            match tunnel.open(&target) {
                Ok(stream) => forward(tcp, stream).await,
                Err(e) => tracing::warn!(%peer, "cannot open a stream: {e}"),
            }
        });
    }
}

/// Relays a local connection and a stream; if the stream fails, the local side is reset rather than
/// closed, so the application cannot take a truncated transfer for a complete one.
async fn forward(mut tcp: TcpStream, mut stream: TunnelStream) {
    if let Err(e) = relay(&mut tcp, &mut stream, None).await {
        tracing::debug!(target = stream.target(), "stream failed: {e}");
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    }
}
