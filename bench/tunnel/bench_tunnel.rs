//! Load tool for `bench/tunnel/run.sh` (not a test): bulk throughput and ping-pong latency through a
//! port forward (a tunnel's `-L` entry) or straight to the target.
//!
//! ```text
//! bench_tunnel serve ADDR                                          # the target every path forwards to
//! bench_tunnel probe ADDR                                          # one echo round trip, exit 0 if it works
//! bench_tunnel throughput [--streams N] [--secs S] [--down] [--stalled] ADDR   # aggregate Gbit/s of N bulk
//!                                                                  # streams (--stalled: while another
//!                                                                  # download stream is never read)
//! bench_tunnel pingpong [--secs S] [--saturate] ADDR               # 1-byte round trips: "p50_us p99_us count"
//! bench_tunnel relay LISTEN TARGET                                 # plain TCP relay, no protocol at all
//! ```
//!
//! `relay` is tunnelkit's own bidirectional copy (`net::relay`) between an accepted connection and a new
//! one to TARGET. Two of them in a row are a "tunnel" with two user-space hops and zero protocol work:
//! the ceiling any two-process tunnel (client + server) can reach on this machine, since every byte
//! crosses three TCP connections instead of one.
//!
//! A tunnel forwards every connection of one entry port to one target, so `serve` is a single port that
//! serves several kinds of connection, chosen by the first byte the client sends:
//!
//! - `U` + start and end (two big-endian u64, Unix ms): upload sink. It counts the bytes whose read
//!   completes inside [start, end], writes the count (u64) back at `end`, then discards until EOF.
//!   Counting where the bytes arrive, in a window that opens after a warm-up, measures what crossed the
//!   path rather than what the sender managed to queue in socket and tunnel buffers.
//! - `D`: download source, writes as fast as it can until the peer goes away; the client counts.
//! - `S`: plain sink (the saturating stream of `pingpong`).
//! - `E`: echo.
//!
//! Client and server clocks are the same machine's wall clock, which is why a window can be given in
//! absolute time: all streams of one measurement share it, so the aggregate of 64 streams is one rate.
//! Every command is bounded in time: a path that stalls is reported as a failure (exit 1), not a hang.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of every bulk write and read: large enough that syscalls are not what is measured.
const CHUNK: usize = 256 * 1024;
/// Time between connecting and opening the measuring window: streams open, buffers fill, windows grow.
const WARMUP: Duration = Duration::from_millis(750);
/// Extra time a command may take beyond its nominal duration before it gives up on the path.
const GRACE: Duration = Duration::from_secs(20);

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// The tokio instant at which the wall clock reads `unix_ms` (now if it already passed).
fn instant_at(unix_ms: u64) -> tokio::time::Instant {
    let now = unix_ms_now();
    tokio::time::Instant::now() + Duration::from_millis(unix_ms.saturating_sub(now))
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    // Ping-pong writes one byte at a time: Nagle would add up to a delayed-ACK period to each.
    s.set_nodelay(true)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// serve

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        tokio::spawn(async move {
            if let Err(e) = serve_one(conn).await {
                // Peers closing mid-write is how every measurement ends; only say so when debugging.
                if std::env::var_os("BENCH_DEBUG").is_some() {
                    eprintln!("serve: {e}");
                }
            }
        });
    }
}

async fn serve_one(mut conn: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    match conn.read_u8().await? {
        b'U' => {
            let start = conn.read_u64().await?;
            let end = conn.read_u64().await?;
            let deadline = instant_at(end);
            let mut counted = 0u64;
            loop {
                match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
                    Err(_) => break,
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => {
                        if unix_ms_now() >= start {
                            counted += n as u64;
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                }
            }
            conn.write_u64(counted).await?;
            discard(&mut conn, &mut buf).await
        }
        b'D' => {
            buf.fill(0x5a);
            loop {
                conn.write_all(&buf).await?;
            }
        }
        b'S' => discard(&mut conn, &mut buf).await,
        b'E' => {
            let (mut r, mut w) = conn.split();
            tokio::io::copy(&mut r, &mut w).await.map(|_| ())
        }
        other => Err(std::io::Error::other(format!("unknown mode byte {other:#x}"))),
    }
}

async fn discard(conn: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    while conn.read(buf).await? != 0 {}
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// probe

async fn probe(addr: &str) -> Result<(), String> {
    let mut s = connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let msg = b"Eprobe";
    s.write_all(msg).await.map_err(|e| format!("write: {e}"))?;
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.map_err(|e| format!("no echo: {e}"))?;
    if &back != b"probe" {
        return Err(format!("wrong echo {back:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// throughput

/// Bytes one upload stream got counted by the sink inside [start, end].
async fn upload_stream(addr: String, start: u64, end: u64) -> Result<u64, String> {
    let conn = connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut r, mut w) = conn.into_split();
    let mut head = vec![b'U'];
    head.extend_from_slice(&start.to_be_bytes());
    head.extend_from_slice(&end.to_be_bytes());
    w.write_all(&head).await.map_err(|e| format!("write: {e}"))?;
    let writer = tokio::spawn(async move {
        let buf = vec![0x5au8; CHUNK];
        while w.write_all(&buf).await.is_ok() {}
    });
    let counted = r.read_u64().await.map_err(|e| format!("no count from the sink: {e}"));
    writer.abort();
    counted
}

/// Bytes one download stream received inside [start, end].
async fn download_stream(addr: String, start: u64, end: u64) -> Result<u64, String> {
    let mut conn = connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    conn.write_all(b"D").await.map_err(|e| format!("write: {e}"))?;
    let deadline = instant_at(end);
    let mut buf = vec![0u8; CHUNK];
    let mut counted = 0u64;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => return Ok(counted),
            Ok(Ok(0)) => return Err("source closed early".into()),
            Ok(Ok(n)) => {
                if unix_ms_now() >= start {
                    counted += n as u64;
                }
            }
            Ok(Err(e)) => return Err(format!("read: {e}")),
        }
    }
}

async fn throughput(addr: &str, streams: usize, secs: f64, down: bool, stalled: bool) -> Result<f64, String> {
    // Head-of-line check: a download whose reader never reads, on the same tunnel, held open throughout.
    let _stalled = if stalled {
        let mut s = connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(b"D").await.map_err(|e| format!("write: {e}"))?;
        Some(s)
    } else {
        None
    };
    let start = unix_ms_now() + WARMUP.as_millis() as u64;
    let window_ms = (secs * 1000.0) as u64;
    let end = start + window_ms;
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                if down {
                    download_stream(addr, start, end).await
                } else {
                    upload_stream(addr, start, end).await
                }
            })
        })
        .collect();
    let mut total = 0u64;
    for t in futures_util::future::join_all(tasks).await {
        total += t.map_err(|e| format!("stream task: {e}"))??;
    }
    Ok(total as f64 * 8.0 / (window_ms as f64 / 1000.0) / 1e9)
}

