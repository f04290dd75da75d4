//! `tunnelkit ws-server` settings: built-in defaults, then the TOML file (`--config`, read by the one
//! loader [`config::load`]), then the flags on top.
//!
//! Every flag has a key of the same name in snake_case (`--token` is `tokens = [...]`). A flag given on
//! the command line wins over its key; the repeatable `--token` and `--allow` add to the file's lists,
//! and `--open` and `--allow-public-listen` can only switch on what the file leaves off. The flags'
//! ranges are checked by clap as they are parsed; a value from the file is checked against the same
//! range here, and a bad one stops the server at start with the file, the key and the range.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::args::{
    ServerArgs, COMPAT_PROTOCOLS, HEARTBEAT, HOLD, LISTENERS, STREAMS, STREAM_MEMORY, TUNNELS, WORKERS,
};
use super::cluster::{self, settings::ClusterSettings, settings::ClusterValues};
use crate::config::{self, flag_and_key, ConfigError};
use crate::net::Target;
use crate::policy::{Cidr, PortSet};

/// The TOML file: every key optional, unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    listen: Option<SocketAddr>,
    path: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    connect_ports: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    open: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    heartbeat: Option<Duration>,
    max_tunnels: Option<usize>,
    max_tunnels_per_token: Option<usize>,
    max_streams: Option<u32>,
    /// Written as on the command line: `"4M"`, `"512K"`, `"1G"` or a number of bytes.
    max_stream_memory: Option<String>,
    max_listeners: Option<usize>,
    allow_public_listen: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    max_keep_broken: Option<Duration>,
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    metrics: Option<SocketAddr>,
    workers: Option<usize>,
    compat: Option<String>,
    compat_target: Option<String>,
    #[serde(default, with = "humantime_serde")]
    shutdown_timeout: Option<Duration>,
    cluster_redis: Option<String>,
    advertise: Option<String>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    reload_grace: Option<Duration>,
    log_level: Option<String>,
}

/// Everything `ws-server` runs with, resolved.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Listener.
    pub listen: SocketAddr,
    /// URL path of the WebSocket endpoint.
    pub path: String,
    /// Accepted bearer tokens (empty: no token needed).
    pub tokens: Vec<String>,
    /// Special-purpose ranges stream targets may be in.
    pub allow: Vec<Cidr>,
    /// Ports stream targets may use (`None`: every port).
    pub connect_ports: Option<PortSet>,
    /// PEM certificate chain and key for `wss://`, both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve without a token on a non-loopback address, on purpose.
    pub open: bool,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Tunnels alive at once.
    pub max_tunnels: usize,
    /// Tunnels one token may hold at once.
    pub max_tunnels_per_token: usize,
    /// Streams open at once in one tunnel.
    pub max_streams: u32,
    /// Bytes one tunnel's streams may hold in each direction.
    pub max_stream_memory: usize,
    /// Remote listeners one tunnel may have.
    pub max_listeners: usize,
    /// Let `-R` bind unspecified addresses.
    pub allow_public_listen: bool,
    /// Longest hold of a broken tunnel.
    pub max_keep_broken: Duration,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// The other protocol spoken instead of ours (`ws-stream-tunnel`).
    pub compat: Option<String>,
    /// Where compat streams are connected.
    pub compat_target: Option<Target>,
    /// Drain deadline on SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Membership of a tunnel cluster (`--cluster-redis` and its companions).
    pub cluster: Option<ClusterSettings>,
    /// The upgrade socket and whether to take over from the process serving it.
    pub upgrade: crate::upgrade::UpgradeArgs,
    /// Where the process id is written (`--pid-file`).
    pub pid_file: Option<PathBuf>,
    /// How long a token revoked by a reload keeps its open tunnels.
    pub reload_grace: Duration,
    /// The file's `log_level` (`None`: not set, so `info`); `RUST_LOG` and `--log-level` win over it.
    pub log_level: Option<String>,
}

