//! What a reload (SIGHUP) of `tunnelkit proxy` changes while traffic flows: [`Live`], the users and
//! the destination policy (allow/deny ranges, port lists, and the dialer that enforces them), one
//! `Arc` swapped whole; [`LiveDialer`], through which the HTTP and SOCKS listeners dial with the
//! policy in force; and [`Reloader`], which validates a new configuration with the start-up loader
//! before swapping it in, reopens the access log (log rotation) and closes the tunnels of removed
//! users after `--reload-grace`.
//!
//! Each request loads the `Live` once when it starts (see `Exchange`) and authenticates with it, so a
//! request never sees half of a reload; a dial made later in that request goes through
//! [`LiveDialer`] and so meets the newest policy, which can only make it stricter or looser as the
//! operator just asked (`dial_timeout` included). The timeouts ([`Timeouts`]) are the snapshot's too,
//! except for SOCKS5 connections and TLS handshakes, which keep the ones the proxy started with.
//! `max_connections` is resized ([`ConnectionLimit`]), and `log_level` becomes the log filter (see
//! [`crate::telemetry::log_level`]). Listen addresses, TLS, interception and workers
//! are fixed at start:
//! changing them in the file logs a warning (see [`crate::reload::needs_upgrade`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::args::Args;
use super::settings::Settings;
use crate::client::ProxyDialer;
use crate::config::ConfigError;
use crate::net::{DialFuture, Dialer, DirectDialer, GatedDialer, Purpose, Target};
use crate::policy::{Policy, Users};
use crate::reload::revoke::{self, Revocations};
use crate::reload::{needs_upgrade, needs_upgrade_opt};
use crate::telemetry::access_log::AccessLog;

/// The part of the configuration a reload replaces, as one snapshot.
pub(super) struct Live {
    /// Accepted users (empty: no authentication).
    pub users: Arc<Users>,
    /// Destination policy, for checks made without dialling.
    pub policy: Arc<Policy>,
    /// Dials under `policy`, directly or through the `--upstream` parent.
    dialer: Arc<dyn Dialer>,
    /// The timeouts a request runs under.
    pub timeouts: Timeouts,
}

/// The timeouts of one request, from its [`Live`] snapshot: a reload changes them for the
/// requests and tunnels that start after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timeouts {
    /// `--header-timeout`: a request head (after the first, the next one) must arrive within it.
    pub header: Duration,
    /// `--idle-timeout`: a client keep-alive idle limit, and a stalled write to the client.
    pub idle: Duration,
    /// `--upstream-timeout`: upstream silence while a response is due.
    pub upstream: Duration,
    /// `--tunnel-idle-timeout`: a tunnel with no traffic either way.
    pub tunnel_idle: Duration,
}

impl Live {
    /// The snapshot of `settings`; `upstream` is the parent proxy made at start.
    pub fn new(settings: &Settings, upstream: Option<&Arc<ProxyDialer>>) -> Live {
        let policy = Arc::new(settings.policy.clone());
        let dialer: Arc<dyn Dialer> = match upstream {
            Some(p) => Arc::new(GatedDialer::new(policy.clone(), p.clone())),
            None => Arc::new(DirectDialer::new(policy.clone(), settings.dial_timeout)),
        };
        let timeouts = Timeouts {
            header: settings.header_timeout,
            idle: settings.idle_timeout,
            upstream: settings.upstream_timeout,
            tunnel_idle: settings.tunnel_idle_timeout,
        };
        Live { users: Arc::new(settings.users.clone()), policy, dialer, timeouts }
    }
}

/// Dials with the dialer of the [`Live`] snapshot in force when the dial starts.
pub(super) struct LiveDialer(pub Arc<ArcSwap<Live>>);

impl Dialer for LiveDialer {
    fn dial<'a>(&'a self, target: &'a Target, purpose: Purpose) -> DialFuture<'a> {
        let dialer = self.0.load().dialer.clone();
        Box::pin(async move { dialer.dial(target, purpose).await })
    }
}

/// Applies reloads: the flags the proxy was started with, over the file read again.
pub(super) struct Reloader {
    /// The command line, applied over the file on every reload (flags keep winning).
    pub args: Args,
    /// The settings the proxy started with, to warn about keys only a restart changes.
    pub started: Settings,
    pub live: Arc<ArcSwap<Live>>,
    pub upstream: Option<Arc<ProxyDialer>>,
    pub access_log: AccessLog,
    pub revocations: Revocations,
    pub limit: ConnectionLimit,
}

/// `--max-connections`: the semaphore both listeners take a permit from per connection, and the
/// size a reload last gave it.
pub(super) struct ConnectionLimit {
    pub semaphore: Arc<Semaphore>,
    size: AtomicUsize,
}

impl ConnectionLimit {
    /// A budget of `size` connections.
    pub fn new(size: usize) -> Self {
        ConnectionLimit { semaphore: Arc::new(Semaphore::new(size)), size: AtomicUsize::new(size) }
    }

    /// Makes the budget `size`. Growing is immediate. Shrinking takes the permits free now, and a
    /// task takes the rest as connections close (no open connection is cut); the task ends then, and
    /// the arithmetic stays right if a later reload grows the budget again meanwhile.
    fn resize(&self, size: usize) {
        let old = self.size.swap(size, Ordering::Relaxed);
        if size > old {
            self.semaphore.add_permits(size - old);
        } else if size < old {
            let owed = (old - size) - self.semaphore.forget_permits(old - size);
            if owed > 0 {
                let semaphore = self.semaphore.clone();
                tokio::spawn(async move {
                    if let Ok(p) = semaphore.acquire_many_owned(owed as u32).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

impl Reloader {
    /// Loads and checks the whole configuration, then swaps it in. On any error
    /// nothing has changed.
    pub fn apply(&self) -> Result<(), ConfigError> {
        let new = Settings::load(self.args.clone())?;
        // Opened before the swap: a path that cannot be opened fails the whole reload.
        let log = match &new.access_log {
            Some(dest) => AccessLog::open(dest).map_err(|e| {
                ConfigError::invalid(
                    "access_log",
                    format!("cannot open {dest}: {e}; give a writable file path or `-` for stdout"),
                )
            })?,
            None => AccessLog::disabled(),
        };
        self.warn_fixed(&new);
        let next = Live::new(&new, self.upstream.as_ref());
        let old = self.live.swap(Arc::new(next));
        self.access_log.take_over(&log);
        self.limit.resize(new.max_connections);
        crate::telemetry::apply_config_log_level(new.log_level.as_deref());
        let kept: Vec<&str> = new.users.names().collect();
        let gone = revoke::removed(old.users.names(), &kept);
        if !gone.is_empty() {
            tracing::info!(users = ?gone, grace = ?new.reload_grace, "users removed: their open tunnels close after the grace");
        }
        let live = self.live.clone();
        self.revocations
            .revoke_after(gone, new.reload_grace, move |u| !live.load().users.names().any(|n| n == u));
        Ok(())
    }

    /// Warns about each key whose new value only takes effect after a restart or upgrade.
    fn warn_fixed(&self, new: &Settings) {
        let s = &self.started;
        needs_upgrade("listen", &s.listen, &new.listen);
        needs_upgrade_opt("socks", &s.socks, &new.socks);
        needs_upgrade_opt("metrics", &s.metrics, &new.metrics);
        needs_upgrade("workers", &s.workers, &new.workers);
        needs_upgrade_opt("upstream", &s.upstream, &new.upstream);
    }
}
