//! The inspector server over real sockets: each route, the event stream, and the auth rules.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::policy::auth::Credentials;
use crate::proxy::inspect::flow::{FlowKind, Header};
use crate::proxy::inspect::RecorderConfig;

struct Running {
    addr: SocketAddr,
    recorder: Recorder,
    drain: Drain,
    server: tokio::task::JoinHandle<()>,
}

async fn start(users: Option<Users>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder::new(RecorderConfig { flows: 10, body_max: 1024, flows_log: None }).unwrap();
    let drain = Drain::new();
    let server = tokio::spawn(serve(listener, recorder.clone(), users.map(Arc::new), drain.clone()));
    Running { addr, recorder, drain, server }
}

fn flow(url: &str) -> Flow {
    let mut f = Flow::new(FlowKind::Intercepted, "127.0.0.1:5000".parse().unwrap(), "GET", url, 1024);
    f.request_headers =
        vec![Header::new("Host", b"a.test"), Header::new("Proxy-Authorization", b"Basic c2VjcmV0")];
    f.status = Some(200);
    f.reason = "OK".into();
    f.response_headers = vec![Header::new("Content-Type", b"text/plain")];
    f.response_body.push(b"hello from the origin");
    f
}

/// An answer: status, head fields (names lowercased) and body.
struct Answer {
    status: u16,
    head: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await.unwrap().unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let head = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, head, body: raw[end + 4..].to_vec() }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, "").await
}

#[tokio::test]
async fn every_route_answers() {
    let s = start(None).await;
    let id = s.recorder.record(flow("https://a.test/one"));

    let page = get(s.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'self'"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(String::from_utf8_lossy(&page.body).contains("page.js"));
    assert_eq!(get(s.addr, "/page.js").await.status, 200);
    assert_eq!(get(s.addr, "/page.css").await.status, 200);

    let flows = get(s.addr, "/api/flows").await;
    assert_eq!(flows.status, 200);
    assert_eq!(flows.header("content-type"), Some("application/json"));
    let list = flows.json();
    assert_eq!(list[0]["id"], id.0);
    assert_eq!(list[0]["url"], "https://a.test/one");
    assert_eq!(list[0]["kind"], "intercepted");
    assert_eq!(list[0]["status"], 200);
    assert_eq!(list[0]["size"], 21);
    for field in ["method", "duration_ms", "started"] {
        assert!(!list[0][field].is_null(), "{field}");
    }

    let detail = get(s.addr, &format!("/api/flows/{}", id.0)).await;
    assert_eq!(detail.status, 200);
    let d = detail.json();
    assert_eq!(d["response"]["body"]["text"], "hello from the origin");
    assert_eq!(d["request"]["headers"][0]["value"], "a.test");

    let har = get(s.addr, "/api/har").await;
    assert_eq!(har.status, 200);
    assert!(har.header("content-disposition").unwrap().starts_with("attachment"));
    assert_eq!(har.json()["log"]["entries"][0]["request"]["url"], "https://a.test/one");

    for body in [&flows.body, &detail.body, &har.body] {
        assert!(!String::from_utf8_lossy(body).contains("c2VjcmV0"), "Proxy-Authorization leaked");
    }
    s.drain.trigger();
    s.server.await.unwrap();
}

#[tokio::test]
async fn unknown_paths_and_ids_are_404_and_other_methods_405() {
    let s = start(None).await;
    assert_eq!(get(s.addr, "/nope").await.status, 404);
    assert_eq!(get(s.addr, "/api/flows/99").await.status, 404);
    assert_eq!(get(s.addr, "/api/flows/abc").await.status, 404);
    let post = request(s.addr, "POST", "/api/flows", "Content-Length: 0\r\n").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
    assert_eq!(request(s.addr, "DELETE", "/api/flows/1", "").await.status, 405);
}

#[tokio::test]
async fn without_users_only_ip_literals_and_localhost_are_answered() {
    let s = start(None).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /api/flows HTTP/1.1\r\nHost: rebound.example:8081\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 403"), "{}", String::from_utf8_lossy(&raw));
    for host in ["localhost:8081", "127.0.0.1", "[::1]:8081", "app.localhost"] {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let req = format!("GET /api/flows HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        assert!(raw.starts_with(b"HTTP/1.1 200"), "{host}: {}", String::from_utf8_lossy(&raw));
    }
}

#[tokio::test]
async fn with_users_every_route_wants_the_proxy_credentials() {
    let mut users = Users::new();
    users.add(Credentials::parse_pair("alice:s3cret").unwrap());
    let s = start(Some(users)).await;
    s.recorder.record(flow("https://a.test/one"));
    let right =
        format!("Authorization: {}\r\n", Credentials::parse_pair("alice:s3cret").unwrap().to_basic_header());
    let wrong =
        format!("Authorization: {}\r\n", Credentials::parse_pair("alice:nope").unwrap().to_basic_header());
    for path in ["/", "/page.js", "/api/flows", "/api/flows/1", "/api/har", "/nope"] {
        for extra in ["", wrong.as_str()] {
            let a = request(s.addr, "GET", path, extra).await;
            assert_eq!(a.status, 401, "{path} {extra:?}");
            assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"tunnelkit inspector\""));
        }
    }
    for path in ["/", "/api/flows", "/api/flows/1", "/api/har"] {
        assert_eq!(request(s.addr, "GET", path, &right).await.status, 200, "{path}");
    }
    assert_eq!(request(s.addr, "GET", "/nope", &right).await.status, 404);
}

/// Reads from `tcp` until `needle` has arrived, returning everything read.
async fn read_until(tcp: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}: {}", String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn the_event_stream_delivers_flows_recorded_after_subscribing_and_ends_at_shutdown() {
    let s = start(None).await;
    s.recorder.record(flow("https://a.test/before"));
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(format!("GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut tcp, &mut seen, ": connected").await;
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(text.contains("content-type: text/event-stream"), "{text}");

    let id = s.recorder.record(flow("https://a.test/after"));
    read_until(&mut tcp, &mut seen, "https://a.test/after").await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains(&format!("event: flow\nid: {}\ndata: {{", id.0)), "{text}");
    assert!(!text.contains("https://a.test/before"), "only flows after subscribing");
    let data = text.lines().find(|l| l.starts_with("data: {")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(summary["id"], id.0);

    // Shutdown ends the stream (the last chunk of a chunked body) and the server.
    s.drain.trigger();
    read_until(&mut tcp, &mut seen, "0\r\n\r\n").await;
    tokio::time::timeout(Duration::from_secs(5), s.server).await.unwrap().unwrap();
    assert_eq!(s.drain.finish(Duration::from_secs(5)).await, 0, "no connection left running");
}

#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let s = start(None).await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(format!("GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        read_until(&mut tcp, &mut seen, ": connected").await;
        held.push(tcp);
    }
    assert_eq!(get(s.addr, "/api/flows").await.status, 503);
    drop(held);
}
