//! TEMPORARY: registration, URI and fork handling for the Python client.
//!
//! This is what client-c keeps in `conn.rs` and `uri.rs` (same design,
//! trimmed to what the Python module needs). It lives in this one module
//! only until the shared session API of `vshm-client` lands; then this
//! file is deleted and the module uses that API (no mechanism twice).
//!
//! **Registrations and fork.** A session works through one registration
//! at a time (a segment served by the daemon or by the process's
//! in-process core). It is replaced when it becomes unusable: the daemon
//! restarted, or this is a forked child (`fork_generation()` changed). In
//! a child nothing of the parent's registration is touched: it is parked
//! (kept, never dropped) and a new one is opened lazily (an embedded one
//! on a new in-process core).

use std::collections::BTreeSet;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vshm_core::config::{Mode as CoreMode, Protocol, ReadFrom};
use vshm_core::embedded::{EmbeddedClient, EmbeddedCore};
use vshm_core::Config;
use vshm_protocol::client::Client;
use vshm_protocol::daemon::{fork_generation, DaemonClient, Reconnecting};
use vshm_protocol::layout::state;
use vshm_protocol::msg::{ClientError, ErrorKind, Op, Route, SubKind};
use vshm_protocol::segment::Segment;
use vshm_protocol::wake::{self, Side};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn internal(msg: String) -> ClientError {
    ClientError::new(ErrorKind::Connection, msg)
}

// ---------------------------------------------------------------------------
// Objects abandoned in a forked child

struct Parked(#[allow(dead_code)] Box<dyn std::any::Any>);

// SAFETY: a parked value is never accessed again, from any thread.
unsafe impl Send for Parked {}

static PARKED: Mutex<Vec<Parked>> = Mutex::new(Vec::new());

/// Keep `v` forever without dropping it (what a forked child does with
/// the parent's core, registrations and threads).
fn park<T: 'static>(v: T) {
    lock(&PARKED).push(Parked(Box::new(v)));
}

// ---------------------------------------------------------------------------
// The process's embedded core

struct CoreSlot {
    core: Weak<EmbeddedCore>,
    fork_gen: u64,
}

static CORE: Mutex<Option<CoreSlot>> = Mutex::new(None);

/// The process's in-process core, started on first use; it stops when the
/// last embedded registration is dropped.
fn embedded_core(threads: usize) -> Result<Arc<EmbeddedCore>, ClientError> {
    let gen = fork_generation();
    let mut g = lock(&CORE);
    if let Some(slot) = g.as_ref() {
        if slot.fork_gen == gen {
            if let Some(c) = slot.core.upgrade() {
                return Ok(c);
            }
        } else {
            // The parent's core: its threads are gone. Never touch it.
            park(g.take());
        }
    }
    let core = Arc::new(
        EmbeddedCore::start(threads.max(1))
            .map_err(|e| internal(format!("cannot start the in-process core: {e}")))?,
    );
    *g = Some(CoreSlot {
        core: Arc::downgrade(&core),
        fork_gen: gen,
    });
    Ok(core)
}

/// An embedded registration: the client detaches before the core
/// reference goes (field order).
pub(crate) struct EmbeddedConn {
    client: EmbeddedClient,
    _core: Arc<EmbeddedCore>,
}

/// One registration.
#[derive(Clone)]
pub(crate) enum Conn {
    Daemon(Arc<DaemonClient>),
    Embedded(Arc<EmbeddedConn>),
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        match self {
            Conn::Daemon(d) => d,
            Conn::Embedded(e) => &e.client,
        }
    }
}

/// The current registration; parked instead of dropped in a forked child.
struct Current {
    conn: ManuallyDrop<Conn>,
    seq: u32,
    fork_gen: u64,
}

impl Current {
    fn usable(&self) -> bool {
        self.fork_gen == fork_generation()
            && self.conn.segment().state() == state::OPEN
            && !self.conn.is_dead()
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        if self.fork_gen == fork_generation() {
            // SAFETY: dropped exactly once, here; never used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.conn) };
        } else {
            // SAFETY: taken exactly once, here; not used afterwards.
            park(unsafe { ManuallyDrop::take(&mut self.conn) });
        }
    }
}

/// How a session opens registrations.
pub(crate) enum Mode {
    Daemon(Reconnecting),
    Embedded {
        config: Config,
        threads: usize,
        sq: u64,
        cq: u64,
    },
}

// ---------------------------------------------------------------------------
// The completion notifier (fileno)

