//! `tunnelkit ws-server --compat ws-stream-tunnel` against the seed's own npm client (ws-stream-tunnel
//! 0.4.29 under node, scripts in tests/node/tunnel-seed/) and against a raw WebSocket client that checks
//! the wire format byte for byte. Every stream is connected to a TCP echo origin on loopback.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::Proc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP echo origin: echoes until EOF, then closes its side.
async fn echo_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Starts `ws-server --compat ws-stream-tunnel` on an ephemeral port with `extra` flags.
fn compat_server(extra: &[&str]) -> Proc {
    let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--compat", "ws-stream-tunnel"];
    args.extend_from_slice(extra);
    Proc::start(&args, 1)
}

/// A server whose streams reach `echo` (loopback is denied unless allowed).
fn echo_server(echo: SocketAddr, extra: &[&str]) -> Proc {
    let target = echo.to_string();
    let mut args = vec!["--compat-target", &target, "--allow", "127.0.0.0/8", "--connect-ports", "1-65535"];
    args.extend_from_slice(extra);
    compat_server(&args)
}

fn node_dir() -> PathBuf {
    support::node_dir("tunnel-seed", "ws-stream-tunnel")
}

/// Runs a node script; returns its exit code and the JSON it printed last.
async fn node(script: &str, args: &[String]) -> (i32, Value) {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .current_dir(node_dir())
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node script finished in time")
    .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v = serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "node {script}: no JSON result; stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// A compat WebSocket to `url` presenting `token`.
async fn tunnel_as(
    url: String,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("upgrade").0
}

fn url(server: &Proc) -> String {
    format!("ws://{}/tunnel", server.addr())
}

// ---- the seed's own client ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_client_substream_20_concurrent_streams_echo() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &[]);
    let args = [url(&server), "subStream".into(), "20".into(), (256 << 10).to_string()];
    let (code, v) = node("echo.js", &args).await;
    assert_eq!((code, &v["ok"]), (0, &json!(20)), "{v}\nserver log:\n{}", server.stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_client_stream_mode_echo() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &[]);
    let args = [url(&server), "stream".into(), "1".into(), (1 << 20).to_string()];
    let (code, v) = node("echo.js", &args).await;
    assert_eq!((code, &v["ok"]), (0, &json!(1)), "{v}\nserver log:\n{}", server.stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_client_passes_the_bearer_token_through_its_ws_options() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--token", "T0k"]);
    let with = [url(&server), "subStream".into(), "2".into(), "10000".into(), "T0k".into()];
    let (code, v) = node("echo.js", &with).await;
    assert_eq!((code, &v["ok"]), (0, &json!(2)), "{v}");
    let without = [url(&server), "subStream".into(), "1".into(), "10".into()];
    let (code, v) = node("echo.js", &without).await;
    assert_eq!(code, 2, "{v}");
    assert!(v["connectError"].as_str().unwrap().contains("401"), "{v}");
    let wrong = [url(&server), "subStream".into(), "1".into(), "10".into(), "nope".into()];
    let (code, v) = node("echo.js", &wrong).await;
    assert!(code == 2 && v["connectError"].as_str().unwrap().contains("401"), "{v}");
}

/// The seed's resume: the WebSocket's TCP connection is cut while the stream is idle; the client
/// reconnects (after its fixed 3 s), sends `use`, and the stream carries on: bytes written while broken
/// and after the resume both arrive. The hold the client asked for is capped by the server and echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_client_resumes_a_tunnel_after_an_idle_drop() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--max-keep-broken", "20s"]);
    let (code, v) = node("resume.js", &[url(&server), "60000".into()]).await;
    assert_eq!(code, 0, "{v}\nserver log:\n{}", server.stderr.lock().unwrap());
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["resumed"], json!(true), "{v}");
    assert_eq!(v["keepBrokenTunnel"], json!(20000), "{v}");
    assert_eq!(v["tunnelIdChanged"], json!(false), "{v}");
}

// ---- raw protocol checks ----

async fn connect(server: &Proc) -> Ws {
    tokio_tungstenite::connect_async(url(server)).await.expect("WebSocket upgrade").0
}

