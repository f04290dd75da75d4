//! The `Tunnelkit-Handoff` header: how a cluster server tells the owner of a tunnel that the upgrade
//! it forwards carries a client's `RESUME` for that tunnel, and proves it is a member of the cluster.
//!
//! The value is `v1 UNIX-SECONDS TUNNEL-ID PEER MAC`, the MAC an HMAC-SHA256 under the shared
//! `--cluster-secret` of everything before it. The owner accepts it only within [`WINDOW`] of its own
//! clock. What the header grants is small on purpose: the owner does not hand the connection on again
//! (so a stale registry entry cannot make two servers pass a connection back and forth), takes `PEER`
//! as the client's address in its logs, and insists the `RESUME` names `TUNNEL-ID`. The resume itself
//! is checked as any other: the tunnel's secret, and the token the client presented (forwarded as it
//! was sent).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

use crate::tunnel::id::{ct_eq, TunnelId};

/// The header's name.
pub const HEADER: &str = "tunnelkit-handoff";

/// How far the sender's clock may be from ours.
const WINDOW: Duration = Duration::from_secs(60);

/// What the MAC is computed over starts with this, so no other message of ours can be replayed as one.
const CONTEXT: &[u8] = b"tunnelkit handoff v1\n";

/// Shortest `--cluster-secret` accepted, in bytes: an HMAC key guessable offline is no key.
pub const MIN_SECRET: usize = 16;

/// A forwarded resume, as the header states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The tunnel the connection resumes.
    pub id: TunnelId,
    /// The client's address, as the forwarding server saw it.
    pub peer: String,
}

/// Why a header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// Not of the `v1 …` form.
    #[error("malformed handoff header")]
    Malformed,
    /// Made too long ago, or in the future: a replay, or clocks apart by more than a minute.
    #[error("handoff header outside the {}s window (replayed, or the servers' clocks differ)", WINDOW.as_secs())]
    Stale,
    /// The MAC does not match: another secret, or a forgery.
    #[error("handoff header not signed with this cluster's --cluster-secret")]
    BadMac,
}

/// The cluster's shared key.
pub struct ClusterSecret(hmac::Key);

impl ClusterSecret {
    /// The key for these secret bytes (at least [`MIN_SECRET`], checked by the settings).
    pub fn new(secret: &[u8]) -> Self {
        ClusterSecret(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The header value for `handoff`, made now.
    pub fn seal(&self, handoff: &Handoff) -> String {
        self.seal_at(handoff, unix_now())
    }

    fn seal_at(&self, h: &Handoff, at: u64) -> String {
        let body = format!("v1 {at} {} {}", h.id, h.peer);
        format!("{body} {}", hex(self.mac(&body).as_ref()))
    }

    /// Reads and checks a header value.
    pub fn open(&self, value: &str) -> Result<Handoff, HandoffError> {
        self.open_at(value, unix_now())
    }

    fn open_at(&self, value: &str, now: u64) -> Result<Handoff, HandoffError> {
        let (body, mac) = value.rsplit_once(' ').ok_or(HandoffError::Malformed)?;
        let mut parts = body.split(' ');
        let (Some("v1"), Some(at), Some(id), Some(peer), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HandoffError::Malformed);
        };
        let at: u64 = at.parse().map_err(|_| HandoffError::Malformed)?;
        let id = TunnelId::from_hex(id).ok_or(HandoffError::Malformed)?;
        if mac.len() != 2 * hmac::HMAC_SHA256.digest_algorithm().output_len()
            || !mac.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(HandoffError::Malformed);
        }
        // The MAC first: nothing about an unsigned header, not even its age, is worth telling apart.
        // Compared as hex, in constant time, against the one way a MAC is made here (`mac`).
        if !ct_eq(hex(self.mac(body).as_ref()).as_bytes(), mac.to_ascii_lowercase().as_bytes()) {
            return Err(HandoffError::BadMac);
        }
        if now.abs_diff(at) > WINDOW.as_secs() {
            return Err(HandoffError::Stale);
        }
        Ok(Handoff { id, peer: peer.to_owned() })
    }

    fn mac(&self, body: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CONTEXT);
        ctx.update(body.as_bytes());
        ctx.sign()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff() -> Handoff {
        Handoff { id: TunnelId([7; 16]), peer: "192.0.2.1:4000".into() }
    }

    #[test]
    fn a_sealed_header_opens_with_the_same_secret_only() {
        let a = ClusterSecret::new(b"0123456789abcdef");
        let b = ClusterSecret::new(b"fedcba9876543210");
        let v = a.seal_at(&handoff(), 1000);
        assert_eq!(a.open_at(&v, 1000), Ok(handoff()));
        assert_eq!(a.open_at(&v, 1059), Ok(handoff()));
        assert_eq!(b.open_at(&v, 1000), Err(HandoffError::BadMac));
    }

    #[test]
    fn old_future_and_altered_headers_are_refused() {
        let s = ClusterSecret::new(b"0123456789abcdef");
        let v = s.seal_at(&handoff(), 1000);
        assert_eq!(s.open_at(&v, 1061), Err(HandoffError::Stale));
        assert_eq!(s.open_at(&v, 939), Err(HandoffError::Stale));
        let other_peer = v.replace("192.0.2.1:4000", "192.0.2.9:4000");
        assert_eq!(s.open_at(&other_peer, 1000), Err(HandoffError::BadMac));
        let other_id = v.replacen(&TunnelId([7; 16]).to_string(), &TunnelId([8; 16]).to_string(), 1);
        assert_eq!(s.open_at(&other_id, 1000), Err(HandoffError::BadMac));
        for bad in ["", "v1", "v2 1000 x y z", "v1 1000 nothex 1.2.3.4:5 00", "v1 1000 07 a b c d"] {
            assert_eq!(s.open_at(bad, 1000), Err(HandoffError::Malformed), "{bad:?}");
        }
    }
}
