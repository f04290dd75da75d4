//! How a request of a known session finds its backend (`--route-by`), and what the client is told
//! at the handshake so that it can:
//!
//! - `store`: the sid is looked up in the [`SidStore`] (local, or shared through Redis).
//! - `tag`: the sid carries a signed backend tag ([`super::sid_tag`]); the tag alone routes, and it
//!   is cut from the query before the backend sees it ([`super::sid_rewrite`]). The local store is
//!   still kept, but only as this balancer's ledger of the sessions it carries (least-sessions and
//!   the session gauges): there is no central view, each balancer balances on what it sees.
//!
//! Either way an unknown sid, a bad tag, or a session whose backend is down gets Engine.IO's own
//! `400 {"code":1,"message":"Session ID unknown"}` at once, so the client reconnects.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Uri};

use super::backend::BackendId;
use super::sid_rewrite;
use super::state::State;

/// The backend of the session `sid` (as the client sent it) and the backend's own sid, with the
/// request's query rewritten to it; `None` if the request must get "Session ID unknown".
pub(super) async fn backend_of<B>(
    state: &State,
    req: &mut Request<B>,
    sid: String,
    peer: SocketAddr,
) -> Option<(BackendId, String)> {
    let Some(tags) = state.tags.as_ref().map(|t| t.load_full()) else {
        return match state.store.get(&sid).await {
            Some(b) if state.backends.get(b).is_healthy() => Some((b, sid)),
            other => {
                if other.is_some() {
                    state.store.remove(&sid).await;
                }
                unknown(&sid, peer, "session_unknown");
                None
            }
        };
    };
    let (bare, b) = match tags.decode(&sid) {
        Ok(x) => x,
        Err(why) => {
            tracing::debug!(?why, "sid tag does not route");
            unknown(&sid, peer, "bad_tag");
            return None;
        }
    };
    if !state.backends.get(b).is_healthy() {
        state.store.remove(bare).await;
        unknown(&sid, peer, "session_unknown");
        return None;
    }
    // Any balancer may carry any session: count the ones this balancer sees, whoever handed them out.
    if state.store.get(bare).await.is_none() {
        state.store.put(bare, b).await;
    }
    let pq = req.uri().path_and_query()?;
    let query = sid_rewrite::untag_query(pq.query().unwrap_or(""), &sid, bare);
    let pq = PathAndQuery::try_from(format!("{}?{query}", pq.path())).ok()?;
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts).ok()?;
    Some((b, bare.to_owned()))
}

fn unknown(sid: &str, peer: SocketAddr, kind: &'static str) {
    metrics::counter!("tunnelkit_sticky_routing_errors_total", "kind" => kind).increment(1);
    tracing::debug!(%peer, %sid, kind, "unknown sid, bad tag or backend down: 400 Session ID unknown");
}

/// The handshake answer the client gets for session `sid` on backend `b`: with tag routing, the
/// body with `sid.TAG` in place of `sid`; `None` if that body cannot be rewritten (the client could
/// not route with the backend's bare sid, so it must not get it).
pub(super) fn hand_out(
    state: &State,
    b: BackendId,
    sid: &str,
    content_type: &str,
    body: Bytes,
) -> Option<Bytes> {
    let Some(tags) = &state.tags else { return Some(body) };
    let tags = tags.load();
    let tagged = tags.encode(sid, b);
    sid_rewrite::tag_handshake(content_type, &body, &tagged[sid.len()..]).map(Bytes::from)
}