/// A thread that parks on the completion ring's futex and signals the
/// session's eventfd whenever the core publishes completions (or the
/// segment stops being open).
struct Notifier {
    stop: Arc<AtomicBool>,
    seg: Arc<Segment>,
    thread: Option<JoinHandle<()>>,
    fork_gen: u64,
    seq: u32,
}

impl Notifier {
    fn start(seg: Arc<Segment>, efd: RawFd, seq: u32) -> Result<Notifier, ClientError> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let seg = seg.clone();
            std::thread::Builder::new()
                .name("vshm-notify".into())
                .spawn(move || notify_loop(&seg, efd, &stop))
                .map_err(|e| internal(format!("cannot start the notifier thread: {e}")))?
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
            park(t);
            return;
        }
        // Release: pairs with the Acquire loads in `notify_loop`.
        self.stop.store(true, Ordering::Release);
        let (ctl, _) = self.seg.cq();
        wake::wake(ctl, Side::Consumer);
        let _ = t.join();
    }
}

fn notify_loop(seg: &Segment, efd: RawFd, stop: &AtomicBool) {
    let (ctl, _) = seg.cq();
    let mut last = u64::MAX;
    loop {
        // Acquire: pairs with the Release store in `Notifier::drop`.
        if stop.load(Ordering::Acquire) {
            return;
        }
        if seg.state() != state::OPEN {
            vshm_protocol::endpoint::ring_doorbell(efd);
            return;
        }
        // Acquire: pairs with the core's Release publish of the tail.
        let t = ctl.prod.tail.load(Ordering::Acquire);
        if t != last {
            last = t;
            vshm_protocol::endpoint::ring_doorbell(efd);
            continue;
        }
        let s = wake::prepare_sleep(ctl, Side::Consumer);
        // Acquire loads: as above.
        if ctl.prod.tail.load(Ordering::Acquire) != last
            || stop.load(Ordering::Acquire)
            || seg.state() != state::OPEN
        {
            wake::cancel_sleep(ctl, Side::Consumer);
            continue;
        }
        wake::sleep(ctl, Side::Consumer, s, Duration::from_millis(100));
    }
}

/// The session's eventfd; in a forked child a fresh one is put at the
/// same descriptor number (the inherited one is shared with the parent,
/// whose notifier still writes it).
struct EventFd {
    fd: OwnedFd,
    fork_gen: u64,
}

