//! Load client for `bench/intercept/run.sh`: HTTPS GETs through an intercepting proxy (CONNECT,
//! then TLS trusting the proxy's CA, then keep-alive HTTP/1.1 requests), or through no proxy at all.
//!
//! - `rate PROXY|direct CA TARGET SNI CONNS SECS PATH`: CONNS connections, each sending GETs one after
//!   another for SECS; prints `rps`.
//! - `newhost PROXY CA TARGET COUNT PATH`: COUNT connections, each with an SNI never seen before, then
//!   COUNT with one warm SNI; prints the median time to the first response byte of each, in ms.
//!
//! Not a test. Timing lives here, never in pass/fail tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

fn connector(ca: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("CA file");
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.expect("PEM")).expect("CA");
    }
    let mut cfg =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// TCP to the proxy (or the target when `proxy` is `direct`), CONNECT, then TLS with `sni`.
async fn open(tls: &tokio_rustls::TlsConnector, proxy: &str, target: &str, sni: &str) -> Tls {
    let mut tcp = TcpStream::connect(if proxy == "direct" { target } else { proxy }).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    if proxy != "direct" {
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "proxy closed during CONNECT");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
            "{:?}",
            String::from_utf8_lossy(&head)
        );
    }
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tls.connect(name, tcp).await.expect("TLS through the proxy")
}

/// Sends one GET and reads its answer (Content-Length framed); returns the time to its first byte.
async fn get(s: &mut Tls, host: &str, path: &str, buf: &mut Vec<u8>) -> Duration {
    let started = Instant::now();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    buf.clear();
    let mut first = None;
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed mid-response");
        first.get_or_insert_with(|| started.elapsed());
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = resp.parse(buf) {
            assert_eq!(resp.code, Some(200), "{}", String::from_utf8_lossy(buf));
            let cl: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .expect("content-length");
            if buf.len() >= len + cl {
                return first.unwrap();
            }
        }
    }
}

/// A new connection through the proxy with `sni`, and one GET on it: ms to its first byte.
async fn ttfb(
    tls: &tokio_rustls::TlsConnector,
    proxy: &str,
    target: &str,
    sni: &str,
    path: &str,
    buf: &mut Vec<u8>,
) -> f64 {
    let started = Instant::now();
    let mut s = open(tls, proxy, target, sni).await;
    get(&mut s, sni, path, buf).await;
    started.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("rate") => {
            let (proxy, ca, target, sni) = (a[2].clone(), a[3].clone(), a[4].clone(), a[5].clone());
            let conns: usize = a[6].parse().unwrap();
            let secs: u64 = a[7].parse().unwrap();
            let path = a[8].clone();
            let tls = connector(&ca);
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let (tls, proxy, target, sni, path, done) =
                    (tls.clone(), proxy.clone(), target.clone(), sni.clone(), path.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let mut s = open(&tls, &proxy, &target, &sni).await;
                    let mut buf = Vec::with_capacity(4096);
                    while Instant::now() < deadline {
                        get(&mut s, &sni, &path, &mut buf).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            println!("{:.0}", done.load(Ordering::Relaxed) as f64 / secs as f64);
        }
        Some("newhost") => {
            let (proxy, ca, target) = (a[2].clone(), a[3].clone(), a[4].clone());
            let count: usize = a[5].parse().unwrap();
            let path = a[6].clone();
            let tls = connector(&ca);
            let run: u32 = rand::random();
            let mut buf = Vec::new();
            ttfb(&tls, &proxy, &target, "warm.bench.test", &path, &mut buf).await;
            let mut fresh = Vec::new();
            let mut warm = Vec::new();
            // Interleaved, so drift in the machine's load hits both alike.
            for i in 0..count {
                let sni = format!("h{i}-{run:08x}.bench.test");
                fresh.push(ttfb(&tls, &proxy, &target, &sni, &path, &mut buf).await);
                warm.push(ttfb(&tls, &proxy, &target, "warm.bench.test", &path, &mut buf).await);
            }
            println!("{:.3} {:.3}", median(fresh), median(warm));
        }
        _ => {
            eprintln!("usage: bench_intercept rate|newhost ...");
            std::process::exit(2);
        }
    }
}
