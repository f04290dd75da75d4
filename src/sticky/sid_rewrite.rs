//! Rewriting the Engine.IO sid where each side reads it, for tag routing ([`super::sid_tag`]): the
//! client learns `SID.TAG` from the handshake body, and the backend gets plain `SID` back in the
//! query of every request (polls, POSTs, the WebSocket upgrade).
//!
//! The handshake body is edited, not rebuilt: the tag suffix is inserted just before the closing
//! quote of the sid's JSON string in the open packet, so the backend's own escaping and key order
//! survive byte for byte, and only the framing around it changes: the v3 length prefix (in UTF-16
//! units, text framing), the v3 XHR2 binary length digits, or the v3 JSONP string literal. The
//! suffix is `.` plus base64url, which needs escaping in none of these, and is one UTF-16 unit per
//! byte.

use serde::de::IgnoredAny;

use crate::http::percent;

/// The handshake `body` with `suffix` appended to the sid of its open packet (the first packet), in
/// the same framings [`super::engine::learn_sid`] reads. `None` if the body is not a handshake it
/// understands.
pub fn tag_handshake(content_type: &str, body: &[u8], suffix: &str) -> Option<Vec<u8>> {
    if content_type.starts_with("application/octet-stream") {
        // <0x00 string><length digits as bytes 0-9><0xFF><packet>, the length in bytes.
        let (&0, rest) = body.split_first()? else { return None };
        let ff = rest.iter().position(|&b| b == 0xff)?;
        let len = rest[..ff].iter().try_fold(0usize, |acc, &d| {
            (d <= 9).then(|| acc.checked_mul(10)?.checked_add(d as usize)).flatten()
        })?;
        let packet = rest.get(ff + 1..ff + 1 + len)?;
        let mut out = vec![0u8];
        out.extend((len + suffix.len()).to_string().bytes().map(|d| d - b'0'));
        out.push(0xff);
        out.extend(tag_open_packet(packet, suffix)?);
        out.extend_from_slice(&rest[ff + 1 + len..]);
        return Some(out);
    }
    if body.starts_with(b"___eio[") {
        // JSONP: the payload is a JSON-encoded JavaScript string literal inside `___eio[n]("...");`.
        let start = body.iter().position(|&b| b == b'(')? + 1;
        let end = body.iter().rposition(|&b| b == b')')?;
        let literal: String = serde_json::from_slice(body.get(start..end)?).ok()?;
        let payload = String::from_utf8(tag_text(literal.as_bytes(), suffix)?).ok()?;
        // As engine.io does: JSON, with the two line separators JavaScript rejects in a literal
        // escaped.
        let encoded = serde_json::to_string(&payload)
            .ok()?
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        let mut out = body[..start].to_vec();
        out.extend_from_slice(encoded.as_bytes());
        out.extend_from_slice(&body[end..]);
        return Some(out);
    }
    tag_text(body, suffix)
}

/// v3 text (`<len>:<packet>...`, `len` in UTF-16 units) or v4 (`packet\x1epacket...`).
fn tag_text(body: &[u8], suffix: &str) -> Option<Vec<u8>> {
    let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && body.get(digits) == Some(&b':') {
        let units: usize = std::str::from_utf8(&body[..digits]).ok()?.parse().ok()?;
        let rest = std::str::from_utf8(&body[digits + 1..]).ok()?;
        let end = utf16_prefix_len(rest, units)?;
        let mut out = (units + suffix.len()).to_string().into_bytes();
        out.push(b':');
        out.extend(tag_open_packet(&rest.as_bytes()[..end], suffix)?);
        out.extend_from_slice(&rest.as_bytes()[end..]);
        return Some(out);
    }
    let end = body.iter().position(|&b| b == 0x1e).unwrap_or(body.len());
    let mut out = tag_open_packet(&body[..end], suffix)?;
    out.extend_from_slice(&body[end..]);
    Some(out)
}

/// Bytes of the first `units` UTF-16 units of `s` (JavaScript's string length), if it has them.
fn utf16_prefix_len(s: &str, units: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, c) in s.char_indices() {
        if seen == units {
            return Some(i);
        }
        seen += c.len_utf16();
    }
    (seen == units).then_some(s.len())
}

