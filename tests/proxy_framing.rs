//! The request-smuggling corpus: malformed and ambiguous requests (RFC 9112 and the HTTP Garden /
//! smuggling bug classes) sent over raw sockets to the real binary. Every rejected case must get
//! its status and a closed connection; every accepted case must reach the origin and be answered.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::origin::Origin;
use support::{loopback_proxy, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One case: a name, the raw request (with `{T}` standing for the origin `host:port`), the status.
struct Case {
    name: String,
    raw: String,
    status: u16,
}

fn case(name: impl Into<String>, raw: impl Into<String>, status: u16) -> Case {
    Case { name: name.into(), raw: raw.into(), status }
}

fn post(extra_headers: &str, body: &str) -> String {
    format!(
        "POST http://{{T}}/echo HTTP/1.1\r\nHost: {{T}}\r\n{extra_headers}Connection: close\r\n\r\n{body}"
    )
}

#[allow(clippy::vec_init_then_push)]
fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    // Accepted baselines: the proxy must not be so strict that real clients break.
    c.push(case("get", "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nConnection: close\r\n\r\n", 200));
    c.push(case("get-1.0", "GET http://{T}/1k HTTP/1.0\r\n\r\n", 200));
    c.push(case("cl", post("Content-Length: 5\r\n", "hello"), 200));
    c.push(case("cl-list-same", post("Content-Length: 5, 5\r\n", "hello"), 200));
    c.push(case("cl-dup-same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 200));
    c.push(case("cl-zero", post("Content-Length: 0\r\n", ""), 200));
    c.push(case("chunked", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 200));
    c.push(case("chunked-upper", post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"), 200));
    c.push(case("chunked-ext", post("Transfer-Encoding: chunked\r\n", "5;a=b\r\nhello\r\n0\r\n\r\n"), 200));
    c.push(case(
        "chunked-ext-quoted",
        post("Transfer-Encoding: chunked\r\n", "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"),
        200,
    ));
    c.push(case(
        "chunked-trailer",
        post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        200,
    ));
    c.push(case(
        "chunked-hex-upper",
        post("Transfer-Encoding: chunked\r\n", "A\r\n0123456789\r\n0\r\n\r\n"),
        200,
    ));
    c.push(case(
        "chunked-leading-zeros",
        post("Transfer-Encoding: chunked\r\n", "0005\r\nhello\r\n0\r\n\r\n"),
        200,
    ));
    c.push(case(
        "gzip-chunked",
        post("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        200,
    ));
    c.push(case(
        "te-two-fields",
        post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        200,
    ));
    c.push(case("lf-only-head", "GET http://{T}/1k HTTP/1.1\nHost: {T}\nConnection: close\n\n", 200));
    c.push(case(
        "ows-value",
        "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nX-A:   spaced   \r\nConnection: close\r\n\r\n",
        200,
    ));
    c.push(case(
        "obs-text-value",
        "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nX-A: caf\u{e9}\r\nConnection: close\r\n\r\n",
        200,
    ));
    c.push(case(
        "empty-value",
        "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nX-A:\r\nConnection: close\r\n\r\n",
        200,
    ));

    // CL + TE in every order and spelling: 400.
    let te_variants = ["chunked", "Chunked", "gzip, chunked", "identity, chunked", " chunked", "chunked "];
    for te in te_variants {
        c.push(case(
            format!("cl-then-te[{te}]"),
            post(&format!("Content-Length: 5\r\nTransfer-Encoding: {te}\r\n"), "5\r\nhello\r\n0\r\n\r\n"),
            400,
        ));
        c.push(case(
            format!("te-then-cl[{te}]"),
            post(&format!("Transfer-Encoding: {te}\r\nContent-Length: 5\r\n"), "5\r\nhello\r\n0\r\n\r\n"),
            400,
        ));
        c.push(case(
            format!("te-cl-0[{te}]"),
            post(&format!("Transfer-Encoding: {te}\r\nContent-Length: 0\r\n"), "5\r\nhello\r\n0\r\n\r\n"),
            400,
        ));
        c.push(case(format!("te-1.0[{te}]"), format!("POST http://{{T}}/echo HTTP/1.0\r\nHost: {{T}}\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 400));
    }
    // Transfer-Encoding obfuscation and codings that do not end in chunked: 400.
    for te in [
        "xchunked",
        "chunkedx",
        "chunked, identity",
        "chunked, gzip",
        "chunked;q=1",
        "chunked, chunked",
        "chunk",
        "\"chunked\"",
        "chunked\u{b}",
        "ch unked",
        "identity",
        "gzip",
        "",
        ",",
        "chunked,",
        ",chunked",
        "chun\u{0}ked",
        "cHuNkEd, gzip",
        "chunked\tgzip",
        "x-chunked",
        "chunked=1",
        "\u{1}chunked",
    ] {
        c.push(case(
            format!("te-obfuscated[{te:?}]"),
            post(&format!("Transfer-Encoding: {te}\r\n"), "5\r\nhello\r\n0\r\n\r\n"),
            400,
        ));
    }
    // Content-Length forms: 400.
    for cl in [
        "+5",
        "-5",
        "5 5",
        "5, 6",
        "0x5",
        "5.0",
        "",
        "abc",
        "5a",
        "1e1",
        "99999999999999999999",
        " ",
        "5;",
        "\"5\"",
        "5,",
        ",5",
        "٥",
    ] {
        c.push(case(format!("cl-invalid[{cl:?}]"), post(&format!("Content-Length: {cl}\r\n"), "hello"), 400));
    }
    c.push(case("cl-conflicting-fields", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400));
    c.push(case("cl-conflicting-list", post("Content-Length: 5, 6\r\n", "hello!"), 400));
    // Header syntax: 400.
    let bad_fields = [
        ("space-before-colon", "Content-Length : 5\r\n"),
        ("tab-before-colon", "Content-Length\t: 5\r\n"),
        ("obs-fold", "X-A: a\r\n b\r\n"),
        ("obs-fold-tab", "X-A: a\r\n\tb\r\n"),
        ("obs-fold-te", "Transfer-Encoding: gzip\r\n chunked\r\n"),
        ("bare-cr-value", "X-A: a\rb\r\n"),
        ("nul-value", "X-A: a\u{0}b\r\n"),
        ("nul-name", "X-\u{0}A: b\r\n"),
        ("no-colon", "X-A b\r\n"),
        ("empty-name", ": b\r\n"),
        ("space-in-name", "X A: b\r\n"),
        ("bracket-in-name", "X[A]: b\r\n"),
        ("at-in-name", "X@A: b\r\n"),
        ("slash-in-name", "X/A: b\r\n"),
        ("quote-in-name", "\"X\": b\r\n"),
        ("del-in-value", "X-A: a\u{7f}b\r\n"),
        ("vt-in-value", "X-A: a\u{b}b\r\n"),
        ("ff-in-value", "X-A: a\u{c}b\r\n"),
        ("esc-in-value", "X-A: a\u{1b}b\r\n"),
        ("leading-space-field", " X-A: b\r\n"),
        ("bare-cr-line-end", "X-A: b\rX-B: c\r\n"),
        ("cr-in-name", "X\rA: b\r\n"),
        ("lf-in-name", "X\nA: b\r\n"),
        ("two-hosts", "Host: evil.example\r\n"),
    ];
    for (name, field) in bad_fields {
        c.push(case(
            format!("field[{name}]"),
            format!("GET http://{{T}}/1k HTTP/1.1\r\nHost: {{T}}\r\n{field}Connection: close\r\n\r\n"),
            400,
        ));
        c.push(case(format!("field-post[{name}]"), post(field, ""), 400));
    }
    // Request line: 400.
    for (name, line) in [
        ("lowercase-version", "GET http://{T}/ http/1.1"),
        ("http2-version", "GET http://{T}/ HTTP/2.0"),
        ("version-1.2", "GET http://{T}/ HTTP/1.2"),
        ("no-version", "GET http://{T}/"),
        ("extra-token", "GET http://{T}/ HTTP/1.1 x"),
        ("double-space", "GET  http://{T}/ HTTP/1.1"),
        ("tab-separator", "GET\thttp://{T}/\tHTTP/1.1"),
        ("space-in-target", "GET http://{T}/a b HTTP/1.1"),
        ("nul-in-target", "GET http://{T}/a\u{0}b HTTP/1.1"),
        ("cr-in-method", "G\rET http://{T}/ HTTP/1.1"),
        ("bad-method-char", "G(ET http://{T}/ HTTP/1.1"),
        ("empty-method", " http://{T}/ HTTP/1.1"),
        ("http-0.9", "GET http://{T}/"),
        ("version-junk", "GET http://{T}/ HTTP/1.1x"),
        ("leading-space", " GET http://{T}/ HTTP/1.1"),
        ("del-in-target", "GET http://{T}/\u{7f} HTTP/1.1"),
    ] {
        c.push(case(format!("line[{name}]"), format!("{line}\r\nHost: {{T}}\r\n\r\n"), 400));
    }
    // Targets a forward proxy must refuse: 400.
    for (name, target) in [
        ("origin-form", "/1k"),
        ("asterisk", "*"),
        ("https-absolute", "https://{T}/"),
        ("userinfo", "http://user:pass@{T}/"),
        ("empty-host", "http:///x"),
        ("bad-port", "http://{T}0000/"),
        ("ftp", "ftp://{T}/"),
        ("bad-host-char", "http://exa!mple.com/"),
        ("missing-host-header-1.1", "http://{T}/__no_host"),
    ] {
        let raw = if name == "missing-host-header-1.1" {
            "GET http://{T}/1k HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned()
        } else {
            format!("GET {target} HTTP/1.1\r\nHost: {{T}}\r\n\r\n")
        };
        c.push(case(format!("target[{name}]"), raw, 400));
    }
    c.push(case("connect-no-port", "CONNECT {T_HOST} HTTP/1.1\r\nHost: x\r\n\r\n", 400));
    c.push(case("connect-path", "CONNECT http://{T}/ HTTP/1.1\r\nHost: x\r\n\r\n", 400));
    c.push(case("connect-port-zero", "CONNECT {T_HOST}:0 HTTP/1.1\r\nHost: x\r\n\r\n", 400));
    c.push(case("connect-port-big", "CONNECT {T_HOST}:70000 HTTP/1.1\r\nHost: x\r\n\r\n", 400));
    // Chunked bodies: 400 (the body is read while forwarding, so the origin sees the request head,
    // but the client gets 400 and a closed connection and nothing after the bad chunk is forwarded).
    for (name, body) in [
        ("bare-lf-size", "5\nhello\r\n0\r\n\r\n"),
        ("bare-lf-data", "5\r\nhello\n0\r\n\r\n"),
        ("bare-cr-size", "5\rhello\r\n0\r\n\r\n"),
        ("negative", "-5\r\nhello\r\n0\r\n\r\n"),
        ("hex-prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("plus", "+5\r\nhello\r\n0\r\n\r\n"),
        ("space-before-size", " 5\r\nhello\r\n0\r\n\r\n"),
        ("space-after-size-no-ext", "5 \r\nhello\r\n0\r\n\r\n"),
        ("overflow", "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("empty-size", "\r\nhello\r\n0\r\n\r\n"),
        ("non-hex", "g\r\nhello\r\n0\r\n\r\n"),
        ("data-too-long", "3\r\nhello\r\n0\r\n\r\n"),
        ("missing-crlf-after-data", "5\r\nhelloXX0\r\n\r\n"),
        ("ext-with-cr", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
        ("ext-with-nul", "5;a\u{0}\r\nhello\r\n0\r\n\r\n"),
        ("ext-without-semicolon", "5 a=b\r\nhello\r\n0\r\n\r\n"),
        ("trailer-no-colon", "5\r\nhello\r\n0\r\nbad\r\n\r\n"),
        ("trailer-bare-lf", "5\r\nhello\r\n0\r\nX: 1\n\r\n"),
        ("underscore-size", "5_0\r\nhello\r\n0\r\n\r\n"),
        ("size-then-semicolon-cr", "5;\r\r\nhello\r\n0\r\n\r\n"),
    ] {
        c.push(case(format!("chunk[{name}]"), post("Transfer-Encoding: chunked\r\n", body), 400));
    }
    c
}

async fn run_case(proxy: SocketAddr, origin: SocketAddr, case: &Case) -> Result<(), String> {
    let raw = case.raw.replace("{T}", &origin.to_string()).replace("{T_HOST}", &origin.ip().to_string());
    let mut s = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    let _ = s.write_all(raw.as_bytes()).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    match read {
        Err(_) => return Err(format!("connection not closed within 10 s; got {text:?}")),
        Ok(Err(e)) if out.is_empty() => return Err(format!("reset without a response: {e}")),
        _ => {}
    }
    let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != case.status {
        return Err(format!("expected {}, got {status}: {text:?}", case.status));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_corpus() {
    let origin = Origin::start().await;
    let p = loopback_proxy(&["--header-timeout", "2s"]);
    let cases = corpus();
    assert!(cases.len() >= 150, "corpus has only {} cases", cases.len());
    let mut failures = Vec::new();
    for chunk in cases.chunks(16) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|c| run_case(p.addr(), origin.addr, c))).await;
        for (c, r) in chunk.iter().zip(results) {
            if let Err(e) = r {
                failures.push(format!("{}: {e}", c.name));
            }
        }
    }
    // The proxy is still healthy after the whole corpus.
    let ok = case("after", "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nConnection: close\r\n\r\n", 200);
    if let Err(e) = run_case(p.addr(), origin.addr, &ok).await {
        failures.push(format!("after corpus: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mutations_never_crash_the_proxy() {
    let origin = Origin::start().await;
    let p = Proc::start(
        &["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--header-timeout", "1s"],
        1,
    );
    let base = format!(
        "POST http://{0}/echo HTTP/1.1\r\nHost: {0}\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        origin.addr
    )
    .into_bytes();
    // A fixed-seed xorshift so the run is reproducible.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let specials = [b'\r', b'\n', b'\0', b' ', b':', b'\t', b',', b';', 0x7f, 0xff, b'0', b'f'];
    let mut inputs = Vec::new();
    for _ in 0..300 {
        let mut m = base.clone();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[pos] = specials[(next() as usize) % specials.len()],
                1 => m.insert(pos, specials[(next() as usize) % specials.len()]),
                _ => {
                    m.remove(pos);
                }
            }
        }
        inputs.push(m);
    }
    let addr = p.addr();
    for chunk in inputs.chunks(32) {
        futures_util::future::join_all(chunk.iter().map(|m| async move {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let _ = s.write_all(m).await;
                let _ = s.shutdown().await;
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            }
        }))
        .await;
    }
    let ok = case("after", "GET http://{T}/1k HTTP/1.1\r\nHost: {T}\r\nConnection: close\r\n\r\n", 200);
    run_case(p.addr(), origin.addr, &ok).await.expect("proxy alive after mutations");
}
