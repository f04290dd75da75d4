//! The three messages of a handover and their bytes, side by side.
//!
//! ```text
//! successor -> running:   hello PID
//! running   -> successor: offer PID \n ROLE ADDR \n ...   (+ one listening socket per line, SCM_RIGHTS)
//! successor -> running:   ready PID                      (it accepts now; the running one drains)
//! ```
//!
//! Each message is a frame: a 2-byte big-endian length, then that much UTF-8 starting with
//! [`VERSION`]. Frames are at most [`MAX_FRAME`] bytes and a peer is never trusted further: a bad
//! length, version or line is an error, not a panic, so an unrelated program on the socket, or a
//! binary speaking a later protocol, is told apart from a successor.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::fd_passing;
use super::role::Role;

/// Protocol name and version, the first word of every frame. A binary that changes the messages
/// changes the number, so an upgrade across it fails with a clear error instead of a misreading.
pub const VERSION: &str = "tunnelkit-upgrade/1";

/// Largest frame accepted: an offer of [`fd_passing::MAX_FDS`] listeners is under 1 KiB.
pub const MAX_FRAME: usize = 4096;

/// One message of the handover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A successor introduces itself.
    Hello { pid: u32 },
    /// The running process's listeners, in the order of the descriptors sent with it.
    Offer { pid: u32, listeners: Vec<(Role, SocketAddr)> },
    /// The successor accepts on every listener now.
    Ready { pid: u32 },
}

impl Message {
    /// The frame's text, without the length prefix.
    pub fn to_text(&self) -> String {
        match self {
            Message::Hello { pid } => format!("{VERSION} hello {pid}"),
            Message::Ready { pid } => format!("{VERSION} ready {pid}"),
            Message::Offer { pid, listeners } => {
                let mut s = format!("{VERSION} offer {pid}");
                for (role, addr) in listeners {
                    s.push_str(&format!("\n{role} {addr}"));
                }
                s
            }
        }
    }

    /// Parses a frame's text.
    pub fn parse(text: &str) -> Result<Message, String> {
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let mut words = first.split(' ');
        let version = words.next().unwrap_or_default();
        if version != VERSION {
            return Err(format!("expected protocol {VERSION}, got {:?}", truncate(first)));
        }
        let (kind, pid) = match (words.next(), words.next().map(str::parse::<u32>), words.next()) {
            (Some(kind), Some(Ok(pid)), None) => (kind, pid),
            _ => return Err(format!("malformed message {:?}", truncate(first))),
        };
        let message = match kind {
            "hello" => Message::Hello { pid },
            "ready" => Message::Ready { pid },
            "offer" => {
                let listeners = lines.map(parse_listener).collect::<Result<Vec<_>, _>>()?;
                return Ok(Message::Offer { pid, listeners });
            }
            _ => return Err(format!("unknown message {:?}", truncate(kind))),
        };
        match lines.next() {
            None => Ok(message),
            Some(_) => Err(format!("unexpected lines after {kind}")),
        }
    }

    /// Writes the message with `fds` attached.
    pub fn write(&self, sock: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let text = self.to_text();
        if text.len() > MAX_FRAME {
            return Err(invalid(format!("message of {} bytes is over {MAX_FRAME}", text.len())));
        }
        let mut frame = (text.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(text.as_bytes());
        fd_passing::send(sock, &frame, fds)
    }

    /// Reads one message and the descriptors that came with it. The socket's read timeout bounds
    /// each read; the peer closing first is an `UnexpectedEof`.
    pub fn read(sock: &UnixStream) -> io::Result<(Message, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let mut len = [0u8; 2];
        read_exact(sock, &mut len, &mut fds)?;
        let len = u16::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("frame of {len} bytes is over {MAX_FRAME}")));
        }
        let mut text = vec![0u8; len];
        read_exact(sock, &mut text, &mut fds)?;
        let text = String::from_utf8(text).map_err(|_| invalid("frame is not UTF-8".into()))?;
        let message = Message::parse(&text).map_err(invalid)?;
        Ok((message, fds))
    }
}

fn parse_listener(line: &str) -> Result<(Role, SocketAddr), String> {
    let bad = || format!("malformed listener line {:?}", truncate(line));
    let (role, addr) = line.split_once(' ').ok_or_else(bad)?;
    let role = Role::from_name(role).ok_or_else(bad)?;
    Ok((role, addr.parse().map_err(|_| bad())?))
}

/// Fills `buf` exactly, collecting descriptors as they arrive (with the first byte of a frame).
fn read_exact(sock: &UnixStream, mut buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<()> {
    while !buf.is_empty() {
        match fd_passing::recv(sock, buf, fds)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection")),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// At most 64 characters of untrusted text, for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let offer = Message::Offer {
            pid: 42,
            listeners: vec![
                (Role::Listen, "127.0.0.1:3128".parse().unwrap()),
                (Role::Socks, "[::1]:1080".parse().unwrap()),
            ],
        };
        for m in [Message::Hello { pid: 7 }, Message::Ready { pid: 8 }, offer] {
            let (a, b) = UnixStream::pair().unwrap();
            m.write(&a, &[]).unwrap();
            assert_eq!(Message::read(&b).unwrap().0, m);
        }
    }

    #[test]
    fn another_protocol_or_garbage_is_an_error_naming_what_came() {
        let e = Message::parse("HTTP/1.1 200 OK").unwrap_err();
        assert!(e.contains("expected protocol tunnelkit-upgrade/1"), "{e}");
        assert!(Message::parse("tunnelkit-upgrade/1 hello x").is_err());
        assert!(Message::parse("tunnelkit-upgrade/1 shout 1").is_err());
        assert!(Message::parse("tunnelkit-upgrade/1 offer 1\nwhat 1.2.3.4:5").is_err());
        assert!(Message::parse("tunnelkit-upgrade/1 ready 1\nmore").is_err());
    }

    #[test]
    fn an_oversized_frame_or_an_early_close_is_refused_without_reading_it() {
        let (a, b) = UnixStream::pair().unwrap();
        fd_passing::send(&a, &[0xff, 0xff, b'x'], &[]).unwrap();
        assert_eq!(Message::read(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let (a, b) = UnixStream::pair().unwrap();
        fd_passing::send(&a, &[0, 10, b'x'], &[]).unwrap();
        drop(a);
        assert_eq!(Message::read(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
