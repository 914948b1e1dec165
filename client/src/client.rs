//! The client end of a segment: thread-safe submission and completion
//! matching, with bounded waits everywhere, and zero-copy replies.
//!
//! **Several threads, one segment.** The submission ring has one producer
//! at the ring level; the client's threads take a short lock around it
//! (the critical section is the in-place serialization of one request:
//! a few hundred nanoseconds for small commands). This keeps the core's
//! consumer simple and its validation single-producer, and costs an
//! uncontended futex-free mutex in the common case; see `docs/protocol.md`.
//!
//! **Completions arrive in any order.** One waiting thread at a time is
//! the *leader*: it drains the completion ring (spinning, then parking on
//! the futex) and files completions for other threads in a map, waking
//! exactly the threads whose completions it filed (thread parking); it then
//! either returns with its own completion (handing the role to a waiter)
//! or leads again. Every wait has a deadline; a completion
//! whose waiter gave up is discarded on arrival.
//!
//! **Zero-copy replies.** A completion that fits in one ring record is
//! handed out *in place*: a [`Reply`] points at the archived
//! [`ArchivedCompletion`] inside the completion ring (validated once with
//! bytecheck when it is taken from the ring). Its ring bytes stay pinned
//! until the `Reply` is dropped. Replies may be dropped in any order: the
//! client keeps the set of pinned records and returns ring space to the
//! core up to the oldest record still pinned ([`Consumer::release_to`]).
//! Holding a reply therefore also holds every record received after it;
//! when the pinned span fills the ring, the core keeps further completions
//! for this client queued on its side (bounded by the in-flight limit)
//! until space is released. [`Reply::detach`] copies a reply to the heap
//! and releases its ring space at once. Completions larger than one record
//! arrive fragmented and are reassembled into heap memory.
//!
//! **Queued requests.** Requests submitted with [`Client::submit_queued`]
//! (ids with [`QUEUED`] set) are not waited for by id: their completions
//! go to a FIFO that [`Client::poll_queued`] and [`Client::wait_queued`]
//! empty. This is what callback-style asynchronous APIs build on.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::endpoint::{Dir, EndpointError, PeerWake, Sender, WaitStrategy};
use vshm_protocol::bound::{self, ArgList};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{
    self, ArgRef, ArgsRef, ClientError, Completion, ErrorKind, Op, Request, Route, Value,
};
use vshm_protocol::ring::kind;
use vshm_protocol::segment::Segment;

use crate::completion::{conn_err, lock, CqSide, Want};
use crate::reply::push_value;
pub use crate::reply::{into_result, Reply};

/// Bit set in the ids of requests submitted with [`Client::submit_queued`].
pub const QUEUED: u64 = 1 << 63;

/// Client-side options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Used when a call passes no timeout.
    pub request_timeout: Duration,
    /// Added to a request's timeout for the local wait, so the core's own
    /// timeout error normally arrives first.
    pub transport_margin: Duration,
    pub strategy: WaitStrategy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_millis(250),
            transport_margin: Duration::from_millis(1000),
            strategy: WaitStrategy::from_env(),
        }
    }
}

/// A client attached to one segment.
pub struct Client {
    seg: Arc<Segment>,
    /// The submission side (an `Arc`: the thread-local list of open corks
    /// refers to it, see `cork`).
    pub(crate) sq: Arc<Mutex<Sender>>,
    /// `Sender::space_wait_flag` of `sq`.
    pub(crate) space_wait: Arc<AtomicBool>,
    pub(crate) cq: Arc<CqSide>,
    next_id: AtomicU64,
    opts: ClientOptions,
    /// The core's bound on a command that blocks forever when the request
    /// sets no timeout (its `block_forever_limit_ms`; the daemon tells it
    /// at registration), in ms.
    block_forever_limit_ms: AtomicU64,
    /// The open corks on this client, over all threads ([`Client::cork`]):
    /// changed only by RMWs (+1 when a guard opens, -1 after a thread's
    /// last guard published), read by waits (see `Client::flush_corked`)
    /// and submissions (`Client::corked_here`).
    pub(crate) corks: AtomicU32,
}

