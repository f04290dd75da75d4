//! [`Registry`]: which server of a cluster holds which tunnel, kept in Redis as
//! `tunnelkit:tunnel:<id>` → the holder's `--advertise` address.
//!
//! A claim lives as long as the tunnel may still be resumed: its expiry is the tunnel's hold time
//! (how long it is kept once broken) plus two refresh periods, and the holder renews the claims of all
//! its tunnels every [`REFRESH`]. So a server that dies leaves claims that run out on their own, and a
//! resume meanwhile is refused once the dead owner cannot be reached. A tunnel that ends releases its
//! claim, but only if the claim is still its holder's: the delete is conditional, in one script.

use std::time::Duration;

use redis::RedisResult;

use crate::net::redis::RedisConn;
use crate::tunnel::id::TunnelId;

/// How often a server renews the claims of the tunnels it holds.
pub const REFRESH: Duration = Duration::from_secs(10);

/// Claims sent in one pipeline when renewing.
const BATCH: usize = 1000;

/// Deletes the key only while it still names this server.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The cluster's shared map of tunnel holders.
pub struct Registry {
    conn: RedisConn,
    /// What this server's claims say: its `--advertise` address.
    me: String,
}

fn key(id: &TunnelId) -> String {
    format!("tunnelkit:tunnel:{id}")
}

/// A claim's expiry in milliseconds for a tunnel held for `hold` once broken.
fn expiry_ms(hold: Duration) -> u64 {
    (hold + 2 * REFRESH).as_millis() as u64
}

impl Registry {
    /// A registry over `conn`, claiming for `me`.
    pub fn new(conn: RedisConn, me: String) -> Self {
        Registry { conn, me }
    }

    /// This server's address as claims state it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Claims `tunnels` (id, hold time) for this server, renewing claims already made.
    pub async fn claim(&self, tunnels: &[(TunnelId, Duration)]) -> RedisResult<()> {
        for chunk in tunnels.chunks(BATCH) {
            let items: Vec<(String, &str, u64)> =
                chunk.iter().map(|(id, hold)| (key(id), self.me.as_str(), expiry_ms(*hold))).collect();
            self.conn.set_all(&items).await?;
        }
        Ok(())
    }

    /// The address of the server holding `id`, if one claims it.
    pub async fn holder(&self, id: &TunnelId) -> RedisResult<Option<String>> {
        self.conn.query(redis::cmd("GET").arg(key(id))).await
    }

    /// Drops this server's claim on `id` (a claim another server has made since is left alone).
    pub async fn release(&self, id: &TunnelId) -> RedisResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(key(id)).arg(&self.me);
        self.conn.query::<i64>(&cmd).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_outlives_the_hold_by_two_refreshes() {
        assert_eq!(expiry_ms(Duration::from_secs(30)), 50_000);
        assert_eq!(expiry_ms(Duration::ZERO), 20_000);
        assert_eq!(key(&TunnelId([0; 16])), format!("tunnelkit:tunnel:{}", "0".repeat(32)));
    }
}