/// `0{..."sid":"S"...}` with `suffix` inserted before the closing quote of S.
fn tag_open_packet(packet: &[u8], suffix: &str) -> Option<Vec<u8>> {
    let json = packet.strip_prefix(b"0")?;
    let quote = 1 + sid_closing_quote(json)?;
    let mut out = Vec::with_capacity(packet.len() + suffix.len());
    out.extend_from_slice(&packet[..quote]);
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(&packet[quote..]);
    Some(out)
}

/// Where, in a JSON object, the string value of its top-level `sid` key ends (the index of its
/// closing quote). Walks the object key by key with serde_json, so strings containing `"sid"`,
/// nested objects and escapes cannot mislead it.
fn sid_closing_quote(json: &[u8]) -> Option<usize> {
    let ws = |mut i: usize| {
        while json.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    // One JSON value at `i`: (it, the index just past it).
    fn value<'a, T: serde::Deserialize<'a>>(json: &'a [u8], i: usize) -> Option<(T, usize)> {
        let mut stream = serde_json::Deserializer::from_slice(json.get(i..)?).into_iter::<T>();
        let v = stream.next()?.ok()?;
        Some((v, i + stream.byte_offset()))
    }
    let mut i = ws(0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        let (key, after): (String, usize) = value(json, ws(i))?;
        i = ws(after);
        if json.get(i) != Some(&b':') {
            return None;
        }
        if key == "sid" {
            let (_, end): (String, usize) = value(json, ws(i + 1))?;
            return Some(end - 1);
        }
        let (_, after): (IgnoredAny, usize) = value(json, ws(i + 1))?;
        i = ws(after);
        match json.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

/// The query with the routing `sid` (the last one, as the backend reads it) changed from `tagged`
/// to `sid`. Its raw spelling is kept where the tag is a plain suffix, which it is for every client
/// (the tag's characters are never escaped); otherwise `sid` is percent-encoded afresh.
pub fn untag_query(query: &str, tagged: &str, sid: &str) -> String {
    let suffix = &tagged[sid.len()..];
    let last = query
        .split('&')
        .enumerate()
        .filter(|(_, pair)| pair.split_once('=').map_or(*pair, |(k, _)| k) == "sid")
        .map(|(i, _)| i)
        .last();
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((_, raw)) if Some(i) == last && percent::query_value_is(raw, tagged) => {
                out.push_str("sid=");
                match raw.strip_suffix(suffix) {
                    Some(kept) => out.push_str(kept),
                    None => encode_component(sid, &mut out),
                }
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters (as `encodeURIComponent`, stricter).
fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::learn_sid;
    use super::*;

    const SUFFIX: &str = ".AAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn v4_handshake() {
        let body =
            b"0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000}\x1e40";
        let out = tag_handshake("text/plain; charset=UTF-8", body, SUFFIX).unwrap();
        let want = format!(
            "0{{\"sid\":\"lv_VI97HAXpY6yYWAAAC{SUFFIX}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000}}\x1e40"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn sid_found_by_key_not_by_text() {
        // Keys before it that look like it, escapes inside it, whitespace around it.
        let body = br#"0{ "x":{"sid":"no"}, "y":"\"sid\":\"no\"" , "sid" : "a.b\"c\u00e9" ,"n":1}"#;
        let out = tag_handshake("text/plain", body, SUFFIX).unwrap();
        assert_eq!(learn_sid("text/plain", &out).unwrap().sid, format!("a.b\"c\u{e9}{SUFFIX}"));
        assert!(tag_handshake("text/plain", br#"40{"sid":"socket-io-id"}"#, SUFFIX).is_none());
        assert!(tag_handshake("text/plain", br#"0{"sid":7}"#, SUFFIX).is_none());
        assert!(tag_handshake("text/plain", br#"0{"other":"x"}"#, SUFFIX).is_none());
        assert!(tag_handshake("text/plain", b"0{\"sid\"", SUFFIX).is_none());
    }

    #[test]
    fn v3_text_length_is_recomputed() {
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
        let body = format!("{}:{open}2:40", open.len());
        let out = String::from_utf8(tag_handshake("text/plain", body.as_bytes(), SUFFIX).unwrap()).unwrap();
        let (len, rest) = out.split_once(':').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), open.len() + SUFFIX.len());
        assert!(rest.ends_with("2:40"));
        assert_eq!(
            learn_sid("text/plain", out.as_bytes()).unwrap().sid,
            format!("lv_VI97HAXpY6yYWAAAC{SUFFIX}")
        );
        // Lengths in UTF-16 units: an astral character counts two, a 2-byte one counts one.
        let open = "0{\"sid\":\"\u{1F600}é\"}";
        let units = open.encode_utf16().count();
        let body = format!("{units}:{open}2:40");
        let out = String::from_utf8(tag_handshake("text/plain", body.as_bytes(), SUFFIX).unwrap()).unwrap();
        let tagged_open = format!("0{{\"sid\":\"\u{1F600}é{SUFFIX}\"}}");
        assert_eq!(out, format!("{}:{tagged_open}2:40", tagged_open.encode_utf16().count()));
    }

    #[test]
    fn v3_binary_framing() {
        let packet = br#"0{"sid":"bin-sid","upgrades":[]}"#;
        let mut body = vec![0u8];
        body.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
        body.push(0xff);
        body.extend_from_slice(packet);
        body.extend_from_slice(&[0, 2, 0xff, b'4', b'0']);
        let out = tag_handshake("application/octet-stream", &body, SUFFIX).unwrap();
        assert_eq!(learn_sid("application/octet-stream", &out).unwrap().sid, format!("bin-sid{SUFFIX}"));
        let new_len = packet.len() + SUFFIX.len();
        let digits: Vec<u8> = new_len.to_string().bytes().map(|d| d - b'0').collect();
        assert_eq!(&out[1..1 + digits.len()], &digits[..]);
        assert!(out.ends_with(&[0, 2, 0xff, b'4', b'0']));
        // A binary first packet is not an open packet.
        assert!(tag_handshake("application/octet-stream", &[1, 1, 0xff, b'0'], SUFFIX).is_none());
    }

    #[test]
    fn v3_jsonp() {
        let body = br#"___eio[0]("96:0{\"sid\":\"abc\",\"upgrades\":[]}2:40");"#;
        let inner = r#"0{"sid":"abc","upgrades":[]}"#;
        let body = String::from_utf8_lossy(body).replace("96", &inner.len().to_string());
        let out = tag_handshake("text/javascript", body.as_bytes(), SUFFIX).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("___eio[0](\"") && out.ends_with("2:40\");"), "{out}");
        assert_eq!(learn_sid("text/javascript", out.as_bytes()).unwrap().sid, format!("abc{SUFFIX}"));
        assert!(out.contains(&format!("{}:0", inner.len() + SUFFIX.len())), "{out}");
    }

    #[test]
    fn queries_lose_the_tag() {
        let tagged = format!("S1{SUFFIX}");
        let q = format!("EIO=4&transport=polling&t=x&sid={tagged}");
        assert_eq!(untag_query(&q, &tagged, "S1"), "EIO=4&transport=polling&t=x&sid=S1");
        // Only the last sid routes (engine.io reads the last duplicate); an escaped sid keeps its
        // escaping.
        let tagged = format!("a b+c{SUFFIX}");
        let q = format!("sid=first&sid=a%20b%2Bc{SUFFIX}&EIO=3");
        assert_eq!(untag_query(&q, &tagged, "a b+c"), "sid=first&sid=a%20b%2Bc&EIO=3");
        // A tag spelled with escapes is re-encoded whole.
        let q = "sid=a%2Eb%2EAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(untag_query(q, "a.b.AAAAAAAAAAAAAAAAAAAAAA", "a.b"), "sid=a.b");
        let q = "sid=%C3%A9%2EAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(untag_query(q, "é.AAAAAAAAAAAAAAAAAAAAAA", "é"), "sid=%C3%A9");
    }
}
