//! The client's half of the handshake (docs/protocol.md): the WebSocket (TCP through
//! [`crate::net::socket::connect`] or the `--proxy`, then TLS and the upgrade with the bearer token), then
//! `HELLO` → `WELCOME` to create a tunnel or `RESUME` → `RESUMED` to reattach one. Every answer that is not
//! the expected one becomes a [`ConnectError`] saying whether to retry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::builder::TunnelClient;
use super::error::ConnectError;
use crate::net::{socket, BoxStream};
use crate::tunnel::frame::{stamp, Frame};
use crate::tunnel::id::ResumeSecret;
use crate::tunnel::link;
use crate::tunnel::params::LinkParams;
use crate::tunnel::session::{Attached, Role, Session};
use crate::tunnel::wire::{Message, Welcome, MAX_SERVER_HANDSHAKE};
use crate::tunnel::ws::{Incoming, WsConnection};

/// Bytes a client's streams may hold in each direction (see `LinkParams::stream_memory`).
const CLIENT_STREAM_MEMORY: usize = 64 << 20;

/// How long the server has to answer `HELLO` or `RESUME` once the upgrade is done.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the WebSocket (through the proxy and TLS if configured).
async fn websocket(client: &TunnelClient) -> Result<WsConnection<BoxStream>, ConnectError> {
    let tcp: BoxStream = match &client.proxy {
        Some(p) => p.tunnel(&client.target).await.map_err(|e| anyhow::anyhow!("via proxy: {e}"))?,
        None => {
            let tcp = socket::connect(&client.target)
                .await
                .with_context(|| format!("connecting to {}", client.target))?;
            socket::set_nodelay(&tcp);
            Box::new(tcp)
        }
    };
    let stream: BoxStream = match &client.tls {
        Some(tls) => match tls.connector.connect(tls.name.clone(), tcp).await {
            Ok(tls) => Box::new(tls),
            // A certificate we do not trust will not fix itself: say so at once instead of retrying.
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                return Err(ConnectError::Untrusted(crate::net::tls_words::explain(
                    &e.to_string(),
                    "give the CA that issued it with --ca",
                )));
            }
            Err(e) => return Err(anyhow::anyhow!("TLS handshake with the server: {e}").into()),
        },
        None => tcp,
    };
    let mut req = client.url.clone().into_client_request().context("building the upgrade request")?;
    if let Some(t) = &client.token {
        let v =
            http::HeaderValue::from_str(&format!("Bearer {t}")).context("the token is not a header value")?;
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    match tokio_tungstenite::client_async(req, stream).await {
        // The server sends nothing before our first frame: tungstenite holds no bytes of it.
        // The server's frame limit is not known before WELCOME: accept up to 1 MiB messages.
        Ok((ws, _)) => Ok(WsConnection::new(ws.into_inner(), Role::Client, BytesMut::new(), 1 << 20)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(upgrade_refused(resp.status(), client.url.path(), client.token.is_some()))
        }
        Err(e) => Err(anyhow::anyhow!("WebSocket upgrade: {e}").into()),
    }
}

/// A tunnel the server has just created: its session, carried by a running link, and the secret that
/// resumes it. The keeper takes it from here.
pub(super) struct Created {
    pub(super) session: Arc<Session>,
    pub(super) secret: ResumeSecret,
}

/// `HELLO` → `WELCOME`: creates a tunnel and starts its link.
pub(super) async fn create(client: &TunnelClient) -> Result<Created, ConnectError> {
    let mut ws = websocket(client).await?;
    let hello = Message::Hello { mode: client.mode, keep_broken: client.keep_broken }.encode(0);
    ws.send(hello.freeze()).await.context("sending HELLO")?;
    let Welcome { id, secret, keep_broken, max_frame, max_streams, replay_bytes, heartbeat } =
        match first_message(&mut ws).await? {
            Message::Welcome(w) => w,
            other => {
                let got = other.kind();
                return Err(anyhow::anyhow!("expected WELCOME, got {got:?}").into());
            }
        };
    let params = LinkParams {
        mode: client.mode,
        keep_broken,
        max_frame: max_frame as usize,
        max_streams,
        replay_bytes: replay_bytes as usize,
        // A zero heartbeat would spin the link: 100 ms is the floor, whatever the server says.
        heartbeat: heartbeat.max(Duration::from_millis(100)),
        // The client serves its own user, not strangers: a generous bound, so that many slow local
        // readers are not reset; the server bounds what it holds with its own budget.
        stream_memory: CLIENT_STREAM_MEMORY,
    };
    tracing::info!(tunnel = %id, keep_broken = ?params.keep_broken, "tunnel open");
    let session = Session::new(id, Role::Client, params, None);
    let Attached { gen, cancel, .. } = session.attach(0).expect("a new session has not ended");
    tokio::spawn(link::run(session.clone(), ws, gen, cancel));
    Ok(Created { session, secret })
}

