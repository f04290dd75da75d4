//! Handing a connection to the server that holds its tunnel: this server opens a connection to the
//! holder's `--advertise` address, sends it an upgrade request carrying the client's own token and a
//! signed `Tunnelkit-Handoff` header, and once the holder has answered `101` passes it the client's
//! `RESUME` frame, byte for byte as the client sent it, then relays the raw connection both ways. The
//! client's WebSocket runs end to end between the client and the holder (its frames are never decoded
//! here), so it sees one resume, from the server that holds its bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::relay::Relay;
use crate::net::{socket, BoxStream, Target};

/// Longest wait for the holder to accept the connection and answer the upgrade.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest answer head accepted from the holder.
const MAX_HEAD: usize = 8 * 1024;

/// What of the client's upgrade request goes on to the holder.
#[derive(Debug, Clone, Default)]
pub struct ClientUpgrade {
    /// The request target (path and query) the client asked for.
    pub target: String,
    /// The client's `Authorization` field, passed on as sent: the holder checks the token itself.
    pub authorization: Option<String>,
}

impl ClientUpgrade {
    /// What of `req` a holder needs.
    pub fn of(req: &tokio_tungstenite::tungstenite::handshake::server::Request) -> Self {
        let target =
            req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.to_string());
        let authorization =
            req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        ClientUpgrade { target, authorization }
    }
}

/// Why a connection could not be handed over; nothing was sent to the client yet, so it can still
/// be answered here.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    /// The holder's address did not answer in time, or refused.
    #[error("holder {0} unreachable: {1}")]
    Unreachable(String, String),
    /// The holder answered the upgrade with something other than `101`.
    #[error("holder {0} refused the handoff: {1}")]
    Refused(String, String),
}

/// Connects to `holder` and has it accept the upgrade; gives back the connection and any bytes the
/// holder sent after its answer head (for the client).
pub async fn open(
    holder: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    upgrade: &ClientUpgrade,
    handoff_header: &str,
) -> Result<(BoxStream, BytesMut), HandOffError> {
    let unreachable = |e: &dyn std::fmt::Display| HandOffError::Unreachable(holder.to_owned(), e.to_string());
    let work = async {
        let tcp = TcpStream::connect(holder).await.map_err(|e| unreachable(&e))?;
        socket::set_nodelay(&tcp);
        let mut up: BoxStream = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let target: Target = holder.parse().map_err(|e| unreachable(&e))?;
                let name = crate::net::tls::server_name(&target.host).map_err(|e| unreachable(&e))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(connector.connect(name, tcp).await.map_err(|e| unreachable(&e))?)
            }
        };
        let key =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::tunnel::id::random16());
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {holder}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{}: {handoff_header}\r\n",
            upgrade.target,
            super::handoff::HEADER,
        );
        if let Some(auth) = &upgrade.authorization {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        up.write_all(head.as_bytes()).await.map_err(|e| unreachable(&e))?;
        let (status, rest) = read_answer(&mut up).await.map_err(|e| unreachable(&e))?;
        if status != 101 {
            return Err(HandOffError::Refused(holder.to_owned(), format!("HTTP {status}")));
        }
        Ok((up, rest))
    };
    tokio::time::timeout(HOLDER_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(unreachable(&"no answer in time")))
}

/// Reads the holder's answer head: its status and the bytes after it.
async fn read_answer(up: &mut BoxStream) -> std::io::Result<(u16, BytesMut)> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = buf[..end].split(|&b| b == b'\r').next().unwrap_or_default();
            let status = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.strip_prefix("HTTP/1.1 "))
                .and_then(|l| l.get(..3)?.parse().ok())
                .ok_or_else(|| std::io::Error::other("not an HTTP/1.1 answer"))?;
            return Ok((status, buf.split_off(end + 4)));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("answer head too long"));
        }
        if up.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Sends the client what the holder already sent, the holder the client's first frame, then relays
/// until either side ends or nothing moves for `idle`.
pub async fn relay<C>(client: &mut C, mut up: BoxStream, from_holder: &[u8], first: &[u8], idle: Duration)
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    if client.write_all(from_holder).await.is_err() || up.write_all(first).await.is_err() {
        return;
    }
    let result = Relay::new(client, &mut up, Some(idle)).await;
    tracing::debug!("handed-off connection ended: {result:?}");
}
