//! Stateless sid routing (`--route-by tag`): the balancer hands the client `SID.TAG` instead of the
//! backend's `SID`, where TAG names the backend and is signed with a key every balancer shares
//! (`--route-key`). Any balancer, restarted or not, routes a request from its TAG alone: no store,
//! no Redis. The client never needs to know; the backend never sees the TAG.
//!
//! TAG is 16 bytes in base64url without padding (22 characters, none of which needs escaping in a
//! URL or a JSON string): 6 bytes naming the backend, then 10 bytes of HMAC-SHA256.
//!
//! - The backend is named by a hash of its address as configured (`--backend 10.0.0.5:3000`, ASCII
//!   lowercased), not by its place in the list: balancers that list backends in other orders, or
//!   that have a backend more or less during a rolling change, still agree on every tag, and a tag
//!   stays valid across restarts. Balancers must spell a backend the same way (`localhost:3000` and
//!   `127.0.0.1:3000` are two names). 48 bits make a collision between two configured backends
//!   practically impossible; one is refused at start anyway.
//! - The MAC covers the backend hash and the sid, so a tag cannot be made for another backend or
//!   moved to another sid without the key. Tags are not secret (they reveal nothing but which
//!   backend a session is on), only unforgeable; 80 bits of MAC are far beyond online guessing.
//! - The sid is everything before the last `.`: the backend's sid may contain dots itself.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::{digest, hmac};

use super::backend::BackendId;
use crate::policy::auth::constant_time_eq;

/// Bytes naming the backend in a tag.
const BACKEND_BYTES: usize = 6;

/// Bytes of the truncated HMAC-SHA256 in a tag.
const MAC_BYTES: usize = 10;

/// Characters of a tag (base64url of 16 bytes, no padding).
pub const TAG_CHARS: usize = 22;

/// The shortest key accepted: below 128 bits a key could be guessed offline from observed tags.
pub const MIN_KEY_BYTES: usize = 16;

/// Domain separation: a key reused elsewhere (it should not be) yields unrelated MACs here.
const MAC_CONTEXT: &[u8] = b"tunnelkit-sticky-sid-tag/1\0";

/// The secret shared by every balancer (`--route-key FILE`). Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct RouteKey(Arc<[u8]>);

impl fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteKey({} bytes)", self.0.len())
    }
}

/// Why a key file is unusable; the settings loader words it for the person running the command.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyFileError {
    /// The file could not be read.
    Unreadable(String),
    /// The file is empty.
    Empty,
    /// The file holds fewer than [`MIN_KEY_BYTES`] bytes.
    TooShort(usize),
}

impl RouteKey {
    /// The key in `path`: the file's bytes as they are (a trailing newline is part of the key, so
    /// balancers must be given copies of one file, not retyped keys).
    pub fn load(path: &Path) -> Result<RouteKey, KeyFileError> {
        let bytes = std::fs::read(path).map_err(|e| KeyFileError::Unreadable(e.to_string()))?;
        RouteKey::from_bytes(bytes)
    }

    /// A key from bytes, with the same checks as [`RouteKey::load`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<RouteKey, KeyFileError> {
        match bytes.len() {
            0 => Err(KeyFileError::Empty),
            n if n < MIN_KEY_BYTES => Err(KeyFileError::TooShort(n)),
            _ => Ok(RouteKey(bytes.into())),
        }
    }
}

/// Makes and checks the tags of one balancer: its key and the names of its backends.
pub struct SidTagger {
    key: hmac::Key,
    /// Per configured backend, in list order (so a [`BackendId`] indexes it).
    names: Vec<[u8; BACKEND_BYTES]>,
}

/// Why a tagged sid does not route; every case gets Engine.IO's "Session ID unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untag {
    /// No `.TAG` suffix, or one that is not a tag (wrong length or characters).
    Malformed,
    /// A well-formed tag whose MAC does not match: forged, altered, or made with another key.
    Forged,
    /// A genuine tag for a backend this balancer does not have (the lists differ).
    UnknownBackend,
}

