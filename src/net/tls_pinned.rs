//! [`CertificateRule`]: a rustls verifier for the two places we decide about a server's certificate
//! ourselves instead of by a CA: `proxy --insecure-upstream` (any certificate) and a tunnel cluster's
//! handoffs (exactly our own certificate). Either way the handshake's signature is still checked
//! against the key in the certificate, so the peer holds that key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Which end-entity certificates are accepted.
#[derive(Debug)]
pub enum CertificateRule {
    /// Every certificate.
    Any,
    /// Only this one, byte for byte.
    Exactly(CertificateDer<'static>, &'static str),
}

/// A verifier applying a [`CertificateRule`], signatures checked with `provider`.
#[derive(Debug)]
pub struct RuleVerifier {
    rule: CertificateRule,
    provider: Arc<CryptoProvider>,
}

impl RuleVerifier {
    /// The verifier for `rule`.
    pub fn new(rule: CertificateRule, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(RuleVerifier { rule, provider })
    }
}

impl ServerCertVerifier for RuleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.rule {
            CertificateRule::Any => Ok(ServerCertVerified::assertion()),
            CertificateRule::Exactly(ours, _) if end_entity.as_ref() == ours.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            CertificateRule::Exactly(_, why) => Err(rustls::Error::General((*why).into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
