//! Listeners inherited from systemd socket activation: `LISTEN_PID` names this process,
//! `LISTEN_FDS` counts descriptors from 3 on, `LISTEN_FDNAMES` (optional, `:`-separated) names
//! them (`FileDescriptorName=` in the `.socket` unit).
//!
//! They are claimed once, at start, before the runtime's threads exist: the variables are removed
//! so a child process does not think the descriptors are its own, and changing the environment is
//! only sound while no other thread may read it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// The first inherited descriptor (after stdin, stdout, stderr).
const FIRST_FD: RawFd = 3;

/// Most descriptors taken from `LISTEN_FDS`: a larger number is a mistake, not a socket unit.
const MAX_INHERITED: usize = 64;

/// One inherited descriptor and its `FileDescriptorName=`, if the unit gave one.
pub struct Inherited {
    pub fd: OwnedFd,
    pub name: Option<String>,
}

static CLAIMED: Mutex<Vec<Inherited>> = Mutex::new(Vec::new());

/// Takes the descriptors systemd passed to this process, if any, and clears the variables. Call it
/// from `main` before starting threads; [`take`] hands them out later.
pub fn claim_from_env() {
    let pid_matches =
        std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<usize>().ok());
    let names = std::env::var("LISTEN_FDNAMES").ok();
    if std::env::var_os("LISTEN_FDS").is_none() {
        return;
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let Some(count) = count.filter(|_| pid_matches) else {
        tracing::warn!(
            "LISTEN_FDS is set but LISTEN_PID is not this process's pid (or a number is malformed): \
             ignoring the inherited descriptors"
        );
        return;
    };
    let names: Vec<&str> = names.as_deref().map(|n| n.split(':').collect()).unwrap_or_default();
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..count.min(MAX_INHERITED) {
        let raw = FIRST_FD + i as RawFd;
        // SAFETY: fcntl on a descriptor number only sets its close-on-exec flag; F_SETFD fails with
        // EBADF for a number that is not open, which we check before taking ownership.
        let open = unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
        if !open {
            tracing::warn!("LISTEN_FDS names descriptor {raw}, which is not open: skipped");
            continue;
        }
        // SAFETY: systemd passed `raw` to this process for it to own, it is open (checked above),
        // and nothing else in the process has taken it: this runs once, before any other code
        // could open a descriptor with this number.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = names.get(i).filter(|n| !n.is_empty()).map(|n| n.to_string());
        claimed.push(Inherited { fd, name });
    }
}

/// The descriptors [`claim_from_env`] took, handed out once.
pub fn take() -> Vec<Inherited> {
    std::mem::take(&mut *CLAIMED.lock().unwrap_or_else(|e| e.into_inner()))
}
