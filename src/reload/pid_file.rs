//! `--pid-file FILE`: the server's process id, written once it listens (so whoever reads it can
//! signal a server that is ready) and removed when it exits; and `tunnelkit reload --pid-file FILE`,
//! which sends that process SIGHUP and says in words when the file is missing or names no process.

use std::path::{Path, PathBuf};

/// A written pid file, removed when dropped (the server's normal exit).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`: to a temporary file beside it, then renamed, so a reader
    /// never sees a half-written number.
    pub fn write(path: &Path) -> anyhow::Result<PidFile> {
        let tmp = path.with_extension("pid-tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| anyhow::anyhow!("--pid-file {}: cannot write it: {e}", path.display()))?;
        Ok(PidFile { path: path.to_owned() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own file: a newer server may have written its pid there since.
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim().parse::<u32>() == Ok(std::process::id()));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes the pid file when `path` is given.
pub fn write_if(path: Option<&Path>) -> anyhow::Result<Option<PidFile>> {
    path.map(PidFile::write).transpose()
}

/// `tunnelkit reload --pid-file FILE`: sends SIGHUP to the server whose pid `path` holds. The server
/// logs the outcome (`config reloaded (generation N)` or why not); this only says whether the
/// signal was delivered.
pub fn send_reload(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "--pid-file {}: cannot read it ({e}); is the server running with --pid-file {}?",
            path.display(),
            path.display()
        )
    })?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0).ok_or_else(|| {
        anyhow::anyhow!("--pid-file {}: `{}` is not a process id", path.display(), text.trim())
    })?;
    // SAFETY: kill(2) with a positive pid only sends a signal; no memory is involved.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::ESRCH) => format!(
                "no process {pid} is running: the file is stale (the server exited without removing it); \
                 start the server again or remove {}",
                path.display()
            ),
            Some(libc::EPERM) => format!("not allowed to signal process {pid}; run as the server's user"),
            _ => format!("cannot signal process {pid}: {e}"),
        };
        anyhow::bail!("--pid-file {}: {why}", path.display());
    }
    Ok(pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_our_pid_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.pid");
        let f = PidFile::write(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().trim(), std::process::id().to_string());
        drop(f);
        assert!(!p.exists());
    }

    #[test]
    fn a_missing_or_stale_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.pid");
        let err = send_reload(&p).unwrap_err().to_string();
        assert!(err.contains("cannot read") && err.contains("--pid-file"), "{err}");
        std::fs::write(&p, "banana\n").unwrap();
        assert!(send_reload(&p).unwrap_err().to_string().contains("not a process id"));
        // Far above any pid_max (4194304 on Linux).
        std::fs::write(&p, "2000000000\n").unwrap();
        let err = send_reload(&p).unwrap_err().to_string();
        assert!(err.contains("stale"), "{err}");
    }
}