impl ServerSettings {
    /// Resolves the flags over the file over the defaults.
    pub fn load(args: ServerArgs) -> Result<ServerSettings, ConfigError> {
        let (file, path): (File, PathBuf) = match &args.config {
            Some(p) => (config::load(p)?, p.clone()),
            None => (File::default(), PathBuf::new()),
        };
        let from_file = FileValues { path: &path };
        let mut tokens = file.tokens;
        if tokens.iter().any(String::is_empty) {
            return Err(from_file.invalid("tokens", "an empty token would accept `Authorization: Bearer `"));
        }
        tokens.extend(args.token);
        let mut allow = file
            .allow
            .iter()
            .map(|s| s.parse::<Cidr>().map_err(|e| from_file.invalid("allow", e)))
            .collect::<Result<Vec<_>, _>>()?;
        allow.extend(args.allow);
        let connect_ports = match (args.connect_ports, file.connect_ports) {
            (Some(p), _) => Some(p),
            (None, Some(s)) => Some(PortSet::parse(&s).map_err(|e| from_file.invalid("connect_ports", e))?),
            (None, None) => None,
        };
        // clap makes each of --tls-cert and --tls-key require the other; in the file they go together too.
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(from_file
                    .invalid("tls_key", "tls_cert is set but its key is missing; add tls_key = \"PEM\""))
            }
            (None, Some(_)) => {
                return Err(from_file
                    .invalid("tls_cert", "tls_key is set but its chain is missing; add tls_cert = \"PEM\""))
            }
        };
        let compat = match (args.compat, file.compat) {
            (Some(c), _) => Some(c),
            (None, Some(c)) if COMPAT_PROTOCOLS.contains(&c.as_str()) => Some(c),
            (None, Some(c)) => {
                let known = COMPAT_PROTOCOLS.join(", ");
                return Err(
                    from_file.invalid("compat", format!("`{c}` is not a protocol we speak; use {known}"))
                );
            }
            (None, None) => None,
        };
        let compat_target =
            match (args.compat_target, file.compat_target) {
                (Some(t), _) => Some(t),
                (None, Some(s)) => Some(s.parse::<Target>().map_err(|e| {
                    from_file.invalid("compat_target", format!("`{s}`: {e}; write HOST:PORT"))
                })?),
                (None, None) => None,
            };
        if compat_target.is_some() && compat.is_none() {
            return Err(
                from_file.invalid("compat_target", "it only applies with compat = \"ws-stream-tunnel\"")
            );
        }
        let max_tunnels =
            from_file.count("max_tunnels", args.max_tunnels, file.max_tunnels, 1024, TUNNELS)?;
        let quarter = (max_tunnels / 4).max(1);
        let max_tunnels_per_token = from_file.count(
            "max_tunnels_per_token",
            args.max_tunnels_per_token,
            file.max_tunnels_per_token,
            quarter,
            TUNNELS,
        )?;
        let streams = (STREAMS.0 as usize, STREAMS.1 as usize);
        let max_streams = from_file.count(
            "max_streams",
            args.max_streams.map(|n| n as usize),
            file.max_streams.map(|n| n as usize),
            1024,
            streams,
        )? as u32;
        let max_stream_memory = match (args.max_stream_memory, file.max_stream_memory) {
            (Some(n), _) => n,
            (None, Some(s)) => config::size_in(STREAM_MEMORY.0, STREAM_MEMORY.1)(&s)
                .map_err(|e| from_file.invalid(&flag_and_key("max_stream_memory"), e))?,
            (None, None) => 4 << 20,
        };
        let listen = args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".parse().expect("static"));
        let cluster_values = ClusterValues {
            redis: args.cluster_redis.or(file.cluster_redis),
            advertise: args.advertise.or(file.advertise),
            secret: args.cluster_secret.or(file.cluster_secret),
            secret_file: args.cluster_secret_file.or(file.cluster_secret_file),
        };
        let cluster =
            cluster::settings::resolve(cluster_values, listen, compat.as_ref().map(|_| "--compat"), &path)?;
        Ok(ServerSettings {
            listen,
            path: args.path.or(file.path).unwrap_or_else(|| "/tunnel".to_owned()),
            tokens,
            allow,
            connect_ports,
            tls,
            open: args.open || file.open.unwrap_or(false),
            heartbeat: from_file.duration(
                "heartbeat",
                args.heartbeat,
                file.heartbeat,
                Duration::from_secs(10),
                HEARTBEAT,
            )?,
            max_tunnels,
            max_tunnels_per_token,
            max_streams,
            max_stream_memory,
            max_listeners: from_file.count(
                "max_listeners",
                args.max_listeners,
                file.max_listeners,
                16,
                LISTENERS,
            )?,
            allow_public_listen: args.allow_public_listen || file.allow_public_listen.unwrap_or(false),
            max_keep_broken: from_file.duration(
                "max_keep_broken",
                args.max_keep_broken,
                file.max_keep_broken,
                Duration::from_secs(300),
                HOLD,
            )?,
            metrics: args.metrics.or(file.metrics),
            workers: from_file.count("workers", args.workers, file.workers, 0, WORKERS)?,
            compat,
            compat_target,
            shutdown_timeout: from_file.duration(
                "shutdown_timeout",
                args.shutdown_timeout,
                file.shutdown_timeout,
                Duration::from_secs(30),
                HOLD,
            )?,
            cluster,
            upgrade: args.upgrade,
            pid_file: args.pid_file.or(file.pid_file),
            reload_grace: from_file.duration(
                "reload_grace",
                args.reload_grace,
                file.reload_grace,
                Duration::from_secs(10),
                HOLD,
            )?,
            log_level: config::log_level(file.log_level).map_err(|e| e.in_file(&path))?,
        })
    }
}

