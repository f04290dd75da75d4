//! Streaming message bodies: read one framing, write the same or another, never holding more than a
//! buffer's worth of body in memory.
//!
//! The chunked decoder is strict (RFC 9112 §7.1): hexadecimal sizes without overflow, CRLF line
//! ends (a bare LF is an error: it is a classic smuggling vector), extensions without control
//! characters, CRLF after every chunk, and a bounded trailer section, which is dropped.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::head::{Framing, MAX_HEAD};

/// A stream with its read buffer: bytes read but not yet consumed stay in `buf`.
#[derive(Debug)]
pub struct BufIo<S> {
    /// The stream.
    pub io: S,
    /// Bytes received and not yet consumed.
    pub buf: BytesMut,
}

impl<S: AsyncRead + Unpin> BufIo<S> {
    /// Wraps a stream with an empty buffer.
    pub fn new(io: S) -> Self {
        BufIo { io, buf: BytesMut::new() }
    }

    /// Reads more bytes into the buffer; 0 means EOF.
    ///
    /// A buffer with no room yet (a connection waiting for its first head, or idle between
    /// requests) is not given its 16 KiB up front: the read lands in a scratch buffer of the
    /// thread's, and the buffer takes only the bytes that came. Thousands of idle connections (and
    /// CONNECT tunnels, whose head buffer is dropped once the head is read) would otherwise each
    /// leave a touched page behind in the allocator.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.is_empty() && self.buf.capacity() < 4096 {
            return std::future::poll_fn(|cx| scratch_read(Pin::new(&mut self.io), cx, &mut self.buf)).await;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Like [`BufIo::fill`] with a time limit.
    pub async fn fill_within(&mut self, limit: Duration) -> Result<usize, BodyError> {
        match tokio::time::timeout(limit, self.fill()).await {
            Err(_) => Err(BodyError::Timeout),
            Ok(Err(e)) => Err(BodyError::Read(e)),
            Ok(Ok(n)) => Ok(n),
        }
    }
}

thread_local! {
    /// Where [`BufIo::fill`] reads when its buffer has no room: one per thread, borrowed only
    /// within a single poll.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

/// One read into the thread's scratch buffer, the bytes that came appended to `buf`.
fn scratch_read<S: AsyncRead + ?Sized>(
    io: Pin<&mut S>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut rb = ReadBuf::new(scratch);
        ready!(io.poll_read(cx, &mut rb))?;
        buf.extend_from_slice(rb.filled());
        Poll::Ready(Ok(rb.filled().len()))
    })
}

/// How a body is written on the outgoing side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// Bytes as they are (length-delimited or close-delimited output).
    Identity,
    /// Re-framed as chunks.
    Chunked,
}

/// Why copying a body failed; the side tells who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The sending side broke framing (bad chunk, early EOF): 400 for requests, 502 for responses.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Reading from the sending side failed.
    #[error("reading body: {0}")]
    Read(io::Error),
    /// Writing to the receiving side failed.
    #[error("writing body: {0}")]
    Write(io::Error),
    /// The sending side stalled longer than the idle limit.
    #[error("body timed out")]
    Timeout,
}

/// Receives the payload bytes of a body as they are copied (never the chunk framing): how the
/// proxy records bodies for its inspector without a second pass over them.
pub trait Tap: Send {
    /// The next payload bytes.
    fn payload(&mut self, data: &[u8]);
}

/// Largest write we batch before sending.
const OUT_BATCH: usize = 64 * 1024;

/// Copies one body from `src` (framed by `framing`) to `dst` (encoded as `encode`).
///
/// `out` holds bytes to send first (typically the message head); they are coalesced with the first
/// body bytes into one write. Returns the number of body bytes (payload, not framing) copied. The
/// source's read buffer keeps whatever follows the body (a pipelined next message).
pub async fn copy_body<R, W>(
    src: &mut BufIo<R>,
    framing: Framing,
    dst: &mut W,
    encode: Encode,
    out: Vec<u8>,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    copy_body_tapped(src, framing, dst, encode, out, idle, None).await
}

/// [`copy_body`], showing every payload byte to `tap` on the way.
pub async fn copy_body_tapped<R, W>(
    src: &mut BufIo<R>,
    framing: Framing,
    dst: &mut W,
    encode: Encode,
    mut out: Vec<u8>,
    idle: Duration,
    mut tap: Option<&mut dyn Tap>,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            let mut remaining = n;
            while remaining > 0 {
                if src.buf.is_empty() {
                    flush(dst, &mut out).await?;
                    if src.fill_within(idle).await? == 0 {
                        return Err(BodyError::Malformed(format!("body ended {remaining} bytes early")));
                    }
                }
                let k = (src.buf.len() as u64).min(remaining) as usize;
                if let Some(t) = tap.as_deref_mut() {
                    t.payload(&src.buf[..k]);
                }
                emit(dst, &mut out, &src.buf[..k], encode).await?;
                src.buf.advance(k);
                remaining -= k as u64;
                total += k as u64;
            }
        }
        Framing::Close => loop {
            if src.buf.is_empty() {
                flush(dst, &mut out).await?;
                if src.fill_within(idle).await? == 0 {
                    break;
                }
            }
            let k = src.buf.len();
            if let Some(t) = tap.as_deref_mut() {
                t.payload(&src.buf[..k]);
            }
            emit(dst, &mut out, &src.buf[..k], encode).await?;
            src.buf.advance(k);
            total += k as u64;
        },
        Framing::Chunked => loop {
            let size = read_chunk_size(src, dst, &mut out, idle).await?;
            if size == 0 {
                skip_trailers(src, dst, &mut out, idle).await?;
                break;
            }
            let mut remaining = size;
            while remaining > 0 {
                if src.buf.is_empty() {
                    flush(dst, &mut out).await?;
                    if src.fill_within(idle).await? == 0 {
                        return Err(BodyError::Malformed("body ended inside a chunk".into()));
                    }
                }
                let k = (src.buf.len() as u64).min(remaining) as usize;
                if let Some(t) = tap.as_deref_mut() {
                    t.payload(&src.buf[..k]);
                }
                emit(dst, &mut out, &src.buf[..k], encode).await?;
                src.buf.advance(k);
                remaining -= k as u64;
                total += k as u64;
            }
            let crlf = read_line(src, dst, &mut out, idle, 2).await?;
            if !crlf.is_empty() {
                return Err(BodyError::Malformed("chunk data not followed by CRLF".into()));
            }
        },
    }
    if encode == Encode::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(dst, &mut out).await?;
    dst.flush().await.map_err(BodyError::Write)?;
    Ok(total)
}