impl Client {
    /// Attach to a segment the core serves; `doorbell` is the core's
    /// eventfd (None: the core sleeps on the submission ring's futex).
    pub fn new(seg: Arc<Segment>, doorbell: Option<Arc<OwnedFd>>, opts: ClientOptions) -> Client {
        let peer = match doorbell {
            Some(fd) => PeerWake::Doorbell(fd),
            None => PeerWake::Futex,
        };
        let mut sender = Sender::new(seg.clone(), Dir::Sq, peer.clone());
        // Waiting for submission-ring space is rare and its length has
        // nothing to do with a round trip: no adaptive spin there.
        sender.strategy = if opts.strategy.adaptive {
            WaitStrategy::PARK
        } else {
            opts.strategy
        };
        let cq = CqSide::new(seg.clone(), peer, opts.strategy);
        Client {
            seg,
            space_wait: sender.space_wait_flag(),
            sq: Arc::new(Mutex::new(sender)),
            cq,
            next_id: AtomicU64::new(1),
            block_forever_limit_ms: AtomicU64::new(bound::DEFAULT_BLOCK_FOREVER_LIMIT_MS),
            opts,
            corks: AtomicU32::new(0),
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Set the core's block-forever limit (see `bound::BoundDefaults`);
    /// the default is `bound::DEFAULT_BLOCK_FOREVER_LIMIT_MS`.
    pub fn set_block_forever_limit(&self, limit: Duration) {
        let ms = limit.as_millis().min(u128::from(u64::MAX)) as u64;
        // Relaxed: as in `bound_defaults`.
        self.block_forever_limit_ms.store(ms, Ordering::Relaxed);
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn timeout_of(&self, timeout: Option<Duration>) -> Duration {
        timeout.unwrap_or(self.opts.request_timeout)
    }

    /// The bound of `op` submitted with `timeout` (None: the client's
    /// default): [`bound::request_bound`], as the core computes it. It is
    /// sent as the request's `timeout_ms`, which makes the core apply
    /// exactly this bound (the function is idempotent). A blocking
    /// command without a timeout gets its own bound (`BLPOP q 3`: 3.5 s;
    /// `BLPOP q 0`: the block-forever limit), not the request timeout.
    pub fn request_bound<A: ArgList>(&self, op: &Op<A>, timeout: Option<Duration>) -> Duration {
        bound::request_bound(op, timeout.map_or(0, duration_ms), &self.bound_defaults())
    }

    /// The defaults bounds are computed from (this client's options).
    pub fn bound_defaults(&self) -> bound::BoundDefaults {
        bound::BoundDefaults {
            request_timeout: self.opts.request_timeout,
            // Relaxed: a setting, written once after registration.
            block_forever_limit: Duration::from_millis(
                self.block_forever_limit_ms.load(Ordering::Relaxed),
            ),
        }
    }

    /// The local bound of a wait for `op` submitted with `timeout`: its
    /// [`Client::request_bound`] plus the transport margin, so that the
    /// core's own timeout completion normally arrives first.
    pub fn wait_bound_for<A: ArgList>(&self, op: &Op<A>, timeout: Option<Duration>) -> Duration {
        self.request_bound(op, timeout) + self.opts.transport_margin
    }

    /// The local bound of a wait for a request submitted with `timeout`
    /// that does not block server-side ([`Client::wait_bound_for`] knows
    /// blocking commands).
    pub fn wait_bound(&self, timeout: Option<Duration>) -> Duration {
        let no_op: Op<Vec<Vec<u8>>> = Op::Cancel { target: 0 };
        self.wait_bound_for(&no_op, timeout)
    }

    /// Submit a request without waiting for its completion. Returns its id.
    pub fn submit_op(
        &self,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
        flags: u32,
    ) -> Result<u64, ClientError> {
        self.submit_inner(op, route, timeout, flags, 0, &mut |_| {})
    }

    /// Submit a request whose completion goes to the queued FIFO (see the
    /// module docs) rather than to a waiter by id. The id has [`QUEUED`]
    /// set. `before` is called with the id before the request is written
    /// (so that the caller can file it before its completion can arrive);
    /// if this returns an error, the request was not sent.
    pub fn submit_queued(
        &self,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
        flags: u32,
        before: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        self.submit_inner(op, route, timeout, flags, QUEUED, before)
    }

    fn submit_inner(
        &self,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
        flags: u32,
        id_bits: u64,
        before: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        match self.seg.state() {
            state::OPEN => {}
            state::PEER_LOST => return Err(conn_err(&EndpointError::PeerLost)),
            _ => return Err(ClientError::new(ErrorKind::Closing, "segment is closed")),
        }
        let id = (self.next_id.fetch_add(1, Ordering::Relaxed) & !QUEUED) | id_bits;
        before(id);
        // Backpressure on the submission ring: bounded by the request
        // timeout (not by a blocking command's bound).
        let t = self.timeout_of(timeout);
        let req = Request {
            id,
            timeout_ms: duration_ms(self.request_bound(op, timeout)),
            flags,
            route: route.clone(),
            op: op.clone(),
        };
        let bound = op_size_bound(op, route);
        let deadline = Instant::now() + t;
        let hold = self.corked_here();
        let r = lock(&self.sq).send_with(id, kind::MSG, bound, deadline, hold, |buf| {
            msg::encode_request_into(&req, buf)
        });
        match r {
            Ok(()) => Ok(id),
            Err(EndpointError::Timeout) => Err(ClientError::new(
                ErrorKind::Overloaded,
                "submission ring full until the timeout (the core applies backpressure)",
            )),
            Err(e) => Err(conn_err(&e)),
        }
    }

    /// Submit one command (argv).
    pub fn submit(
        &self,
        args: &[&[u8]],
        route: &Route,
        timeout: Option<Duration>,
    ) -> Result<u64, ClientError> {
        let refs: Vec<ArgRef<'_>> = args.iter().map(|a| ArgRef(a)).collect();
        self.submit_op(
            &Op::Command {
                args: ArgsRef(&refs),
            },
            route,
            timeout,
            0,
        )
    }

    /// Run one command and wait for its reply.
    pub fn call(&self, args: &[&[u8]]) -> Result<Value, ClientError> {
        self.call_routed(args, &Route::Auto, None)
    }

    /// Run one command with a route and timeout.
    pub fn call_routed(
        &self,
        args: &[&[u8]],
        route: &Route,
        timeout: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let refs: Vec<ArgRef<'_>> = args.iter().map(|a| ArgRef(a)).collect();
        let op = Op::Command {
            args: ArgsRef(&refs),
        };
        let id = self.submit_op(&op, route, timeout, 0)?;
        let deadline = Instant::now() + self.wait_bound_for(&op, timeout);
        into_result(self.wait_until(id, deadline)?)
    }

    /// Wait for the completion of `id` (submitted with `timeout`).
    pub fn wait(&self, id: u64, timeout: Option<Duration>) -> Result<Completion, ClientError> {
        let deadline = Instant::now() + self.wait_bound(timeout);
        self.wait_until(id, deadline)
    }

    /// Wait for `id` until `deadline`. On timeout the id is abandoned: its
    /// completion, if it still comes, is discarded.
    pub fn wait_until(&self, id: u64, deadline: Instant) -> Result<Completion, ClientError> {
        let r = self.wait_reply_until(id, deadline, true)?;
        Ok(r.to_completion())
    }

    /// Wait for `id` until `deadline` and return its completion in place
    /// (zero copy; see [`Reply`]). On timeout the id is abandoned when
    /// `abandon` is true (its completion is discarded when it comes);
    /// otherwise it can be waited for again.
    pub fn wait_reply_until(
        &self,
        id: u64,
        deadline: Instant,
        abandon: bool,
    ) -> Result<Reply, ClientError> {
        let mut out = None;
        self.flush_corked();
        self.cq
            .wait_for(Want::Id(id), deadline, abandon, &mut |w| {
                if let Some(r) = w.ready.remove(&id) {
                    out = Some(r);
                    true
                } else {
                    false
                }
            })?;
        out.ok_or_else(|| {
            ClientError::new(ErrorKind::Timeout, "no completion from the core in time")
        })
    }

    /// Take the completions of queued requests that have arrived, without
    /// blocking. Returns an error (and takes nothing) only when the client
    /// is dead and nothing is left: queued requests will then never
    /// complete.
    pub fn poll_queued(&self, out: &mut Vec<Reply>) -> Result<(), ClientError> {
        self.poll_events(out, None)
    }

    /// Like [`Client::poll_queued`], also taking the push messages
    /// (pub/sub) that have arrived into `pushes` when it is given.
    pub fn poll_events(
        &self,
        out: &mut Vec<Reply>,
        pushes: Option<&mut Vec<Reply>>,
    ) -> Result<(), ClientError> {
        self.flush_corked();
        self.cq.poll();
        let mut w = lock(&self.cq.waits);
        out.extend(w.queued.drain(..));
        let mut took_push = false;
        if let Some(p) = pushes {
            took_push = !w.pushes.is_empty();
            p.extend(w.pushes.drain(..));
        }
        match &w.dead {
            Some(e) if out.is_empty() && !took_push => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Wait until at least one queued completion arrives (or `deadline`),
    /// then take all that have arrived. Ok with nothing taken on timeout.
    pub fn wait_queued(&self, deadline: Instant, out: &mut Vec<Reply>) -> Result<(), ClientError> {
        self.wait_events(deadline, out, None)
    }

    /// Like [`Client::wait_queued`]; with `pushes`, a push message also
    /// ends the wait, and every push that has arrived is taken into it.
    pub fn wait_events(
        &self,
        deadline: Instant,
        out: &mut Vec<Reply>,
        mut pushes: Option<&mut Vec<Reply>>,
    ) -> Result<(), ClientError> {
        self.flush_corked();
        let r = self.cq.wait_for(Want::Queued, deadline, false, &mut |w| {
            let push_ready = pushes.is_some() && !w.pushes.is_empty();
            if w.queued.is_empty() && !push_ready {
                return false;
            }
            out.extend(w.queued.drain(..));
            if let Some(p) = pushes.as_deref_mut() {
                p.extend(w.pushes.drain(..));
            }
            true
        });
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::Timeout => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Take a received push message (pub/sub), if any (drains the
    /// completion ring first, without blocking).
    pub fn try_push(&self) -> Option<Value> {
        self.try_push_reply().and_then(|r| push_value(&r))
    }

    /// [`Client::try_push`] without decoding: the push as a reply (its
    /// completion is a `Completion::Push`).
    pub fn try_push_reply(&self) -> Option<Reply> {
        self.flush_corked();
        self.cq.poll();
        lock(&self.cq.waits).pushes.pop_front()
    }

    /// Wait up to `timeout` for a push message (pub/sub) and take it.
    /// `Ok(None)` when none arrived in time; an error only when the client
    /// is dead.
    pub fn wait_push(&self, timeout: Duration) -> Result<Option<Value>, ClientError> {
        Ok(self.wait_push_reply(timeout)?.and_then(|r| push_value(&r)))
    }

    /// [`Client::wait_push`] without decoding (see [`Client::try_push_reply`]).
    pub fn wait_push_reply(&self, timeout: Duration) -> Result<Option<Reply>, ClientError> {
        self.flush_corked();
        let deadline = Instant::now() + timeout;
        let mut out = None;
        let r = self.cq.wait_for(Want::Queued, deadline, false, &mut |w| {
            out = w.pushes.pop_front();
            out.is_some()
        });
        match r {
            Ok(()) => Ok(out),
            Err(e) if e.kind == ErrorKind::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ring bytes currently pinned by replies handed out in place (from the
    /// oldest pinned record to the read position). Diagnostics and tests.
    pub fn pinned_bytes(&self) -> u64 {
        let r = lock(&self.cq.ring);
        r.pins.pinned_bytes(&r.cons)
    }

    /// The error that ended this client, if one did (its segment was
    /// closed or broken, or the daemon connection was lost).
    pub fn dead(&self) -> Option<ClientError> {
        lock(&self.cq.waits).dead.clone()
    }

    /// True once the client has ended (see [`Client::dead`]); lock-free.
    pub fn is_dead(&self) -> bool {
        // Acquire: pairs with the Release store in `CqSide::set_dead`, made
        // after the `dead` error is recorded.
        self.cq.is_dead.load(Ordering::Acquire)
    }
}

fn op_size_bound(op: &Op<ArgsRef<'_>>, route: &Route) -> usize {
    let route_extra = match route {
        Route::SlotKey { key, .. } => key.len() + 16,
        Route::Address { host, .. } => host.len() + 16,
        _ => 0,
    };
    op.size_bound() + route_extra + 64
}

/// Milliseconds for a request's `timeout_ms` (at least 1: 0 means "the
/// default"; at most `u32::MAX`).
fn duration_ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_core::{bulk, soon, FakeCore};
    use vshm_protocol::wake::{self, Side};

    #[test]
    fn replies_are_in_place_and_released_out_of_order() {
        let (mut core, client) = FakeCore::new(1 << 14);
        assert!(core.complete(1, &bulk(100, 1)));
        assert!(core.complete(2, &bulk(100, 2)));
        assert!(core.complete(3, &bulk(100, 3)));
        let r2 = client.wait_reply_until(2, soon(), true).unwrap();
        let r1 = client.wait_reply_until(1, soon(), true).unwrap();
        let r3 = client.wait_reply_until(3, soon(), true).unwrap();
        assert!(r1.in_ring() && r2.in_ring() && r3.in_ring());
        assert_eq!(r2.to_completion(), bulk(100, 2));
        let (ctl, _) = core.seg.cq();
        // Acquire: pairs with the client's Release head store in
        // `Consumer::release_to`.
        let released = || ctl.cons.head.load(Ordering::Acquire);
        assert_eq!(released(), 0);
        drop(r2);
        assert_eq!(released(), 0, "r1 still pins the ring start");
        let pinned = client.pinned_bytes();
        assert!(pinned > 0);
        drop(r1);
        let after_r1 = released();
        assert!(after_r1 > 0, "r1 and r2 released");
        drop(r3);
        assert!(released() > after_r1);
        assert_eq!(client.pinned_bytes(), 0);
        assert_eq!(released(), core.prod.tail());
    }

    #[test]
    fn pinned_replies_hold_the_ring_until_freed_or_detached() {
        let (mut core, client) = FakeCore::new(1 << 12);
        let mut n = 0u64;
        while core.complete(n + 1, &bulk(200, n as u8)) {
            n += 1;
        }
        assert!(n >= 4);
        let mut held: Vec<Reply> = (1..=n)
            .map(|id| client.wait_reply_until(id, soon(), true).unwrap())
            .collect();
        assert!(
            !core.complete(n + 1, &bulk(200, 0)),
            "ring is full while every reply is held"
        );
        // Freeing a later reply does not free space: the first still pins.
        held.pop();
        assert!(!core.complete(n + 1, &bulk(200, 0)));
        // Detaching the first releases its space (and the popped one's
        // is still behind the others).
        held[0].detach();
        assert!(!held[0].in_ring());
        assert_eq!(held[0].to_completion(), bulk(200, 0));
        assert!(core.complete(n + 1, &bulk(200, 9)));
        let r = client.wait_reply_until(n + 1, soon(), true).unwrap();
        assert_eq!(r.to_completion(), bulk(200, 9));
    }

    #[test]
    fn fragmented_completions_are_reassembled_on_the_heap() {
        let (mut core, client) = FakeCore::new(1 << 12);
        let big = bulk(10_000, 7);
        let t = std::thread::spawn({
            let c = big.clone();
            move || {
                let (ctl, area) = core.seg.cq();
                let bytes = msg::encode_completion(&c);
                let mut w = vshm_protocol::frame::FragmentWriter::new(5, kind::MSG);
                while !w.pump(&mut core.prod, ctl, &area, &bytes).unwrap() {
                    core.prod.publish(ctl);
                    wake::wake(ctl, Side::Consumer);
                    std::thread::sleep(Duration::from_millis(1));
                }
                core.prod.publish(ctl);
                wake::wake(ctl, Side::Consumer);
            }
        });
        // The writer needs the reader to release fragments as it goes.
        let r = client.wait_reply_until(5, soon(), true).unwrap();
        assert!(!r.in_ring());
        assert_eq!(r.to_completion(), big);
        t.join().unwrap();
    }

    #[test]
    fn garbage_completion_is_an_error_not_a_crash() {
        let (mut core, client) = FakeCore::new(1 << 12);
        core.raw(9, &[0xAB; 40]);
        let c = client.wait_until(9, soon()).unwrap();
        match c {
            Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Connection),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_past_deadline_still_takes_what_has_arrived() {
        let (mut core, client) = FakeCore::new(1 << 14);
        core.complete(QUEUED | 1, &bulk(3, 1));
        core.complete(2, &bulk(3, 2));
        let past = Instant::now() - Duration::from_millis(1);
        let mut out = Vec::new();
        client.wait_queued(past, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|r| r.id()).collect::<Vec<_>>(),
            vec![QUEUED | 1]
        );
        let r = client.wait_reply_until(2, past, true).unwrap();
        assert_eq!(r.to_completion(), bulk(3, 2));
    }

    #[test]
    fn queued_and_waited_ids_go_their_own_ways() {
        let (mut core, client) = FakeCore::new(1 << 14);
        core.complete(QUEUED | 1, &bulk(3, 1));
        core.complete(2, &bulk(3, 2));
        core.complete(QUEUED | 3, &bulk(3, 3));
        let mut out = Vec::new();
        client.poll_queued(&mut out).unwrap();
        assert_eq!(
            out.iter().map(|r| r.id()).collect::<Vec<_>>(),
            vec![QUEUED | 1, QUEUED | 3]
        );
        let r = client.wait_reply_until(2, soon(), true).unwrap();
        assert_eq!(r.to_completion(), bulk(3, 2));
        drop(r);
        out.clear();
        client
            .wait_queued(Instant::now() + Duration::from_millis(20), &mut out)
            .unwrap();
        assert!(out.is_empty());
        // Timeouts without abandoning keep the id waitable.
        let e = client
            .wait_reply_until(4, Instant::now() + Duration::from_millis(10), false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        core.complete(4, &bulk(1, 4));
        assert_eq!(
            client
                .wait_reply_until(4, soon(), true)
                .unwrap()
                .to_completion(),
            bulk(1, 4)
        );
        // Abandoned ids are discarded on arrival.
        let e = client
            .wait_reply_until(5, Instant::now() + Duration::from_millis(10), true)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        core.complete(5, &bulk(1, 5));
        core.complete(6, &bulk(1, 6));
        assert_eq!(
            client
                .wait_reply_until(6, soon(), true)
                .unwrap()
                .to_completion(),
            bulk(1, 6)
        );
        assert_eq!(client.pinned_bytes(), 0);
    }

    #[test]
    fn many_waiters_each_get_their_own_completion() {
        let (mut core, client) = FakeCore::new(1 << 16);
        let client = Arc::new(client);
        let threads = 6u64;
        let per = 200u64;
        let waiters: Vec<_> = (0..threads)
            .map(|t| {
                let c = client.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let id = t * per + i + 1;
                        let r = c.wait_reply_until(id, soon(), true).unwrap();
                        assert_eq!(r.to_completion(), bulk(8, (id % 251) as u8), "id {id}");
                    }
                })
            })
            .collect();
        // Complete in an order that interleaves the threads, sometimes in
        // bursts, sometimes one by one with pauses (waiters park).
        let mut n = 0;
        for i in 0..per {
            for t in (0..threads).rev() {
                let id = t * per + i + 1;
                while !core.complete(id, &bulk(8, (id % 251) as u8)) {
                    std::thread::sleep(Duration::from_micros(50));
                }
                n += 1;
                if n % 37 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(client.pinned_bytes(), 0);
    }

    #[test]
    fn closed_segment_ends_waits() {
        let (core, client) = FakeCore::new(1 << 12);
        let seg = core.seg.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            seg.set_state(state::CLOSED);
        });
        let e = client.wait_reply_until(1, soon(), true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Closing);
        let mut out = Vec::new();
        assert_eq!(
            client.poll_queued(&mut out).unwrap_err().kind,
            ErrorKind::Closing
        );
        t.join().unwrap();
        assert!(client.dead().is_some());
    }

    #[test]
    fn replies_outlive_the_client() {
        let (mut core, client) = FakeCore::new(1 << 12);
        core.complete(1, &bulk(10, 1));
        let r = client.wait_reply_until(1, soon(), true).unwrap();
        drop(client);
        assert_eq!(r.to_completion(), bulk(10, 1));
    }
}
