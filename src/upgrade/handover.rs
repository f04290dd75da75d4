//! The upgrade socket (`--upgrade-socket PATH`): the running process serves its listeners on it,
//! a successor started with `--upgrade` takes them (see [`super::message`] for the exchange).
//!
//! The running process keeps accepting until the successor says it is ready: both then hold the
//! same kernel sockets, so a connection waiting in the accept queue is taken by whichever accepts
//! first and none is refused. Only then does the running process stop accepting (closing its own
//! copies, never `shutdown(2)`, which would stop the shared socket for the successor too) and drain.
//! A successor that dies or stalls before "ready" changes nothing: the running process logs it and
//! keeps serving, and can be upgraded again.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio_util::sync::CancellationToken;

use super::message::Message;
use super::role::Role;

/// How long either side waits for the other's next message before the exchange starts or while
/// descriptors are on the way: both are local processes, so seconds mean one is stuck.
const EXCHANGE_WITHIN: Duration = Duration::from_secs(10);

/// How long the running process waits for its successor's "ready": the successor's start (reading
/// certificates, reaching Redis) runs between the offer and it.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A listener as handed over: its role, its address, and a copy of its descriptor.
pub type Handed = (Role, SocketAddr, OwnedFd);

/// The running process this one takes over from (`--upgrade`), between the offer and "ready".
pub struct Predecessor {
    pub pid: u32,
    pub listeners: Vec<Handed>,
    conn: UnixStream,
}

impl Predecessor {
    /// Connects to the process serving `path` and takes its listeners.
    pub async fn connect(path: &Path) -> anyhow::Result<Predecessor> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || connect(&path)).await?
    }

    /// Tells the predecessor that we accept now; it stops accepting and drains.
    pub async fn tell_ready(self) -> anyhow::Result<()> {
        let pid = self.pid;
        tokio::task::spawn_blocking(move || Message::Ready { pid: std::process::id() }.write(&self.conn, &[]))
            .await?
            .map_err(|e| anyhow!("--upgrade: cannot tell pid {pid} that we are ready: {e}"))
    }
}

fn connect(path: &Path) -> anyhow::Result<Predecessor> {
    let at = path.display();
    let conn = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => anyhow!(
            "--upgrade: no running tunnelkit serves {at} (--upgrade-socket): {e}; start without \
             --upgrade to bind the listeners afresh"
        ),
        _ => anyhow!("--upgrade: cannot connect to {at} (--upgrade-socket): {e}"),
    })?;
    conn.set_read_timeout(Some(EXCHANGE_WITHIN))?;
    conn.set_write_timeout(Some(EXCHANGE_WITHIN))?;
    let failed =
        |e: io::Error| anyhow!("--upgrade: the process on {at} did not hand over its listeners: {e}");
    Message::Hello { pid: std::process::id() }.write(&conn, &[]).map_err(failed)?;
    let (message, fds) = Message::read(&conn).map_err(failed)?;
    let Message::Offer { pid, listeners } = message else {
        bail!("--upgrade: the process on {at} answered {:?} instead of its listeners", message.to_text());
    };
    if listeners.len() != fds.len() {
        bail!(
            "--upgrade: pid {pid} named {} listeners but sent {} descriptors; it keeps serving",
            listeners.len(),
            fds.len()
        );
    }
    let listeners = listeners.into_iter().zip(fds).map(|((role, addr), fd)| (role, addr, fd)).collect();
    Ok(Predecessor { pid, listeners, conn })
}

/// The upgrade socket's file, removed when the process that bound it ends, unless a successor has
/// bound its own there since (another inode).
pub struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
    listener: Option<UnixListener>,
    /// Set once a successor took over: the path is its now, whatever the inode says (it may not
    /// have rebound yet, and removing its new socket would make it unreachable).
    handed_over: bool,
}

