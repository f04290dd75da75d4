//! Graceful shutdown of the tunnel binaries: on SIGTERM `ws-server` and `ws-client` stop accepting, let the
//! streams already open finish (up to `--shutdown-timeout`) and exit 0 as soon as they have; a second
//! SIGTERM ends the wait at once. Every server runs on port 0 and every wait is bounded.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::origin::echo_server;
use support::Proc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnelkit::tunnel::TunnelClient;

/// Longer than any test here needs: a drain that waits for it has failed.
const LONG: &str = "60s";

fn ws_server(extra: &[&str]) -> Proc {
    let mut args = vec!["ws-server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8"];
    args.extend_from_slice(extra);
    Proc::start(&args, 1)
}

/// Writes `msg` and reads its echo back, within 10 s.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(msg).await.expect("write through the open stream");
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.expect("read the echo through the open stream");
        assert_eq!(back, msg);
    })
    .await
    .expect("the open stream answers in time");
}

/// Half-closes `s` and reads until the far side closes too: the stream has ended.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    tokio::time::timeout(Duration::from_secs(10), async {
        s.shutdown().await.expect("half-close");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("clean end of the stream");
        assert!(rest.is_empty(), "nothing was left unread");
    })
    .await
    .expect("the stream ends in time");
}

/// Waits (at most 10 s) until `addr` refuses connections: its listener has closed.
async fn until_refused(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{addr} still accepts 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_server_on_sigterm_refuses_new_connections_keeps_the_open_stream_and_exits_when_it_ends() {
    let echo = echo_server().await;
    let mut server = ws_server(&["--shutdown-timeout", LONG]);
    let tunnel =
        TunnelClient::new(&format!("ws://{}/tunnel", server.addr())).unwrap().connect().await.unwrap();
    let mut stream = tunnel.open(&echo.to_string()).unwrap();
    echo_once(&mut stream, b"before").await;

    server.terminate();
    until_refused(server.addr()).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the open stream");
    echo_once(&mut stream, b"after SIGTERM the stream still flows").await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the open stream");

    finish(&mut stream).await;
    drop(stream);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", server.stderr.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_ws_server_drain_at_once() {
    let echo = echo_server().await;
    let mut server = ws_server(&["--shutdown-timeout", LONG]);
    let tunnel =
        TunnelClient::new(&format!("ws://{}/tunnel", server.addr())).unwrap().connect().await.unwrap();
    let mut stream = tunnel.open(&echo.to_string()).unwrap();
    echo_once(&mut stream, b"held open").await;

    server.terminate();
    until_refused(server.addr()).await;
    // The drain is under way (its listener is gone); give its wait a moment to watch for the next signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the first SIGTERM waits for the open stream");
    let second = Instant::now();
    server.terminate();
    server.wait_exit(Duration::from_secs(5)).expect("the second SIGTERM ends the process at once");
    assert!(second.elapsed() < Duration::from_secs(5));
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_client_local_forward_on_sigterm_keeps_the_open_stream_until_it_ends_then_exits_0() {
    let echo = echo_server().await;
    let server = ws_server(&[]);
    let url = format!("ws://{}/tunnel", server.addr());
    let forward = format!("127.0.0.1:0:{echo}");
    let mut client = Proc::start(&["ws-client", &url, "-L", &forward, "--shutdown-timeout", LONG], 1);
    let entry = client.addr();
    let mut local = TcpStream::connect(entry).await.unwrap();
    echo_once(&mut local, b"before").await;

    client.terminate();
    until_refused(entry).await;
    assert!(client.child.try_wait().unwrap().is_none(), "the client waits for the open stream");
    echo_once(&mut local, b"after SIGTERM the stream still flows").await;

    finish(&mut local).await;
    let status = client.wait_exit(Duration::from_secs(10)).expect("exits once the last stream ended");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", client.stderr.lock().unwrap());
}
