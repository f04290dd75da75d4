//! `--upgrade-socket PATH` and `--upgrade`, flattened into the flags of `proxy`, `sticky` and `ws-server`.

use std::path::PathBuf;

/// The upgrade flags every server (`proxy`, `sticky`, `ws-server`) takes. They are about this one
/// process, not the service's configuration, so they have no key in the TOML file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpgradeArgs {
    /// Serve this Unix socket so that a new process started with --upgrade can take the listening
    /// sockets over (zero-downtime binary upgrade); a stale socket file is replaced.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets from the process serving --upgrade-socket; once this process
    /// accepts, that one stops accepting and drains its connections for up to --shutdown-timeout.
    #[arg(long, requires = "upgrade_socket")]
    pub upgrade: bool,
}