/// Checks of values that came from the file, whose errors name it. A flag's value needs none: clap
/// checked it against the same range when it parsed the command line.
struct FileValues<'a> {
    path: &'a Path,
}

impl FileValues<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(key, message).in_file(self.path)
    }

    /// The flag, else the file's value within `range`, else `default`.
    fn duration(
        &self,
        key: &str,
        flag: Option<Duration>,
        file: Option<Duration>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        match (flag, file) {
            (Some(d), _) => Ok(d),
            (None, Some(d)) => config::check_duration(key, d, min, max).map_err(|e| e.in_file(self.path)),
            (None, None) => Ok(default),
        }
    }

    /// The flag, else the file's value within `range`, else `default`.
    fn count(
        &self,
        key: &str,
        flag: Option<usize>,
        file: Option<usize>,
        default: usize,
        (min, max): (usize, usize),
    ) -> Result<usize, ConfigError> {
        match (flag, file) {
            (Some(n), _) => Ok(n),
            (None, Some(n)) => config::check_count(key, n, min, max).map_err(|e| e.in_file(self.path)),
            (None, None) => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    /// `ws-server FLAGS` with `file` (if any) as its `--config`.
    fn load(file: Option<&str>, flags: &[&str]) -> Result<ServerSettings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ws-server.toml");
        let mut argv = vec!["ws-server".to_owned()];
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.extend(["--config".to_owned(), path.display().to_string()]);
        }
        argv.extend(flags.iter().map(|f| f.to_string()));
        ServerSettings::load(Cli::try_parse_from(argv).expect("flags parse").server)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.path, "/tunnel");
        assert_eq!((s.heartbeat, s.max_keep_broken), (Duration::from_secs(10), Duration::from_secs(300)));
        assert_eq!((s.max_tunnels, s.max_tunnels_per_token, s.max_streams), (1024, 256, 1024));
        assert_eq!((s.max_stream_memory, s.max_listeners, s.workers), (4 << 20, 16, 0));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert!(s.tokens.is_empty() && s.tls.is_none() && !s.open && s.compat.is_none());
    }

    #[test]
    fn every_key_is_read_and_flags_win() {
        let file = r#"
            listen = "127.0.0.1:9000"
            path = "/t"
            tokens = ["a"]
            allow = ["10.0.0.0/8"]
            connect_ports = "22,443"
            tls_cert = "/c.pem"
            tls_key = "/k.pem"
            open = true
            heartbeat = "2s"
            max_tunnels = 40
            max_streams = 7
            max_stream_memory = "8M"
            max_listeners = 0
            allow_public_listen = true
            max_keep_broken = "1m"
            metrics = "9100"
            workers = 2
            compat = "ws-stream-tunnel"
            compat_target = "127.0.0.1:5432"
            shutdown_timeout = "0s"
            log_level = "warn,tunnelkit::tunnel=debug"
        "#;
        let s = load(Some(file), &[]).unwrap();
        assert_eq!((s.listen.port(), s.path.as_str(), s.tokens.len(), s.allow.len()), (9000, "/t", 1, 1));
        assert!(s.connect_ports.is_some_and(|p| p.contains(22) && !p.contains(80)));
        assert_eq!(s.tls, Some(("/c.pem".into(), "/k.pem".into())));
        assert!(s.open && s.allow_public_listen);
        assert_eq!((s.heartbeat, s.max_keep_broken), (Duration::from_secs(2), Duration::from_secs(60)));
        assert_eq!((s.max_tunnels, s.max_tunnels_per_token, s.max_streams), (40, 10, 7));
        assert_eq!((s.max_stream_memory, s.max_listeners, s.workers), (8 << 20, 0, 2));
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(s.compat_target.map(|t| t.to_string()).as_deref(), Some("127.0.0.1:5432"));
        assert_eq!(s.shutdown_timeout, Duration::ZERO);
        assert_eq!(s.log_level.as_deref(), Some("warn,tunnelkit::tunnel=debug"));

        let flags = ["--listen", "127.0.0.1:9001", "--path", "/f", "--token", "b", "--heartbeat", "3s"];
        let s = load(Some(file), &[&flags[..], &["--max-stream-memory", "2M", "--workers", "1"]].concat())
            .unwrap();
        assert_eq!((s.listen.port(), s.path.as_str()), (9001, "/f"));
        assert_eq!(s.tokens, ["a", "b"], "--token adds to the file's tokens");
        assert_eq!((s.heartbeat, s.max_stream_memory, s.workers), (Duration::from_secs(3), 2 << 20, 1));
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_file_the_key_and_the_fix() {
        let cases = [
            ("heartbeat = \"0s\"", "heartbeat", "100ms"),
            ("max_tunnels = 0", "max_tunnels", "1 to 1000000"),
            ("max_streams = 70000", "max_streams", "65536"),
            ("max_stream_memory = \"1K\"", "max_stream_memory", "1M to 1G"),
            ("workers = 5000", "workers", "1024"),
            ("allow = [\"10.0.0.0/99\"]", "allow", "127.0.0.0/8"),
            ("connect_ports = \"https\"", "connect_ports", "443,8443"),
            ("tls_cert = \"/c.pem\"", "tls_key", "missing"),
            ("compat = \"socket.io\"", "compat", "ws-stream-tunnel"),
            ("compat_target = \"127.0.0.1:1\"", "compat_target", "compat = "),
            ("tokens = [\"\"]", "tokens", "empty"),
            ("listen = \":80\"", "listen", "IP:PORT"),
            ("heartbeat = 10", "heartbeat", "line 1"),
            ("listen_port = 1", "listen_port", "unknown field"),
            ("log_level = \"tunnelkit=loud\"", "log_level", "warn,tunnelkit::proxy=debug"),
        ];
        for (text, key, fix) in cases {
            let e = load(Some(text), &[]).expect_err(text).to_string();
            assert!(e.contains("ws-server.toml") && e.contains(key) && e.contains(fix), "{text}: {e}");
        }
    }
}
