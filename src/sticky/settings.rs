//! `tunnelkit sticky` settings: defaults, then the TOML file, then flags (one loader). Every
//! duration and count is checked against a sane range here, at start, so a zero period or an
//! absurd value is an error naming the flag instead of a panic or a hang later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::args::Args;
use super::backend::Balance;
use super::sid_tag::{KeyFileError, RouteKey, MIN_KEY_BYTES};
use crate::config::{self, ConfigError};
use crate::net::redis::url::{self as redis_url, RedisUrl};
use crate::net::Target;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    #[serde(default)]
    backends: Vec<String>,
    redis: Option<String>,
    redis_cluster: Option<Urls>,
    redis_ca: Option<PathBuf>,
    route_by: Option<String>,
    route_key: Option<PathBuf>,
    path: Option<String>,
    #[serde(default, with = "humantime_serde")]
    check_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    check_timeout: Option<Duration>,
    key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    key_expiry: Option<Duration>,
    balance: Option<String>,
    #[serde(default, with = "humantime_serde")]
    header_timeout: Option<Duration>,
    max_connections: Option<usize>,
    workers: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    backend_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    shutdown_timeout: Option<Duration>,
    metrics: Option<SocketAddr>,
    pid_file: Option<PathBuf>,
    log_level: Option<String>,
}

/// `redis_cluster` in the file: a list of node URLs, or one string of them comma-separated as on the
/// command line.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Urls {
    List(Vec<String>),
    Joined(String),
}

impl Urls {
    fn into_vec(self) -> Vec<String> {
        match self {
            Urls::List(v) => v,
            Urls::Joined(s) => s.split(',').map(str::to_owned).collect(),
        }
    }
}

/// How a request of a known session finds its backend (`--route-by`).
#[derive(Debug, Clone)]
pub enum RouteBy {
    /// The sid -> backend map (in memory, or shared in Redis).
    Store,
    /// The backend is named in a signed tag appended to the sid ([`super::sid_tag`]).
    Tag(RouteKey),
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listener.
    pub listen: SocketAddr,
    /// Backends as `host:port`.
    pub backends: Vec<String>,
    /// Redis URL for a shared sid map: one node, or a master found through Sentinel
    /// ([`crate::net::redis::url::RedisUrl`]).
    pub redis: Option<String>,
    /// Seed nodes of a Redis Cluster for a shared sid map (empty: none). Never set with `redis`.
    pub redis_cluster: Vec<String>,
    /// PEM bundle the Redis servers' certificates must chain to (`rediss://` only).
    pub redis_ca: Option<PathBuf>,
    /// How a session's requests find its backend.
    pub route_by: RouteBy,
    /// Engine.IO path prefix.
    pub path: String,
    /// Health-check interval.
    pub check_interval: Duration,
    /// Health-check timeout.
    pub check_timeout: Duration,
    /// Key prefix (for the Redis store).
    pub key_prefix: String,
    /// Binding expiry.
    pub key_expiry: Duration,
    /// Balancing mode.
    pub balance: Balance,
    /// Time allowed to receive a request head (and to wait for the next one on a keep-alive
    /// connection).
    pub header_timeout: Duration,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Threads serving client connections, each connection on one (0 = one per core).
    pub workers: usize,
    /// Time a backend has to send a response head.
    pub backend_timeout: Duration,
    /// Longest a write may make no progress before its connection is closed.
    pub idle_timeout: Duration,
    /// Drain deadline on SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
    /// The upgrade socket and whether to take over from the process serving it.
    pub upgrade: crate::upgrade::UpgradeArgs,
    /// Where the process id is written (`--pid-file`).
    pub pid_file: Option<PathBuf>,
    /// The file's `log_level` (`None`: not set, so `info`); `RUST_LOG` and `--log-level` win over it.
    pub log_level: Option<String>,
}