/// The next data message (pings skipped), within 10 s; `None` if the connection ended.
async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

async fn text(ws: &mut Ws, s: &str) -> Value {
    ws.send(Message::text(s)).await.unwrap();
    match next(ws).await {
        Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text answer to {s}, got {other:?}"),
    }
}

async fn send_bin(ws: &mut Ws, b: &[u8]) {
    ws.send(Message::binary(b.to_vec())).await.unwrap();
}

async fn recv_bin(ws: &mut Ws) -> Vec<u8> {
    match next(ws).await {
        Some(Message::Binary(b)) => b.to_vec(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn seed_error(code: u16, msg: &str) -> Value {
    json!({"_": "error", "code": code, "msg": msg})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_get_the_seeds_answers_and_error_codes() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--max-keep-broken", "1s"]);
    let mut ws = connect(&server).await;
    assert_eq!(text(&mut ws, "{not json").await, seed_error(4007, "Cannot parse the data"));
    assert_eq!(text(&mut ws, "null").await, seed_error(4005, "Wrong configuration msg"));
    assert_eq!(text(&mut ws, r#"{"_":"what"}"#).await, seed_error(4005, "Wrong configuration msg"));
    // A client may not build a tunnel with an id of its choosing (the seed would, from `created`).
    assert_eq!(
        text(&mut ws, r#"{"_":"created","mode":"subStream","tunnelID":"x"}"#).await,
        seed_error(4005, "Wrong configuration msg")
    );
    send_bin(&mut ws, &[0x22, 0x00, 0x01]).await;
    assert_eq!(
        serde_json::from_str::<Value>(next(&mut ws).await.unwrap().to_text().unwrap()).unwrap(),
        seed_error(4006, "Binary data received without a tunnel")
    );
    assert_eq!(
        text(&mut ws, r#"{"_":"create","mode":"udp"}"#).await,
        seed_error(4002, "Not allowed tunnel mode")
    );
    assert_eq!(
        text(&mut ws, r#"{"_":"use","tunnelID":"nope"}"#).await,
        seed_error(4004, "Tunnel of id not exsts")
    );

    // create: the fields the seed client reads are echoed with our id (never the client's) and the hold
    // capped at 1 s; other fields are not reflected.
    let created = text(
        &mut ws,
        r#"{"_":"create","mode":"subStream","keepBrokenTunnel":60000,"tunnelID":"mine","extra":[1]}"#,
    )
    .await;
    let id = created["tunnelID"].as_str().unwrap().to_owned();
    assert_eq!(created, json!({"_":"created","mode":"subStream","keepBrokenTunnel":1000,"tunnelID":id}));
    assert_ne!(id, "mine");
    assert_eq!(id.len(), 22, "128-bit id, base64url: {id}");
    assert_eq!(
        text(&mut ws, r#"{"_":"create","mode":"subStream"}"#).await,
        seed_error(4001, "Tunnel already created")
    );
    // A second client that knows the id takes the tunnel over (the seed's semantics); the first
    // connection is dropped.
    let mut other = connect(&server).await;
    assert_eq!(
        text(&mut other, &json!({"_":"use","tunnelID":id}).to_string()).await,
        json!({"_":"created","msg":id})
    );
    assert!(next(&mut ws).await.is_none(), "the taken-over connection is closed");
    // close: the tunnel ends and the server says so; the id is gone.
    assert_eq!(text(&mut other, r#"{"_":"close","msg":"bye"}"#).await, json!({"_":"close","msg":"bye"}));
    assert_eq!(
        text(&mut other, &json!({"_":"use","tunnelID":id}).to_string()).await,
        seed_error(4004, "Tunnel of id not exsts")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_use_the_seeds_layout_with_correct_sid_widths_and_credit() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &[]);
    let mut ws = connect(&server).await;
    text(&mut ws, r#"{"_":"create","mode":"subStream"}"#).await;
    // Malformed frames are dropped without harm.
    send_bin(&mut ws, &[0x04, 0x00]).await;
    send_bin(&mut ws, &[]).await;

    // The captured transcript: start sid 1 → started, read 5 MiB; data → echo once we grant credit.
    send_bin(&mut ws, &[0x22, 0x00, 0x01]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x82, 0x00, 0x01]);
    assert_eq!(recv_bin(&mut ws).await, [0xe2, 0x00, 0x01, 0x50, 0x00, 0x00]);
    send_bin(&mut ws, b"\x02\x00\x01ping").await;
    send_bin(&mut ws, &[0xe2, 0x00, 0x01, 0x02]).await; // grant only 2 bytes
    assert_eq!(recv_bin(&mut ws).await, b"\x02\x00\x01pi");
    send_bin(&mut ws, &[0xe2, 0x00, 0x01, 0x50, 0x00, 0x00]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\x02\x00\x01ng");

    // A sid above 65535 with a proper 4-byte id: our answers use 4 bytes too.
    send_bin(&mut ws, &[0x24, 0x00, 0x01, 0x11, 0x70]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x84, 0x00, 0x01, 0x11, 0x70]);
    assert_eq!(recv_bin(&mut ws).await, [0xe4, 0x00, 0x01, 0x11, 0x70, 0x50, 0x00, 0x00]);
    // What the seed sends for sid 70000 (truncated to 2 bytes) is taken as the sid it says: 4464.
    send_bin(&mut ws, &[0x22, 0x11, 0x70]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x82, 0x11, 0x70]);
    assert_eq!(recv_bin(&mut ws).await, [0xe2, 0x11, 0x70, 0x50, 0x00, 0x00]);

    // close → closed; the seed's errors for unknown and not-started sids.
    send_bin(&mut ws, &[0x44, 0x00, 0x01, 0x11, 0x70]).await;
    assert_eq!(recv_bin(&mut ws).await, [0xa4, 0x00, 0x01, 0x11, 0x70]);
    send_bin(&mut ws, &[0x42, 0x00, 0x09]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\xc2\x00\x09Stream not exists : 9");
    send_bin(&mut ws, b"\x02\x00\x09x").await;
    assert_eq!(recv_bin(&mut ws).await, b"\xc2\x00\x09Stream not exists");

    // Closing one stream leaves the others working.
    send_bin(&mut ws, &[0x42, 0x00, 0x01]).await;
    assert_eq!(recv_bin(&mut ws).await, [0xa2, 0x00, 0x01]);
    send_bin(&mut ws, b"\x02\x11\x70again").await;
    send_bin(&mut ws, &[0xe2, 0x11, 0x70, 0x10]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\x02\x11\x70again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_uses_sid_0_and_one_stream_at_a_time() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &[]);
    let mut ws = connect(&server).await;
    text(&mut ws, r#"{"_":"create","mode":"stream"}"#).await;
    send_bin(&mut ws, &[0x20]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x80]);
    assert_eq!(recv_bin(&mut ws).await, [0xe0, 0x50, 0x00, 0x00]);
    // A second stream is refused the seed's way: an error frame without a message.
    send_bin(&mut ws, &[0x22, 0x00, 0x01]).await;
    assert_eq!(recv_bin(&mut ws).await, [0xc2, 0x00, 0x01]);
    send_bin(&mut ws, b"\x00hello").await;
    send_bin(&mut ws, &[0xe0, 0x10]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\x00hello");
    send_bin(&mut ws, &[0x40]).await;
    assert_eq!(recv_bin(&mut ws).await, [0xa0]);
}

/// A stream the server may not dial is answered `started` then `error` with the reason, which the
/// seed client surfaces as its stream's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_dials_are_reported_on_the_stream() {
    let echo = echo_origin().await;
    // Loopback is not allowed: the policy refuses.
    let denied = compat_server(&["--compat-target", &echo.to_string(), "--connect-ports", "1-65535"]);
    let mut ws = connect(&denied).await;
    text(&mut ws, r#"{"_":"create","mode":"subStream"}"#).await;
    send_bin(&mut ws, &[0x22, 0x00, 0x01]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x82, 0x00, 0x01]);
    let err = recv_bin(&mut ws).await;
    assert_eq!(err[..3], [0xc2, 0x00, 0x01]);
    let msg = String::from_utf8_lossy(&err[3..]).into_owned();
    assert!(msg.contains("127.0.0.1"), "{msg}");

    let untargeted = compat_server(&[]);
    let mut ws = connect(&untargeted).await;
    text(&mut ws, r#"{"_":"create","mode":"stream"}"#).await;
    send_bin(&mut ws, &[0x20]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x80]);
    let err = recv_bin(&mut ws).await;
    assert_eq!(err[0], 0xc0);
    assert!(String::from_utf8_lossy(&err[1..]).contains("--compat-target"), "{err:?}");
}

/// A broken tunnel is held for min(client's keepBrokenTunnel, --max-keep-broken), then destroyed;
/// within that time `use` rebinds it and queued frames flow on the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tunnels_are_held_for_the_capped_time_only() {
    let echo = echo_origin().await;
    let short = echo_server(echo, &["--max-keep-broken", "200ms"]);
    let mut ws = connect(&short).await;
    let created = text(&mut ws, r#"{"_":"create","mode":"subStream","keepBrokenTunnel":3600000}"#).await;
    assert_eq!(created["keepBrokenTunnel"], json!(200));
    let id = created["tunnelID"].as_str().unwrap().to_owned();
    drop(ws); // TCP gone without a close frame: broken
    tokio::time::sleep(Duration::from_secs(2)).await; // 10× the hold
    let mut ws = connect(&short).await;
    assert_eq!(
        text(&mut ws, &json!({"_":"use","tunnelID":id}).to_string()).await,
        seed_error(4004, "Tunnel of id not exsts")
    );

    let long = echo_server(echo, &["--max-keep-broken", "1m"]);
    let mut ws = connect(&long).await;
    let created = text(&mut ws, r#"{"_":"create","mode":"subStream","keepBrokenTunnel":30000}"#).await;
    let id = created["tunnelID"].as_str().unwrap().to_owned();
    send_bin(&mut ws, &[0x22, 0x00, 0x01]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x82, 0x00, 0x01]);
    assert_eq!(recv_bin(&mut ws).await, [0xe2, 0x00, 0x01, 0x50, 0x00, 0x00]);
    // The echo of this waits on the server for credit, which we grant only after the break.
    send_bin(&mut ws, b"\x02\x00\x01kept").await;
    drop(ws);
    let mut ws = connect(&long).await;
    assert_eq!(
        text(&mut ws, &json!({"_":"use","tunnelID":id}).to_string()).await,
        json!({"_":"created","msg":id})
    );
    send_bin(&mut ws, &[0xe2, 0x00, 0x01, 0x10]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\x02\x00\x01kept");
    // A clean close (1000) without a `close` message ends the tunnel (the seed would leak it).
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await.unwrap();
    while next(&mut ws).await.is_some() {} // the server has seen the close once it answered it
    let mut ws = connect(&long).await;
    let answer = text(&mut ws, &json!({"_":"use","tunnelID":id}).to_string()).await;
    assert_eq!(answer, seed_error(4004, "Tunnel of id not exsts"));
}

/// A target that closes is reported with a `close` frame after its last bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_eof_is_reported_with_a_close_frame() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let greeter = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hi").await;
            let _ = s.shutdown().await;
        }
    });
    let server = echo_server(greeter, &[]);
    let mut ws = connect(&server).await;
    text(&mut ws, r#"{"_":"create","mode":"subStream"}"#).await;
    send_bin(&mut ws, &[0x22, 0x00, 0x07]).await;
    assert_eq!(recv_bin(&mut ws).await, [0x82, 0x00, 0x07]);
    assert_eq!(recv_bin(&mut ws).await, [0xe2, 0x00, 0x07, 0x50, 0x00, 0x00]);
    send_bin(&mut ws, &[0xe2, 0x00, 0x07, 0x50, 0x00, 0x00]).await;
    assert_eq!(recv_bin(&mut ws).await, b"\x02\x00\x07hi");
    assert_eq!(recv_bin(&mut ws).await, [0x42, 0x00, 0x07]);
    // The stream is gone: the seed's answer to data on it.
    send_bin(&mut ws, b"\x02\x00\x07late").await;
    assert_eq!(recv_bin(&mut ws).await, b"\xc2\x00\x07Stream not exists");
}

/// With `--token`, a tunnel is bound to the token that created it: another valid token cannot `use` it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_with_another_token_is_refused_like_an_unknown_id() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--token", "alice", "--token", "mallory"]);
    let connect_as = |token: &'static str| tunnel_as(url(&server), token);
    let mut alice = connect_as("alice").await;
    let created = text(&mut alice, r#"{"_":"create","mode":"subStream","keepBrokenTunnel":60000}"#).await;
    let id = created["tunnelID"].as_str().unwrap().to_owned();
    let mut mallory = connect_as("mallory").await;
    assert_eq!(
        text(&mut mallory, &json!({"_":"use","tunnelID":id}).to_string()).await,
        seed_error(4004, "Tunnel of id not exsts")
    );
    let mut alice2 = connect_as("alice").await;
    assert_eq!(text(&mut alice2, &json!({"_":"use","tunnelID":id}).to_string()).await["_"], json!("created"));
}

/// `--max-tunnels` caps compat tunnels too (connected or held); a tunnel that ends frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tunnels_caps_compat_tunnels() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--max-tunnels", "1"]);
    let mut first = connect(&server).await;
    assert_eq!(text(&mut first, r#"{"_":"create","mode":"subStream"}"#).await["_"], json!("created"));
    let mut second = connect(&server).await;
    assert_eq!(
        text(&mut second, r#"{"_":"create","mode":"subStream"}"#).await,
        json!({"_":"close","msg":"server tunnel limit reached"})
    );
    // The first tunnel closes in order: the next create gets its place.
    first.send(Message::text(r#"{"_":"close"}"#)).await.unwrap();
    first.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await.unwrap();
    while next(&mut first).await.is_some() {}
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut third = connect(&server).await;
        let answer = text(&mut third, r#"{"_":"create","mode":"subStream"}"#).await;
        if answer["_"] == json!("created") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the ended tunnel never freed its place: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Control messages are tiny; one over 64 KiB closes the connection (1009) instead of being parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_control_messages_close_the_connection() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &[]);
    let mut ws = connect(&server).await;
    // Just under the cap, deeply nested and wide: parsed (skipped fields are not built) and answered.
    let filler = "[".repeat(100) + &"]".repeat(100);
    let ok = format!(r#"{{"pad":"{}","deep":{filler},"_":"create","mode":"subStream"}}"#, "x".repeat(60_000));
    assert_eq!(text(&mut ws, &ok).await["_"], json!("created"));
    let big = format!(r#"{{"_":"close","msg":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send(Message::text(big)).await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("closed within 10 s") {
            Some(Ok(Message::Close(f))) => break f.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(code, Some(CloseCode::Size), "closed with 1009 (message too big)");
    // The server is still fine.
    let mut again = connect(&server).await;
    assert_eq!(text(&mut again, r#"{"_":"create","mode":"stream"}"#).await["_"], json!("created"));
}

/// With tokens, one token's compat tunnels are capped (`--max-tunnels-per-token`, default a quarter of
/// `--max-tunnels`), so one token cannot take every place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_take_every_compat_tunnel() {
    let echo = echo_origin().await;
    let server = echo_server(echo, &["--token", "alice", "--token", "bob", "--max-tunnels", "4"]);
    let connect_as = |token: &'static str| tunnel_as(url(&server), token);
    let create = r#"{"_":"create","mode":"subStream"}"#;
    let mut first = connect_as("alice").await;
    assert_eq!(text(&mut first, create).await["_"], json!("created"));
    let mut second = connect_as("alice").await;
    assert_eq!(
        text(&mut second, create).await,
        json!({"_":"close","msg":"tunnel limit of this token reached"})
    );
    let mut bob = connect_as("bob").await;
    assert_eq!(text(&mut bob, create).await["_"], json!("created"));
}
