//! `tunnelkit::client::Client`: persistent pooled CONNECT tunnels, proven by counting what the proxy
//! and the origin see. The proxy is the real `tunnelkit proxy`; the origin is an in-test HTTPS server
//! with a certificate made by rcgen.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use support::tls_origin::HttpsOrigin;
use support::{loopback_proxy, Proc};
use tokio::net::TcpListener;
use tunnelkit::client::Client;

fn connect_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.contains(" CONNECT ")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_https_requests_use_one_connect_and_idle_close_is_seen() {
    let origin = HttpsOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let p = loopback_proxy(&["--access-log", log.to_str().unwrap()]);
    let client = Client::builder()
        .proxy(format!("http://{}", p.addr()))
        .idle_timeout(Duration::from_millis(700))
        .add_root_pem(origin.ca_pem.as_bytes())
        .build()
        .unwrap();
    let uri: hyper::Uri = format!("https://localhost:{}/", origin.port).parse().unwrap();
    for _ in 0..200 {
        let resp = client.get(uri.clone()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1024);
    }
    assert_eq!(origin.connection_count(), 1, "one TLS connection to the origin");
    // The proxy logs a tunnel when it ends; the pool closes it after the idle timeout.
    assert_eq!(connect_lines(&log), 0, "tunnel closed too early");
    let mut seen = 0;
    for _ in 0..100 {
        seen = connect_lines(&log);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1, "exactly one CONNECT for 200 requests, closed after the idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_killed_by_the_proxy_causes_no_error() {
    let origin = HttpsOrigin::start().await;
    let p = loopback_proxy(&["--tunnel-idle-timeout", "300ms"]);
    let client = Client::builder()
        .proxy(format!("http://{}", p.addr()))
        .idle_timeout(Duration::from_secs(60))
        .add_root_pem(origin.ca_pem.as_bytes())
        .build()
        .unwrap();
    let uri: hyper::Uri = format!("https://localhost:{}/", origin.port).parse().unwrap();
    for _ in 0..3 {
        let resp = client.get(uri.clone()).await.expect("request after the proxy closed the pooled tunnel");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert_eq!(origin.connection_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_the_proxy_and_errors() {
    let origin = support::origin::Origin::start().await;
    let p = Proc::start(&["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--auth", "u:p"], 1);
    let client = Client::builder().proxy(format!("http://u:p@{}", p.addr())).build().unwrap();
    for _ in 0..5 {
        let resp = client.get(origin.url("/1k").parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes().len(), 1024);
    }
    // A proxy that accepts but never answers CONNECT: the request fails (bounded), it does not hang.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let client = Client::builder()
        .proxy(format!("http://{silent_addr}"))
        .connect_answer_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r =
        tokio::time::timeout(Duration::from_secs(10), client.get("https://localhost:1/".parse().unwrap()))
            .await;
    assert!(matches!(r, Ok(Err(_))), "must fail within the CONNECT timeout");
}
