//! Peer processes: the same binary re-executed with a hidden subcommand,
//! handed one inherited file descriptor.
//!
//! The child can never outlive the benchmark: it sets `PR_SET_PDEATHSIG`
//! (SIGKILL) first thing and checks that its parent is still the process
//! that spawned it; the parent's [`Peer`] kills and reaps it on drop (any
//! error path), and [`Peer::finish`] waits a bounded time before killing.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::BoxResult;

/// A running peer process.
pub struct Peer {
    child: Option<Child>,
    what: String,
}

impl Peer {
    /// Spawn `current_exe <subcommand> --fd N --parent PID <extra...>` with
    /// a duplicate of `fd` (without `FD_CLOEXEC`) as descriptor N.
    pub fn spawn(subcommand: &str, fd: BorrowedFd<'_>, extra: &[String]) -> BoxResult<Peer> {
        let exe = std::env::current_exe()?;
        // dup(2) never sets FD_CLOEXEC: the copy is inherited across exec.
        // The process is single-threaded here, so no other spawn can leak it.
        let inherited = nix::unistd::dup(fd)?;
        let child = Command::new(exe)
            .arg(subcommand)
            .arg("--fd")
            .arg(inherited.as_raw_fd().to_string())
            .arg("--parent")
            .arg(std::process::id().to_string())
            .args(extra)
            .spawn()?;
        drop(inherited);
        Ok(Peer {
            child: Some(child),
            what: format!("{subcommand} {}", extra.join(" ")),
        })
    }

    /// Wait up to `timeout` for the peer to exit (it should be exiting
    /// already); kill it past that. Errors if it did not exit cleanly.
    pub fn finish(mut self, timeout: Duration) -> BoxResult<()> {
        let mut child = self.child.take().expect("peer not finished twice");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(format!("peer `{}` exited with {status}", self.what).into());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "peer `{}` did not exit within {timeout:?}; killed",
                    self.what
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// First thing a peer does: die with the parent, make sure the parent is
/// still the one that spawned us, and take ownership of the inherited fd.
pub fn peer_init(parent: u32, fd: RawFd) -> BoxResult<OwnedFd> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // If the parent died before prctl, we were reparented: the death
    // signal will never come, so leave now.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err("parent exited before the peer started".into());
    }
    nix::fcntl::fcntl(
        // SAFETY: only borrowed for the duration of the F_GETFD probe.
        unsafe { BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(|e| format!("inherited fd {fd} is not open: {e}"))?;
    // SAFETY: `fd` is open (checked above), was inherited from the parent
    // for this purpose, and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pin the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> BoxResult<()> {
    // SAFETY: cpu_set_t is a plain bitmask for which all zeroes is the
    // empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("cpu {cpu} out of range").into());
    }
    // SAFETY: `cpu` is within the set's bit range (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: passes a live cpu_set_t of the size given; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(format!(
            "sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}
