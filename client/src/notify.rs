//! The completion notifier behind an event-loop descriptor (libvshm's
//! `vshm_fd`, the Python module's `fileno()`): an eventfd, written by a
//! thread that parks on the completion ring's futex whenever the core
//! publishes completions (or the segment stops being open). The caller
//! resets it ([`EventNotifier::clear`]) before taking completions.
//!
//! The descriptor number stays the same for the owner's lifetime: after a
//! registration is replaced the notifier follows the new segment
//! ([`EventNotifier::follow`]), and in a forked child a fresh eventfd is
//! put at the same number (the inherited one is shared with the parent,
//! whose notifier still writes it); the parent's notifier thread, which
//! does not exist in the child, is parked, never joined.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use vshm_protocol::layout::state;
use vshm_protocol::ring::PublishWatch;
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, ring_doorbell, ParkAtOnce, Side};

use crate::daemon::fork_generation;
use crate::session::park;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The earliest deadline of a pending asynchronous request, for the
/// notifier: it makes the event descriptor (`vshm_fd`, `fileno()`) readable when the deadline
/// passes, so that an event loop polls, which completes the
/// overdue request (a pinned completion ring publishes nothing that would
/// wake it otherwise; the caller's poll then times it out). Nanoseconds since `base`; 0: none.
pub struct NextDeadline {
    base: Instant,
    at: AtomicU64,
}

impl NextDeadline {
    pub fn new() -> NextDeadline {
        NextDeadline {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        // At least 1: 0 means "none".
        (t.saturating_duration_since(self.base).as_nanos() as u64).max(1)
    }

    /// Set the earliest deadline (None: no request pending).
    pub fn set(&self, t: Option<Instant>) {
        // Relaxed: a hint the notifier re-reads every 100 ms; it orders
        // nothing else (the completion itself is made under the pending
        // lock by `collect`).
        self.at
            .store(t.map_or(0, |t| self.nanos(t)), Ordering::Relaxed);
    }

    /// Lower it to `t` if that is earlier (a new request).
    pub fn lower(&self, t: Instant) {
        let n = self.nanos(t);
        // Relaxed: as in `set`.
        let _ = self
            .at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == 0 || n < cur).then_some(n)
            });
    }

    /// The deadline if it has passed.
    pub fn passed(&self) -> Option<u64> {
        // Relaxed: as in `set`.
        let at = self.at.load(Ordering::Relaxed);
        (at != 0 && self.nanos(Instant::now()) >= at).then_some(at)
    }
}

impl Default for NextDeadline {
    fn default() -> NextDeadline {
        NextDeadline::new()
    }
}

/// The thread that signals the eventfd for one segment.
struct Notifier {
    stop: Arc<AtomicBool>,
    seg: Arc<Segment>,
    thread: Option<JoinHandle<()>>,
    fork_gen: u64,
    generation: u32,
}

impl Notifier {
    fn start(
        seg: Arc<Segment>,
        efd: RawFd,
        generation: u32,
        next: Arc<NextDeadline>,
    ) -> std::io::Result<Notifier> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let seg = seg.clone();
            std::thread::Builder::new()
                .name("vshm-notify".into())
                .spawn(move || notify_loop(&seg, efd, &stop, &next))?
        };
        Ok(Notifier {
            stop,
            seg,
            thread: Some(thread),
            fork_gen: fork_generation(),
            generation,
        })
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        if self.fork_gen != fork_generation() {
            // The thread does not exist in a forked child.
            park(t);
            return;
        }
        // Release: pairs with the Acquire load in `notify_loop`.
        self.stop.store(true, Ordering::Release);
        let (ctl, _) = self.seg.cq();
        wake::wake(ctl, Side::Consumer);
        let _ = t.join();
    }
}

/// Why the notifier stopped waiting.
enum Notify {
    /// The core published completions (or the first look).
    Published,
    /// The segment is no longer open: signal once more and stop.
    Closed,
    /// The owner is stopping the notifier.
    Stop,
    /// A pending request's deadline passed (nanoseconds, see `NextDeadline`).
    Deadline(u64),
}

