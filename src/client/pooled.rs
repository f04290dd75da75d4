//! [`Client`]: an HTTP/1.1 client whose connections to origins go through a proxy and are kept as a
//! pool of persistent tunnels: one CONNECT serves request after request.
//!
//! hyper-util's pooled client races a new connect against the return of a busy connection, so a
//! loop of sequential requests opens extra tunnels now and then. This pool instead waits for a
//! connection that is on its way back (its response body was read) before dialling, so sequential
//! requests reuse one tunnel, and concurrent requests each get their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, Uri};
use tokio::sync::Notify;
use tower_service::Service;

use super::connector::ProxyConnector;
use super::dialer::ProxyDialer;
use super::proxy_url::ProxyKind;
use crate::net::tls::tls_config;
use crate::net::DialError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI cannot be requested (no host, unsupported scheme).
    #[error("invalid request URI: {0}")]
    Uri(String),
    /// Reaching the origin through the proxy failed (carries the proxy's status, if any).
    #[error(transparent)]
    Connect(#[from] DialError),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// (scheme, host, port): what a pooled connection leads to. Absolute-form connections to an HTTP
/// proxy are shared by every plain-http origin and use the key ("http+proxy", "", 0).
type Key = (String, String, u16);

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    id: u64,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<Key, Vec<Idle>>,
    returning: HashMap<Key, usize>,
    next_id: u64,
}

struct Shared {
    connector: ProxyConnector,
    state: Mutex<PoolState>,
    returned: Notify,
    keep_alive: bool,
    idle_timeout: Duration,
    max_idle_per_target: usize,
    absolute_form_for_http: bool,
    proxy_authorization: Option<http::HeaderValue>,
}

/// An HTTP/1.1 client through a proxy with persistent, pooled tunnels.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// let client = tunnelkit::client::Client::builder()
///     .proxy("http://127.0.0.1:3128")
///     .keep_alive(true)
///     .idle_timeout(std::time::Duration::from_secs(30))
///     .build()?;
/// let resp = client.get("https://example.com/".parse()?).await?;
/// assert!(resp.status().is_success());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Starts a builder with defaults: keep-alive on, idle timeout 90 s, 32 idle tunnels per target.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// GETs `uri`.
    pub async fn get(&self, uri: Uri) -> Result<Response<Incoming>, Error> {
        self.request(Request::get(uri).body(Full::default()).expect("valid GET")).await
    }

    /// Sends a request; an idempotent request that fails on a reused tunnel before any response
    /// arrives is sent once more on a fresh one.
    pub async fn request(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
        let (parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(Error::Uri(format!("{uri}: only http and https")));
        }
        let host = uri.host().ok_or_else(|| Error::Uri(format!("{uri}: no host")))?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let absolute = scheme == "http" && self.shared.absolute_form_for_http;
        let key: Key = if absolute { ("http+proxy".into(), String::new(), 0) } else { (scheme, host, port) };
        let idempotent = crate::http::head::is_idempotent(parts.method.as_str());

        let build = || {
            let mut r = Request::from_parts(parts.clone(), body.clone());
            if !absolute {
                let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                *r.uri_mut() = pq.parse().expect("path and query of a valid URI");
            } else if let Some(auth) = &self.shared.proxy_authorization {
                r.headers_mut().insert(http::header::PROXY_AUTHORIZATION, auth.clone());
            }
            if !r.headers().contains_key(http::header::HOST) {
                if let Some(a) = uri.authority() {
                    r.headers_mut().insert(http::header::HOST, a.as_str().parse().expect("valid authority"));
                }
            }
            r
        };

        let (mut sender, reused) = self.checkout(&key, &uri).await?;
        let resp = match sender.send_request(build()).await {
            Ok(r) => r,
            Err(e) if reused && idempotent && !e.is_parse() && !e.is_timeout() => {
                let (mut fresh, _) = self.connect(&uri).await?;
                let r = fresh.send_request(build()).await?;
                sender = fresh;
                r
            }
            Err(e) => return Err(e.into()),
        };
        self.give_back(key, sender);
        Ok(resp)
    }

    /// An idle connection for `key`, one about to come back, or a new one.
    async fn checkout(&self, key: &Key, uri: &Uri) -> Result<(SendRequest<Full<Bytes>>, bool), Error> {
        loop {
            let notified = self.shared.returned.notified();
            let returning = {
                let mut st = self.shared.state.lock().expect("pool lock");
                if let Some(list) = st.idle.get_mut(key) {
                    while let Some(idle) = list.pop() {
                        if idle.sender.is_ready() {
                            return Ok((idle.sender, true));
                        }
                    }
                }
                st.returning.get(key).copied().unwrap_or(0)
            };
            if returning == 0 {
                return self.connect(uri).await;
            }
            // A connection whose response has been read is on its way back: wait for it briefly.
            if tokio::time::timeout(Duration::from_millis(200), notified).await.is_err() {
                return self.connect(uri).await;
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<(SendRequest<Full<Bytes>>, bool), Error> {
        let io = self.shared.connector.clone().call(uri.clone()).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((sender, false))
    }

    /// Returns the connection to the pool once its response has been read (or drops it).
    fn give_back(&self, key: Key, mut sender: SendRequest<Full<Bytes>>) {
        if !self.shared.keep_alive {
            return;
        }
        *self.shared.state.lock().expect("pool lock").returning.entry(key.clone()).or_default() += 1;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let ready = sender.ready().await.is_ok();
            let id = {
                let mut st = shared.state.lock().expect("pool lock");
                if let Some(n) = st.returning.get_mut(&key) {
                    *n -= 1;
                }
                st.next_id += 1;
                let id = st.next_id;
                let list = st.idle.entry(key.clone()).or_default();
                if ready && list.len() < shared.max_idle_per_target {
                    list.push(Idle { sender, id });
                    Some(id)
                } else {
                    None
                }
            };
            shared.returned.notify_waiters();
            // Close it after the idle timeout unless it was taken meanwhile.
            if let Some(id) = id {
                tokio::time::sleep(shared.idle_timeout).await;
                let mut st = shared.state.lock().expect("pool lock");
                if let Some(list) = st.idle.get_mut(&key) {
                    list.retain(|i| i.id != id);
                }
            }
        });
    }
}

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    proxy: Option<String>,
    keep_alive: bool,
    idle_timeout: Duration,
    tcp_keepalive: Option<Duration>,
    max_idle_per_target: usize,
    connect_timeout: Duration,
    tls_timeout: Duration,
    connect_answer_timeout: Duration,
    preemptive_auth: bool,
    extra_roots: Vec<Vec<u8>>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            proxy: None,
            keep_alive: true,
            idle_timeout: Duration::from_secs(90),
            tcp_keepalive: Some(Duration::from_secs(30)),
            max_idle_per_target: 32,
            connect_timeout: Duration::from_secs(10),
            tls_timeout: Duration::from_secs(10),
            connect_answer_timeout: Duration::from_secs(30),
            preemptive_auth: false,
            extra_roots: Vec::new(),
        }
    }
}

