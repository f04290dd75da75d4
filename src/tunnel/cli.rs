//! `tunnelkit ws-server` and `tunnelkit ws-client`: flags (and `ws-server`'s `--config` file, resolved in
//! `server_settings`) → [`Server`] / [`TunnelClient`] and their entries, then the signal handling both share: the first SIGTERM/SIGINT stops accepting and lets open
//! streams finish for up to `--shutdown-timeout`, a second one ends at once. `ws-server` reloads its
//! tokens, stream policy, limits and log filter on SIGHUP (`apply_reload`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use super::args::{ClientArgs, ServerArgs};
use super::client::{serve_local, serve_socks, Closing, Keeper, RemoteForwards, TunnelClient};
use super::cluster::{Cluster, ClusterOptions};
use super::compat::CompatContext;
use super::exposure;
use super::params::{Limits, Mode};
use super::server::{Server, ServerOptions};
use super::server_settings::ServerSettings;
use crate::client::ProxyDialer;
use crate::config::ConfigError;
use crate::net::workers::Workers;
use crate::net::{Dialer, DirectDialer, SwappableDialer};
use crate::policy::Policy;
use crate::reload::{needs_upgrade, Reloads};
use crate::shutdown::{self, Drain};
use crate::upgrade::{ListenerSet, Role};

/// Runs `tunnelkit ws-server` until SIGINT/SIGTERM and the drain that follows.
pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let settings = ServerSettings::load(args.clone())?;
    exposure::check_server(&settings)?;
    crate::telemetry::apply_config_log_level(settings.log_level.as_deref());
    let policy = stream_policy(&settings);
    // Replaced by a reload, so new streams are dialled under the reloaded policy.
    let swappable = Arc::new(SwappableDialer::new(stream_dialer(policy.clone())));
    let dialer: Arc<dyn Dialer> = swappable.clone();
    let mut opts = ServerOptions::new(dialer.clone(), policy);
    opts.path = settings.path.clone();
    opts.tokens = settings.tokens.clone();
    opts.limits = limits_of(&settings);
    if let Some((cert, key)) = &settings.tls {
        opts.tls = Some(Arc::new(crate::net::tls::server_config(cert, key)?));
    }
    if settings.compat.is_some() {
        let mut ctx = CompatContext::new(
            dialer,
            settings.compat_target.clone(),
            settings.max_keep_broken,
            settings.max_tunnels,
        );
        ctx.max_tunnels_per_token = opts.limits.max_tunnels_per_token;
        opts.compat = Some(Arc::new(ctx));
    }
    opts.workers =
        Some(Workers::start(settings.workers).context("--workers: cannot start the worker threads")?);
    // Bound here, inherited from systemd or taken over from the running process (--upgrade).
    let mut listeners = ListenerSet::open(&settings.upgrade).await?;
    let metrics = match settings.metrics {
        Some(addr) => Some(crate::telemetry::serve_metrics_on(listeners.take(Role::Metrics, addr).await?)?),
        None => None,
    };
    let listener = listeners.take(Role::Listen, settings.listen).await?;
    if let Some(c) = &settings.cluster {
        let advertise = c.advertise.clone().unwrap_or(listener.local_addr()?.to_string());
        let tls_cert = settings.tls.as_ref().map(|(cert, _)| cert.clone());
        let options =
            ClusterOptions { redis: c.redis.clone(), advertise, secret: c.secret.clone(), tls_cert };
        opts.cluster = Some(Arc::new(Cluster::connect(options).await?));
    }
    let server = Server::new(opts);
    // Installed before the address is announced: a SIGHUP without a handler ends the process.
    let reloads = Reloads::new("ws-server", args.config.clone());
    let reload = {
        let (server, started) = (server.clone(), settings.clone());
        reloads
            .listen(move |_| apply_reload(&args, &started, &server, &swappable))
            .context("cannot watch SIGHUP")?
    };
    // SIGTERM's handler too: a client may stop the server the moment it reads the address.
    let stop = shutdown::signal();
    crate::telemetry::announce(&format!("listening on {}", listener.local_addr()?));
    if let Some(addr) = metrics {
        crate::telemetry::announce(&format!("metrics listening on {addr}"));
    }
    let reload = tokio::spawn(reload);
    let drain = Drain::new();
    tokio::spawn(server.serve(listener, drain.clone()));
    // A successor taking over stops us accepting and drains us as a signal does.
    let handover = listeners.serve().await?;
    // Written once we accept, so that after an upgrade the file names the successor.
    let pid_file = crate::reload::pid_file::write_if(settings.pid_file.as_deref())?;
    handover.until(stop).await;
    reload.abort();
    drain_for(&drain, settings.shutdown_timeout, "tunnel connections").await;
    drop(pid_file);
    Ok(())
}

/// Where streams may go. Tunnels carry any TCP service, so every port is open unless --connect-ports
/// narrows it; the address policy (no private or special-purpose ranges without --allow) is what keeps
/// the server from being an open door into its own network.
fn stream_policy(settings: &ServerSettings) -> Arc<Policy> {
    let ports = settings.connect_ports.clone().unwrap_or_else(|| "1-65535".parse().expect("static"));
    Arc::new(Policy::new().allow(settings.allow.clone()).connect_ports(ports))
}