impl Settings {
    /// Resolves flags over the file over defaults.
    pub fn load(args: Args) -> Result<Settings, ConfigError> {
        let file: File = match &args.config {
            Some(p) => config::load(p)?,
            None => File::default(),
        };
        let backends = if args.backend.is_empty() { file.backends } else { args.backend };
        if backends.is_empty() {
            return Err(ConfigError::invalid(
                "backend",
                "no backend configured; pass --backend HOST:PORT (repeatable) or set backends = [\"host:port\"]",
            ));
        }
        for b in &backends {
            Target::parse(b)
                .map_err(|e| ConfigError::invalid("backend", format!("`{b}`: {e}; write HOST:PORT")))?;
        }
        let balance = args.balance.or(file.balance).unwrap_or_else(|| "least-sessions".into());
        let balance: Balance = balance.parse().map_err(|e: String| ConfigError::invalid("balance", e))?;
        let path = args.path.or(file.path).unwrap_or_else(|| "/socket.io/".into());
        if !path.starts_with('/') {
            return Err(ConfigError::invalid("path", format!("`{path}` must start with /")));
        }
        let (redis, redis_cluster) =
            redis_store(args.redis.or(file.redis), args.redis_cluster, file.redis_cluster)?;
        let redis_ca = args.redis_ca.or(file.redis_ca);
        let tls = |u: &String| u.starts_with("rediss://");
        if redis_ca.is_some() && !(redis.iter().any(tls) || redis_cluster.iter().any(tls)) {
            return Err(ConfigError::invalid(
                "redis-ca",
                "a CA for Redis needs TLS Redis URLs: pass --redis rediss://[:password@]host:port/ \
                 or --redis-cluster rediss://host:port,rediss://host:port (Sentinel URLs are plain TCP)",
            ));
        }
        let shared = redis.is_some() || !redis_cluster.is_empty();
        let route_by = route_by(args.route_by.or(file.route_by), args.route_key.or(file.route_key), shared)?;
        let pick = |flag: Option<Duration>, file: Option<Duration>, default: u64| {
            flag.or(file).unwrap_or(Duration::from_secs(default))
        };
        let check_interval = pick(args.check_interval, file.check_interval, 2);
        let check_timeout = pick(args.check_timeout, file.check_timeout, 1);
        let key_expiry = pick(args.key_expiry, file.key_expiry, 60);
        let header_timeout = pick(args.header_timeout, file.header_timeout, 10);
        let backend_timeout = pick(args.backend_timeout, file.backend_timeout, 30);
        let idle_timeout = pick(args.idle_timeout, file.idle_timeout, 60);
        // Zero is allowed: stop at once without waiting for open connections.
        let shutdown_timeout = config::check_duration(
            "shutdown_timeout",
            pick(args.shutdown_timeout, file.shutdown_timeout, 30),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        )?;
        for (key, value, (min, max)) in [
            ("check_interval", check_interval, PERIOD),
            ("check_timeout", check_timeout, PERIOD),
            ("key_expiry", key_expiry, EXPIRY),
            ("header_timeout", header_timeout, PERIOD),
            ("backend_timeout", backend_timeout, LONG),
            ("idle_timeout", idle_timeout, LONG),
        ] {
            config::check_duration(key, value, min, max)?;
        }
        let max_connections = args.max_connections.or(file.max_connections).unwrap_or(10_000);
        config::check_count("max_connections", max_connections, 1, MAX_CONNECTIONS)?;
        Ok(Settings {
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:4000".parse().expect("static")),
            backends,
            redis,
            redis_cluster,
            redis_ca,
            route_by,
            path,
            check_interval,
            check_timeout,
            key_prefix: args.key_prefix.or(file.key_prefix).unwrap_or_else(|| "socket.io#".into()),
            key_expiry,
            balance,
            header_timeout,
            max_connections,
            workers: crate::net::workers::check_count(args.workers.or(file.workers).unwrap_or(0))?,
            backend_timeout,
            idle_timeout,
            shutdown_timeout,
            metrics: args.metrics.or(file.metrics),
            upgrade: args.upgrade,
            pid_file: args.pid_file.or(file.pid_file),
            log_level: config::log_level(file.log_level)?,
        })
    }
}

/// Accepted range of the health-check period and timeout and of the header timeout: a zero period
/// would spin (tokio panics on it), and hours mean a typo.
const PERIOD: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3600));

/// Accepted range of timeouts that must outlast a long poll or a quiet WebSocket, which Engine.IO's
/// pingInterval paces and users raise.
const LONG: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(24 * 3600));

/// Accepted range of the binding expiry: Redis rejects `PX 0`, and a binding must outlive a long
/// poll; a week is far past any session.
const EXPIRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// Most `--max-connections`: far above what one process can hold open.
const MAX_CONNECTIONS: usize = 1_000_000;