/// Ring the eventfd whenever the core publishes completions, until the
/// segment stops being open or the owner stops the notifier. Waits with the
/// protocol's one sleep loop (`wake::wait`), parking at most 100 ms at a
/// time; `PublishWatch` is the protocol's "completions published?" check.
/// Also rings it once when a pending request's deadline passes (a pinned
/// completion ring publishes nothing; the owner's poll then times it out).
fn notify_loop(seg: &Segment, efd: RawFd, stop: &AtomicBool, next: &NextDeadline) {
    let (ctl, _) = seg.cq();
    let mut watch = PublishWatch::new();
    let signaled = std::cell::Cell::new(0u64);
    loop {
        let mut w = ParkAtOnce::new(Duration::from_millis(100), || {
            // Acquire: pairs with the Release store in `Notifier::drop`.
            Ok::<_, std::convert::Infallible>(if stop.load(Ordering::Acquire) {
                Some(Notify::Stop)
            } else if seg.state() != state::OPEN {
                Some(Notify::Closed)
            } else if let Some(at) = next.passed().filter(|at| *at != signaled.get()) {
                Some(Notify::Deadline(at))
            } else {
                watch.published(ctl).then_some(Notify::Published)
            })
        });
        let Ok(why) = wake::wait(ctl, Side::Consumer, &mut w);
        match why {
            Notify::Published => ring_doorbell(efd),
            Notify::Closed => {
                ring_doorbell(efd);
                return;
            }
            Notify::Stop => return,
            Notify::Deadline(at) => {
                signaled.set(at);
                ring_doorbell(efd);
            }
        }
    }
}

struct EventFd {
    fd: OwnedFd,
    fork_gen: u64,
}

fn new_eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An eventfd plus the notifier thread that signals it (both made on
/// first use of [`EventNotifier::fd`]).
#[derive(Default)]
pub struct EventNotifier {
    efd: Mutex<Option<EventFd>>,
    notifier: Mutex<Option<Notifier>>,
    deadline: Arc<NextDeadline>,
}

impl EventNotifier {
    pub fn new() -> EventNotifier {
        EventNotifier::default()
    }

    /// The descriptor, created on first use, with the notifier following
    /// `seg`, the segment of registration `generation`.
    pub fn fd(&self, seg: &Arc<Segment>, generation: u32) -> std::io::Result<RawFd> {
        let raw = self.own_fd(true)?.unwrap_or(-1);
        self.follow(seg, generation)?;
        Ok(raw)
    }

    /// This process's descriptor: created when `create` (else None before
    /// the first `fd`); in a forked child, a fresh eventfd is put at the
    /// inherited number first.
    fn own_fd(&self, create: bool) -> std::io::Result<Option<RawFd>> {
        let mut efd = lock(&self.efd);
        match efd.as_mut() {
            None if !create => return Ok(None),
            None => {
                *efd = Some(EventFd {
                    fd: new_eventfd()?,
                    fork_gen: fork_generation(),
                })
            }
            Some(e) if e.fork_gen != fork_generation() => {
                let fresh = new_eventfd()?;
                // SAFETY: both descriptors are ours; dup3 atomically makes
                // our descriptor number refer to the fresh eventfd
                // (`fresh` itself is closed when dropped).
                let r = unsafe { libc::dup3(fresh.as_raw_fd(), e.fd.as_raw_fd(), libc::O_CLOEXEC) };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                e.fork_gen = fork_generation();
            }
            Some(_) => {}
        }
        Ok(efd.as_ref().map(|e| e.fd.as_raw_fd()))
    }

    /// Make the notifier follow `seg` (registration `generation`): call it
    /// when a registration was opened. A no-op until `fd` was asked for;
    /// in a forked child it also renews the descriptor (same number), so
    /// an event loop keeps watching the number it has.
    pub fn follow(&self, seg: &Arc<Segment>, generation: u32) -> std::io::Result<()> {
        let Some(efd) = self.own_fd(false)? else {
            return Ok(());
        };
        let mut n = lock(&self.notifier);
        if let Some(cur) = n.as_ref() {
            if cur.generation == generation && cur.fork_gen == fork_generation() {
                return Ok(());
            }
        }
        drop(n.take());
        *n = Some(Notifier::start(
            seg.clone(),
            efd,
            generation,
            self.deadline.clone(),
        )?);
        Ok(())
    }

    /// The earliest pending deadline the notifier watches (the owner keeps
    /// it current: `lower` on submit, `set` after taking completions).
    pub fn deadline(&self) -> &NextDeadline {
        &self.deadline
    }

    /// Reset the descriptor (before taking completions). A forked child
    /// first gets its own eventfd behind the same number (`own_fd`): the
    /// inherited one is the parent's, whose wake-ups must stay there.
    pub fn clear(&self) {
        let _ = self.own_fd(false);
        if let Some(e) = lock(&self.efd).as_ref() {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from our own
            // non-blocking eventfd; EAGAIN when already zero.
            unsafe { libc::read(e.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// Stop the notifier thread (the descriptor stays until drop).
    pub fn stop(&self) {
        drop(lock(&self.notifier).take());
    }
}

impl Drop for EventNotifier {
    fn drop(&mut self) {
        // The thread goes before the descriptor it writes.
        self.stop();
    }
}
