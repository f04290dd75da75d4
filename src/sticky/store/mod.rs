//! `SidStore`: where sid -> backend bindings live.
//!
//! Always a local map (the cache that keeps steady-state requests off the network); with `--redis`
//! or `--redis-cluster`, also Redis under `<key-prefix><sid>` with the key expiry, so several
//! balancers agree. One key per session, so a cluster spreads sessions over its shards and no
//! command spans two keys. Bindings are refreshed lazily, only when less than half the expiry
//! remains, so a live session never expires and steady-state requests rewrite nothing. Redis keeps
//! the backend's address, not an index, so balancers listing backends in different orders still
//! agree.
//!
//! A session that ends is not forgotten at once: its binding stays, no longer counted, for a short
//! grace period ([`SidStore::end`]), so requests the client sent together with its close packet
//! (the poll in flight) still reach the backend, which answers them, instead of the balancer
//! answering them "Session ID unknown" itself.
//!
//! A Redis outage is logged once; sessions known locally keep working, new ones are still assigned
//! and cached, and when Redis answers again every cached binding is written back. A failover is
//! such an outage, a short one: `net::redis` finds the new master (Sentinel) or the promoted
//! replica (Cluster), and the write-back restores the bindings made while the old master was gone
//! or that it had not yet replicated.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::backend::BackendId;
use crate::net::redis::RedisConn;

/// The sid -> backend map.
pub struct SidStore {
    entries: Mutex<Entries>,
    expiry: Duration,
    redis: Option<RedisMap>,
}

/// The local map with live-session counts per backend kept in step, so picking the least-loaded
/// backend costs nothing however many sessions there are, and deadlines in a heap, so purging
/// expired bindings costs what expired, not a scan of every session under the lock.
#[derive(Default)]
struct Entries {
    map: HashMap<Arc<str>, Binding>,
    counts: Vec<usize>,
    /// (deadline at insertion, sid), earliest first. A binding refreshed since is pushed back with
    /// its new deadline when its old one comes up; one removed since is skipped.
    deadlines: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

/// One sid's binding.
struct Binding {
    backend: BackendId,
    /// When it expires unless refreshed.
    until: Instant,
    /// Set while the session lives on a WebSocket relayed by this balancer: no polling request
    /// refreshes it then, and the tunnel's end removes it, so it must not expire meanwhile.
    pinned: bool,
    /// The session ended: no longer counted, kept only until `until` for its stragglers.
    ended: bool,
}

impl Entries {
    fn insert(&mut self, sid: &str, backend: BackendId, until: Instant) {
        let sid: Arc<str> = sid.into();
        self.deadlines.push(Reverse((until, sid.clone())));
        if let Some(old) = self.map.insert(sid, Binding { backend, until, pinned: false, ended: false }) {
            if !old.ended {
                self.dec(old.backend);
            }
        }
        let i = backend.index();
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// Forgets `sid`; true if it was a live (counted) session.
    fn remove(&mut self, sid: &str) -> bool {
        match self.map.remove(sid) {
            Some(binding) if !binding.ended => {
                self.dec(binding.backend);
                true
            }
            _ => false,
        }
    }

    /// Stops counting `sid` and keeps its binding until `until` only; true if it was live.
    fn end(&mut self, sid: &str, until: Instant) -> bool {
        let Some(binding) = self.map.get_mut(sid) else { return false };
        if binding.ended {
            return false;
        }
        binding.ended = true;
        binding.pinned = false;
        binding.until = until;
        let backend = binding.backend;
        self.dec(backend);
        if let Some((k, _)) = self.map.get_key_value(sid) {
            self.deadlines.push(Reverse((until, k.clone())));
        }
        true
    }

    /// Drops the bindings whose deadline passed (pinned ones are re-checked an expiry later).
    fn purge(&mut self, now: Instant, expiry: Duration) {
        while let Some(Reverse((deadline, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((_, sid))) = self.deadlines.pop() else { break };
            let next = match self.map.get(&sid) {
                None => continue,
                Some(b) if b.pinned && !b.ended => now + expiry,
                Some(b) if b.until > now => b.until,
                Some(_) => {
                    self.remove(&sid);
                    continue;
                }
            };
            self.deadlines.push(Reverse((next, sid)));
        }
    }

    fn dec(&mut self, b: BackendId) {
        if let Some(c) = self.counts.get_mut(b.index()) {
            *c = c.saturating_sub(1);
        }
    }
}

/// The shared half of the store.
struct RedisMap {
    conn: RedisConn,
    prefix: String,
    /// Backend addresses, to translate between indexes and what Redis holds; a reload appends to
    /// it ([`SidStore::set_backends`]).
    backends: ArcSwap<Vec<String>>,
    down: AtomicBool,
}

impl SidStore {
    /// A store in memory only, whose bindings live `expiry` past their last refresh.
    pub fn new(expiry: Duration) -> Self {
        SidStore { entries: Mutex::new(Entries::default()), expiry, redis: None }
    }

    /// A store backed by Redis at `url` (`redis://[:password@]host:port[/db]`, `rediss://` for
    /// TLS, or `redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME` for the master a
    /// set of sentinels names). `ca` is a PEM bundle the Redis server's certificate must chain to
    /// (instead of the bundled web roots), for a private CA.
    pub async fn with_redis(
        expiry: Duration,
        url: &str,
        ca: Option<Vec<u8>>,
        prefix: &str,
        backends: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self::shared(expiry, RedisConn::open("--redis", url, ca).await?, prefix, backends))
    }

    /// A store backed by the Redis Cluster that `urls` (`redis://` or `rediss://` nodes) belong to;
    /// `ca` as in [`SidStore::with_redis`].
    pub async fn with_redis_cluster(
        expiry: Duration,
        urls: &[String],
        ca: Option<Vec<u8>>,
        prefix: &str,
        backends: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self::shared(expiry, RedisConn::open_cluster(urls, ca).await?, prefix, backends))
    }

