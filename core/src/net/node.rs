//! One server node: a single pipelined connection, re-established by
//! itself, with every request's state in one FIFO.
//!
//! * **Submit** ([`Node::submit`], any thread, never awaits): under the
//!   node's lock the job is encoded straight into the write buffer and its
//!   slot pushed on the FIFO, then the writer is notified. Many clients'
//!   requests of one drain pass end up in one buffer: one `write` per node
//!   per pass (cross-process pipelining).
//! * **Write** (the node task): takes the whole buffer, writes it, counts
//!   the bytes handed to the kernel.
//! * **Read** (the node task): reads, delimits frames with the resumable
//!   [`Scanner`], decodes, pops one FIFO slot per reply (out-of-band pushes
//!   pop nothing) and completes the slot's job outside the lock.
//! * **Deadlines**: `(deadline, seq)` per request, in submission order
//!   while deadlines do not decrease, in a heap otherwise; an answered
//!   request's entry is dropped as its reply arrives. The timer task sleeps
//!   until the earliest one, and a submit wakes it only for an earlier
//!   deadline than the one it waits for. An expired job
//!   is completed with `Timeout` and its slot stays as a tombstone, so the
//!   late reply is read and discarded and every later reply still meets its
//!   own request. A connection whose oldest reply is overdue by
//!   [`STALL_GRACE`] with nothing read meanwhile is dropped (a dead peer that
//!   sent no RST).
//! * **Loss**: slots whose bytes were all handed to the kernel may have run:
//!   they fail with `Connection`, and so does a pipeline written in part
//!   (the server runs its commands one by one as they arrive). The rest
//!   were never complete on the wire, so the server cannot have run them:
//!   they wait in the backlog and are written first on the next connection
//!   (or re-routed, cluster). The first reconnect attempt starts at once,
//!   later ones back off.
//! * **Dead peers**: TCP keepalive and `TCP_USER_TIMEOUT` on every node
//!   socket (`connect.rs`), besides the stall check above.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use vshm_protocol::sync::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind};

use super::batch::Step;
use super::connect::{self, ConnSettings, ReadHalf, WriteHalf};
use super::job::{frame_completion, Job, Work};
use super::ticket::Sink;
use crate::config::Backoff;
use crate::resp::{self, Frame, Scanner};
use crate::topology::NodeAddr;

/// How long a connection may owe an overdue reply with nothing read before
/// it is considered dead.
pub(crate) const STALL_GRACE: Duration = Duration::from_secs(2);

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Bulk replies at least this large are received straight into their own
/// buffer (`Node::read_bulk`).
const DIRECT_BULK: usize = 256 * 1024;

/// What the node hands back to its owner.
pub(crate) trait Router: Send + Sync + 'static {
    /// Send a job again (after a redirect, a retry wait or a lost
    /// connection), through the current routing.
    fn route(&self, job: Box<Job>);
    /// A command's error reply. Redirects and "try again" errors are taken
    /// over (`None`); anything else is returned to fail the job with it.
    fn on_error(&self, job: Box<Job>, err: &[u8], from: &NodeAddr) -> Option<Box<Job>>;
    /// The node lost its connection (a cluster refreshes its topology).
    fn node_down(&self, addr: &NodeAddr);
}

/// Connection state of a node, for stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connected,
    /// Not connected since then (never connected, or lost).
    Reconnecting {
        since: std::time::SystemTime,
    },
    Closed,
}

/// A node's figures (stats and Prometheus).
#[derive(Debug, Clone)]
pub struct NodeStats {
    pub addr: String,
    pub state: LinkState,
    pub last_error: Option<String>,
    /// Requests submitted to this node.
    pub requests: u64,
    /// `write` calls on its connections.
    pub writes: u64,
    /// Connections established (the first included).
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Connection attempts made, failed or not.
    pub connect_attempts: u64,
    /// When the last attempts (at most [`RECENT_ATTEMPTS`]) started, oldest
    /// first. The gap between two attempts of one outage is the backoff wait.
    pub recent_attempts: Vec<Instant>,
    /// Requests that timed out on this node.
    pub timeouts: u64,
    /// Replies in flight now (tombstones of timed-out requests included).
    pub inflight: usize,
    /// Deadlines the timer holds now. Those of answered requests are
    /// dropped as their replies arrive (from the queues' fronts; one behind
    /// an unanswered earlier deadline waits for it), so this stays close
    /// to the requests awaiting a reply.
    pub deadlines: usize,
}

