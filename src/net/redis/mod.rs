//! Redis, shared by the capabilities that keep state in it: sticky's sid store (`--redis`,
//! `--redis-cluster`) and the tunnel cluster's registry (`ws-server --cluster-redis`).
//!
//! - [`url`]: what a Redis URL names (one node, Sentinel, Cluster seeds), checked at start.
//! - [`RedisConn`]: one link whatever the topology, every command bounded in time.
//! - `sentinel`: following the master a set of sentinels names.

mod conn;
mod sentinel;
pub mod url;

pub use conn::{RedisConn, COMMAND_TIMEOUT};
