//! Corks: a burst of submissions handed to the core in batches
//! ([`Client::cork`]).
//!
//! A cork holds back the records its thread writes into the submission
//! ring (committed, not published: `Sender::send_with`'s `hold`) and
//! publishes them
//! every [`crate::endpoint::CORK_BATCH`] records and when the thread's last
//! cork closes. What keeps anything from waiting on a held request:
//!
//! * a cork belongs to its thread: other threads' submissions are
//!   published at once (with whatever was held before them);
//! * every wait or poll for completions publishes first what the waiting
//!   thread holds on any client (its corks are listed in a thread-local:
//!   a callback may `LPUSH` on one client and `BLPOP` on another), and
//!   what other threads hold on the client waited on (a request whose id
//!   they handed over);
//! * a submission that needs several ring records, or has to wait for
//!   ring space, publishes everything committed before it.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, TryLockError, Weak};

use vshm_protocol::sync::{AtomicBool, Ordering};

use crate::client::Client;
use crate::daemon::fork_generation;
use crate::endpoint::Sender;

/// One cork open in this thread.
struct Open {
    sq: Weak<Mutex<Sender>>,
    space_wait: Arc<AtomicBool>,
    /// A forked child leaves the parent's rings alone.
    fork_gen: u64,
}

thread_local! {
    /// The corks open in this thread (one entry per guard), on any client.
    static OPEN: RefCell<Vec<Open>> = const { RefCell::new(Vec::new()) };
}

/// Submissions held back from the core until dropped ([`Client::cork`]).
#[must_use = "dropping it closes the cork (the thread's last one publishes what it held)"]
pub struct Cork<'a> {
    client: &'a Client,
    /// Not `Send`: a cork belongs to the thread that opened it.
    _thread: PhantomData<*const ()>,
    /// The fork generation it was opened in: a child forked while the
    /// cork was open (a callback that forks) leaves the parent's ring
    /// alone; the parent closes its own cork.
    fork_gen: u64,
}

impl Drop for Cork<'_> {
    fn drop(&mut self) {
        let sq = &self.client.sq;
        // Remove this guard's entry; was it the thread's last on `sq`?
        // (`try_with`: nothing to remove once the thread's locals are gone.)
        let last_here = OPEN
            .try_with(|open| {
                let mut open = open.borrow_mut();
                let mine = |o: &Open| {
                    std::ptr::eq(o.sq.as_ptr(), Arc::as_ptr(sq)) && o.fork_gen == self.fork_gen
                };
                if let Some(i) = open.iter().rposition(mine) {
                    open.remove(i);
                }
                !open.iter().any(mine)
            })
            .unwrap_or(true);
        if fork_generation() != self.fork_gen {
            return;
        }
        // Publish first, then count the guard closed (see
        // `Client::flush_corked`); never queue behind a submitter that
        // waits for ring space with the lock held (`flush_held`): an event
        // loop closing its cork may be what frees that space.
        if last_here {
            flush_held(sq, &self.client.space_wait);
        }
        // Relaxed RMW: see `Client::flush_corked`.
        self.client.corks.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Client {
    /// Hold back the submissions this thread makes until the returned guard
    /// drops, and then hand them to the core together: batches of
    /// [`crate::endpoint::CORK_BATCH`], each with at most one wake-up of
    /// the core and one write per server (as a hiredis event loop writes
    /// the commands its callbacks queued once they return). For code that
    /// submits several requests in a row, e.g. the completion callbacks of
    /// an event loop that each submit the next request. Other threads'
    /// submissions are not held. Every wait or poll for completions first
    /// publishes what the waiting thread holds (on any client), and so
    /// does a submission that needs more than one ring record or has to
    /// wait for ring space. Corks nest; the thread's last open guard on
    /// this client publishes when it drops. Do not block on anything else
    /// (a condition variable, another thread) until a request submitted
    /// under your own cork completes: it reaches the core when the cork
    /// closes.
    pub fn cork(&self) -> Cork<'_> {
        let fork_gen = fork_generation();
        // Relaxed RMW, no lock (opening a cork must not queue behind a
        // submitter waiting for ring space): see `Client::flush_corked`.
        self.corks.fetch_add(1, Ordering::Relaxed);
        let _ = OPEN.try_with(|open| {
            open.borrow_mut().push(Open {
                sq: Arc::downgrade(&self.sq),
                space_wait: self.space_wait.clone(),
                fork_gen,
            })
        });
        Cork {
            client: self,
            _thread: PhantomData,
            fork_gen,
        }
    }

    /// Whether the calling thread has a cork open on this client (its
    /// submissions are then held). No thread-local lookup while no cork is
    /// open on the client; when this thread opened one, its own increment
    /// is what the load sees at least.
    pub(crate) fn corked_here(&self) -> bool {
        self.corks.load(Ordering::Relaxed) != 0
            && OPEN
                .try_with(|open| {
                    let gen = fork_generation();
                    open.borrow().iter().any(|o| {
                        std::ptr::eq(o.sq.as_ptr(), Arc::as_ptr(&self.sq)) && o.fork_gen == gen
                    })
                })
                .unwrap_or(false)
    }

    /// Publish, before a wait or poll for completions, what corks hold
    /// back: this thread's on any client, and other threads' on this one.
    ///
    /// The second without the lock when no cork is open on this client.
    /// Why reading 0 is enough for the requests this wait can be about
    /// (submitted by a thread whose submission happens-before this wait):
    /// `corks` changes only by RMWs (+1 when a guard opens, -1 when it
    /// closes, each after its own +1 in its thread), so every value in its
    /// modification order is the number of guards opened and not yet
    /// closed at that point. A held submission was made under an open
    /// guard of its thread, whose +1 happens-before the submission and so
    /// before this read (write-read coherence: the read returns it or a
    /// later value). A 0 therefore means that guard's -1 came first too,
    /// and a thread's last guard publishes before its -1 (`Cork::drop`;
    /// or a submitter waiting for ring space published for it, see
    /// `flush_held`). A stale nonzero read only costs a flush.
    pub(crate) fn flush_corked(&self) {
        let _ = OPEN.try_with(|open| {
            let open = open.borrow();
            if open.is_empty() {
                return;
            }
            let gen = fork_generation();
            for o in open.iter().filter(|o| o.fork_gen == gen) {
                if let Some(sq) = o.sq.upgrade() {
                    flush_held(&sq, &o.space_wait);
                }
            }
        });
        if self.corks.load(Ordering::Relaxed) != 0 && self.cq.fork_gen == fork_generation() {
            flush_held(&self.sq, &self.space_wait);
        }
    }
}