impl SidTagger {
    /// A tagger for `backends` (addresses as configured). Fails, naming both, if two different
    /// addresses hash to the same name.
    pub fn new(key: &RouteKey, backends: &[String]) -> Result<SidTagger, String> {
        let names: Vec<[u8; BACKEND_BYTES]> = backends.iter().map(|a| backend_name(a)).collect();
        for (i, a) in names.iter().enumerate() {
            for (j, b) in names.iter().enumerate().take(i) {
                let same_addr = backends[i].eq_ignore_ascii_case(&backends[j]);
                if a == b && !same_addr {
                    return Err(format!(
                        "backends `{}` and `{}` get the same tag name; rename one (e.g. by IP)",
                        backends[j], backends[i]
                    ));
                }
            }
        }
        Ok(SidTagger { key: hmac::Key::new(hmac::HMAC_SHA256, &key.0), names })
    }

    /// `sid.TAG` for a session of `backend`.
    pub fn encode(&self, sid: &str, backend: BackendId) -> String {
        let name = self.names[backend.index()];
        let mut raw = [0u8; BACKEND_BYTES + MAC_BYTES];
        raw[..BACKEND_BYTES].copy_from_slice(&name);
        raw[BACKEND_BYTES..].copy_from_slice(&self.mac(&name, sid).as_ref()[..MAC_BYTES]);
        let mut out = String::with_capacity(sid.len() + 1 + TAG_CHARS);
        out.push_str(sid);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(raw, &mut out);
        out
    }

    /// The backend's sid and the backend of a tagged sid. Runs on every request of a session: one
    /// HMAC, no allocation.
    pub fn decode<'a>(&self, tagged: &'a str) -> Result<(&'a str, BackendId), Untag> {
        let (sid, tag) = tagged.rsplit_once('.').ok_or(Untag::Malformed)?;
        if tag.len() != TAG_CHARS {
            return Err(Untag::Malformed);
        }
        let mut raw = [0u8; BACKEND_BYTES + MAC_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(tag, &mut raw) {
            Ok(n) if n == raw.len() => {}
            _ => return Err(Untag::Malformed),
        }
        let name: [u8; BACKEND_BYTES] = raw[..BACKEND_BYTES].try_into().expect("fixed size");
        let expected = self.mac(&name, sid);
        if !constant_time_eq(&expected.as_ref()[..MAC_BYTES], &raw[BACKEND_BYTES..]) {
            return Err(Untag::Forged);
        }
        let index = self.names.iter().position(|n| *n == name).ok_or(Untag::UnknownBackend)?;
        Ok((sid, BackendId::at(index)))
    }

    fn mac(&self, name: &[u8; BACKEND_BYTES], sid: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(MAC_CONTEXT);
        // The name has a fixed length, so (name, sid) pairs cannot run into each other.
        ctx.update(name);
        ctx.update(sid.as_bytes());
        ctx.sign()
    }
}

