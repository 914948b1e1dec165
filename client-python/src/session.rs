//! A Python client's session: vshm-client's [`Handle`] (the current
//! registration, daemon or in-process, replaced after a daemon restart
//! and in a forked child; the event-loop descriptor; the subscriptions
//! replayed on a new registration; the closed flag and default timeout),
//! the same composition the C library holds. Here only what is Python's:
//! errors as `ClientError`s and the cluster question.

use std::sync::{Mutex, MutexGuard};

use vshm_client::handle::HandleError;
use vshm_client::session::SessionError;
use vshm_core::config::Mode as CoreMode;
use vshm_protocol::msg::{ClientError, ErrorKind};

pub(crate) use vshm_client::handle::Handle as Session;
pub(crate) use vshm_client::session::{Conn, Mode};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session failure as the error the module raises.
pub(crate) fn handle_error(e: HandleError) -> ClientError {
    match e {
        HandleError::Closed => ClientError::new(ErrorKind::Closing, "the client is closed"),
        HandleError::Session(SessionError::Client(c)) => c,
        other => ClientError::new(ErrorKind::Connection, other.to_string()),
    }
}

/// Whether the servers are a cluster: known for the in-process core (its
/// config); None through the daemon (its configuration).
pub(crate) fn is_cluster(s: &Session) -> Option<bool> {
    match s.session().mode() {
        Mode::Embedded { config, .. } => Some(config.mode == CoreMode::Cluster),
        Mode::Daemon(_) => None,
    }
}
