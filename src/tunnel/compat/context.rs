//! [`CompatContext`]: what the server gives every compat connection: where streams go, the limits, and
//! the registry of live compat tunnels.

use std::sync::Arc;
use std::time::Duration;

use super::registry::Registry;
use super::stream::Destination;
use super::tunnel::Tunnel;
use crate::net::{Dialer, Target};

/// What a compat tunnel needs from the server, shared by all its connections.
pub struct CompatContext {
    /// Dials stream targets under the server's policy.
    pub dialer: Arc<dyn Dialer>,
    /// Where every stream opened by a seed client is connected (`--compat-target`).
    pub target: Option<Target>,
    /// Cap on how long a broken tunnel is held for `use` (`--max-keep-broken`), whatever the client's
    /// `keepBrokenTunnel` asks (the seed has no cap).
    pub max_keep_broken: Duration,
    /// Cap on compat tunnels alive at once, connected or held (`--max-tunnels`); a `create` beyond it
    /// is answered with a `close` (the seed has no cap, and no error code for this).
    pub max_tunnels: usize,
    /// With tokens, cap on one token's compat tunnels (`--max-tunnels-per-token`; by default a quarter
    /// of `max_tunnels`, at least 1), so one token cannot lock the others out.
    pub max_tunnels_per_token: usize,
    pub(super) registry: Arc<Registry<Tunnel>>,
}

impl CompatContext {
    /// The context for one server.
    pub fn new(
        dialer: Arc<dyn Dialer>,
        target: Option<Target>,
        max_keep_broken: Duration,
        max_tunnels: usize,
    ) -> CompatContext {
        let max_tunnels_per_token = (max_tunnels / 4).max(1);
        CompatContext {
            dialer,
            target,
            max_keep_broken,
            max_tunnels,
            max_tunnels_per_token,
            registry: Arc::default(),
        }
    }

    /// Where the streams of a new tunnel are connected.
    pub(super) fn destination(&self) -> Destination {
        Destination { dialer: self.dialer.clone(), target: self.target.clone() }
    }

    /// How many tunnels exist (bound or broken and held).
    pub fn tunnel_count(&self) -> usize {
        self.registry.len()
    }
}
