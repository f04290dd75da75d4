//! A reload of `tunnelkit sticky` (SIGHUP): the flags over the file read again, checked whole by the
//! start-up loader, then applied: backends added (they take new sessions once listed) and removed
//! (retired: drained like a dead backend, so their sessions get Engine.IO's fast 400 and their
//! WebSockets are closed, while the sessions on other backends see nothing), the health-check
//! interval and timeout, and the log filter (`log_level`). Everything else is fixed at start; a
//! changed key is named in a warning.
//!
//! Backends given with `--backend` on the command line win over the file, on reload too: the file's
//! `backends` then changes nothing.

use std::sync::Arc;

use super::args::Args;
use super::settings::{RouteBy, Settings};
use super::sid_tag::SidTagger;
use super::state::{Checks, State};
use crate::config::ConfigError;
use crate::reload::{needs_upgrade, needs_upgrade_opt};

/// Applies the configuration the command line and the file now give, or changes nothing.
pub(super) fn apply(args: &Args, state: &State) -> Result<(), ConfigError> {
    let new = Settings::load(args.clone())?;
    let started = &state.settings;
    // Every address by index after this reload: the old ones where they are, new ones appended
    // (the order `Backends::update` appends them in). The store and the tags learn it first, so a
    // session handed to an added backend can always be written and routed.
    let mut all = state.backends.addrs();
    for addr in &new.backends {
        if !all.contains(addr) {
            all.push(addr.clone());
        }
    }
    let tagger = match (&state.tags, &started.route_by) {
        (Some(_), RouteBy::Tag(key)) => {
            Some(SidTagger::new(key, &all).map_err(|e| ConfigError::invalid("backends", e))?)
        }
        _ => None,
    };
    warn_fixed(started, &new);
    state.store.set_backends(all);
    if let (Some(tags), Some(tagger)) = (&state.tags, tagger) {
        tags.store(Arc::new(tagger));
    }
    let changes = state.backends.update(&new.backends);
    if !changes.added.is_empty() || !changes.removed.is_empty() {
        tracing::info!(added = ?changes.added, removed = ?changes.removed, "backends changed by reload");
    }
    state.checks.store(Arc::new(Checks { interval: new.check_interval, timeout: new.check_timeout }));
    crate::telemetry::apply_config_log_level(new.log_level.as_deref());
    Ok(())
}

/// Warns about each key whose new value only takes effect after a restart or upgrade.
fn warn_fixed(s: &Settings, new: &Settings) {
    needs_upgrade("listen", &s.listen, &new.listen);
    needs_upgrade_opt("metrics", &s.metrics, &new.metrics);
    needs_upgrade("max_connections", &s.max_connections, &new.max_connections);
    needs_upgrade("workers", &s.workers, &new.workers);
    // Shown without its password.
    let redis = |x: &Settings| x.redis.as_deref().map(crate::config::redact_password);
    needs_upgrade_opt("redis", &redis(s), &redis(new));
    needs_upgrade("path", &s.path, &new.path);
    let fixed = |x: &Settings| {
        format!(
            "balance {:?}, key_expiry {:?}, header_timeout {:?}, backend_timeout {:?}, idle_timeout {:?}",
            x.balance, x.key_expiry, x.header_timeout, x.backend_timeout, x.idle_timeout
        )
    };
    needs_upgrade("balance and timeouts", &fixed(s), &fixed(new));
}
