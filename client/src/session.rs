//! The session layer language bindings build on (the C library, the
//! Python module): the way to (re)open a registration (daemon or embedded
//! core), the current registration, and what `fork()` does to them.
//!
//! **Registrations and fork.** A [`Session`] works through one
//! registration at a time (a segment served by the daemon or by the
//! in-process core). It is replaced when it becomes unusable: the daemon
//! restarted, the core closed the segment, or this is a forked child
//! ([`fork_generation`] changed). In a child, nothing of the parent's
//! registration is touched: an embedded registration is forgotten whole
//! (its core's threads do not exist in the child; its runtime is never
//! dropped there, see [`park`]), and a new in-process core is started
//! lazily. Each registration has a *generation* number; when it changes,
//! the request ids of the previous registration are gone (their
//! completions will never arrive), and callers fail what they still wait
//! for.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use vshm_client::{daemon::Reconnecting, session::Session, ClientOptions};
//! # use vshm_protocol::register::Settings;
//! // Through vshmd (`Session::from_uri("valkey://...")`: the in-process core).
//! let rc = Reconnecting::new(
//!     "/run/vshm/vshmd.sock".into(),
//!     Settings::default(),
//!     Duration::from_secs(2),
//!     ClientOptions::default(),
//! );
//! let s = Session::daemon(rc);
//! let reg = s.get().unwrap();
//! reg.conn.call(&[b"PING"]).unwrap();
//! // reg.generation changes when the registration is replaced (daemon
//! // restart, fork): request ids of the old one are gone.
//! ```

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use vshm_protocol::sync::{AtomicU32, Ordering};

#[cfg(feature = "embedded")]
use std::sync::Weak;

use vshm_protocol::layout::state;
use vshm_protocol::msg::ClientError;

use crate::client::Client;
use crate::daemon::{fork_generation, DaemonClient, Reconnecting};
#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
#[cfg(feature = "embedded")]
use vshm_core::Config;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a session could not produce a registration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The in-process core did not start (threads, runtime).
    #[error("cannot start the in-process core: {0}")]
    CoreStart(String),
    /// Opening the registration failed (daemon unreachable, refused,
    /// bad server address, ...).
    #[error("{0}")]
    Client(#[from] ClientError),
}

// ---------------------------------------------------------------------------
// Objects abandoned in a forked child

/// A value kept forever, never used or dropped again.
struct Parked(#[allow(dead_code)] Box<dyn std::any::Any>);

// SAFETY: a parked value is never accessed again, from any thread.
unsafe impl Send for Parked {}

static PARKED: Mutex<Vec<Parked>> = Mutex::new(Vec::new());

/// Keep `v` forever without dropping it: what a forked child does with the
/// parent's core and registrations (dropping them would join threads that
/// do not exist in the child, or touch state the parent still uses). The
/// memory stays reachable (valgrind: "still reachable", not "lost").
pub fn park<T: 'static>(v: T) {
    lock(&PARKED).push(Parked(Box::new(v)));
}

// ---------------------------------------------------------------------------
// The process's embedded core

#[cfg(feature = "embedded")]
struct CoreSlot {
    core: Weak<EmbeddedCore>,
    fork_gen: u64,
}

#[cfg(feature = "embedded")]
static CORE: Mutex<Option<CoreSlot>> = Mutex::new(None);

/// The process's in-process core, started on first use with `threads`
/// worker threads. It stops when the last reference (every embedded
/// registration holds one) goes. In a forked child the parent's core is
/// parked and a new one started.
#[cfg(feature = "embedded")]
pub fn embedded_core(threads: usize) -> Result<Arc<EmbeddedCore>, SessionError> {
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
    let core =
        Arc::new(EmbeddedCore::start(threads).map_err(|e| SessionError::CoreStart(e.to_string()))?);
    *g = Some(CoreSlot {
        core: Arc::downgrade(&core),
        fork_gen: gen,
    });
    Ok(core)
}

/// An embedded registration. Field order matters: the client detaches
/// before the core reference goes (possibly stopping the core).
#[cfg(feature = "embedded")]
pub struct EmbeddedConn {
    client: EmbeddedClient,
    _core: Arc<EmbeddedCore>,
}

#[cfg(feature = "embedded")]
impl EmbeddedConn {
    pub fn client(&self) -> &EmbeddedClient {
        &self.client
    }
}

// ---------------------------------------------------------------------------
// Registrations

/// One registration; dereferences to its [`Client`]. Cheap to clone.
#[derive(Clone)]
pub enum Conn {
    Daemon(Arc<DaemonClient>),
    #[cfg(feature = "embedded")]
    Embedded(Arc<EmbeddedConn>),
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        match self {
            Conn::Daemon(d) => d,
            #[cfg(feature = "embedded")]
            Conn::Embedded(e) => &e.client,
        }
    }
}

