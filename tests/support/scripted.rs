//! An origin whose answers are scripted per request: raw bytes, pauses and closes, for the tests of
//! misbehaving upstreams (bytes after the end of a message, broken framing, unsolicited 101s).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tunnelkit::http::body::{copy_body, BufIo, Encode};
use tunnelkit::http::head;

/// One step of an answer.
#[derive(Clone)]
pub enum Step {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Pause.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

/// What the script sees of a request.
pub struct Request {
    pub method: String,
    pub target: String,
    /// The raw request head.
    pub head: Vec<u8>,
    /// Which request this is on its connection (0 for the first).
    pub nth_on_connection: usize,
}

/// A running scripted origin.
pub struct Scripted {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Scripted {
    /// Starts an origin that answers each request with `script(request)`.
    pub async fn start<F>(script: F) -> Scripted
    where
        F: Fn(&Request) -> Vec<Step> + Send + Sync + 'static,
    {
        let script = Arc::new(script);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                tokio::spawn(async move {
                    let mut c = BufIo::new(s);
                    let mut nth = 0;
                    loop {
                        let (req, raw) = loop {
                            if let Ok(Some((h, len))) = head::parse_request(&c.buf) {
                                let raw = c.buf.split_to(len);
                                break (h, raw.to_vec());
                            }
                            match c.fill().await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        };
                        let Ok(framing) = head::request_framing(&req) else { return };
                        // A request that waits for `100 Continue` is answered before its body,
                        // as a server refusing the upload does; the connection then closes.
                        let refuses_body = head::has_token(&req.headers, "expect", "100-continue");
                        let mut sink = Vec::new();
                        let idle = Duration::from_secs(10);
                        if !refuses_body
                            && copy_body(&mut c, framing, &mut sink, Encode::Identity, Vec::new(), idle)
                                .await
                                .is_err()
                        {
                            return;
                        }
                        let request = Request {
                            method: req.method.clone(),
                            target: req.target.clone(),
                            head: raw,
                            nth_on_connection: nth,
                        };
                        nth += 1;
                        for step in script(&request) {
                            match step {
                                Step::Write(b) => {
                                    if c.io.write_all(&b).await.is_err() {
                                        return;
                                    }
                                }
                                Step::Sleep(d) => tokio::time::sleep(d).await,
                                Step::Close => return,
                            }
                        }
                        if refuses_body {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { addr, connections }
    }

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// `Step::Write` of a string.
pub fn write(s: &str) -> Step {
    Step::Write(s.as_bytes().to_vec())
}