/// The 6-byte name of a backend: a hash of its address as configured, ASCII lowercased (host
/// names are case-insensitive). The same on every balancer and across restarts.
fn backend_name(addr: &str) -> [u8; BACKEND_BYTES] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"tunnelkit-sticky-backend/1\0");
    ctx.update(addr.trim().to_ascii_lowercase().as_bytes());
    ctx.finish().as_ref()[..BACKEND_BYTES].try_into().expect("fixed size")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> RouteKey {
        RouteKey::from_bytes(vec![byte; 32]).unwrap()
    }

    fn backends() -> Vec<String> {
        vec!["10.0.0.1:3000".into(), "10.0.0.2:3000".into(), "app-3.internal:3000".into()]
    }

    #[test]
    fn round_trip() {
        let t = SidTagger::new(&key(7), &backends()).unwrap();
        for (i, sid) in ["lv_VI97HAXpY6yYWAAAC", "a", "ü ✓ {}:1e", "x-y_z"].iter().enumerate() {
            let b = BackendId::at(i % 3);
            let tagged = t.encode(sid, b);
            assert_eq!(tagged.len(), sid.len() + 1 + TAG_CHARS);
            assert!(tagged[sid.len() + 1..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_eq!(t.decode(&tagged), Ok((*sid, b)));
        }
    }

    #[test]
    fn sids_with_dots() {
        let t = SidTagger::new(&key(7), &backends()).unwrap();
        for sid in ["a.b", "uuid.4.x.", ".", "..lead"] {
            let tagged = t.encode(sid, BackendId::at(1));
            assert_eq!(t.decode(&tagged), Ok((sid, BackendId::at(1))), "{sid}");
        }
    }

    #[test]
    fn other_balancers_agree_whatever_their_list_order() {
        let a = SidTagger::new(&key(7), &backends()).unwrap();
        let mut reversed = backends();
        reversed.reverse();
        reversed.push("10.0.0.9:3000".into());
        let b = SidTagger::new(&key(7), &reversed).unwrap();
        let tagged = a.encode("S", BackendId::at(0));
        // Backend 0 of `a` (10.0.0.1) is backend 2 of `b`.
        assert_eq!(b.decode(&tagged), Ok(("S", BackendId::at(2))));
        // Case in a host name does not matter.
        let upper = SidTagger::new(&key(7), &["APP-3.internal:3000".into()]).unwrap();
        assert_eq!(upper.decode(&a.encode("S", BackendId::at(2))), Ok(("S", BackendId::at(0))));
        // A backend the other balancer lacks.
        let few = SidTagger::new(&key(7), &backends()[..1]).unwrap();
        assert_eq!(few.decode(&a.encode("S", BackendId::at(1))), Err(Untag::UnknownBackend));
    }

    #[test]
    fn forged_altered_and_moved_tags() {
        let t = SidTagger::new(&key(7), &backends()).unwrap();
        let tagged = t.encode("S1", BackendId::at(0));
        let tag = &tagged[3..];
        // Every single-character change of the tag is caught.
        for i in 0..TAG_CHARS {
            let mut bytes = tag.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = format!("S1.{}", String::from_utf8(bytes).unwrap());
            assert!(t.decode(&altered).is_err(), "{altered}");
        }
        // A genuine tag moved to another sid.
        assert_eq!(t.decode(&format!("S2.{tag}")), Err(Untag::Forged));
        // Pointing a genuine MAC at another backend.
        let mut raw = URL_SAFE_NO_PAD.decode(tag).unwrap();
        raw[..BACKEND_BYTES].copy_from_slice(&backend_name("10.0.0.2:3000"));
        assert_eq!(t.decode(&format!("S1.{}", URL_SAFE_NO_PAD.encode(raw))), Err(Untag::Forged));
        // Made up from nothing.
        assert_eq!(t.decode(&format!("S1.{}", "A".repeat(TAG_CHARS))), Err(Untag::Forged));
    }

    #[test]
    fn wrong_key() {
        let ours = SidTagger::new(&key(7), &backends()).unwrap();
        let theirs = SidTagger::new(&key(8), &backends()).unwrap();
        assert_eq!(ours.decode(&theirs.encode("S", BackendId::at(0))), Err(Untag::Forged));
    }

    #[test]
    fn truncated_and_malformed() {
        let t = SidTagger::new(&key(7), &backends()).unwrap();
        let tagged = t.encode("S", BackendId::at(0));
        for cut in 1..=TAG_CHARS + 1 {
            assert_eq!(t.decode(&tagged[..tagged.len() - cut]), Err(Untag::Malformed), "cut {cut}");
        }
        assert_eq!(t.decode("plain-sid-without-tag"), Err(Untag::Malformed));
        assert_eq!(t.decode(""), Err(Untag::Malformed));
        assert_eq!(t.decode(&format!("S.{}", "!".repeat(TAG_CHARS))), Err(Untag::Malformed));
        assert_eq!(t.decode(&format!("{tagged}x")), Err(Untag::Malformed));
        // Padding or standard-alphabet characters are not ours.
        assert_eq!(t.decode(&format!("S.{}+", &tagged[2..2 + TAG_CHARS - 1])), Err(Untag::Malformed));
    }

    #[test]
    fn keys_must_be_long_enough() {
        assert_eq!(RouteKey::from_bytes(Vec::new()).unwrap_err(), KeyFileError::Empty);
        assert_eq!(RouteKey::from_bytes(vec![1; 15]).unwrap_err(), KeyFileError::TooShort(15));
        assert!(RouteKey::from_bytes(vec![1; 16]).is_ok());
        assert!(!format!("{:?}", key(0x41)).contains("AAAA"), "Debug hides the key");
        let e = RouteKey::load(Path::new("/nonexistent/route.key")).unwrap_err();
        assert!(matches!(e, KeyFileError::Unreadable(_)));
    }
}
