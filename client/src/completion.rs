//! The completion side of a client: draining the completion ring (one
//! leader at a time), reassembling fragmented completions, filing
//! completions for the threads that wait for them, and the pinned records
//! that zero-copy [`Reply`]s keep in the ring (see [`crate::client`] for
//! the whole picture).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, Ordering};

use rkyv::util::AlignedVec;

use crate::endpoint::{self, AdaptiveSpin, EndpointError, PeerWake, WaitStrategy};
use vshm_protocol::frame::Reassembler;
use vshm_protocol::msg::{self, ArchivedCompletion, ClientError, ErrorKind};
use vshm_protocol::pins::Pins;
use vshm_protocol::ring::{kind, Consumer, REC_ALIGN};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::Side;

use crate::client::QUEUED;
use crate::reply::Reply;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn conn_err(e: &EndpointError) -> ClientError {
    match e {
        EndpointError::Closed => {
            ClientError::new(ErrorKind::Closing, "the core closed this client's segment")
        }
        EndpointError::PeerLost => {
            ClientError::new(ErrorKind::Connection, "connection to the vshm daemon lost")
        }
        EndpointError::Timeout => {
            ClientError::new(ErrorKind::Timeout, "timed out waiting for the core")
        }
        EndpointError::Protocol(f) => ClientError::new(
            ErrorKind::Connection,
            format!("protocol error: {}", f.error),
        ),
    }
}

/// What a wait is waiting for.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    Id(u64),
    Queued,
}

/// One message taken from the ring.
pub(crate) struct Delivered {
    pub(crate) kind: u8,
    pub(crate) reply: Reply,
}

/// The consumer side of the completion ring (under one short lock).
pub(crate) struct Ring {
    pub(crate) cons: Consumer,
    pub(crate) reasm: Reassembler,
    /// Start positions of records handed out in place and not yet released.
    pub(crate) pins: Pins,
}

/// Completions taken from the ring, waiting to be picked up.
pub(crate) struct Waits {
    /// A thread is draining the ring (and may be parked on its futex).
    pub(crate) leader: bool,
    pub(crate) ready: HashMap<u64, Reply>,
    pub(crate) abandoned: HashSet<u64>,
    pub(crate) queued: VecDeque<Reply>,
    /// Push records (pub/sub messages), kept as replies (heap: pushes are
    /// never pinned in the ring).
    pub(crate) pushes: VecDeque<Reply>,
    pub(crate) dead: Option<ClientError>,
    /// Threads parked waiting for an id (see `CqSide::wait_for`).
    pub(crate) waiting: HashMap<u64, Thread>,
    /// Threads parked waiting for queued completions.
    pub(crate) queued_waiting: Vec<Thread>,
}

/// The completion side, shared with the replies that pin its ring.
pub(crate) struct CqSide {
    pub(crate) seg: Arc<Segment>,
    pub(crate) peer: PeerWake,
    pub(crate) strategy: WaitStrategy,
    /// Whether the leader's waits spin now (`strategy.adaptive`).
    pub(crate) spin: AdaptiveSpin,
    pub(crate) ring: Mutex<Ring>,
    pub(crate) waits: Mutex<Waits>,
    /// Set once `Waits::dead` is (a lock-free check for callers).
    pub(crate) is_dead: AtomicBool,
    /// Fork generation this side was created in: a forked child never
    /// touches the parent's ring through a reply it inherited.
    pub(crate) fork_gen: u64,
}

impl CqSide {
    pub(crate) fn new(seg: Arc<Segment>, peer: PeerWake, strategy: WaitStrategy) -> Arc<CqSide> {
        let l = *seg.layout();
        Arc::new(CqSide {
            seg,
            peer,
            strategy,
            spin: AdaptiveSpin::new(),
            ring: Mutex::new(Ring {
                cons: Consumer::new(l.cq_capacity, l.max_record),
                reasm: Reassembler::new(l.max_message),
                pins: Pins::new(),
            }),
            waits: Mutex::new(Waits {
                leader: false,
                ready: HashMap::new(),
                abandoned: HashSet::new(),
                queued: VecDeque::new(),
                pushes: VecDeque::new(),
                dead: None,
                waiting: HashMap::new(),
                queued_waiting: Vec::new(),
            }),
            is_dead: AtomicBool::new(false),
            fork_gen: crate::daemon::fork_generation(),
        })
    }

    /// Wake the core if it waits for completion ring space.
    pub(crate) fn wake_producer(&self) {
        let (ctl, _) = self.seg.cq();
        self.peer.wake(ctl, Side::Producer);
    }

    /// Return ring space up to the oldest pinned record (or everything
    /// consumed when nothing is pinned): `Pins::release`, the code loom
    /// model d2 runs.
    pub(crate) fn release_locked(&self, ring: &mut Ring) {
        let (ctl, _) = self.seg.cq();
        let Ring { cons, pins, .. } = ring;
        if pins.release(cons, ctl) {
            self.wake_producer();
        }
    }

