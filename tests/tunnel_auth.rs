//! `ws-server` refuses a WebSocket upgrade with a wrong or missing bearer token (HTTP 401) and accepts the
//! right one (101).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ws-server` on an ephemeral port and waits (bounded) for its `listening on ADDR` line.
fn start(extra: &[&str]) -> (Server, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelkit"))
        .args(["ws-server", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tunnelkit");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("server did not report its address");
    (server, addr)
}

/// Sends a WebSocket upgrade request and returns the status code of the answer.
fn upgrade_status(addr: SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    let line = String::from_utf8_lossy(&buf);
    line[9..12].parse().unwrap()
}

#[test]
fn wrong_or_missing_token_gets_401_right_token_upgrades() {
    let (_server, addr) = start(&["--token", "s3cret", "--token", "other"]);
    assert_eq!(upgrade_status(addr, "/tunnel", None), 401);
    assert_eq!(upgrade_status(addr, "/tunnel", Some("Bearer wrong")), 401);
    assert_eq!(upgrade_status(addr, "/tunnel", Some("Bearer s3cre")), 401);
    assert_eq!(upgrade_status(addr, "/tunnel", Some("Basic czNjcmV0")), 401);
    assert_eq!(upgrade_status(addr, "/tunnel", Some("Bearer s3cret")), 101);
    assert_eq!(upgrade_status(addr, "/tunnel", Some("Bearer other")), 101);
    assert_eq!(upgrade_status(addr, "/elsewhere", Some("Bearer s3cret")), 404);
}
