//! Resolving `--intercept` and the flags that go with it (flags over the file's keys) into
//! [`InterceptSettings`]; the proxy's one loader (`proxy::settings`) calls it.

use std::path::PathBuf;

use super::{HostGlob, InterceptSettings, Scope};
use crate::config::{self, ConfigError};

/// The interception flags or keys of one source (command line, or file).
pub(in crate::proxy) struct InterceptInput {
    pub hosts: Option<Vec<HostGlob>>,
    pub no: Vec<HostGlob>,
    pub ca_dir: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    pub insecure: bool,
    pub cert_cache: Option<usize>,
}

pub(in crate::proxy) fn parse_globs(key: &str, items: &[String]) -> Result<Vec<HostGlob>, ConfigError> {
    items.iter().map(|s| HostGlob::parse(s).map_err(|e| ConfigError::invalid(key, e))).collect()
}

/// Flags over the file; `None` unless `--intercept` (or `intercept` in the file) turns it on.
pub(in crate::proxy) fn intercept_settings(
    flags: &mut InterceptInput,
    file: &mut InterceptInput,
) -> Result<Option<InterceptSettings>, ConfigError> {
    let Some(include) = flags.hosts.take().or(file.hosts.take()) else {
        for (set, what) in [
            (!flags.no.is_empty() || !file.no.is_empty(), "no_intercept"),
            (flags.upstream_ca.is_some() || file.upstream_ca.is_some(), "upstream_ca"),
            (flags.insecure || file.insecure, "insecure_upstream"),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    config::flag_and_key(what),
                    "only applies with --intercept; add --intercept [HOSTGLOB]... (or intercept in the file)",
                ));
            }
        }
        return Ok(None);
    };
    let mut exclude = std::mem::take(&mut file.no);
    exclude.append(&mut flags.no);
    let ca_dir = match flags.ca_dir.take().or(file.ca_dir.take()) {
        Some(d) => d,
        None => crate::ca::store::default_dir()
            .map_err(|e| ConfigError::invalid(config::flag_and_key("ca_dir"), e.to_string()))?,
    };
    let cert_cache = flags.cert_cache.or(file.cert_cache).unwrap_or(10_000);
    Ok(Some(InterceptSettings {
        scope: Scope::new(include, exclude),
        ca_dir,
        upstream_ca: flags.upstream_ca.take().or(file.upstream_ca.take()),
        insecure_upstream: flags.insecure || file.insecure,
        cert_cache: config::check_count("cert_cache", cert_cache, 1, 10_000_000)?,
    }))
}
