//! What a listening socket is for: the name a handover and systemd's `FileDescriptorName=` give it,
//! and the flag that configures it (which every error about it names).

use std::fmt;

/// One listener of a server. A handover matches listeners by role and address, so a proxy's SOCKS
/// port is never mistaken for its metrics port even where both were asked for on port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The main port (`--listen`).
    Listen,
    /// The proxy's SOCKS5 port (`--socks`).
    Socks,
    /// Prometheus metrics (`--metrics`).
    Metrics,
    /// The proxy's traffic inspector (`--inspect`).
    Inspect,
}

impl Role {
    const ALL: [Role; 4] = [Role::Listen, Role::Socks, Role::Metrics, Role::Inspect];

    /// The name on the wire and in `LISTEN_FDNAMES`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Listen => "listen",
            Role::Socks => "socks",
            Role::Metrics => "metrics",
            Role::Inspect => "inspect",
        }
    }

    /// The command-line flag that sets this listener's address.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Listen => "--listen",
            Role::Socks => "--socks",
            Role::Metrics => "--metrics",
            Role::Inspect => "--inspect",
        }
    }

    /// The role named `name`, if any.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
