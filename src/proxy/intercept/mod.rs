//! HTTPS interception (`--intercept`): the "ordinary proxy" of the seed, a man in the middle that
//! shows HTTPS content, as Fiddler, Charles and mitmproxy do.
//!
//! A CONNECT to a host in [`scope`] is authenticated, checked against the destination policy and
//! dialled exactly like any other; after the `200`, instead of relaying bytes, the proxy
//! - reads the client's ClientHello and takes its SNI (else the CONNECT host) as the name to
//!   present a certificate for ([`leaf_cache`]: signed by tunnelkit's CA, made off the async
//!   threads, once per host);
//! - meanwhile opens its own TLS to the origin over the connection it dialled ([`upstream_tls`]:
//!   verified against the web PKI plus `--upstream-ca`), so both handshakes overlap and a new
//!   host's first byte costs one leaf generation at most;
//! - completes the client's handshake and serves the decrypted requests with the same HTTP engine
//!   as plain forwarding (strict framing, hop-by-hop, Via, the pool), over the origin connection.
//!
//! An origin whose certificate fails verification is not connected to: every request on that
//! connection is answered `502` with the reason. Both sides speak HTTP/1.1 (ALPN offers nothing
//! else), so no protocol is ever translated.

mod leaf_cache;
pub mod scope;
pub(super) mod settings;
mod upstream_tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::LazyConfigAcceptor;

use super::client_stream::ClientStream;
use crate::http::body::BufIo;
use crate::net::{BoxStream, Prefixed, Target};
pub use leaf_cache::LeafCache;
pub use scope::{HostGlob, Scope};
pub use upstream_tls::UpstreamTls;

/// `--intercept` and the flags that go with it, resolved.
#[derive(Debug, Clone)]
pub struct InterceptSettings {
    /// Which hosts.
    pub scope: Scope,
    /// Where the CA lives (`--ca-dir`, else the XDG data dir); made there if missing.
    pub ca_dir: PathBuf,
    /// Extra roots for origins (`--upstream-ca`).
    pub upstream_ca: Option<PathBuf>,
    /// Accept any origin certificate (`--insecure-upstream`).
    pub insecure_upstream: bool,
    /// Hosts whose leaf is kept (`--cert-cache`).
    pub cert_cache: usize,
}

/// What an intercepting proxy holds: the scope, the leaves and the TLS client for origins.
pub struct Interceptor {
    scope: Scope,
    leaves: LeafCache,
    upstream: UpstreamTls,
    /// The client's handshake must finish within the header timeout, as a request head must.
    handshake_timeout: Duration,
    /// The origin's handshake counts as part of dialling it.
    dial_timeout: Duration,
}

/// An intercepted CONNECT after both handshakes: the decrypted client stream and what became of
/// the origin.
pub(in crate::proxy) struct Intercepted {
    /// The client's decrypted side.
    pub(in crate::proxy) client: ClientStream,
    /// The SNI the client sent, if any (sent to the origin as is).
    pub sni: Option<String>,
    /// The origin's TLS stream, or why there is none (words for the 502).
    pub upstream: Result<BoxStream, String>,
}

impl Interceptor {
    /// Loads the CA from `settings.ca_dir`, or makes one there and says so on stderr with the steps
    /// to trust it (as `tunnelkit ca init` does).
    pub fn start(
        settings: &InterceptSettings,
        handshake_timeout: Duration,
        dial_timeout: Duration,
    ) -> anyhow::Result<Interceptor> {
        let (ca, created) = crate::ca::store::load_or_create(&settings.ca_dir)
            .map_err(|e| anyhow::anyhow!("--intercept: {e:#} (--ca-dir {})", settings.ca_dir.display()))?;
        if created {
            let report = crate::ca::cli::init_report(&crate::ca::store::cert_path(&settings.ca_dir), &ca);
            eprint!("--intercept: no CA in {}, so one was made.\n{report}", settings.ca_dir.display());
        }
        if settings.insecure_upstream {
            tracing::warn!(
                "--insecure-upstream: origin certificates are NOT verified; anyone on the path to an \
                 origin can read and change the traffic this proxy intercepts"
            );
            eprintln!("warning: --insecure-upstream: origin certificates are not verified");
        }
        tracing::info!(ca = %crate::ca::store::cert_path(&settings.ca_dir).display(), fingerprint = %ca.fingerprint(), "intercepting HTTPS");
        Ok(Interceptor {
            scope: settings.scope.clone(),
            leaves: LeafCache::new(Arc::new(ca), settings.cert_cache),
            upstream: UpstreamTls::new(settings.upstream_ca.as_deref(), settings.insecure_upstream)?,
            handshake_timeout,
            dial_timeout,
        })
    }

    /// True if a CONNECT to `target` is intercepted.
    pub fn intercepts(&self, target: &Target) -> bool {
        self.scope.intercepts(&target.host.to_string())
    }

    /// Opens TLS to `origin` over `stream` (a pooled connection's replacement, or the CONNECT's
    /// own), sending `sni`.
    pub async fn connect_origin(
        &self,
        origin: &Target,
        sni: Option<&str>,
        stream: BoxStream,
    ) -> Result<BoxStream, String> {
        self.upstream.connect(&origin.host, sni, stream, self.dial_timeout).await
    }

    /// Takes over a CONNECT that was answered `200`: the client's TLS (with the bytes it already
    /// sent behind the CONNECT head) and the origin's, over `upstream`. `Err` means the client's
    /// side failed (it does not trust the CA, or is not speaking TLS): nothing can be said to it.
    pub(in crate::proxy) async fn take_over(
        &self,
        client: BufIo<ClientStream>,
        upstream: BoxStream,
        target: &Target,
    ) -> Result<Intercepted, String> {
        let BufIo { io, buf } = client;
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), Prefixed::new(io, buf));
        let limit = self.handshake_timeout;
        let start = match tokio::time::timeout(limit, acceptor).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("no TLS ClientHello from the client: {e}")),
            Err(_) => return Err(format!("no TLS ClientHello within {limit:?} (--header-timeout)")),
        };
        let sni = start.client_hello().server_name().map(str::to_owned);
        let name = sni.clone().unwrap_or_else(|| target.host.to_string());
        let (leaf, upstream) = tokio::join!(
            self.leaves.server_config(&name),
            self.connect_origin(target, sni.as_deref(), upstream)
        );
        let leaf = leaf.map_err(|e| format!("cannot make a certificate for {name}: {e}"))?;
        let tls = match tokio::time::timeout(limit, start.into_stream(leaf)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                return Err(format!(
                    "the client refused the certificate for {name} or the handshake ({e}); does it trust \
                     tunnelkit's CA? (`tunnelkit ca show`, docs/intercept.md)"
                ))
            }
            Err(_) => return Err(format!("TLS handshake with the client not done within {limit:?}")),
        };
        Ok(Intercepted { client: ClientStream::Intercepted(Box::new(tls)), sni, upstream })
    }
}
