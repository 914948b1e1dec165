//! What a `NativeClient` holds and how it waits: blocking requests,
//! submitted requests (ids, completions, abandonment), the pub/sub
//! confirmations queue.
//!
//! **Waiting.** Every blocking call releases the GIL and waits in slices
//! of at most 100 ms, checking for signals between slices (so Ctrl-C
//! interrupts it); an interrupted request is abandoned (its late
//! completion is discarded) and the client stays usable. Every wait is
//! bounded by the request's timeout plus the client's transport margin.
//!
//! **Submitted requests** go to the client's queued FIFO
//! (`Client::submit_queued`); `drain`, `wait` and the eventfd notifier
//! take them from there. Their ids, as Python sees them, combine the
//! registration's sequence number and the client's id, so that a request
//! of a replaced registration (daemon restart, forked child) is failed
//! with `ConnectionError` instead of being confused with a new one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use vshm_client::{Reply, QUEUED};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{ArgsRef, ClientError, ErrorKind, Op, Route};

use crate::convert::{self, Decode};
use crate::errors::{client_error, value_error, IntoPy};
use crate::session::{handle_error, lock, Conn, Session};

/// The longest a blocking wait goes without checking for signals.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

const SEQ_BITS: u32 = 15;
const ID_BITS: u32 = 48;

/// The id Python sees: registration sequence number and client id.
pub(crate) fn py_id(seq: u32, client_id: u64) -> u64 {
    (u64::from(seq & ((1 << SEQ_BITS) - 1)) << ID_BITS)
        | (client_id & !QUEUED & ((1 << ID_BITS) - 1))
}

fn seq_of(id: u64) -> u32 {
    (id >> ID_BITS) as u32
}

/// How a submitted request ended.
pub(crate) enum Outcome {
    Reply(Reply),
    Failed(ClientError),
}

pub(crate) struct Entry {
    pub(crate) seq: u32,
    /// When its completion is overdue (request timeout + margin).
    pub(crate) deadline: Instant,
}

#[derive(Default)]
pub(crate) struct Pending {
    /// Submitted, not completed.
    pub(crate) entries: HashMap<u64, Entry>,
    /// Completed, not yet taken by `drain` or `wait`.
    pub(crate) done: VecDeque<(u64, Outcome)>,
    /// Given up (interrupted or overdue): the completion is discarded.
    pub(crate) abandoned: HashSet<u64>,
    /// The registration the entries were last checked against.
    pub(crate) seq_checked: u32,
    /// When the entries' deadlines are checked next.
    pub(crate) next_deadline_check: Option<Instant>,
}

/// Pub/sub confirmations made locally (the core confirms a subscription
/// by completing the request; redis-py users expect messages).
pub(crate) struct Confirmation {
    pub(crate) kind: &'static [u8],
    pub(crate) channel: Option<Vec<u8>>,
    pub(crate) count: i64,
}

pub(crate) struct Inner {
    pub(crate) session: Session,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) confirmations: Mutex<VecDeque<Confirmation>>,
    pub(crate) decode: Decode,
    /// Whether the daemon's servers are a cluster (asked once).
    pub(crate) cluster: OnceLock<bool>,
}

impl Inner {
    pub(crate) fn conn(&self, py: Python<'_>) -> PyResult<(Conn, u32)> {
        // Opening a registration can block (daemon connect, server
        // connect): without the GIL.
        py.allow_threads(|| self.session.conn().map_err(handle_error))
            .py_err(py)
    }

    pub(crate) fn timeout(&self, t: Option<f64>) -> PyResult<Option<Duration>> {
        Ok(convert::timeout(t, "timeout")?.or(self.session.default_timeout()))
    }

