//! What a `ws-server` does for each tunnel: keep it while broken for the granted hold time (then expire
//! it), dial the targets of the streams the client opens under the server's policy, and serve the
//! client's remote listeners (`-R`), whose connections become streams opened back to the client.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::handle::Tunnel;
use super::listen_limits::{ListenLimits, ListenerSlot};
use super::session::{rst, EndReason, LinkStatus, ListenRequest, Session};
use super::stream::TunnelStream;
use crate::net::relay::Relay;
use crate::net::{socket, DialError, Dialer, Purpose, Target};
use crate::shutdown::Drain;

/// Everything the service needs from the server.
#[derive(Clone)]
pub struct ServiceContext {
    /// Dials stream targets under the server's policy.
    pub dialer: Arc<dyn Dialer>,
    /// Decides which addresses a client may ask the server to listen on.
    pub policy: Arc<crate::policy::Policy>,
    /// How many listeners, and on which kinds of address (`--max-listeners`, `--allow-public-listen`).
    pub listen: Arc<ListenLimits>,
    /// The server's shutdown: once triggered, new streams are refused.
    pub drain: Drain,
}

/// Expires the tunnel when it stays broken longer than its hold time; returns when it has ended.
pub async fn hold(session: Arc<Session>) {
    let mut status = session.status();
    loop {
        let now = *status.borrow_and_update();
        match now {
            LinkStatus::Ended => return,
            LinkStatus::Up(_) => {
                if status.changed().await.is_err() {
                    return;
                }
            }
            LinkStatus::Down(_) => {
                tokio::select! {
                    r = status.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(session.params.keep_broken) => {
                        if matches!(*status.borrow(), LinkStatus::Down(_)) {
                            metrics::counter!("tunnelkit_tunnel_expired_total").increment(1);
                            session.end(EndReason::Expired);
                        }
                    }
                }
            }
        }
    }
}

/// How often a draining server looks whether a tunnel's last stream has ended. Stream ends are also
/// announced as events, but a lagging event receiver would miss one; a poll cannot.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Once `drain` is triggered, closes the tunnel in order as soon as it has no stream open, so that a
/// shutting-down server waits for the streams in flight and no longer (the drain tracks the tunnel's
/// connection task, which ends with the close).
pub async fn close_on_drain(tunnel: Tunnel, drain: Drain) {
    tokio::select! {
        _ = drain.cancelled() => {}
        _ = tunnel.closed() => return,
    }
    while tunnel.stream_count() > 0 {
        tokio::select! {
            _ = tunnel.closed() => return,
            _ = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
    tracing::info!(tunnel = %tunnel.id(), "shutting down: no stream open, closing the tunnel");
    tunnel.close().await;
}

/// Maps a dial failure onto the RST the client sees.
fn rst_code(e: &DialError) -> u16 {
    match e {
        DialError::Denied(_) => rst::POLICY,
        DialError::Timeout(_) => rst::TIMEOUT,
        _ => rst::DIAL_FAILED,
    }
}

/// Dials the target of each stream the client opens and relays it; serves `-R` listeners.
pub async fn serve_streams(
    tunnel: Tunnel,
    ctx: ServiceContext,
    mut listens: mpsc::UnboundedReceiver<ListenRequest>,
) {
    let listeners = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            s = tunnel.accept() => {
                let Some(stream) = s else { return };
                if ctx.drain.is_triggered() {
                    stream.reset(rst::LIMIT, "the server is shutting down");
                    continue;
                }
                tokio::spawn(dial_and_relay(stream, ctx.dialer.clone()));
            }
            Some(req) = listens.recv() => {
                match ctx.listen.take(&listeners) {
                    Ok(slot) => drop(tokio::spawn(remote_listener(tunnel.clone(), req, ctx.clone(), slot))),
                    Err(why) => tunnel.session().answer_listen(req.id, Err(why)),
                }
            }
        }
    }
}

