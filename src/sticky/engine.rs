//! What a sid-routing balancer must understand of Engine.IO (v3 and v4): which requests belong to
//! the balancer's path, the `sid` and `transport` query parameters (the last duplicate wins, as in
//! the engine.io server), and the session id in a handshake response.
//!
//! The sid is read with a JSON parser from the open packet `0{"sid":...}`, never with a regex:
//! custom `generateId` functions may put any character in it. Only sid-less polling handshakes
//! are parsed: later polls carry `40{"sid":...}`, the Socket.IO id, which is not the engine's.

use crate::http::percent;

/// The query parameters that route a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineQuery {
    /// `sid`, percent-decoded.
    pub sid: Option<String>,
    /// `transport=websocket`: a WebSocket-only session's handshake, or a session's upgrade.
    pub websocket: bool,
    /// `EIO=3`: Engine.IO v3, whose polling bodies are framed differently.
    pub eio3: bool,
}

/// True if `path` is under the Engine.IO `prefix` (`/socket.io/` also matches `/socket.io`).
pub fn under_path(path: &str, prefix: &str) -> bool {
    let bare = prefix.trim_end_matches('/');
    path.strip_prefix(bare).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Parses the query string (last duplicate wins).
pub fn parse_query(query: &str) -> EngineQuery {
    let mut q = EngineQuery::default();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Only the parameters that route are read, and only the sid is kept (every request pays for
        // this): `transport` and `EIO` are each compared with the one value that matters.
        match k {
            "sid" => q.sid = Some(percent::decode_query(v)).filter(|s| !s.is_empty()),
            "transport" => q.websocket = percent::query_value_is(v, "websocket"),
            "EIO" => q.eio3 = percent::query_value_is(v, "3"),
            _ => {}
        }
    }
    q
}

/// What the handshake told us about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPacket {
    /// The Engine.IO session id.
    pub sid: String,
}

/// Extracts the sid from a polling handshake response body.
///
/// Handles v4 (`\x1e`-separated packets), v3 text (`<len>:<packet>`), v3 XHR2 binary framing
/// (`application/octet-stream`) and v3 JSONP (`___eio[n]("...")`).
pub fn learn_sid(content_type: &str, body: &[u8]) -> Option<OpenPacket> {
    let first: &[u8] = if content_type.starts_with("application/octet-stream") {
        // <0x00 string | 0x01 binary><length digits as bytes 0-9><0xFF><packet>
        let (&kind, rest) = body.split_first()?;
        if kind != 0 {
            return None;
        }
        let ff = rest.iter().position(|&b| b == 0xff)?;
        let len = rest[..ff].iter().try_fold(0usize, |acc, &d| (d <= 9).then(|| acc * 10 + d as usize))?;
        rest.get(ff + 1..ff + 1 + len)?
    } else if body.starts_with(b"___eio[") {
        let start = body.iter().position(|&b| b == b'(')? + 1;
        let end = body.iter().rposition(|&b| b == b')')?;
        let literal: String = serde_json::from_slice(body.get(start..end)?).ok()?;
        return learn_text(literal.as_bytes());
    } else {
        return learn_text(body);
    };
    parse_open(first)
}

fn learn_text(body: &[u8]) -> Option<OpenPacket> {
    // v3 text framing starts with digits and a colon; v4 starts with the packet type directly.
    let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && body.get(digits) == Some(&b':') {
        let len: usize = std::str::from_utf8(&body[..digits]).ok()?.parse().ok()?;
        // The length counts UTF-16 units; the open packet is ASCII, so bytes are units.
        let packet = body.get(digits + 1..digits + 1 + len).unwrap_or(&body[digits + 1..]);
        return parse_open(packet);
    }
    let end = body.iter().position(|&b| b == 0x1e).unwrap_or(body.len());
    parse_open(&body[..end])
}

fn parse_open(packet: &[u8]) -> Option<OpenPacket> {
    if let Some(sid) = plain_leading_sid(packet) {
        return Some(OpenPacket { sid: sid.to_owned() });
    }
    /// The open packet's one field the balancer needs; the others are skipped without being
    /// built (this runs on every handshake).
    #[derive(serde::Deserialize)]
    struct Open<'a> {
        #[serde(borrow)]
        sid: std::borrow::Cow<'a, str>,
    }
    let json = packet.strip_prefix(b"0")?;
    let open: Open = serde_json::from_slice(json).ok()?;
    (!open.sid.is_empty()).then(|| OpenPacket { sid: open.sid.into_owned() })
}