/// Publish what corks hold on `sq`, without queueing behind a submitter
/// that holds the lock while it waits for ring space (it can wait until
/// its request's timeout, and the waiter here may be the one whose
/// draining of completions lets the core take more requests).
///
/// Skipping when `space_wait` reads true is safe: that submitter published
/// everything committed before it started waiting. The flag is stored
/// only under the lock and set back to false before the lock is released,
/// so a true read after a held submission's critical section comes from a
/// critical section that began after it (one that came before had stored
/// false again before the submission took the lock), whose publish
/// covered the held record. Relaxed: the decision rests on the order of
/// the critical sections, which the lock gives; the flag publishes no data.
fn flush_held(sq: &Mutex<Sender>, space_wait: &AtomicBool) {
    loop {
        match sq.try_lock() {
            Ok(mut s) => return s.flush(),
            Err(TryLockError::Poisoned(p)) => return p.into_inner().flush(),
            Err(TryLockError::WouldBlock) => {}
        }
        if space_wait.load(Ordering::Relaxed) {
            return;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use vshm_protocol::layout::state;
    use vshm_protocol::msg::Route;

    use crate::fake_core::{bulk, soon, FakeCore};

    use super::*;

    /// The submission ring's published tail (what the core can see).
    fn sq_published(c: &Client) -> u64 {
        // Acquire: pairs with the Release tail store in `Producer::publish`.
        c.segment().sq().0.prod.tail.load(Ordering::Acquire)
    }

    fn submit_get(c: &Client) -> u64 {
        c.submit(&[b"GET", b"k"], &Route::Auto, None).unwrap()
    }

    #[test]
    fn a_cork_holds_submissions_back_until_it_closes_or_fills_a_batch() {
        // Nothing consumes the submission ring: large enough for all.
        let (_core, client) = FakeCore::with_rings(1 << 16, 1 << 14);
        let cork = client.cork();
        submit_get(&client);
        submit_get(&client);
        assert_eq!(sq_published(&client), 0, "held back while corked");
        {
            let _inner = client.cork();
            submit_get(&client);
        }
        assert_eq!(sq_published(&client), 0, "an inner cork does not publish");
        drop(cork);
        let three = sq_published(&client);
        assert!(three > 0, "closing the last cork publishes");

        // A full batch goes out without waiting for the cork to close.
        let cork = client.cork();
        for _ in 0..crate::endpoint::CORK_BATCH - 1 {
            submit_get(&client);
        }
        assert_eq!(sq_published(&client), three);
        submit_get(&client);
        let batch = sq_published(&client);
        assert!(batch > three, "the 16th record publishes the batch");
        // Polling for completions publishes what is held.
        submit_get(&client);
        assert_eq!(sq_published(&client), batch);
        client.poll_queued(&mut Vec::new()).unwrap();
        assert!(sq_published(&client) > batch);
        drop(cork);
        // Without a cork every submission is published at once.
        let before = sq_published(&client);
        submit_get(&client);
        assert!(sq_published(&client) > before);
    }

    #[test]
    fn a_cork_holds_back_only_its_own_threads_submissions() {
        let (_core, client) = FakeCore::with_rings(1 << 16, 1 << 14);
        let cork = client.cork();
        submit_get(&client);
        assert_eq!(sq_published(&client), 0);
        // Another thread's submission is published at once, with what was
        // held before it.
        std::thread::scope(|s| {
            s.spawn(|| submit_get(&client)).join().unwrap();
        });
        let both = sq_published(&client);
        assert!(both > 0);
        // Another thread's cork holds its own submissions, and closing it
        // publishes them.
        std::thread::scope(|s| {
            s.spawn(|| {
                let other = client.cork();
                submit_get(&client);
                assert_eq!(sq_published(&client), both);
                drop(other);
                assert!(sq_published(&client) > both);
            })
            .join()
            .unwrap();
        });
        // This thread's cork is still open.
        let three = sq_published(&client);
        submit_get(&client);
        assert_eq!(sq_published(&client), three, "still corked here");
        drop(cork);
        assert!(sq_published(&client) > three);
    }

    #[test]
    fn a_wait_publishes_what_a_cork_holds() {
        // The fake core answers a request only once it can see it: if the
        // wait did not publish the corked submission first, it would time
        // out.
        let (mut core, client) = FakeCore::new(1 << 14);
        let client = Arc::new(client);
        let _cork = client.cork();
        let id = submit_get(&client);
        assert_eq!(sq_published(&client), 0);
        let answer = std::thread::spawn({
            let client = client.clone();
            move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                while sq_published(&client) == 0 {
                    assert!(Instant::now() < deadline, "the request was never published");
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(core.complete(id, &bulk(3, 1)));
            }
        });
        let r = client.wait_reply_until(id, soon(), true).unwrap();
        assert_eq!(r.to_completion(), bulk(3, 1));
        answer.join().unwrap();
    }

    #[test]
    fn a_wait_on_one_client_publishes_what_this_thread_holds_on_another() {
        // As a callback that LPUSHes on one client and BLPOPs on another.
        let (_a_core, a) = FakeCore::with_rings(1 << 16, 1 << 14);
        let (_b_core, b) = FakeCore::with_rings(1 << 16, 1 << 14);
        let _cork = a.cork();
        submit_get(&a);
        assert_eq!(sq_published(&a), 0);
        b.poll_queued(&mut Vec::new()).unwrap();
        assert!(sq_published(&a) > 0);
    }

    #[test]
    fn polls_and_corks_do_not_queue_behind_a_sender_waiting_for_ring_space() {
        // Nothing consumes this 4 KiB submission ring.
        let (core, client) = FakeCore::with_rings(4096, 1 << 14);
        let client = Arc::new(client);
        // Another thread keeps a cork open, so that polls take the flush.
        let (opened_tx, opened_rx) = mpsc::channel::<()>();
        let (close_tx, close_rx) = mpsc::channel::<()>();
        let corker = thread::spawn({
            let client = client.clone();
            move || {
                let _cork = client.cork();
                opened_tx.send(()).unwrap();
                let _ = close_rx.recv();
            }
        });
        opened_rx.recv().unwrap();
        // A submitter fills the ring, then waits for space (holding the
        // submission lock) until the segment closes.
        let filler = thread::spawn({
            let client = client.clone();
            move || loop {
                let r = client.submit(
                    &[b"SET", b"k", &[0u8; 200]],
                    &Route::Auto,
                    Some(Duration::from_secs(60)),
                );
                if let Err(e) = r {
                    return e;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.space_wait.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the submitter never waited");
            thread::sleep(Duration::from_millis(1));
        }
        // The poll returns without waiting for the submitter (bounded far
        // below the submitter's 60 s).
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn({
            let client = client.clone();
            move || done_tx.send(client.poll_queued(&mut Vec::new()).is_ok())
        });
        let polled = done_rx.recv_timeout(Duration::from_secs(10));
        // Nor does opening and closing a cork (an event loop's dispatch
        // corks while its callbacks run: they may be what frees the space).
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn({
            let client = client.clone();
            move || {
                drop(client.cork());
                done_tx.send(()).unwrap();
            }
        });
        let corked = done_rx.recv_timeout(Duration::from_secs(10));
        core.seg.set_state(state::CLOSED);
        close_tx.send(()).unwrap();
        corker.join().unwrap();
        filler.join().unwrap();
        assert_eq!(polled, Ok(true), "the poll queued behind the submitter");
        assert_eq!(corked, Ok(()), "the cork queued behind the submitter");
    }
}
