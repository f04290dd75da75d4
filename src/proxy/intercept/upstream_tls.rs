//! The proxy's own TLS connection to an intercepted origin: verified against the web PKI roots plus
//! `--upstream-ca`, or not at all with `--insecure-upstream` (said loudly at start-up). A failure
//! is kept as words that name the reason and the flag that fixes it, for the 502 page the client
//! then gets: an untrusted upstream is never accepted silently.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::ServerName;

use crate::net::tls_pinned::{CertificateRule, RuleVerifier};
use crate::net::{tls_words, BoxStream, Host};

/// How to open TLS to origins.
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
}

impl UpstreamTls {
    /// Trusts the web PKI roots plus the certificates of `extra_ca` (PEM), or anything when
    /// `insecure`. Offers HTTP/1.1 only, as the engine speaks it.
    pub fn new(extra_ca: Option<&Path>, insecure: bool) -> anyhow::Result<UpstreamTls> {
        let mut cfg = if insecure {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(RuleVerifier::new(CertificateRule::Any, provider))
                .with_no_client_auth()
        } else {
            let pem = match extra_ca {
                Some(p) => {
                    std::fs::read(p).with_context(|| format!("--upstream-ca {}: cannot read", p.display()))?
                }
                None => Vec::new(),
            };
            crate::net::tls::tls_config(&[&pem]).with_context(|| match extra_ca {
                Some(p) => format!("--upstream-ca {}", p.display()),
                None => "web PKI roots".to_owned(),
            })?
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls { connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)) })
    }

    /// Opens TLS over `stream` to `host`, sending `sni` (the client's own SNI when it sent one, so
    /// the origin sees the name the client asked for). Fails with words for the 502 page.
    pub async fn connect(
        &self,
        host: &Host,
        sni: Option<&str>,
        stream: BoxStream,
        limit: Duration,
    ) -> Result<BoxStream, String> {
        let name = match sni {
            Some(s) => ServerName::try_from(s.to_owned()).map_err(|e| format!("server name {s:?}: {e}"))?,
            None => crate::net::tls::server_name(host).map_err(|e| format!("server name {host}: {e}"))?,
        };
        let shown = sni.map(str::to_owned).unwrap_or_else(|| host.to_string());
        match tokio::time::timeout(limit, self.connector.connect(name, stream)).await {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(e)) => Err(format!(
                "upstream {shown}: {}",
                tls_words::explain(
                    &e.to_string(),
                    "give the CA that issued it with --upstream-ca PEM, or skip verification with \
                     --insecure-upstream (not recommended)"
                )
            )),
            Err(_) => Err(format!("upstream {shown}: no TLS handshake within {limit:?} (--dial-timeout)")),
        }
    }
}
