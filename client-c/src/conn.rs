//! What a `vshm_client` handle holds: vshm-client's
//! `::vshm_client::handle::Handle` (the registration, daemon or embedded
//! core, the completion notifier behind `vshm_fd`, the subscriptions;
//! shared with the Python module), plus what only C has: the
//! asynchronous requests in flight and the push callback.
//!
//! **Registrations and fork.** A handle works through one registration at
//! a time, kept by a `::vshm_client::session::Session` (daemon or embedded
//! core; replaced when unusable and in a forked child, see that module).
//! The registration's generation is the `seq` in the ids C sees.
//! Asynchronous requests of a replaced registration complete with
//! `VSHM_ERR_CONNECTION`.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::vshm_client::client::{Reply, QUEUED};
use ::vshm_client::handle::{Handle, HandleError};
use ::vshm_client::session::SessionError;
pub(crate) use ::vshm_client::session::{Conn, Mode};

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

impl From<HandleError> for Error {
    fn from(e: HandleError) -> Error {
        match e {
            HandleError::Closed => Error::new(VSHM_ERR_CLOSING, "the client is being freed"),
            HandleError::Session(s) => s.into(),
            HandleError::Notifier(_) => Error::new(VSHM_ERR_INTERNAL, e.to_string()),
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
    /// The registration the completions came from: `dispatch` corks its
    /// submission ring while the callbacks run.
    pub conn: Option<Conn>,
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

const SEQ_BITS: u32 = 15;
const ID_BITS: u32 = 48;

/// The id C sees: the registration's sequence number and the client's id.
pub(crate) fn c_id(seq: u32, client_id: u64) -> u64 {
    (u64::from(seq & ((1 << SEQ_BITS) - 1)) << ID_BITS)
        | (client_id & !QUEUED & ((1 << ID_BITS) - 1))
}

// ---------------------------------------------------------------------------
// The handle's contents

pub(crate) struct ClientInner {
    /// Session, `vshm_fd` notifier, subscriptions, closed flag, default
    /// timeout: vshm-client's composition, shared with the Python module.
    pub handle: Handle,
    pub pending: Mutex<Pending>,
    /// The push callback and its userdata (pub/sub messages).
    push_cb: Mutex<(PushCallback, usize)>,
}

impl ClientInner {
    pub fn new(mode: Mode, default_timeout: Option<Duration>) -> Result<ClientInner, Error> {
        Ok(ClientInner {
            handle: Handle::open(mode, default_timeout)?,
            pending: Mutex::new(Pending::default()),
            push_cb: Mutex::new((None, 0)),
        })
    }

    /// The usable registration, opening a new one if needed.
    pub fn conn(&self) -> Result<(Conn, u32), Error> {
        Ok(self.handle.conn()?)
    }

    pub fn set_push_callback(&self, cb: PushCallback, userdata: usize) {
        *lock(&self.push_cb) = (cb, userdata);
    }

    pub fn has_push_callback(&self) -> bool {
        lock(&self.push_cb).0.is_some()
    }

    /// The eventfd of `vshm_fd`, created (and the notifier started) on
    /// first use.
    pub fn fd(&self) -> Result<RawFd, Error> {
        Ok(self.handle.fd()?)
    }

    /// Start freeing: refuse new calls, stop the notifier, and return the
    /// asynchronous requests still pending (to complete with CLOSING).
    pub fn close(&self) -> Vec<(u64, Entry)> {
        self.handle.close();
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
        let cur = self.handle.current();
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
        self.handle.deadline().set(p.earliest_deadline());
        drop(p);
        drop(orphans);
        completed += dispatch.len() + pushes.len();
        Collected {
            done: dispatch,
            pushes,
            push_cb,
            push_userdata,
            count: completed,
            conn: cur.map(|c| c.0),
        }
    }

    pub fn pending_count(&self) -> usize {
        lock(&self.pending).entries.len()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // Replies held for `vshm_take` go before the registration (the
        // handle, dropped after this) whose ring they may point into.
        drop(std::mem::take(&mut *lock(&self.pending)));
    }
}
