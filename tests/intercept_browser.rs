//! A real browser through `tunnelkit proxy --intercept`: headless Chromium (Debian's `chromium`)
//! with the proxy's CA trusted in a throw-away NSS database loads an HTTPS page from a test origin
//! through the intercepting proxy, then opens the inspector, whose live list must show that flow.
//! A screenshot of the inspector is saved in the test's temp dir (its path is printed).
//!
//! One-shot Chromium runs (`--dump-dom`, `--screenshot`) rather than a DevTools session: each run is
//! a process with a hard time limit, so the test cannot hang on a browser that misbehaves.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::{loopback_proxy, Proc};
use tokio::net::TcpListener;

const PAGE: &str = "<!doctype html><title>origin page</title><h1 id=marker>served over intercepted TLS</h1>";

/// An HTTPS origin for `localhost` (its CA written to `dir/origin-ca.pem`) serving [`PAGE`].
async fn origin(dir: &Path) -> u16 {
    let ca = tunnelkit::ca::Ca::generate().unwrap();
    std::fs::write(dir.join("origin-ca.pem"), ca.cert_pem()).unwrap();
    let cfg = ca.issue("localhost").unwrap().server_config(&[b"http/1.1"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|_req| async {
                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
                    r.headers_mut().insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    port
}

/// Runs certutil (from libnss3-tools) against the NSS database in `home`.
fn certutil(home: &Path, args: &[&str]) {
    let db = format!("sql:{}", home.join(".pki/nssdb").display());
    let out =
        Command::new("certutil").arg("-d").arg(&db).args(args).output().expect("certutil (libnss3-tools)");
    assert!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One headless Chromium run with `home` as HOME (its NSS database), through `proxy` if given,
/// killed after 60 s. Returns stdout.
fn chromium(home: &Path, proxy: Option<&str>, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    if let Some(p) = proxy {
        // Chromium never proxies loopback unless told to.
        cmd.arg(format!("--proxy-server={p}")).arg("--proxy-bypass-list=<-loopback>");
    }
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for k in support::PROXY_VARS {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("chromium is installed (run ./test.sh)");
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_a_page_through_interception_and_the_inspector_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = origin(dir.path()).await;
    let ca_dir = dir.path().join("ca");
    let origin_ca = dir.path().join("origin-ca.pem");
    let args = [
        "--intercept",
        "localhost",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
        "--inspect",
        "127.0.0.1:0",
    ];
    let p: Proc = loopback_proxy(&args);
    let inspector = p.addr_of("inspector");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".pki/nssdb")).unwrap();
    certutil(&home, &["-N", "--empty-password"]);
    let ca_pem: PathBuf = ca_dir.join("ca.pem");
    certutil(&home, &["-A", "-t", "C,,", "-n", "tunnelkit", "-i", ca_pem.to_str().unwrap()]);

    let url = format!("https://localhost:{port}/page");
    let proxy = format!("http://{}", p.addr());
    let dom = chromium(&home, Some(&proxy), &["--virtual-time-budget=3000", "--dump-dom", &url]);
    assert!(dom.contains("served over intercepted TLS"), "the page came through the proxy: {dom}");

    // The inspector (not proxied: it is on loopback) renders its list with JavaScript.
    let page = format!("http://{inspector}/");
    let dom = chromium(&home, None, &["--timeout=4000", "--dump-dom", &page]);
    assert!(dom.contains(&format!("data-url=\"{url}\"")), "the inspector lists the flow: {dom}");
    let shot = dir.path().join("inspector.png");
    chromium(
        &home,
        None,
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,800",
            &format!("--screenshot={}", shot.display()),
            &page,
        ],
    );
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "screenshot written");
    println!("inspector screenshot: {}", shot.display());
    // Keep it for a person to look at when the test is run by hand.
    if let Ok(keep) = std::env::var("TUNNELKIT_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
