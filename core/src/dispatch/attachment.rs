//! One attachment (a client's segment attached to the dispatcher): its
//! state, limits and completion writer. Its serve loop is in `serve.rs`.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use vshm_protocol::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use rkyv::util::AlignedVec;
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};

use vshm_protocol::frame::{FragmentWriter, Message, Reassembler};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{self, ClientError, Completion, ErrorKind, Request, Value};
use vshm_protocol::ring::{kind, Producer};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, Side};

use super::body::Body;
use super::doorbell::Doorbell;
use super::{AttachOptions, Execute};
use crate::net::ticket::{Sink, Ticket};

/// Counters of one connection (read by stats).
#[derive(Debug, Default)]
pub struct AttachmentStats {
    pub requests: AtomicU64,
    pub completions: AtomicU64,
    pub errors: AtomicU64,
    pub invalid: AtomicU64,
    /// Push records (pub/sub messages) queued for the completion ring.
    pub pushes: AtomicU64,
    /// Push records dropped because [`MAX_PENDING_PUSHES`] were already
    /// waiting for ring space (a client that does not read its ring).
    pub pushes_dropped: AtomicU64,
    /// Requests refused because they alone exceed `max_outstanding_bytes`.
    pub overloaded: AtomicU64,
    /// Taken from the ring → completion queued, per executed request.
    pub latency: super::latency::LatencyHistogram,
}

struct Pending {
    id: u64,
    kind: u8,
    bytes: Body,
    writer: FragmentWriter,
    /// Counts against the in-flight limit until written.
    counted: bool,
}

struct CqWriter {
    prod: Producer,
    pending: VecDeque<Pending>,
    /// Push records among `pending`.
    pending_pushes: usize,
    /// Their bytes (bounded by the client's `max_outstanding_bytes`).
    pending_push_bytes: u64,
    space_wanted: bool,
    /// Counted completions committed straight into the ring (no `Pending`)
    /// since the last flush; the flush publishes them and finishes them.
    direct_done: usize,
    /// Records committed but not yet published.
    unpublished: bool,
    /// The archive buffer of the last completion written straight into the
    /// ring, reused by the next one (no allocation per completion).
    scratch: AlignedVec,
}

/// A scratch buffer above this capacity is not kept (a large reply passed).
const SCRATCH_KEEP: usize = 64 << 10;

/// Most push records waiting for completion ring space per connection;
/// further pushes are dropped (and counted) until the client reads.
pub const MAX_PENDING_PUSHES: usize = 10_000;