    pub(crate) fn set_dead(&self, w: &mut Waits, e: &EndpointError) {
        w.dead.get_or_insert_with(|| conn_err(e));
        // Release: pairs with the Acquire load in `Client::is_dead`.
        self.is_dead.store(true, Ordering::Release);
    }

    pub(crate) fn unpin(&self, start: u64) {
        let mut ring = lock(&self.ring);
        if ring.pins.unpin(start) {
            self.release_locked(&mut ring);
        }
    }

    /// Take every complete message from the ring.
    pub(crate) fn drain_locked(
        self: &Arc<Self>,
        ring: &mut Ring,
        out: &mut Vec<Delivered>,
    ) -> Result<(), EndpointError> {
        let (ctl, area) = self.seg.cq();
        let r = (|| {
            while let Some(rec) = ring.cons.peek(ctl, &area)? {
                let h = rec.hdr;
                if h.flags == 0 && h.kind == kind::MSG && !ring.reasm.in_progress() {
                    // SAFETY: peek validated the payload lies in the data area, published and not
                    // released; the core does not write it until we release it, which happens only
                    // after every Reply pointing into it is gone (it is pinned below).
                    let bytes = unsafe { area.slice(rec.payload_off, u64::from(h.len)) };
                    ring.cons.advance(&rec);
                    let aligned = (bytes.as_ptr() as usize).is_multiple_of(REC_ALIGN as usize);
                    let reply = if aligned && msg::access_completion(bytes).is_ok() {
                        ring.pins.pin(&rec);
                        Reply {
                            id: h.id,
                            store: Store::Ring {
                                cq: self.clone(),
                                start: rec.pos(),
                                ptr: NonNull::from(bytes).cast(),
                                len: bytes.len(),
                            },
                        }
                    } else {
                        Reply::from_bytes_or_error(h.id, bytes)
                    };
                    out.push(Delivered {
                        kind: h.kind,
                        reply,
                    });
                    continue;
                }
                let m = ring
                    .reasm
                    .push(&area, &rec)
                    .map_err(EndpointError::Protocol);
                ring.cons.advance(&rec);
                if let Some(m) = m? {
                    let reply = if msg::access_completion(&m.bytes).is_ok() {
                        Reply {
                            id: m.id,
                            store: Store::Heap(m.bytes),
                        }
                    } else {
                        Reply::from_bytes_or_error(m.id, &[])
                    };
                    out.push(Delivered {
                        kind: m.kind,
                        reply,
                    });
                }
                // Let the core reuse the space of fragments early.
                if ring.reasm.in_progress() {
                    self.release_locked(ring);
                }
            }
            Ok(())
        })();
        self.release_locked(ring);
        r
    }

    /// Drain without blocking and file what was taken.
    pub(crate) fn poll(self: &Arc<Self>) {
        let mut got = Vec::new();
        let r = {
            let mut ring = lock(&self.ring);
            self.drain_locked(&mut ring, &mut got)
        };
        if got.is_empty() && r.is_ok() {
            return;
        }
        let mut drops = Vec::new();
        let mut wake = Vec::new();
        {
            let mut w = lock(&self.waits);
            if let Err(e) = r {
                self.set_dead(&mut w, &e);
                wake_all(&w, &mut wake);
            }
            Self::file(&mut w, got, &mut drops, &mut wake);
        }
        for t in wake {
            t.unpark();
        }
        drop(drops);
    }

    /// File taken messages: pushes, queued completions, completions of
    /// waited-for (or abandoned) ids. Threads waiting for what was filed
    /// are added to `wake`.
    pub(crate) fn file(
        w: &mut Waits,
        got: Vec<Delivered>,
        drops: &mut Vec<Reply>,
        wake: &mut Vec<Thread>,
    ) {
        let mut queued = false;
        for d in got {
            if d.kind == kind::PUSH {
                if matches!(d.reply.completion(), ArchivedCompletion::Push(_)) {
                    w.pushes.push_back(d.reply);
                    queued = true;
                } else {
                    drops.push(d.reply);
                }
                continue;
            }
            let id = d.reply.id;
            if id & QUEUED != 0 {
                w.queued.push_back(d.reply);
                queued = true;
            } else if w.abandoned.remove(&id) {
                drops.push(d.reply);
            } else if let Some(old) = w.ready.insert(id, d.reply) {
                // A duplicate id (a misbehaving peer): keep the first.
                let new = w.ready.insert(id, old);
                drops.extend(new);
            } else if let Some(t) = w.waiting.get(&id) {
                wake.push(t.clone());
            }
        }
        // Queued completions and pushes wake the threads in wait_queued,
        // wait_events and wait_push.
        if queued {
            wake.extend(w.queued_waiting.iter().cloned());
        }
    }

