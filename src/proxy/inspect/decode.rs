//! A captured body made readable: its `Content-Encoding` undone ([`Decoded`]: gzip, deflate in
//! both its zlib and raw forms, br, zstd, and chains such as `gzip, br`), then shown as text when it
//! is text and as a hex dump when it is not ([`Shown`]).
//!
//! Everything here is bounded, because a body is whatever a stranger's server sent: the decoded
//! output stops at a cap (`--inspect-body-max`), so a 1 MiB gzip that inflates to 1 GiB costs 1 MiB
//! and reads as truncated; zstd frames that ask for a window over 8 MiB are refused (RFC 9659 §3
//! makes 8 MiB the most an HTTP sender may use); and the hex dump shows at most [`HEX_MAX`] bytes.
//! A body that cannot be decoded is never an error: it is shown as sent, with a note that says why.

use std::io::Read;

use base64::Engine;
use serde::Serialize;

use super::flow::{CapturedBody, Header};

/// The most bytes a hex dump shows: 64 KiB is 4096 lines of 16, more than anyone scrolls through,
/// and about 300 KiB of text in the page.
pub const HEX_MAX: usize = 64 * 1024;

/// The largest zstd window accepted (RFC 9659 §3: HTTP senders use at most 8 MiB).
const ZSTD_WINDOW_MAX: u64 = 8 * 1024 * 1024;

/// A body with its content codings undone, as far as they could be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The decoded bytes (at most the cap), or the bytes as sent when decoding failed.
    pub bytes: Vec<u8>,
    /// The codings that were undone, in the order the sender applied them (`["gzip"]`); empty when
    /// the bytes are as sent.
    pub decoded_from: Vec<String>,
    /// True when `bytes` is not the whole body: the capture was cut, or the output hit the cap.
    pub truncated: bool,
    /// Why the body is shown the way it is, when that is not obvious.
    pub note: Option<String>,
}

impl Decoded {
    /// Decodes a captured body by the `Content-Encoding` fields among `headers`, keeping at most
    /// `cap` decoded bytes.
    pub fn of(body: &CapturedBody, headers: &[Header], cap: usize) -> Decoded {
        let encoding = content_encoding(headers);
        let mut decoded = decode(body.bytes(), &encoding, cap, body.truncated());
        if body.truncated() && decoded.note.is_none() {
            decoded.note = Some(format!(
                "only the first {} of {} bytes were captured (--inspect-body-max)",
                body.bytes().len(),
                body.total()
            ));
        }
        decoded
    }

    /// The bytes as text, when they are text: valid UTF-8 without control characters other than
    /// whitespace and ESC. A capture cut inside a multi-byte character still counts as text (the
    /// partial character is dropped).
    pub fn text(&self) -> Option<&str> {
        let text = match std::str::from_utf8(&self.bytes) {
            Ok(text) => text,
            // `error_len() == None`: the bytes end inside a character, which is what a cut does.
            Err(e) if self.truncated && e.error_len().is_none() => {
                std::str::from_utf8(&self.bytes[..e.valid_up_to()]).ok()?
            }
            Err(_) => return None,
        };
        let binary =
            text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b'));
        (!binary).then_some(text)
    }

    /// The bytes in standard base64, for exports that must carry binary bodies as text.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// The body as the inspector page shows it.
    pub fn shown(&self, size: u64, encoding: Option<String>) -> Shown {
        let mut note = self.note.clone();
        let (text, hex) = match self.text() {
            Some(text) => (Some(text.to_owned()), None),
            None => {
                let shown = &self.bytes[..self.bytes.len().min(HEX_MAX)];
                if shown.len() < self.bytes.len() {
                    let more =
                        format!("the hex dump shows the first {} of {} bytes", shown.len(), self.bytes.len());
                    note = Some(match note {
                        Some(n) => format!("{n}; {more}"),
                        None => more,
                    });
                }
                (None, Some(hex_dump(shown)))
            }
        };
        Shown { text, hex, size, shown_size: self.bytes.len(), encoding, truncated: self.truncated, note }
    }
}

/// A body as the inspector shows it: exactly one of `text` and `hex` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The decoded body, when it is text.
    pub text: Option<String>,
    /// A `hexdump -C`-style dump of the decoded body (at most [`HEX_MAX`] bytes), when it is not.
    pub hex: Option<String>,
    /// The body's full size as sent (still encoded).
    pub size: u64,
    /// How many decoded bytes are shown.
    pub shown_size: usize,
    /// The `Content-Encoding` it was sent with, if any.
    pub encoding: Option<String>,
    /// True when what is shown is not the whole body.
    pub truncated: bool,
    /// Why the body is shown this way (cut capture, unknown coding, corrupt data...).
    pub note: Option<String>,
}

/// Shows a captured body: decoded by `headers`' `Content-Encoding`, capped at `cap`.
pub fn show(body: &CapturedBody, headers: &[Header], cap: usize) -> Shown {
    let encoding = content_encoding(headers);
    let encoding = (!encoding.is_empty()).then_some(encoding);
    Decoded::of(body, headers, cap).shown(body.total(), encoding)
}

/// Every `Content-Encoding` field value joined with `, ` (a list may be split over fields, RFC
/// 9110 §5.3), or `""` when there is none.
pub fn content_encoding(headers: &[Header]) -> String {
    let values: Vec<&str> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-encoding"))
        .map(|h| h.value.trim())
        .filter(|v| !v.is_empty())
        .collect();
    values.join(", ")
}

