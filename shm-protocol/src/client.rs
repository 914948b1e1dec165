//! The client end of a segment: thread-safe submission and completion
//! matching, with bounded waits everywhere.
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
//! them through a condition variable. When the leader's own completion
//! arrives it hands leadership to the next waiter. Every wait has a
//! deadline; a completion whose waiter gave up is discarded on arrival.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::endpoint::{Dir, EndpointError, PeerWake, Receiver, Sender, WaitStrategy};
use crate::layout::state;
use crate::msg::{
    self, ArgRef, ArgsRef, ClientError, Completion, ErrorKind, Op, Request, Route, Value,
};
use crate::ring::kind;
use crate::segment::Segment;

/// Client-side options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Used when a call passes no timeout; the core applies the same.
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
            strategy: WaitStrategy::DEFAULT,
        }
    }
}

struct CqShared {
    recv: Option<Receiver>,
    ready: HashMap<u64, Completion>,
    abandoned: HashSet<u64>,
    pushes: std::collections::VecDeque<Value>,
    dead: Option<ClientError>,
}

/// A client attached to one segment.
pub struct Client {
    seg: Arc<Segment>,
    sq: Mutex<Sender>,
    cq: Mutex<CqShared>,
    cv: Condvar,
    next_id: AtomicU64,
    opts: ClientOptions,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn conn_err(e: &EndpointError) -> ClientError {
    match e {
        EndpointError::Closed => ClientError::new(ErrorKind::Closing, "the core closed this client's segment"),
        EndpointError::Timeout => ClientError::new(ErrorKind::Timeout, "timed out waiting for the core"),
        EndpointError::Protocol(f) => ClientError::new(ErrorKind::Connection, format!("protocol error: {}", f.error)),
    }
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
        sender.strategy = opts.strategy;
        let mut recv = Receiver::new(seg.clone(), Dir::Cq, peer);
        recv.strategy = opts.strategy;
        Client {
            seg,
            sq: Mutex::new(sender),
            cq: Mutex::new(CqShared {
                recv: Some(recv),
                ready: HashMap::new(),
                abandoned: HashSet::new(),
                pushes: Default::default(),
                dead: None,
            }),
            cv: Condvar::new(),
            next_id: AtomicU64::new(1),
            opts,
        }
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn timeout_of(&self, timeout: Option<Duration>) -> Duration {
        timeout.unwrap_or(self.opts.request_timeout)
    }

    /// Submit a request without waiting for its completion. Returns its id.
    pub fn submit_op(
        &self,
        op: &Op<ArgsRef<'_>>,
        route: &Route,
        timeout: Option<Duration>,
        flags: u32,
    ) -> Result<u64, ClientError> {
        if self.seg.state() != state::OPEN {
            return Err(ClientError::new(ErrorKind::Closing, "segment is closed"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let t = self.timeout_of(timeout);
        let req = Request {
            id,
            timeout_ms: t.as_millis().min(u32::MAX as u128) as u32,
            flags,
            route: route.clone(),
            op: op.clone(),
        };
        let bound = op_size_bound(op, route);
        let deadline = Instant::now() + t;
        let r = lock(&self.sq).send_with(id, kind::MSG, bound, deadline, |buf| {
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
    pub fn submit(&self, args: &[&[u8]], route: &Route, timeout: Option<Duration>) -> Result<u64, ClientError> {
        let refs: Vec<ArgRef<'_>> = args.iter().map(|a| ArgRef(a)).collect();
        self.submit_op(&Op::Command { args: ArgsRef(&refs) }, route, timeout, 0)
    }

    /// Run one command and wait for its reply.
    pub fn call(&self, args: &[&[u8]]) -> Result<Value, ClientError> {
        self.call_routed(args, &Route::Auto, None)
    }

    /// Run one command with a route and timeout.
    pub fn call_routed(&self, args: &[&[u8]], route: &Route, timeout: Option<Duration>) -> Result<Value, ClientError> {
        let id = self.submit(args, route, timeout)?;
        into_result(self.wait(id, timeout)?)
    }

    /// Wait for the completion of `id` (submitted with `timeout`).
    pub fn wait(&self, id: u64, timeout: Option<Duration>) -> Result<Completion, ClientError> {
        let deadline = Instant::now() + self.timeout_of(timeout) + self.opts.transport_margin;
        self.wait_until(id, deadline)
    }

    /// Wait for `id` until `deadline`. On timeout the id is abandoned: its
    /// completion, if it still comes, is discarded.
    pub fn wait_until(&self, id: u64, deadline: Instant) -> Result<Completion, ClientError> {
        let mut g = lock(&self.cq);
        loop {
            if let Some(c) = g.ready.remove(&id) {
                return Ok(c);
            }
            if let Some(e) = &g.dead {
                return Err(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                g.abandoned.insert(id);
                return Err(ClientError::new(ErrorKind::Timeout, "no completion from the core in time"));
            }
            if let Some(mut recv) = g.recv.take() {
                drop(g);
                let r = self.lead(&mut recv, id, deadline);
                g = lock(&self.cq);
                g.recv = Some(recv);
                self.cv.notify_all();
                match r {
                    Ok(Some(c)) => return Ok(c),
                    Ok(None) => continue,
                    Err(e) => {
                        if !matches!(e, EndpointError::Timeout) {
                            g.dead = Some(conn_err(&e));
                        }
                        continue;
                    }
                }
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// As leader: receive until `id` completes or the deadline passes.
    fn lead(&self, recv: &mut Receiver, id: u64, deadline: Instant) -> Result<Option<Completion>, EndpointError> {
        loop {
            let m = recv.recv(deadline)?;
            let c = match msg::decode_completion(&m.bytes) {
                Ok(c) => c,
                Err(e) => Completion::Err(ClientError::new(ErrorKind::Connection, format!("undecodable completion: {e}"))),
            };
            if m.kind == kind::PUSH {
                if let Completion::Push(v) = c {
                    lock(&self.cq).pushes.push_back(v);
                    self.cv.notify_all();
                }
                continue;
            }
            if m.id == id {
                return Ok(Some(c));
            }
            let mut g = lock(&self.cq);
            if !g.abandoned.remove(&m.id) {
                g.ready.insert(m.id, c);
                self.cv.notify_all();
            }
        }
    }

    /// Take a received push message (pub/sub), if any.
    pub fn try_push(&self) -> Option<Value> {
        lock(&self.cq).pushes.pop_front()
    }
}

/// A completion as a Result.
pub fn into_result(c: Completion) -> Result<Value, ClientError> {
    match c {
        Completion::Ok(v) | Completion::Push(v) => Ok(v),
        Completion::Err(e) => Err(e),
    }
}

fn op_size_bound(op: &Op<ArgsRef<'_>>, route: &Route) -> usize {
    let route_extra = match route {
        Route::SlotKey { key, .. } => key.len() + 16,
        Route::Address { host, .. } => host.len() + 16,
        _ => 0,
    };
    match op {
        Op::Command { args } => msg::request_size_bound(args.0.iter().map(|a| a.0.len()), route_extra),
        Op::Batch { watch, commands, .. } => {
            let mut n = msg::request_size_bound(watch.iter().map(|w| w.len()), route_extra);
            for c in commands {
                n += msg::request_size_bound(c.0.iter().map(|a| a.0.len()), 0);
            }
            n
        }
        Op::Cancel { .. } => 128 + route_extra,
    }
}
