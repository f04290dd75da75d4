//! Resolving `--inspect`, `--flows-log`, `--har` and their limits (flags over the file's keys)
//! into [`Recording`]; the proxy's one loader (`proxy::settings`) calls it.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{self, ConfigError};

/// `--inspect`, `--flows-log`, `--har` and their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The inspector's address.
    pub inspect: Option<SocketAddr>,
    /// Flows kept (`--inspect-flows`).
    pub flows: usize,
    /// Body bytes kept per message (`--inspect-body-max`).
    pub body_max: usize,
    /// One JSON line per flow to this file or `-`.
    pub flows_log: Option<String>,
    /// HAR written on shutdown.
    pub har: Option<PathBuf>,
}

impl Recording {
    /// True if anything asks for flows to be recorded.
    pub fn enabled(&self) -> bool {
        self.inspect.is_some() || self.flows_log.is_some() || self.har.is_some()
    }
}

/// Largest `--inspect-body-max`: a recorded body is held in memory per kept flow.
pub(in crate::proxy) const BODY_MAX_LIMIT: usize = 64 << 20;

/// The recording flags or keys of one source.
pub(in crate::proxy) struct RecordingInput {
    pub inspect: Option<SocketAddr>,
    pub flows: Option<usize>,
    pub body_max: Option<usize>,
    pub flows_log: Option<String>,
    pub har: Option<PathBuf>,
}

/// Flags over the file. The inspector shows every recorded header and body, so it listens on
/// loopback unless the proxy has users, whose credentials it then asks for.
pub(in crate::proxy) fn recording(
    flags: &RecordingInput,
    file: &RecordingInput,
    has_users: bool,
) -> Result<Recording, ConfigError> {
    let inspect = flags.inspect.or(file.inspect);
    if let Some(addr) = inspect.filter(|a| !a.ip().is_loopback()) {
        if !has_users {
            return Err(ConfigError::invalid(
                config::flag_and_key("inspect"),
                format!(
                    "{addr} would show recorded traffic to other machines and no user is configured; \
                     inspect on 127.0.0.1, or add --auth USER:PASS so the inspector asks for it"
                ),
            ));
        }
    }
    let flows = flags.flows.or(file.flows).unwrap_or(1000);
    Ok(Recording {
        inspect,
        flows: config::check_count("inspect_flows", flows, 1, 1_000_000)?,
        body_max: flags.body_max.or(file.body_max).unwrap_or(1 << 20),
        flows_log: flags.flows_log.clone().or(file.flows_log.clone()),
        har: flags.har.clone().or(file.har.clone()),
    })
}
