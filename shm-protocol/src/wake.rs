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
//! F1 and F2 are both SeqCst, so they are totally ordered: if F1 comes
//! first, the waker's load sees `cons_waiting != 0` and wakes; if F2 comes
//! first, the sleeper's re-check sees the new tail and does not sleep. The
//! futex itself closes the remaining window: `futex_wait` sleeps only if the
//! word still equals `seq`, and the waker bumps the word before waking.
//! A busy producer therefore pays one fence and one load per publish and
//! makes no system call while the consumer is awake.
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

/// Announce that `side` may sleep. The caller must re-check its condition
/// after this returns and then either [`sleep`] or [`cancel_sleep`].
/// Returns the futex sequence to pass to [`sleep`].
pub fn prepare_sleep(ctl: &RingCtl, side: Side) -> u32 {
    let (waiting, seq) = words(ctl, side);
    // Acquire: pairs with the Release bump in `wake`; if we already see a
    // bump, we also see what the waker published before it.
    let s = seq.load(Ordering::Acquire);
    waiting.fetch_add(1, Ordering::Relaxed);
    // SeqCst fence: pairs with the fence in `Producer::publish` (consumer
    // side) or `Consumer::release_to` (producer side); see the module docs.
    fence(Ordering::SeqCst);
    s
}

/// Withdraw the announcement made by [`prepare_sleep`].
pub fn cancel_sleep(ctl: &RingCtl, side: Side) {
    let (waiting, _) = words(ctl, side);
    // Relaxed: the flag is only a hint to avoid system calls; a stale 1
    // costs the peer one spurious wake, a stale 0 is impossible because the
    // peer re-reads after its own SeqCst fence.
    waiting.fetch_sub(1, Ordering::Relaxed);
}

/// Sleep until woken, `timeout` passes, or the word no longer equals `seq`.
/// Withdraws the announcement before returning. Returns false on timeout.
pub fn sleep(ctl: &RingCtl, side: Side, seq: u32, timeout: Duration) -> bool {
    let woken = futex_wait_for(ctl, side, seq, timeout);
    cancel_sleep(ctl, side);
    woken
}

/// Wake every sleeper of `side`.
pub fn wake(ctl: &RingCtl, side: Side) {
    let (_, seq) = words(ctl, side);
    // Release: pairs with the Acquire load in `prepare_sleep`.
    seq.fetch_add(1, Ordering::Release);
    futex_wake_all(ctl, side);
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