async fn emit<W: AsyncWrite + Unpin>(
    dst: &mut W,
    out: &mut Vec<u8>,
    data: &[u8],
    encode: Encode,
) -> Result<(), BodyError> {
    if encode == Encode::Chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    if out.len() + data.len() <= OUT_BATCH {
        out.extend_from_slice(data);
    } else {
        flush(dst, out).await?;
        dst.write_all(data).await.map_err(BodyError::Write)?;
    }
    if encode == Encode::Chunked {
        out.extend_from_slice(b"\r\n");
    }
    if out.len() >= OUT_BATCH {
        flush(dst, out).await?;
    }
    Ok(())
}

async fn flush<W: AsyncWrite + Unpin>(dst: &mut W, out: &mut Vec<u8>) -> Result<(), BodyError> {
    if !out.is_empty() {
        dst.write_all(out).await.map_err(BodyError::Write)?;
        out.clear();
    }
    Ok(())
}

/// Reads one CRLF-terminated line (without the CRLF), at most `limit` bytes long.
async fn read_line<R, W>(
    src: &mut BufIo<R>,
    dst: &mut W,
    out: &mut Vec<u8>,
    idle: Duration,
    limit: usize,
) -> Result<BytesMut, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if let Some(pos) = src.buf.iter().position(|&b| b == b'\n') {
            if pos == 0 || src.buf[pos - 1] != b'\r' {
                return Err(BodyError::Malformed("line ended by a bare LF".into()));
            }
            let mut line = src.buf.split_to(pos + 1);
            line.truncate(pos - 1);
            if line.contains(&b'\r') {
                return Err(BodyError::Malformed("bare CR in chunk framing".into()));
            }
            return Ok(line);
        }
        if src.buf.len() > limit {
            return Err(BodyError::Malformed("chunk framing line too long".into()));
        }
        flush(dst, out).await?;
        if src.fill_within(idle).await? == 0 {
            return Err(BodyError::Malformed("body ended inside chunk framing".into()));
        }
    }
}

async fn read_chunk_size<R, W>(
    src: &mut BufIo<R>,
    dst: &mut W,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let line = read_line(src, dst, out, idle, 4096).await?;
    parse_chunk_size(&line)
}

/// Parses a chunk-size line (without CRLF): `1*HEXDIG [ chunk-ext ]`.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let bad = || BodyError::Malformed(format!("invalid chunk size line `{}`", String::from_utf8_lossy(line)));
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(bad());
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).map_err(|_| bad())?, 16)
        .map_err(|_| bad())?;
    let ext = &line[digits..];
    if !ext.is_empty() {
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): allow whitespace before the
        // first ';' and visible characters after it, nothing else.
        let rest = ext.trim_ascii_start();
        if !rest.starts_with(b";") || rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad());
        }
    }
    Ok(size)
}

async fn skip_trailers<R, W>(
    src: &mut BufIo<R>,
    dst: &mut W,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut seen = 0usize;
    loop {
        let line = read_line(src, dst, out, idle, MAX_HEAD).await?;
        if line.is_empty() {
            return Ok(());
        }
        seen += line.len() + 2;
        let valid = line.iter().position(|&b| b == b':').is_some_and(|colon| {
            colon > 0 && line[..colon].iter().all(|&b| b.is_ascii_graphic() && b != b':')
        }) && !line.contains(&0);
        if !valid || seen > MAX_HEAD {
            return Err(BodyError::Malformed("invalid trailer section".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(input: &[u8], framing: Framing, encode: Encode) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut src = BufIo::new(input);
        let mut dst = Vec::new();
        copy_body(&mut src, framing, &mut dst, encode, b"H".to_vec(), Duration::from_secs(1)).await?;
        Ok((dst, src.buf.to_vec()))
    }

    #[tokio::test]
    async fn chunked_reencoded_and_pipelined_bytes_kept() {
        let (out, rest) =
            run(b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nNEXT", Framing::Chunked, Encode::Chunked)
                .await
                .unwrap();
        assert_eq!(out, b"H5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(rest, b"NEXT");
        let (out, _) = run(b"5\r\nhello\r\n0\r\n\r\n", Framing::Chunked, Encode::Identity).await.unwrap();
        assert_eq!(out, b"Hhello");
        let (out, _) = run(b"abc", Framing::Close, Encode::Chunked).await.unwrap();
        assert_eq!(out, b"H3\r\nabc\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn strict_chunks() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhel",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                run(bad, Framing::Chunked, Encode::Chunked).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(run(b"abc", Framing::Length(5), Encode::Identity).await.is_err());
    }
}
