//! Byte-exact stream checks shared by the tunnel suites: a deterministic pattern, an echo round trip
//! that reports errors instead of hiding them, and a digest to compare large buffers cheaply.

use std::net::SocketAddr;

use ring::digest::{digest, SHA256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` through `addr` (an echo behind it) while reading the echo; returns what came back.
pub async fn echo_through(addr: SocketAddr, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(61 * 1024) {
            w.write_all(chunk).await?;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await?;
    writer.await.unwrap()?;
    Ok(got)
}

/// SHA-256 of `b`.
pub fn sha(b: &[u8]) -> Vec<u8> {
    digest(&SHA256, b).as_ref().to_vec()
}
