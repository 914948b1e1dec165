//! A Python client's session: vshm-client's session layer (the current
//! registration, daemon or in-process, replaced after a daemon restart
//! and in a forked child) plus what the module keeps per client: the
//! closed flag, the default timeout, the event-loop descriptor
//! (`vshm_client::notify`) and the subscriptions replayed on a new
//! registration (`vshm_client::subscriptions`). Nothing of the
//! registration, fork or URI mechanisms is implemented here.

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use vshm_protocol::sync::{AtomicBool, Ordering};

use vshm_client::notify::EventNotifier;
use vshm_client::session::{self, SessionError};
use vshm_client::subscriptions::Subscriptions;
use vshm_core::config::Mode as CoreMode;
use vshm_protocol::msg::{ClientError, ErrorKind, SubKind};

pub(crate) use vshm_client::session::{Conn, Mode};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn client_error(e: SessionError) -> ClientError {
    match e {
        SessionError::Client(c) => c,
        other => ClientError::new(ErrorKind::Connection, other.to_string()),
    }
}

fn notifier_error(e: std::io::Error) -> ClientError {
    ClientError::new(
        ErrorKind::Connection,
        format!("cannot start the completion notifier: {e}"),
    )
}

pub(crate) struct Session {
    // Field order: the notifier thread stops before the registration
    // (whose segment it watches) goes.
    events: EventNotifier,
    inner: session::Session,
    subs: Subscriptions,
    closed: AtomicBool,
    /// Per-request timeout when the caller passes none (None: the core's).
    pub default_timeout: Option<Duration>,
}

impl Session {
    /// Open a session (eagerly: a bad address or a missing daemon is
    /// reported here).
    pub fn new(mode: Mode, default_timeout: Option<Duration>) -> Result<Session, ClientError> {
        let s = Session {
            events: EventNotifier::new(),
            inner: session::Session::new(mode),
            subs: Subscriptions::new(),
            closed: AtomicBool::new(false),
            default_timeout,
        };
        s.conn()?;
        Ok(s)
    }

    /// Whether the servers are a cluster: known for the in-process core
    /// (its config); None through the daemon (its configuration).
    pub fn is_cluster(&self) -> Option<bool> {
        match self.inner.mode() {
            Mode::Embedded { config, .. } => Some(config.mode == CoreMode::Cluster),
            Mode::Daemon(_) => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// The usable registration and its generation, opening a new one if
    /// needed (then the notifier follows it and the subscriptions are
    /// replayed on it).
    pub fn conn(&self) -> Result<(Conn, u32), ClientError> {
        if self.is_closed() {
            return Err(ClientError::new(ErrorKind::Closing, "the client is closed"));
        }
        let reg = self.inner.get().map_err(client_error)?;
        if reg.opened {
            self.events
                .follow(reg.conn.segment(), reg.generation)
                .map_err(notifier_error)?;
            self.subs.replay(&reg.conn, self.default_timeout);
        }
        Ok((reg.conn, reg.generation))
    }

    /// The current registration without opening one (None: none, or the
    /// parent's in a forked child).
    pub fn current(&self) -> Option<(Conn, u32)> {
        self.inner.current()
    }

    /// Record a confirmed (un)subscription (see `Subscriptions::note`).
    pub fn note_subscriptions(
        &self,
        kind: SubKind,
        subscribe: bool,
        channels: &[Vec<u8>],
    ) -> Vec<(Vec<u8>, bool)> {
        self.subs.note(kind, subscribe, channels)
    }

    /// The eventfd that becomes readable when completions arrive.
    pub fn fd(&self) -> Result<RawFd, ClientError> {
        let (conn, generation) = self.conn()?;
        self.events
            .fd(conn.segment(), generation)
            .map_err(notifier_error)
    }

    /// Reset the eventfd (before taking completions).
    pub fn clear_fd(&self) {
        self.events.clear();
    }

    /// Close: refuse new calls, stop the notifier, let the registration go
    /// (calls running in other threads keep their own reference).
    pub fn close(&self) {
        // Release: pairs with the Acquire load in `is_closed`.
        self.closed.store(true, Ordering::Release);
        self.events.stop();
        self.inner.close();
    }
}