async fn dial_and_relay(mut stream: TunnelStream, dialer: Arc<dyn Dialer>) {
    let target = match Target::parse(stream.target()) {
        Ok(t) => t,
        Err(e) => return stream.reset(rst::DIAL_FAILED, &format!("bad target: {e}")),
    };
    match dialer.dial(&target, Purpose::Tunnel).await {
        Ok(mut up) => {
            stream.confirm();
            let _ = Relay::new(&mut stream, &mut up, None).lending().await;
        }
        Err(e) => {
            tracing::debug!(%target, "tunnel stream refused: {e}");
            stream.reset(rst_code(&e), &e.to_string());
        }
    }
}

/// Binds what the client asked for (only addresses the policy would let the server reach, unspecified
/// ones only with `--allow-public-listen`, and never a privileged port) and opens a stream back to the
/// client for every accepted connection. `_slot` counts the listener against the limits while it lives.
async fn remote_listener(tunnel: Tunnel, req: ListenRequest, ctx: ServiceContext, _slot: ListenerSlot) {
    let session = tunnel.session().clone();
    let addr = match req.bind.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => return session.answer_listen(req.id, Err(format!("`{}` is not IP:PORT", req.bind))),
    };
    if addr.port() != 0 && addr.port() < 1024 {
        return session.answer_listen(req.id, Err(format!("port {} is privileged", addr.port())));
    }
    if let Err(e) = ctx.listen.check_addr(addr) {
        tracing::warn!(tunnel = %session.id, %addr, "remote listener refused: needs --allow-public-listen");
        return session.answer_listen(req.id, Err(e));
    }
    if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        if let Err(e) = ctx.policy.check_ip(addr.ip()) {
            return session.answer_listen(req.id, Err(e.to_string()));
        }
    }
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return session.answer_listen(req.id, Err(format!("bind {addr}: {e}"))),
    };
    let bound = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return session.answer_listen(req.id, Err(format!("bind {addr}: {e}"))),
    };
    tracing::info!(tunnel = %session.id, %bound, "remote forward listening");
    session.answer_listen(req.id, Ok(bound));
    let target = format!("listen:{}", req.id);
    loop {
        let (mut tcp, _) = tokio::select! {
            _ = session.ended.cancelled() => return,
            // A draining server takes no new work, here as on its main listener.
            _ = ctx.drain.cancelled() => return,
            x = socket::accept(&listener) => x,
        };
        let Ok(mut stream) = tunnel.open(&target) else { continue };
        tokio::spawn(async move {
            if stream.connected().await.is_ok() {
                let _ = Relay::new(&mut tcp, &mut stream, None).lending().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! A broken tunnel is held for the granted time, then expires; a resume within it keeps the
    //! tunnel. The client's keeper applies the same deadline while it retries.

    use super::*;
    use crate::tunnel::id::TunnelId;
    use crate::tunnel::params::{LinkParams, Mode};
    use crate::tunnel::session::Role;

    const KEEP_BROKEN: Duration = Duration::from_secs(30);

    /// A server session carried by its first connection (number 1).
    fn held_session() -> Arc<Session> {
        let params = LinkParams {
            mode: Mode::Multi,
            keep_broken: KEEP_BROKEN,
            max_frame: 16 * 1024,
            max_streams: 8,
            replay_bytes: 1 << 20,
            heartbeat: Duration::from_secs(10),
            stream_memory: 8 << 20,
        };
        let s = Session::new(TunnelId::random(), Role::Server, params, None);
        assert_eq!(s.attach(0).expect("a new session attaches").gen, 1);
        s
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_tunnel_expires_once_its_hold_time_runs_out() {
        let server = held_session();
        let keeper = tokio::spawn(hold(server.clone()));
        tokio::task::yield_now().await;
        server.link_down(1);
        tokio::time::sleep(KEEP_BROKEN - Duration::from_secs(1)).await;
        assert_eq!(server.end_reason(), None, "still held");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(server.end_reason(), Some(EndReason::Expired));
        keeper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_resume_within_the_hold_time_keeps_the_tunnel() {
        let server = held_session();
        let keeper = tokio::spawn(hold(server.clone()));
        tokio::task::yield_now().await;
        server.link_down(1);
        tokio::time::sleep(KEEP_BROKEN / 2).await;
        server.attach(0).unwrap();
        tokio::time::sleep(KEEP_BROKEN * 2).await;
        assert_eq!(server.end_reason(), None, "up again: no clock runs");
        server.end(EndReason::Closed);
        keeper.await.unwrap();
    }
}
