//! `tunnelkit sticky` settings: defaults, then the TOML file, then flags (one loader).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::backend::Balance;
use super::Args;
use crate::config::{self, ConfigError};
use crate::net::Target;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    #[serde(default)]
    backends: Vec<String>,
    redis: Option<String>,
    redis_ca: Option<PathBuf>,
    path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    check_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    check_timeout: Option<Duration>,
    key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    key_expiry: Option<Duration>,
    balance: Option<String>,
    metrics: Option<SocketAddr>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listener.
    pub listen: SocketAddr,
    /// Backends as `host:port`.
    pub backends: Vec<String>,
    /// Redis URL for a shared sid map.
    pub redis: Option<String>,
    /// PEM bundle the Redis server's certificate must chain to (`rediss://` only).
    pub redis_ca: Option<PathBuf>,
    /// Engine.IO path prefix.
    pub path: String,
    /// Health-check interval.
    pub check_interval: Duration,
    /// Health-check timeout.
    pub check_timeout: Duration,
    /// Key prefix (for the Redis store).
    pub key_prefix: String,
    /// Binding expiry.
    pub key_expiry: Duration,
    /// Balancing mode.
    pub balance: Balance,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
}

impl Settings {
    /// Resolves flags over the file over defaults.
    pub fn load(args: Args) -> Result<Settings, ConfigError> {
        let file: File = match &args.config {
            Some(p) => config::load(p)?,
            None => File::default(),
        };
        let backends = if args.backend.is_empty() { file.backends } else { args.backend };
        if backends.is_empty() {
            return Err(ConfigError::invalid(
                "backend",
                "no backend configured; pass --backend HOST:PORT (repeatable) or set backends = [\"host:port\"]",
            ));
        }
        for b in &backends {
            Target::parse(b)
                .map_err(|e| ConfigError::invalid("backend", format!("`{b}`: {e}; write HOST:PORT")))?;
        }
        let balance = args.balance.or(file.balance).unwrap_or_else(|| "least-sessions".into());
        let balance: Balance = balance.parse().map_err(|e: String| ConfigError::invalid("balance", e))?;
        let path = args.path.or(file.path).unwrap_or_else(|| "/socket.io/".into());
        if !path.starts_with('/') {
            return Err(ConfigError::invalid("path", format!("`{path}` must start with /")));
        }
        let redis = args.redis.or(file.redis);
        let redis_ca = args.redis_ca.or(file.redis_ca);
        if redis_ca.is_some() && !redis.as_deref().is_some_and(|u| u.starts_with("rediss://")) {
            return Err(ConfigError::invalid(
                "redis-ca",
                "a CA for Redis needs a TLS Redis URL: pass --redis rediss://[:password@]host:port/",
            ));
        }
        let check_timeout = args.check_timeout.or(file.check_timeout).unwrap_or(Duration::from_secs(1));
        Ok(Settings {
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:4000".parse().expect("static")),
            backends,
            redis,
            redis_ca,
            path,
            check_interval: args.check_interval.or(file.check_interval).unwrap_or(Duration::from_secs(2)),
            check_timeout,
            key_prefix: args.key_prefix.or(file.key_prefix).unwrap_or_else(|| "socket.io#".into()),
            key_expiry: args.key_expiry.or(file.key_expiry).unwrap_or(Duration::from_secs(60)),
            balance,
            metrics: args.metrics.or(file.metrics),
        })
    }
}