/// `--route-by` with its key: `tag` needs a readable `--route-key` of at least [`MIN_KEY_BYTES`]
/// and excludes a Redis store (`shared`: one nobody would read); a key without `tag` is a mistake
/// too.
fn route_by(mode: Option<String>, key: Option<PathBuf>, shared: bool) -> Result<RouteBy, ConfigError> {
    let flag = config::flag_and_key("route_key");
    match mode.as_deref().unwrap_or("store") {
        "store" => match key {
            None => Ok(RouteBy::Store),
            Some(_) => Err(ConfigError::invalid(
                flag,
                "a route key is only used with --route-by tag (config key route_by = \"tag\"); add that, or drop the key",
            )),
        },
        "tag" => {
            if shared {
                return Err(ConfigError::invalid(
                    config::flag_and_key("route_by"),
                    "`tag` routes without a store, so Redis would never be read; drop --redis or \
                     --redis-cluster (config keys redis, redis_cluster), or use --route-by store to share \
                     sessions through Redis",
                ));
            }
            let make = "make one with `head -c 32 /dev/urandom > FILE` and give every balancer a copy";
            let Some(path) = key else {
                return Err(ConfigError::invalid(
                    flag,
                    format!("--route-by tag needs a key file: pass --route-key FILE (config key route_key); {make}"),
                ));
            };
            let shown = path.display();
            RouteKey::load(&path).map(RouteBy::Tag).map_err(|e| {
                let why = match e {
                    KeyFileError::Unreadable(e) => format!("cannot read {shown}: {e}"),
                    KeyFileError::Empty => format!("{shown} is empty"),
                    KeyFileError::TooShort(n) => {
                        format!("{shown} holds {n} bytes; a key needs at least {MIN_KEY_BYTES}")
                    }
                };
                ConfigError::invalid(flag, format!("{why}; {make}"))
            })
        }
        other => Err(ConfigError::invalid(
            config::flag_and_key("route_by"),
            format!("`{other}` is not a routing mode; use store or tag"),
        )),
    }
}

