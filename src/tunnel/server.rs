//! The `ws-server` front door: accepts TCP, performs the WebSocket upgrade on `--path`, checks the bearer
//! token (wrong or missing → HTTP 401, nothing dialled), then hands the WebSocket to the protocol in use.
//! Only the `--compat ws-stream-tunnel` hand-off is wired; our own protocol (docs/protocol.md) is refused
//! with close code 1011 until the link and multiplexer land.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::compat::{self, CompatContext};
use super::ServerArgs;
use crate::net::{Dialer, DirectDialer};
use crate::policy::Policy;

/// Compares two byte strings in time independent of where they differ (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the upgrade request carries `Authorization: Bearer <one of tokens>`. No tokens configured = open.
fn authorized(req: &Request, tokens: &[String]) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let Some(v) = req.headers().get(http::header::AUTHORIZATION) else {
        return false;
    };
    let Some(presented) = v.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    // Check every token so timing does not reveal which one matched.
    tokens.iter().fold(false, |ok, t| ct_eq(presented, t.as_bytes()) | ok)
}

fn refuse(status: u16, challenge: bool) -> ErrorResponse {
    let mut r = http::Response::builder().status(status);
    if challenge {
        r = r.header(http::header::WWW_AUTHENTICATE, "Bearer");
    }
    r.body(None).expect("static response")
}

/// Runs the server until the process is stopped.
// The upgrade callback's error type (`ErrorResponse`) is fixed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut policy = Policy::new().allow(args.allow.clone());
    if let Some(ports) = args.connect_ports.clone() {
        policy = policy.connect_ports(ports);
    }
    let dialer: Arc<dyn Dialer> = Arc::new(DirectDialer::new(Arc::new(policy), Duration::from_secs(10)));
    let compat_ctx = args.compat.as_ref().map(|_| {
        Arc::new(CompatContext::new(dialer.clone(), args.compat_target.clone(), args.max_keep_broken))
    });
    if args.tls_cert.is_some() {
        anyhow::bail!("ws-server: --tls-cert/--tls-key are not implemented yet");
    }
    if let Some(addr) = args.metrics {
        crate::telemetry::serve_metrics(addr)?;
    }
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    let args = Arc::new(args);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let args = args.clone();
        let compat_ctx = compat_ctx.clone();
        tokio::spawn(async move {
            let cfg = WebSocketConfig::default()
                .max_write_buffer_size(4 << 20)
                .max_message_size(Some(1 << 20))
                .max_frame_size(Some(1 << 20));
            let check = |req: &Request, resp: Response| {
                if req.uri().path() != args.path {
                    return Err(refuse(404, false));
                }
                if !authorized(req, &args.token) {
                    return Err(refuse(401, true));
                }
                Ok(resp)
            };
            let ws = match tokio_tungstenite::accept_hdr_async_with_config(tcp, check, Some(cfg)).await {
                Ok(ws) => ws,
                Err(e) => {
                    tracing::debug!(%peer, "upgrade refused: {e}");
                    return;
                }
            };
            match compat_ctx {
                Some(ctx) => compat::serve(ws, ctx).await,
                None => {
                    let mut ws = ws;
                    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Error,
                        reason: "tunnel protocol not implemented yet".into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                }
            }
        });
    }
}
