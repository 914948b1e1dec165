//! The wake protocol: need-wakeup flags plus futex words in the segment.
//!
//! A side that finds nothing to do spins for a budget, then announces that
//! it will sleep and re-checks before sleeping:
//!
//! ```text
//! sleeper (e.g. consumer)                 waker (e.g. producer)
//! seq = cons_seq.load(Acquire)            tail.store(t, Release)
//! cons_waiting += 1                        fence(SeqCst)            // F2
//! fence(SeqCst)                 // F1     if cons_waiting != 0:
//! if ring not empty: cancel                    cons_seq += 1 (Release)
//! else futex_wait(cons_seq, seq, timeout)      futex_wake(cons_seq)
//! cons_waiting -= 1
//! ```
//!
//! The sleeper's half is written once: [`announce`] (announce, re-check,
//! hand back an [`Armed`] guard that withdraws when dropped) and the loop
//! around it, [`wait`], which every blocking waiter runs with its own
//! [`Waiter`] (condition and spin/deadline policy). The core's serve loop
//! calls [`announce_sole`] (below) and sleeps on its eventfd doorbell
//! instead of the futex. The loom models (`loom-tests/`) run [`wait`] and
//! [`announce_sole`] themselves.
//!
//! F1 and F2 are both SeqCst, so they are totally ordered: if F1 comes
//! first, the waker's load sees `cons_waiting != 0` and wakes; if F2 comes
//! first, the sleeper's re-check sees the new tail and does not sleep. The
//! futex itself closes the remaining window: `futex_wait` sleeps only if the
//! word still equals `seq`, and the waker bumps the word before waking.
//! A busy producer therefore pays one fence and one load per publish and
//! makes no system call while the consumer is awake.
//!
//! **Sole sleepers.** A side that only one party ever sleeps on (the
//! core's serve loop, consumer of a client's submission ring) announces
//! with [`announce_sole`]: its flag is set to 1 rather than counted, and a
//! waker that sees it up takes it down with [`claim`] (one swap) before
//! waking. Only the waker whose swap took the flag wakes the sleeper. A
//! burst of publishes while the sleeper is still waking up (5-20 µs for a
//! doorbell on the measured machine) therefore costs one wake-up instead of
//! one per publish. No wakeup is lost. A waker whose swap found the flag
//! down read a write of 0 (another waker's claim, or the sleeper's
//! withdrawal, made awake) with nothing written between; so the sleeper's
//! next announcement, its swap to 1, comes after the waker's swap in the
//! flag's modification order. SC fences follow that order (C++20, P0668):
//! the waker's F2, before its swap, precedes the announcement's F1, after
//! the swap to 1, so the sleeper's re-check sees the waker's publish. And a
//! next announcement comes: a winning claim woke the sleeper, and a
//! withdrawal means it is awake. Model c3 in `loom-tests/` checks it.
//!
//! Futexes are *shared* (no `FUTEX_PRIVATE_FLAG`): the words live in a
//! mapping shared by two processes. Every wait takes a timeout.

use std::time::Duration;

use crate::layout::RingCtl;
use crate::sync::{fence, AtomicU32, Ordering};

/// Which party of a ring sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Waits for records (ring empty).
    Consumer,
    /// Waits for space (ring full).
    Producer,
}

fn words(ctl: &RingCtl, side: Side) -> (&AtomicU32, &AtomicU32) {
    match side {
        Side::Consumer => (&ctl.wake.cons_waiting, &ctl.wake.cons_seq),
        Side::Producer => (&ctl.wake.prod_waiting, &ctl.wake.prod_seq),
    }
}

/// Who may sleep on one side of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sleepers {
    /// Any number of threads (the client's sides): the flag counts them,
    /// and every waker that sees it up wakes them all.
    Many,
    /// Exactly one party (the core's serve loop on a submission ring): the
    /// flag is 0 or 1, and the first waker that sees it up claims it
    /// ([`claim`]); see "Sole sleepers" in the module docs.
    Sole,
}

/// Announce that `side` may sleep: the first half of the protocol, for a
/// *standing* announcement (the core's request for completion-ring space,
/// which stays up across turns until [`cancel_sleep`]). Sleepers use
/// [`announce`] / [`wait`] instead. Returns the futex sequence.
pub fn prepare_sleep(ctl: &RingCtl, side: Side) -> u32 {
    arm(ctl, side, Sleepers::Many)
}

