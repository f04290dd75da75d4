//! The payloads of the native tunnel's frames, one typed [`Message`] per frame type with its encoder and
//! decoder side by side, so that reading this file tells the whole wire shape of every message
//! (`docs/protocol.md` is the contract; a test below reads it and checks these constants against it).
//!
//! Ownership: [`super::frame`] owns the 22-byte header (type, flags, stream, seq, ack) and nothing else;
//! this module owns what follows it. No other file reads or writes a payload byte: the session, the
//! client and the server build a `Message` and call [`Message::encode`], or call [`Message::decode`] on a
//! decoded [`Frame`]. DATA is the one exception to "build a message": its bytes are copied once, straight
//! from the application into the frame that goes on the wire, so [`data`] and [`append_data`] write
//! into that frame directly.
//!
//! Decoding never panics: every length is checked before it is read, and a payload that is too short,
//! too long for a fixed-size message, or names an unknown version or mode is a [`WireError`].

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::{payload_len, peek_fin, peek_kind, Frame, FrameType, FLAG_FIN};
use super::id::{ResumeSecret, TunnelId};
use super::params::Mode;

/// The protocol version HELLO carries; a server refuses any other (REFUSED code 5).
pub const VERSION: u8 = 1;
/// Bytes of a tunnel id and of a resume secret.
pub const ID_LEN: usize = 16;
/// HELLO: `version u8`, `mode u8`, `keep_broken_ms u64`.
pub const HELLO_LEN: usize = 1 + 1 + 8;
/// WELCOME: `tunnel_id [16]`, `resume_secret [16]`, `keep_broken_ms u64`, `max_frame u32`,
/// `max_streams u32`, `replay_bytes u64`, `heartbeat_ms u32`.
pub const WELCOME_LEN: usize = ID_LEN + ID_LEN + 8 + 4 + 4 + 8 + 4;
/// RESUME: `tunnel_id [16]`, `resume_secret [16]`.
pub const RESUME_LEN: usize = ID_LEN + ID_LEN;
/// OPEN starts with `target_len u16`.
pub const OPEN_TARGET_LEN_SIZE: usize = 2;
/// Most an OPEN adds to a frame beyond `max_frame` of 0-RTT data: its target and the target's length.
pub const OPEN_EXTRA: usize = OPEN_TARGET_LEN_SIZE + u16::MAX as usize;
/// WINDOW: `credit u32`.
pub const WINDOW_LEN: usize = 4;
/// RST and REFUSED start with `code u16`, then a UTF-8 reason.
pub const CODE_LEN: usize = 2;
/// BOUND starts with `ok u8`.
pub const BOUND_OK_LEN: usize = 1;
/// PING and PONG: `nonce u64`.
pub const NONCE_LEN: usize = 8;
/// Reasons (RST, REFUSED) are cut to this many bytes: a reason is for a log line, and a long one would
/// only make control frames (which jump ahead of data) expensive.
pub const MAX_REASON_LEN: usize = 512;
/// Largest payload the server accepts in the first frame (HELLO or RESUME, both far shorter).
pub const MAX_CLIENT_HANDSHAKE: usize = 64;
/// Largest payload the client accepts in the server's first frame (WELCOME, or REFUSED with a reason).
pub const MAX_SERVER_HANDSHAKE: usize = 4096;

/// REFUSED codes (`docs/protocol.md`, "Server limits").
pub mod refused {
    /// Unknown tunnel or wrong secret (one answer for both, so ids cannot be probed).
    pub const UNKNOWN: u16 = 1;
    /// The tunnel belongs to another token.
    pub const PRINCIPAL: u16 = 3;
    /// A limit was reached.
    pub const LIMIT: u16 = 4;
    /// Unsupported version or malformed handshake.
    pub const VERSION: u16 = 5;
}

/// RST codes (the wire values of `docs/protocol.md`).
pub mod rst {
    /// The target is not allowed by the server's policy.
    pub const POLICY: u16 = 1;
    /// The target could not be reached.
    pub const DIAL_FAILED: u16 = 2;
    /// Dialling the target timed out.
    pub const TIMEOUT: u16 = 3;
    /// A limit (streams per tunnel, single mode) was reached.
    pub const LIMIT: u16 = 4;
    /// The tunnel ended while the stream was open.
    pub const TUNNEL_ENDED: u16 = 5;
    /// The application dropped the stream without reading to the end.
    pub const CANCEL: u16 = 6;
    /// The peer sent more than its credit allowed.
    pub const FLOW_CONTROL: u16 = 7;
}