/// Undoes `content_encoding` (a comma-separated list in the order applied) on `raw`, keeping at most
/// `cap` bytes of output at every step. `input_truncated` says the capture was cut, so a decoder
/// that runs out of input mid-stream has decoded what there was rather than met corrupt data.
pub fn decode(raw: &[u8], content_encoding: &str, cap: usize, input_truncated: bool) -> Decoded {
    let codings: Vec<String> = content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let as_sent = |note: Option<String>| Decoded {
        bytes: raw[..raw.len().min(cap)].to_vec(),
        decoded_from: Vec::new(),
        truncated: input_truncated || raw.len() > cap,
        note,
    };
    if codings.is_empty() || raw.is_empty() {
        return as_sent(None);
    }
    if let Some(unknown) = codings.iter().find(|c| Coding::parse(c).is_none()) {
        return as_sent(Some(format!("unknown content coding `{unknown}`: shown as sent")));
    }
    // The last coding applied is the first to undo.
    let mut data = raw.to_vec();
    let (mut truncated, mut hit_cap, mut ran_out) = (input_truncated, false, false);
    for name in codings.iter().rev() {
        let coding = Coding::parse(name).expect("checked above");
        let step = coding.decode(&data, cap);
        if let Some(e) = step.error {
            // A cut input (our capture, or the cap of an earlier step) ends mid-stream. Decoders
            // word that in their own ways (EOF, "corrupt stream"), so when the input was cut,
            // whatever they decoded before it counts.
            if !(truncated && (e.kind() == std::io::ErrorKind::UnexpectedEof || !step.bytes.is_empty())) {
                return as_sent(Some(format!(
                    "could not undo the `{name}` content coding ({e}): shown as sent"
                )));
            }
            ran_out = true;
        }
        hit_cap |= step.hit_cap;
        truncated |= step.hit_cap;
        data = step.bytes;
    }
    let note = if hit_cap {
        Some(format!("decoded output stops at {cap} bytes (--inspect-body-max)"))
    } else if ran_out {
        Some("the capture was cut, so it is decoded only as far as it goes".to_owned())
    } else {
        None
    };
    Decoded { bytes: data, decoded_from: codings, truncated, note }
}

/// The content codings we can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

/// One decoding step's output: what was decoded, whether it hit the cap, and how it failed.
struct Step {
    bytes: Vec<u8>,
    hit_cap: bool,
    error: Option<std::io::Error>,
}

impl Coding {
    fn parse(name: &str) -> Option<Coding> {
        match name {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    fn decode(self, input: &[u8], cap: usize) -> Step {
        match self {
            // Multi: a gzip body may be several members back to back (RFC 1952 §2.2).
            Coding::Gzip => read_capped(flate2::read::MultiGzDecoder::new(input), cap),
            // RFC 9110 says zlib, but some servers send raw deflate: the zlib header tells them
            // apart (CM = 8 and a header checksum divisible by 31, RFC 1950 §2.2).
            Coding::Deflate if is_zlib_header(input) => {
                read_capped(flate2::read::ZlibDecoder::new(input), cap)
            }
            Coding::Deflate => read_capped(flate2::read::DeflateDecoder::new(input), cap),
            Coding::Brotli => read_capped(brotli_decompressor::Decompressor::new(input, 16 * 1024), cap),
            Coding::Zstd => decode_zstd(input, cap),
        }
    }
}

fn is_zlib_header(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// Zstd bodies may hold several frames (RFC 8878 §3.1); each is decoded in turn.
fn decode_zstd(input: &[u8], cap: usize) -> Step {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() && out.len() <= cap {
        let decoder =
            match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(rest, ZSTD_WINDOW_MAX) {
                Ok(d) => d,
                Err(e) => {
                    let kind = if rest.len() < 18 {
                        std::io::ErrorKind::UnexpectedEof
                    } else {
                        std::io::ErrorKind::InvalidData
                    };
                    return Step {
                        bytes: out,
                        hit_cap: false,
                        error: Some(std::io::Error::new(kind, e.to_string())),
                    };
                }
            };
        let mut decoder = decoder.take((cap + 1 - out.len()) as u64);
        if let Err(e) = decoder.read_to_end(&mut out) {
            return Step { bytes: out, hit_cap: false, error: Some(e) };
        }
        rest = decoder.into_inner().into_inner();
    }
    let hit_cap = out.len() > cap;
    out.truncate(cap);
    Step { bytes: out, hit_cap, error: None }
}

/// Reads `decoder` to its end or to `cap` bytes, whichever comes first; what was read before an
/// error is kept.
fn read_capped(decoder: impl Read, cap: usize) -> Step {
    let mut out = Vec::new();
    // One byte past the cap tells "exactly cap" from "more than cap".
    let result = decoder.take(cap as u64 + 1).read_to_end(&mut out);
    let hit_cap = out.len() > cap;
    out.truncate(cap);
    Step { bytes: out, hit_cap, error: result.err() }
}

/// `hexdump -C` layout: offset, 16 bytes in two groups of 8, and their printable ASCII.
pub fn hex_dump(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len().div_ceil(16) * 78);
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", line * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests;
