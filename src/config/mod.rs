//! The one configuration loader.
//!
//! Every subcommand reads its settings the same way: built-in defaults, then an optional TOML file
//! (`--config FILE`), then command-line flags (which clap also fills from `TUNNELKIT_*` environment
//! variables where a flag declares one). A capability describes its file with a `#[derive(Deserialize)]`
//! struct marked `#[serde(deny_unknown_fields)]` whose fields are all optional, loads it with [`load`],
//! and lets each flag that was given override the file. Errors name the file, the key and the fix.

use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;

mod error;
mod range;

pub use error::ConfigError;
pub use range::{
    check_count, check_duration, count_in, duration_in, flag_and_key, parse_duration, show_size, size_in,
};

/// Reads a TOML file into `T`.
///
/// `T` should use `#[serde(deny_unknown_fields)]` so that a misspelt key is reported instead of
/// silently ignored.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(path, &text)
}

/// Parses TOML text as if it had been read from `path` (which is only used in messages).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// `url` with its password (if any) replaced by `***`, for messages and logs: the user
/// stays, so the reader knows which credentials were used.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Parses a listen address: `HOST:PORT` with an IP address, `localhost:PORT`, or a bare `PORT`
/// (both meaning 127.0.0.1:PORT, which is safe: nothing outside this machine can connect).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let loopback = |port: &str| port.parse::<u16>().ok().map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    if let Some(a) = loopback(s) {
        return Ok(a);
    }
    if let Some(a) = s.strip_prefix("localhost:").and_then(loopback) {
        return Ok(a);
    }
    Err(format!(
        "`{s}` is not a listen address; write IP:PORT (127.0.0.1:3128, 0.0.0.0:3128, [::1]:3128), \
         localhost:PORT, or just PORT for 127.0.0.1:PORT"
    ))
}

/// Checks a file's `log_level` key (the same filters `RUST_LOG` takes), so that a typo stops the
/// server at start, or fails the reload and keeps the filter in force, instead of silencing the log.
pub fn log_level(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) => {
            crate::telemetry::check_log_level(&v).map(Some).map_err(|e| ConfigError::invalid("log_level", e))
        }
        None => Ok(None),
    }
}

/// Deserializes a listen address from the TOML file with [`parse_listen`]'s rules.
pub fn deserialize_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    s.map(|s| parse_listen(&s).map_err(serde::de::Error::custom)).transpose()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        listen: Option<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse::<Example>(Path::new("x.toml"), "listen = \"a\"\nlisten_addr = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("listen_addr"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
    }

    #[test]
    fn durations_parse() {
        let e: Example = parse(Path::new("x.toml"), "timeout = \"1500ms\"").unwrap();
        assert_eq!(e.timeout, Some(Duration::from_millis(1500)));
        assert!(e.listen.is_none());
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("2 parsecs").unwrap_err().contains("500ms"));
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("3128").unwrap(), "127.0.0.1:3128".parse().unwrap());
        assert_eq!(parse_listen("localhost:3128").unwrap(), "127.0.0.1:3128".parse().unwrap());
        assert_eq!(parse_listen("[::1]:3128").unwrap(), "[::1]:3128".parse().unwrap());
        let err = parse_listen(":3128").unwrap_err();
        assert!(err.contains("IP:PORT") && err.contains("0.0.0.0:3128"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_password("rediss://:secret@127.0.0.1:6380/"), "rediss://:***@127.0.0.1:6380/");
        assert_eq!(redact_password("redis://user:pw@h:1/0"), "redis://user:***@h:1/0");
        assert_eq!(redact_password("http://u:p@proxy:3128"), "http://u:***@proxy:3128");
        assert_eq!(redact_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
