//! The log filter from the configuration file (`log_level`), changed by a reload: without `RUST_LOG`
//! the file decides and a reload changes it in place; an invalid filter fails the reload and keeps the
//! one in force; with `RUST_LOG` set, the environment wins and the file's key is reported as overridden.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::origin::echo_server;
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// The proxy's debug line for a CONNECT it dialled.
const DEBUG_LINE: &str = "CONNECT allowed by policy and dialled";

/// A proxy file for loopback targets with `log_level = level` (a TOML string, quotes included).
fn write_config(file: &Path, level: &str) {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nallow = [\"127.0.0.0/8\"]\nconnect_ports = \"1-65535\"\nlog_level = {level}\n"
    );
    std::fs::write(file, text).unwrap();
}

fn log_of(p: &Proc) -> String {
    p.stderr.lock().unwrap().clone()
}

/// One CONNECT to the echo server through `proxy` and a round trip through it.
async fn connect_once(proxy: SocketAddr, target: SocketAddr) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let head = tokio::time::timeout(LIMIT, support::read_head(&mut s)).await.unwrap().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(LIMIT, s.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_log_level_and_an_invalid_one_keeps_it() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    // The reload lines are info: kept visible so that the test knows when a reload is done.
    write_config(&file, "\"warn,tunnelkit::reload=info\"");
    let proxy = Proc::start_without_rust_log(&["proxy", "--config", file.to_str().unwrap()], 1, &[]);
    connect_once(proxy.addr(), echo).await;
    // The stderr reader is a thread: give it time to see a line that should not be there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!log_of(&proxy).contains(DEBUG_LINE), "debug line at level warn:\n{}", log_of(&proxy));

    write_config(&file, "\"warn,tunnelkit::reload=info,tunnelkit::proxy=debug\"");
    proxy.hup();
    proxy.wait_log("config reloaded (generation 2)", 1).await;
    connect_once(proxy.addr(), echo).await;
    proxy.wait_log(DEBUG_LINE, 1).await;

    write_config(&file, "\"tunnelkit=loud\"");
    proxy.hup();
    proxy.wait_log("config reload failed", 1).await;
    let log = log_of(&proxy);
    assert!(log.contains("log_level") && log.contains("keeping generation 2"), "{log}");
    // The filter of generation 2 is still in force.
    connect_once(proxy.addr(), echo).await;
    proxy.wait_log(DEBUG_LINE, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_wins_over_the_file_and_says_so_once() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    write_config(&file, "\"debug\"");
    let proxy = Proc::start_env(
        &["proxy", "--config", file.to_str().unwrap()],
        1,
        &[("RUST_LOG", "warn,tunnelkit::reload=info")],
    );
    proxy.wait_log("overridden by RUST_LOG", 1).await;
    proxy.hup();
    proxy.wait_log("config reloaded (generation 2)", 1).await;
    connect_once(proxy.addr(), echo).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log_of(&proxy);
    assert!(!log.contains(DEBUG_LINE), "the file's level won over RUST_LOG:\n{log}");
    assert_eq!(log.matches("overridden by RUST_LOG").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_flag_wins_over_the_file() {
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    write_config(&file, "\"debug\"");
    let args = ["--log-level", "warn", "proxy", "--config", file.to_str().unwrap()];
    let proxy = Proc::start_without_rust_log(&args, 1, &[]);
    proxy.wait_log("overridden by --log-level", 1).await;
    connect_once(proxy.addr(), echo).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!log_of(&proxy).contains(DEBUG_LINE), "the file's level won over the flag:\n{}", log_of(&proxy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_log_level_stops_the_server_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    write_config(&file, "\"tunnelkit=loud\"");
    let (status, err) =
        support::run_to_exit(&["proxy", "--config", file.to_str().unwrap()], &[], LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("log_level") && err.contains("warn,tunnelkit::proxy=debug"), "{err}");
    let (status, err) = support::run_to_exit(&["--log-level", "tunnelkit=loud", "proxy"], &[], LIMIT).await;
    assert!(status.is_some_and(|s| !s.success()) && err.contains("--log-level"), "{err}");
}
