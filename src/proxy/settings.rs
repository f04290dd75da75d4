//! `tunnelkit proxy` settings: built-in defaults, then the TOML file, then flags (one loader).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::args::Args;
use super::inspect::settings::{recording, Recording, RecordingInput, BODY_MAX_LIMIT};
use super::intercept::settings::{intercept_settings, parse_globs, InterceptInput};
use super::intercept::InterceptSettings;
use crate::config::{self, ConfigError};
use crate::policy::{Cidr, Credentials, Policy, PortSet, Users};

/// The TOML file: every key optional, unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    listen: Option<SocketAddr>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    connect_ports: Option<String>,
    http_ports: Option<String>,
    #[serde(default)]
    auth: Vec<String>,
    users: Option<PathBuf>,
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    socks: Option<SocketAddr>,
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    metrics: Option<SocketAddr>,
    access_log: Option<String>,
    open: Option<bool>,
    upstream: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    dial_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    upstream_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    upstream_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    tunnel_idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_pipes: Option<usize>,
    pipe_size: Option<String>,
    no_splice: Option<bool>,
    workers: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_timeout: Option<Duration>,
    pid_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    reload_grace: Option<Duration>,
    intercept: Option<InterceptKey>,
    #[serde(default)]
    no_intercept: Vec<String>,
    ca_dir: Option<PathBuf>,
    upstream_ca: Option<PathBuf>,
    insecure_upstream: Option<bool>,
    cert_cache: Option<usize>,
    #[serde(default, deserialize_with = "config::deserialize_listen")]
    inspect: Option<SocketAddr>,
    inspect_flows: Option<usize>,
    inspect_body_max: Option<String>,
    flows_log: Option<String>,
    har: Option<PathBuf>,
    log_level: Option<String>,
}

/// `intercept = true` (every host) or `intercept = ["*.example.com", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InterceptKey {
    All(bool),
    Hosts(Vec<String>),
}

/// Everything the proxy runs with, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP listener.
    pub listen: SocketAddr,
    /// Destination policy.
    pub policy: Policy,
    /// Accepted users (empty: no auth).
    pub users: Users,
    /// SOCKS5 listener.
    pub socks: Option<SocketAddr>,
    /// Metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Access log destination.
    pub access_log: Option<String>,
    /// Parent proxy URL.
    pub upstream: Option<String>,
    /// Serve the proxy port over TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Request head deadline.
    pub header_timeout: Duration,
    /// DNS + connect deadline.
    pub dial_timeout: Duration,
    /// Client keep-alive idle limit.
    pub idle_timeout: Duration,
    /// Pooled upstream idle limit.
    pub upstream_idle_timeout: Duration,
    /// Upstream silence limit while a response is due.
    pub upstream_timeout: Duration,
    /// Tunnel idle limit.
    pub tunnel_idle_timeout: Duration,
    /// Connection cap.
    pub max_connections: usize,
    /// Pipes for splicing CONNECT, SOCKS and upgrade tunnels (0: copy only, `--no-splice`).
    pub max_pipes: usize,
    /// Size asked for each pipe.
    pub pipe_size: usize,
    /// Threads serving client connections, each connection on one (0 = one per core).
    pub workers: usize,
    /// Drain deadline.
    pub shutdown_timeout: Duration,
    /// Where the process id is written (`--pid-file`).
    pub pid_file: Option<PathBuf>,
    /// How long a user removed by a reload keeps its open tunnels.
    pub reload_grace: Duration,
    /// HTTPS interception (`--intercept`), when on.
    pub intercept: Option<InterceptSettings>,
    /// What is recorded of the traffic, and where it goes.
    pub recording: Recording,
    /// The upgrade socket and whether to take over from the process serving it.
    pub upgrade: crate::upgrade::UpgradeArgs,
    /// The file's `log_level` (`None`: not set, so `info`); `RUST_LOG` and `--log-level` win over it.
    pub log_level: Option<String>,
}