impl ClientBuilder {
    /// Goes through this proxy (`http://`, `https://`, `socks5://`, `socks5h://`, `socks4a://`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Keeps tunnels open and pooled between requests (default on).
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// Closes pooled tunnels idle (no request) for this long.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// TCP keepalive probes on sockets (probes are not traffic: they do not reset the idle timeout).
    pub fn tcp_keepalive(mut self, d: Duration) -> Self {
        self.tcp_keepalive = Some(d);
        self
    }

    /// Most idle tunnels kept per target.
    pub fn max_idle_per_target(mut self, n: usize) -> Self {
        self.max_idle_per_target = n;
        self
    }

    /// Bounds the TCP connect to the proxy (or origin).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Bounds the TLS handshake with an https:// proxy.
    pub fn tls_timeout(mut self, d: Duration) -> Self {
        self.tls_timeout = d;
        self
    }

    /// Bounds the wait for the proxy's CONNECT (or SOCKS) answer.
    pub fn connect_answer_timeout(mut self, d: Duration) -> Self {
        self.connect_answer_timeout = d;
        self
    }

    /// Sends proxy credentials with the first CONNECT (default: only after a 407).
    pub fn preemptive_auth(mut self, on: bool) -> Self {
        self.preemptive_auth = on;
        self
    }

    /// Trusts an extra CA (PEM) for origins and an https:// proxy.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots.push(pem.to_vec());
        self
    }

    /// Builds the client (requests must run inside a tokio runtime).
    pub fn build(self) -> anyhow::Result<Client> {
        let roots: Vec<&[u8]> = self.extra_roots.iter().map(Vec::as_slice).collect();
        let proxy = match &self.proxy {
            Some(url) => {
                let d = ProxyDialer::from_url(url)?
                    .connect_timeout(self.connect_timeout)
                    .tls_timeout(self.tls_timeout)
                    .answer_timeout(self.connect_answer_timeout)
                    .preemptive_auth(self.preemptive_auth)
                    .tcp_keepalive(self.tcp_keepalive)
                    .with_extra_roots(&roots)?;
                Some(d)
            }
            None => None,
        };
        let absolute_form_for_http =
            proxy.as_ref().is_some_and(|p| matches!(p.url().kind, ProxyKind::Http | ProxyKind::Https));
        let proxy_authorization = match proxy.as_ref().and_then(|p| p.proxy_authorization()) {
            Some(v) => Some(http::HeaderValue::from_str(&v)?),
            None => None,
        };
        let connector = ProxyConnector::new(proxy, tls_config(&roots)?)
            .tcp_keepalive(self.tcp_keepalive)
            .connect_timeout(self.connect_timeout);
        Ok(Client {
            shared: Arc::new(Shared {
                connector,
                state: Mutex::new(PoolState::default()),
                returned: Notify::new(),
                keep_alive: self.keep_alive,
                idle_timeout: self.idle_timeout,
                max_idle_per_target: self.max_idle_per_target,
                absolute_form_for_http,
                proxy_authorization,
            }),
        })
    }
}
