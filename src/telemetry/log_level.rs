//! The log filter, changed while the process runs: the stderr subscriber's `EnvFilter` sits behind a
//! `tracing_subscriber::reload` layer whose handle is kept here for the whole process, so a server can
//! apply its file's `log_level` at start and again on every reload (SIGHUP).
//!
//! Who decides, highest first: `RUST_LOG` in the environment (set and non-empty), the global
//! `--log-level` flag, the server's `log_level` key, then `info`. The first two are read once, at
//! start, so an operator who exported `RUST_LOG` to debug something keeps exactly that filter whatever
//! the file says; the file only decides when neither was given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing_subscriber::reload::Handle;
use tracing_subscriber::{EnvFilter, Registry};

/// The filter when nothing else chose one.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Valid values, quoted in the messages that refuse one.
const EXAMPLES: &str = "\"info\", \"warn\" or \"warn,tunnelkit::proxy=debug\"";

/// Who chose the filter the process started with, and so whether a file's `log_level` may replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `RUST_LOG`.
    Env,
    /// `--log-level`.
    Flag,
    /// Nobody: the default, which the file's key replaces.
    Default,
}

struct Control {
    handle: Handle<EnvFilter, Registry>,
    source: Source,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Set once the overridden `log_level` has been reported, so that each reload does not repeat it.
static OVERRIDE_REPORTED: AtomicBool = AtomicBool::new(false);

/// Checks that `directives` is a filter `RUST_LOG` would accept (a level, or `target=level` directives
/// separated by commas) and returns it; the error says what a valid one looks like. Also clap's parser
/// for `--log-level`.
pub fn check_log_level(directives: &str) -> Result<String, String> {
    if directives.trim().is_empty() {
        return Err(format!(
            "an empty filter would log nothing but errors; write {EXAMPLES}, or leave it out for \"info\""
        ));
    }
    match EnvFilter::try_new(directives) {
        Ok(_) => Ok(directives.to_owned()),
        Err(e) => Err(format!("`{directives}` is not a log filter ({e}); write {EXAMPLES}")),
    }
}

/// The filter the subscriber starts with, and who chose it (`flag`: `--log-level`, already checked).
pub(crate) fn initial(flag: Option<&str>) -> (EnvFilter, Source) {
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        // As before this module existed: a RUST_LOG that does not parse means the default.
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL));
        return (filter, Source::Env);
    }
    match flag.and_then(|f| EnvFilter::try_new(f).ok()) {
        Some(filter) => (filter, Source::Flag),
        None => (EnvFilter::new(DEFAULT_LOG_LEVEL), Source::Default),
    }
}

/// Keeps the handle of the subscriber just installed. Only the first one counts: a second
/// `init_tracing` installs no subscriber either.
pub(crate) fn keep(handle: Handle<EnvFilter, Registry>, source: Source) {
    let _ = CONTROL.set(Control { handle, source });
}

/// Replaces the filter of the stderr log with `directives` (as [`check_log_level`] accepts), whoever
/// chose the one in force. Fails when the filter is invalid or the log was not set up by
/// [`super::init_tracing`].
pub fn set_log_filter(directives: &str) -> Result<(), String> {
    let control = CONTROL.get().ok_or(
        "the log was not set up by tunnelkit::telemetry::init_tracing, so it has no filter to change",
    )?;
    check_log_level(directives)?;
    let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
    control.handle.reload(filter).map_err(|e| format!("cannot change the log filter: {e}"))
}

/// Applies a server's `log_level` key (`None`: not in the file, so `info`), at start and on every
/// reload. When `RUST_LOG` or `--log-level` chose the filter they win and nothing changes; the first
/// time a key is set in vain a warning says which one wins, once for the whole process.
pub fn apply_config_log_level(key: Option<&str>) {
    let Some(control) = CONTROL.get() else { return };
    let winner = match control.source {
        Source::Default => {
            if let Err(e) = set_log_filter(key.unwrap_or(DEFAULT_LOG_LEVEL)) {
                tracing::warn!("config key `log_level` not applied: {e}");
            }
            return;
        }
        Source::Env => "RUST_LOG in the environment",
        Source::Flag => "--log-level",
    };
    if let Some(level) = key {
        if !OVERRIDE_REPORTED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "config key `log_level` (\"{level}\") is overridden by {winner}, which was given at start \
                 and wins over the file; start without it for the file's level (and its reloads) to apply"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_pass_and_bad_ones_say_what_to_write() {
        for ok in ["info", "warn,tunnelkit::proxy=debug", "tunnelkit=trace", "off"] {
            assert_eq!(check_log_level(ok).as_deref(), Ok(ok));
        }
        for bad in ["tunnelkit=loud", "", "  ", "info,[x"] {
            let e = check_log_level(bad).unwrap_err();
            assert!(e.contains("warn,tunnelkit::proxy=debug"), "{bad}: {e}");
        }
    }
}
