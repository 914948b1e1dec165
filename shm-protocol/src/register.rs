//! Registration with the daemon over its Unix socket.
//!
//! The socket is `SOCK_SEQPACKET` (message boundaries, ordered, reliable,
//! and it carries `SCM_RIGHTS`). The exchange:
//!
//! 1. client → daemon: [`Hello`] (rkyv) with the client's protocol version
//!    and settings;
//! 2. daemon → client: [`Welcome`] with two descriptors attached (the
//!    segment memfd and the core's doorbell eventfd), or [`Refused`] with a
//!    reason (version mismatch names both versions; a peer whose uid/gid is
//!    not allowed is told so).
//!
//! The socket then stays open for the client's lifetime: the daemon
//! reclaims the segment when it reaches EOF, and the client learns of the
//! daemon's death the same way. Both sides bound every read and write.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};
use rkyv::{Archive, Deserialize, Serialize};

use crate::ProtocolError;

/// Version of the registration handshake and everything behind it (the
/// segment layout and messages). Bumped together with `LAYOUT_VERSION`.
pub const PROTOCOL_VERSION: u32 = crate::layout::LAYOUT_VERSION;

/// Largest handshake message accepted.
pub const MAX_HANDSHAKE: usize = 64 * 1024;

/// What a client asks for.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Database id (standalone servers); `None`: the daemon's default.
    pub database: Option<u32>,
    /// Shown in the daemon's logs and stats (not sent to the servers:
    /// server connections are shared).
    pub client_name: Option<String>,
    /// One of the daemon's configured auth profiles; `None`: the default.
    pub auth_profile: Option<String>,
    /// Requested ring capacities (0: the daemon's default). The daemon
    /// rounds them up to a power of two (at least 4 KiB) and refuses the
    /// registration above its `max_sq_size`/`max_cq_size`.
    pub sq_capacity: u64,
    pub cq_capacity: u64,
}

/// Client → daemon.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    Register {
        protocol_version: u32,
        pid: u32,
        settings: Settings,
    },
    /// Ask for the daemon's statistics (`vshmd stats`), as text.
    Stats {
        protocol_version: u32,
        prometheus: bool,
    },
}

/// Daemon → client.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum HandshakeReply {
    /// Registered: the segment and doorbell descriptors ride along.
    Welcome {
        protocol_version: u32,
        client_id: u64,
        /// The request timeout the core applies by default.
        request_timeout_ms: u32,
        /// The core's bound on a command that blocks forever (`BLPOP q 0`)
        /// when the request sets no timeout (see `bound::BoundDefaults`).
        block_forever_limit_ms: u64,
    },
    Refused {
        reason: String,
        daemon_version: u32,
    },
    Stats {
        text: String,
    },
}

type E = rkyv::rancor::Error;

fn bad<D: std::fmt::Display>(e: D) -> ProtocolError {
    ProtocolError::BadMessage(e.to_string())
}

pub fn encode_hello(h: &Hello) -> Vec<u8> {
    rkyv::to_bytes::<E>(h)
        .expect("serializing into a Vec")
        .to_vec()
}

pub fn decode_hello(b: &[u8]) -> Result<Hello, ProtocolError> {
    let mut a = rkyv::util::AlignedVec::<16>::with_capacity(b.len());
    a.extend_from_slice(b);
    rkyv::from_bytes::<Hello, E>(&a).map_err(bad)
}

pub fn encode_reply(r: &HandshakeReply) -> Vec<u8> {
    rkyv::to_bytes::<E>(r)
        .expect("serializing into a Vec")
        .to_vec()
}

pub fn decode_reply(b: &[u8]) -> Result<HandshakeReply, ProtocolError> {
    let mut a = rkyv::util::AlignedVec::<16>::with_capacity(b.len());
    a.extend_from_slice(b);
    rkyv::from_bytes::<HandshakeReply, E>(&a).map_err(bad)
}

fn os<D: std::fmt::Display>(what: &'static str) -> impl FnOnce(D) -> ProtocolError {
    move |e| ProtocolError::Os(format!("{what}: {e}"))
}

/// Bound blocking reads and writes on a socket.
pub fn set_timeouts<F: AsFd>(fd: &F, t: Duration) -> Result<(), ProtocolError> {
    let tv = nix::sys::time::TimeVal::new(
        t.as_secs() as nix::sys::time::time_t,
        t.subsec_micros() as nix::sys::time::suseconds_t,
    );
    setsockopt(fd, sockopt::ReceiveTimeout, &tv).map_err(os("SO_RCVTIMEO"))?;
    setsockopt(fd, sockopt::SendTimeout, &tv).map_err(os("SO_SNDTIMEO"))?;
    Ok(())
}

/// Send one message with descriptors attached.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<(), ProtocolError> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(os("sendmsg"))?;
    Ok(())
}

/// One received message and the descriptors that came with it.
pub type Received = (Vec<u8>, Vec<OwnedFd>);