    /// The leader's wait: until at least one message is taken or the
    /// deadline passes.
    pub(crate) fn lead(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<Vec<Delivered>, EndpointError> {
        let mut out = Vec::new();
        {
            let mut ring = lock(&self.ring);
            self.drain_locked(&mut ring, &mut out)?;
        }
        if !out.is_empty() {
            return Ok(out);
        }
        let (ctl, _) = self.seg.cq();
        let strategy = self.spin.strategy(self.strategy);
        let started = Instant::now();
        let r = endpoint::wait_until(&self.seg, ctl, Side::Consumer, strategy, deadline, || {
            let mut ring = lock(&self.ring);
            self.drain_locked(&mut ring, &mut out)?;
            Ok(!out.is_empty())
        });
        if r.is_ok() {
            self.spin.record(strategy, started.elapsed());
        }
        match r {
            Ok(()) => Ok(out),
            // Whatever was taken before the error is still delivered; the
            // error shows at the next wait.
            Err(_) if !out.is_empty() => Ok(out),
            Err(e) => Err(e),
        }
    }

    /// Wait until `take` finds what it wants (it runs under the waits
    /// lock), leading the ring when no other thread does.
    ///
    /// Waiters that do not lead park (std thread parking) with their
    /// thread registered under what they wait for; the leader unparks
    /// exactly the threads whose completions it filed, and a leader that
    /// stops leading without leading again unparks one waiter to take
    /// over. Parks are bounded by the deadline (and by 100 ms, so that a
    /// state change is never missed for long).
    pub(crate) fn wait_for(
        self: &Arc<Self>,
        want: Want,
        deadline: Instant,
        abandon: bool,
        take: &mut dyn FnMut(&mut Waits) -> bool,
    ) -> Result<(), ClientError> {
        // A deadline already past makes this a poll: take what has arrived
        // (the loop below would time out before leading the ring).
        if Instant::now() >= deadline {
            self.poll();
        }
        let me = std::thread::current();
        let mut w = lock(&self.waits);
        // True after this thread led and gave the role up: if it leaves,
        // it must hand the role over.
        let mut handoff = false;
        let result = loop {
            if take(&mut w) {
                break Ok(());
            }
            if let Some(e) = &w.dead {
                break Err(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                if let (Want::Id(id), true) = (want, abandon) {
                    w.abandoned.insert(id);
                }
                break Err(ClientError::new(
                    ErrorKind::Timeout,
                    "no completion from the core in time",
                ));
            }
            if !w.leader {
                w.leader = true;
                drop(w);
                let r = self.lead(deadline);
                let mut drops = Vec::new();
                let mut wake = Vec::new();
                w = lock(&self.waits);
                w.leader = false;
                handoff = true;
                match r {
                    Ok(got) => Self::file(&mut w, got, &mut drops, &mut wake),
                    Err(EndpointError::Timeout) => {}
                    Err(e) => {
                        self.set_dead(&mut w, &e);
                        wake_all(&w, &mut wake);
                    }
                }
                if !wake.is_empty() || !drops.is_empty() {
                    drop(w);
                    for t in wake {
                        t.unpark();
                    }
                    drop(drops);
                    w = lock(&self.waits);
                }
                continue;
            }
            handoff = false;
            match want {
                Want::Id(id) => {
                    w.waiting.insert(id, me.clone());
                }
                Want::Queued => w.queued_waiting.push(me.clone()),
            }
            drop(w);
            std::thread::park_timeout((deadline - now).min(Duration::from_millis(100)));
            w = lock(&self.waits);
            match want {
                Want::Id(id) => {
                    w.waiting.remove(&id);
                }
                Want::Queued => {
                    if let Some(i) = w.queued_waiting.iter().position(|t| t.id() == me.id()) {
                        w.queued_waiting.swap_remove(i);
                    }
                }
            }
        };
        if handoff && !w.leader {
            let next = w
                .waiting
                .values()
                .next()
                .or_else(|| w.queued_waiting.first())
                .cloned();
            drop(w);
            if let Some(t) = next {
                t.unpark();
            }
        }
        result
    }
}

fn wake_all(w: &Waits, wake: &mut Vec<Thread>) {
    wake.extend(w.waiting.values().cloned());
    wake.extend(w.queued_waiting.iter().cloned());
}

/// Where a reply's bytes live.
pub(crate) enum Store {
    /// In the completion ring, pinned until the reply is dropped.
    Ring {
        cq: Arc<CqSide>,
        start: u64,
        ptr: NonNull<u8>,
        len: usize,
    },
    /// In private memory (reassembled, detached, or made locally).
    Heap(AlignedVec<16>),
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Store::Ring { cq, start, .. } = self {
            // A forked child must not touch the parent's ring (the memfd is
            // shared, and the parent's locks may be held by threads that do
            // not exist here).
            if cq.fork_gen == crate::daemon::fork_generation() {
                cq.unpin(*start);
            }
        }
    }
}
