//! The core's doorbell: one eventfd per attached client.
//!
//! Why an eventfd per client rather than a futex word: the core serves
//! many clients from one tokio event loop, and an eventfd is pollable, so
//! a sleeping client costs nothing (no thread blocked per client, no scan
//! of idle segments) and a ring wakes exactly the task that serves it. A
//! client writes it only when the core announced need-wakeup, so a busy
//! client makes no system call per request.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A shareable eventfd (`Arc<OwnedFd>`).
#[derive(Clone, Debug)]
pub struct ArcFd(pub Arc<OwnedFd>);

impl AsRawFd for ArcFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The doorbell of one client.
#[derive(Debug)]
pub struct Doorbell {
    fd: ArcFd,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        // SAFETY: plain system call; the returned descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Doorbell {
            fd: ArcFd(Arc::new(owned)),
        })
    }

    /// The descriptor the client writes (shared in-process, or sent over
    /// SCM_RIGHTS by the daemon).
    pub fn fd(&self) -> Arc<OwnedFd> {
        self.fd.0.clone()
    }

    /// Register with the current tokio reactor.
    pub fn register(&self) -> std::io::Result<AsyncFd<ArcFd>> {
        // SAFETY: ArcFd holds an Arc<OwnedFd>: the descriptor stays open and
        // refers to the same eventfd for as long as the AsyncFd holds its
        // clone, and as_raw_fd always returns that descriptor.
        unsafe { AsyncFd::register_with_interest(self.fd.clone(), Interest::READABLE) }
            .map_err(|e| e.into())
    }
}
