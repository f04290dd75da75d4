//! HAR 1.2 export of recorded flows (`/api/har`, and `--har FILE` at shutdown), as browsers' dev
//! tools and HAR viewers read it (<http://www.softwareishard.com/blog/har-12-spec/>).
//!
//! Choices where the spec leaves room, and why:
//! - Bodies are decoded (`content.text` is "HTTP decoded text", spec §content) up to `body_max`;
//!   binary ones are base64 with `content.encoding: "base64"`. `content.size` is the decoded length
//!   and `bodySize` the length as sent, so a viewer shows the compression.
//! - A CONNECT tunnel the proxy did not look into is an entry with method `CONNECT`, its URL the
//!   authority it asked for (`host:443`, the request target as sent), and `bodySize`s counting the
//!   tunnel's bytes each way; nothing else is known about what went through.
//! - `headersSize` is -1: the proxy keeps header fields, not the bytes of the head.
//! - Timings: `send` 0, `wait` until the answer's head, `receive` the rest, so they add up to
//!   `time`; the optional `blocked`, `dns`, `connect` and `ssl` are -1 (not known per request: the
//!   upstream connection may have been pooled).
//! - Custom fields (spec: they start with `_`): `_kind` (plain, tunnelled, intercepted), `_error`,
//!   `_bytesUp`/`_bytesDown`, and Chrome's `_webSocketMessages` (`type` send/receive, `time` in
//!   seconds since the epoch, `opcode`, `data`; binary data as base64).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::decode::Decoded;
use super::flow::{millis, Direction, Flow, FlowKind, Header, WsOpcode};

/// The flows as a HAR 1.2 document, entries by start time; bodies decoded up to `body_max` bytes.
pub fn har(flows: &[Arc<Flow>], body_max: usize) -> Value {
    let mut sorted: Vec<&Arc<Flow>> = flows.iter().collect();
    // The ring is in finishing order; HAR prefers starting order (spec §entries).
    sorted.sort_by_key(|f| f.started);
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "tunnelkit", "version": env!("CARGO_PKG_VERSION") },
            "entries": sorted.into_iter().map(|f| entry(f, body_max)).collect::<Vec<_>>(),
        }
    })
}

/// Writes [`har`] to `path` atomically: into a temporary file beside it, then renamed over it, so
/// a reader (or a crash half-way) never sees half a HAR.
pub fn write_har(path: &Path, flows: &[Arc<Flow>], body_max: usize) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot write the HAR file {} (--har): {e}; give a path in an existing, writable directory",
            path.display()
        )
    };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("the path names no file")))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut out, &har(flows, body_max))?;
        out.write_all(b"\n")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

fn entry(flow: &Flow, body_max: usize) -> Value {
    let total = millis(flow.duration);
    let wait = flow.wait.map_or(total, millis).min(total);
    let tunnelled = flow.kind == FlowKind::Tunnelled;
    let mut entry = json!({
        "startedDateTime": flow.started_rfc3339(),
        "time": total,
        "request": request(flow, body_max),
        "response": response(flow, body_max),
        "cache": {},
        "timings": {
            "blocked": -1, "dns": -1, "connect": -1, "ssl": -1,
            "send": 0, "wait": wait, "receive": ((total - wait) * 1e3).round() / 1e3,
        },
        "_kind": flow.kind,
        "_bytesUp": flow.bytes_up,
        "_bytesDown": flow.bytes_down,
    });
    if tunnelled {
        entry["request"]["bodySize"] = flow.bytes_up.into();
        entry["response"]["bodySize"] = flow.bytes_down.into();
    }
    if let Some(error) = &flow.error {
        entry["_error"] = error.as_str().into();
    }
    if !flow.websocket.is_empty() {
        entry["_webSocketMessages"] = flow.websocket.iter().map(|m| ws_message(flow, m)).collect();
    }
    entry
}