/// Why a payload is not the message its frame type says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the message's fixed part.
    #[error("{kind:?} payload of {got} bytes is shorter than its {need} bytes")]
    Short {
        /// The frame type.
        kind: FrameType,
        /// Bytes the message needs.
        need: usize,
        /// Bytes there were.
        got: usize,
    },
    /// A fixed-size message with bytes left over.
    #[error("{kind:?} payload of {got} bytes, expected exactly {want}")]
    Length {
        /// The frame type.
        kind: FrameType,
        /// Its size.
        want: usize,
        /// Bytes there were.
        got: usize,
    },
    /// HELLO names a version this end does not speak.
    #[error("unsupported tunnel protocol version {0}")]
    Version(u8),
    /// HELLO names a mode that does not exist.
    #[error("unknown tunnel mode {0}")]
    Mode(u8),
    /// BOUND's `ok` byte is neither 0 nor 1.
    #[error("BOUND with ok byte {0}, expected 0 or 1")]
    BoundFlag(u8),
}

/// What the server grants in WELCOME (the wire values; the client turns them into `LinkParams`).
#[derive(Debug, Clone, Copy)]
pub struct Welcome {
    /// The tunnel's name.
    pub id: TunnelId,
    /// The capability to resume it.
    pub secret: ResumeSecret,
    /// Granted hold time when broken.
    pub keep_broken: Duration,
    /// Largest payload of a frame.
    pub max_frame: u32,
    /// Streams open at once.
    pub max_streams: u32,
    /// Replay buffer size, both sides.
    pub replay_bytes: u64,
    /// Heartbeat period.
    pub heartbeat: Duration,
}

/// One frame's payload, typed. The header fields (stream id, FIN, seq, ack) stay in [`Frame`].
#[derive(Debug, Clone)]
pub enum Message {
    /// Client asks for a new tunnel (the version is always [`VERSION`]).
    Hello {
        /// Multi or single.
        mode: Mode,
        /// Requested hold time.
        keep_broken: Duration,
    },
    /// Server grants a tunnel.
    Welcome(Welcome),
    /// Client reattaches to a broken tunnel; the header's ack says what it has received.
    Resume {
        /// Which tunnel.
        id: TunnelId,
        /// Its secret.
        secret: ResumeSecret,
    },
    /// Server accepted the resume; the header's ack says what it has received.
    Resumed,
    /// Server refused a hello or resume (codes in [`refused`]).
    Refused {
        /// Why, as a number.
        code: u16,
        /// Why, in words.
        reason: String,
    },
    /// Open a stream to `target`, with optional 0-RTT data.
    Open {
        /// `host:port`, or `listen:<id>` for a stream from a remote listener.
        target: String,
        /// Bytes sent before the open was answered (count against the window).
        data: Bytes,
    },
    /// Stream bytes (FIN is a header flag).
    Data(Bytes),
    /// More credit for the stream's sender.
    Window {
        /// Bytes.
        credit: u32,
    },
    /// Abort a stream (codes in [`rst`]).
    Rst {
        /// Why, as a number.
        code: u16,
        /// Why, in words.
        reason: String,
    },
    /// Client asks the server to listen (`-R`); the stream field is the request id.
    Listen {
        /// `ip:port` as the client wrote it.
        bind: String,
    },
    /// Server's answer to LISTEN: the bound address, or the refusal in words.
    Bound(Result<String, String>),
    /// The accepting side reached the stream's target.
    Connected,
    /// Bare cumulative ack (all in the header).
    Ack,
    /// Heartbeat request.
    Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// Heartbeat answer.
    Pong {
        /// The PING's nonce.
        nonce: u64,
    },
    /// Orderly end of the tunnel.
    Close,
}

