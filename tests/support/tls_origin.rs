//! An HTTPS origin for tests: rustls with a self-signed rcgen certificate for `localhost`, answering
//! every request with 1 KiB, counting TLS connections.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A TLS acceptor (ring provider) serving `ck`'s certificate.
pub fn acceptor(ck: &rcgen::CertifiedKey<rcgen::KeyPair>) -> tokio_rustls::TlsAcceptor {
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A running HTTPS origin.
pub struct HttpsOrigin {
    pub port: u16,
    /// The certificate, to trust as a CA.
    pub ca_pem: String,
    pub connections: Arc<AtomicUsize>,
}

impl HttpsOrigin {
    /// Starts the origin on an ephemeral loopback port.
    pub async fn start() -> HttpsOrigin {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca_pem = ck.cert.pem();
        let acceptor = acceptor(&ck);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(|_| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(vec![b'x'; 1024]))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HttpsOrigin { port, ca_pem, connections }
    }

    /// TLS connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A TLS acceptor for `localhost` whose certificate comes from a new CA of its own (tunnelkit's
/// `Ca`), that CA written to `ca_path` for the proxy's `--upstream-ca`.
pub fn own_ca_acceptor(ca_path: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    let ca = tunnelkit::ca::Ca::generate().unwrap();
    std::fs::write(ca_path, ca.cert_pem()).unwrap();
    let cfg = ca.issue("localhost").unwrap().server_config(&[b"http/1.1"]).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