/// The current registration. Dropped normally in the process that made
/// it; parked (kept, never dropped) in a forked child: an embedded one
/// must not stop the parent's core, and a daemon one must not join its
/// watcher thread (the daemon's own `Reconnecting` then lets go of its
/// reference without touching anything).
struct Current {
    conn: ManuallyDrop<Conn>,
    generation: u32,
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
            // SAFETY: taken exactly once, here; `self.conn` is not used
            // afterwards (this is its drop).
            park(unsafe { ManuallyDrop::take(&mut self.conn) });
        }
    }
}

/// How a session opens registrations.
pub enum Mode {
    /// Register with vshmd (reconnecting after a daemon restart).
    Daemon(Reconnecting),
    /// A segment of the process's in-process core ([`embedded_core`]),
    /// started with `threads` worker threads if it is not running.
    #[cfg(feature = "embedded")]
    Embedded { config: Config, threads: usize },
}

/// A usable registration as [`Session::get`] returns it.
#[derive(Clone)]
pub struct Registration {
    pub conn: Conn,
    /// Changes whenever the registration is replaced (never 0).
    pub generation: u32,
    /// True for the one caller whose `get` opened this registration (it
    /// restores per-session state on it: notifier, subscriptions).
    pub opened: bool,
}

/// The way to open registrations plus the current one.
pub struct Session {
    mode: Mode,
    cur: RwLock<Option<Current>>,
    next_generation: AtomicU32,
}

impl Session {
    /// A session; nothing is opened until the first [`Session::get`].
    pub fn new(mode: Mode) -> Session {
        Session {
            mode,
            cur: RwLock::new(None),
            next_generation: AtomicU32::new(1),
        }
    }

    /// A session registering with vshmd through `rc`.
    pub fn daemon(rc: Reconnecting) -> Session {
        Session::new(Mode::Daemon(rc))
    }

    /// A session on the process's in-process core.
    #[cfg(feature = "embedded")]
    pub fn embedded(config: Config, threads: usize) -> Session {
        Session::new(Mode::Embedded { config, threads })
    }

    /// A session on the in-process core configured by a URI (see
    /// [`crate::uri`]).
    #[cfg(feature = "embedded")]
    pub fn from_uri(uri: &str) -> Result<Session, crate::uri::UriError> {
        let (config, threads) = crate::uri::parse(uri)?;
        Ok(Session::embedded(config, threads))
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    pub fn is_embedded(&self) -> bool {
        !matches!(self.mode, Mode::Daemon(_))
    }

    fn open(&self) -> Result<Conn, SessionError> {
        match &self.mode {
            Mode::Daemon(rc) => Ok(Conn::Daemon(rc.get()?)),
            #[cfg(feature = "embedded")]
            Mode::Embedded { config, threads } => {
                let core = embedded_core(*threads)?;
                let client = core.open(config)?;
                Ok(Conn::Embedded(Arc::new(EmbeddedConn {
                    client,
                    _core: core,
                })))
            }
        }
    }

    /// The usable registration, opening a new one if needed (after a
    /// daemon restart, a closed segment, or in a forked child).
    pub fn get(&self) -> Result<Registration, SessionError> {
        {
            let g = self.cur.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = g.as_ref() {
                if c.usable() {
                    return Ok(Registration {
                        conn: (*c.conn).clone(),
                        generation: c.generation,
                        opened: false,
                    });
                }
            }
        }
        let mut g = self.cur.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_ref() {
            if c.usable() {
                return Ok(Registration {
                    conn: (*c.conn).clone(),
                    generation: c.generation,
                    opened: false,
                });
            }
        }
        // Drop (or, in a forked child, park) the old one first: in a
        // child, the embedded core must be replaced before opening.
        drop(g.take());
        let conn = self.open()?;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *g = Some(Current {
            conn: ManuallyDrop::new(conn.clone()),
            generation,
            fork_gen: fork_generation(),
        });
        Ok(Registration {
            conn,
            generation,
            opened: true,
        })
    }

    /// The usable registration's client (see [`Session::get`]).
    pub fn client(&self) -> Result<Conn, SessionError> {
        Ok(self.get()?.conn)
    }

    /// The current registration and its generation without opening one:
    /// None when there is none or it belongs to the parent of this forked
    /// process.
    pub fn current(&self) -> Option<(Conn, u32)> {
        let g = self.cur.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|c| c.fork_gen == fork_generation())
            .map(|c| ((*c.conn).clone(), c.generation))
    }

    /// Let go of the current registration (parked in a forked child).
    pub fn close(&self) {
        drop(self.cur.write().unwrap_or_else(|e| e.into_inner()).take());
    }
}
