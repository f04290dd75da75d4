//! Proxy authentication: Basic credentials from `--auth USER:PASS` flags or a users file.
//!
//! Passwords are compared in constant time, and every configured user is compared on each attempt
//! so the time taken does not reveal which user names exist.

use std::path::Path;

use base64::Engine;

use crate::config::ConfigError;

/// A user name and password presented by a client.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses `USER:PASS` (the password may contain colons).
    pub fn parse_pair(s: &str) -> Result<Credentials, String> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials { user: u.to_owned(), password: p.to_owned() }),
            _ => Err(format!("`{}` is not USER:PASS", s.split(':').next().unwrap_or(""))),
        }
    }

    /// Decodes a `Proxy-Authorization`/`Authorization` value of the form `Basic base64(user:pass)`.
    pub fn from_basic_header(value: &[u8]) -> Option<Credentials> {
        let value = std::str::from_utf8(value).ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        Credentials::parse_pair(&text).ok()
    }

    /// Encodes as a `Basic ...` header value.
    pub fn to_basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// The set of users a server accepts. Empty means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Users {
    entries: Vec<Credentials>,
}

impl Users {
    /// No users: authentication off.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no user is configured (authentication is off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds one user.
    pub fn add(&mut self, c: Credentials) {
        self.entries.retain(|e| e.user != c.user);
        self.entries.push(c);
    }

    /// Reads a users file: one `user:password` per line; blank lines and `#` comments ignored.
    pub fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                "users",
                format!("cannot read users file {}: {e}; give a file of user:password lines", path.display()),
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let c = Credentials::parse_pair(line).map_err(|e| {
                let where_ = format!("users file {} line {}", path.display(), n + 1);
                ConfigError::invalid("users", format!("{where_}: {e}; each line must be user:password"))
            })?;
            self.add(c);
        }
        Ok(())
    }

    /// Checks presented credentials in constant time with respect to the configured secrets.
    pub fn verify(&self, presented: &Credentials) -> bool {
        self.authenticate(presented).is_some()
    }

    /// The user the credentials are valid for, found in constant time with respect to the
    /// configured secrets (every entry is compared).
    pub fn authenticate(&self, presented: &Credentials) -> Option<&str> {
        let mut found = None;
        for e in &self.entries {
            let user = constant_time_eq(e.user.as_bytes(), presented.user.as_bytes());
            let pass = constant_time_eq(e.password.as_bytes(), presented.password.as_bytes());
            if user & pass {
                found = Some(e.user.as_str());
            }
        }
        found
    }

    /// Checks a raw `Proxy-Authorization` header value (None when the header is absent).
    pub fn verify_header(&self, value: Option<&[u8]>) -> bool {
        self.user_of_header(value).is_some()
    }

    /// The user a raw `Proxy-Authorization` header value authenticates, if any.
    pub fn user_of_header(&self, value: Option<&[u8]>) -> Option<String> {
        let presented = value.and_then(Credentials::from_basic_header)?;
        self.authenticate(&presented).map(str::to_owned)
    }

    /// The configured user names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.user.as_str())
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret enough to hide (it leaks through the header size anyway), but the
    // contents are: fold every byte into the result.
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_roundtrip_and_verify() {
        let mut users = Users::new();
        users.add(Credentials::parse_pair("alice:s3:cret").unwrap());
        let hdr = Credentials::parse_pair("alice:s3:cret").unwrap().to_basic_header();
        assert!(users.verify_header(Some(hdr.as_bytes())));
        assert!(users.verify_header(Some(b"basic YWxpY2U6czM6Y3JldA==")));
        assert!(!users.verify_header(Some(b"Basic YWxpY2U6d3Jvbmc=")));
        assert!(!users.verify_header(Some(b"Bearer abc")));
        assert!(!users.verify_header(None));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"abc", b"abc"));
    }

    #[test]
    fn users_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "# comment\n\nbob:pw\n").unwrap();
        let mut u = Users::new();
        u.load_file(&p).unwrap();
        assert!(u.verify(&Credentials::parse_pair("bob:pw").unwrap()));
        std::fs::write(&p, "bob\n").unwrap();
        let err = Users::new().load_file(&p).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = Users::new().load_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert_eq!(err.matches("users file").count(), 1, "{err}");
        assert!(!err.contains("config file"), "{err}");
    }
}
