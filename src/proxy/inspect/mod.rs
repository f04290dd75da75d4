//! What the proxy records of its traffic, and how it is shown. Recording is off unless
//! `--inspect`, `--flows-log` or `--har` asks for it.
//!
//! - [`flow`]: one recorded exchange (`Flow`), as the proxy hands it over when it ends.
//! - [`recorder`]: the store: ids, the ring of the last `--inspect-flows`, live subscribers.
//! - [`flows_log`]: `--flows-log`, one JSON line per flow, written on a thread of its own.
//! - [`decode`]: a captured body made readable: content codings undone (capped), text or hex.
//! - [`har`]: HAR 1.2 export (`/api/har`, `--har` at shutdown).
//! - [`api`]: the JSON shapes of the inspector's API (flow summaries and details).
//! - [`server`]: the inspector's HTTP server (`--inspect`): routes, auth, event stream; it serves
//!   `page.html`, `page.js` and `page.css`, the one page, embedded.
//! - [`ws_tap`]: WebSocket messages read off an upgraded connection as the relay moves it.
//! - [`settings`]: `--inspect`, `--flows-log`, `--har` and their limits, resolved.

pub mod api;
pub mod decode;
pub mod flow;
pub mod flows_log;
pub mod har;
pub mod recorder;
pub mod server;
pub mod settings;
pub mod ws_tap;

pub use flow::{Flow, FlowId, FlowKind};
pub use flows_log::FlowsLog;
pub use recorder::{Recorder, RecorderConfig};