fn arm(ctl: &RingCtl, side: Side, sleepers: Sleepers) -> u32 {
    let (waiting, seq) = words(ctl, side);
    // Acquire: pairs with the Release `fetch_add` in `wake`; if we already
    // see a bump, we also see what the waker published before it.
    let s = seq.load(Ordering::Acquire);
    match sleepers {
        Sleepers::Many => {
            waiting.fetch_add(1, Ordering::Relaxed);
        }
        // Set, not incremented: a waker may have claimed the flag (set it
        // to 0) since the last announcement. An RMW like the counted
        // flag's `fetch_add`, not a plain store: with a plain store loom
        // 0.7 reports a lost wakeup in model c3, although by the C++ rules
        // the store would be enough (the waker's load after its F2 would
        // have to see it); we keep what the model proves. Only a sleeper
        // about to sleep pays for it.
        Sleepers::Sole => {
            waiting.swap(1, Ordering::Relaxed);
        }
    }
    // SeqCst fence (F1): pairs with the SeqCst fence in `Producer::publish`
    // (consumer side) or `Consumer::release_to` (producer side); see the
    // module docs.
    fence(Ordering::SeqCst);
    s
}

/// The waker's half for a [`Sleepers::Sole`] side, called after a publish
/// (or release) reported the flag up: take the flag down; true if this
/// call took it, and the caller must then wake the sleeper. False: another
/// waker took it and wakes the sleeper, whose next announcement will see
/// this caller's publish (module docs).
pub fn claim(ctl: &RingCtl, side: Side) -> bool {
    let (waiting, _) = words(ctl, side);
    // Relaxed: sequenced after the caller's SeqCst fence (F2 in
    // `Producer::publish`), like the load that saw the flag up; the swap
    // only decides which waker wakes. Its place in the flag's modification
    // order (before the sleeper's next swap to 1) is what the module
    // docs' argument uses.
    waiting.swap(0, Ordering::Relaxed) != 0
}

/// Withdraw the announcement made by [`prepare_sleep`].
pub fn cancel_sleep(ctl: &RingCtl, side: Side) {
    let (waiting, _) = words(ctl, side);
    // Relaxed: the flag is only a hint to avoid system calls; a stale 1
    // costs the peer one spurious wake, a stale 0 is impossible because the
    // peer re-reads after its own SeqCst fence.
    waiting.fetch_sub(1, Ordering::Relaxed);
}

/// Wake every sleeper of `side`.
pub fn wake(ctl: &RingCtl, side: Side) {
    let (_, seq) = words(ctl, side);
    // Release: pairs with the Acquire load in `prepare_sleep`.
    seq.fetch_add(1, Ordering::Release);
    futex_wake_all(ctl, side);
}

/// An announcement that a side will sleep, not yet withdrawn. Dropping it
/// withdraws it ([`cancel_sleep`]; a sole sleeper stores 0), so no path
/// can leave the need-wakeup flag up by mistake.
#[must_use = "dropping an announcement withdraws it; sleep on it instead"]
pub struct Armed<'a> {
    ctl: &'a RingCtl,
    side: Side,
    sleepers: Sleepers,
    seq: u32,
}

