//! The client's first WebSocket frame, read off the raw connection instead of through tungstenite, so
//! that a cluster server can look at a `RESUME` and still hand the connection, byte for byte, to the
//! server that owns the tunnel (`cluster`). Whatever is read is kept: when the connection stays
//! here, the tunnel's WebSocket (`tunnel::ws`) starts from the same bytes and parses them itself.
//!
//! Only the shape a tunnel handshake has is decoded: one final, masked, binary frame no longer than
//! the handshake limit. Anything else (a ping first, a fragment, a huge length) is left to the
//! WebSocket and the normal handshake, which refuse it as they always have.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::http::ws_frame::{apply_mask, opcode, Decoded, FrameHead};

/// What was read of the first frame.
pub struct FirstFrame {
    /// Every byte read from the connection, exactly as the client sent it (possibly more than the frame).
    pub raw: BytesMut,
    /// The unmasked payload, when the frame is a final binary frame within the limit.
    pub payload: Option<Bytes>,
}

/// Reads until the first frame is complete or known not to be one we decode. An error or EOF before
/// that is an error: the connection is of no further use.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, max_payload: usize) -> std::io::Result<FirstFrame> {
    let mut raw = BytesMut::with_capacity(256);
    loop {
        if let Decoded::Head { head, len } = FrameHead::decode(&raw) {
            let Some(mask) = head.mask.filter(|_| is_final_binary(&head, max_payload)) else {
                return Ok(FirstFrame { raw, payload: None });
            };
            let end = len + head.payload_len as usize;
            if raw.len() >= end {
                let mut payload = raw[len..end].to_vec();
                apply_mask(&mut payload, mask, 0);
                return Ok(FirstFrame { raw, payload: Some(payload.into()) });
            }
        }
        if stream.read_buf(&mut raw).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// One final binary frame with no extension bits, within the limit.
fn is_final_binary(head: &FrameHead, max_payload: usize) -> bool {
    head.fin && head.rsv == 0 && head.opcode == opcode::BINARY && head.payload_len <= max_payload as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as tungstenite would send it.
    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> std::io::Result<FirstFrame> {
        // One byte per read: every partial state is passed through.
        let mut reader = tokio_test_reader(bytes);
        read(&mut reader, max).await
    }

    fn tokio_test_reader(bytes: Vec<u8>) -> impl AsyncRead + Unpin {
        let chunks: Vec<std::io::Result<Vec<u8>>> = bytes.into_iter().map(|b| Ok(vec![b])).collect();
        tokio_util::io::StreamReader::new(futures_util::stream::iter(
            chunks.into_iter().map(|c| c.map(bytes::Bytes::from)),
        ))
    }

    #[tokio::test]
    async fn a_binary_frame_is_unmasked_and_its_bytes_kept() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = masked(2, &payload);
            let got = read_all(frame.clone(), 100_000).await.unwrap();
            assert_eq!(got.payload.as_deref(), Some(&payload[..]), "len {len}");
            assert_eq!(&got.raw[..], &frame[..]);
        }
    }

    #[tokio::test]
    async fn other_frames_are_left_to_the_websocket_with_what_was_read() {
        let ping = masked(9, b"hi");
        let got = read_all(ping, 64).await.unwrap();
        assert!(got.payload.is_none());
        assert_eq!(got.raw.len(), 6, "stops at the end of the head, reads no further");
        let big = masked(2, &[0; 65]);
        assert!(read_all(big, 64).await.unwrap().payload.is_none());
        let mut unmasked = masked(2, b"x");
        unmasked[1] &= 0x7f;
        assert!(read_all(unmasked, 64).await.unwrap().payload.is_none());
        let mut fragment = masked(2, b"x");
        fragment[0] &= 0x7f;
        assert!(read_all(fragment, 64).await.unwrap().payload.is_none());
    }

    #[tokio::test]
    async fn a_connection_ending_mid_frame_is_an_error() {
        let frame = masked(2, b"hello");
        let err = read_all(frame[..frame.len() - 1].to_vec(), 64).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
