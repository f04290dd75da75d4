//! Watching a relayed WebSocket for the moment a polling session moves onto it.
//!
//! A polling session that upgrades keeps its sid; the client probes the WebSocket (`2probe`,
//! `3probe`) and then sends the Engine.IO upgrade packet `5`, after which the polling transport is
//! gone. From then on the WebSocket ending ends the session; before it (a failed probe) the session
//! lives on over polling. [`UpgradeWatch`] reads the first client frames as they pass through the
//! relay, unchanged, to tell the two apart, and then stops looking.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::ws_frame::{opcode, Decoded, FrameHead};

/// Client frames inspected before giving up: the upgrade packet follows the probe at once.
const MAX_FRAMES: u32 = 16;

/// Parses client-to-server WebSocket frames until an Engine.IO upgrade packet `5` is seen.
#[derive(Debug, Default)]
pub struct UpgradeSniffer {
    /// Bytes of a frame not yet complete (header plus a small payload).
    pending: Vec<u8>,
    /// Payload bytes of a large frame still to pass unread.
    skip: u64,
    frames: u32,
    outcome: Option<bool>,
}

impl UpgradeSniffer {
    /// Feeds the next bytes the client sent; returns `Some(true)` once the upgrade packet went
    /// by, `Some(false)` once it can no longer be recognised (a close frame, a compressed or
    /// unexpected frame, or too many frames), and `None` while undecided.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<bool> {
        while self.outcome.is_none() && !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            self.pending.extend_from_slice(data);
            data = &[];
            self.parse_pending();
        }
        self.outcome
    }

    fn parse_pending(&mut self) {
        while self.outcome.is_none() && self.skip == 0 {
            let p = &self.pending;
            if p.len() < 2 {
                return;
            }
            let Decoded::Head { head: h, len: header } = FrameHead::decode(p) else { return };
            let len = h.payload_len;
            if h.opcode == opcode::CLOSE || h.rsv != 0 || self.frames >= MAX_FRAMES {
                // Close, or an extension (permessage-deflate) hides the payload.
                self.outcome = Some(false);
                return;
            }
            let available = (p.len() - header) as u64;
            if available < len {
                if len > 125 {
                    // Not the upgrade packet; let its payload pass without buffering it.
                    self.skip = len - available;
                    self.pending.clear();
                    self.frames += 1;
                }
                return;
            }
            let end = header + len as usize;
            if h.fin && h.opcode == opcode::TEXT && len == 1 {
                let mask = h.mask.map_or(0, |k| k[0]);
                if p[header] ^ mask == b'5' {
                    self.outcome = Some(true);
                    return;
                }
            }
            self.pending.drain(..end);
            self.frames += 1;
        }
    }
}

/// A client stream whose first WebSocket frames are watched for the upgrade packet while being
/// read through unchanged.
pub struct UpgradeWatch<S, F> {
    inner: S,
    sniffer: Option<UpgradeSniffer>,
    on_upgrade: Option<F>,
    upgraded: bool,
}

impl<S, F: FnOnce()> UpgradeWatch<S, F> {
    /// Wraps the client side of a WebSocket tunnel; `on_upgrade` runs when the upgrade completes.
    pub fn new(inner: S, on_upgrade: F) -> Self {
        UpgradeWatch {
            inner,
            sniffer: Some(UpgradeSniffer::default()),
            on_upgrade: Some(on_upgrade),
            upgraded: false,
        }
    }

    /// True if the client completed the upgrade (sent `5`) over this WebSocket.
    pub fn upgraded(&self) -> bool {
        self.upgraded
    }
}

impl<S: AsyncRead + Unpin, F: FnOnce() + Unpin> AsyncRead for UpgradeWatch<S, F> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(sniffer) = &mut this.sniffer {
            if let Some(upgraded) = sniffer.feed(&buf.filled()[before..]) {
                this.upgraded = upgraded;
                this.sniffer = None;
                if let (true, Some(on_upgrade)) = (upgraded, this.on_upgrade.take()) {
                    on_upgrade();
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin, F: Unpin> AsyncWrite for UpgradeWatch<S, F> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client text frame.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![0x81];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn sees_the_upgrade_packet_after_the_probe() {
        let mut bytes = frame(b"2probe");
        bytes.extend(frame(b"5"));
        bytes.extend(frame(b"42[\"x\"]"));
        // Whole, and one byte at a time.
        assert_eq!(UpgradeSniffer::default().feed(&bytes), Some(true));
        let mut s = UpgradeSniffer::default();
        let outcomes: Vec<_> = bytes.iter().map(|b| s.feed(std::slice::from_ref(b))).collect();
        assert_eq!(outcomes.iter().flatten().next(), Some(&true));
    }

    #[test]
    fn no_upgrade_without_the_packet() {
        let mut s = UpgradeSniffer::default();
        assert_eq!(s.feed(&frame(b"2probe")), None);
        // A large frame passes through without being buffered, and a close frame settles it.
        assert_eq!(s.feed(&frame(&vec![b'4'; 70_000])), None);
        assert!(s.pending.is_empty());
        assert_eq!(s.feed(&[0x88, 0x80, 0, 0, 0, 0]), Some(false));
        // A message "5" is `45`, not an upgrade; a compressed frame cannot be read.
        assert_eq!(UpgradeSniffer::default().feed(&frame(b"45")), None);
        let mut compressed = frame(b"5");
        compressed[0] |= 0x40;
        assert_eq!(UpgradeSniffer::default().feed(&compressed), Some(false));
        // It stops looking after a few frames.
        let many: Vec<u8> = (0..=MAX_FRAMES).flat_map(|_| frame(b"3")).collect();
        assert_eq!(UpgradeSniffer::default().feed(&many), Some(false));
    }
}
