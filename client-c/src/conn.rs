//! What a `vshm_client` handle holds: the way to (re)open its
//! registration (daemon or embedded core), the current registration, the
//! asynchronous requests in flight, and the completion notifier behind
//! `vshm_fd`.
//!
//! **Registrations and fork.** A handle works through one registration at
//! a time, kept by a `::vshm_client::session::Session` (daemon or embedded
//! core; replaced when unusable and in a forked child, see that module).
//! The registration's generation is the `seq` in the ids C sees.
//! Asynchronous requests of a replaced registration complete with
//! `VSHM_ERR_CONNECTION`.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::vshm_client::client::{Reply, QUEUED};
use ::vshm_client::daemon::fork_generation;
use ::vshm_client::session::{park, Session, SessionError};
pub(crate) use ::vshm_client::session::{Conn, Mode};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{Op, Route, SubKind};
use vshm_protocol::ring::PublishWatch;
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, ParkAtOnce, Side};

use crate::error::{
    Error, VSHM_ERR_CLOSING, VSHM_ERR_CONNECTION, VSHM_ERR_INTERNAL, VSHM_ERR_TIMEOUT,
};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl From<SessionError> for Error {
    fn from(e: SessionError) -> Error {
        match e {
            SessionError::CoreStart(_) => Error::new(VSHM_ERR_INTERNAL, e.to_string()),
            SessionError::Client(c) => c.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Asynchronous requests

/// C callback type, see `vshm_callback` in lib.rs.
pub(crate) type Callback = Option<
    unsafe extern "C" fn(
        *mut crate::vshm_client,
        u64,
        crate::vshm_status,
        *mut crate::vshm_reply,
        *mut libc::c_void,
    ),
>;

/// C push (pub/sub message) callback type, see `vshm_push_callback`.
pub(crate) type PushCallback = Option<
    unsafe extern "C" fn(*mut crate::vshm_client, *mut crate::vshm_reply, *mut libc::c_void),
>;

/// What `collect` found: completions to dispatch, pushes for the push
/// callback, and how many events that makes.
pub(crate) struct Collected {
    pub done: Vec<(u64, Entry, Outcome)>,
    pub pushes: Vec<Reply>,
    pub push_cb: PushCallback,
    pub push_userdata: usize,
    pub count: usize,
}

pub(crate) struct Entry {
    pub cb: Callback,
    pub userdata: usize,
    pub seq: u32,
    /// When the request's bound (plus the transport margin) has passed:
    /// `collect` then completes it with a timeout itself, which needs no
    /// completion-ring space (the ring may be full of replies the program
    /// holds). Its real completion, if it still comes, is discarded.
    pub deadline: Instant,
}

/// The outcome of an asynchronous request.
pub(crate) enum Outcome {
    Reply(Reply),
    Failed(Error),
}

#[derive(Default)]
pub(crate) struct Pending {
    /// Submitted, not yet completed.
    pub entries: HashMap<u64, Entry>,
    /// Completed requests submitted without a callback, for `vshm_take`.
    pub taken: HashMap<u64, Outcome>,
    /// The registration the entries were last checked against.
    pub seq_checked: u32,
}

impl Pending {
    /// The earliest deadline of a pending request.
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.deadline).min()
    }
}

/// The earliest deadline of a pending asynchronous request, for the
/// notifier: it makes the `vshm_fd` descriptor readable when the deadline
/// passes, so that an event loop calls `vshm_poll`, which completes the
/// overdue request (a pinned completion ring publishes nothing that would
/// wake it otherwise). Nanoseconds since `base`; 0: none.
pub(crate) struct NextDeadline {
    base: Instant,
    at: AtomicU64,
}

impl NextDeadline {
    fn new() -> NextDeadline {
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
    fn passed(&self) -> Option<u64> {
        // Relaxed: as in `set`.
        let at = self.at.load(Ordering::Relaxed);
        (at != 0 && self.nanos(Instant::now()) >= at).then_some(at)
    }
}

const SEQ_BITS: u32 = 15;
const ID_BITS: u32 = 48;

/// The id C sees: the registration's sequence number and the client's id.
pub(crate) fn c_id(seq: u32, client_id: u64) -> u64 {
    (u64::from(seq & ((1 << SEQ_BITS) - 1)) << ID_BITS)
        | (client_id & !QUEUED & ((1 << ID_BITS) - 1))
}

// ---------------------------------------------------------------------------
// The completion notifier (vshm_fd)

/// A thread that parks on the completion ring's futex and signals the
/// handle's eventfd whenever the core publishes completions (or the
/// segment stops being open).
struct Notifier {
    stop: Arc<AtomicBool>,
    seg: Arc<Segment>,
    thread: Option<JoinHandle<()>>,
    fork_gen: u64,
    seq: u32,
}

impl Notifier {
    fn start(
        seg: Arc<Segment>,
        efd: RawFd,
        seq: u32,
        next: Arc<NextDeadline>,
    ) -> Result<Notifier, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let seg = seg.clone();
            std::thread::Builder::new()
                .name("vshm-notify".into())
                .spawn(move || notify_loop(&seg, efd, &stop, &next))
                .map_err(|e| {
                    Error::new(
                        VSHM_ERR_INTERNAL,
                        format!("cannot start the notifier thread: {e}"),
                    )
                })?
        };
        Ok(Notifier {
            stop,
            seg,
            thread: Some(thread),
            fork_gen: fork_generation(),
            seq,
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
    /// The handle is being freed.
    Stop,
    /// A pending request's deadline passed (nanoseconds, see `NextDeadline`).
    Deadline(u64),
}

/// Ring the handle's eventfd whenever the core publishes completions, until
/// the segment stops being open or the handle stops the notifier. Waits
/// with the protocol's sleep loop (`wake::wait`), parking at most 100 ms at
/// a time; `PublishWatch` is the protocol's "completions published?" check.
/// Also rings it once when a pending request's deadline passes (a pinned
/// completion ring publishes nothing; `vshm_poll` then times it out).
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
            Notify::Published => vshm_protocol::wake::ring_doorbell(efd),
            Notify::Closed => {
                vshm_protocol::wake::ring_doorbell(efd);
                return;
            }
            Notify::Stop => return,
            Notify::Deadline(at) => {
                signaled.set(at);
                vshm_protocol::wake::ring_doorbell(efd);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The handle's contents

pub(crate) struct ClientInner {
    session: Session,
    pub pending: Mutex<Pending>,
    closed: AtomicBool,
    /// Per-request timeout when the caller passes none (None: the core's).
    pub default_timeout: Option<Duration>,
    efd: Mutex<Option<OwnedFd>>,
    notifier: Mutex<Option<Notifier>>,
    /// The earliest deadline of the pending requests (for the notifier).
    pub next_deadline: Arc<NextDeadline>,
    /// The push callback and its userdata (pub/sub messages).
    push_cb: Mutex<(PushCallback, usize)>,
    /// Subscriptions made through this handle (kind, channel), replayed
    /// on a new registration (daemon restart, forked child).
    subs: Mutex<BTreeSet<(u8, Vec<u8>)>>,
}

impl ClientInner {
    pub fn new(mode: Mode, default_timeout: Option<Duration>) -> Result<ClientInner, Error> {
        let inner = ClientInner {
            session: Session::new(mode),
            pending: Mutex::new(Pending::default()),
            closed: AtomicBool::new(false),
            default_timeout,
            efd: Mutex::new(None),
            notifier: Mutex::new(None),
            next_deadline: Arc::new(NextDeadline::new()),
            push_cb: Mutex::new((None, 0)),
            subs: Mutex::new(BTreeSet::new()),
        };
        // Open eagerly so that a bad address or a missing daemon is
        // reported by the open call.
        inner.conn()?;
        Ok(inner)
    }

    pub fn is_embedded(&self) -> bool {
        self.session.is_embedded()
    }

    fn check_open(&self) -> Result<(), Error> {
        // Acquire: pairs with the Release store in `ClientInner::close`.
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(VSHM_ERR_CLOSING, "the client is being freed"));
        }
        Ok(())
    }

    /// The usable registration, opening a new one if needed.
    pub fn conn(&self) -> Result<(Conn, u32), Error> {
        self.check_open()?;
        let reg = self.session.get()?;
        if reg.opened {
            self.restart_notifier(&reg.conn, reg.generation)?;
            self.replay_subscriptions(&reg.conn);
        }
        Ok((reg.conn, reg.generation))
    }

    /// Subscribe a new registration to what the handle was subscribed to.
    /// Best effort: failures show as missing messages, like a subscription
    /// lost by the server (pub/sub delivery is at most once).
    fn replay_subscriptions(&self, conn: &Conn) {
        let subs = lock(&self.subs).clone();
        for kind in [SubKind::Exact, SubKind::Pattern, SubKind::Sharded] {
            let channels: Vec<Vec<u8>> = subs
                .iter()
                .filter(|(k, _)| *k == kind as u8)
                .map(|(_, c)| c.clone())
                .collect();
            if channels.is_empty() {
                continue;
            }
            let op = Op::Subscribe { kind, channels };
            if let Ok(id) = conn.submit_op(&op, &Route::Auto, self.default_timeout, 0) {
                let deadline = Instant::now() + conn.wait_bound(self.default_timeout);
                drop(conn.wait_reply_until(id, deadline, true));
            }
        }
    }

    /// Record a subscription change made through this handle.
    pub fn note_subscriptions(&self, kind: SubKind, subscribe: bool, channels: &[Vec<u8>]) {
        let mut subs = lock(&self.subs);
        let k = kind as u8;
        if subscribe {
            subs.extend(channels.iter().map(|c| (k, c.clone())));
        } else if channels.is_empty() {
            subs.retain(|(sk, _)| *sk != k);
        } else {
            for c in channels {
                subs.remove(&(k, c.clone()));
            }
        }
    }

    pub fn set_push_callback(&self, cb: PushCallback, userdata: usize) {
        *lock(&self.push_cb) = (cb, userdata);
    }

    pub fn has_push_callback(&self) -> bool {
        lock(&self.push_cb).0.is_some()
    }

    /// The current registration without opening one: None when there is
    /// none or it belongs to the parent of this forked process.
    pub fn current(&self) -> Option<(Conn, u32)> {
        self.session.current()
    }

    /// The eventfd of `vshm_fd`, created (and the notifier started) on
    /// first use.
    pub fn fd(&self) -> Result<RawFd, Error> {
        let (conn, seq) = self.conn()?;
        let mut efd = lock(&self.efd);
        if efd.is_none() {
            // SAFETY: plain system call; the descriptor is owned below.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(Error::new(
                    VSHM_ERR_INTERNAL,
                    format!("eventfd: {}", std::io::Error::last_os_error()),
                ));
            }
            // SAFETY: fd is a fresh descriptor nothing else owns.
            *efd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let raw = efd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        drop(efd);
        self.restart_notifier(&conn, seq)?;
        Ok(raw)
    }

    fn restart_notifier(&self, conn: &Conn, seq: u32) -> Result<(), Error> {
        let efd = lock(&self.efd).as_ref().map(|f| f.as_raw_fd());
        let Some(efd) = efd else { return Ok(()) };
        let mut n = lock(&self.notifier);
        if let Some(cur) = n.as_ref() {
            if cur.seq == seq && cur.fork_gen == fork_generation() {
                return Ok(());
            }
        }
        drop(n.take());
        *n = Some(Notifier::start(
            conn.segment().clone(),
            efd,
            seq,
            self.next_deadline.clone(),
        )?);
        Ok(())
    }

    /// Reset the eventfd (before draining completions).
    pub fn clear_fd(&self) {
        if let Some(fd) = lock(&self.efd).as_ref() {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from our own
            // non-blocking eventfd; EAGAIN when already zero.
            unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// Start freeing: refuse new calls, stop the notifier, and return the
    /// asynchronous requests still pending (to complete with CLOSING).
    pub fn close(&self) -> Vec<(u64, Entry)> {
        // Release: pairs with the Acquire load in `check_open`.
        self.closed.store(true, Ordering::Release);
        drop(lock(&self.notifier).take());
        let mut p = lock(&self.pending);
        let taken = std::mem::take(&mut p.taken);
        let entries: Vec<(u64, Entry)> = p.entries.drain().collect();
        drop(p);
        drop(taken);
        entries
    }

    /// Move completed asynchronous requests out: those with a callback are
    /// returned for dispatch, the others are kept for `vshm_take`.
    /// Requests of registrations that are gone are failed. With a push
    /// callback set, push messages are taken too. With a `deadline`,
    /// blocks until at least one event or the deadline.
    pub fn collect(&self, deadline: Option<Instant>) -> Collected {
        let cur = self.current();
        let (push_cb, push_userdata) = *lock(&self.push_cb);
        let mut replies = Vec::new();
        let mut pushes = Vec::new();
        let mut dead = None;
        if let Some((conn, _)) = &cur {
            // Wake up for the earliest deadline of a pending request too.
            let (has_pending, earliest) = {
                let p = lock(&self.pending);
                (!p.entries.is_empty(), p.earliest_deadline())
            };
            let want_pushes = push_cb.is_some().then_some(&mut pushes);
            let r = match deadline {
                Some(d) if has_pending || want_pushes.is_some() => {
                    let d = earliest.map_or(d, |e| e.min(d));
                    conn.wait_events(d, &mut replies, want_pushes)
                }
                _ => conn.poll_events(&mut replies, want_pushes),
            };
            if let Err(e) = r {
                dead = Some(Error::from(e));
            }
        }
        let cur_seq = cur.as_ref().map(|c| c.1);
        let mut dispatch = Vec::new();
        let mut completed = 0usize;
        let mut orphans = Vec::new();
        let mut p = lock(&self.pending);
        for r in replies {
            let id = c_id(cur_seq.unwrap_or(0), r.id());
            match p.entries.remove(&id) {
                Some(e) if e.cb.is_some() => dispatch.push((id, e, Outcome::Reply(r))),
                Some(_) => {
                    p.taken.insert(id, Outcome::Reply(r));
                    completed += 1;
                }
                None => orphans.push(r),
            }
        }
        // Complete overdue requests with a timeout. Normally the core's own
        // timeout completion arrives first (the deadline includes the
        // transport margin); it cannot when the completion ring is full of
        // replies the program still holds, or when the core is stuck.
        let now = Instant::now();
        let overdue: Vec<u64> = p
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            let e = p.entries.remove(&id).expect("listed above");
            let err = Error::new(
                VSHM_ERR_TIMEOUT,
                "no completion within the request's bound (timeout plus transport margin): the core did not answer in time, or the completion ring is full of replies this program still holds (free them, or vshm_reply_detach the ones kept)",
            );
            if e.cb.is_some() {
                dispatch.push((id, e, Outcome::Failed(err)));
            } else {
                p.taken.insert(id, Outcome::Failed(err));
                completed += 1;
            }
        }
        // Fail what can no longer complete: requests of a replaced (or
        // parent's) registration, and all of them when the current one died.
        let check_stale = cur_seq != Some(p.seq_checked);
        if check_stale || dead.is_some() {
            p.seq_checked = cur_seq.unwrap_or(0);
            let failed: Vec<u64> = p
                .entries
                .iter()
                .filter(|(_, e)| Some(e.seq) != cur_seq || dead.is_some())
                .map(|(id, _)| *id)
                .collect();
            for id in failed {
                let e = p.entries.remove(&id).expect("listed above");
                let err = match (&dead, Some(e.seq) == cur_seq) {
                    (Some(d), true) => d.clone(),
                    _ => Error::new(
                        VSHM_ERR_CONNECTION,
                        "the registration this request was sent on is gone (daemon restarted, or forked child)",
                    ),
                };
                if e.cb.is_some() {
                    dispatch.push((id, e, Outcome::Failed(err)));
                } else {
                    p.taken.insert(id, Outcome::Failed(err));
                    completed += 1;
                }
            }
        }
        self.next_deadline.set(p.earliest_deadline());
        drop(p);
        drop(orphans);
        completed += dispatch.len() + pushes.len();
        Collected {
            done: dispatch,
            pushes,
            push_cb,
            push_userdata,
            count: completed,
        }
    }

    pub fn pending_count(&self) -> usize {
        lock(&self.pending).entries.len()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // Notifier before the registration (it holds its segment).
        drop(lock(&self.notifier).take());
        drop(std::mem::take(&mut *lock(&self.pending)));
        self.session.close();
    }
}
