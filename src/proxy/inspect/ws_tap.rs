//! WebSocket messages seen on an upgraded connection, for the inspector: a read-side wrapper that
//! passes every byte through untouched and feeds a copy to an incremental RFC 6455 frame parser.
//!
//! The relay stays the one relay (`net::relay`): the tap only watches what it reads. Payloads are
//! unmasked, continuation frames are folded into their message, and what is kept is bounded: at
//! most [`MAX_MESSAGES`] messages per connection, each capped at the body limit. A stream that does
//! not parse as WebSocket frames (a protocol other than WebSocket behind the 101) stops the
//! parsing, never the relay.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::flow::{Direction, WsMessage, WsOpcode};
use crate::http::ws_frame::{apply_mask, Decoded, FrameHead};

/// Messages kept per upgraded connection (both directions together).
pub const MAX_MESSAGES: usize = 1000;

/// The messages of one connection, shared by its two taps.
pub type Messages = Arc<Mutex<Vec<WsMessage>>>;

/// A stream whose reads are parsed as WebSocket frames sent in `direction`.
pub struct WsTap<S> {
    inner: S,
    parser: FrameParser,
}

impl<S> WsTap<S> {
    /// Watches what is read from `inner`, keeping up to `cap` bytes of each message in `sink`.
    pub fn new(inner: S, direction: Direction, started: Instant, cap: usize, sink: Messages) -> WsTap<S> {
        WsTap { inner, parser: FrameParser::new(direction, started, cap, sink) }
    }

    /// Parses bytes of this direction that went past the tap (read before it was in place).
    pub fn saw(&mut self, bytes: &[u8]) {
        self.parser.feed(bytes);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WsTap<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.parser.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsTap<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the parser is within the frame stream.
enum State {
    /// Collecting a frame header (2 to 14 bytes).
    Header,
    /// Inside a frame's payload.
    Payload { opcode: u8, fin: bool, mask: Option<[u8; 4]>, remaining: u64, offset: u64 },
    /// Not WebSocket (or a frame we cannot follow): stop looking.
    Lost,
}

/// A message being assembled from its frames.
struct Partial {
    opcode: WsOpcode,
    data: Vec<u8>,
    len: u64,
}

struct FrameParser {
    direction: Direction,
    started: Instant,
    cap: usize,
    sink: Messages,
    state: State,
    header: Vec<u8>,
    /// The data message in progress (text or binary, across continuation frames).
    message: Option<Partial>,
    /// A control frame in progress (they may arrive between a message's fragments).
    control: Option<Partial>,
}

impl FrameParser {
    fn new(direction: Direction, started: Instant, cap: usize, sink: Messages) -> FrameParser {
        FrameParser {
            direction,
            started,
            cap,
            sink,
            state: State::Header,
            header: Vec::with_capacity(14),
            message: None,
            control: None,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Header => {
                    // One byte at a time: a head is at most 14 bytes, and none of the payload is taken.
                    self.header.push(data[0]);
                    data = &data[1..];
                    if let Decoded::Head { head, .. } = FrameHead::decode(&self.header) {
                        self.header.clear();
                        self.start_frame(head);
                    }
                }
                State::Payload { opcode, mask, remaining, offset, .. } => {
                    let n = (*remaining).min(data.len() as u64) as usize;
                    let mut chunk = data[..n].to_vec();
                    if let Some(key) = mask {
                        apply_mask(&mut chunk, *key, *offset);
                    }
                    *remaining -= n as u64;
                    *offset += n as u64;
                    let target = if *opcode >= 8 { &mut self.control } else { &mut self.message };
                    if let Some(p) = target {
                        let room = self.cap.saturating_sub(p.data.len());
                        p.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        p.len += n as u64;
                    }
                    data = &data[n..];
                    if *remaining == 0 {
                        self.end_frame();
                    }
                }
            }
        }
    }

    /// A whole head has come: open the frame (and end it at once if it is empty).
    fn start_frame(&mut self, head: FrameHead) {
        let FrameHead { fin, opcode, mask, payload_len: len, .. } = head;
        let kind = match opcode {
            0 if self.message.is_some() => None,
            1 => Some(WsOpcode::Text),
            2 => Some(WsOpcode::Binary),
            8 => Some(WsOpcode::Close),
            9 => Some(WsOpcode::Ping),
            10 => Some(WsOpcode::Pong),
            _ => {
                self.state = State::Lost;
                return;
            }
        };
        if let Some(kind) = kind {
            let partial = Some(Partial { opcode: kind, data: Vec::new(), len: 0 });
            if opcode >= 8 {
                self.control = partial;
            } else {
                self.message = partial;
            }
        }
        self.state = State::Payload { opcode, fin, mask, remaining: len, offset: 0 };
        if len == 0 {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        let State::Payload { opcode, fin, .. } = self.state else { return };
        self.state = State::Header;
        let done = if opcode >= 8 {
            self.control.take()
        } else if fin {
            self.message.take()
        } else {
            None
        };
        if let Some(p) = done {
            let mut sink = self.sink.lock().expect("ws messages lock");
            if sink.len() < MAX_MESSAGES {
                sink.push(WsMessage {
                    at: self.started.elapsed(),
                    direction: self.direction,
                    opcode: p.opcode,
                    data: p.data,
                    len: p.len,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    fn parse(bytes: &[u8], step: usize, cap: usize) -> Vec<WsMessage> {
        let sink = Messages::default();
        let mut p = FrameParser::new(Direction::Up, Instant::now(), cap, sink.clone());
        for chunk in bytes.chunks(step) {
            p.feed(chunk);
        }
        let v = sink.lock().unwrap().clone();
        v
    }

    #[test]
    fn masked_fragmented_messages_with_control_frames_between_at_any_split() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut wire = frame(true, 1, b"hello", Some([1, 2, 3, 4]));
        wire.extend(frame(false, 2, &big[..30_000], Some([9, 8, 7, 6])));
        wire.extend(frame(true, 9, b"ping!", Some([5, 5, 5, 5])));
        wire.extend(frame(true, 0, &big[30_000..], Some([4, 3, 2, 1])));
        wire.extend(frame(true, 1, b"", None));
        wire.extend(frame(true, 8, &[3, 232], None));
        for step in [1, 3, 7, 4096, wire.len()] {
            let m = parse(&wire, step, 1 << 20);
            let kinds: Vec<_> = m.iter().map(|x| x.opcode).collect();
            assert_eq!(
                kinds,
                [WsOpcode::Text, WsOpcode::Ping, WsOpcode::Binary, WsOpcode::Text, WsOpcode::Close],
                "step {step}"
            );
            assert_eq!(m[0].data, b"hello");
            assert_eq!(m[1].data, b"ping!");
            assert_eq!(m[2].data, big, "unmasked and reassembled at step {step}");
            assert_eq!(m[3].len, 0);
        }
    }

    #[test]
    fn payloads_are_capped_and_messages_bounded() {
        let m = parse(&frame(true, 2, &[7u8; 5000], None), 100, 10);
        assert_eq!((m[0].data.len(), m[0].len), (10, 5000));
        let many: Vec<u8> = (0..MAX_MESSAGES + 50).flat_map(|_| frame(true, 1, b"x", None)).collect();
        assert_eq!(parse(&many, 4096, 10).len(), MAX_MESSAGES);
    }

    #[test]
    fn a_stream_that_is_not_websocket_stops_the_parser_only() {
        let m = parse(b"\x03garbage that is no frame", 5, 10);
        assert!(m.is_empty());
    }
}