/// Receive one message and any descriptors attached (closed on error).
/// Returns `Ok(None)` at EOF.
pub fn recv_with_fds(sock: RawFd) -> Result<Option<Received>, ProtocolError> {
    recv_once(sock).map_err(|(_, e)| e)
}

/// [`recv_with_fds`], with the system error (if that is what failed).
fn recv_once(sock: RawFd) -> Result<Option<Received>, (Option<Errno>, ProtocolError)> {
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds, truncated) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| (Some(e), os("recvmsg")(e)))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| (Some(e), os("cmsgs")(e)))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for fd in v {
                    // SAFETY: the kernel just installed these descriptors in
                    // our table for us; nothing else owns them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        (
            msg.bytes,
            fds,
            msg.flags
                .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC),
        )
    };
    if truncated {
        return Err((
            None,
            ProtocolError::BadMessage("handshake message truncated".into()),
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some((buf, fds)))
}

/// Send the first message of a handshake and receive the answer. The
/// daemon refuses a peer it does not allow before reading anything and
/// closes: a send that then fails (the peer is gone), or a read that
/// reports the reset (the close found our message unread; the kernel
/// reports that before the queued answer, once), still returns the
/// refusal queued for us, so the caller learns why.
pub fn exchange(sock: RawFd, data: &[u8]) -> Result<Option<Received>, ProtocolError> {
    match send_with_fds(sock, data, &[]) {
        Ok(()) => recv_answer(sock),
        Err(e) => match recv_answer(sock) {
            Ok(Some(a)) => Ok(Some(a)),
            _ => Err(e),
        },
    }
}

/// [`recv_with_fds`] of the daemon's answer to the first message: past a
/// reset the kernel reports (once, before the queued answer) when the
/// daemon closed with that message unread.
pub fn recv_answer(sock: RawFd) -> Result<Option<Received>, ProtocolError> {
    match recv_once(sock) {
        Err((Some(Errno::ECONNRESET), _)) => recv_with_fds(sock),
        r => r.map_err(|(_, e)| e),
    }
}

/// The peer's credentials (SO_PEERCRED).
pub fn peer_cred<F: AsFd>(sock: &F) -> Result<nix::sys::socket::UnixCredentials, ProtocolError> {
    nix::sys::socket::getsockopt(sock, sockopt::PeerCredentials).map_err(os("SO_PEERCRED"))
}

/// True when the peer has hung up (non-blocking check).
pub fn peer_gone(sock: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd: sock,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// A raw fd helper for callers holding an `OwnedFd`.
pub fn raw<F: AsRawFd>(f: &F) -> RawFd {
    f.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon answered and closed with the client's message unread: the client's plain
    /// read reports the reset first, `recv_answer` gets past it to the answer; a client
    /// whose send meets the closed socket still reads the answer through `exchange`.
    #[test]
    fn the_answer_is_read_past_a_reset_and_past_a_failed_send() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let pair = || {
            let (c, d) = socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .unwrap();
            set_timeouts(&c, Duration::from_secs(5)).unwrap();
            (c, d)
        };
        // Reset: the client's message is left unread by the closing peer.
        let (c, d) = pair();
        send_with_fds(c.as_raw_fd(), b"hello", &[]).unwrap();
        send_with_fds(d.as_raw_fd(), b"refused", &[]).unwrap();
        drop(d);
        let (c2, d2) = pair();
        send_with_fds(c2.as_raw_fd(), b"hello", &[]).unwrap();
        send_with_fds(d2.as_raw_fd(), b"refused", &[]).unwrap();
        drop(d2);
        assert!(
            recv_with_fds(c2.as_raw_fd()).is_err(),
            "a plain read reports the reset first"
        );
        let (got, _) = recv_answer(c.as_raw_fd()).unwrap().expect("the answer");
        assert_eq!(got, b"refused");
        // Failed send: the peer answered and closed before the client sent.
        let (c, d) = pair();
        send_with_fds(d.as_raw_fd(), b"refused", &[]).unwrap();
        drop(d);
        let (got, _) = exchange(c.as_raw_fd(), b"hello")
            .unwrap()
            .expect("the answer");
        assert_eq!(got, b"refused");
    }

    #[test]
    fn handshake_round_trip_and_garbage() {
        let h = Hello::Register {
            protocol_version: PROTOCOL_VERSION,
            pid: 42,
            settings: Settings {
                database: Some(3),
                client_name: Some("w1".into()),
                ..Settings::default()
            },
        };
        assert_eq!(decode_hello(&encode_hello(&h)).unwrap(), h);
        let r = HandshakeReply::Refused {
            reason: "no".into(),
            daemon_version: 9,
        };
        assert_eq!(decode_reply(&encode_reply(&r)).unwrap(), r);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = decode_hello(&junk);
            let _ = decode_reply(&junk);
        }
    }
}
