//! Writing HTTP/1 heads: the counterpart of [`super::head`]'s parsing, used by every message we
//! forward. Values are written as they were received (the parser already refused control bytes).

/// Appends `name: value\r\n`.
pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the `Transfer-Encoding` of a forwarded message: the content codings it arrived with
/// (see [`super::head::content_transfer_codings`]), then `chunked` if this hop is chunked. Nothing
/// when both are absent.
pub fn transfer_encoding(out: &mut Vec<u8>, codings: &[&[u8]], chunked: bool) {
    if codings.is_empty() && !chunked {
        return;
    }
    out.extend_from_slice(b"Transfer-Encoding: ");
    for (i, c) in codings.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(c);
    }
    if chunked {
        if !codings.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"chunked");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_encoding_keeps_codings_and_adds_chunked_last() {
        let te = |codings: &[&[u8]], chunked| {
            let mut out = Vec::new();
            transfer_encoding(&mut out, codings, chunked);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(te(&[b"gzip"], true), "Transfer-Encoding: gzip, chunked\r\n");
        assert_eq!(te(&[b"gzip", b"br"], false), "Transfer-Encoding: gzip, br\r\n");
        assert_eq!(te(&[], true), "Transfer-Encoding: chunked\r\n");
        assert_eq!(te(&[], false), "");
    }
}
