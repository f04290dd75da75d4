//! Every listener a server has, each named by its [`Role`], and where it comes from: bound here,
//! inherited from systemd, or handed over by the process we replace.
//!
//! A server asks [`ListenerSet::take`] for each listener it would otherwise bind; inherited ones
//! are matched by role (and address) before anything is bound, so the same code path serves a plain
//! start, socket activation and an upgrade. When all are taken, [`ListenerSet::serve`] tells a
//! predecessor we are ready and starts serving the upgrade socket in turn.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::anyhow;
use tokio::net::TcpListener;

use super::args::UpgradeArgs;
use super::handover::{Handed, Handover, Predecessor, SocketFile};
use super::role::Role;
use super::systemd;

/// Where inherited listeners came from, for messages.
#[derive(Clone, Copy)]
enum Origin {
    Systemd,
    Process(u32),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Systemd => f.write_str("systemd (LISTEN_FDS)"),
            Origin::Process(pid) => write!(f, "pid {pid}"),
        }
    }
}

/// An inherited listening socket not yet taken by the server.
struct Inherited {
    role: Option<Role>,
    addr: SocketAddr,
    fd: OwnedFd,
    origin: Origin,
}

/// The listeners of one server, as they are taken.
pub struct ListenerSet {
    inherited: Vec<Inherited>,
    taken: Vec<Handed>,
    predecessor: Option<Predecessor>,
    upgrade: UpgradeArgs,
    first_socket: Option<SocketFile>,
}

impl ListenerSet {
    /// Gathers inherited listeners: systemd's, and with `--upgrade` the running process's. Without
    /// `--upgrade`, claims the upgrade socket now, so a path in use fails before anything listens.
    pub async fn open(upgrade: &UpgradeArgs) -> anyhow::Result<ListenerSet> {
        let mut inherited = Vec::new();
        for s in systemd::take() {
            let addr = listening_tcp(&s.fd).map_err(|e| {
                anyhow!("an inherited descriptor (LISTEN_FDS) is not a listening TCP socket: {e}")
            })?;
            let role = s.name.as_deref().and_then(Role::from_name);
            inherited.push(Inherited { role, addr, fd: s.fd, origin: Origin::Systemd });
        }
        let (mut predecessor, mut first_socket) = (None, None);
        match (&upgrade.upgrade_socket, upgrade.upgrade) {
            (Some(path), true) => {
                let mut p = Predecessor::connect(path).await?;
                let origin = Origin::Process(p.pid);
                for (role, named, fd) in std::mem::take(&mut p.listeners) {
                    let addr = listening_tcp(&fd).map_err(|e| {
                        anyhow!("--upgrade: the {role} listener {origin} handed over is not a listening TCP socket: {e}")
                    })?;
                    if addr != named {
                        anyhow::bail!("--upgrade: {origin} named its {role} listener {named} but sent one bound to {addr}");
                    }
                    inherited.push(Inherited { role: Some(role), addr, fd, origin });
                }
                predecessor = Some(p);
            }
            (Some(path), false) => first_socket = Some(SocketFile::bind_first(path)?),
            (None, _) => {}
        }
        Ok(ListenerSet { inherited, taken: Vec::new(), predecessor, upgrade: upgrade.clone(), first_socket })
    }

    /// The listener for `role` on `addr`: the inherited one for it, or a new one bound now. A port
    /// of 0 in `addr` matches an inherited listener on any port of the same address.
    pub async fn take(&mut self, role: Role, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        let flag = role.flag();
        let listener = match self.claim(role, addr)? {
            Some(fd) => {
                let std = std::net::TcpListener::from(fd);
                std.set_nonblocking(true)?;
                TcpListener::from_std(std)?
            }
            None => {
                TcpListener::bind(addr).await.map_err(|e| anyhow!("cannot listen on {addr} ({flag}): {e}"))?
            }
        };
        // A copy to hand to a successor; closing it later leaves the server's own open.
        let copy = listener.as_fd().try_clone_to_owned()?;
        self.taken.push((role, listener.local_addr()?, copy));
        Ok(listener)
    }