impl Armed<'_> {
    /// Sleep on the side's futex until woken, `timeout` passes, or the word
    /// no longer equals the sequence read when announcing; then withdraw.
    /// Returns false on timeout. Under loom the futex is
    /// [`model::Futex`] and the timeout is ignored (a lost wakeup must be a
    /// deadlock, not a slow success).
    pub fn sleep(self, timeout: Duration) -> bool {
        futex_wait_for(self.ctl, self.side, self.seq, timeout)
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        match self.sleepers {
            Sleepers::Many => cancel_sleep(self.ctl, self.side),
            Sleepers::Sole => {
                let (waiting, _) = words(self.ctl, self.side);
                // Relaxed: as in `cancel_sleep`. A store: a waker may have
                // claimed the flag already.
                waiting.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// What the re-check after announcing found.
pub enum Announced<'a, T> {
    /// The condition turned true meanwhile; the announcement is withdrawn.
    Ready(T),
    /// Still nothing: sleep on the guard (the futex: [`Armed::sleep`]; the
    /// core's doorbell: wait on it, then drop the guard).
    Sleep(Armed<'a>),
}

/// Announce that `side` will sleep, then re-check the condition: the one
/// place where the announce / re-check pair is written. `recheck` returns
/// `Some` when there is no need to sleep any more (the announcement is then
/// withdrawn, as it is when `recheck` fails).
///
/// Every counted sleeper goes through here: [`wait`] (the blocking
/// endpoints, the C notifier, the benchmark's raw peers, the loom models).
/// The core's serve loop uses [`announce_sole`] and sleeps on its eventfd
/// instead of the futex.
pub fn announce<T, E>(
    ctl: &RingCtl,
    side: Side,
    recheck: impl FnOnce() -> Result<Option<T>, E>,
) -> Result<Announced<'_, T>, E> {
    announce_as(ctl, side, Sleepers::Many, recheck)
}

/// [`announce`] for the sole sleeper of `side` ([`Sleepers::Sole`]): its
/// wakers must [`claim`] the flag before waking it.
pub fn announce_sole<T, E>(
    ctl: &RingCtl,
    side: Side,
    recheck: impl FnOnce() -> Result<Option<T>, E>,
) -> Result<Announced<'_, T>, E> {
    announce_as(ctl, side, Sleepers::Sole, recheck)
}

fn announce_as<T, E>(
    ctl: &RingCtl,
    side: Side,
    sleepers: Sleepers,
    recheck: impl FnOnce() -> Result<Option<T>, E>,
) -> Result<Announced<'_, T>, E> {
    let armed = Armed {
        ctl,
        side,
        sleepers,
        seq: arm(ctl, side, sleepers),
    };
    Ok(match recheck()? {
        Some(v) => Announced::Ready(v),
        None => Announced::Sleep(armed),
    })
}

/// What a waiter does while its condition is false ([`Waiter::idle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Check again without sleeping (the waiter spun or yielded in `idle`).
    Poll,
    /// Announce, re-check, and sleep on the futex for at most this long.
    Park(Duration),
}

/// One waiting side of the sleep loop [`wait`]: its condition and its
/// policy (spin and yield phases, deadline, segment state).
pub trait Waiter {
    type Output;
    type Error;
    /// The condition: `Some` ends the wait. Called before announcing and
    /// again after it (the re-check), so it must not block.
    fn ready(&mut self) -> Result<Option<Self::Output>, Self::Error>;
    /// The condition is false: spin or yield and return [`Idle::Poll`],
    /// ask to sleep ([`Idle::Park`]), or give up (an error: deadline,
    /// segment closed).
    fn idle(&mut self) -> Result<Idle, Self::Error>;
    /// Called after the re-check, just before sleeping: false withdraws
    /// the announcement and goes round again (the next [`Waiter::idle`]
    /// reports why, e.g. the segment stopped being open).
    fn may_sleep(&mut self) -> bool {
        true
    }
    /// Called after each sleep; `woken` is false on timeout.
    fn slept(&mut self, _woken: bool) {}
}

/// The announce / re-check / sleep loop, written once: wait until
/// `w.ready()` says so, sleeping as `side` of `ctl` on its futex whenever
/// `w.idle()` asks to park. Runs unchanged under loom (the futex is then
/// [`model::Futex`]).
pub fn wait<W: Waiter>(ctl: &RingCtl, side: Side, w: &mut W) -> Result<W::Output, W::Error> {
    loop {
        if let Some(v) = w.ready()? {
            return Ok(v);
        }
        let Idle::Park(timeout) = w.idle()? else {
            continue;
        };
        match announce(ctl, side, || w.ready())? {
            Announced::Ready(v) => return Ok(v),
            Announced::Sleep(armed) => {
                if !w.may_sleep() {
                    // Dropping `armed` withdraws the announcement.
                    continue;
                }
                let woken = armed.sleep(timeout);
                w.slept(woken);
            }
        }
    }
}

/// The simplest [`Waiter`]: park at once (each sleep at most `timeout`)
/// until `ready` returns `Some`; counts the sleeps. What the loom models
/// run, and a peer with no deadline of its own.
pub struct ParkAtOnce<F> {
    pub ready: F,
    pub timeout: Duration,
    /// Sleeps taken so far.
    pub sleeps: usize,
}

