//! `tunnelkit::client` against every proxy kind: HTTP with a 407 challenge, HTTPS (TLS to the proxy
//! with an rcgen CA, then TLS-in-TLS to an HTTPS origin), SOCKS5 and SOCKS4a.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use support::tls_origin::HttpsOrigin;
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunnelkit::client::Client;

fn loopback_proxy(extra: &[&str], listeners: usize) -> Proc {
    let mut args =
        vec!["proxy", "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--connect-ports", "1-65535"];
    args.extend_from_slice(extra);
    Proc::start(&args, listeners)
}

async fn get_ok(client: &Client, url: &str) {
    let resp = client.get(url.parse().unwrap()).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes().len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_407_then_retry_with_basic() {
    let origin = HttpsOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let p = loopback_proxy(&["--auth", "alice:pw", "--access-log", log.to_str().unwrap()], 1);
    let client = Client::builder()
        .proxy(format!("http://alice:pw@{}", p.addr()))
        .keep_alive(false)
        .add_root_pem(origin.ca_pem.as_bytes())
        .build()
        .unwrap();
    get_ok(&client, &format!("https://localhost:{}/", origin.port)).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains(" CONNECT ") && lines[0].contains(" 407 "), "{text}");
    assert!(lines[1].contains(" CONNECT ") && lines[1].contains(" 200 "), "{text}");
    // Preemptive: a single CONNECT.
    let client = Client::builder()
        .proxy(format!("http://alice:pw@{}", p.addr()))
        .preemptive_auth(true)
        .add_root_pem(origin.ca_pem.as_bytes())
        .build()
        .unwrap();
    get_ok(&client, &format!("https://localhost:{}/", origin.port)).await;
    // Wrong password: the error names the proxy's answer.
    let client = Client::builder().proxy(format!("http://alice:no@{}", p.addr())).build().unwrap();
    let err = client.get(format!("https://localhost:{}/", origin.port).parse().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("407 Proxy Authentication Required"), "{err}");
}

/// A TLS front for the real proxy: terminates TLS with an rcgen certificate and relays to it.
async fn tls_front(proxy: std::net::SocketAddr) -> (u16, String) {
    // A subject of its own: two self-signed roots with the same name would confuse path building.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "tunnelkit test proxy");
    let signing_key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&signing_key).unwrap();
    let ck = rcgen::CertifiedKey { cert, signing_key };
    let pem = ck.cert.pem();
    let acceptor = support::tls_origin::acceptor(&ck);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = TcpStream::connect(proxy).await else { return };
                let _ = tunnelkit::net::relay(&mut tls, &mut up, None).await;
            });
        }
    });
    (port, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_tls_in_tls() {
    let origin = HttpsOrigin::start().await;
    let p = loopback_proxy(&[], 1);
    let (front, front_ca) = tls_front(p.addr()).await;
    let client = Client::builder()
        .proxy(format!("https://localhost:{front}"))
        .add_root_pem(front_ca.as_bytes())
        .add_root_pem(origin.ca_pem.as_bytes())
        .build()
        .unwrap();
    for _ in 0..5 {
        get_ok(&client, &format!("https://localhost:{}/", origin.port)).await;
    }
    assert_eq!(origin.connection_count(), 1, "one pooled TLS-in-TLS tunnel");
    // Without trusting the proxy's CA, TLS to the proxy fails with a clear error.
    let client = Client::builder().proxy(format!("https://localhost:{front}")).build().unwrap();
    let err = client.get(format!("https://localhost:{}/", origin.port).parse().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("TLS to proxy"), "{err}");
}

async fn read_cstr(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    loop {
        match s.read_u8().await.unwrap() {
            0 => return String::from_utf8(v).unwrap(),
            b => v.push(b),
        }
    }
}

/// A minimal SOCKS4a server (CONNECT only) for the test.
async fn socks4a_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut hdr = [0u8; 8];
                s.read_exact(&mut hdr).await.unwrap();
                assert_eq!(hdr[0..2], [4, 1]);
                let port = u16::from_be_bytes([hdr[2], hdr[3]]);
                let _user = read_cstr(&mut s).await;
                let host = if hdr[4..7] == [0, 0, 0] && hdr[7] != 0 {
                    read_cstr(&mut s).await
                } else {
                    std::net::Ipv4Addr::new(hdr[4], hdr[5], hdr[6], hdr[7]).to_string()
                };
                let mut up = TcpStream::connect((host.as_str(), port)).await.unwrap();
                s.write_all(&[0, 0x5a, 0, 0, 0, 0, 0, 0]).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_socks5h_and_socks4a() {
    let origin = HttpsOrigin::start().await;
    let p = loopback_proxy(&["--socks", "127.0.0.1:0"], 2);
    let s4 = socks4a_server().await;
    for proxy in [
        format!("socks5://{}", p.addr_of("socks5")),
        format!("socks5h://{}", p.addr_of("socks5")),
        format!("socks4a://{s4}"),
    ] {
        let client = Client::builder().proxy(proxy).add_root_pem(origin.ca_pem.as_bytes()).build().unwrap();
        get_ok(&client, &format!("https://localhost:{}/", origin.port)).await;
    }
}