/// How many attempt times [`NodeStats::recent_attempts`] keeps.
pub const RECENT_ATTEMPTS: usize = 64;

/// One read pass's replies on their way to their jobs (`Node::deliver`).
#[derive(Default)]
struct Delivery {
    frames: Vec<Frame>,
    done: Vec<(Box<Job>, Replies)>,
    sinks: Vec<Arc<dyn Sink>>,
}

/// The replies of one FIFO slot.
enum Replies {
    One(Frame),
    Many(Vec<Frame>),
}

struct Slot {
    job: Option<Box<Job>>,
    /// Replies this slot takes.
    want: u32,
    frames: Vec<Frame>,
    /// Start and end of its bytes in the connection's stream.
    start: u64,
    end: u64,
    deadline: Instant,
}

/// What a connection's loss means for one request on it, from how much of
/// the stream the kernel took (`sent_end`): the server may have run it
/// (fail it: resending could run it twice), or cannot have (send it again
/// on the next connection). A command whose bytes were not all written is
/// incomplete, so it cannot have run; a transaction without its EXEC
/// neither. But a pipeline of several commands written in part may have
/// run the ones written whole.
fn may_have_run(start: u64, end: u64, sent_end: u64, runs_in_parts: bool) -> bool {
    end <= sent_end || (runs_in_parts && start < sent_end)
}

impl State {
    /// Drop the deadlines of answered requests from the queues' fronts.
    /// Left to the timer, they stayed until their deadline passed: a
    /// request timeout's worth of entries (tens of MB at 500k requests/s),
    /// whose pages the allocator gave back and faulted in again.
    fn prune_answered(&mut self) {
        while self.in_order.front().is_some_and(|x| x.1 < self.base) {
            self.in_order.pop_front();
        }
        while self.timers.peek().is_some_and(|Reverse(x)| x.1 < self.base) {
            self.timers.pop();
        }
    }
}

struct State {
    connected: bool,
    wbuf: Vec<u8>,
    /// Bytes appended to the current connection's stream.
    appended: u64,
    fifo: VecDeque<Slot>,
    /// Sequence number of `fifo.front()`.
    base: u64,
    /// Deadlines in submission order while they do not decrease (the
    /// common case: one timeout for everything): O(1) in and out.
    in_order: VecDeque<(Instant, u64)>,
    /// Deadlines earlier than one submitted before them.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When the timer task looks next (set by `expire`; `None`: only when
    /// notified). A submit notifies it only for an earlier deadline: not
    /// once per request of a client that waits for each reply, whose
    /// previous deadline was already dropped.
    timer_at: Option<Instant>,
    /// Jobs waiting for a connection, in order.
    backlog: VecDeque<Box<Job>>,
    last_error: Option<String>,
    down_since: Option<std::time::SystemTime>,
    closed: bool,
    /// Start times of the last connection attempts (stats).
    recent_attempts: VecDeque<Instant>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    writes: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    connect_attempts: AtomicU64,
    timeouts: AtomicU64,
    /// Milliseconds since `epoch` of the last read (stall detection).
    last_read_ms: AtomicU64,
}