/// The PEM files of the TLS listener (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `--max-pipes`, zero with `--no-splice`; by default a quarter of the connections, as HAProxy's
/// `maxpipes` (a tunnel moving bytes both ways at once is rarer than one waiting).
fn max_pipes(no_splice: bool, asked: Option<usize>, max_connections: usize) -> Result<usize, ConfigError> {
    if no_splice {
        return Ok(0);
    }
    let n = asked.unwrap_or((max_connections / 4).max(1));
    config::check_count("max_pipes", n, 0, 1_000_000)
}

/// Both or neither: a certificate without its key (or the reverse) is a half-done setup, not a
/// request for plain HTTP.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::invalid(
            config::flag_and_key("tls_key"),
            "--tls-cert is set but its private key is missing; add --tls-key PEM (or tls_key in the file)",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            config::flag_and_key("tls_cert"),
            "--tls-key is set but its certificate is missing; add --tls-cert PEM (or tls_cert in the file)",
        )),
    }
}

fn parse_list<T: std::str::FromStr<Err = String>>(
    key: &str,
    items: &[String],
) -> Result<Vec<T>, ConfigError> {
    items.iter().map(|s| s.parse().map_err(|e: String| ConfigError::invalid(key, e))).collect()
}

impl Settings {
    /// Resolves flags over the file over defaults, and checks the combination is safe.
    pub fn load(args: Args) -> Result<Settings, ConfigError> {
        let file: File = match &args.config {
            Some(p) => config::load(p)?,
            None => File::default(),
        };
        let mut args_intercept = InterceptInput {
            hosts: args.intercept.clone(),
            no: args.no_intercept.clone(),
            ca_dir: args.ca_dir.clone(),
            upstream_ca: args.upstream_ca.clone(),
            insecure: args.insecure_upstream,
            cert_cache: args.cert_cache,
        };
        let mut file_intercept = InterceptInput {
            hosts: match &file.intercept {
                None | Some(InterceptKey::All(false)) => None,
                Some(InterceptKey::All(true)) => Some(Vec::new()),
                Some(InterceptKey::Hosts(h)) => Some(parse_globs("intercept", h)?),
            },
            no: parse_globs("no_intercept", &file.no_intercept)?,
            ca_dir: file.ca_dir.clone(),
            upstream_ca: file.upstream_ca.clone(),
            insecure: file.insecure_upstream.unwrap_or(false),
            cert_cache: file.cert_cache,
        };
        let args_recording = RecordingInput {
            inspect: args.inspect,
            flows: args.inspect_flows,
            body_max: args.inspect_body_max,
            flows_log: args.flows_log.clone(),
            har: args.har.clone(),
        };
        let file_recording = RecordingInput {
            inspect: file.inspect,
            flows: file.inspect_flows,
            body_max: match &file.inspect_body_max {
                Some(v) => Some(
                    config::size_in(0, BODY_MAX_LIMIT)(v)
                        .map_err(|e| ConfigError::invalid("inspect_body_max", e))?,
                ),
                None => None,
            },
            flows_log: file.flows_log.clone(),
            har: file.har.clone(),
        };
        let mut allow: Vec<Cidr> = parse_list("allow", &file.allow)?;
        allow.extend(args.allow);
        let mut deny: Vec<Cidr> = parse_list("deny", &file.deny)?;
        deny.extend(args.deny);
        let connect_ports = match (args.connect_ports, file.connect_ports) {
            (Some(p), _) => Some(p),
            (None, Some(s)) => {
                Some(PortSet::parse(&s).map_err(|e| ConfigError::invalid("connect_ports", e))?)
            }
            _ => None,
        };
        let http_ports = match (args.http_ports, file.http_ports) {
            (Some(p), _) => Some(p),
            (None, Some(s)) => Some(PortSet::parse(&s).map_err(|e| ConfigError::invalid("http_ports", e))?),
            _ => None,
        };
        let mut policy = Policy::new().allow(allow).deny(deny);
        if let Some(p) = connect_ports {
            policy = policy.connect_ports(p);
        }
        if let Some(p) = http_ports {
            policy = policy.http_ports(p);
        }
        let mut users = Users::new();
        for c in file.auth.iter().map(|s| Credentials::parse_pair(s)) {
            users.add(
                c.map_err(|e| ConfigError::invalid("auth", format!("{e}; write it as \"user:password\"")))?,
            );
        }
        for c in args.auth {
            users.add(c);
        }
        if let Some(p) = args.users.or(file.users) {
            users.load_file(&p)?;
        }
        let listen = args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:3128".parse().expect("static"));
        let open = args.open || file.open.unwrap_or(false);
        let socks = args.socks.or(file.socks);
        if users.is_empty() && !open {
            for (key, addr) in [("listen", Some(listen)), ("socks", socks)] {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{addr} is reachable from other machines and no user is configured; \
                             add --auth USER:PASS (or --users FILE), listen on 127.0.0.1, or pass --open \
                             to run an open proxy on purpose"
                        ),
                    ));
                }
            }
        }
        let upstream = args.upstream.or(file.upstream);
        if let Some(url) = &upstream {
            // Checked here, before anything binds, so a typo is reported as what it is.
            crate::client::ProxyUrl::parse(url)
                .map_err(|e| ConfigError::invalid(config::flag_and_key("upstream"), e))?;
        }
        let tls = tls_files(args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key))?;
        let max_connections = args.max_connections.or(file.max_connections).unwrap_or(10_000);
        let no_splice = args.no_splice || file.no_splice == Some(true);
        let max_pipes = max_pipes(no_splice, args.max_pipes.or(file.max_pipes), max_connections)?;
        let duration = |key: &str, flag: Option<Duration>, file: Option<Duration>, default: u64, max: u64| {
            let value = flag.or(file).unwrap_or(Duration::from_secs(default));
            config::check_duration(key, value, Duration::from_millis(100), Duration::from_secs(max))
        };
        const DAY: u64 = 86_400;
        let intercept = intercept_settings(&mut args_intercept, &mut file_intercept)?;
        let recording = recording(&args_recording, &file_recording, !users.is_empty())?;
        Ok(Settings {
            listen,
            policy,
            users,
            socks,
            metrics: args.metrics.or(file.metrics),
            access_log: args.access_log.or(file.access_log),
            upstream,
            tls,
            header_timeout: duration("header_timeout", args.header_timeout, file.header_timeout, 10, 3600)?,
            dial_timeout: duration("dial_timeout", args.dial_timeout, file.dial_timeout, 10, 3600)?,
            idle_timeout: duration("idle_timeout", args.idle_timeout, file.idle_timeout, 60, DAY)?,
            upstream_idle_timeout: duration(
                "upstream_idle_timeout",
                args.upstream_idle_timeout,
                file.upstream_idle_timeout,
                30,
                DAY,
            )?,
            upstream_timeout: duration(
                "upstream_timeout",
                args.upstream_timeout,
                file.upstream_timeout,
                120,
                DAY,
            )?,
            tunnel_idle_timeout: duration(
                "tunnel_idle_timeout",
                args.tunnel_idle_timeout,
                file.tunnel_idle_timeout,
                600,
                7 * DAY,
            )?,
            max_connections: config::check_count("max_connections", max_connections, 1, 1_000_000)?,
            max_pipes,
            pipe_size: match (args.pipe_size, &file.pipe_size) {
                (Some(n), _) => n,
                (None, Some(v)) => {
                    config::size_in(4096, 1 << 30)(v).map_err(|e| ConfigError::invalid("pipe_size", e))?
                }
                (None, None) => crate::net::splice::DEFAULT_PIPE_SIZE,
            },
            workers: crate::net::workers::check_count(args.workers.or(file.workers).unwrap_or(0))?,
            // Zero is allowed: stop at once without waiting for open connections.
            shutdown_timeout: config::check_duration(
                "shutdown_timeout",
                args.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(Duration::from_secs(30)),
                Duration::ZERO,
                Duration::from_secs(DAY),
            )?,
            pid_file: args.pid_file.or(file.pid_file),
            reload_grace: config::check_duration(
                "reload_grace",
                args.reload_grace.or(file.reload_grace).unwrap_or(Duration::from_secs(10)),
                Duration::ZERO,
                Duration::from_secs(DAY),
            )?,
            intercept,
            recording,
            upgrade: args.upgrade,
            log_level: config::log_level(file.log_level)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_proxy_needs_consent() {
        let args = Args { listen: Some("0.0.0.0:3128".parse().unwrap()), ..Args::default() };
        let err = Settings::load(args.clone()).unwrap_err().to_string();
        assert!(err.contains("--open") && err.contains("listen"), "{err}");
        assert!(Settings::load(Args { open: true, ..args }).is_ok());
    }

    #[test]
    fn tls_needs_both_files() {
        let cert = Some(PathBuf::from("c.pem"));
        let err = Settings::load(Args { tls_cert: cert.clone(), ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let err = Settings::load(Args { tls_key: cert.clone(), ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("--tls-cert"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "tls_cert = \"/x/c.pem\"\ntls_key = \"/x/k.pem\"\n").unwrap();
        let s = Settings::load(Args { config: Some(p), ..Args::default() }).unwrap();
        assert_eq!(s.tls, Some(TlsFiles { cert: "/x/c.pem".into(), key: "/x/k.pem".into() }));
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9999\"\ndial_timeout = \"3s\"\nconnect_ports = \"443,8443\"\n",
        )
        .unwrap();
        let s = Settings::load(Args {
            config: Some(p.clone()),
            dial_timeout: Some(Duration::from_secs(1)),
            ..Args::default()
        })
        .unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.dial_timeout, Duration::from_secs(1));
        assert!(s.policy.check_port(8443, crate::net::Purpose::Tunnel).is_ok());
        std::fs::write(&p, "listen_port = 1\n").unwrap();
        let err = Settings::load(Args { config: Some(p), ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn pipes_default_to_a_quarter_of_the_connections_and_no_splice_turns_them_off() {
        let s = Settings::load(Args { max_connections: Some(1000), ..Args::default() }).unwrap();
        assert_eq!(s.max_pipes, 250);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "max_pipes = 7\n").unwrap();
        let from_file = Args { config: Some(p.clone()), ..Args::default() };
        assert_eq!(Settings::load(from_file.clone()).unwrap().max_pipes, 7);
        let flag = Args { max_pipes: Some(9), ..from_file.clone() };
        assert_eq!(Settings::load(flag).unwrap().max_pipes, 9, "the flag wins over the file");
        assert_eq!(Settings::load(Args { no_splice: true, ..from_file }).unwrap().max_pipes, 0);
        std::fs::write(&p, "max_pipes = 7\nno_splice = true\n").unwrap();
        assert_eq!(Settings::load(Args { config: Some(p), ..Args::default() }).unwrap().max_pipes, 0);
    }

    #[test]
    fn interception_keys_and_their_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "intercept = [\"*.a.test\"]\nno_intercept = [\"x.a.test\"]\nca_dir = \"/tmp/ca\"\ninspect_body_max = \"64K\"\n").unwrap();
        let s = Settings::load(Args { config: Some(p.clone()), ..Args::default() }).unwrap();
        let i = s.intercept.unwrap();
        assert!(i.scope.intercepts("b.a.test") && !i.scope.intercepts("x.a.test"));
        assert_eq!(i.ca_dir, PathBuf::from("/tmp/ca"));
        assert_eq!(s.recording.body_max, 64 << 10);
        std::fs::write(&p, "intercept = true\n").unwrap();
        let s = Settings::load(Args { config: Some(p.clone()), ..Args::default() }).unwrap();
        assert!(s.intercept.unwrap().scope.intercepts("anything.test"));
        std::fs::write(&p, "intercept = [\"https://x\"]\n").unwrap();
        let err = Settings::load(Args { config: Some(p), ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("intercept") && err.contains("without scheme"), "{err}");
        let err =
            Settings::load(Args { insecure_upstream: true, ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("--insecure-upstream") && err.contains("--intercept"), "{err}");
    }

    #[test]
    fn the_inspector_stays_on_loopback_unless_the_proxy_has_users() {
        let args = Args { inspect: Some("0.0.0.0:8081".parse().unwrap()), ..Args::default() };
        let err = Settings::load(args.clone()).unwrap_err().to_string();
        assert!(err.contains("--inspect") && err.contains("--auth"), "{err}");
        let with_user = Args { auth: vec![Credentials::parse_pair("u:p").unwrap()], ..args };
        assert!(Settings::load(with_user).unwrap().recording.enabled());
    }
}
