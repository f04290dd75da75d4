//! [`SentinelMaster`]: a connection to whichever node the sentinels currently name as master
//! (`redis+sentinel://…/NAME`).
//!
//! redis-rs's `ConnectionManager` reconnects to one fixed address, which after a failover is a dead
//! node or a demoted replica, so it cannot follow a master. This keeps one multiplexed connection
//! to the master and forgets it when a command shows the master is gone (an I/O error, a dropped
//! connection, `READONLY` from a demoted node, or no answer in time); the next command asks the
//! sentinels again. redis-rs checks that the node they name answers `ROLE` as a master, so a
//! half-finished failover is never written to. While no master is known, commands fail at once and
//! the caller's outage handling (sticky's local cache and write-back on recovery) covers the gap.
//!
//! A lookup runs in a task of its own: a command that gives up waiting (its deadline) must not
//! cancel the lookup the next command needs. Lookups are not repeated more often than
//! [`RETRY_PAUSE`], so an outage under load does not flood the sentinels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, RedisResult, ServerErrorKind};
use tokio::time::Instant;

use super::url::SentinelUrl;

/// Longest a lookup (sentinels asked, master's role checked, connection made) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Least time between two lookups that failed: sentinels are asked at most this often while no
/// master is known.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The master of one Sentinel-monitored set. Cheap to share: one per Redis user.
pub struct SentinelMaster {
    inner: Arc<Inner>,
}

type Lookup = Shared<BoxFuture<'static, RedisResult<(u64, MultiplexedConnection)>>>;

struct Inner {
    /// redis-rs's sentinel client; it caches its connections to the sentinels, hence the lock.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// Timeouts for the master connection.
    config: AsyncConnectionConfig,
    slot: Mutex<Slot>,
    /// Numbers connections, so a failing command forgets only the connection it used, never a
    /// newer one another command already made.
    generation: AtomicU64,
    /// The master's name, and the address it was last found at (to log moves).
    name: String,
    at: Mutex<Option<String>>,
}

enum Slot {
    /// Nothing known yet, or the last connection was forgotten.
    Idle,
    /// A connection to the master, with its generation.
    Ready(u64, MultiplexedConnection),
    /// A lookup in flight, awaited by every command that needs it.
    Looking(Lookup),
    /// The last lookup failed, when, and why (returned until [`RETRY_PAUSE`] has passed).
    Failed(Instant, RedisError),
}

impl SentinelMaster {
    /// A master found through the sentinels of `url`; nothing is contacted until [`Self::query`]
    /// or [`Self::connect`]. `response_timeout` bounds each command on the master connection.
    pub fn new(url: &SentinelUrl, response_timeout: Duration) -> RedisResult<SentinelMaster> {
        let addrs = url.sentinels.iter().map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let mut builder = SentinelClientBuilder::new(addrs, &url.master, SentinelServerType::Master)?;
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(pw) = &url.password {
            builder = builder.set_client_to_redis_password(pw);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        Ok(SentinelMaster {
            inner: Arc::new(Inner {
                sentinel: tokio::sync::Mutex::new(builder.build()?),
                config,
                slot: Mutex::new(Slot::Idle),
                generation: AtomicU64::new(0),
                name: url.master.clone(),
                at: Mutex::new(None),
            }),
        })
    }

    /// Finds the master now (at start, so a wrong URL or name is reported at once).
    pub async fn connect(&self) -> RedisResult<()> {
        self.connection().await.map(drop)
    }

    /// Runs `cmd` (a command or a pipeline) on the master, giving up at `deadline`.
    pub async fn query<T, C>(&self, cmd: &C, deadline: Instant) -> RedisResult<T>
    where
        T: redis::FromRedisValue + Send + 'static,
        C: Query,
    {
        let (generation, mut conn) = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| timed_out("no master known yet (the sentinels are being asked)"))??;
        match tokio::time::timeout_at(deadline, cmd.run(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if lost_master(&e) {
                    self.forget(generation);
                }
                Err(e)
            }
            Err(_) => {
                // An unresponsive master may be a dead one whose failover has begun.
                self.forget(generation);
                Err(timed_out("the master did not answer in time"))
            }
        }
    }

