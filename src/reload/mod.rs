//! Live reload: on SIGHUP a server reads its configuration again and applies what can change
//! while traffic flows (users, tokens, allow/deny ranges, backends, the log filter, ...). The three
//! servers that take `--config` (`proxy`, `sticky`, `ws-server`) share this part:
//!
//! - [`Reloads`]: the SIGHUP listener loop, the configuration generation (1 at start, one more per
//!   applied reload), the `tunnelkit_reloads_total{server,result}` counter, the
//!   `tunnelkit_config_generation{server}` gauge, and the two log lines an operator looks for:
//!   `config reloaded (generation N)` and `config reload failed: FILE: key: fix; keeping generation N`.
//! - [`needs_upgrade`]: the warning for a key that only a restart or upgrade can change (listen
//!   addresses, worker counts): the reload still applies the rest.
//! - [`pid_file`]: `--pid-file FILE`, and `tunnelkit reload --pid-file FILE`, which signals it.
//! - [`revoke`]: the open tunnels of a removed user or token, closed after `--reload-grace`.
//!
//! A reload is atomic because each server runs its start-up loader over the whole file first and
//! swaps one `Arc` (behind `arc_swap::ArcSwap`) only if every key is valid; requests in flight keep
//! the snapshot they loaded, the next request loads the new one. The flags given on the command line
//! are applied again over the re-read file, so a flag still wins over the file after a reload.

pub mod pid_file;
pub mod revoke;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::ConfigError;

/// `tunnelkit reload --pid-file FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReloadArgs {
    /// The file the server was started with (`--pid-file FILE`).
    #[arg(long, value_name = "FILE")]
    pub pid_file: PathBuf,
}

/// `tunnelkit reload`: signals the server and says so; the server's own log says how the reload went.
pub fn run(args: &ReloadArgs) -> anyhow::Result<()> {
    let pid = pid_file::send_reload(&args.pid_file)?;
    crate::telemetry::announce(&format!(
        "sent SIGHUP to process {pid}; its log says `config reloaded (generation N)` or why the reload failed"
    ));
    Ok(())
}

/// The reload state of one server: which configuration generation is in force, and the metrics
/// that count reloads. Cheap to clone.
#[derive(Clone)]
pub struct Reloads {
    server: &'static str,
    file: Option<PathBuf>,
    generation: Arc<AtomicU64>,
}

impl Reloads {
    /// Generation 1 of `server`'s configuration, read from `file` (`None`: flags only; a reload
    /// then re-reads the files the flags name, such as `--users`).
    pub fn new(server: &'static str, file: Option<PathBuf>) -> Self {
        metrics::gauge!("tunnelkit_config_generation", "server" => server).set(1.0);
        // Both results exist from the start, so a dashboard shows 0 rather than no series.
        for result in ["ok", "error"] {
            metrics::counter!("tunnelkit_reloads_total", "server" => server, "result" => result).increment(0);
        }
        Reloads { server, file, generation: Arc::new(AtomicU64::new(1)) }
    }

    /// The generation in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Runs `apply` once per SIGHUP, forever (the caller aborts or drops the future). `apply` gets
    /// the generation it would install and returns `Ok` only once it has swapped the new
    /// configuration in; an error leaves the old one in force.
    ///
    /// The SIGHUP handler is installed when this is called, not when the future is first polled:
    /// call it before announcing the listening address or writing the pid file, because a SIGHUP
    /// that arrives before the handler exists ends the process (the signal's default action).
    pub fn listen<F>(self, mut apply: F) -> std::io::Result<impl std::future::Future<Output = ()>>
    where
        F: FnMut(u64) -> Result<(), ConfigError> + Send,
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(async move {
            while hup.recv().await.is_some() {
                self.reload_once(&mut apply);
            }
        })
    }

    /// One reload: `apply`, then the counter, the gauge and the log line for its outcome.
    pub fn reload_once<F>(&self, apply: &mut F) -> bool
    where
        F: FnMut(u64) -> Result<(), ConfigError>,
    {
        let current = self.generation();
        match apply(current + 1) {
            Ok(()) => {
                self.generation.store(current + 1, Ordering::Relaxed);
                metrics::gauge!("tunnelkit_config_generation", "server" => self.server)
                    .set((current + 1) as f64);
                metrics::counter!("tunnelkit_reloads_total", "server" => self.server, "result" => "ok")
                    .increment(1);
                tracing::info!(
                    server = self.server,
                    generation = current + 1,
                    "config reloaded (generation {})",
                    current + 1
                );
                true
            }
            Err(e) => {
                let e = match &self.file {
                    Some(path) => e.in_file(path),
                    None => e,
                };
                metrics::counter!("tunnelkit_reloads_total", "server" => self.server, "result" => "error")
                    .increment(1);
                tracing::error!(
                    server = self.server,
                    generation = current,
                    "config reload failed: {e}; keeping generation {current}"
                );
                false
            }
        }
    }

    /// The file reloads read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Warns that `key` changed in the file to a value a reload cannot apply (a listen address, a
/// worker count): the server keeps `old` until it is restarted or upgraded.
pub fn needs_upgrade<T: PartialEq + Display>(key: &str, old: &T, new: &T) {
    if old != new {
        tracing::warn!(
            "config key `{key}` changed from {old} to {new}, which a reload cannot apply: still using {old}; \
             restart or upgrade (--upgrade) to change it"
        );
    }
}

/// As [`needs_upgrade`] for an optional value (a listener that may be off).
pub fn needs_upgrade_opt<T: PartialEq + Display>(key: &str, old: &Option<T>, new: &Option<T>) {
    let show = |v: &Option<T>| v.as_ref().map_or_else(|| "(none)".to_owned(), ToString::to_string);
    needs_upgrade(key, &show(old), &show(new));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_keeps_the_generation_and_a_good_one_moves_it() {
        let r = Reloads::new("test", Some(PathBuf::from("/etc/x.toml")));
        assert_eq!(r.generation(), 1);
        assert!(!r.reload_once(&mut |_| Err(ConfigError::invalid("allow", "not a CIDR"))));
        assert_eq!(r.generation(), 1);
        let mut seen = 0;
        assert!(r.reload_once(&mut |g| {
            seen = g;
            Ok(())
        }));
        assert_eq!((seen, r.generation()), (2, 2));
    }
}
