//! Interop: Node's keep-alive proxy agents from npm (`https-proxy-agent`, `socks-proxy-agent`), the
//! clients the seeds were written for, keep their tunnels open through `tunnelkit proxy` across many
//! requests: the proxy logs one tunnel, not one per request.

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::Proc;
use tokio::net::TcpListener;

fn node_dir() -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/client");
    assert!(d.join("node_modules/https-proxy-agent").exists(), "npm packages missing in {}: run ./test.sh", d.display());
    d
}

async fn https_origin(dir: &Path) -> (u16, Arc<AtomicUsize>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("ca.pem"), ck.cert.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|_| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(vec![b'x'; 1024]))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    (port, conns)
}

async fn run_agent(kind: &str, proxy: &str, target: &str, count: usize, ca: &Path) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .current_dir(node_dir())
            .args(["agent.js", kind, proxy, target, &count.to_string(), ca.to_str().unwrap()])
            .output(),
    )
    .await
    .expect("node agent finished")
    .expect("node is installed");
    assert!(out.status.success(), "node agent failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn tunnels_logged(log: &Path, method: &str, want: usize) -> usize {
    let mut n = 0;
    for _ in 0..100 {
        n = std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains(&format!(" {method} "))).count();
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keep_alive_agents_reuse_one_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (port, origin_conns) = https_origin(dir.path()).await;
    let log = dir.path().join("access.log");
    let p = Proc::start(
        &[
            "proxy", "--listen", "127.0.0.1:0", "--socks", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--connect-ports", "1-65535",
            "--access-log", log.to_str().unwrap(),
        ],
        2,
    );
    let target = format!("https://localhost:{port}/");
    let ca = dir.path().join("ca.pem");

    let out = run_agent("http", &format!("http://{}", p.addr()), &target, 50, &ca).await;
    assert_eq!(out, r#"{"ok":50,"sockets":1}"#);
    assert_eq!(tunnels_logged(&log, "CONNECT", 1).await, 1, "https-proxy-agent: one CONNECT for 50 requests");

    let out = run_agent("socks", &format!("socks5h://{}", p.addr_of("socks5")), &target, 50, &ca).await;
    assert_eq!(out, r#"{"ok":50,"sockets":1}"#);
    assert_eq!(tunnels_logged(&log, "SOCKS5", 1).await, 1, "socks-proxy-agent: one tunnel for 50 requests");
    assert_eq!(origin_conns.load(Ordering::SeqCst), 2);
}