    fn claim(&mut self, role: Role, addr: SocketAddr) -> anyhow::Result<Option<OwnedFd>> {
        if let Some(i) = self.inherited.iter().position(|l| l.role == Some(role)) {
            let l = self.inherited.swap_remove(i);
            if !same_address(addr, l.addr) {
                let flag = role.flag();
                anyhow::bail!(
                    "{flag} {addr}: the {role} listener from {} is bound to {}; give the same {flag} as \
                     the running process (addresses cannot change in an upgrade: restart without \
                     --upgrade to change them)",
                    l.origin,
                    l.addr
                );
            }
            return Ok(Some(l.fd));
        }
        let unnamed = self.inherited.iter().position(|l| l.role.is_none() && same_address(addr, l.addr));
        Ok(unnamed.map(|i| self.inherited.swap_remove(i).fd))
    }

    /// Every listener is taken and the server is about to accept: tells the predecessor (which then
    /// stops accepting and drains) and serves the upgrade socket for our own successor.
    pub async fn serve(mut self) -> anyhow::Result<Handover> {
        for l in self.inherited.drain(..) {
            let what = l
                .role
                .map_or("listener".to_owned(), |r| format!("{r} listener ({} not given here)", r.flag()));
            tracing::warn!(
                "upgrade: {} passed a {what} on {} that this configuration does not use: closed",
                l.origin,
                l.addr
            );
        }
        let file = match (self.predecessor.take(), &self.upgrade.upgrade_socket) {
            (Some(p), Some(path)) => {
                let (pid, n) = (p.pid, self.taken.len());
                // A predecessor gone before hearing it leaves us the only server: serve on.
                match p.tell_ready().await {
                    Ok(()) => tracing::info!("upgrade: took {n} listeners from pid {pid}"),
                    Err(e) => tracing::warn!("upgrade: took {n} listeners, but {e:#}; serving anyway"),
                }
                Some(SocketFile::bind_successor(path)?)
            }
            _ => self.first_socket.take(),
        };
        match file {
            Some(file) => Handover::serve(file, std::mem::take(&mut self.taken)),
            None => Ok(Handover::none()),
        }
    }
}

/// Whether a listener bound to `actual` is the one configured as `wanted` (port 0: any port).
fn same_address(wanted: SocketAddr, actual: SocketAddr) -> bool {
    wanted == actual || (wanted.port() == 0 && wanted.ip() == actual.ip())
}

/// The address of `fd` if it is a listening TCP socket, as a handover must only ever deliver.
fn listening_tcp(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(fd);
    let not = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if sock.r#type()? != socket2::Type::STREAM {
        return Err(not("not a stream socket"));
    }
    if !sock.is_listener()? {
        return Err(not("not listening (SO_ACCEPTCONN is off)"));
    }
    sock.local_addr()?.as_socket().ok_or_else(|| not("not an IP socket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listening_tcp_socket_passes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let l = OwnedFd::from(l);
        assert_eq!(listening_tcp(&l).unwrap(), addr);
        let c = std::net::TcpStream::connect(addr).unwrap();
        assert!(listening_tcp(&OwnedFd::from(c)).is_err());
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(listening_tcp(&OwnedFd::from(u)).is_err());
    }

    #[test]
    fn port_zero_matches_any_port_of_the_same_address() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(same_address(any, "127.0.0.1:8080".parse().unwrap()));
        assert!(!same_address(any, "127.0.0.2:8080".parse().unwrap()));
        assert!(!same_address("127.0.0.1:80".parse().unwrap(), "127.0.0.1:8080".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_handed_over_listener_on_another_address_names_the_flag() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut set = ListenerSet {
            inherited: vec![Inherited {
                role: Some(Role::Socks),
                addr,
                fd: l.into(),
                origin: Origin::Process(7),
            }],
            taken: Vec::new(),
            predecessor: None,
            upgrade: UpgradeArgs::default(),
            first_socket: None,
        };
        let e = set.take(Role::Socks, "127.0.0.2:1080".parse().unwrap()).await.unwrap_err().to_string();
        assert!(e.starts_with("--socks 127.0.0.2:1080: the socks listener from pid 7"), "{e}");
    }
}
