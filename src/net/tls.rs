//! TLS configs (ring provider, the only one we enable): the server side from PEM files, with errors
//! that name the file and what is wrong with it, and the client side (web PKI roots plus extra CA
//! bundles) with the server name to verify, for every TLS connection we open (to an HTTPS proxy, a
//! `wss://` tunnel server, an origin).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Host;

/// A TLS server config from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}: cannot read", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("--tls-cert {}: no CERTIFICATE block found", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: no usable PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert/--tls-key: the key does not match the certificate")
}

/// The TLS server name to verify for `host` (an IP address or a DNS name).
pub fn server_name(host: &Host) -> anyhow::Result<rustls_pki_types::ServerName<'static>> {
    Ok(match host {
        Host::Ip(ip) => rustls_pki_types::ServerName::IpAddress((*ip).into()),
        Host::Domain(d) => rustls_pki_types::ServerName::try_from(d.clone())?,
    })
}

/// A rustls client config trusting the web PKI roots plus `extra` PEM bundles (ring provider).
pub fn tls_config(extra: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra {
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pem) {
            let cert: rustls_pki_types::CertificateDer<'static> =
                cert.map_err(|e| anyhow::anyhow!("invalid PEM certificate: {e}"))?;
            roots.add(cert).map_err(|e| anyhow::anyhow!("unusable CA certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