fn stream_dialer(policy: Arc<Policy>) -> Arc<dyn Dialer> {
    Arc::new(DirectDialer::new(policy, Duration::from_secs(10)))
}

/// The limits of the tunnels the server creates, from its settings (the rest are the protocol's
/// defaults, which no flag changes).
fn limits_of(settings: &ServerSettings) -> Limits {
    Limits {
        max_tunnels: settings.max_tunnels,
        max_streams: settings.max_streams,
        heartbeat: settings.heartbeat,
        max_keep_broken: settings.max_keep_broken,
        max_tunnels_per_token: settings.max_tunnels_per_token,
        max_listeners: settings.max_listeners,
        allow_public_listen: settings.allow_public_listen,
        max_stream_memory: settings.max_stream_memory,
        ..Limits::default()
    }
}

/// A reload of `ws-server` (SIGHUP): the flags over the file read again, checked whole as at start,
/// then the tokens swapped in (a revoked token's tunnels close after `--reload-grace`), the stream
/// policy (`allow`, `connect_ports`: new streams, of new and open tunnels, are dialled under it), the
/// limits of the tunnels created from now on (`max_tunnels`, `max_tunnels_per_token`, `max_streams`,
/// `max_stream_memory`, `heartbeat`, `max_keep_broken`; open tunnels keep theirs) and the log filter
/// (`log_level`). Everything else is fixed at start, `-R` listen-address checks and `max_listeners`
/// included, and so are all limits in compat mode; a changed key is named in a warning.
fn apply_reload(
    args: &ServerArgs,
    started: &ServerSettings,
    server: &Server,
    dialer: &SwappableDialer,
) -> Result<(), ConfigError> {
    let new = ServerSettings::load(args.clone())?;
    exposure::check_server(&new).map_err(|e| ConfigError::invalid("tokens", format!("{e:#}")))?;
    needs_upgrade("listen", &started.listen, &new.listen);
    needs_upgrade("workers", &started.workers, &new.workers);
    needs_upgrade("path", &started.path, &new.path);
    // One budget made at start counts the listeners of every tunnel.
    needs_upgrade("max_listeners", &started.max_listeners, &new.max_listeners);
    needs_upgrade("allow_public_listen", &started.allow_public_listen, &new.allow_public_listen);
    if started.compat.is_some() {
        // Compat tunnels take their limits from the compat context, made once at start.
        let fixed = |s: &ServerSettings| {
            format!(
                "max_tunnels {}, max_tunnels_per_token {}, max_keep_broken {:?}",
                s.max_tunnels, s.max_tunnels_per_token, s.max_keep_broken
            )
        };
        needs_upgrade("limits (compat mode)", &fixed(started), &fixed(&new));
    }
    dialer.replace(stream_dialer(stream_policy(&new)));
    server.set_limits(limits_of(&new));
    crate::telemetry::apply_config_log_level(new.log_level.as_deref());
    server.set_tokens(new.tokens, new.reload_grace);
    Ok(())
}

/// Runs `tunnelkit ws-client` until SIGINT/SIGTERM and the drain that follows, or a final refusal.
pub async fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let mode: Mode = args.mode.parse().map_err(|e: String| anyhow::anyhow!("--mode: {e}"))?;
    exposure::warn_client(&args);
    let mut client = TunnelClient::new(&args.url)?
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
    let drain = Drain::new();
    let stop = shutdown::signal();
    let keeper = Keeper::new(client, RemoteForwards::new(args.remote.clone(), drain.clone()));
    // Come up only once the server has accepted us, so a wrong token or URL fails at once.
    if mode == Mode::Multi {
        keeper.shared().await.map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    }
    for spec in &args.local {
        let listener = TcpListener::bind(spec.bind).await.with_context(|| format!("-L {}", spec.bind))?;
        crate::telemetry::announce(&format!("listening on {}", listener.local_addr()?));
        drain.spawn(serve_local(listener, spec.target.to_string(), keeper.clone(), drain.clone()));
    }
    if let Some(addr) = args.socks {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("--socks {addr}"))?;
        crate::telemetry::announce(&format!("socks5 listening on {}", listener.local_addr()?));
        drain.spawn(serve_socks(listener, keeper.clone(), drain.clone()));
    }
    if !args.remote.is_empty() {
        drain.spawn(keeper.clone().keep_shared(drain.clone()));
    }
    stop.await;
    let all_done = drain_for(&drain, args.shutdown_timeout, "streams").await;
    keeper.close(if all_done { Closing::InOrder } else { Closing::AtOnce }).await;
    Ok(())
}

/// Stops accepting and waits for the tracked work, up to `timeout` or a second signal. True when
/// everything finished in time.
async fn drain_for(drain: &Drain, timeout: Duration, what: &str) -> bool {
    tracing::info!("shutting down: draining for up to {timeout:?}");
    let left = drain.finish(timeout).await;
    if left > 0 {
        tracing::warn!("{left} {what} still open at the shutdown deadline: ending them");
    }
    left == 0
}
