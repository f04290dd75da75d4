//! The root certificate authority: [`Ca`], its certificate and private key, how a new one is made
//! (ECDSA P-256, a unique subject, ten years) and read back, and its fingerprint. Leaves it signs are
//! in `leaf`, its files on disk in `store`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;

/// The common name every tunnelkit root starts with; a random suffix follows.
const CN_PREFIX: &str = "tunnelkit CA ";
/// Hex digits of the random suffix (64 bits): two machines never produce the same subject, so a
/// browser that trusts one tunnelkit CA cannot confuse it with another's.
const SUFFIX_LEN: usize = 16;
/// The root lasts ten years: re-trusting a CA on every device is the costly step, not making it.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A root certificate and its private key.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    pub(super) key: KeyPair,
    /// The subject's common name, needed to name this CA as the issuer of leaves.
    pub(super) common_name: String,
}

/// Why a CA could not be made or read back.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused (should not happen with the fixed parameters we use).
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate file is not one of ours or is damaged.
    #[error("{0}")]
    Invalid(String),
}

impl Ca {
    /// Makes a new root: P-256 key, unique subject, ten years, CA:TRUE, keyCertSign and cRLSign.
    pub fn generate() -> Result<Ca, CaError> {
        let suffix: String =
            rand::random::<[u8; SUFFIX_LEN / 2]>().iter().map(|b| format!("{b:02x}")).collect();
        let common_name = format!("{CN_PREFIX}{suffix}");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = issuer_params(&common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A day of slack for clients whose clock is behind.
        let now = SystemTime::now();
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now - Duration::from_secs(86_400));
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now + CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert_pem: cert.pem(), cert_der: cert.der().clone(), key, common_name })
    }

    /// Reads a CA back from its PEM certificate and PEM private key (as [`super::store`] writes them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        use rustls_pki_types::pem::PemObject;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::Invalid(format!("not a PEM certificate: {e}")))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CaError::Invalid(format!("not a usable PEM private key: {e}")))?;
        let common_name = find_common_name(&cert_der).ok_or_else(|| {
            CaError::Invalid(format!(
                "not a tunnelkit CA (no \"{CN_PREFIX}…\" subject); make one with `tunnelkit ca init`"
            ))
        })?;
        Ok(Ca { cert_pem: cert_pem.to_owned(), cert_der, key, common_name })
    }

    /// The certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The subject's common name (`tunnelkit CA 3f9a…`).
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// SHA-256 of the DER certificate as `AB:CD:…`, the form `openssl x509 -fingerprint -sha256`
    /// and browsers' certificate viewers print, so a person can compare them by eye.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }
}

/// SHA-256 of `der`, upper-case hex bytes joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The parameters that identify the CA as an issuer: subject and key usages. The issuer name in
/// a leaf must equal the root's subject byte for byte, so both are built by this one function.
pub(super) fn issuer_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "tunnelkit");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Finds our subject's common name in the DER certificate. rcgen can parse certificates only with
/// its x509-parser feature (a parser stack of several crates); our own subject has a fixed shape,
/// so looking for the prefix and its fixed-length hex suffix is enough and cannot match elsewhere
/// in a certificate we made.
fn find_common_name(der: &[u8]) -> Option<String> {
    let prefix = CN_PREFIX.as_bytes();
    let at = der.windows(prefix.len()).position(|w| w == prefix)?;
    let suffix = der.get(at + prefix.len()..at + prefix.len() + SUFFIX_LEN)?;
    if !suffix.iter().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{CN_PREFIX}{}", std::str::from_utf8(suffix).ok()?))
}

/// Whole seconds since 1970, to add to `rcgen::date_time_ymd(1970, 1, 1)`: rcgen's dates are the
/// `time` crate's, which we reach this way rather than depend on directly.
pub(super) fn since_epoch(t: SystemTime) -> Duration {
    Duration::from_secs(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_reads_back_with_the_same_subject_and_fingerprint() {
        let ca = Ca::generate().unwrap();
        assert!(ca.common_name().starts_with(CN_PREFIX));
        assert_eq!(ca.common_name().len(), CN_PREFIX.len() + SUFFIX_LEN);
        let back = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(back.common_name(), ca.common_name());
        assert_eq!(back.fingerprint(), ca.fingerprint());
        assert_eq!(ca.fingerprint().len(), 32 * 3 - 1);
    }

    #[test]
    fn two_cas_have_different_subjects() {
        assert_ne!(Ca::generate().unwrap().common_name(), Ca::generate().unwrap().common_name());
    }

    #[test]
    fn a_foreign_certificate_is_refused_with_the_command_to_run() {
        let other = rcgen::generate_simple_self_signed(vec!["example.com".into()]).unwrap();
        let err = Ca::from_pem(&other.cert.pem(), &other.signing_key.serialize_pem()).err().unwrap();
        assert!(err.to_string().contains("tunnelkit ca init"), "{err}");
    }
}