/// The sid of an open packet shaped as every Engine.IO server writes it, `0{"sid":"…",…}`, read
/// without the JSON parser (a third of a handshake's own work in a profile): only when the value holds
/// no escape and no control character, so its bytes are the string, and the rest of the packet holds
/// no backslash and no other `"sid"`, so no later key can be `sid` (a duplicate makes the parser
/// fail). The rest is not validated as JSON beyond ending the object (a server that writes this
/// prefix writes JSON). Any other packet, or an empty sid, is left to the parser.
fn plain_leading_sid(packet: &[u8]) -> Option<&str> {
    // As text, the scans below are memchr's rather than byte loops.
    let rest = std::str::from_utf8(packet.strip_prefix(b"0{\"sid\":\"")?).ok()?;
    let (value, after) = rest.split_once('"')?;
    let escaped = |s: &str| s.contains('\\');
    if value.is_empty() || escaped(value) || value.bytes().any(|b| b < 0x20) {
        return None;
    }
    if escaped(after) || after.contains("\"sid\"") || !after.ends_with('}') {
        return None;
    }
    Some(value)
}

/// True if a JSON error body is Engine.IO's `{"code":1,"message":"Session ID unknown"}`: the
/// engine no longer knows the session.
pub fn is_session_unknown(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct EngineError {
        code: Option<serde_json::Value>,
    }
    serde_json::from_slice::<EngineError>(body).is_ok_and(|e| e.code.is_some_and(|c| c == 1))
}

/// True if a client's polling POST body carries an Engine.IO close packet (`1`): the client ends
/// its session (`socket.close()`), so the balancer can stop counting it and drop the binding.
///
/// `eio3` selects v3 framing for text bodies (`<len>:<packet>`, lengths in UTF-16 units); v4 bodies
/// are records separated by `\x1e`. v3 XHR2 binary framing (`application/octet-stream`) and v3
/// JSONP POSTs (form-encoded `d=<payload>`) are understood too.
pub fn has_close_packet(content_type: &str, eio3: bool, body: &[u8]) -> bool {
    if content_type.starts_with("application/octet-stream") {
        return binary_payload_has_close(body);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        // JSONP POST: the payload is the `d` field.
        let Ok(form) = std::str::from_utf8(body) else { return false };
        return form
            .split('&')
            .filter_map(|pair| pair.strip_prefix("d="))
            .any(|d| v3_text_has_close(&percent::decode_query(d)));
    }
    if eio3 {
        return std::str::from_utf8(body).is_ok_and(v3_text_has_close);
    }
    body.split(|&b| b == 0x1e).any(|record| record == b"1")
}

/// v3 text payload: `<len>:<packet>` repeated, `len` counted in UTF-16 units (JavaScript string
/// length), so lengths are consumed character by character.
fn v3_text_has_close(payload: &str) -> bool {
    let mut rest = payload;
    while !rest.is_empty() {
        let Some((len, after)) = rest.split_once(':') else { return false };
        let Ok(len) = len.parse::<usize>() else { return false };
        let mut units = 0;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            if units == len {
                end = i;
                break;
            }
            units += c.len_utf16();
        }
        if units < len {
            return false;
        }
        if &after[..end] == "1" {
            return true;
        }
        rest = &after[end..];
    }
    false
}