    fn shared(expiry: Duration, conn: RedisConn, prefix: &str, backends: Vec<String>) -> Self {
        SidStore {
            entries: Mutex::new(Entries::default()),
            expiry,
            redis: Some(RedisMap {
                conn,
                prefix: prefix.to_owned(),
                backends: ArcSwap::from_pointee(backends),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// The backend addresses by index after a reload ([`super::backend::Backends::addrs`]: the old
    /// ones where they were, added ones behind them).
    pub fn set_backends(&self, addrs: Vec<String>) {
        if let Some(r) = &self.redis {
            r.backends.store(Arc::new(addrs));
        }
    }

    /// Binds `sid` to `backend`; with Redis, returns once Redis has it (or failed).
    pub async fn put(&self, sid: &str, backend: BackendId) {
        self.entries.lock().expect("store lock").insert(sid, backend, Instant::now() + self.expiry);
        if let Some(r) = &self.redis {
            let cmd = redis::cmd("SET")
                .arg(format!("{}{sid}", r.prefix))
                .arg(r.backends.load().get(backend.index()).map_or("", String::as_str))
                .arg("PX")
                .arg(self.expiry.as_millis() as u64)
                .clone();
            self.run::<()>(r, cmd).await;
        }
    }

    /// The backend of `sid`: from the local cache, else from Redis (then cached).
    pub async fn get(&self, sid: &str) -> Option<BackendId> {
        let refresh = {
            let mut e = self.entries.lock().expect("store lock");
            let now = Instant::now();
            match e.map.get_mut(sid) {
                Some(Binding { backend, pinned: true, ended: false, .. }) => Some((*backend, false)),
                // An ended session's stragglers still reach its backend, without a refresh.
                Some(Binding { backend, ended: true, until, .. }) if *until > now => Some((*backend, false)),
                // Its grace is over: the session is gone, whatever Redis still holds for a moment.
                Some(Binding { ended: true, .. }) => {
                    e.remove(sid);
                    return None;
                }
                Some(Binding { backend, until, .. }) if *until > now => {
                    let refresh = *until - now < self.expiry / 2;
                    if refresh {
                        *until = now + self.expiry;
                    }
                    Some((*backend, refresh))
                }
                Some(_) => {
                    e.remove(sid);
                    None
                }
                None => None,
            }
        };
        let r = self.redis.as_ref();
        match (refresh, r) {
            (Some((b, true)), Some(r)) => {
                let cmd = redis::cmd("PEXPIRE")
                    .arg(format!("{}{sid}", r.prefix))
                    .arg(self.expiry.as_millis() as u64)
                    .clone();
                self.run::<()>(r, cmd).await;
                Some(b)
            }
            (Some((b, _)), _) => Some(b),
            (None, None) => None,
            (None, Some(r)) => {
                let addr: Option<String> =
                    self.run(r, redis::cmd("GET").arg(format!("{}{sid}", r.prefix)).clone()).await?;
                let b = BackendId::at(r.backends.load().iter().position(|a| Some(a) == addr.as_ref())?);
                self.entries.lock().expect("store lock").insert(sid, b, Instant::now() + self.expiry);
                Some(b)
            }
        }
    }

    /// Forgets `sid` here and in Redis (the session ended); returns true if it was bound here.
    pub async fn remove(&self, sid: &str) -> bool {
        let known = self.entries.lock().expect("store lock").remove(sid);
        if let Some(r) = &self.redis {
            self.run::<()>(r, redis::cmd("DEL").arg(format!("{}{sid}", r.prefix)).clone()).await;
        }
        known
    }

    /// Ends session `sid`: it stops counting at once, and its binding is kept only `grace` longer
    /// (here, and in Redis through `PEXPIRE`) so requests already on their way still reach its
    /// backend. Returns true if the session was live here.
    pub async fn end(&self, sid: &str, grace: Duration) -> bool {
        let live = self.entries.lock().expect("store lock").end(sid, Instant::now() + grace);
        if let Some(r) = &self.redis {
            let cmd = redis::cmd("PEXPIRE")
                .arg(format!("{}{sid}", r.prefix))
                .arg(grace.as_millis().max(1) as u64)
                .clone();
            self.run::<()>(r, cmd).await;
        }
        live
    }

    /// Keeps `sid` bound, without expiry, until [`SidStore::remove`]: the session moved onto a
    /// WebSocket this balancer relays, whose end is the session's end.
    pub fn pin(&self, sid: &str) {
        if let Some(binding) = self.entries.lock().expect("store lock").map.get_mut(sid) {
            binding.pinned = !binding.ended;
        }
    }

    /// Live sessions per backend known to this balancer (for least-sessions).
    pub fn sessions_per_backend(&self, backends: usize) -> Vec<usize> {
        let e = self.entries.lock().expect("store lock");
        (0..backends).map(|b| e.counts.get(b).copied().unwrap_or(0)).collect()
    }

    /// Drops expired bindings (called periodically, off the request path).
    pub fn purge_expired(&self) {
        self.entries.lock().expect("store lock").purge(Instant::now(), self.expiry);
    }

    /// Checks Redis (called from the health loop) so an outage's end is noticed without traffic.
    /// In a cluster the `PING` goes to every master, so it is what ends an outage there.
    pub async fn check_redis(&self) {
        if let Some(r) = &self.redis {
            if self.run::<()>(r, redis::cmd("PING")).await.is_some() {
                self.recovered(r).await;
            }
        }
    }

    /// Runs one command, tracking outages: logged once, and on recovery every cached binding is
    /// written back with its remaining lifetime.
    async fn run<T: redis::FromRedisValue + Send + 'static>(
        &self,
        r: &RedisMap,
        cmd: redis::Cmd,
    ) -> Option<T> {
        let started = Instant::now();
        let result = r.conn.query::<T>(&cmd).await;
        metrics::histogram!("tunnelkit_sticky_redis_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(v) => {
                if r.conn.one_master() {
                    self.recovered(r).await;
                }
                Some(v)
            }
            Err(e) => {
                self.outage(r, &e.to_string());
                None
            }
        }
    }

    /// Redis answers: if it was down, every cached binding is written back.
    async fn recovered(&self, r: &RedisMap) {
        if r.down.swap(false, Ordering::Relaxed) {
            tracing::warn!("Redis is reachable again; writing back cached bindings");
            self.resync(r).await;
        }
    }

    fn outage(&self, r: &RedisMap, why: &str) {
        metrics::counter!("tunnelkit_sticky_redis_errors_total").increment(1);
        if !r.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("Redis unreachable ({why}); serving known sessions from the local cache");
        }
    }

    async fn resync(&self, r: &RedisMap) {
        let now = Instant::now();
        let live: Vec<(String, BackendId, Duration)> = self
            .entries
            .lock()
            .expect("store lock")
            .map
            .iter()
            .filter(|(_, b)| (b.pinned && !b.ended) || b.until > now)
            .map(|(sid, b)| (sid.to_string(), b.backend, if b.pinned { self.expiry } else { b.until - now }))
            .collect();
        let backends = r.backends.load();
        let items: Vec<(String, &str, u64)> = live
            .iter()
            .map(|(sid, b, left)| {
                let addr = backends.get(b.index()).map_or("", String::as_str);
                (format!("{}{sid}", r.prefix), addr, left.as_millis().max(1) as u64)
            })
            .collect();
        if let Err(e) = r.conn.set_all(&items).await {
            // Still (or again) down, or in a cluster a shard still failing over: the next success
            // writes everything back again, so nothing made meanwhile is lost.
            tracing::warn!("writing back cached bindings to Redis failed: {e}");
            r.down.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_refresh_expire() {
        let s = SidStore::new(Duration::from_millis(100));
        s.put("a", BackendId::at(1)).await;
        assert_eq!(s.get("a").await, Some(BackendId::at(1)));
        assert_eq!(s.sessions_per_backend(2), vec![0, 1]);
        tokio::time::sleep(Duration::from_millis(120)).await;
        s.purge_expired();
        assert_eq!(s.sessions_per_backend(2), vec![0, 0]);
        assert_eq!(s.get("a").await, None);
        s.put("b", BackendId::at(0)).await;
        assert!(s.remove("b").await);
        assert!(!s.remove("b").await);
        assert_eq!(s.get("b").await, None);
        // A pinned binding (the session is on a relayed WebSocket) outlives the expiry.
        s.put("c", BackendId::at(1)).await;
        s.pin("c");
        tokio::time::sleep(Duration::from_millis(120)).await;
        s.purge_expired();
        assert_eq!(s.get("c").await, Some(BackendId::at(1)));
        assert_eq!(s.sessions_per_backend(2), vec![0, 1]);
        s.remove("c").await;
        assert_eq!(s.sessions_per_backend(2), vec![0, 0]);
    }

    #[tokio::test]
    async fn an_ended_session_stops_counting_but_routes_during_the_grace() {
        let s = SidStore::new(Duration::from_secs(60));
        s.put("a", BackendId::at(1)).await;
        s.pin("a");
        assert!(s.end("a", Duration::from_millis(100)).await);
        assert!(!s.end("a", Duration::from_millis(100)).await, "ends once");
        assert_eq!(s.sessions_per_backend(2), vec![0, 0], "no longer counted");
        assert_eq!(s.get("a").await, Some(BackendId::at(1)), "a straggler still reaches the backend");
        s.pin("a");
        assert!(!s.remove("a").await, "removing an ended session does not end it twice");
        assert_eq!(s.sessions_per_backend(2), vec![0, 0]);
        s.put("b", BackendId::at(0)).await;
        assert!(s.end("b", Duration::from_millis(100)).await);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(s.get("b").await, None, "gone after the grace");
        s.put("c", BackendId::at(0)).await;
        s.end("c", Duration::from_millis(100)).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        s.purge_expired();
        assert!(s.entries.lock().unwrap().map.is_empty());
        assert_eq!(s.sessions_per_backend(2), vec![0, 0]);
    }

    #[test]
    fn purge_follows_deadlines() {
        let (t0, expiry) = (Instant::now(), Duration::from_secs(10));
        let mut e = Entries::default();
        for (sid, b) in [("refreshed", 0), ("removed", 1), ("pinned", 1), ("idle", 0)] {
            e.insert(sid, BackendId::at(b), t0 + expiry);
        }
        e.remove("removed");
        e.map.get_mut("refreshed").unwrap().until = t0 + 2 * expiry;
        e.map.get_mut("pinned").unwrap().pinned = true;
        e.purge(t0 + expiry / 2, expiry);
        assert_eq!(e.counts, [2, 1], "nothing is due yet");
        e.purge(t0 + expiry, expiry);
        assert_eq!(e.counts, [1, 1], "only the idle binding expired");
        assert!(!e.map.contains_key("idle"));
        e.purge(t0 + 2 * expiry, expiry);
        assert_eq!(e.counts, [0, 1], "the refreshed one expires at its new deadline; the pinned one stays");
        assert_eq!(e.deadlines.len(), 1);
    }
}