/// One node connection. See the module docs.
pub(crate) struct Node {
    addr: NodeAddr,
    st: Mutex<State>,
    writer: Notify,
    timer: Notify,
    /// Ends the current connection (stall or close) when `kill_flag` is set
    /// (a permit left over from an earlier connection only wakes the waiter
    /// to find the flag clear).
    kill: Notify,
    kill_flag: vshm_protocol::sync::AtomicBool,
    closed_signal: Notify,
    counters: Counters,
    settings: Arc<ConnSettings>,
    backoff: Backoff,
    router: Weak<dyn Router>,
    epoch: Instant,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

impl Node {
    /// A node whose task (connect, read, write, deadlines) runs on `rt`
    /// until [`Node::close`].
    pub fn start(
        addr: NodeAddr,
        settings: Arc<ConnSettings>,
        backoff: Backoff,
        router: Weak<dyn Router>,
        rt: &tokio::runtime::Handle,
    ) -> Arc<Node> {
        let node = Arc::new(Node {
            addr,
            st: Mutex::new(State {
                connected: false,
                wbuf: Vec::new(),
                appended: 0,
                fifo: VecDeque::new(),
                base: 0,
                in_order: VecDeque::new(),
                timers: BinaryHeap::new(),
                timer_at: None,
                backlog: VecDeque::new(),
                last_error: None,
                down_since: Some(std::time::SystemTime::now()),
                closed: false,
                recent_attempts: VecDeque::new(),
            }),
            writer: Notify::new(),
            timer: Notify::new(),
            kill: Notify::new(),
            kill_flag: vshm_protocol::sync::AtomicBool::new(false),
            closed_signal: Notify::new(),
            counters: Counters::default(),
            settings,
            backoff,
            router,
            epoch: Instant::now(),
        });
        rt.spawn(node.clone().run());
        node
    }

    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// Known to be unreachable: not connected after a failed attempt or a
    /// lost connection (a new node still connecting is not).
    pub fn is_down(&self) -> bool {
        let st = self.lock();
        !st.connected && st.last_error.is_some()
    }

    /// Replies owed now (tombstones included) plus jobs in the backlog.
    pub fn load(&self) -> usize {
        let st = self.lock();
        st.fifo.len() + st.backlog.len()
    }

    /// Queue a job: encoded and written at once when connected, else kept
    /// for the next connection. Never awaits.
    pub fn submit(&self, job: Box<Job>) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if st.closed {
            drop(st);
            job.fail(
                ErrorKind::Connection,
                format!("{}: connection closed", self.addr),
            );
            return;
        }
        let deadline = job.deadline;
        let earliest = st.timer_at.is_none_or(|t| deadline < t);
        if st.connected {
            let was_empty = st.wbuf.is_empty();
            self.enqueue(&mut st, job);
            drop(st);
            if was_empty {
                self.writer.notify_one();
            }
        } else {
            st.backlog.push_back(job);
            drop(st);
        }
        if earliest {
            self.timer.notify_one();
        }
    }

    /// Encode a job and push its slot (connected, lock held).
    fn enqueue(&self, st: &mut State, job: Box<Job>) {
        let before = st.wbuf.len();
        let want = job.encode(&mut st.wbuf);
        let start = st.appended;
        st.appended += (st.wbuf.len() - before) as u64;
        let seq = st.base + st.fifo.len() as u64;
        let deadline = job.deadline;
        if st.in_order.back().is_none_or(|(t, _)| *t <= deadline) {
            st.in_order.push_back((deadline, seq));
        } else {
            st.timers.push(Reverse((deadline, seq)));
        }
        st.fifo.push_back(Slot {
            job: Some(job),
            want,
            frames: Vec::new(),
            start,
            end: st.appended,
            deadline,
        });
    }

    /// Take the jobs waiting for a connection (to route them elsewhere).
    // Jobs move between nodes and routers as boxes; unboxing here would
    // copy each one out and back in.
    #[allow(clippy::vec_box)]
    pub fn take_backlog(&self) -> Vec<Box<Job>> {
        self.lock().backlog.drain(..).collect()
    }

