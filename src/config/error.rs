//! [`ConfigError`]: every configuration problem, phrased for the person running the command (the file,
//! the key or flag, and how to fix it). Its own file because both the loader and the range checks
//! (`range`) produce it.

use std::path::{Path, PathBuf};

/// A configuration problem, phrased for the person running the command.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value parsed but makes no sense (for example an empty backend list).
    #[error("invalid setting `{key}`: {message}")]
    Invalid {
        /// The setting, as spelled in the file or as the flag name.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A value that came from the file makes no sense (out of range, not a CIDR, ...): as
    /// [`ConfigError::Invalid`], and the file it is in.
    #[error("config file {path}: invalid setting `{key}`: {message}")]
    InvalidInFile {
        /// The file named by `--config`.
        path: PathBuf,
        /// The setting, as spelled in the file (and as the flag, where the check names both).
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    /// A setting whose value is unusable: `key` is the file key or flag, `message` says how to fix it.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// The same problem, found in a value read from the file at `path`, so the message names the file.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Invalid { key, message } => {
                ConfigError::InvalidInFile { path: path.to_owned(), key, message }
            }
            other => other,
        }
    }
}
