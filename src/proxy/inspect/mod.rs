//! What the proxy records of its traffic, and how it is shown: [`flow`] (one recorded exchange),
//! [`recorder`] (the ring of the last flows, their ids and live subscribers), [`flows_log`]
//! (`--flows-log`, one JSON line per flow), [`har`] (HAR 1.2 export), [`decode`] (a captured body made readable).
//! Recording is off unless `--inspect`, `--flows-log` or `--har` asks for it.

pub mod decode;
pub mod flow;
pub mod flows_log;
pub mod har;
pub mod recorder;
pub mod settings;
pub mod ws_tap;

pub use flow::{Flow, FlowId, FlowKind};
pub use flows_log::FlowsLog;
pub use recorder::{Recorder, RecorderConfig};