/// Reasons are informational: a peer's bytes that are not UTF-8 are shown, not refused.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `reason` cut to [`MAX_REASON_LEN`] bytes on a character boundary.
fn clip(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

fn need(kind: FrameType, p: &Bytes, n: usize) -> Result<(), WireError> {
    if p.len() < n {
        return Err(WireError::Short { kind, need: n, got: p.len() });
    }
    Ok(())
}

fn exactly(kind: FrameType, p: &Bytes, n: usize) -> Result<(), WireError> {
    need(kind, p, n)?;
    if p.len() != n {
        return Err(WireError::Length { kind, want: n, got: p.len() });
    }
    Ok(())
}

fn id16(p: &mut Bytes) -> [u8; ID_LEN] {
    let mut b = [0u8; ID_LEN];
    p.copy_to_slice(&mut b);
    b
}

impl Message {
    /// The frame type this message travels in.
    pub fn kind(&self) -> FrameType {
        match self {
            Message::Hello { .. } => FrameType::Hello,
            Message::Welcome(_) => FrameType::Welcome,
            Message::Resume { .. } => FrameType::Resume,
            Message::Resumed => FrameType::Resumed,
            Message::Refused { .. } => FrameType::Refused,
            Message::Open { .. } => FrameType::Open,
            Message::Data(_) => FrameType::Data,
            Message::Window { .. } => FrameType::Window,
            Message::Rst { .. } => FrameType::Rst,
            Message::Listen { .. } => FrameType::Listen,
            Message::Bound(_) => FrameType::Bound,
            Message::Connected => FrameType::Connected,
            Message::Ack => FrameType::Ack,
            Message::Ping { .. } => FrameType::Ping,
            Message::Pong { .. } => FrameType::Pong,
            Message::Close => FrameType::Close,
        }
    }

    /// Encodes as a frame on `stream` with no flags; seq and ack are zero until [`super::frame::stamp`].
    pub fn encode(&self, stream: u32) -> BytesMut {
        match self {
            Message::Hello { mode, keep_broken } => {
                let mut f = Frame::start(FrameType::Hello, 0, stream, HELLO_LEN);
                f.put_u8(VERSION);
                f.put_u8(mode.to_u8());
                f.put_u64(keep_broken.as_millis() as u64);
                f
            }
            Message::Welcome(w) => {
                let mut f = Frame::start(FrameType::Welcome, 0, stream, WELCOME_LEN);
                f.put_slice(&w.id.0);
                f.put_slice(&w.secret.0);
                f.put_u64(w.keep_broken.as_millis() as u64);
                f.put_u32(w.max_frame);
                f.put_u32(w.max_streams);
                f.put_u64(w.replay_bytes);
                f.put_u32(w.heartbeat.as_millis() as u32);
                f
            }
            Message::Resume { id, secret } => {
                let mut f = Frame::start(FrameType::Resume, 0, stream, RESUME_LEN);
                f.put_slice(&id.0);
                f.put_slice(&secret.0);
                f
            }
            Message::Refused { code, reason } | Message::Rst { code, reason } => {
                let reason = clip(reason);
                let mut f = Frame::start(self.kind(), 0, stream, CODE_LEN + reason.len());
                f.put_u16(*code);
                f.put_slice(reason.as_bytes());
                f
            }
            Message::Open { target, data } => {
                // `Session::open` refuses longer targets before it gets here; the cut keeps the
                // length prefix and the bytes that follow it in agreement whatever the caller did.
                let t = &target.as_bytes()[..target.len().min(u16::MAX as usize)];
                let mut f =
                    Frame::start(FrameType::Open, 0, stream, OPEN_TARGET_LEN_SIZE + t.len() + data.len());
                f.put_u16(t.len() as u16);
                f.put_slice(t);
                f.put_slice(data);
                f
            }
            Message::Data(b) => data(stream, b),
            Message::Window { credit } => {
                let mut f = Frame::start(FrameType::Window, 0, stream, WINDOW_LEN);
                f.put_u32(*credit);
                f
            }
            Message::Listen { bind } => {
                let mut f = Frame::start(FrameType::Listen, 0, stream, bind.len());
                f.put_slice(bind.as_bytes());
                f
            }
            Message::Bound(r) => {
                let (ok, text) = match r {
                    Ok(addr) => (1, addr),
                    Err(why) => (0, why),
                };
                let mut f = Frame::start(FrameType::Bound, 0, stream, BOUND_OK_LEN + text.len());
                f.put_u8(ok);
                f.put_slice(text.as_bytes());
                f
            }
            Message::Ping { nonce } | Message::Pong { nonce } => {
                let mut f = Frame::start(self.kind(), 0, stream, NONCE_LEN);
                f.put_u64(*nonce);
                f
            }
            Message::Resumed | Message::Connected | Message::Ack | Message::Close => {
                Frame::start(self.kind(), 0, stream, 0)
            }
        }
    }

    /// Decodes the payload of a frame of type `kind`.
    pub fn decode(kind: FrameType, mut p: Bytes) -> Result<Message, WireError> {
        Ok(match kind {
            FrameType::Hello => {
                // Longer is accepted: a later client may append fields an older server ignores.
                need(kind, &p, HELLO_LEN)?;
                let version = p.get_u8();
                if version != VERSION {
                    return Err(WireError::Version(version));
                }
                let m = p.get_u8();
                let mode = Mode::from_u8(m).ok_or(WireError::Mode(m))?;
                Message::Hello { mode, keep_broken: Duration::from_millis(p.get_u64()) }
            }
            FrameType::Welcome => {
                // Longer is accepted, like HELLO, so a later server may add fields.
                need(kind, &p, WELCOME_LEN)?;
                Message::Welcome(Welcome {
                    id: TunnelId(id16(&mut p)),
                    secret: ResumeSecret(id16(&mut p)),
                    keep_broken: Duration::from_millis(p.get_u64()),
                    max_frame: p.get_u32(),
                    max_streams: p.get_u32(),
                    replay_bytes: p.get_u64(),
                    heartbeat: Duration::from_millis(p.get_u32() as u64),
                })
            }
            FrameType::Resume => {
                exactly(kind, &p, RESUME_LEN)?;
                Message::Resume { id: TunnelId(id16(&mut p)), secret: ResumeSecret(id16(&mut p)) }
            }
            FrameType::Refused | FrameType::Rst => {
                need(kind, &p, CODE_LEN)?;
                let code = p.get_u16();
                let reason = text(&p);
                match kind {
                    FrameType::Rst => Message::Rst { code, reason },
                    _ => Message::Refused { code, reason },
                }
            }
            FrameType::Open => {
                need(kind, &p, OPEN_TARGET_LEN_SIZE)?;
                let tlen = p.get_u16() as usize;
                if p.len() < tlen {
                    return Err(WireError::Short {
                        kind,
                        need: OPEN_TARGET_LEN_SIZE + tlen,
                        got: OPEN_TARGET_LEN_SIZE + p.len(),
                    });
                }
                let target = text(&p.split_to(tlen));
                Message::Open { target, data: p }
            }
            FrameType::Data => Message::Data(p),
            FrameType::Window => {
                exactly(kind, &p, WINDOW_LEN)?;
                Message::Window { credit: p.get_u32() }
            }
            FrameType::Listen => Message::Listen { bind: text(&p) },
            FrameType::Bound => {
                need(kind, &p, BOUND_OK_LEN)?;
                let t = text(&p[BOUND_OK_LEN..]);
                match p.get_u8() {
                    1 => Message::Bound(Ok(t)),
                    0 => Message::Bound(Err(t)),
                    other => return Err(WireError::BoundFlag(other)),
                }
            }
            FrameType::Ping | FrameType::Pong => {
                exactly(kind, &p, NONCE_LEN)?;
                let nonce = p.get_u64();
                match kind {
                    FrameType::Ping => Message::Ping { nonce },
                    _ => Message::Pong { nonce },
                }
            }
            FrameType::Resumed | FrameType::Connected | FrameType::Ack | FrameType::Close => {
                exactly(kind, &p, 0)?;
                match kind {
                    FrameType::Resumed => Message::Resumed,
                    FrameType::Connected => Message::Connected,
                    FrameType::Ack => Message::Ack,
                    _ => Message::Close,
                }
            }
        })
    }

    /// Decodes a whole frame's payload.
    pub fn of(frame: &Frame) -> Result<Message, WireError> {
        Message::decode(frame.kind, frame.payload.clone())
    }
}

/// A DATA frame on `stream` carrying `bytes`, its header written here so the bytes are copied once.
pub fn data(stream: u32, bytes: &[u8]) -> BytesMut {
    let mut f = Frame::start(FrameType::Data, 0, stream, bytes.len());
    f.put_slice(bytes);
    f
}

/// Writes a DATA header on `stream` into the first [`HEADER_LEN`](super::frame::HEADER_LEN) bytes of `frame`, whose payload
/// was read straight in behind them (`net::relay` reading into a tunnel stream's own buffer).
pub fn write_data_head(frame: &mut [u8], stream: u32) {
    Frame::write_head(frame, FrameType::Data, 0, stream);
}

/// A bare half-close: an empty DATA with FIN, ordered after the stream's data.
pub fn fin(stream: u32) -> BytesMut {
    Frame::start(FrameType::Data, FLAG_FIN, stream, 0)
}

/// Appends `bytes` to an encoded frame still waiting to be sent, if it is a DATA without FIN with room
/// for them under `max_frame`: small writes then share a frame instead of costing a header each.
pub fn append_data(last: &mut BytesMut, bytes: &[u8], max_frame: usize) -> bool {
    let joinable = peek_kind(last) == Some(FrameType::Data)
        && !peek_fin(last)
        && payload_len(last) + bytes.len() <= max_frame;
    if joinable {
        last.put_slice(bytes);
    }
    joinable
}

/// The stream bytes an encoded frame carries: its payload if it is DATA, else 0 (what the stream
/// memory budget counts; OPEN's 0-RTT bytes are not queued through it).
pub fn data_len(encoded: &[u8]) -> usize {
    match peek_kind(encoded) {
        Some(FrameType::Data) => payload_len(encoded),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
