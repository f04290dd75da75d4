//! [`RedisConn`]: a link to Redis, whichever the topology: one node (`redis://`), a master followed
//! through Sentinel (`redis+sentinel://`), or a Redis Cluster. Its users (sticky's sid store, the
//! tunnel cluster's registry) send the same commands to all three; what differs is how a failed node
//! is replaced, and that is left to each topology's client:
//!
//! - one node: redis-rs's `ConnectionManager` reconnects to the same address;
//! - Sentinel: [`SentinelMaster`] asks the sentinels for the new master;
//! - Cluster: redis-rs's cluster client follows `MOVED` answers and reloads the slot map when a
//!   node fails, so a promoted replica takes over its master's keys.
//!
//! Every command is bounded by [`COMMAND_TIMEOUT`] here, so an unresponsive Redis never stalls a
//! request for long; failures go back to the caller (sticky's store serves from its local cache
//! meanwhile).

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult};
use tokio::time::Instant;

use super::sentinel::SentinelMaster;
use super::url::RedisUrl;

/// Bound on every Redis command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest the first connection may take at start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two attempts at start.
const START_RETRY: Duration = Duration::from_millis(250);

/// Pipelines of one write-back sent to a cluster at once (one per hash slot in use).
const CLUSTER_PIPELINES: usize = 16;

/// A link to Redis.
pub enum RedisConn {
    /// One node, reconnected to at the same address.
    Node(ConnectionManager),
    /// The master a set of sentinels names.
    Sentinel(SentinelMaster),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to what `flag` (`--redis`, say) names (`url`); `ca` is a PEM bundle a `rediss://`
    /// server's certificate must chain to. Errors name the flag and never show the password.
    pub async fn open(flag: &str, url: &str, ca: Option<Vec<u8>>) -> anyhow::Result<RedisConn> {
        let shown = crate::config::redact_password(url);
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{flag} {shown}: {e}");
        match RedisUrl::parse(url).map_err(|e| anyhow::anyhow!("{flag}: {e}"))? {
            RedisUrl::Node(url) => {
                let client = match ca {
                    None => redis::Client::open(url.as_str()),
                    Some(pem) => redis::Client::build_with_tls(
                        url.as_str(),
                        redis::TlsCertificates { client_tls: None, root_cert: Some(pem) },
                    ),
                }
                .map_err(|e| fail(&e))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let conn =
                    tokio::time::timeout(START_TIMEOUT, ConnectionManager::new_with_config(client, config))
                        .await
                        .map_err(|_| fail(&"no answer within 5s"))?
                        .map_err(|e| fail(&e))?;
                Ok(RedisConn::Node(conn))
            }
            RedisUrl::Sentinel(s) => {
                if ca.is_some() {
                    anyhow::bail!("{flag}: Sentinel connections are plain TCP here; drop the CA option");
                }
                let master = SentinelMaster::new(&s, COMMAND_TIMEOUT).map_err(|e| fail(&e))?;
                // Sentinels that are starting, or in the middle of a failover, name no master for a
                // moment: asked again until the start deadline rather than failing at the first answer.
                let deadline = Instant::now() + START_TIMEOUT;
                loop {
                    match tokio::time::timeout_at(deadline, master.connect()).await {
                        Ok(Ok(_)) => return Ok(RedisConn::Sentinel(master)),
                        Ok(Err(e)) if Instant::now() + START_RETRY >= deadline => return Err(fail(&e)),
                        Ok(Err(e)) => tracing::debug!("{flag}: no master yet ({e}); asking again"),
                        Err(_) => return Err(fail(&"the sentinels named no reachable master within 5s")),
                    }
                    tokio::time::sleep(START_RETRY).await;
                }
            }
        }
    }

    /// Connects to the Redis Cluster `urls` are nodes of (`--redis-cluster`); the cluster names
    /// its other nodes. `ca` as in [`Self::open`].
    pub async fn open_cluster(urls: &[String], ca: Option<Vec<u8>>) -> anyhow::Result<RedisConn> {
        let shown = urls.iter().map(|u| crate::config::redact_password(u)).collect::<Vec<_>>().join(",");
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("--redis-cluster {shown}: {e}");
        let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(COMMAND_TIMEOUT);
        if let Some(pem) = ca {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem) });
        }
        let client = builder.build().map_err(|e| fail(&e))?;
        let conn = tokio::time::timeout(START_TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| fail(&"no answer within 5s"))?
            .map_err(|e| fail(&e))?;
        Ok(RedisConn::Cluster(conn))
    }

    /// Whether one command answered means all of Redis answers: true with one master; a cluster
    /// node answering says nothing of the other shards, so there a `PING` (which the cluster
    /// client sends to every master) is the sign.
    pub fn one_master(&self) -> bool {
        !matches!(self, RedisConn::Cluster(_))
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue + Send + 'static>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            RedisConn::Node(conn) => bounded(cmd.query_async(&mut conn.clone())).await,
            RedisConn::Sentinel(master) => master.query(cmd, Instant::now() + COMMAND_TIMEOUT).await,
            RedisConn::Cluster(conn) => bounded(cmd.query_async(&mut conn.clone())).await,
        }
    }

    /// Writes every `(key, value, expiry in ms)`: one pipeline, or in a cluster one per hash
    /// slot (a pipeline may not span slots there).
    pub async fn set_all(&self, items: &[(String, &str, u64)]) -> RedisResult<()> {
        let pipeline = |items: &mut dyn Iterator<Item = &(String, &str, u64)>| {
            let mut pipe = redis::pipe();
            for (key, value, ms) in items {
                pipe.cmd("SET").arg(key).arg(*value).arg("PX").arg(*ms).ignore();
            }
            pipe
        };
        match self {
            RedisConn::Node(conn) => pipeline(&mut items.iter()).query_async(&mut conn.clone()).await,
            RedisConn::Sentinel(master) => {
                // The whole write-back, however long, is bounded by the connection's own
                // per-request timeout; the deadline only bounds waiting for a master.
                master.query(&pipeline(&mut items.iter()), Instant::now() + START_TIMEOUT).await
            }
            RedisConn::Cluster(conn) => {
                let mut by_slot: std::collections::HashMap<Slot, Vec<&(String, &str, u64)>> =
                    Default::default();
                for item in items {
                    by_slot.entry(Slot::for_key(&item.0)).or_default().push(item);
                }
                let pipes: Vec<Pipeline> =
                    by_slot.into_values().map(|v| pipeline(&mut v.into_iter())).collect();
                let results = futures_util::stream::iter(pipes)
                    .map(|pipe| {
                        let mut conn = conn.clone();
                        async move { pipe.query_async::<()>(&mut conn).await }
                    })
                    .buffer_unordered(CLUSTER_PIPELINES)
                    .collect::<Vec<_>>()
                    .await;
                results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
            }
        }
    }
}

/// `fut` bounded by [`COMMAND_TIMEOUT`], a timeout being an I/O error like the client's own.
async fn bounded<T>(fut: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, fut).await.unwrap_or_else(|_| {
        Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
    })
}