/// The Redis store: `--redis` (one node, or a master found through Sentinel) or `--redis-cluster`
/// (seed nodes), each URL checked here so a typo is reported before anything starts. The two name
/// different stores, so both at once is refused. URLs are shown with their password hidden.
fn redis_store(
    redis: Option<String>,
    cluster_flag: Vec<String>,
    cluster_file: Option<Urls>,
) -> Result<(Option<String>, Vec<String>), ConfigError> {
    let cluster = if cluster_flag.is_empty() {
        cluster_file.map(Urls::into_vec).unwrap_or_default()
    } else {
        cluster_flag
    };
    let cluster: Vec<String> = cluster.iter().map(|u| u.trim().to_owned()).collect();
    if redis.is_some() && !cluster.is_empty() {
        return Err(ConfigError::invalid(
            config::flag_and_key("redis_cluster"),
            "--redis (config key redis) is given too, and the two name different stores; keep one: \
             --redis for one node or a Sentinel-managed master, --redis-cluster for a Redis Cluster",
        ));
    }
    if let Some(url) = &redis {
        RedisUrl::parse(url).map_err(|e| ConfigError::invalid(config::flag_and_key("redis"), e))?;
    }
    if !cluster.is_empty() {
        redis_url::check_cluster(&cluster).map_err(|e| ConfigError::invalid("redis_cluster", e))?;
    }
    Ok((redis, cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args { backend: vec!["127.0.0.1:3000".into()], ..Args::default() }
    }

    fn error(args: Args) -> String {
        Settings::load(args).expect_err("rejected").to_string()
    }

    #[test]
    fn defaults() {
        let s = Settings::load(args()).unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.max_connections, 10_000);
        assert_eq!(s.workers, 0);
        assert_eq!(s.backend_timeout, Duration::from_secs(30));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn zero_and_absurd_values_name_the_flag_and_the_range() {
        let zero = Duration::ZERO;
        let cases: Vec<(Args, &str)> = vec![
            (Args { check_interval: Some(zero), ..args() }, "--check-interval"),
            (Args { check_timeout: Some(zero), ..args() }, "--check-timeout"),
            (Args { key_expiry: Some(zero), ..args() }, "--key-expiry"),
            (Args { header_timeout: Some(zero), ..args() }, "--header-timeout"),
            (Args { backend_timeout: Some(zero), ..args() }, "--backend-timeout"),
            (Args { idle_timeout: Some(zero), ..args() }, "--idle-timeout"),
            (
                Args { check_interval: Some(Duration::from_secs(100 * 365 * 86400)), ..args() },
                "--check-interval",
            ),
            (Args { max_connections: Some(0), ..args() }, "--max-connections"),
            (Args { max_connections: Some(usize::MAX), ..args() }, "--max-connections"),
            (Args { workers: Some(5000), ..args() }, "--workers"),
        ];
        for (a, flag) in cases {
            let e = error(a);
            assert!(e.contains(flag) && e.contains(" from ") && e.contains(" to "), "{flag}: {e}");
        }
        let e = error(Args { check_interval: Some(zero), ..args() });
        assert!(e.contains("10ms") && e.contains("1h") && e.contains("check_interval"), "{e}");
    }

    #[test]
    fn route_by_tag_needs_a_good_key_and_no_redis() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            Some(p)
        };
        let tag = || Args { route_by: Some("tag".into()), ..args() };
        assert!(matches!(Settings::load(args()).unwrap().route_by, RouteBy::Store));
        let good = file("good", &[7; 32]);
        let s = Settings::load(Args { route_key: good.clone(), ..tag() }).unwrap();
        assert!(matches!(s.route_by, RouteBy::Tag(_)));
        for (key, want) in [
            (None, "--route-key FILE"),
            (file("empty", b""), "is empty"),
            (file("short", &[1; 15]), "holds 15 bytes; a key needs at least 16"),
            (Some(dir.path().join("missing")), "cannot read"),
        ] {
            let e = error(Args { route_key: key, ..tag() });
            assert!(e.contains("--route-key (config key route_key)"), "{e}");
            assert!(e.contains(want) && e.contains("head -c 32 /dev/urandom"), "{e}");
        }
        let e =
            error(Args { route_key: good.clone(), redis: Some("redis://127.0.0.1:6379".into()), ..tag() });
        assert!(e.contains("--route-by") && e.contains("drop --redis"), "{e}");
        let e = error(Args { route_key: good, ..args() });
        assert!(e.contains("--route-by tag"), "{e}");
    }

    #[test]
    fn redis_urls_need_a_redis_scheme() {
        for url in ["http://127.0.0.1:6379", "https://:pw@h:1/", "127.0.0.1:6379", "unix:///tmp/r.sock"] {
            let e = error(Args { redis: Some(url.into()), ..args() });
            assert!(e.contains("--redis") && e.contains("redis://") && e.contains("rediss://"), "{e}");
            assert!(!e.contains(":pw@"), "the password is hidden: {e}");
        }
        for url in ["redis://127.0.0.1:6379", "rediss://:pw@h:1/"] {
            assert!(Settings::load(Args { redis: Some(url.into()), ..args() }).is_ok(), "{url}");
        }
    }

    #[test]
    fn sentinel_and_cluster_stores() {
        let sentinel = "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster";
        assert!(Settings::load(Args { redis: Some(sentinel.into()), ..args() }).is_ok());
        let e = error(Args { redis: Some("redis+sentinel://:pw@127.0.0.1:26379".into()), ..args() });
        assert!(e.contains("--redis") && e.contains("no master name") && e.contains("/MASTERNAME"), "{e}");
        assert!(!e.contains(":pw@"), "{e}");
        let cluster = vec!["redis://127.0.0.1:7000".to_owned(), "redis://127.0.0.1:7001".into()];
        let s = Settings::load(Args { redis_cluster: cluster.clone(), ..args() }).unwrap();
        assert_eq!((s.redis, s.redis_cluster), (None, cluster.clone()));
        let both =
            Args { redis: Some("redis://127.0.0.1:6379".into()), redis_cluster: cluster.clone(), ..args() };
        let e = error(both);
        assert!(e.contains("--redis-cluster") && e.contains("keep one"), "{e}");
        let e = error(Args { redis_cluster: vec!["http://127.0.0.1:7000".into()], ..args() });
        assert!(e.contains("--redis-cluster") && e.contains("redis://"), "{e}");
        let e = error(Args { route_by: Some("tag".into()), redis_cluster: cluster.clone(), ..args() });
        assert!(e.contains("drop --redis or --redis-cluster"), "{e}");
        // A CA goes with TLS nodes only; Sentinel URLs are plain TCP.
        let ca = Some(PathBuf::from("/nonexistent/ca.pem"));
        let tls = vec!["rediss://127.0.0.1:7000".to_owned()];
        assert!(Settings::load(Args { redis_cluster: tls, redis_ca: ca.clone(), ..args() }).is_ok());
        for bad in
            [Args { redis_cluster: cluster, ..args() }, Args { redis: Some(sentinel.into()), ..args() }]
        {
            let e = error(Args { redis_ca: ca.clone(), ..bad });
            assert!(e.contains("redis-ca") && e.contains("rediss://"), "{e}");
        }
    }

    #[test]
    fn redis_cluster_in_the_file_is_a_list_or_a_comma_string_and_the_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let want = vec!["redis://a:1".to_owned(), "redis://b:2".into()];
        for text in [
            r#"redis_cluster = ["redis://a:1", "redis://b:2"]"#,
            r#"redis_cluster = "redis://a:1, redis://b:2""#,
        ] {
            let path = dir.path().join("sticky.toml");
            std::fs::write(&path, text).unwrap();
            let s = Settings::load(Args { config: Some(path.clone()), ..args() }).unwrap();
            assert_eq!(s.redis_cluster, want, "{text}");
            let flag = vec!["redis://c:3".to_owned()];
            let s =
                Settings::load(Args { config: Some(path), redis_cluster: flag.clone(), ..args() }).unwrap();
            assert_eq!(s.redis_cluster, flag);
        }
    }
}
