//! `ws-server`'s cluster settings (`--cluster-redis`, `--advertise`, `--cluster-secret` or
//! `--cluster-secret-file`), each also a key of its TOML file, resolved and checked together: one
//! without the others is a configuration error that says which is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::handoff::MIN_SECRET;
use crate::config::{flag_and_key, ConfigError};
use crate::net::redis::url::RedisUrl;
use crate::net::Target;

/// The cluster keys as the file has them and the flags as given (a flag wins).
#[derive(Debug, Default, Clone)]
pub struct ClusterValues {
    /// `--cluster-redis` / `cluster_redis`.
    pub redis: Option<String>,
    /// `--advertise` / `advertise`.
    pub advertise: Option<String>,
    /// `--cluster-secret` / `cluster_secret`.
    pub secret: Option<String>,
    /// `--cluster-secret-file` / `cluster_secret_file`.
    pub secret_file: Option<PathBuf>,
}

/// A server's cluster membership, resolved.
#[derive(Clone)]
pub struct ClusterSettings {
    /// The registry's Redis URL.
    pub redis: String,
    /// The address other servers reach this one on; `None`: the listener's own address, known
    /// once bound (a concrete one: checked here).
    pub advertise: Option<String>,
    /// The handoff key.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and error dumps.
        f.debug_struct("ClusterSettings")
            .field("redis", &self.redis)
            .field("advertise", &self.advertise)
            .finish()
    }
}

/// Resolves the values; `listen` is the server's listener, `other` names a setting the cluster
/// cannot go with (`compat`), if set.
pub fn resolve(
    v: ClusterValues,
    listen: SocketAddr,
    other: Option<&str>,
    file: &Path,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let invalid = |key: &str, msg: String| {
        let e = ConfigError::invalid(flag_and_key(key), msg);
        if file.as_os_str().is_empty() {
            e
        } else {
            e.in_file(file)
        }
    };
    let Some(redis) = v.redis else {
        for (set, key) in [
            (v.advertise.is_some(), "advertise"),
            (v.secret.is_some() || v.secret_file.is_some(), "cluster_secret"),
        ] {
            if set {
                return Err(invalid(
                    key,
                    "it only applies with --cluster-redis URL (key cluster_redis)".into(),
                ));
            }
        }
        return Ok(None);
    };
    if let Some(other) = other {
        return Err(invalid(
            "cluster_redis",
            format!("a cluster does not work with {other}; drop one of them"),
        ));
    }
    RedisUrl::parse(&redis).map_err(|e| invalid("cluster_redis", e))?;
    if let Some(a) = &v.advertise {
        a.parse::<Target>().map_err(|e| {
            invalid("advertise", format!("`{a}`: {e}; write the HOST:PORT other servers reach this one on"))
        })?;
    } else if listen.ip().is_unspecified() {
        return Err(invalid(
            "advertise",
            format!("--listen {listen} is not an address other servers can dial; give --advertise HOST:PORT"),
        ));
    }
    let secret = match (v.secret, v.secret_file) {
        (Some(s), None) => s.into_bytes(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid("cluster_secret_file", format!("cannot read {}: {e}", path.display()))
            })?;
            text.trim_end_matches(['\r', '\n']).as_bytes().to_vec()
        }
        (Some(_), Some(_)) => {
            return Err(invalid("cluster_secret", "give --cluster-secret or --cluster-secret-file, not both".into()))
        }
        (None, None) => {
            return Err(invalid(
                "cluster_secret",
                "--cluster-redis needs the secret all servers of the cluster share: give --cluster-secret-file FILE \
                 (or --cluster-secret, or TUNNELKIT_CLUSTER_SECRET)"
                    .into(),
            ))
        }
    };
    if secret.is_empty() {
        return Err(invalid(
            "cluster_secret",
            "it is empty; use at least 16 random bytes (openssl rand -hex 32)".into(),
        ));
    }
    // A short secret still signs, and a cluster on a private network may choose one; it is said loudly
    // rather than refused, so that a test setup with a word for a secret runs.
    if secret.len() < MIN_SECRET {
        tracing::warn!(
            "--cluster-secret is {} bytes: anyone who guesses it can hand this cluster's servers connections              that look forwarded; use at least {MIN_SECRET} random bytes (openssl rand -hex 32)",
            secret.len()
        );
    }
    Ok(Some(ClusterSettings { redis, advertise: v.advertise, secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(redis: Option<&str>, advertise: Option<&str>, secret: Option<&str>) -> ClusterValues {
        ClusterValues {
            redis: redis.map(Into::into),
            advertise: advertise.map(Into::into),
            secret: secret.map(Into::into),
            secret_file: None,
        }
    }

    fn err(v: ClusterValues, listen: &str, other: Option<&str>) -> String {
        resolve(v, listen.parse().unwrap(), other, Path::new("")).unwrap_err().to_string()
    }

    #[test]
    fn every_missing_or_bad_piece_is_named() {
        let r = Some("redis://127.0.0.1:6379");
        let s = Some("0123456789abcdef");
        assert!(err(values(None, Some("h:1"), None), "127.0.0.1:1", None).contains("config key advertise"));
        assert!(err(values(None, None, s), "127.0.0.1:1", None).contains("config key cluster_secret"));
        assert!(err(values(r, None, None), "127.0.0.1:1", None).contains("--cluster-secret-file"));
        assert!(err(values(r, None, Some("")), "127.0.0.1:1", None).contains("at least 16"));
        assert!(
            err(values(Some("http://x"), None, s), "127.0.0.1:1", None).contains("config key cluster_redis")
        );
        assert!(err(values(r, None, s), "0.0.0.0:8080", None).contains("--advertise"));
        assert!(err(values(r, Some("nope"), s), "127.0.0.1:1", None).contains("config key advertise"));
        assert!(err(values(r, None, s), "127.0.0.1:1", Some("--compat")).contains("--compat"));
    }

    #[test]
    fn a_loopback_listener_advertises_itself_and_nothing_else_is_needed() {
        let v = values(Some("redis://127.0.0.1:6379"), None, Some("0123456789abcdef"));
        let got = resolve(v, "127.0.0.1:0".parse().unwrap(), None, Path::new("")).unwrap().unwrap();
        assert_eq!(got.advertise, None);
        assert_eq!(got.secret, b"0123456789abcdef");
        assert!(resolve(ClusterValues::default(), "0.0.0.0:1".parse().unwrap(), None, Path::new(""))
            .unwrap()
            .is_none());
    }
}
