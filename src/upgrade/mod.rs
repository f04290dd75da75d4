//! Zero-downtime binary upgrade: a running server hands its listening sockets to its successor
//! over a Unix socket (`--upgrade-socket PATH`, `--upgrade`), the way Pingora and HAProxy do, and
//! takes systemd's socket-activated listeners (`LISTEN_FDS`) by the same path.
//!
//! - [`args`]: the two flags.
//! - [`listener_set`]: the listeners of one server by role, taken from a predecessor, systemd, or bound.
//! - [`handover`]: the upgrade socket, both sides of the exchange.
//! - [`message`]: the exchange's messages and their bytes.
//! - [`role`]: what each listener is for, and its flag.
//! - [`fd_passing`]: descriptors over a Unix socket (`SCM_RIGHTS`).
//! - [`systemd`]: `LISTEN_FDS` / `LISTEN_PID` / `LISTEN_FDNAMES`.

pub mod args;
pub mod fd_passing;
pub mod handover;
pub mod listener_set;
pub mod message;
pub mod role;
pub mod systemd;

pub use args::UpgradeArgs;
pub use handover::Handover;
pub use listener_set::ListenerSet;
pub use role::Role;