fn request(flow: &Flow, body_max: usize) -> Value {
    let mut request = json!({
        "method": flow.method,
        // HAR URLs carry no fragment (spec §request); clients do not send one anyway.
        "url": flow.url.split('#').next().unwrap_or_default(),
        "httpVersion": flow.http_version,
        "cookies": request_cookies(&flow.request_headers),
        "headers": flow.request_headers,
        "queryString": query_string(&flow.url),
        "headersSize": -1,
        "bodySize": flow.request_body.total(),
    });
    if flow.request_body.total() > 0 {
        let decoded = Decoded::of(&flow.request_body, &flow.request_headers, body_max);
        let mut post = json!({ "mimeType": header(&flow.request_headers, "content-type").unwrap_or("") });
        match decoded.text() {
            Some(text) => post["text"] = text.into(),
            // postData has no `encoding` field in 1.2; say it the custom way.
            None => {
                post["text"] = decoded.base64().into();
                post["_encoding"] = "base64".into();
            }
        }
        request["postData"] = post;
    }
    request
}

fn response(flow: &Flow, body_max: usize) -> Value {
    let headers = &flow.response_headers;
    let decoded = Decoded::of(&flow.response_body, headers, body_max);
    let mut content = json!({
        "size": decoded.bytes.len(),
        "mimeType": header(headers, "content-type").unwrap_or(""),
    });
    if !decoded.bytes.is_empty() {
        match decoded.text() {
            Some(text) => content["text"] = text.into(),
            None => {
                content["text"] = decoded.base64().into();
                content["encoding"] = "base64".into();
            }
        }
    }
    if let Some(note) = &decoded.note {
        content["comment"] = note.as_str().into();
    }
    json!({
        // 0 is what browsers export for a request that got no answer.
        "status": flow.status.unwrap_or(0),
        "statusText": flow.reason,
        "httpVersion": flow.http_version,
        "cookies": response_cookies(headers),
        "headers": headers,
        "content": content,
        "redirectURL": header(headers, "location").unwrap_or(""),
        "headersSize": -1,
        "bodySize": flow.response_body.total(),
    })
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// `Cookie: a=1; b=2` fields as HAR cookies.
fn request_cookies(headers: &[Header]) -> Vec<Value> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| json!({ "name": name.trim(), "value": value.trim() }))
        .collect()
}

/// One HAR cookie per `Set-Cookie` field, with the attributes HAR 1.2 has (`expires` is left out:
/// it is an HTTP date there and HAR wants ISO 8601; the header keeps it).
fn response_cookies(headers: &[Header]) -> Vec<Value> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|h| {
            let mut parts = h.value.split(';');
            let (name, value) = parts.next()?.trim().split_once('=')?;
            let mut cookie = json!({ "name": name.trim(), "value": value.trim() });
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "path" => cookie["path"] = val.trim().into(),
                    "domain" => cookie["domain"] = val.trim().into(),
                    "httponly" => cookie["httpOnly"] = true.into(),
                    "secure" => cookie["secure"] = true.into(),
                    _ => {}
                }
            }
            Some(cookie)
        })
        .collect()
}

/// The URL's query as HAR name/value pairs, decoded as browsers send forms (`+` is a space).
fn query_string(url: &str) -> Vec<Value> {
    let Some((_, query)) = url.split_once('?') else { return Vec::new() };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({
                "name": crate::http::percent::decode_query(name),
                "value": crate::http::percent::decode_query(value),
            })
        })
        .collect()
}