    /// The current master connection, looked up if there is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let lookup = {
            let mut slot = self.inner.slot.lock().expect("sentinel slot");
            match &*slot {
                Slot::Ready(generation, conn) => return Ok((*generation, conn.clone())),
                Slot::Looking(lookup) => lookup.clone(),
                Slot::Failed(at, e) if at.elapsed() < RETRY_PAUSE => return Err(e.clone()),
                Slot::Failed(..) | Slot::Idle => {
                    let lookup = spawn_lookup(self.inner.clone());
                    *slot = Slot::Looking(lookup.clone());
                    lookup
                }
            }
        };
        lookup.await
    }

    fn forget(&self, generation: u64) {
        let mut slot = self.inner.slot.lock().expect("sentinel slot");
        if matches!(&*slot, Slot::Ready(g, _) if *g == generation) {
            *slot = Slot::Idle;
        }
    }
}

/// Starts a lookup in a task of its own, which records its result in the slot.
fn spawn_lookup(inner: Arc<Inner>) -> Lookup {
    let task = tokio::spawn(async move {
        let result = tokio::time::timeout(LOOKUP_TIMEOUT, inner.lookup())
            .await
            .unwrap_or_else(|_| Err(timed_out("the sentinels did not name a reachable master in time")));
        *inner.slot.lock().expect("sentinel slot") = match &result {
            Ok((generation, conn)) => Slot::Ready(*generation, conn.clone()),
            Err(e) => Slot::Failed(Instant::now(), e.clone()),
        };
        result
    });
    async move {
        task.await
            .unwrap_or_else(|_| Err(RedisError::from((ErrorKind::Client, "the Sentinel lookup task failed"))))
    }
    .boxed()
    .shared()
}

impl Inner {
    async fn lookup(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let client = self.sentinel.lock().await.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = client.get_multiplexed_async_connection_with_config(&self.config).await?;
        let mut at = self.at.lock().expect("sentinel address");
        match at.as_deref() {
            Some(old) if old != addr => {
                tracing::warn!(master = %self.name, from = %old, to = %addr, "Redis master moved (Sentinel failover)")
            }
            None => tracing::info!(master = %self.name, at = %addr, "Redis master found through Sentinel"),
            Some(_) => {}
        }
        *at = Some(addr);
        Ok((self.generation.fetch_add(1, Ordering::Relaxed) + 1, conn))
    }
}

/// Whether `e` means the connection no longer reaches a master: then the sentinels are asked
/// again. Other errors (a wrong type, a script error) leave the connection alone.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading
            )
        )
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// A command or a pipeline, run on the master connection.
pub trait Query: Sync {
    /// Sends it on `conn`.
    fn run<'a, T: redis::FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, RedisResult<T>>;
}

impl Query for redis::Cmd {
    fn run<'a, T: redis::FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, RedisResult<T>> {
        self.query_async(conn).boxed()
    }
}

impl Query for redis::Pipeline {
    fn run<'a, T: redis::FromRedisValue + Send + 'static>(
        &'a self,
        conn: &'a mut MultiplexedConnection,
    ) -> BoxFuture<'a, RedisResult<T>> {
        self.query_async(conn).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_of_a_lost_master_drop_the_connection() {
        let io = |kind| RedisError::from(std::io::Error::new(kind, "x"));
        let server = |kind| RedisError::from((ErrorKind::Server(kind), "x"));
        for e in [
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::UnexpectedEof),
            timed_out("x"),
            server(ServerErrorKind::ReadOnly),
            server(ServerErrorKind::MasterDown),
        ] {
            assert!(lost_master(&e), "{e:?}");
        }
        for e in [server(ServerErrorKind::ResponseError), server(ServerErrorKind::NoScript)] {
            assert!(!lost_master(&e), "{e:?}");
        }
    }
}