    /// Run one request and wait for its completion (blocking).
    pub(crate) fn run(
        &self,
        py: Python<'_>,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
    ) -> PyResult<Reply> {
        let (conn, _) = self.conn(py)?;
        let id = py
            .allow_threads(|| conn.submit_op(op, route, timeout, 0))
            .py_err(py)?;
        let deadline = Instant::now() + conn.wait_bound_for(op, timeout);
        loop {
            let slice = deadline.min(Instant::now() + SLICE);
            match py.allow_threads(|| conn.wait_reply_until(id, slice, false)) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind == ErrorKind::Timeout => {
                    if Instant::now() >= deadline {
                        abandon_sync(&conn, id);
                        return Err(client_error(
                            py,
                            &ClientError::new(
                                ErrorKind::Timeout,
                                "no reply within the request's timeout (the late reply is discarded)",
                            ),
                        ));
                    }
                    if let Err(sig) = py.check_signals() {
                        abandon_sync(&conn, id);
                        return Err(sig);
                    }
                }
                Err(e) => return Err(client_error(py, &e)),
            }
        }
    }

    pub(crate) fn run_value<'py>(
        &self,
        py: Python<'py>,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.run(py, op, route, timeout)?;
        convert::completion(py, &r, &self.decode)
    }

    /// Submit without waiting; the completion goes to `drain`/`wait`.
    pub(crate) fn submit(
        &self,
        py: Python<'_>,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
    ) -> PyResult<u64> {
        let (conn, seq) = self.conn(py)?;
        let mut pid = 0;
        let bound = conn.wait_bound_for(op, timeout);
        let r = py.allow_threads(|| {
            conn.submit_queued(op, route, timeout, 0, &mut |id| {
                pid = py_id(seq, id);
                lock(&self.pending).entries.insert(
                    pid,
                    Entry {
                        seq,
                        deadline: Instant::now() + bound,
                    },
                );
            })
        });
        if let Err(e) = r {
            if pid != 0 {
                lock(&self.pending).entries.remove(&pid);
            }
            return Err(client_error(py, &e));
        }
        Ok(pid)
    }

    /// Take the completions of submitted requests that have arrived
    /// (waiting until `deadline` for one when given), fail those that can
    /// no longer complete, and file them as done.
    pub(crate) fn collect(&self, deadline: Option<Instant>) {
        let cur = self.session.current();
        let mut replies = Vec::new();
        let mut dead = None;
        if let Some((conn, _)) = &cur {
            let r = match deadline {
                Some(d) => conn.wait_events(d, &mut replies, None),
                None => conn.poll_events(&mut replies, None),
            };
            if let Err(e) = r {
                dead = Some(e);
            }
            // Polling only drains the ring: a registration that ended (the
            // daemon died, the core closed the segment) with nothing left
            // in it is noticed here, so that an event loop woken by the
            // notifier fails what can no longer complete.
            if dead.is_none() && replies.is_empty() {
                dead = match conn.segment().state() {
                    state::OPEN => conn.dead(),
                    state::PEER_LOST => Some(ClientError::new(
                        ErrorKind::Connection,
                        "connection to the vshm daemon lost",
                    )),
                    _ => Some(ClientError::new(
                        ErrorKind::Closing,
                        "the core closed this client's segment",
                    )),
                };
            }
        }
        let cur_seq = cur.as_ref().map_or(0, |c| c.1);
        let mut discard = Vec::new();
        let now = Instant::now();
        let mut p = lock(&self.pending);
        for r in replies {
            let id = py_id(cur_seq, r.id());
            if p.entries.remove(&id).is_some() {
                p.done.push_back((id, Outcome::Reply(r)));
            } else {
                p.abandoned.remove(&id);
                discard.push(r);
            }
        }
        let seq_changed = cur_seq != p.seq_checked;
        if seq_changed {
            p.seq_checked = cur_seq;
            p.abandoned.retain(|id| seq_of(*id) == cur_seq);
        }
        let check_deadlines = p.next_deadline_check.is_none_or(|t| now >= t);
        if seq_changed || dead.is_some() || check_deadlines {
            p.next_deadline_check = Some(now + SLICE);
            let failed: Vec<u64> = p
                .entries
                .iter()
                .filter(|(_, e)| e.seq != cur_seq || dead.is_some() || now >= e.deadline)
                .map(|(id, _)| *id)
                .collect();
            for id in failed {
                let e = p.entries.remove(&id).expect("listed above");
                let err = if e.seq != cur_seq {
                    ClientError::new(
                        ErrorKind::Connection,
                        "the registration this request was sent on is gone (daemon restarted, or forked child)",
                    )
                } else if let Some(d) = &dead {
                    d.clone()
                } else {
                    p.abandoned.insert(id);
                    ClientError::new(
                        ErrorKind::Timeout,
                        "no completion within the request's timeout (the late reply is discarded)",
                    )
                };
                p.done.push_back((id, Outcome::Failed(err)));
            }
        }
        drop(p);
        drop(discard);
    }

    /// Give up a submitted request: its completion is discarded.
    pub(crate) fn abandon(&self, id: u64) {
        let mut p = lock(&self.pending);
        if p.entries.remove(&id).is_some() {
            p.abandoned.insert(id);
        } else if let Some(i) = p.done.iter().position(|(d, _)| *d == id) {
            let gone = p.done.remove(i);
            drop(p);
            drop(gone);
        }
    }

    /// Wait for a submitted request.
    pub(crate) fn wait<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        timeout: Option<Duration>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let user_deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let deadline = {
                let mut p = lock(&self.pending);
                if let Some(i) = p.done.iter().position(|(d, _)| *d == id) {
                    let (_, o) = p.done.remove(i).expect("found above");
                    drop(p);
                    return outcome(py, o, &self.decode);
                }
                match p.entries.get(&id) {
                    None => {
                        return Err(value_error(format!(
                            "unknown request id {id} (never submitted, or already taken)"
                        )))
                    }
                    Some(e) => user_deadline.map_or(e.deadline, |u| u.min(e.deadline)),
                }
            };
            if Instant::now() >= deadline {
                self.abandon(id);
                return Err(client_error(
                    py,
                    &ClientError::new(
                        ErrorKind::Timeout,
                        "no completion in time (the late reply is discarded)",
                    ),
                ));
            }
            let slice = deadline.min(Instant::now() + SLICE);
            py.allow_threads(|| self.collect(Some(slice)));
            if let Err(sig) = py.check_signals() {
                self.abandon(id);
                return Err(sig);
            }
        }
    }
}

/// Abandon a blocking request by id: its completion, if it still comes,
/// is discarded by the client end.
fn abandon_sync(conn: &Conn, id: u64) {
    drop(conn.wait_reply_until(id, Instant::now(), true));
}

/// A completion as Python sees it: its value, or its exception.
pub(crate) fn outcome<'py>(py: Python<'py>, o: Outcome, d: &Decode) -> PyResult<Bound<'py, PyAny>> {
    match o {
        Outcome::Reply(r) => convert::completion(py, &r, d),
        Outcome::Failed(e) => Err(client_error(py, &e)),
    }
}
