//! Decoding per content coding, with real compressed data made here, and the bomb cap.

use std::io::Write;

use super::*;

const TEXT: &str = "Hello, inspector! The quick brown fox jumps over the lazy dog. ";

fn body() -> Vec<u8> {
    TEXT.repeat(50).into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn decoded_fully(raw: &[u8], encoding: &str) -> Decoded {
    let d = decode(raw, encoding, 1 << 20, false);
    assert_eq!(d.note, None, "{encoding}");
    assert!(!d.truncated, "{encoding}");
    d
}

#[test]
fn gzip_bodies_are_decoded() {
    let d = decoded_fully(&gzip(&body()), "gzip");
    assert_eq!(d.bytes, body());
    assert_eq!(d.decoded_from, ["gzip"]);
    assert_eq!(decoded_fully(&gzip(&body()), "x-gzip").bytes, body());
}

#[test]
fn concatenated_gzip_members_are_all_decoded() {
    let mut two = gzip(b"first ");
    two.extend(gzip(b"second"));
    assert_eq!(decoded_fully(&two, "gzip").bytes, b"first second");
}

#[test]
fn deflate_is_decoded_in_zlib_and_raw_form() {
    assert!(is_zlib_header(&zlib(b"x")));
    assert_eq!(decoded_fully(&zlib(&body()), "deflate").bytes, body());
    assert_eq!(decoded_fully(&raw_deflate(&body()), "deflate").bytes, body());
}

#[test]
fn brotli_bodies_are_decoded() {
    assert_eq!(decoded_fully(&brotli(&body()), "br").bytes, body());
}

#[test]
fn zstd_bodies_are_decoded_frame_after_frame() {
    assert_eq!(decoded_fully(&zstd(&body()), "zstd").bytes, body());
    let mut two = zstd(b"first ");
    two.extend(zstd(b"second"));
    assert_eq!(decoded_fully(&two, "zstd").bytes, b"first second");
}

#[test]
fn chained_codings_are_undone_last_first() {
    // `Content-Encoding: gzip, br` means gzip was applied first, then br.
    let raw = brotli(&gzip(&body()));
    let d = decoded_fully(&raw, "gzip, br");
    assert_eq!(d.bytes, body());
    assert_eq!(d.decoded_from, ["gzip", "br"]);
    // The same list split over two fields.
    let headers = [Header::new("Content-Encoding", b"gzip"), Header::new("content-encoding", b"br")];
    assert_eq!(content_encoding(&headers), "gzip, br");
    let mut captured = CapturedBody::new(1 << 20);
    captured.push(&raw);
    assert_eq!(Decoded::of(&captured, &headers, 1 << 20).bytes, body());
}

#[test]
fn identity_and_no_coding_keep_the_bytes() {
    assert_eq!(decoded_fully(b"plain", "").bytes, b"plain");
    assert_eq!(decoded_fully(b"plain", "identity").bytes, b"plain");
}

#[test]
fn a_decompression_bomb_stops_at_the_cap() {
    // 64 MiB of zeros in ~64 KiB of gzip; the cap keeps the output at 1 MiB.
    let zeros = vec![0u8; 64 << 20];
    let cap = 1 << 20;
    for (name, raw) in [("gzip", gzip(&zeros)), ("br", brotli(&zeros)), ("zstd", zstd(&zeros))] {
        assert!(raw.len() < 4 << 20, "{name}: {} bytes", raw.len());
        let d = decode(&raw, name, cap, false);
        assert_eq!(d.bytes.len(), cap, "{name}");
        assert!(d.truncated, "{name}");
        assert!(d.note.as_deref().unwrap().contains("--inspect-body-max"), "{name}: {:?}", d.note);
    }
}

#[test]
fn undecodable_bodies_are_shown_as_sent_with_a_note() {
    let d = decode(b"this is not gzip at all", "gzip", 1024, false);
    assert_eq!(d.bytes, b"this is not gzip at all");
    assert!(d.decoded_from.is_empty());
    assert!(d.note.as_deref().unwrap().contains("`gzip`"), "{:?}", d.note);

    let d = decode(b"data", "compress", 1024, false);
    assert_eq!(d.bytes, b"data");
    assert!(d.note.as_deref().unwrap().contains("unknown content coding `compress`"), "{:?}", d.note);
}

#[test]
fn a_cut_capture_is_decoded_as_far_as_it_goes() {
    // Long enough for several zstd blocks (128 KiB each): a cut inside the first block decodes nothing.
    let long = TEXT.repeat(10_000).into_bytes();
    for (name, raw) in
        [("gzip", gzip(&long)), ("deflate", zlib(&long)), ("br", brotli(&long)), ("zstd", zstd(&long))]
    {
        let mut captured = CapturedBody::new(raw.len() / 2);
        captured.push(&raw);
        let headers = [Header::new("Content-Encoding", name.as_bytes())];
        let d = Decoded::of(&captured, &headers, 1 << 20);
        assert!(d.truncated, "{name}");
        assert_eq!(d.decoded_from, [name], "{name}: {:?}", d.note);
        assert!(!d.bytes.is_empty() && long.starts_with(&d.bytes), "{name}: {} bytes", d.bytes.len());
        assert!(d.text().is_some(), "{name}");
    }
}

#[test]
fn text_is_shown_as_text_and_binary_as_hex() {
    let text = decoded_fully("grüße\n".as_bytes(), "").shown(7, None);
    assert_eq!(text.text.as_deref(), Some("grüße\n"));
    assert_eq!(text.hex, None);

    let binary = decoded_fully(&[0x89, b'P', b'N', b'G', 0, 1, 2], "").shown(7, None);
    assert_eq!(binary.text, None);
    assert_eq!(
        binary.hex.as_deref(),
        Some("00000000  89 50 4e 47 00 01 02                              |.PNG...|\n")
    );
    // Byte for byte what `hexdump -C` prints.
    assert_eq!(
        hex_dump(b"0123456789abcdefXYZ"),
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
         00000010  58 59 5a                                          |XYZ|\n"
    );

    let big = decoded_fully(&vec![0u8; HEX_MAX + 1], "").shown(0, None);
    assert_eq!(big.hex.unwrap().lines().count(), HEX_MAX / 16);
    assert!(big.note.unwrap().contains("first 65536"));
}

#[test]
fn a_capture_cut_inside_a_character_is_still_text() {
    let mut captured = CapturedBody::new(2);
    captured.push("aé".as_bytes()); // 'é' is two bytes: the cap cuts it in half
    let d = Decoded::of(&captured, &[], 1024);
    assert_eq!(d.text(), Some("a"));
}

#[test]
fn show_reports_the_size_as_sent_and_the_coding() {
    let raw = gzip(b"{\"ok\":true}");
    let mut captured = CapturedBody::new(1024);
    captured.push(&raw);
    let shown = show(&captured, &[Header::new("Content-Encoding", b"gzip")], 1024);
    assert_eq!(shown.text.as_deref(), Some("{\"ok\":true}"));
    assert_eq!(shown.size, raw.len() as u64);
    assert_eq!(shown.shown_size, 11);
    assert_eq!(shown.encoding.as_deref(), Some("gzip"));
}