/// One resume attempt: new connection, `RESUME`, wait for `RESUMED`, hand over to the link.
pub(super) async fn resume(
    client: &TunnelClient,
    session: &Arc<Session>,
    secret: &ResumeSecret,
) -> Result<(), ConnectError> {
    let mut ws = websocket(client).await?;
    let our_ack = session.our_ack();
    let mut f = Message::Resume { id: session.id, secret: *secret }.encode(0);
    stamp(&mut f, 0, our_ack);
    ws.send(f.freeze()).await.context("sending RESUME")?;
    let answer = first_frame(&mut ws).await?;
    if !matches!(Message::of(&answer), Ok(Message::Resumed)) {
        return Err(anyhow::anyhow!("expected RESUMED, got {:?}", answer.kind).into());
    }
    let Attached { gen, cancel, .. } = session.attach(answer.ack).map_err(ConnectError::Ended)?;
    tracing::info!(tunnel = %session.id, gen, "tunnel resumed");
    tokio::spawn(link::run(session.clone(), ws, gen, cancel));
    Ok(())
}

/// What a non-101 answer to the upgrade means. Only a gateway's 502/503/504 may pass by itself and is
/// retried; anything else (no endpoint at that path, token refused, not a tunnel server) is final, so the
/// client fails at once instead of retrying for seconds.
fn upgrade_refused(status: http::StatusCode, path: &str, has_token: bool) -> ConnectError {
    match status.as_u16() {
        404 => ConnectError::NoEndpoint { path: path.to_owned() },
        401 if has_token => ConnectError::TokenRefused,
        401 => ConnectError::TokenMissing,
        502..=504 => anyhow::anyhow!("the upgrade was answered {status} (a gateway)").into(),
        _ => ConnectError::NotATunnelServer { status },
    }
}

/// Reads the server's first frame; a `REFUSED` becomes [`ConnectError::Refused`].
async fn first_frame(ws: &mut WsConnection<BoxStream>) -> Result<Frame, ConnectError> {
    let msg = match tokio::time::timeout(ANSWER_TIMEOUT, ws.next()).await {
        Ok(Ok(Some(Incoming::Binary(b)))) => b,
        Ok(Ok(Some(other))) => return Err(anyhow::anyhow!("unexpected {other:?} in the handshake").into()),
        Ok(Err(e)) => return Err(anyhow::anyhow!("reading the handshake: {e}").into()),
        Ok(Ok(None)) => return Err(anyhow::anyhow!("the server closed during the handshake").into()),
        Err(_) => return Err(anyhow::anyhow!("no handshake answer within {ANSWER_TIMEOUT:?}").into()),
    };
    let frame = Frame::decode(msg, MAX_SERVER_HANDSHAKE).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    if let Ok(Message::Refused { code, reason }) = Message::of(&frame) {
        return Err(ConnectError::Refused { code, reason });
    }
    Ok(frame)
}

/// Reads the server's first frame as a typed message (see [`first_frame`]).
async fn first_message(ws: &mut WsConnection<BoxStream>) -> Result<Message, ConnectError> {
    let frame = first_frame(ws).await?;
    Message::of(&frame).map_err(|e| anyhow::anyhow!("handshake: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gateway_answer_is_worth_retrying() {
        let at = |code: u16, token| upgrade_refused(http::StatusCode::from_u16(code).unwrap(), "/t", token);
        assert!(matches!(at(404, false), ConnectError::NoEndpoint { .. }));
        assert!(matches!(at(401, true), ConnectError::TokenRefused));
        assert!(matches!(at(401, false), ConnectError::TokenMissing));
        assert!(matches!(at(200, false), ConnectError::NotATunnelServer { .. }));
        for gateway in [502, 503, 504] {
            assert!(!at(gateway, false).is_final(), "{gateway} is retried");
        }
    }
}
