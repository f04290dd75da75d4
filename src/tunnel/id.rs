//! Tunnel identity: the [`TunnelId`] names a tunnel, the [`ResumeSecret`] is the capability to reattach to
//! it. Both are 128 bits from the OS random generator and are independent, so knowing (or logging) an id
//! never grants a resume: the seed used one guessable id for both.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

/// Fills 16 bytes from the OS random generator: every tunnel id and secret, native or compat, comes
/// from here.
pub(crate) fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("the OS random generator is available");
    b
}

pub(crate) use crate::policy::constant_time_eq as ct_eq;

/// The name of a tunnel, chosen by the server. Safe to log.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId(pub [u8; 16]);

impl TunnelId {
    /// A fresh random id.
    pub fn random() -> Self {
        TunnelId(random16())
    }

    /// An id as `Display` writes it: 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TunnelId(id))
    }
}

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TunnelId({self})")
    }
}

/// The secret a client must present to resume its tunnel. Never logged: `Debug` hides it.
#[derive(Clone, Copy)]
pub struct ResumeSecret(pub [u8; 16]);

impl ResumeSecret {
    /// A fresh random secret.
    pub fn random() -> Self {
        ResumeSecret(random16())
    }

    /// Whether `presented` is this secret, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        ct_eq(&self.0, presented)
    }
}

impl fmt::Debug for ResumeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_displayed() {
        let id = TunnelId([0xab; 16]);
        assert_eq!(TunnelId::from_hex(&id.to_string()), Some(id));
        assert_eq!(TunnelId::from_hex("ab"), None);
        assert_eq!(TunnelId::from_hex(&"zz".repeat(16)), None);
    }

    #[test]
    fn ids_and_secrets_are_random_and_independent() {
        let (a, b) = (TunnelId::random(), TunnelId::random());
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        let s = ResumeSecret::random();
        assert!(s.matches(&s.0));
        assert!(!s.matches(&a.0));
        assert!(!s.matches(&s.0[..15]));
        assert_eq!(format!("{s:?}"), "ResumeSecret(..)");
    }
}
