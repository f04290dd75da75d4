//! HTTP/1 pieces shared by the proxy and the balancer: strict head parsing and framing ([`head`]),
//! streaming bodies ([`body`]), hop-by-hop rules ([`hop`]), what an upgrade request is
//! ([`upgrade`]), head writing ([`write`]), heads re-written for the next hop ([`next_hop`]),
//! percent-decoding ([`percent`]), short error responses ([`response`]) and the head of a WebSocket frame
//! ([`ws_frame`]).

pub mod body;
pub mod head;
pub mod hop;
pub mod next_hop;
pub mod percent;
pub mod response;
pub mod upgrade;
pub mod write;
pub mod ws_frame;

pub use hop::{connection_names, connection_tokens, is_always_hop_by_hop, is_hop_by_hop, strip_hop_by_hop};
pub use upgrade::is_upgrade_request;
