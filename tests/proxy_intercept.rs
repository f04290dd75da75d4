//! `tunnelkit proxy --intercept`: HTTPS interception with real clients. The origin serves TLS with a
//! certificate from a CA of its own (passed to the proxy as `--upstream-ca`); the client (curl, or
//! a raw TLS client for WebSockets) trusts only the proxy's CA, made by `--intercept` in a tempdir.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::{curl, loopback_proxy, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTPS origin for `localhost`: `/hello` (a body and an `X-Origin` header), `/echo` (the
/// request body back, with the request's headers as `X-Seen-*`), anything else 404.
struct TlsOrigin {
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsOrigin {
    async fn start() -> TlsOrigin {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = support::tls_origin::own_ca_acceptor(&dir.path().join("origin-ca.pem"));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc =
                        hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                            let path = req.uri().path().to_owned();
                            let seen = req.headers().get("x-client").cloned();
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let mut resp = match path.as_str() {
                                "/hello" => hyper::Response::new(Full::new(Bytes::from_static(
                                    b"hello from the origin",
                                ))),
                                "/echo" => hyper::Response::new(Full::new(body)),
                                _ => {
                                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"no")));
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            resp.headers_mut().insert("x-origin", "yes".parse().unwrap());
                            if let Some(v) = seen {
                                resp.headers_mut().insert("x-seen-client", v);
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsOrigin { port, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("origin-ca.pem")
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

/// An intercepting proxy whose CA lives in a tempdir of its own.
struct Interceptor {
    proc: Proc,
    ca_dir: tempfile::TempDir,
}

impl Interceptor {
    fn start(extra: &[&str]) -> Interceptor {
        let ca_dir = tempfile::tempdir().unwrap();
        let dir = ca_dir.path().join("ca");
        let mut args = vec!["--ca-dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        Interceptor { proc: loopback_proxy(&args), ca_dir }
    }

    fn ca(&self) -> PathBuf {
        self.ca_dir.path().join("ca/ca.pem")
    }

    fn proxy(&self) -> String {
        format!("http://{}", self.proc.addr())
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn curl_through_intercept_gets_the_origin_answer_under_the_proxy_ca() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let p = Interceptor::start(&["--intercept", "--upstream-ca", s(&ca)]);
    assert!(p.proc.stderr.lock().unwrap().contains("no CA in"), "the new CA is announced");
    let (ok, out, err) = curl(&[
        "-i",
        "-v",
        "--proxy",
        &p.proxy(),
        "--cacert",
        s(&p.ca()),
        "-H",
        "X-Client: curl",
        &origin.url("/hello"),
    ])
    .await;
    assert!(ok, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("hello from the origin"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-seen-client: curl"),
        "request headers reach the origin: {out}"
    );
    assert!(out.to_ascii_lowercase().contains("via: 1.1 tunnelkit"), "the response carries Via: {out}");
    assert!(err.contains("tunnelkit CA"), "the certificate curl saw is the proxy's: {err}");
}

#[tokio::test]
async fn bodies_both_ways_and_keep_alive_inside_the_intercepted_connection() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let p = Interceptor::start(&["--intercept", "localhost", "--upstream-ca", s(&ca)]);
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("up"), &big).unwrap();
    let up = format!("@{}", dir.path().join("up").display());
    // Two requests on one curl: the second reuses the client connection (and the origin's).
    let (ok, out, err) = curl(&[
        "--proxy",
        &p.proxy(),
        "--cacert",
        s(&p.ca()),
        "--data-binary",
        &up,
        &origin.url("/echo"),
        "--next",
        "--proxy",
        &p.proxy(),
        "--cacert",
        s(&p.ca()),
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &up,
        &origin.url("/echo"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.len(), 2 * big.len());
    assert!(out[..big.len()] == big[..] && out[big.len()..] == big[..], "bodies intact");
}

#[tokio::test]
async fn an_untrusted_origin_certificate_is_a_502_that_names_it() {
    let origin = TlsOrigin::start().await;
    let p = Interceptor::start(&["--intercept"]);
    let (_, out, _) =
        curl(&["-i", "--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("HTTP/1.1 200 Connection established"), "{out}");
    assert!(out.contains("HTTP/1.1 502"), "{out}");
    assert!(out.contains("not signed by a CA") && out.contains("--upstream-ca"), "{out}");
    assert!(out.contains("tls_certificate_error"), "Proxy-Status names the error: {out}");
}

#[tokio::test]
async fn insecure_upstream_accepts_the_origin_without_its_ca() {
    let origin = TlsOrigin::start().await;
    let p = Interceptor::start(&["--intercept", "--insecure-upstream"]);
    assert!(p.proc.stderr.lock().unwrap().contains("--insecure-upstream"), "said loudly");
    let (ok, out, err) = curl(&["--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
    assert!(ok, "{err}");
    assert_eq!(out, b"hello from the origin");
}

#[tokio::test]
async fn hosts_outside_the_scope_are_tunnelled_untouched() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    for flags in [
        vec!["--intercept", "--no-intercept", "localhost", "--upstream-ca", s(&ca)],
        vec!["--intercept", "*.example.com", "--upstream-ca", s(&ca)],
    ] {
        let p = Interceptor::start(&flags);
        // The client sees the origin's own certificate: its CA works, the proxy's does not.
        let (ok, out, err) = curl(&["--proxy", &p.proxy(), "--cacert", s(&ca), &origin.url("/hello")]).await;
        assert!(ok && out == b"hello from the origin", "{flags:?}: {err}");
        let (ok, _, _) = curl(&["--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
        assert!(!ok, "{flags:?}: not intercepted, so the proxy's CA cannot vouch for the origin");
    }
}

#[tokio::test]
async fn auth_and_policy_still_apply_before_interception() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let p = Interceptor::start(&["--intercept", "--upstream-ca", s(&ca), "--auth", "u:p"]);
    let (ok, _, err) =
        curl(&["-v", "--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
    assert!(!ok && err.contains("407"), "{err}");
    let (ok, out, err) =
        curl(&["--proxy", &p.proxy(), "--proxy-user", "u:p", "--cacert", s(&p.ca()), &origin.url("/hello")])
            .await;
    assert!(ok && out == b"hello from the origin", "{err}");
    // Without --allow for loopback the destination is refused before any interception.
    let ca_dir = tempfile::tempdir().unwrap();
    let strict = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--intercept",
            "--ca-dir",
            s(&ca_dir.path().join("ca")),
            "--connect-ports",
            "1-65535",
        ],
        1,
    );
    let (ok, _, err) = curl(&[
        "-v",
        "--proxy",
        &format!("http://{}", strict.addr()),
        "--cacert",
        s(&ca_dir.path().join("ca/ca.pem")),
        &origin.url("/hello"),
    ])
    .await;
    assert!(!ok && err.contains("403"), "{err}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_and_the_proxy_carries_on() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let p = Interceptor::start(&["--intercept", "--upstream-ca", s(&ca)]);
    let (ok, _, err) = curl(&["--proxy", &p.proxy(), &origin.url("/hello")]).await;
    assert!(!ok, "curl without the proxy CA must refuse: {err}");
    // Something that is not TLS at all inside the CONNECT.
    let mut tcp = tokio::net::TcpStream::connect(p.proc.addr()).await.unwrap();
    let connect = format!("CONNECT localhost:{} HTTP/1.1\r\nHost: localhost\r\n\r\n", origin.port);
    tcp.write_all(connect.as_bytes()).await.unwrap();
    let head = support::read_head(&mut tcp).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let (ok, out, err) = curl(&["--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
    assert!(ok && out == b"hello from the origin", "{err}");
}

/// Reads the JSON lines of a flows log, waiting (bounded) until `n` are there.
async fn flows_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} flows in {}: {:?}", path.display(), std::fs::read_to_string(path));
}

#[tokio::test]
async fn the_flows_log_has_one_line_per_flow_with_headers_and_bodies() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let plain = support::origin::Origin::start().await;
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("flows.jsonl");
    let p = Interceptor::start(&[
        "--intercept",
        "localhost",
        "--upstream-ca",
        s(&ca),
        "--flows-log",
        s(&log),
        "--auth",
        "u:secret",
    ]);
    let (ok, _, err) = curl(&[
        "--proxy",
        &p.proxy(),
        "--proxy-user",
        "u:secret",
        "--cacert",
        s(&p.ca()),
        "--data-binary",
        "ping",
        &origin.url("/echo"),
    ])
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = curl(&["--proxy", &p.proxy(), "--proxy-user", "u:secret", &plain.url("/x")]).await;
    assert!(ok, "{err}");
    // Not intercepted (127.0.0.1 is outside the scope): a tunnelled flow.
    let (ok, _, err) = curl(&[
        "--proxy",
        &p.proxy(),
        "--proxy-user",
        "u:secret",
        "--cacert",
        s(&ca),
        "--resolve",
        &format!("other.test:{}:127.0.0.1", origin.port),
        "-k",
        &format!("https://127.0.0.1:{}/hello", origin.port),
    ])
    .await;
    assert!(ok, "{err}");
    let lines = flows_lines(&log, 3).await;
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["intercepted", "plain", "tunnelled"], "{lines:#?}");
    let i = &lines[0];
    assert_eq!(i["method"], "POST");
    assert_eq!(i["url"], origin.url("/echo"));
    assert_eq!(i["status"], 200);
    let text = serde_json::to_string(i).unwrap();
    assert!(text.contains("ping"), "bodies recorded: {text}");
    let all = serde_json::to_string(&lines).unwrap();
    assert!(!all.contains("secret") && !all.contains("dTpzZWNyZXQ"), "no proxy credentials in flows: {all}");
    assert_eq!(lines[2]["method"], "CONNECT");
}

/// A `wss://` echo origin for `localhost` with a CA of its own (returned as a PEM file path).
async fn wss_echo_origin(dir: &Path) -> (u16, PathBuf) {
    let ca_path = dir.join("ws-origin-ca.pem");
    let acceptor = support::tls_origin::own_ca_acceptor(&ca_path);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use futures_util::{SinkExt, StreamExt};
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    (port, ca_path)
}

#[tokio::test]
async fn websockets_inside_intercepted_tls_work_and_their_messages_are_recorded() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let (port, origin_ca) = wss_echo_origin(dir.path()).await;
    let log = dir.path().join("flows.jsonl");
    let p = Interceptor::start(&["--intercept", "--upstream-ca", s(&origin_ca), "--flows-log", s(&log)]);
    let mut tcp = tokio::net::TcpStream::connect(p.proc.addr()).await.unwrap();
    tcp.write_all(format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = support::read_head(&mut tcp).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(p.ca()).unwrap();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("wss://localhost:{port}/chat"), tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    let big = "x".repeat(100_000);
    for text in ["hello", big.as_str()] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), [1, 2, 3]);
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    let lines = flows_lines(&log, 1).await;
    let flow = &lines[0];
    assert_eq!(flow["status"], 101, "{flow:#}");
    assert_eq!(flow["kind"], "intercepted");
    let msgs = flow["websocket"].as_array().unwrap_or_else(|| panic!("messages recorded: {flow:#}"));
    let summary: Vec<(String, String)> = msgs
        .iter()
        .map(|m| (m["direction"].as_str().unwrap().to_owned(), m["opcode"].as_str().unwrap().to_owned()))
        .collect();
    let want = [
        ("up", "text"),
        ("down", "text"),
        ("up", "text"),
        ("down", "text"),
        ("up", "binary"),
        ("down", "binary"),
    ];
    for (i, (d, o)) in want.iter().enumerate() {
        assert_eq!((summary[i].0.as_str(), summary[i].1.as_str()), (*d, *o), "{summary:?}");
    }
    assert!(serde_json::to_string(&msgs[0]).unwrap().contains("hello"), "{:#}", msgs[0]);
}

#[tokio::test]
async fn chained_through_a_parent_with_metrics_and_access_log() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let dir = tempfile::tempdir().unwrap();
    let parent_log = dir.path().join("parent.log");
    let own_log = dir.path().join("own.log");
    let parent = loopback_proxy(&["--access-log", s(&parent_log)]);
    let parent_url = format!("http://{}", parent.addr());
    let p = Interceptor::start(&[
        "--intercept",
        "--upstream-ca",
        s(&ca),
        "--upstream",
        &parent_url,
        "--metrics",
        "127.0.0.1:0",
        "--access-log",
        s(&own_log),
    ]);
    for _ in 0..2 {
        let (ok, out, err) =
            curl(&["--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url("/hello")]).await;
        assert!(ok && out == b"hello from the origin", "{err}");
    }
    let metrics = p.proc.addr_of("metrics");
    let (_, m, _) = curl(&[&format!("http://{metrics}/metrics")]).await;
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("tunnelkit_proxy_intercepted_requests_total{method=\"GET\",status=\"200\"} 2"), "{m}");
    assert!(m.contains("tunnelkit_proxy_tunnels_total{kind=\"intercept\"} 2"), "{m}");
    // The parent saw the proxy's own CONNECTs to the origin (TLS went through it), not plain
    // requests; its tunnels end, and are logged, when this proxy stops.
    let mut p = p;
    p.proc.terminate();
    assert!(p.proc.wait_exit(std::time::Duration::from_secs(10)).is_some());
    let mut parent_lines = String::new();
    for _ in 0..100 {
        parent_lines = std::fs::read_to_string(&parent_log).unwrap_or_default();
        if parent_lines.contains("CONNECT") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(parent_lines.contains(&format!("CONNECT localhost:{}", origin.port)), "{parent_lines}");
    let own = std::fs::read_to_string(&own_log).unwrap();
    assert!(own.contains(&format!("GET {}", origin.url("/hello"))), "the access log names the URL: {own}");
}

/// Checks the HAR 1.2 structure a viewer needs: log.version and creator, and per entry the request,
/// response, cache and timings objects with their required fields.
fn assert_har_1_2(har: &serde_json::Value) {
    let log = &har["log"];
    assert_eq!(log["version"], "1.2", "{har:#}");
    assert!(log["creator"]["name"].is_string() && log["creator"]["version"].is_string());
    for e in log["entries"].as_array().expect("entries") {
        assert!(e["startedDateTime"].is_string() && e["time"].is_number(), "{e:#}");
        let req = &e["request"];
        for k in ["method", "url", "httpVersion"] {
            assert!(req[k].is_string(), "request.{k}: {e:#}");
        }
        for k in ["headers", "queryString", "cookies"] {
            assert!(req[k].is_array(), "request.{k}: {e:#}");
        }
        assert!(req["headersSize"].is_number() && req["bodySize"].is_number());
        let resp = &e["response"];
        assert!(
            resp["status"].is_number() && resp["statusText"].is_string() && resp["httpVersion"].is_string()
        );
        assert!(resp["headers"].is_array() && resp["cookies"].is_array() && resp["redirectURL"].is_string());
        assert!(resp["content"]["size"].is_number() && resp["content"]["mimeType"].is_string(), "{e:#}");
        assert!(e["cache"].is_object());
        for k in ["send", "wait", "receive"] {
            assert!(e["timings"][k].as_f64().is_some_and(|t| t >= 0.0), "timings.{k}: {e:#}");
        }
    }
}

#[tokio::test]
async fn har_on_shutdown_holds_the_intercepted_flows() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    let dir = tempfile::tempdir().unwrap();
    let har_path = dir.path().join("flows.har");
    let mut p = Interceptor::start(&["--intercept", "--upstream-ca", s(&ca), "--har", s(&har_path)]);
    for path in ["/hello", "/missing"] {
        let (ok, _, err) = curl(&["--proxy", &p.proxy(), "--cacert", s(&p.ca()), &origin.url(path)]).await;
        assert!(ok, "{err}");
    }
    p.proc.terminate();
    assert!(p.proc.wait_exit(std::time::Duration::from_secs(10)).is_some_and(|s| s.success()));
    let har: serde_json::Value = serde_json::from_slice(&std::fs::read(&har_path).unwrap()).unwrap();
    assert_har_1_2(&har);
    let entries = har["log"]["entries"].as_array().unwrap();
    let urls: Vec<&str> = entries.iter().map(|e| e["request"]["url"].as_str().unwrap()).collect();
    assert_eq!(urls, [origin.url("/hello"), origin.url("/missing")]);
    assert_eq!(entries[0]["response"]["status"], 200);
    assert_eq!(entries[1]["response"]["status"], 404);
    assert_eq!(entries[0]["response"]["content"]["text"], "hello from the origin");
}

#[tokio::test]
async fn ip_literal_hosts_get_a_certificate_with_an_ip_san() {
    let origin = TlsOrigin::start().await;
    // The origin's certificate is for localhost only, so the proxy must not verify it here.
    let p = Interceptor::start(&["--intercept", "--insecure-upstream"]);
    let url = format!("https://127.0.0.1:{}/hello", origin.port);
    let (ok, out, err) = curl(&["-v", "--proxy", &p.proxy(), "--cacert", s(&p.ca()), &url]).await;
    assert!(ok && out == b"hello from the origin", "curl verified an IP SAN for 127.0.0.1: {err}");
    assert!(err.contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn interception_works_behind_the_tls_served_proxy_port() {
    let origin = TlsOrigin::start().await;
    let ca = origin.ca();
    // The proxy port's own certificate, from a CA of its own.
    let dir = tempfile::tempdir().unwrap();
    let port_ca = tunnelkit::ca::Ca::generate().unwrap();
    let leaf = port_ca.issue("127.0.0.1").unwrap();
    let (cert, key, port_ca_pem) =
        (dir.path().join("proxy.pem"), dir.path().join("proxy-key.pem"), dir.path().join("port-ca.pem"));
    std::fs::write(&cert, leaf.cert_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    std::fs::write(&port_ca_pem, port_ca.cert_pem()).unwrap();
    let p = Interceptor::start(&[
        "--intercept",
        "--upstream-ca",
        s(&ca),
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
    ]);
    let proxy = format!("https://127.0.0.1:{}", p.proc.addr().port());
    let (ok, out, err) = curl(&[
        "--proxy",
        &proxy,
        "--proxy-cacert",
        s(&port_ca_pem),
        "--cacert",
        s(&p.ca()),
        &origin.url("/hello"),
    ])
    .await;
    assert!(ok && out == b"hello from the origin", "TLS to the proxy, then intercepted TLS inside it: {err}");
}
