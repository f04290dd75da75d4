//! `tunnelkit proxy --tls-cert --tls-key`: the proxy port served over TLS, to real clients with an
//! `https://` proxy URL (curl, Node's https-proxy-agent) and to a raw TLS client for the upgrade
//! cases. The proxy's certificate is signed by a CA the test makes with rcgen; clients trust only
//! that CA.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use support::origin::Origin;
use support::scripted::{self, Scripted};
use support::tls_origin::HttpsOrigin;
use support::{curl, loopback_proxy, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a proxy certificate it signed (for 127.0.0.1 and localhost), as PEM files in a tempdir.
struct ProxyCert {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl ProxyCert {
    fn new() -> ProxyCert {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "proxy_tls test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("proxy.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("proxy-key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        ProxyCert { dir, ca_pem: ca_cert.pem() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// A loopback proxy serving TLS with this certificate, plus `extra` flags.
    fn proxy(&self, extra: &[&str]) -> Proc {
        let (cert, key) = (self.path_str("proxy.pem"), self.path_str("proxy-key.pem"));
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        loopback_proxy(&args)
    }

    /// A TLS client connection to the proxy, trusting only the test CA.
    async fn connect(&self, proxy: &Proc) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(self.ca_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let cfg =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap()
    }
}

/// Reads from `s` until what arrived ends with `end`, the peer closes, or 10 s pass.
async fn read_until_end<S: tokio::io::AsyncRead + Unpin>(s: &mut S, end: &[u8]) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while !got.ends_with(end) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_plain_http_through_a_tls_proxy() {
    let certs = ProxyCert::new();
    let origin = Origin::start().await;
    let p = certs.proxy(&[]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let ca = certs.path_str("ca.pem");
    let (ok, body, err) = curl(&["--proxy", &proxy, "--proxy-cacert", &ca, &origin.url("/1k")]).await;
    assert!(ok, "{err}");
    assert_eq!(body.len(), 1024);
}

/// The CA from `tunnelkit ca init`, a proxy certificate from the library's `Ca::issue`: the setup
/// docs/ca.md describes, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_certificate_issued_by_the_ca_from_ca_init_is_trusted_by_curl() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let (status, err) = support::run_to_exit(
        &["ca", "init", "--dir", ca_dir.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    )
    .await;
    assert!(status.is_some_and(|s| s.success()), "{err}");
    let ca = tunnelkit::ca::store::load(&ca_dir).unwrap().expect("ca init wrote a CA");
    let leaf = ca.issue("127.0.0.1").unwrap();
    let (cert, key) = (dir.path().join("proxy.pem"), dir.path().join("proxy-key.pem"));
    std::fs::write(&cert, leaf.cert_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    let origin = Origin::start().await;
    let p = loopback_proxy(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let ca_pem = ca_dir.join("ca.pem");
    let (ok, body, err) =
        curl(&["--proxy", &proxy, "--proxy-cacert", ca_pem.to_str().unwrap(), &origin.url("/1k")]).await;
    assert!(ok, "{err}");
    assert_eq!(body.len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_an_https_origin_via_connect_inside_the_tls_proxy() {
    let certs = ProxyCert::new();
    let origin = HttpsOrigin::start().await;
    std::fs::write(certs.path("origin.pem"), &origin.ca_pem).unwrap();
    let p = certs.proxy(&[]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let (ca, origin_ca) = (certs.path_str("ca.pem"), certs.path_str("origin.pem"));
    let url = format!("https://localhost:{}/", origin.port);
    let (ok, body, err) =
        curl(&["--proxy", &proxy, "--proxy-cacert", &ca, "--cacert", &origin_ca, &url]).await;
    assert!(ok, "{err}");
    assert_eq!(body.len(), 1024);
    assert_eq!(origin.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_proxy_is_refused_and_the_proxy_keeps_serving() {
    let certs = ProxyCert::new();
    let origin = Origin::start().await;
    let p = certs.proxy(&["--metrics", "127.0.0.1:0"]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    // No --proxy-cacert: curl's system roots do not include the test CA.
    let (ok, _, _) = curl(&["--proxy", &proxy, &origin.url("/1k")]).await;
    assert!(!ok, "curl must refuse an untrusted proxy certificate");
    // Plain HTTP sent to the TLS port: a failed handshake, not an answer and not a crash.
    let plain =
        support::raw(p.addr(), format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/1k")).as_bytes())
            .await;
    assert!(!plain.contains("HTTP/1.1 200"), "{plain}");
    let ca = certs.path_str("ca.pem");
    let (ok, body, err) = curl(&["--proxy", &proxy, "--proxy-cacert", &ca, &origin.url("/1k")]).await;
    assert!(ok && body.len() == 1024, "{err}");
    assert_eq!(origin.connection_count(), 1, "refused clients never reached the origin");
    // Both failed handshakes are counted (the server may notice curl's alert a moment after curl
    // exits, so poll briefly).
    let metrics = format!("http://{}/metrics", p.addr_of("metrics"));
    let mut line = String::new();
    for _ in 0..50 {
        let (_, m, _) = curl(&[&metrics]).await;
        let m = String::from_utf8_lossy(&m).into_owned();
        line = m.lines().find(|l| l.contains("kind=\"tls_handshake\"")).unwrap_or_default().to_owned();
        if line.ends_with(" 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(line.ends_with(" 2"), "tls_handshake errors: {line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_starts_the_handshake_is_closed_at_the_header_timeout() {
    let certs = ProxyCert::new();
    let p = certs.proxy(&["--header-timeout", "300ms"]);
    let started = std::time::Instant::now();
    // `raw` sends nothing here and reads until the proxy closes (or gives up after 10 s).
    let got = support::raw(p.addr(), b"").await;
    assert!(got.is_empty(), "{got}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    let origin = Origin::start().await;
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let ca = certs.path_str("ca.pem");
    let (ok, _, err) = curl(&["--proxy", &proxy, "--proxy-cacert", &ca, &origin.url("/1k")]).await;
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_works_through_the_tls_proxy() {
    let certs = ProxyCert::new();
    let origin = Origin::start().await;
    let p = certs.proxy(&[]);
    let mut tls = certs.connect(&p).await;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\nping",
        origin.url("/ws"),
        origin.addr
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    // The origin answers 101, says "hi", and echoes the bytes sent behind the upgrade request.
    let text = read_until_end(&mut tls, b"\r\n\r\nhiping").await;
    assert!(text.starts_with("HTTP/1.1 101") && text.ends_with("\r\n\r\nhiping"), "{text}");
}

/// The seed's failure case: the origin refuses a WebSocket upgrade with a 502 HTML page. Through
/// the TLS-served proxy the client gets that page, and the proxy neither crashes nor logs an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_websocket_upgrade_reaches_the_tls_client_as_the_origins_502() {
    const PAGE: &str = "<html><body><h1>502 Bad Gateway</h1><p>upstream is down</p></body></html>";
    let origin = Scripted::start(|_| {
        vec![scripted::write(&format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{PAGE}",
            PAGE.len()
        ))]
    })
    .await;
    let certs = ProxyCert::new();
    let p = certs.proxy(&[]);
    for _ in 0..2 {
        let mut tls = certs.connect(&p).await;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            origin.url("/ws"),
            origin.addr
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let text = read_until_end(&mut tls, PAGE.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        assert!(text.contains("text/html") && text.ends_with(PAGE), "{text}");
    }
    let mut p = p;
    assert!(p.child.try_wait().unwrap().is_none(), "the proxy is still running");
    let log = p.stderr.lock().unwrap().clone();
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_https_proxy_agent_keeps_one_tunnel_through_an_https_proxy() {
    let certs = ProxyCert::new();
    let origin = HttpsOrigin::start().await;
    // agent.js takes one CA file for both the proxy and the origin: give it both certificates.
    let both = certs.path("both.pem");
    std::fs::write(&both, format!("{}{}", certs.ca_pem, origin.ca_pem)).unwrap();
    let p = certs.proxy(&[]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let target = format!("https://localhost:{}/", origin.port);
    let out = support::run_node_agent("http", &proxy, &target, 20, &both).await;
    assert_eq!(out, r#"{"ok":20,"sockets":1}"#);
    assert_eq!(origin.connection_count(), 1);
}

#[test]
fn tls_flags_come_in_pairs() {
    let out = std::process::Command::new(support::bin())
        .args(["proxy", "--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--tls-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_http_proxy_agent_sends_absolute_form_requests_through_an_https_proxy() {
    let certs = ProxyCert::new();
    let origin = Origin::start().await;
    let p = certs.proxy(&[]);
    let proxy = format!("https://127.0.0.1:{}", p.addr().port());
    let out = support::run_node_agent("plain", &proxy, &origin.url("/1k"), 20, &certs.path("ca.pem")).await;
    assert_eq!(out, r#"{"ok":20,"sockets":1}"#, "20 requests on one kept-alive TLS connection to the proxy");
}