impl SocketFile {
    /// Binds `path` for a first process. A live socket there is another process's: an error; a
    /// stale one (nothing listening, left by a crash) is replaced.
    pub fn bind_first(path: &Path) -> anyhow::Result<SocketFile> {
        let at = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!("{at} (--upgrade-socket) exists and is not a socket: remove it or give another path");
            }
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "another process serves upgrades on {at} (--upgrade-socket): add --upgrade to take \
                     over from it, or give another path"
                );
            }
            let _ = std::fs::remove_file(path);
        }
        Self::bind(path)
    }

    /// Binds `path` for a successor, replacing the predecessor's socket file (the predecessor's
    /// listener, still open, is then reachable by nobody, which is what it needs: it is leaving).
    pub fn bind_successor(path: &Path) -> anyhow::Result<SocketFile> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(path);
        }
        Self::bind(path)
    }

    fn bind(path: &Path) -> anyhow::Result<SocketFile> {
        let at = path.display();
        let listener =
            UnixListener::bind(path).map_err(|e| anyhow!("cannot listen on {at} (--upgrade-socket): {e}"))?;
        // Whoever connects can take our listeners and stop us accepting: owner only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| anyhow!("{at} (--upgrade-socket): cannot restrict to the owner: {e}"))?;
        let meta = std::fs::metadata(path)?;
        Ok(SocketFile {
            path: path.to_owned(),
            inode: (meta.dev(), meta.ino()),
            listener: Some(listener),
            handed_over: false,
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        let ours = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The running side: serves successors on the upgrade socket until one has taken over.
pub struct Handover {
    taken_over: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    file: Option<SocketFile>,
}

impl Handover {
    /// No upgrade socket: nothing can take over.
    pub fn none() -> Handover {
        Handover { taken_over: CancellationToken::new(), task: None, file: None }
    }

    /// Serves `listeners` to successors connecting to `file`.
    pub fn serve(mut file: SocketFile, listeners: Vec<Handed>) -> anyhow::Result<Handover> {
        let std = file.listener.take().ok_or_else(|| anyhow!("the upgrade socket was served twice"))?;
        std.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(std)?;
        let taken_over = CancellationToken::new();
        let task = tokio::spawn(serve_successors(listener, Arc::new(listeners), taken_over.clone()));
        Ok(Handover { taken_over, task: Some(task), file: Some(file) })
    }

    /// Resolves when `shutdown` does or a successor has taken over, whichever comes first: either
    /// way the server stops accepting and drains.
    pub async fn until(&self, shutdown: impl Future<Output = ()>) {
        tokio::select! {
            _ = shutdown => {}
            _ = self.taken_over.cancelled() => {}
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(file) = &mut self.file {
            file.handed_over = self.taken_over.is_cancelled();
        }
    }
}

async fn serve_successors(
    listener: tokio::net::UnixListener,
    listeners: Arc<Vec<Handed>>,
    done: CancellationToken,
) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::warn!("upgrade: cannot accept on the upgrade socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let lent = listeners.clone();
        let exchange = tokio::task::spawn_blocking(move || {
            let conn = conn.into_std()?;
            conn.set_nonblocking(false)?;
            hand_over(&conn, &lent)
        });
        match exchange.await {
            Ok(Ok(pid)) => {
                tracing::info!(
                    "upgrade: handed {} listeners to pid {pid}; no longer accepting, draining open connections",
                    listeners.len()
                );
                done.cancel();
                return;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotConnected => tracing::debug!("upgrade: {e}"),
            Ok(Err(e)) => tracing::warn!("upgrade: {e}; still serving"),
            Err(e) => tracing::warn!("upgrade: the handover task failed: {e}; still serving"),
        }
    }
}

/// One exchange with a would-be successor: its hello, our offer, its ready. The successor's pid on
/// success.
fn hand_over(conn: &UnixStream, listeners: &[Handed]) -> io::Result<u32> {
    conn.set_read_timeout(Some(EXCHANGE_WITHIN))?;
    conn.set_write_timeout(Some(EXCHANGE_WITHIN))?;
    // Descriptors a peer sends us are dropped (closed) with the message: we asked for none.
    let pid = match Message::read(conn) {
        Ok((Message::Hello { pid }, _)) => pid,
        Ok((other, _)) => return Err(unexpected(&other)),
        // A first process checking whether the socket is live (`SocketFile::bind_first`).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "closed before saying hello"))
        }
        Err(e) => return Err(e),
    };
    let offer = Message::Offer {
        pid: std::process::id(),
        listeners: listeners.iter().map(|(role, addr, _)| (*role, *addr)).collect(),
    };
    let fds: Vec<_> = listeners.iter().map(|(_, _, fd)| fd.as_fd()).collect();
    offer.write(conn, &fds)?;
    conn.set_read_timeout(Some(READY_WITHIN))?;
    match Message::read(conn) {
        Ok((Message::Ready { .. }, _)) => Ok(pid),
        Ok((other, _)) => Err(unexpected(&other)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::other(format!(
            "pid {pid} took the listeners but closed before it was ready (see its log)"
        ))),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Err(io::Error::other(format!("pid {pid} was not ready within {READY_WITHIN:?}")))
        }
        Err(e) => Err(e),
    }
}

fn unexpected(message: &Message) -> io::Error {
    io::Error::other(format!("unexpected message {:?}", message.to_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_listener() -> (std::net::TcpListener, Vec<Handed>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let handed = vec![(Role::Listen, l.local_addr().unwrap(), OwnedFd::from(l.try_clone().unwrap()))];
        (l, handed)
    }

    #[tokio::test]
    async fn a_successor_gets_the_same_socket_and_ready_ends_the_running_side() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sock");
        let (l, handed) = one_listener();
        let running = Handover::serve(SocketFile::bind_first(&path).unwrap(), handed).unwrap();

        let successor = Predecessor::connect(&path).await.unwrap();
        assert_eq!(successor.pid, std::process::id());
        let (role, addr, fd) = &successor.listeners[0];
        assert_eq!((*role, *addr), (Role::Listen, l.local_addr().unwrap()));
        // The same kernel socket: a connection made now is accepted through the received copy.
        let got = std::net::TcpListener::from(fd.try_clone().unwrap());
        let _c = std::net::TcpStream::connect(addr).unwrap();
        assert!(got.accept().is_ok());
        assert!(!running.taken_over.is_cancelled(), "nothing ends before ready");
        successor.tell_ready().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), running.until(std::future::pending())).await.unwrap();
    }

    #[tokio::test]
    async fn a_successor_that_leaves_before_ready_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sock");
        let (_l, handed) = one_listener();
        let running = Handover::serve(SocketFile::bind_first(&path).unwrap(), handed).unwrap();
        drop(Predecessor::connect(&path).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!running.taken_over.is_cancelled());
        // Still served: the next successor takes over.
        Predecessor::connect(&path).await.unwrap().tell_ready().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), running.until(std::future::pending())).await.unwrap();
        drop(running);
        assert!(path.exists(), "the socket file is the successor's now: not removed");
    }

    #[tokio::test]
    async fn the_socket_file_goes_with_its_process_unless_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sock");
        let running = Handover::serve(SocketFile::bind_first(&path).unwrap(), Vec::new()).unwrap();
        let e = SocketFile::bind_first(&path).err().unwrap().to_string();
        assert!(e.contains("another process serves upgrades"), "{e}");
        drop(running);
        assert!(!path.exists());
    }
}