    /// Stop: the task ends, every job still held fails with `Connection`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.closed_signal.notify_one();
        self.kill_connection();
    }

    fn kill_connection(&self) {
        // Release: pairs with the Acquire swap in `killed`.
        self.kill_flag.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Resolves when `kill_connection` was called for this connection.
    async fn killed(&self) {
        loop {
            self.kill.notified().await;
            // Acquire: pairs with the Release store in `kill_connection`.
            if self.kill_flag.swap(false, Ordering::Acquire) {
                return;
            }
        }
    }

    pub fn stats(&self) -> NodeStats {
        let st = self.lock();
        let c = &self.counters;
        NodeStats {
            addr: self.addr.to_string(),
            state: if st.closed {
                LinkState::Closed
            } else if st.connected {
                LinkState::Connected
            } else {
                LinkState::Reconnecting {
                    since: st.down_since.unwrap_or(std::time::SystemTime::UNIX_EPOCH),
                }
            },
            last_error: st.last_error.clone(),
            requests: c.requests.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            connect_attempts: c.connect_attempts.load(Ordering::Relaxed),
            recent_attempts: st.recent_attempts.iter().copied().collect(),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            inflight: st.fifo.len() + st.backlog.len(),
            deadlines: st.in_order.len() + st.timers.len(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(self: Arc<Self>) {
        tokio::select! {
            _ = self.timer_loop() => {}
            _ = self.conn_loop() => {}
            _ = self.closed_signal.notified() => {}
        }
        // Closed: nothing is sent any more; fail what is held.
        let (slots, backlog) = {
            let mut st = self.lock();
            st.closed = true;
            st.connected = false;
            st.timers.clear();
            st.in_order.clear();
            (
                st.fifo.drain(..).collect::<Vec<_>>(),
                st.backlog.drain(..).collect::<Vec<_>>(),
            )
        };
        let why = format!("{}: connection closed", self.addr);
        for job in slots.into_iter().filter_map(|s| s.job).chain(backlog) {
            job.fail(ErrorKind::Connection, why.clone());
        }
        debug!(node = %self.addr, "node closed");
    }

    /// Connect, serve, and reconnect, until closed.
    async fn conn_loop(&self) {
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
            }
            self.counters
                .connect_attempts
                .fetch_add(1, Ordering::Relaxed);
            {
                let mut st = self.lock();
                if st.recent_attempts.len() == RECENT_ATTEMPTS {
                    st.recent_attempts.pop_front();
                }
                st.recent_attempts.push_back(Instant::now());
            }
            match connect::open(&self.settings, &self.addr).await {
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    debug!(node = %self.addr, error = %e.message, attempt, "connect failed");
                    self.lock().last_error = Some(e.message);
                }
                Ok((r, w)) => {
                    attempt = 0;
                    let reconnected = self.counters.connects.fetch_add(1, Ordering::Relaxed) > 0;
                    if reconnected {
                        info!(node = %self.addr, "reconnected");
                    }
                    let why = self.serve(r, w).await;
                    self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    warn!(node = %self.addr, reason = %why, "connection lost; reconnecting");
                    if let Some(router) = self.router.upgrade() {
                        router.node_down(&self.addr);
                    }
                    // The next attempt starts at once (a killed connection
                    // on a live server); later ones back off.
                }
            }
        }
    }

    /// Run one connection until it fails; returns why.
    async fn serve(&self, mut r: ReadHalf, mut w: WriteHalf) -> String {
        {
            let mut st = self.lock();
            st.connected = true;
            st.down_since = None;
            st.appended = 0;
            st.wbuf.clear();
            let now = Instant::now();
            let mut expired = Vec::new();
            while let Some(job) = st.backlog.pop_front() {
                if job.deadline <= now {
                    expired.push(job);
                } else {
                    self.enqueue(&mut st, job);
                }
            }
            drop(st);
            for job in expired {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                job.timed_out();
            }
        }
        self.counters
            .last_read_ms
            .store(self.now_ms(), Ordering::Relaxed);
        self.writer.notify_one();
        self.timer.notify_one();
        // Bytes handed to the kernel on this connection (only this task's
        // two futures touch it; an atomic only to keep the future `Send`).
        let written = AtomicU64::new(0);
        // Relaxed: clears a request aimed at the previous connection; a
        // `close` racing with this still ends the task (`closed_signal`).
        self.kill_flag.store(false, Ordering::Relaxed);
        let why = tokio::select! {
            e = self.read_loop(&mut r) => e,
            e = self.write_loop(&mut w, &written) => e,
            _ = self.killed() => "no reply within the stall bound (dead peer?) or closed".to_string(),
        };
        // Down: fail what may have run, keep what cannot have.
        let sent_end = written.load(Ordering::Relaxed);
        let mut lost = Vec::new();
        {
            let mut st = self.lock();
            st.connected = false;
            st.down_since = Some(std::time::SystemTime::now());
            st.last_error = Some(why.clone());
            st.wbuf.clear();
            st.timers.clear();
            st.in_order.clear();
            let slots: Vec<Slot> = st.fifo.drain(..).collect();
            st.base += slots.len() as u64;
            let mut unsent = Vec::new();
            for s in slots {
                let Some(mut job) = s.job else { continue };
                if may_have_run(s.start, s.end, sent_end, job.runs_in_parts()) {
                    lost.push(job);
                } else {
                    job.asking = false;
                    unsent.push(job);
                }
            }
            for job in unsent.into_iter().rev() {
                st.backlog.push_front(job);
            }
            // Backlog deadlines are watched by the timer from now on.
        }
        self.timer.notify_one();
        let msg = format!(
            "{}: connection lost ({why}); the command may or may not have run",
            self.addr
        );
        for job in lost {
            job.fail(ErrorKind::Connection, msg.clone());
        }
        why
    }

    async fn write_loop(&self, w: &mut WriteHalf, written: &AtomicU64) -> String {
        let mut buf = Vec::new();
        loop {
            let took = {
                let mut st = self.lock();
                std::mem::swap(&mut st.wbuf, &mut buf);
                !buf.is_empty()
            };
            if !took {
                // `notify_one` keeps a permit: a submit between the check
                // and this await is not missed.
                self.writer.notified().await;
                continue;
            }
            let mut off = 0;
            while off < buf.len() {
                match w.write(&buf[off..]).await {
                    Ok(0) => return "write returned 0".into(),
                    Ok(n) => {
                        off += n;
                        written.fetch_add(n as u64, Ordering::Relaxed);
                        self.counters.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return format!("write: {e}"),
                }
            }
            if let Err(e) = w.flush().await {
                return format!("write: {e}");
            }
            buf.clear();
            if buf.capacity() > 4 << 20 {
                buf = Vec::new();
            }
        }
    }

    async fn read_loop(&self, r: &mut ReadHalf) -> String {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut start = 0usize;
        let mut scanner = Scanner::new();
        let limit = self.settings.max_reply;
        scanner.set_limit(limit);
        // The reply batch and its scratch, kept across passes (no
        // allocation per pass).
        let mut d = Delivery::default();
        loop {
            loop {
                match scanner.scan(&buf[start..]) {
                    Ok(Some(n)) => {
                        match scanner.oversized() {
                            None => match resp::decode(&buf[start..start + n]) {
                                Ok(f) => d.frames.push(f),
                                Err(e) => return format!("bad reply: {e}"),
                            },
                            Some(o) if o.push => {
                                debug!(node = %self.addr, bytes = o.bytes, "a push larger than max_reply_bytes was dropped");
                            }
                            Some(o) => d.frames.push(Frame::TooLarge {
                                bytes: o.bytes,
                                limit,
                            }),
                        }
                        start += n;
                    }
                    Ok(None) => {
                        // Over the limit: drop what the scanner no longer
                        // needs, so the buffer stays small however large
                        // the reply.
                        while scanner.over_limit() {
                            match scanner.discard(&buf[start..]) {
                                Ok(r) if r.is_empty() => break,
                                Ok(r) => drop(buf.drain(start + r.start..start + r.end)),
                                Err(e) => return format!("bad reply: {e}"),
                            }
                        }
                        break;
                    }
                    Err(e) => return format!("bad reply: {e}"),
                }
            }
            if !d.frames.is_empty() {
                if let Err(e) = self.deliver(&mut d) {
                    return e;
                }
            }
            // A large bulk reply whose header has arrived: receive its
            // payload straight into the value's own buffer (no copy out of
            // the read buffer, no read buffer grown to its size).
            if let Some((hdr, len)) = resp::bulk_head(&buf[start..])
                .filter(|x| x.1 >= DIRECT_BULK && !scanner.over_limit())
            {
                let v = match self.read_bulk(r, &buf[start + hdr..], len).await {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                buf.clear();
                start = 0;
                scanner.reset();
                d.frames
                    .push(Frame::Value(vshm_protocol::msg::Value::Bulk(v)));
                if let Err(e) = self.deliver(&mut d) {
                    return e;
                }
                continue;
            }
            if start == buf.len() {
                buf.clear();
                start = 0;
            } else if start > 0 && (start >= buf.len() / 2 || buf.capacity() - buf.len() < 4096) {
                buf.drain(..start);
                start = 0;
            }
            let pending = buf.len() - start;
            let want = if scanner.over_limit() {
                READ_CHUNK
            } else {
                scanner.need().saturating_sub(pending).max(READ_CHUNK)
            };
            if buf.capacity() - buf.len() < want / 2 {
                buf.reserve(want);
            }
            match r.read_buf(&mut buf).await {
                Ok(0) => return "closed by the server".into(),
                Ok(_) => self
                    .counters
                    .last_read_ms
                    .store(self.now_ms(), Ordering::Relaxed),
                Err(e) => return format!("read: {e}"),
            }
            if buf.capacity() > 8 * READ_CHUNK && buf.len() - start < READ_CHUNK && start == 0 {
                // A big reply passed: give the memory back.
                buf.shrink_to(READ_CHUNK.max(buf.len()));
            }
        }
    }

    /// The rest of a bulk string of `len` payload bytes whose first bytes
    /// (`have`, fewer than `len + 2`: the frame is incomplete) were read.
    async fn read_bulk(
        &self,
        r: &mut ReadHalf,
        have: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, String> {
        let total = len + 2;
        debug_assert!(have.len() < total);
        let mut v = Vec::with_capacity(total);
        v.extend_from_slice(have);
        while v.len() < total {
            let want = (total - v.len()) as u64;
            match (&mut *r).take(want).read_buf(&mut v).await {
                Ok(0) => return Err("closed by the server".into()),
                Ok(_) => self
                    .counters
                    .last_read_ms
                    .store(self.now_ms(), Ordering::Relaxed),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        if v[len..] != *b"\r\n" {
            return Err("bad reply: a bulk string not followed by CRLF".into());
        }
        v.truncate(len);
        Ok(v)
    }

    /// Match replies to slots and complete their jobs.
    fn deliver(&self, d: &mut Delivery) -> Result<(), String> {
        let Delivery {
            frames,
            done,
            sinks,
        } = d;
        {
            let mut st = self.lock();
            for f in frames.drain(..) {
                if matches!(f, Frame::Push(_)) {
                    // Out of band (client tracking, ...): not a reply.
                    continue;
                }
                let Some(slot) = st.fifo.front_mut() else {
                    return Err("a reply arrived with no request waiting".into());
                };
                if slot.want == 1 {
                    // The common case: one reply, no collecting.
                    let slot = st.fifo.pop_front().expect("front exists");
                    st.base += 1;
                    if let Some(job) = slot.job {
                        done.push((job, Replies::One(f)));
                    }
                    continue;
                }
                slot.frames.push(f);
                if slot.frames.len() as u32 >= slot.want {
                    let slot = st.fifo.pop_front().expect("front exists");
                    st.base += 1;
                    if let Some(job) = slot.job {
                        done.push((job, Replies::Many(slot.frames)));
                    }
                }
            }
            st.prune_answered();
        }
        // Each client's ring is published (and its reader woken) once per
        // pass, not once per reply.
        // One clock reading for the pass (the latency of each completion).
        let now = std::time::Instant::now();
        for (job, frames) in done.drain(..) {
            if let Some(s) = self.finish(job, frames, now) {
                if !sinks.iter().any(|x| Arc::ptr_eq(x, &s)) {
                    sinks.push(s);
                }
            }
        }
        for s in sinks.drain(..) {
            s.flush();
        }
        Ok(())
    }

    /// Complete a job from its replies (or hand it back to the router);
    /// returns the sink to flush.
    fn finish(
        &self,
        mut job: Box<Job>,
        replies: Replies,
        now: std::time::Instant,
    ) -> Option<Arc<dyn Sink>> {
        let err = if let Work::Batch(b) = &mut job.work {
            let frames = match replies {
                Replies::One(f) => vec![f],
                Replies::Many(v) => v,
            };
            match b.absorb(frames, job.asking) {
                Step::Done(c) => return job.ticket.complete_deferred(c, now),
                Step::Again(err) => {
                    job.asking = false;
                    err
                }
            }
        } else {
            let last = match replies {
                Replies::One(f) => f,
                // With ASKING first: its reply, then the command's.
                Replies::Many(mut v) => v.pop()?,
            };
            job.asking = false;
            match last {
                Frame::Error(e) => e,
                f => return job.ticket.complete_deferred(frame_completion(f), now),
            }
        };
        let back = match self.router.upgrade() {
            Some(router) => router.on_error(job, &err, &self.addr),
            None => Some(job),
        };
        let job = back?;
        let c = match &job.work {
            // A batch comes back only when its retries are spent.
            Work::Batch(_) => Completion::Err(ClientError::new(
                ErrorKind::Connection,
                String::from_utf8_lossy(&err).into_owned(),
            )),
            Work::Command(_) => frame_completion(Frame::Error(err)),
        };
        job.ticket.complete_deferred(c, now)
    }

    /// Deadlines of slots and backlog jobs, and stall detection.
    async fn timer_loop(&self) {
        loop {
            let next = self.expire();
            match next {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = self.timer.notified() => {}
                    }
                }
                None => self.timer.notified().await,
            }
        }
    }

    /// Fail expired jobs; returns when to look again.
    fn expire(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        let mut stalled = false;
        {
            let mut st = self.lock();
            loop {
                // The earlier of the two queues' fronts.
                let a = st.in_order.front().copied();
                let b = st.timers.peek().map(|Reverse(x)| *x);
                let from_heap = match (a, b) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some(x), Some(y)) => y.0 < x.0,
                };
                let (t, seq) = if from_heap {
                    b.expect("some")
                } else {
                    a.expect("some")
                };
                if seq >= st.base && t > now {
                    next = Some(t);
                    break;
                }
                if from_heap {
                    st.timers.pop();
                } else {
                    st.in_order.pop_front();
                }
                if seq < st.base {
                    // Answered already.
                    continue;
                }
                let idx = (seq - st.base) as usize;
                if let Some(job) = st.fifo.get_mut(idx).and_then(|s| s.job.take()) {
                    expired.push(job);
                }
            }
            if !st.backlog.is_empty() {
                let mut keep = VecDeque::with_capacity(st.backlog.len());
                for job in st.backlog.drain(..) {
                    if job.deadline <= now {
                        expired.push(job);
                    } else {
                        next = Some(next.map_or(job.deadline, |n| n.min(job.deadline)));
                        keep.push_back(job);
                    }
                }
                st.backlog = keep;
            }
            // Stall: the oldest reply is overdue by the grace with nothing
            // read meanwhile.
            if st.connected {
                if let Some(front) = st.fifo.front() {
                    let overdue_at = front.deadline + STALL_GRACE;
                    let last_read = self.epoch
                        + Duration::from_millis(self.counters.last_read_ms.load(Ordering::Relaxed));
                    if overdue_at <= now && last_read + STALL_GRACE <= now {
                        stalled = true;
                    } else {
                        let check = overdue_at.max(last_read + STALL_GRACE);
                        next = Some(next.map_or(check, |n| n.min(check)));
                    }
                }
            }
            st.timer_at = next;
        }
        if stalled {
            self.kill_connection();
        }
        let not_connected = !self.is_connected();
        let last_error = self.lock().last_error.clone();
        for job in expired {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            if not_connected {
                let msg = format!(
                    "not connected to {}: reconnecting (last error: {})",
                    self.addr,
                    last_error.as_deref().unwrap_or("none yet")
                );
                job.fail(ErrorKind::Connection, msg);
            } else {
                job.timed_out();
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::may_have_run;

    #[test]
    fn what_a_lost_connection_may_have_run() {
        // Written whole: may have run, whatever it is.
        assert!(may_have_run(0, 10, 10, false));
        assert!(may_have_run(0, 10, 20, true));
        // Not written at all: cannot have run.
        assert!(!may_have_run(10, 20, 10, false));
        assert!(!may_have_run(10, 20, 10, true));
        // Written in part: a command or a transaction cannot have run...
        assert!(!may_have_run(10, 20, 15, false));
        // ...but a pipeline may have run the commands written whole.
        assert!(may_have_run(10, 20, 15, true));
    }
}