fn new_eventfd() -> Result<OwnedFd, ClientError> {
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(internal(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------
// The session

pub(crate) struct Session {
    mode: Mode,
    cur: RwLock<Option<Current>>,
    next_seq: AtomicU32,
    closed: AtomicBool,
    /// Per-request timeout when the caller passes none (None: the core's).
    pub default_timeout: Option<Duration>,
    efd: Mutex<Option<EventFd>>,
    notifier: Mutex<Option<Notifier>>,
    /// Subscriptions (kind, channel), replayed on a new registration.
    subs: Mutex<BTreeSet<(u8, Vec<u8>)>>,
}

impl Session {
    /// Open a session (eagerly: a bad address or a missing daemon is
    /// reported here).
    pub fn new(mode: Mode, default_timeout: Option<Duration>) -> Result<Session, ClientError> {
        let s = Session {
            mode,
            cur: RwLock::new(None),
            next_seq: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            default_timeout,
            efd: Mutex::new(None),
            notifier: Mutex::new(None),
            subs: Mutex::new(BTreeSet::new()),
        };
        s.conn()?;
        Ok(s)
    }

    /// Whether the servers are a cluster: known for the in-process core
    /// (its config); None through the daemon (its configuration).
    pub fn is_cluster(&self) -> Option<bool> {
        match &self.mode {
            Mode::Embedded { config, .. } => Some(config.mode == CoreMode::Cluster),
            Mode::Daemon(_) => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    fn open(&self) -> Result<Conn, ClientError> {
        match &self.mode {
            Mode::Daemon(rc) => Ok(Conn::Daemon(rc.get()?)),
            Mode::Embedded {
                config,
                threads,
                sq,
                cq,
            } => {
                let core = embedded_core(*threads)?;
                let client = core.open_with(config, *sq, *cq)?;
                Ok(Conn::Embedded(Arc::new(EmbeddedConn {
                    client,
                    _core: core,
                })))
            }
        }
    }

    /// The usable registration and its sequence number, opening a new one
    /// if needed.
    pub fn conn(&self) -> Result<(Conn, u32), ClientError> {
        if self.is_closed() {
            return Err(ClientError::new(ErrorKind::Closing, "the client is closed"));
        }
        {
            let g = self.cur.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = g.as_ref().filter(|c| c.usable()) {
                return Ok(((*c.conn).clone(), c.seq));
            }
        }
        let mut g = self.cur.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_ref().filter(|c| c.usable()) {
            return Ok(((*c.conn).clone(), c.seq));
        }
        // Drop (or, in a forked child, park) the old one first: in a
        // child the embedded core must be replaced before opening.
        drop(g.take());
        let conn = self.open()?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        *g = Some(Current {
            conn: ManuallyDrop::new(conn.clone()),
            seq,
            fork_gen: fork_generation(),
        });
        drop(g);
        self.restart_notifier(&conn, seq)?;
        self.replay_subscriptions(&conn);
        Ok((conn, seq))
    }

    /// The current registration without opening one (None: none, or the
    /// parent's in a forked child).
    pub fn current(&self) -> Option<(Conn, u32)> {
        let g = self.cur.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|c| c.fork_gen == fork_generation())
            .map(|c| ((*c.conn).clone(), c.seq))
    }

    /// Subscribe a new registration to what the session was subscribed
    /// to. Best effort (pub/sub delivery is at most once).
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

    /// Record a subscription change; returns the channels it affected
    /// (for unsubscribe-all: the channels of that kind) and, for each,
    /// whether it changed the set.
    pub fn note_subscriptions(
        &self,
        kind: SubKind,
        subscribe: bool,
        channels: &[Vec<u8>],
    ) -> Vec<(Vec<u8>, bool)> {
        let mut subs = lock(&self.subs);
        let k = kind as u8;
        if subscribe {
            channels
                .iter()
                .map(|c| (c.clone(), subs.insert((k, c.clone()))))
                .collect()
        } else if channels.is_empty() {
            let all: Vec<Vec<u8>> = subs
                .iter()
                .filter(|(sk, _)| *sk == k)
                .map(|(_, c)| c.clone())
                .collect();
            subs.retain(|(sk, _)| *sk != k);
            all.into_iter().map(|c| (c, true)).collect()
        } else {
            channels
                .iter()
                .map(|c| (c.clone(), subs.remove(&(k, c.clone()))))
                .collect()
        }
    }

    /// The eventfd that becomes readable when completions arrive, created
    /// (and the notifier started) on first use.
    pub fn fd(&self) -> Result<RawFd, ClientError> {
        let (conn, seq) = self.conn()?;
        let raw = {
            let mut efd = lock(&self.efd);
            match efd.as_mut() {
                None => {
                    *efd = Some(EventFd {
                        fd: new_eventfd()?,
                        fork_gen: fork_generation(),
                    })
                }
                Some(e) if e.fork_gen != fork_generation() => {
                    let fresh = new_eventfd()?;
                    // SAFETY: both descriptors are ours; dup3 atomically
                    // makes our descriptor number refer to the fresh one.
                    let r =
                        unsafe { libc::dup3(fresh.as_raw_fd(), e.fd.as_raw_fd(), libc::O_CLOEXEC) };
                    if r < 0 {
                        return Err(internal(format!(
                            "dup3: {}",
                            std::io::Error::last_os_error()
                        )));
                    }
                    e.fork_gen = fork_generation();
                }
                Some(_) => {}
            }
            efd.as_ref().map(|e| e.fd.as_raw_fd()).unwrap_or(-1)
        };
        self.restart_notifier(&conn, seq)?;
        Ok(raw)
    }

    fn restart_notifier(&self, conn: &Conn, seq: u32) -> Result<(), ClientError> {
        let efd = lock(&self.efd)
            .as_ref()
            .filter(|e| e.fork_gen == fork_generation())
            .map(|e| e.fd.as_raw_fd());
        let Some(efd) = efd else { return Ok(()) };
        let mut n = lock(&self.notifier);
        if let Some(cur) = n.as_ref() {
            if cur.seq == seq && cur.fork_gen == fork_generation() {
                return Ok(());
            }
        }
        drop(n.take());
        *n = Some(Notifier::start(conn.segment().clone(), efd, seq)?);
        Ok(())
    }

    /// Reset the eventfd (before taking completions).
    pub fn clear_fd(&self) {
        if let Some(e) = lock(&self.efd).as_ref() {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from our own
            // non-blocking eventfd; EAGAIN when already zero.
            unsafe { libc::read(e.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// Close: refuse new calls, stop the notifier, let the registration go
    /// (calls running in other threads keep their own reference).
    pub fn close(&self) {
        // Release: pairs with the Acquire load in `is_closed`.
        self.closed.store(true, Ordering::Release);
        drop(lock(&self.notifier).take());
        drop(self.cur.write().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The notifier before the registration (it holds its segment).
        drop(lock(&self.notifier).take());
        drop(self.cur.write().unwrap_or_else(|e| e.into_inner()).take());
        // The eventfd closes after this (a field), once nothing writes it.
    }
}

// ---------------------------------------------------------------------------
// Connection URIs for the in-process core:
//   valkey://[user[:password]@]host[:port][,host[:port]...][/db][?key=value&...]
// (also redis://; valkeys:// and rediss:// for TLS). Query keys: cluster,
// db, name, timeout_ms, connect_timeout_ms, protocol (2/3/resp2/resp3),
// tls, ca_file, read_from, max_inflight, threads.

fn bad(uri: &str, why: impl std::fmt::Display) -> String {
    // Never echo a password: show the scheme and the reason only.
    let scheme = uri.split("://").next().unwrap_or("");
    format!("bad URL ({scheme}://...): {why}")
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".to_string())
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 0 or 1, got {v:?}")),
    }
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{k}: not a valid number: {v:?}"))
}

/// Parse a URL into a core config and the core thread count (0: default).
/// The config is not validated yet (the caller applies keyword options).
pub(crate) fn parse_url(uri: &str) -> Result<(Config, usize), String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad(uri, "missing scheme://"))?;
    let mut cfg = Config::default();
    match scheme.to_ascii_lowercase().as_str() {
        "valkey" | "redis" => {}
        "valkeys" | "rediss" => cfg.tls = true,
        "unix" => {
            return Err(bad(
                uri,
                "unix:// sockets are not supported by the core yet (use valkey://host:port)",
            ))
        }
        other => {
            return Err(bad(
                uri,
                format!("unsupported scheme {other:?} (valkey, redis, valkeys, rediss)"),
            ))
        }
    }
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let user = decode(user).map_err(|e| bad(uri, e))?;
        if !user.is_empty() {
            cfg.username = Some(user);
        }
        if let Some(p) = pass {
            cfg.password = Some(decode(p).map_err(|e| bad(uri, e))?);
        }
    }
    let mut addresses = Vec::new();
    for h in hosts.split(',') {
        if h.is_empty() {
            return Err(bad(uri, "empty host"));
        }
        // "[v6]:port", "[v6]", "host:port", "host"
        let has_port = match h.rfind(':') {
            Some(i) => h.starts_with('[') && h[..i].ends_with(']') || !h.starts_with('['),
            None => false,
        };
        addresses.push(if has_port {
            h.to_string()
        } else {
            format!("{h}:6379")
        });
    }
    cfg.addresses = addresses;
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        cfg.database = num("database path", p).map_err(|e| bad(uri, e))?;
    }
    let mut threads = 0usize;
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = decode(v).map_err(|e| bad(uri, e))?;
        let r: Result<(), String> = (|| {
            match k {
                "cluster" => {
                    cfg.mode = if flag(&v)? {
                        CoreMode::Cluster
                    } else {
                        CoreMode::Standalone
                    };
                }
                "db" | "database" => cfg.database = num(k, &v)?,
                "name" | "client_name" => cfg.client_name = Some(v.clone()),
                "timeout_ms" | "request_timeout_ms" => cfg.request_timeout_ms = num(k, &v)?,
                "connect_timeout_ms" | "connection_timeout_ms" => {
                    cfg.connection_timeout_ms = num(k, &v)?
                }
                "protocol" => {
                    cfg.protocol = match v.as_str() {
                        "resp2" | "2" => Protocol::Resp2,
                        "resp3" | "3" => Protocol::Resp3,
                        _ => return Err(format!("protocol: expected 2 or 3, got {v:?}")),
                    }
                }
                "tls" => cfg.tls = flag(&v)?,
                "ca_file" => cfg.ca_file = Some(v.clone().into()),
                "read_from" => {
                    cfg.read_from = match v.as_str() {
                        "primary" => ReadFrom::Primary,
                        "prefer_replica" => ReadFrom::PreferReplica,
                        "round_robin_replicas" => ReadFrom::RoundRobinReplicas,
                        _ => return Err(format!("read_from: unknown value {v:?}")),
                    }
                }
                "max_inflight" => cfg.max_inflight = num(k, &v)?,
                "threads" => threads = num(k, &v)?,
                _ => return Err(format!("unknown parameter {k:?}")),
            }
            Ok(())
        })();
        r.map_err(|e| bad(uri, e))?;
    }
    Ok((cfg, threads))
}
