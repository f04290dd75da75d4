//! Load tool for `bench/proxy/run.sh` (not a test): CONNECT throughput and idle-tunnel memory.
//!
//! ```text
//! bench_proxy sink ADDR                                   # TCP server that discards what it reads
//! bench_proxy throughput TARGET SECONDS [PROXY]           # push bytes to TARGET (via PROXY if given)
//! bench_proxy idle TARGET COUNT PROXY                     # open COUNT CONNECT tunnels and hold them
//! ```
//! PROXY is `HOST:PORT` (an HTTP proxy: CONNECT) or `socks5://HOST:PORT`.
//! `throughput` prints `Gbit/s`; `idle` prints `ready` once every tunnel is established, then waits
//! for stdin to close.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

async fn connect(target: &str, proxy: Option<&str>) -> Result<TcpStream, String> {
    match proxy {
        None => TcpStream::connect(target).await.map_err(|e| format!("connect {target}: {e}")),
        Some(p) if p.starts_with("socks5://") => {
            let addr = &p["socks5://".len()..];
            let s = tokio_socks::tcp::Socks5Stream::connect(addr, target)
                .await
                .map_err(|e| format!("SOCKS5 via {addr}: {e}"))?;
            Ok(s.into_inner())
        }
        Some(p) => {
            let mut s = TcpStream::connect(p).await.map_err(|e| format!("connect proxy: {e}"))?;
            s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(1) => head.push(b[0]),
                    _ => return Err("proxy closed during CONNECT".into()),
                }
            }
            if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200") {
                Ok(s)
            } else {
                Err(format!("CONNECT refused: {}", String::from_utf8_lossy(&head)))
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sink") => {
            let l = TcpListener::bind(&args[1]).await.unwrap();
            println!("listening on {}", l.local_addr().unwrap());
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        }
        Some("throughput") => {
            let secs: f64 = args[2].parse().unwrap();
            let mut s = match connect(&args[1], args.get(3).map(String::as_str)).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    println!("0");
                    return;
                }
            };
            let buf = vec![0x5au8; 256 * 1024];
            let start = Instant::now();
            let mut total = 0u64;
            while start.elapsed() < Duration::from_secs_f64(secs) {
                s.write_all(&buf).await.unwrap();
                total += buf.len() as u64;
            }
            let gbit = total as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
            println!("{gbit:.2}");
        }
        Some("idle") => {
            let count: usize = args[2].parse().unwrap();
            let mut held = Vec::with_capacity(count);
            for chunk in 0..count.div_ceil(500) {
                let n = 500.min(count - chunk * 500);
                let futs = (0..n).map(|_| connect(&args[1], Some(&args[3])));
                for r in futures_util::future::join_all(futs).await {
                    match r {
                        Ok(s) => held.push(s),
                        Err(e) => {
                            println!("failed after {} tunnels: {e}", held.len());
                            return;
                        }
                    }
                }
            }
            println!("ready {}", held.len());
            let mut line = String::new();
            let _ = BufReader::new(tokio::io::stdin()).read_line(&mut line).await;
        }
        _ => eprintln!(
            "usage: bench_proxy sink ADDR | throughput TARGET SECONDS [PROXY] | idle TARGET COUNT PROXY"
        ),
    }
}