/// v3 XHR2 binary payload: `<0x00 string | 0x01 binary><length digits as bytes 0-9><0xFF><packet>`
/// repeated (the engine.io v3 decoder counts the length in bytes).
fn binary_payload_has_close(mut body: &[u8]) -> bool {
    while let Some((&kind, rest)) = body.split_first() {
        let Some(ff) = rest.iter().position(|&b| b == 0xff) else { return false };
        let Some(len) = rest[..ff].iter().try_fold(0usize, |acc, &d| {
            (d <= 9).then(|| acc.checked_mul(10)?.checked_add(d as usize)).flatten()
        }) else {
            return false;
        };
        let Some(packet) = rest.get(ff + 1..ff + 1 + len) else { return false };
        if kind == 0 && packet == b"1" {
            return true;
        }
        body = &rest[ff + 1 + len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        assert!(under_path("/socket.io/", "/socket.io/"));
        assert!(under_path("/socket.io", "/socket.io/"));
        assert!(under_path("/socket.io/x", "/socket.io/"));
        assert!(!under_path("/socket.iox", "/socket.io/"));
        assert!(!under_path("/", "/socket.io/"));
        assert!(under_path("/socket.io", "/socket.io"));
        let q = parse_query("EIO=4&transport=polling&sid=a&t=x&sid=b%2Bc");
        assert_eq!(q.sid.as_deref(), Some("b+c"));
        assert!(!q.websocket && !q.eio3);
        assert_eq!(parse_query("EIO=4&sid=").sid, None);
        let q = parse_query("transport=websocket&EIO=3");
        assert!(q.websocket && q.eio3);
        // The last duplicate wins, and values are compared decoded.
        assert!(!parse_query("transport=websocket&transport=polling").websocket);
        assert!(parse_query("transport=web%73ocket&EIO=%33").websocket);
        assert!(parse_query("EIO=%33").eio3);
        assert!(!parse_query("EIO=33").eio3);
        assert!(!parse_query("transport=websocket+").websocket);
    }

    #[test]
    fn handshakes() {
        let v4 = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(learn_sid("text/plain", v4).unwrap().sid, "lv_VI97HAXpY6yYWAAAC");
        let mut with_more = v4.to_vec();
        with_more.extend_from_slice(b"\x1e40{\"sid\":\"WRONG\"}");
        assert_eq!(learn_sid("text/plain", &with_more).unwrap().sid, "lv_VI97HAXpY6yYWAAAC");
        let v3 = br#"96:0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}2:40"#;
        assert_eq!(learn_sid("text/plain; charset=UTF-8", v3).unwrap().sid, "lv_VI97HAXpY6yYWAAAC");
        let jsonp = br#"___eio[0]("96:0{\"sid\":\"abc:def/\\\"q\",\"upgrades\":[]}");"#;
        assert_eq!(learn_sid("text/javascript", jsonp).unwrap().sid, "abc:def/\"q");
        let packet = br#"0{"sid":"bin-sid"}"#;
        let mut bin = vec![0u8];
        bin.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
        bin.push(0xff);
        bin.extend_from_slice(packet);
        assert_eq!(learn_sid("application/octet-stream", &bin).unwrap().sid, "bin-sid");
        let odd = "0{\"sid\":\"ü ✓ {}:1e\"}";
        assert_eq!(learn_sid("text/plain", odd.as_bytes()).unwrap().sid, "ü ✓ {}:1e");
        // The parser decides whatever the fast path cannot vouch for.
        assert_eq!(learn_sid("text/plain", br#"0{"sid":"a\"b"}"#).unwrap().sid, "a\"b");
        assert_eq!(learn_sid("text/plain", br#"0{"sid":"a","x":"\u0041"}"#).unwrap().sid, "a");
        assert!(learn_sid("text/plain", br#"0{"sid":"a","sid":"b"}"#).is_none(), "duplicate keys fail");
        assert!(learn_sid("text/plain", br#"0{"sid":"a","\u0073id":"b"}"#).is_none());
        assert!(learn_sid("text/plain", br#"0{"sid":"a""#).is_none(), "not JSON");
        // The Socket.IO CONNECT ack is not an open packet.
        assert!(learn_sid("text/plain", br#"40{"sid":"GNpWD7LbGCBNCr8GAAAB"}"#).is_none());
        assert!(learn_sid("text/plain", b"not json").is_none());
        assert!(learn_sid("text/plain", br#"0{"sid":""}"#).is_none());
        assert!(learn_sid("text/plain", br#"0{"sid":7}"#).is_none());
    }

    #[test]
    fn close_packets() {
        // v4: a lone close, and the socket.io-client shape "disconnect, then close" in one POST.
        assert!(has_close_packet("text/plain;charset=UTF-8", false, b"1"));
        assert!(has_close_packet("text/plain;charset=UTF-8", false, b"41\x1e1"));
        assert!(!has_close_packet("text/plain", false, b"41"));
        assert!(!has_close_packet("text/plain", false, b"42[\"x\",1]\x1e3"));
        // A message whose text is "1" is `41`, not a close.
        assert!(!has_close_packet("text/plain", false, b"41\x1e41"));
        assert!(!has_close_packet("text/plain", false, b""));
        // v3 text framing, with multi-byte characters counted in UTF-16 units.
        assert!(has_close_packet("text/plain;charset=UTF-8", true, b"1:1"));
        assert!(has_close_packet("text/plain;charset=UTF-8", true, b"2:411:1"));
        assert!(has_close_packet("text/plain", true, "7:42[\"ü\"]1:1".as_bytes()));
        assert!(has_close_packet("text/plain", true, "4:4\u{1F600}✓1:1".as_bytes()));
        assert!(!has_close_packet("text/plain", true, b"1:2"));
        assert!(!has_close_packet("text/plain", true, b"3:4111:2"));
        assert!(!has_close_packet("text/plain", true, b"5:1"));
        // The v4 shape under v3 framing is not a close, and vice versa.
        assert!(!has_close_packet("text/plain", true, b"1"));
        assert!(!has_close_packet("text/plain", false, b"1:1"));
        // v3 binary framing: a binary packet, then the close string packet.
        let mut bin = vec![1u8, 3, 0xff, 4, 0xde, 0xad];
        bin.extend_from_slice(&[0, 1, 0xff, b'1']);
        assert!(has_close_packet("application/octet-stream", true, &bin));
        assert!(!has_close_packet("application/octet-stream", true, &[1, 1, 0xff, b'1']));
        assert!(!has_close_packet("application/octet-stream", true, &[0, 5, 0xff, b'1']));
        // v3 JSONP POST.
        assert!(has_close_packet("application/x-www-form-urlencoded", true, b"d=2%3A411%3A1"));
        assert!(!has_close_packet("application/x-www-form-urlencoded", true, b"d=1%3A2"));
    }

    #[test]
    fn session_unknown_answers() {
        assert!(is_session_unknown(br#"{"code":1,"message":"Session ID unknown"}"#));
        assert!(!is_session_unknown(br#"{"code":3,"message":"Bad request"}"#));
        assert!(!is_session_unknown(b"Session ID unknown"));
    }
}
