//! The registration socket on tokio: a non-blocking `SOCK_SEQPACKET` Unix
//! socket driven through `AsyncFd` (tokio has no seqpacket type).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, accept4, bind, listen, recvmsg, sendmsg, AddressFamily, Backlog, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use vshm_protocol::register::MAX_HANDSHAKE;

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// The listening socket; unlinks its path when dropped (if it still is
/// the socket this process bound).
pub struct Listener {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
    ino: (u64, u64),
}

/// What to do about an existing file at the socket path.
fn clear_stale(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not touching it",
            path.display()
        ));
    }
    // Someone listening there? Then another daemon owns it.
    let probe = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let addr =
        UnixAddr::new(path).map_err(|e| format!("bad socket path {}: {e}", path.display()))?;
    match socket::connect(probe.as_raw_fd(), &addr) {
        Ok(()) => Err(format!("another vshmd is listening on {}", path.display())),
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display())),
        Err(e) => Err(format!(
            "{} exists and cannot be probed ({e}); remove it by hand",
            path.display()
        )),
    }
}

fn resolve_group(g: &str) -> Result<nix::unistd::Gid, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(gr)) => Ok(gr.gid),
        Ok(None) => Err(format!("socket_group {g:?}: no such group")),
        Err(e) => Err(format!("socket_group {g:?}: {e}")),
    }
}

impl Listener {
    /// Create the socket at `path` with permission bits `mode` (never more
    /// open than that, not even for an instant) and optionally `group`.
    pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<Listener, String> {
        let gid = group.map(resolve_group).transpose()?;
        clear_stale(path)?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        let addr =
            UnixAddr::new(path).map_err(|e| format!("bad socket path {}: {e}", path.display()))?;
        // bind() creates the file with 0777 & ~umask: bind under a umask
        // that leaves only the owner's bits, then widen to `mode`.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let r = bind(fd.as_raw_fd(), &addr);
        nix::sys::stat::umask(old);
        r.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let finish = || -> Result<(u64, u64), String> {
            if let Some(gid) = gid {
                nix::unistd::chown(path, None, Some(gid))
                    .map_err(|e| format!("cannot chown {} to gid {gid}: {e}", path.display()))?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
            listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))
                .map_err(|e| format!("listen: {e}"))?;
            let m = std::fs::symlink_metadata(path)
                .map_err(|e| format!("stat {}: {e}", path.display()))?;
            Ok((m.dev(), m.ino()))
        };
        let ino = match finish() {
            Ok(i) => i,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd: it stays open
        // and refers to this socket for as long as the registration lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| format!("epoll: {e}"))?;
        Ok(Listener {
            fd,
            path: path.to_path_buf(),
            ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept one connection (non-blocking, close-on-exec).
    pub async fn accept(&self) -> std::io::Result<Conn> {
        loop {
            let mut g = self.fd.readable().await?;
            match g.try_io(|fd| {
                accept4(
                    fd.as_raw_fd(),
                    SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                )
                .map_err(io)
            }) {
                Ok(Ok(raw)) => {
                    // SAFETY: accept4 just returned this descriptor; we are
                    // its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    return Conn::new(owned);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// One accepted client socket.
pub struct Conn {
    fd: AsyncFd<OwnedFd>,
}

/// A received message (descriptors a client sends are closed at once:
/// no client message carries any).
pub enum Recv {
    Msg(Vec<u8>),
    Eof,
}

impl Conn {
    fn new(fd: OwnedFd) -> std::io::Result<Conn> {
        // SAFETY: as in `Listener::bind`: the AsyncFd owns the descriptor.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(std::io::Error::from)?;
        Ok(Conn { fd })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// Receive one message.
    pub async fn recv(&self) -> std::io::Result<Recv> {
        loop {
            let mut g = self.fd.readable().await?;
            match g.try_io(|fd| recv_once(fd.as_raw_fd())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receive one message if one is there now (`WouldBlock` if not).
    pub fn try_recv(&self) -> std::io::Result<Recv> {
        recv_once(self.raw())
    }

    /// Send one message with descriptors attached.
    pub async fn send(&self, data: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
        loop {
            let mut g = self.fd.writable().await?;
            let r = g.try_io(|fd| {
                let iov = [IoSlice::new(data)];
                let cmsg = [ControlMessage::ScmRights(fds)];
                let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
                sendmsg::<()>(
                    fd.as_raw_fd(),
                    &iov,
                    cmsgs,
                    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                    None,
                )
                .map_err(io)
            });
            match r {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_once(fd: RawFd) -> std::io::Result<Recv> {
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    // Room for the most descriptors one message can carry (the kernel's
    // SCM_MAX_FD, 253) and credentials: a client never sends any to the
    // daemon, but with a smaller buffer the kernel truncates the control
    // data (MSG_CTRUNC) after installing what fits, nix then refuses to
    // list it, and those descriptors could not be closed.
    let mut cmsg = nix::cmsg_space!([RawFd; 253], libc::ucred);
    let (n, truncated) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            fd,
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io)?;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(v) = c {
                    for fd in v {
                        // SAFETY: the kernel just installed this descriptor
                        // for us; we own it and close it right away.
                        drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
        }
        if msg.flags.intersects(MsgFlags::MSG_CTRUNC) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "control data truncated",
            ));
        }
        (msg.bytes, msg.flags.intersects(MsgFlags::MSG_TRUNC))
    };
    if n == 0 {
        return Ok(Recv::Eof);
    }
    if truncated {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    buf.truncate(n);
    // The registration message is kept for the whole session: do not keep
    // the 64 KiB receive buffer with it (it was most of an idle client's
    // cost).
    buf.shrink_to_fit();
    Ok(Recv::Msg(buf))
}

/// The supplementary groups of the peer (SO_PEERGROUPS, Linux 4.13+);
/// empty if the kernel does not tell.
pub fn peer_groups(fd: RawFd) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of `len` bytes; the kernel
        // writes at most `len` bytes and sets `len` to what it wrote (or to
        // what it needs, with ERANGE).
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return groups;
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE)
            && n > groups.len()
            && n <= 65536
        {
            groups.resize(n, 0);
            continue;
        }
        break;
    }
    Vec::new()
}