/// One attached client segment.
pub struct ClientAttachment {
    id: u64,
    seg: Arc<Segment>,
    exec: Arc<dyn Execute>,
    opts: AttachOptions,
    doorbell: Doorbell,
    cq: Mutex<CqWriter>,
    inflight: AtomicUsize,
    /// Bytes of requests taken and not completed plus completions queued
    /// for ring space (see `AttachOptions::max_outstanding_bytes`).
    outstanding: AtomicU64,
    /// Signalled when a completion leaves the in-flight set.
    progress: Notify,
    /// No new requests are taken (shutdown or detach).
    intake_stopped: AtomicBool,
    /// The connection is gone: completions are dropped, tasks cancelled.
    /// Tasks wait on the channel; the per-request path reads `closed`,
    /// its mirror, set first (a load instead of the channel's lock).
    closed_tx: watch::Sender<bool>,
    closed: AtomicBool,
    broken: Mutex<Option<String>>,
    pub stats: AttachmentStats,
    rt: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientAttachment {
    pub(super) fn new(
        id: u64,
        seg: Arc<Segment>,
        exec: Arc<dyn Execute>,
        doorbell: Doorbell,
        opts: AttachOptions,
        rt: tokio::runtime::Handle,
    ) -> std::io::Result<Arc<ClientAttachment>> {
        let l = *seg.layout();
        let (closed_tx, _) = watch::channel(false);
        Ok(Arc::new(ClientAttachment {
            id,
            cq: Mutex::new(CqWriter {
                prod: Producer::new(l.cq_capacity, l.max_record),
                pending: VecDeque::new(),
                pending_pushes: 0,
                pending_push_bytes: 0,
                space_wanted: false,
                direct_done: 0,
                unpublished: false,
                scratch: AlignedVec::new(),
            }),
            seg,
            exec,
            opts,
            doorbell,
            inflight: AtomicUsize::new(0),
            outstanding: AtomicU64::new(0),
            progress: Notify::new(),
            intake_stopped: AtomicBool::new(false),
            closed_tx,
            closed: AtomicBool::new(false),
            broken: Mutex::new(None),
            stats: AttachmentStats::default(),
            rt,
        }))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn label(&self) -> &str {
        &self.opts.label
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The eventfd the client rings.
    pub fn doorbell_fd(&self) -> Arc<OwnedFd> {
        self.doorbell.fd()
    }

    pub(super) fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    pub(super) fn opts(&self) -> &AttachOptions {
        &self.opts
    }

    pub(super) fn closed_rx(&self) -> watch::Receiver<bool> {
        self.closed_tx.subscribe()
    }

    /// Signalled when a completion leaves the in-flight set.
    pub(super) fn progress(&self) -> &Notify {
        &self.progress
    }

    /// True once no new requests may be taken.
    pub(super) fn intake_stopped(&self) -> bool {
        // Acquire: pairs with the Release stores in `stop_intake`, `detach`
        // and `mark_broken` (only the flag itself is read after it).
        self.intake_stopped.load(Ordering::Acquire)
    }

    /// Count request bytes against `max_outstanding_bytes`.
    pub(super) fn charge(&self, bytes: u64) {
        self.outstanding.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn uncharge(&self, bytes: u64) {
        self.outstanding.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// One more request in flight (its completion calls `finish`).
    pub(super) fn begin_one(&self) {
        // AcqRel: pairs with the AcqRel `fetch_sub` in `finish`; the two
        // read-modify-writes of the count order against each other. Its
        // readers (`drain_until`, the serve loop) load it Relaxed after
        // `progress` fires: tokio's `Notify` orders the notifying
        // `finish` before the woken task.
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Bytes counted against `max_outstanding_bytes` now.
    pub fn outstanding_bytes(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Wait until the connection is closed, detached or marked broken
    /// (the daemon then hangs up on the client; see `broken_reason`).
    pub async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Why the segment was marked broken, if it was.
    pub fn broken_reason(&self) -> Option<String> {
        lock(&self.broken).clone()
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `set_closed`.
        self.closed.load(Ordering::Acquire)
    }

    /// Mark the connection closed: the flag, then the channel that wakes
    /// the waiting tasks. Returns whether it already was.
    fn set_closed(&self) -> bool {
        // Release: pairs with the Acquire load in `is_closed`.
        self.closed.store(true, Ordering::Release);
        self.closed_tx.send_replace(true)
    }

    /// Stop taking requests (the serve loop exits after its current turn).
    pub fn stop_intake(&self) {
        // Release: pairs with the Acquire load in `intake_stopped`.
        self.intake_stopped.store(true, Ordering::Release);
        doorbell_kick(&self.doorbell_fd());
    }

    /// Wait until nothing is in flight or the deadline passes.
    pub async fn drain_until(&self, deadline: tokio::time::Instant) {
        while self.inflight() > 0 && !self.is_closed() {
            let notified = self.progress.notified();
            if self.inflight() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
    }

    /// Close: every request still in flight gets a `Closing` completion
    /// (best effort: written if the ring has room), the segment is marked
    /// closed (waking the client), and outstanding tasks are cancelled.
    pub fn close(&self) {
        self.stop_intake();
        if self.set_closed() {
            return;
        }
        self.seg.set_state(state::CLOSED);
    }

    /// The client is gone (its socket closed): drop everything at once.
    pub fn detach(&self) {
        // Release: pairs with the Acquire load in `intake_stopped`.
        self.intake_stopped.store(true, Ordering::Release);
        self.set_closed();
        doorbell_kick(&self.doorbell_fd());
        {
            let mut w = lock(&self.cq);
            self.forget_pending(&mut w);
        }
        // A broken segment stays BROKEN: that is what the client learns.
        if lock(&self.broken).is_none() {
            self.seg.set_state(state::CLOSED);
        }
    }

    /// Drop every queued completion (connection gone or broken).
    fn forget_pending(&self, w: &mut CqWriter) {
        let bytes: u64 = w
            .pending
            .iter()
            .filter(|p| p.counted)
            .map(|p| p.bytes.len() as u64)
            .sum();
        w.pending.clear();
        w.pending_pushes = 0;
        w.pending_push_bytes = 0;
        self.outstanding.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(super) fn mark_broken(&self, why: String) {
        warn!(conn = self.id, label = %self.opts.label, reason = %why, "client segment corrupt; disconnecting it");
        *lock(&self.broken) = Some(why);
        // Release: pairs with the Acquire load in `intake_stopped`.
        self.intake_stopped.store(true, Ordering::Release);
        self.set_closed();
        self.seg.set_state(state::BROKEN);
    }

    /// Commit or queue a completion; the next [`Self::flush`] publishes
    /// it (the serve loop flushes after each turn).
    pub fn complete(&self, id: u64, c: &Completion) {
        self.complete_kind(id, kind::MSG, c, true, 0)
    }

    /// Complete a request whose `req_bytes` count against the
    /// outstanding-bytes limit (released now; the completion's own bytes
    /// count until it is written).
    fn complete_req(&self, id: u64, c: &Completion, req_bytes: u64) {
        self.complete_kind(id, kind::MSG, c, true, req_bytes);
        self.flush();
    }

    /// Queue an out-of-band push record (pub/sub). Dropped when the
    /// connection is closed, or when [`MAX_PENDING_PUSHES`] pushes, or
    /// `max_outstanding_bytes` of them, already wait for ring space
    /// (counted in `stats.pushes_dropped`).
    pub fn push(&self, c: &Completion) {
        let full = {
            let w = lock(&self.cq);
            w.pending_pushes >= MAX_PENDING_PUSHES
                || w.pending_push_bytes >= self.opts.max_outstanding_bytes
        };
        if full {
            self.stats.pushes_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.pushes.fetch_add(1, Ordering::Relaxed);
        self.complete_kind(0, kind::PUSH, c, false, 0);
        self.flush();
    }

    fn complete_kind(&self, id: u64, k: u8, c: &Completion, counted: bool, req_bytes: u64) {
        if !self.count_completion(matches!(c, Completion::Err(_)), counted, req_bytes) {
            return;
        }
        let mut w = lock(&self.cq);
        let scratch = std::mem::take(&mut w.scratch);
        let bytes = if quick_to_encode(c) {
            msg::encode_completion_in(c, scratch)
        } else {
            // A large reply takes a while to encode: outside the lock.
            drop(w);
            let bytes = msg::encode_completion_in(c, scratch);
            w = lock(&self.cq);
            bytes
        };
        self.commit_or_queue(&mut w, id, k, Body::Whole(bytes), counted, req_bytes);
    }

    /// [`Self::complete_kind`] for a request's completion handed over by
    /// value: a large bulk value goes into the ring from the reply's own
    /// buffer (`Body::split`), without an archive copy.
    fn complete_owned(&self, id: u64, c: Completion, req_bytes: u64) {
        match Body::split(c) {
            Ok(body) => {
                if self.count_completion(false, true, req_bytes) {
                    let mut w = lock(&self.cq);
                    self.commit_or_queue(&mut w, id, kind::MSG, body, true, req_bytes);
                }
            }
            Err(c) => self.complete_kind(id, kind::MSG, &c, true, req_bytes),
        }
    }

    /// Count a completion; `false` when the connection is closed and it is
    /// dropped (its request finished, its bytes released).
    fn count_completion(&self, is_err: bool, counted: bool, req_bytes: u64) -> bool {
        if self.is_closed() && self.seg.state() != state::OPEN {
            self.outstanding.fetch_sub(req_bytes, Ordering::Relaxed);
            self.finish(usize::from(counted));
            return false;
        }
        if counted {
            self.stats.completions.fetch_add(1, Ordering::Relaxed);
        }
        if is_err {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Commit a completion into the ring now, or queue it behind those
    /// already waiting for space.
    fn commit_or_queue(
        &self,
        w: &mut CqWriter,
        id: u64,
        k: u8,
        bytes: Body,
        counted: bool,
        req_bytes: u64,
    ) {
        // Nothing queued ahead of it and one record long (nearly every
        // reply): commit it into the ring now, with no queue entry and no
        // allocation; the next flush publishes it.
        if w.pending.is_empty() && bytes.len() as u64 <= w.prod.max_record() {
            let (ctl, area) = self.seg.cq();
            let mut writer = FragmentWriter::new(id, k);
            match writer.pump_parts(&mut w.prod, ctl, &area, &bytes.parts()) {
                Ok(true) => {
                    self.outstanding.fetch_sub(req_bytes, Ordering::Relaxed);
                    if counted {
                        w.direct_done += 1;
                    }
                    w.unpublished = true;
                    if let Body::Whole(b) = bytes {
                        if b.capacity() <= SCRATCH_KEEP {
                            w.scratch = b;
                        }
                    }
                    return;
                }
                // Full: nothing was written; queue it below.
                Ok(false) => {}
                Err(e) => {
                    self.outstanding.fetch_sub(req_bytes, Ordering::Relaxed);
                    self.mark_broken(format!("completion ring: {e}"));
                    return;
                }
            }
        }
        // A client that does not read its completions still gets replies
        // to what it submitted (up to `max_inflight`, each as large as the
        // server makes it). With others already queued and past twice its
        // byte limit, a reply becomes a small `Overloaded` error instead,
        // so that what the core holds for one client stays bounded (the
        // request still gets its one completion).
        let over = counted
            && k != kind::PUSH
            && !w.pending.is_empty()
            && self
                .outstanding
                .load(Ordering::Relaxed)
                .saturating_add(bytes.len() as u64)
                > self.opts.max_outstanding_bytes.saturating_mul(2);
        let bytes = if over {
            self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            let e = ClientError::new(
                ErrorKind::Overloaded,
                format!(
                    "reply of {} bytes dropped: this client is not reading its completions as fast as they come (more than twice its max_outstanding_bytes, {} bytes, wait in the core)",
                    bytes.len(),
                    self.opts.max_outstanding_bytes
                ),
            );
            Body::Whole(msg::encode_completion_in(
                &Completion::Err(e),
                AlignedVec::new(),
            ))
        } else {
            bytes
        };
        // Relaxed: a counter compared against a limit by the serve loop,
        // which re-checks after every `progress` notification; no memory
        // is published through it. Add before subtracting: never wraps.
        if counted {
            self.outstanding
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        self.outstanding.fetch_sub(req_bytes, Ordering::Relaxed);
        if k == kind::PUSH {
            w.pending_pushes += 1;
            w.pending_push_bytes += bytes.len() as u64;
        }
        w.pending.push_back(Pending {
            id,
            kind: k,
            bytes,
            writer: FragmentWriter::new(id, k),
            counted,
        });
    }

    /// `n` requests left the in-flight set: one subtraction and one
    /// notification for all of them (a flush finishes every completion it
    /// wrote at once; the waiters re-check the count).
    fn finish(&self, n: usize) {
        if n == 0 {
            return;
        }
        // AcqRel: pairs with the AcqRel `fetch_add` in `begin_one`.
        self.inflight.fetch_sub(n, Ordering::AcqRel);
        self.progress.notify_waiters();
        // The serve loop may be waiting for room under the limit.
        self.progress.notify_one();
    }

    /// Write queued completions into the ring. Called with the writer lock.
    fn flush_locked(&self, w: &mut CqWriter) {
        let (ctl, area) = self.seg.cq();
        let before = w.prod.tail();
        let mut done = std::mem::take(&mut w.direct_done);
        let mut written = 0u64;
        loop {
            let CqWriter {
                prod,
                pending,
                pending_pushes,
                pending_push_bytes,
                ..
            } = &mut *w;
            let Some(p) = pending.front_mut() else { break };
            match p.writer.pump_parts(prod, ctl, &area, &p.bytes.parts()) {
                Ok(true) => {
                    let p = pending.pop_front().expect("front exists");
                    if p.counted {
                        done += 1;
                        written += p.bytes.len() as u64;
                    }
                    if p.kind == kind::PUSH {
                        *pending_pushes = pending_pushes.saturating_sub(1);
                        *pending_push_bytes =
                            pending_push_bytes.saturating_sub(p.bytes.len() as u64);
                    }
                    debug_assert!(p.id == 0 || p.kind == kind::MSG);
                }
                Ok(false) => break,
                Err(e) => {
                    self.outstanding.fetch_sub(written, Ordering::Relaxed);
                    self.forget_pending(w);
                    self.mark_broken(format!("completion ring: {e}"));
                    // Written before the ring broke: they left the
                    // in-flight set.
                    self.finish(done);
                    return;
                }
            }
        }
        let direct = std::mem::take(&mut w.unpublished);
        let committed = w.prod.tail() != before || direct;
        if committed && w.prod.publish(ctl) {
            wake::wake(ctl, Side::Consumer);
        }
        let mut recheck = false;
        if !w.pending.is_empty() && !w.space_wanted {
            // Ask the client to ring the doorbell when it frees space; the
            // serve loop retries the flush when the doorbell rings.
            wake::prepare_sleep(ctl, Side::Producer);
            w.space_wanted = true;
            recheck = true;
        } else if w.pending.is_empty() && w.space_wanted {
            wake::cancel_sleep(ctl, Side::Producer);
            w.space_wanted = false;
        }
        self.outstanding.fetch_sub(written, Ordering::Relaxed);
        self.finish(done);
        if recheck {
            // Announce, then re-check: space the client freed after the
            // pump above but before it could see the announcement rang no
            // doorbell (the completion would wait for the serve loop's
            // safety-net nap, 250 ms). `space_wanted` is set now, so this
            // recurses at most once.
            self.flush_locked(w);
        }
    }

    pub(super) fn flush(&self) {
        let mut w = lock(&self.cq);
        if !w.pending.is_empty() || w.unpublished {
            self.flush_locked(&mut w);
        }
    }

    /// Handle one message taken from the submission ring. Its `req_bytes`
    /// are already counted in `outstanding`. A command for one node is
    /// planned and encoded for the server straight from the validated
    /// archive ([`Execute::take_archived`]); anything else is decoded into
    /// an owned request for [`Execute::try_submit`] or [`Execute::execute`].
    /// The message's buffer goes back to `reasm` as soon as that is done,
    /// and only then is the request sent: a small buffer is reused, a large
    /// one freed before the node connection copies the request into its
    /// write buffer, which can then take its memory. (Sent while the
    /// message was held, a 16 MiB SET faulted in 16 MiB of fresh pages
    /// each time: in-process SET 16 MiB ran at 360 MB/s instead of 850.)
    pub(super) fn dispatch(
        self: &Arc<Self>,
        m: Message,
        req_bytes: u64,
        taken: Instant,
        reasm: &mut Reassembler,
    ) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.begin_one();
        // `access_submitted` then `deserialize_submitted`: what
        // `msg::decode_submitted`, which the request_intake fuzz target
        // drives, does.
        let got = match msg::access_submitted(&m.bytes, m.id) {
            Err(e) => Err(e.to_string()),
            Ok(a) => {
                let ticket = Ticket::taken_at(self.clone(), m.id, req_bytes, taken);
                match self.exec.take_archived(a, ticket) {
                    Ok(taken) => Ok(taken.map(Next::Send)),
                    Err(ticket) => match msg::deserialize_submitted(a) {
                        Ok(req) => Ok(Some(Next::Run(req, ticket))),
                        // Validated, so not expected. Answered through the
                        // ticket it already has (its latency is recorded).
                        Err(e) => {
                            ticket.complete(self.malformed(m.id, &e.to_string()));
                            Ok(None)
                        }
                    },
                }
            }
        };
        reasm.recycle(m.bytes);
        match got {
            Ok(None) => {}
            Ok(Some(Next::Send(taken))) => self.exec.send_taken(taken),
            Ok(Some(Next::Run(req, ticket))) => self.run(req, ticket),
            Err(e) => {
                let c = self.malformed(m.id, &e);
                self.complete_req(m.id, &c, req_bytes);
            }
        }
    }

    /// Count and log request `id`, whose message is not a valid request;
    /// its completion.
    fn malformed(&self, id: u64, e: &str) -> Completion {
        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
        debug!(conn = self.id, id, error = %e, "invalid request");
        Completion::Err(ClientError::new(
            ErrorKind::InvalidRequest,
            format!("malformed request: {e}"),
        ))
    }

    /// Submit a decoded request: the fast path, else a task on the slow
    /// path.
    fn run(self: &Arc<Self>, req: Request, ticket: Ticket) {
        let (req, ticket) = match self.exec.try_submit(req, ticket) {
            Ok(()) => return,
            Err(back) => *back,
        };
        let fut = self.exec.execute(req);
        let mut closed = self.closed_tx.subscribe();
        self.rt.spawn(async move {
            tokio::select! {
                c = fut => ticket.complete(c),
                // Dropped with the connection: the ticket writes a Closing
                // completion if the segment is still readable.
                _ = closed.wait_for(|c| *c) => drop(ticket),
            }
        });
    }
}

/// What becomes of a request once its message is freed.
enum Next {
    /// Taken from the archive by the fast path: send it.
    Send(super::Taken),
    /// Decoded: the fast path, else the slow path.
    Run(Request, Ticket),
}

impl Sink for ClientAttachment {
    /// A request's completion (its `token` is the request's bytes counted
    /// against `max_outstanding_bytes`).
    fn complete(&self, id: u64, token: u64, took: std::time::Duration, c: Completion) {
        self.stats.latency.record(took);
        self.complete_req(id, &c, token);
    }

    /// Queue without writing: the caller calls [`Sink::flush`] once after
    /// a batch of completions (one ring publish and at most one wake-up).
    fn complete_deferred(&self, id: u64, token: u64, took: std::time::Duration, c: Completion) {
        self.stats.latency.record(took);
        self.complete_owned(id, c, token);
    }

    fn flush(&self) {
        ClientAttachment::flush(self);
    }
}

/// Scalars of at most this many bytes are encoded under the writer lock.
const QUICK_BYTES: usize = 4 << 10;

/// Whether `c` encodes in about the time of taking the writer lock (a
/// scalar of at most [`QUICK_BYTES`]: nearly every reply), so it is
/// encoded under it instead of taking the lock a second time.
fn quick_to_encode(c: &Completion) -> bool {
    match c {
        Completion::Err(e) => e.message.len() <= QUICK_BYTES,
        Completion::Ok(v) | Completion::Push(v) => match v {
            Value::Nil | Value::Int(_) | Value::Double(_) | Value::Boolean(_) => true,
            Value::Bulk(b) | Value::Simple(b) | Value::Error(b) | Value::BigNumber(b) => {
                b.len() <= QUICK_BYTES
            }
            _ => false,
        },
    }
}

fn doorbell_kick(fd: &Arc<OwnedFd>) {
    vshm_protocol::wake::ring_doorbell(fd.as_raw_fd());
}
