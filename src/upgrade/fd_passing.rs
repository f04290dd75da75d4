//! File descriptors over a Unix stream socket: `sendmsg`/`recvmsg` with one `SCM_RIGHTS` control
//! message, the only way one process can give another a socket it already has open.
//!
//! Written over `libc` rather than taken from a crate: the two calls and their control buffer are
//! all we need, and `nix` (which Cloudflare's `shellflip`/`ecdysis` build on) would be a second
//! binding of the same system calls next to the `libc` we already use.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one message carries: a server has at most four listeners (main, SOCKS,
/// metrics, inspector); the room left is slack, and a peer sending more is cut off (`MSG_CTRUNC`).
pub const MAX_FDS: usize = 16;

/// Sends `bytes` with `fds` attached to the first of them. The rest of `bytes`, should the kernel
/// take only part, follows as plain writes (descriptors travel once, with the first byte).
pub fn send(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        let mut iov = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
        let mut control = ControlBuffer::new();
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 && !raw.is_empty() {
            let payload = std::mem::size_of_val(raw.as_slice());
            // SAFETY: CMSG_SPACE only computes a size.
            let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
            msg.msg_control = control.bytes.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: the control buffer is aligned and CMSG_SPACE(MAX_FDS fds) long, more than
            // `space`, so CMSG_FIRSTHDR is non-null and the header and `payload` bytes of data
            // written through it stay inside the buffer.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
                std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw.len());
            }
        }
        // SAFETY: `msg` points at `iov` and `control`, both alive for the call; the descriptors
        // in it are borrowed from the caller, who keeps them open across the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Receives into `buf`, appending any descriptors that came with the bytes to `fds` (close-on-exec,
/// so a later child process does not inherit them). `Ok(0)`: the peer closed.
///
/// A message whose descriptors did not fit is an error: the kernel closed the ones it dropped, and a
/// listener set with holes in it is not one to serve with.
pub fn recv(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    loop {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = ControlBuffer::new();
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes.as_mut_ptr().cast();
        msg.msg_controllen = control.bytes.len() as _;
        // SAFETY: `msg` points at `buf` (through `iov`) and `control`, both alive and writable for
        // their stated lengths during the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel filled `control` up to msg_controllen; CMSG_FIRSTHDR/CMSG_NXTHDR walk
        // only within that, and each SCM_RIGHTS entry holds `(cmsg_len - CMSG_LEN(0)) / 4` fresh
        // descriptors that this process now owns, read unaligned since CMSG_DATA need not be
        // aligned for i32.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the peer sent more than {MAX_FDS} descriptors in one message"),
            ));
        }
        return Ok(n as usize);
    }
}

/// Room for one `SCM_RIGHTS` message of [`MAX_FDS`] descriptors, aligned as `cmsghdr` needs.
#[repr(C, align(8))]
struct ControlBuffer {
    bytes: [u8; 128],
}

impl ControlBuffer {
    fn new() -> Self {
        // CMSG_SPACE(16 * 4) is 80 on 64-bit Linux: 128 leaves room on every ABI.
        ControlBuffer { bytes: [0; 128] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_sent_is_a_working_copy_of_the_same_file() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut left, right) = UnixStream::pair().unwrap();
        send(&a, b"x", &[right.as_fd()]).unwrap();
        drop(right);
        let (mut buf, mut fds) = ([0u8; 8], Vec::new());
        assert_eq!(recv(&b, &mut buf, &mut fds).unwrap(), 1);
        assert_eq!(fds.len(), 1);
        let mut got = UnixStream::from(fds.pop().unwrap());
        got.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        left.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"hi");
    }

    #[test]
    fn plain_bytes_come_without_descriptors_and_a_close_reads_zero() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, b"abc", &[]).unwrap();
        drop(a);
        let (mut buf, mut fds) = ([0u8; 8], Vec::new());
        assert_eq!(recv(&b, &mut buf, &mut fds).unwrap(), 3);
        assert_eq!(recv(&b, &mut buf, &mut fds).unwrap(), 0);
        assert!(fds.is_empty());
    }
}
