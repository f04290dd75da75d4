//! Interop: Node's keep-alive proxy agents from npm (`https-proxy-agent`, `socks-proxy-agent`), the
//! clients the seeds were written for, keep their tunnels open through `tunnelkit proxy` across many
//! requests: the proxy logs one tunnel, not one per request.

mod support;

use std::path::Path;
use std::time::Duration;

use support::tls_origin::HttpsOrigin;
use support::{loopback_proxy, run_node_agent};

async fn tunnels_logged(log: &Path, method: &str, want: usize) -> usize {
    let mut n = 0;
    for _ in 0..100 {
        n = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!(" {method} ")))
            .count();
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
    let origin = HttpsOrigin::start().await;
    std::fs::write(dir.path().join("ca.pem"), &origin.ca_pem).unwrap();
    let port = origin.port;
    let log = dir.path().join("access.log");
    let p = loopback_proxy(&["--socks", "127.0.0.1:0", "--access-log", log.to_str().unwrap()]);
    let target = format!("https://localhost:{port}/");
    let ca = dir.path().join("ca.pem");

    let out = run_node_agent("http", &format!("http://{}", p.addr()), &target, 50, &ca).await;
    assert_eq!(out, r#"{"ok":50,"sockets":1}"#);
    assert_eq!(tunnels_logged(&log, "CONNECT", 1).await, 1, "https-proxy-agent: one CONNECT for 50 requests");

    let out = run_node_agent("socks", &format!("socks5h://{}", p.addr_of("socks5")), &target, 50, &ca).await;
    assert_eq!(out, r#"{"ok":50,"sockets":1}"#);
    assert_eq!(tunnels_logged(&log, "SOCKS5", 1).await, 1, "socks-proxy-agent: one tunnel for 50 requests");
    assert_eq!(origin.connection_count(), 2);
}
