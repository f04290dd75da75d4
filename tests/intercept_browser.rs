//! A real browser through `tunnelkit proxy --intercept`: headless Chromium (Debian's `chromium`)
//! with the proxy's CA trusted in a throw-away NSS database loads an HTTPS page from a test origin
//! through the intercepting proxy, then opens the inspector, whose live list must show that flow.
//! A screenshot of the inspector is saved in the test's temp dir (its path is printed).
//!
//! Driven over WebDriver (Debian's `chromium-driver`): the inspector keeps an event stream open,
//! which one-shot `--dump-dom` runs wait on forever, while WebDriver can poll the DOM for the row.
//! Every command is bounded by curl's time limit, so a browser that misbehaves fails, never hangs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::Proc;
use tokio::net::TcpListener;

const PAGE: &str = "<!doctype html><title>origin page</title><h1 id=marker>served over intercepted TLS</h1>";

/// An HTTPS origin for `localhost` (its CA written to `dir/origin-ca.pem`) serving [`PAGE`].
async fn origin(dir: &Path) -> u16 {
    let acceptor = support::tls_origin::own_ca_acceptor(&dir.join("origin-ca.pem"));
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

/// chromedriver on a loopback port with `home` as HOME (so Chromium reads that NSS database),
/// killed on drop.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(home: &Path) -> Driver {
        let port = support::reserve_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}")).env("HOME", home).stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
        for k in support::PROXY_VARS {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().expect("chromedriver is installed (chromium-driver; run ./test.sh)");
        let driver = Driver { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chromedriver did not listen on {port}");
    }

    /// One WebDriver command (bounded by curl's 20 s); returns the answer's `value`.
    async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut args = vec!["-X", method, "-H", "Content-Type: application/json", "--noproxy", "*"];
        let data = body.map(|b| b.to_string());
        if let Some(d) = &data {
            args.extend_from_slice(&["-d", d]);
        }
        args.push(&url);
        let (ok, out, err) = support::curl(&args).await;
        assert!(ok, "WebDriver {method} {path}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["value"].clone()
    }
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
    // Chromium's own background requests (Google hosts on ports 80 and 443) must not make the proxy
    // resolve names off this machine: only the origin's port may be CONNECTed to, and absolute-form
    // requests only reach unprivileged ports (the inspector's). Ports are checked before any lookup.
    let origin_port = port.to_string();
    let mut all = vec![
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--allow",
        "127.0.0.0/8",
        "--connect-ports",
        &origin_port,
        "--http-ports",
        "1024-65535",
    ];
    all.extend_from_slice(&args);
    let p = Proc::start(&all, 2);
    let inspector = p.addr_of("inspector");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".pki/nssdb")).unwrap();
    certutil(&home, &["-N", "--empty-password"]);
    let ca_pem: PathBuf = ca_dir.join("ca.pem");
    certutil(&home, &["-A", "-t", "C,,", "-n", "tunnelkit", "-i", ca_pem.to_str().unwrap()]);

    let url = format!("https://localhost:{port}/page");
    let proxy = format!("http://{}", p.addr());
    let driver = Driver::start(&home);
    let profile = tempfile::tempdir().unwrap();
    let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "binary": "/usr/bin/chromium",
    "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,800",
        format!("--user-data-dir={}", profile.path().display()),
        // Chromium never proxies loopback unless told to: the page and the inspector both go
        // through the proxy.
        format!("--proxy-server={proxy}"), "--proxy-bypass-list=<-loopback>",
    ]}}}});
    let session = driver.call("POST", "/session", Some(caps)).await;
    let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_owned();
    driver.call("POST", &format!("/session/{id}/url"), Some(serde_json::json!({ "url": url }))).await;
    let source = driver.call("GET", &format!("/session/{id}/source"), None).await;
    assert!(
        source.as_str().unwrap().contains("served over intercepted TLS"),
        "the page came through: {source}"
    );

    driver
        .call(
            "POST",
            &format!("/session/{id}/url"),
            Some(serde_json::json!({ "url": format!("http://{inspector}/") })),
        )
        .await;
    let selector = format!("tr.flow[data-url=\"{url}\"]");
    let mut found = false;
    for _ in 0..100 {
        let rows = driver
            .call(
                "POST",
                &format!("/session/{id}/elements"),
                Some(serde_json::json!({"using": "css selector", "value": selector})),
            )
            .await;
        if rows.as_array().is_some_and(|r| !r.is_empty()) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = driver.call("GET", &format!("/session/{id}/source"), None).await;
    assert!(found, "the inspector lists the intercepted flow: {source}");
    let png = driver.call("GET", &format!("/session/{id}/screenshot"), None).await;
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    let shot = dir.path().join("inspector.png");
    std::fs::write(&shot, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("inspector screenshot: {}", shot.display());
    if let Ok(keep) = std::env::var("TUNNELKIT_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    driver.call("DELETE", &format!("/session/{id}"), None).await;
}
