//! Steady client load through a proxy, for tests that change the proxy under it (an upgrade):
//! absolute-form GETs over new and kept-alive connections, short and long CONNECT echoes, and a
//! tally of answers, failures and refused connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::streams::pattern;

/// Every request and every tunnel step gets this long before it counts as failed.
pub const STEP: Duration = Duration::from_secs(10);

/// What the load saw: answers, failures (with why), refused connections, and requests retried
/// because a reused keep-alive connection closed before any byte of an answer (what every HTTP
/// client does, RFC 9112 section 9.3.1: the server may close an idle connection at any time).
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicUsize,
    pub refused: AtomicUsize,
    pub retried: AtomicUsize,
    pub failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failures.lock().unwrap().push(why);
    }

    fn connect_failed(&self, e: std::io::Error) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.fail(format!("connect: {e}"));
    }
}

enum GetError {
    /// Nothing of an answer came before the connection ended.
    ClosedBeforeAnswer(String),
    Other(String),
}

/// One absolute-form GET of `/1k` on `s`; `Ok(true)` if the connection may be reused.
async fn get_1k(s: &mut TcpStream, origin: SocketAddr) -> Result<bool, GetError> {
    let req = format!("GET http://{origin}/1k HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return Err(GetError::ClosedBeforeAnswer(format!("write: {e}")));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(STEP, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => {
                return Err(GetError::ClosedBeforeAnswer("closed".into()));
            }
            Ok(Ok(0)) => return Err(GetError::Other("closed inside the answer's head".into())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(GetError::Other(format!("read inside the head: {e}"))),
            Err(_) => return Err(GetError::Other("no answer in time".into())),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") || !head.contains("content-length: 1024\r\n") {
        return Err(GetError::Other(format!("unexpected answer: {head:?}")));
    }
    let mut body = buf[head_end..].to_vec();
    body.resize(1024, 0);
    let have = buf.len() - head_end;
    match tokio::time::timeout(STEP, s.read_exact(&mut body[have..])).await {
        Ok(Ok(_)) => Ok(!head.contains("connection: close")),
        Ok(Err(e)) => Err(GetError::Other(format!("body cut short: {e}"))),
        Err(_) => Err(GetError::Other("body not received in time".into())),
    }
}

/// GETs until `stop`, reusing each connection for up to `per_connection` requests.
pub async fn get_loop(
    proxy: SocketAddr,
    origin: SocketAddr,
    per_connection: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut kept: Option<(TcpStream, usize)> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = kept.is_some();
        let (mut s, n) = match kept.take() {
            Some(k) => k,
            None => match TcpStream::connect(proxy).await {
                Ok(s) => (s, 0),
                Err(e) => {
                    tally.connect_failed(e);
                    continue;
                }
            },
        };
        match get_1k(&mut s, origin).await {
            Ok(keep) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if keep && n + 1 < per_connection {
                    kept = Some((s, n + 1));
                }
            }
            Err(GetError::ClosedBeforeAnswer(_)) if reused => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
            }
            Err(GetError::ClosedBeforeAnswer(why) | GetError::Other(why)) => {
                tally.fail(format!("GET: {why}"))
            }
        }
    }
}

/// Opens a CONNECT tunnel to `target` through the proxy.
pub async fn tunnel(proxy: SocketAddr, target: SocketAddr) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| format!("connect: {e}"))?;
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| format!("CONNECT: {e}"))?;
    // The echo sends nothing before we do, so whatever is read here is the proxy's answer.
    let head =
        tokio::time::timeout(STEP, super::read_head(&mut s)).await.map_err(|_| "CONNECT: no answer")?;
    match head {
        Some(h) if h.starts_with(b"HTTP/1.1 200") => Ok(s),
        other => {
            Err(format!("CONNECT answered {:?}", other.map(|h| String::from_utf8_lossy(&h).into_owned())))
        }
    }
}

/// Short CONNECTs to the echo (4 KiB there and back) until `stop`.
pub async fn connect_loop(proxy: SocketAddr, echo: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let data = pattern(4096, 7);
    while !stop.load(Ordering::Relaxed) {
        let mut s = match tunnel(proxy, echo).await {
            Ok(s) => s,
            Err(e) if e.contains("refused") => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                tally.fail(e);
                continue;
            }
            Err(e) => {
                tally.fail(e);
                continue;
            }
        };
        let mut back = vec![0u8; data.len()];
        let round = async {
            s.write_all(&data).await?;
            s.read_exact(&mut back).await
        };
        match tokio::time::timeout(STEP, round).await {
            Ok(Ok(_)) if back == data => tally.ok.fetch_add(1, Ordering::Relaxed),
            Ok(Ok(_)) => {
                tally.fail("CONNECT echo came back different".into());
                continue;
            }
            Ok(Err(e)) => {
                tally.fail(format!("CONNECT echo: {e}"));
                continue;
            }
            Err(_) => {
                tally.fail("CONNECT echo: timed out".into());
                continue;
            }
        };
    }
}

/// A long CONNECT echo of `len` bytes: half before `resume` says go on, half after. True if every
/// byte came back in order.
pub async fn long_tunnel(
    proxy: SocketAddr,
    echo: SocketAddr,
    len: usize,
    seed: u64,
    mut resume: watch::Receiver<bool>,
) -> Result<(), String> {
    let s = tunnel(proxy, echo).await?;
    let data = pattern(len, seed);
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let (first, second) = sent.split_at(sent.len() / 2);
        w.write_all(first).await?;
        let _ = resume.wait_for(|go| *go).await;
        w.write_all(second).await?;
        w.shutdown().await
    });
    let mut got = Vec::with_capacity(len);
    let read = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got)).await;
    writer.await.unwrap().map_err(|e| format!("long tunnel write: {e}"))?;
    match read {
        Ok(Ok(_)) if got == data => Ok(()),
        Ok(Ok(n)) => Err(format!("long tunnel: {n} of {len} bytes came back, or in another order")),
        Ok(Err(e)) => Err(format!("long tunnel read: {e}")),
        Err(_) => Err("long tunnel: timed out".into()),
    }
}

/// Sends `data` on `s` and reads as much back (an echo behind it), within [`STEP`].
pub async fn echo_round(s: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    let mut back = vec![0u8; data.len()];
    let round = async {
        s.write_all(data).await?;
        s.read_exact(&mut back).await
    };
    match tokio::time::timeout(STEP, round).await {
        Ok(Ok(_)) if back == data => Ok(()),
        Ok(Ok(_)) => Err("the echo came back different".into()),
        Ok(Err(e)) => Err(format!("echo: {e}")),
        Err(_) => Err("echo: timed out".into()),
    }
}
