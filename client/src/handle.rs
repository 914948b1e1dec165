//! [`Handle`]: what one language-level client object holds, shared by the
//! C library and the Python module so that neither composes it itself:
//!
//! * the [`Session`] (the current registration, daemon or in-process,
//!   replaced after a daemon restart and in a forked child);
//! * the [`EventNotifier`] behind the descriptor an event loop watches
//!   (`vshm_fd`, asyncio's `add_reader`), which follows each new
//!   registration;
//! * the [`Subscriptions`] replayed on a new registration;
//! * the closed flag and the default per-request timeout.
//!
//! What differs between the bindings (C's table of asynchronous requests
//! and callbacks; Python's exceptions and GIL handling) stays in them.

use std::os::fd::RawFd;
use std::time::Duration;

use vshm_protocol::msg::SubKind;
use vshm_protocol::sync::{AtomicBool, Ordering};

use crate::notify::{EventNotifier, NextDeadline};
use crate::session::{Conn, Mode, Session, SessionError};
use crate::subscriptions::Subscriptions;

/// Why a [`Handle`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// [`Handle::close`] was called.
    #[error("the client is closed")]
    Closed,
    /// Opening a registration failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The completion notifier (its eventfd or thread) could not start.
    #[error("cannot start the completion notifier: {0}")]
    Notifier(std::io::Error),
}

/// One client object of a language binding. Thread-safe.
pub struct Handle {
    // Field order is drop order: the notifier thread stops before the
    // registration whose segment it watches goes (`Drop` also says so).
    events: EventNotifier,
    session: Session,
    subs: Subscriptions,
    closed: AtomicBool,
    /// Per-request timeout when the caller passes none (None: the core's).
    default_timeout: Option<Duration>,
}

impl Handle {
    /// Open a handle, eagerly: a bad address or a missing daemon is
    /// reported here, not by the first call.
    pub fn open(mode: Mode, default_timeout: Option<Duration>) -> Result<Handle, HandleError> {
        let h = Handle {
            events: EventNotifier::new(),
            session: Session::new(mode),
            subs: Subscriptions::new(),
            closed: AtomicBool::new(false),
            default_timeout,
        };
        h.conn()?;
        Ok(h)
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Per-request timeout when the caller passes none (None: the core's).
    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// The usable registration and its generation, opening a new one if
    /// needed; a new one is followed by the notifier and gets the
    /// subscriptions replayed.
    pub fn conn(&self) -> Result<(Conn, u32), HandleError> {
        if self.is_closed() {
            return Err(HandleError::Closed);
        }
        let reg = self.session.get()?;
        if reg.opened {
            self.events
                .follow(reg.conn.segment(), reg.generation)
                .map_err(HandleError::Notifier)?;
            self.subs.replay(&reg.conn, self.default_timeout);
        }
        Ok((reg.conn, reg.generation))
    }

    /// The current registration without opening one: None when there is
    /// none or it belongs to the parent of this forked process.
    pub fn current(&self) -> Option<(Conn, u32)> {
        self.session.current()
    }

    /// Record a confirmed (un)subscription (see [`Subscriptions::note`]).
    pub fn note_subscriptions(
        &self,
        kind: SubKind,
        subscribe: bool,
        channels: &[Vec<u8>],
    ) -> Vec<(Vec<u8>, bool)> {
        self.subs.note(kind, subscribe, channels)
    }

    /// The eventfd that becomes readable when completions arrive (or a
    /// pending request's deadline passes), created on first use.
    pub fn fd(&self) -> Result<RawFd, HandleError> {
        let (conn, generation) = self.conn()?;
        self.events
            .fd(conn.segment(), generation)
            .map_err(HandleError::Notifier)
    }

    /// Reset the eventfd (before taking completions).
    pub fn clear_fd(&self) {
        self.events.clear();
    }

    /// The earliest deadline of the binding's pending requests, which the
    /// notifier turns into an eventfd wake-up.
    pub fn deadline(&self) -> &NextDeadline {
        self.events.deadline()
    }

    /// Refuse new calls, stop the notifier and let the registration go.
    /// Calls running in other threads keep their own reference to it and
    /// finish normally.
    pub fn close(&self) {
        // Release: pairs with the Acquire load in `is_closed`.
        self.closed.store(true, Ordering::Release);
        self.events.stop();
        self.session.close();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The notifier before the registration (it watches its segment).
        self.events.stop();
        self.session.close();
    }
}