/// A WebSocket message the way Chrome exports it.
fn ws_message(flow: &Flow, m: &super::flow::WsMessage) -> Value {
    let at = (flow.started + m.at).duration_since(UNIX_EPOCH).unwrap_or_default();
    let opcode = match m.opcode {
        WsOpcode::Text => 1,
        WsOpcode::Binary => 2,
        WsOpcode::Close => 8,
        WsOpcode::Ping => 9,
        WsOpcode::Pong => 10,
    };
    let data = match std::str::from_utf8(&m.data) {
        Ok(text) if m.opcode != WsOpcode::Binary => text.to_owned(),
        _ => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &m.data),
    };
    json!({
        "type": match m.direction { Direction::Up => "send", Direction::Down => "receive" },
        "time": at.as_secs_f64(),
        "opcode": opcode,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;
    use crate::proxy::inspect::flow::{FlowId, WsMessage};

    fn intercepted() -> Flow {
        let mut f = Flow::new(
            FlowKind::Intercepted,
            "127.0.0.1:5000".parse().unwrap(),
            "POST",
            "https://a.test/search?q=a+b&x=%2F#frag",
            1024,
        );
        f.id = FlowId(1);
        f.duration = Duration::from_millis(30);
        f.wait = Some(Duration::from_millis(20));
        f.request_headers = vec![
            Header::new("Host", b"a.test"),
            Header::new("Content-Type", b"application/json"),
            Header::new("Cookie", b"sid=1; theme=dark"),
            Header::new("Proxy-Authorization", b"Basic c2VjcmV0"),
        ];
        f.request_body.push(b"{\"q\":1}");
        f.status = Some(302);
        f.reason = "Found".into();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"<p>moved</p>").unwrap();
        let body = gz.finish().unwrap();
        f.response_headers = vec![
            Header::new("Content-Type", b"text/html"),
            Header::new("Content-Encoding", b"gzip"),
            Header::new("Location", b"https://a.test/next"),
            Header::new("Set-Cookie", b"sid=2; Path=/; HttpOnly; Secure"),
        ];
        f.response_body.push(&body);
        f
    }

    #[test]
    fn an_intercepted_exchange_is_a_complete_har_entry() {
        let har = har(&[Arc::new(intercepted())], 1024);
        let log = &har["log"];
        assert_eq!(log["version"], "1.2");
        assert_eq!(log["creator"]["name"], "tunnelkit");
        assert!(log["creator"]["version"].is_string());
        let e = &log["entries"][0];
        assert!(e["startedDateTime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(e["time"], 30.0);
        assert_eq!(e["cache"], json!({}));
        assert_eq!(e["_kind"], "intercepted");

        let t = &e["timings"];
        assert_eq!(
            (t["send"].as_f64(), t["wait"].as_f64(), t["receive"].as_f64()),
            (Some(0.0), Some(20.0), Some(10.0))
        );
        for optional in ["blocked", "dns", "connect", "ssl"] {
            assert_eq!(t[optional], -1, "{optional}");
        }

        let req = &e["request"];
        assert_eq!(req["method"], "POST");
        assert_eq!(req["url"], "https://a.test/search?q=a+b&x=%2F");
        assert_eq!(req["httpVersion"], "HTTP/1.1");
        assert_eq!(req["headers"][0], json!({ "name": "Host", "value": "a.test" }));
        assert_eq!(req["headers"][3]["value"], "[redacted]");
        assert_eq!(
            req["queryString"],
            json!([{ "name": "q", "value": "a b" }, { "name": "x", "value": "/" }])
        );
        assert_eq!(
            req["cookies"],
            json!([{ "name": "sid", "value": "1" }, { "name": "theme", "value": "dark" }])
        );
        assert_eq!(req["headersSize"], -1);
        assert_eq!(req["bodySize"], 7);
        assert_eq!(req["postData"], json!({ "mimeType": "application/json", "text": "{\"q\":1}" }));

        let resp = &e["response"];
        assert_eq!(resp["status"], 302);
        assert_eq!(resp["statusText"], "Found");
        assert_eq!(resp["httpVersion"], "HTTP/1.1");
        assert_eq!(resp["redirectURL"], "https://a.test/next");
        assert_eq!(resp["headersSize"], -1);
        assert_eq!(resp["bodySize"], intercepted().response_body.total());
        assert_eq!(
            resp["cookies"],
            json!([{ "name": "sid", "value": "2", "path": "/", "httpOnly": true, "secure": true }])
        );
        assert_eq!(resp["content"], json!({ "size": 12, "mimeType": "text/html", "text": "<p>moved</p>" }));
        assert!(!har.to_string().contains("c2VjcmV0"), "no proxy credentials");
    }

    #[test]
    fn a_tunnel_is_a_connect_entry_counting_its_bytes() {
        let mut f =
            Flow::new(FlowKind::Tunnelled, "127.0.0.1:5000".parse().unwrap(), "CONNECT", "a.test:443", 0);
        f.status = Some(200);
        f.bytes_up = 517;
        f.bytes_down = 4096;
        let har = har(&[Arc::new(f)], 1024);
        let e = &har["log"]["entries"][0];
        assert_eq!(e["_kind"], "tunnelled");
        assert_eq!(e["request"]["method"], "CONNECT");
        assert_eq!(e["request"]["url"], "a.test:443");
        assert_eq!(e["request"]["bodySize"], 517);
        assert_eq!(e["request"].get("postData"), None);
        assert_eq!(e["response"]["bodySize"], 4096);
        assert_eq!(e["response"]["content"], json!({ "size": 0, "mimeType": "" }));
        assert_eq!(e["timings"]["receive"], 0.0);
    }

    #[test]
    fn binary_bodies_errors_and_websocket_messages() {
        let mut f =
            Flow::new(FlowKind::Plain, "127.0.0.1:5000".parse().unwrap(), "GET", "http://a.test/ws", 64);
        f.status = None;
        f.error = Some("upstream closed".into());
        f.response_body.push(&[0, 1, 2, 255]);
        f.websocket = vec![
            WsMessage {
                at: Duration::from_millis(5),
                direction: Direction::Up,
                opcode: WsOpcode::Text,
                data: b"hi".to_vec(),
                len: 2,
            },
            WsMessage {
                at: Duration::from_millis(6),
                direction: Direction::Down,
                opcode: WsOpcode::Binary,
                data: vec![0, 255],
                len: 2,
            },
        ];
        let started = f.started.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let har = har(&[Arc::new(f)], 64);
        let e = &har["log"]["entries"][0];
        assert_eq!(e["response"]["status"], 0);
        assert_eq!(e["_error"], "upstream closed");
        assert_eq!(e["response"]["content"]["encoding"], "base64");
        assert_eq!(e["response"]["content"]["text"], "AAEC/w==");
        let ws = &e["_webSocketMessages"];
        assert_eq!(
            (ws[0]["type"].as_str(), ws[0]["opcode"].as_u64(), ws[0]["data"].as_str()),
            (Some("send"), Some(1), Some("hi"))
        );
        assert_eq!(
            (ws[1]["type"].as_str(), ws[1]["opcode"].as_u64(), ws[1]["data"].as_str()),
            (Some("receive"), Some(2), Some("AP8="))
        );
        assert!((ws[0]["time"].as_f64().unwrap() - started - 0.005).abs() < 1e-3);
    }

    #[test]
    fn entries_are_in_starting_order() {
        let mut early =
            Flow::new(FlowKind::Plain, "127.0.0.1:1".parse().unwrap(), "GET", "http://a/early", 0);
        let late = Flow::new(FlowKind::Plain, "127.0.0.1:1".parse().unwrap(), "GET", "http://a/late", 0);
        early.started -= Duration::from_secs(1);
        // The long one finished last, so the ring has it second.
        let har = har(&[Arc::new(late), Arc::new(early)], 0);
        assert_eq!(har["log"]["entries"][0]["request"]["url"], "http://a/early");
    }

    #[test]
    fn write_har_replaces_the_file_whole_and_names_the_flag_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.har");
        std::fs::write(&path, "old").unwrap();
        write_har(&path, &[Arc::new(intercepted())], 1024).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["log"]["entries"].as_array().unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

        let err = write_har(&dir.path().join("missing/flows.har"), &[], 0).unwrap_err().to_string();
        assert!(err.contains("--har") && err.contains("missing/flows.har"), "{err}");
    }
}
