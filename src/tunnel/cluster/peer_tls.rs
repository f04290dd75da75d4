//! TLS between the servers of a cluster whose clients use `wss://`: a handed-off connection goes to
//! the holder's TLS listener, like any client's. The holder is trusted when it presents the very
//! certificate this server presents: servers behind one load balancer answer to one name with one
//! certificate, so this needs no CA of its own and no `--insecure` switch, and a stranger listening on
//! a stale `--advertise` address is refused before a byte of the tunnel reaches it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::net::tls_pinned::{CertificateRule, RuleVerifier};

/// Why a holder is refused.
const NOT_OURS: &str =
    "the holder presents another certificate than this server's; the servers of a cluster share their --tls-cert";

/// A client config that trusts only the first certificate of the chain in `cert` (PEM).
pub fn client_config(cert: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let ours = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}: cannot read", cert.display()))?
        .next()
        .with_context(|| format!("--tls-cert {}: no CERTIFICATE block found", cert.display()))?
        .with_context(|| format!("--tls-cert {}: not a PEM certificate", cert.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RuleVerifier::new(CertificateRule::Exactly(ours, NOT_OURS), provider.clone());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}
