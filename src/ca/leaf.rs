//! A certificate for one host, signed by the [`Ca`]: what the proxy presents when it intercepts
//! HTTPS to that host, and what a test can use to serve TLS that a client trusting only the CA
//! accepts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::root::{issuer_params, since_epoch, Ca, CaError};

/// Browsers refuse server certificates valid longer than 398 days (Apple since 2020, then
/// Chrome); 397 leaves a day for clock skew. The day of slack before now counts within it.
const LEAF_VALIDITY: Duration = Duration::from_secs(397 * 86_400);
const SKEW: Duration = Duration::from_secs(86_400);

/// A leaf certificate with its private key.
pub struct Leaf {
    /// The certificate (DER), signed by the CA.
    pub cert: CertificateDer<'static>,
    /// Its private key (PKCS#8 DER).
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Ca {
    /// Issues a certificate for `host` (a DNS name, or an IP literal, bracketed or not): ECDSA P-256,
    /// a random serial, at most 397 days, serverAuth, with the host as both subject CN and SAN.
    pub fn issue(&self, host: &str) -> Result<Leaf, CaError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // SANs are what clients check; the CN is there too because some browsers long refused
        // CN-less leaves (hudsucker #39). `new` makes an IP literal an IP SAN, anything else DNS.
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])
            .map_err(|e| CaError::Invalid(format!("cannot make a certificate for {host:?}: {e}")))?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now - SKEW);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now - SKEW + LEAF_VALIDITY);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::new(issuer_params(&self.common_name), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Leaf { cert: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()) })
    }
}

impl Leaf {
    /// The certificate in PEM, as `--tls-cert` reads it.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The private key in PEM (PKCS#8), as `--tls-key` reads it.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.secret_pkcs8_der())
    }

    /// A TLS server config (ring provider) presenting this leaf, offering `alpn` protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }
}

/// A PEM block (RFC 7468): base64 in 64-column lines between BEGIN and END lines.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Firefox refuses a second certificate with the same issuer and serial
/// (`SEC_ERROR_REUSED_ISSUER_AND_SERIAL`), so serials are random, never a counter that restarts
/// with the process. 16 bytes; the top bit is cleared so the DER integer stays positive and the
/// next one set so it stays 16 bytes long (126 random bits).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that trusts only `ca` completes a handshake with a server presenting `leaf` for
    /// `name`, in-process over a duplex pipe; returns the client's error if it refuses.
    async fn handshake(ca: &Ca, leaf: &Leaf, name: &str) -> Result<(), String> {
        let server = tokio_rustls::TlsAcceptor::from(Arc::new(leaf.server_config(&[b"http/1.1"]).unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
        let (a, b) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(async move {
            let mut tls = server.accept(b).await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            tls.write_all(&buf).await.ok()?;
            tls.shutdown().await.ok()
        });
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = client.connect(name, a).await.map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        serve.await.unwrap();
        Ok(())
    }

    #[tokio::test]
    async fn a_leaf_for_a_dns_name_chains_to_the_ca() {
        let ca = Ca::generate().unwrap();
        let leaf = ca.issue("example.test").unwrap();
        handshake(&ca, &leaf, "example.test").await.unwrap();
    }

    #[tokio::test]
    async fn a_leaf_for_an_ip_literal_has_an_ip_san() {
        let ca = Ca::generate().unwrap();
        handshake(&ca, &ca.issue("127.0.0.1").unwrap(), "127.0.0.1").await.unwrap();
        handshake(&ca, &ca.issue("[::1]").unwrap(), "::1").await.unwrap();
    }

    #[tokio::test]
    async fn a_ca_read_back_from_pem_still_signs_trusted_leaves() {
        let ca = Ca::generate().unwrap();
        let back = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        handshake(&ca, &back.issue("localhost").unwrap(), "localhost").await.unwrap();
    }

    #[tokio::test]
    async fn a_leaf_is_refused_for_another_name_and_by_another_ca() {
        let ca = Ca::generate().unwrap();
        let leaf = ca.issue("example.test").unwrap();
        let err = handshake(&ca, &leaf, "other.test").await.unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
        let stranger = Ca::generate().unwrap();
        let err = handshake(&stranger, &leaf, "example.test").await.unwrap_err();
        assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
    }

    #[test]
    fn pem_output_reads_back_as_the_same_der() {
        use rustls_pki_types::pem::PemObject;
        let leaf = Ca::generate().unwrap().issue("localhost").unwrap();
        assert_eq!(CertificateDer::from_pem_slice(leaf.cert_pem().as_bytes()).unwrap(), leaf.cert);
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem().as_bytes()).unwrap();
        assert_eq!(key.secret_der(), leaf.key.secret_pkcs8_der());
    }

    #[test]
    fn serials_are_random_and_positive() {
        let (a, b) = (random_serial().to_bytes(), random_serial().to_bytes());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0);
    }
}