impl<F> ParkAtOnce<F> {
    pub fn new(timeout: Duration, ready: F) -> Self {
        ParkAtOnce {
            ready,
            timeout,
            sleeps: 0,
        }
    }
}

impl<T, E, F: FnMut() -> Result<Option<T>, E>> Waiter for ParkAtOnce<F> {
    type Output = T;
    type Error = E;
    fn ready(&mut self) -> Result<Option<T>, E> {
        (self.ready)()
    }
    fn idle(&mut self) -> Result<Idle, E> {
        Ok(Idle::Park(self.timeout))
    }
    fn slept(&mut self, _woken: bool) {
        self.sleeps += 1;
    }
}

#[cfg(not(vshm_loom))]
fn futex_wait_for(ctl: &RingCtl, side: Side, seq: u32, timeout: Duration) -> bool {
    let (_, word) = words(ctl, side);
    futex::wait(word, seq, timeout)
}

#[cfg(not(vshm_loom))]
fn futex_wake_all(ctl: &RingCtl, side: Side) {
    let (_, word) = words(ctl, side);
    futex::wake(word, i32::MAX);
}

#[cfg(vshm_loom)]
fn futex_wait_for(ctl: &RingCtl, side: Side, seq: u32, _timeout: Duration) -> bool {
    // No timeout under loom: a lost wakeup must show up as a deadlock.
    let (_, word) = words(ctl, side);
    ctl.model.get(side).wait(word, seq);
    true
}

#[cfg(vshm_loom)]
fn futex_wake_all(ctl: &RingCtl, side: Side) {
    ctl.model.get(side).wake();
}

/// Add 1 to an eventfd, the core's doorbell (non-blocking; a saturated
/// counter already means "wake up"). The other way to wake a peer besides
/// the ring futex: clients ring it after submitting, the core's own paths
/// ring it to wake its dispatcher.
#[cfg(not(vshm_loom))]
pub fn ring_doorbell(fd: std::os::fd::RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor we hold.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Raw shared futex calls on a word in shared memory.
#[cfg(not(vshm_loom))]
pub mod futex {
    use super::AtomicU32;
    use std::time::Duration;

    /// `FUTEX_WAIT` (shared) with a relative timeout. Returns false only on
    /// timeout; a wake, a changed word or a signal all return true (callers
    /// re-check their condition in a loop anyway).
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a valid, aligned u32 during the call (AtomicU32 has u32's layout); the
        // kernel only reads and compares it; `ts` outlives the call. FUTEX_WAIT without the
        // private flag works across processes sharing the mapping.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if r == 0 {
            return true;
        }
        !matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ETIMEDOUT)
        )
    }

    /// `FUTEX_WAKE` (shared): wake up to `n` waiters.
    pub fn wake(word: &AtomicU32, n: i32) {
        // SAFETY: as above; FUTEX_WAKE does not access the word's value.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                n,
                0usize,
                0usize,
                0u32,
            );
        }
    }
}

/// Loom's model of a futex: a mutex and a condition variable. `wait`
/// checks the word under the mutex and sleeps atomically with respect to
/// `wake`, exactly the guarantee `FUTEX_WAIT` gives.
#[cfg(vshm_loom)]
pub mod model {
    use super::{AtomicU32, Ordering, Side};
    use loom::sync::{Condvar, Mutex};

    #[derive(Default)]
    pub struct Futex {
        m: Mutex<()>,
        cv: Condvar,
    }

    impl Futex {
        pub fn wait(&self, word: &AtomicU32, expected: u32) {
            let g = self.m.lock().unwrap();
            if word.load(Ordering::Relaxed) == expected {
                let _g = self.cv.wait(g).unwrap();
            }
        }

        pub fn wake(&self) {
            let _g = self.m.lock().unwrap();
            self.cv.notify_all();
        }
    }

    #[derive(Default)]
    pub struct FutexPair {
        cons: Futex,
        prod: Futex,
    }

    impl FutexPair {
        pub fn get(&self, side: Side) -> &Futex {
            match side {
                Side::Consumer => &self.cons,
                Side::Producer => &self.prod,
            }
        }
    }
}