// ---------------------------------------------------------------------------------------------
// pingpong

/// Round-trip times in µs of 1-byte pings on one stream, optionally while a second stream to the same
/// entry saturates the path in the same direction.
async fn pingpong(addr: &str, secs: f64, saturate: bool) -> Result<Vec<u32>, String> {
    let bulk = if saturate {
        let mut s = connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(b"S").await.map_err(|e| format!("write: {e}"))?;
        let task = tokio::spawn(async move {
            let buf = vec![0x5au8; CHUNK];
            while s.write_all(&buf).await.is_ok() {}
        });
        // Let the bulk stream fill every buffer on the way before the first ping.
        tokio::time::sleep(WARMUP).await;
        Some(task)
    } else {
        None
    };
    let mut s = connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    s.write_all(b"E").await.map_err(|e| format!("write: {e}"))?;
    let mut rtts = Vec::new();
    let start = Instant::now();
    let mut b = [0u8; 1];
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let t = Instant::now();
        s.write_all(b"p").await.map_err(|e| format!("ping write: {e}"))?;
        s.read_exact(&mut b).await.map_err(|e| format!("pong read: {e}"))?;
        rtts.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    if let Some(task) = bulk {
        task.abort();
    }
    Ok(rtts)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// command line

struct Opts {
    streams: usize,
    secs: f64,
    down: bool,
    saturate: bool,
    stalled: bool,
    addr: Option<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { streams: 1, secs: 5.0, down: false, saturate: false, stalled: false, addr: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--streams" => o.streams = value(a)?.parse().map_err(|e| format!("--streams: {e}"))?,
            "--secs" => o.secs = value(a)?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--down" => o.down = true,
            "--saturate" => o.saturate = true,
            "--stalled" => o.stalled = true,
            s if s.starts_with("--") => return Err(format!("unknown flag {s}")),
            s => o.addr = Some(s.to_string()),
        }
    }
    Ok(o)
}

const USAGE: &str = "usage: bench_tunnel serve ADDR | probe ADDR | \
    throughput [--streams N] [--secs S] [--down] [--stalled] ADDR | pingpong [--secs S] [--saturate] ADDR | \
    relay LISTEN TARGET";

async fn run(args: Vec<String>) -> Result<(), String> {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    if cmd == "relay" {
        let [_, listen, target] = &args[..] else { return Err(USAGE.into()) };
        return relay(listen, target.clone()).await.map_err(|e| format!("relay: {e}"));
    }
    let o = parse_opts(args.get(1..).unwrap_or(&[]))?;
    let addr = o.addr.clone().ok_or(USAGE)?;
    let limit = Duration::from_secs_f64(o.secs) + WARMUP + GRACE;
    let bounded = |what: &'static str| move |_| format!("{what} did not finish within {limit:?}");
    match cmd {
        "serve" => {
            let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
            serve(addr).await.map_err(|e| format!("serve: {e}"))
        }
        "probe" => tokio::time::timeout(Duration::from_secs(5), probe(&addr))
            .await
            .map_err(|_| "no echo within 5s".to_string())?,
        "throughput" => {
            let gbit = tokio::time::timeout(limit, throughput(&addr, o.streams, o.secs, o.down, o.stalled))
                .await
                .map_err(bounded("throughput"))??;
            println!("{gbit:.2}");
            Ok(())
        }
        "pingpong" => {
            let mut rtts = tokio::time::timeout(limit, pingpong(&addr, o.secs, o.saturate))
                .await
                .map_err(bounded("pingpong"))??;
            if rtts.is_empty() {
                return Err("no round trip completed".into());
            }
            rtts.sort_unstable();
            println!("{} {} {}", percentile(&rtts, 0.5), percentile(&rtts, 0.99), rtts.len());
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

/// Accepts on `listen` and relays each connection to `target` until both directions end.
async fn relay(listen: &str, target: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            if let Ok(mut outbound) = connect(&target).await {
                let _ = tunnelkit::net::relay::relay(&mut inbound, &mut outbound, None).await;
            }
        });
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(args).await {
        eprintln!("bench_tunnel: {e}");
        std::process::exit(1);
    }
}
