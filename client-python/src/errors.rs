//! The exception classes and the mapping of client errors onto them.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use vshm_protocol::msg::{ArchivedClientError, ArchivedErrorKind, ClientError, ErrorKind};

create_exception!(
    vshm,
    VshmError,
    PyException,
    "Base class of every vshm error."
);
create_exception!(
    vshm,
    ConnectionError,
    VshmError,
    "The transport failed: the daemon is gone, the server is unreachable, or the client is closed."
);
create_exception!(
    vshm,
    TimeoutError,
    VshmError,
    "The request's deadline passed (its late reply is discarded)."
);
create_exception!(
    vshm,
    ResponseError,
    VshmError,
    "The server's error reply; `.code` is its first word (e.g. \"WRONGTYPE\")."
);
create_exception!(
    vshm,
    InvalidRequest,
    VshmError,
    "The core refused the request before sending it (the message names the alternative)."
);

/// A `ResponseError` for the server's error message, with `.code` set.
pub(crate) fn response_error(py: Python<'_>, msg: &str) -> PyErr {
    let e = ResponseError::new_err(msg.to_string());
    let code = msg.split_whitespace().next().unwrap_or("");
    // Setting an attribute on a fresh exception instance cannot fail in
    // practice; if it did, `.code` falls back to the class's None.
    let _ = e.value(py).setattr("code", code);
    e
}

fn by_kind(py: Python<'_>, kind: ErrorKind, msg: &str) -> PyErr {
    match kind {
        ErrorKind::Request | ErrorKind::ExecAbort => response_error(py, msg),
        ErrorKind::Timeout => TimeoutError::new_err(msg.to_string()),
        ErrorKind::Connection | ErrorKind::Closing => ConnectionError::new_err(msg.to_string()),
        ErrorKind::InvalidRequest => InvalidRequest::new_err(msg.to_string()),
        ErrorKind::Overloaded => VshmError::new_err(format!("overloaded: {msg}")),
    }
}

/// The Python exception for a client-side error.
pub(crate) fn client_error(py: Python<'_>, e: &ClientError) -> PyErr {
    by_kind(py, e.kind, &e.message)
}

/// The Python exception for an error completion read from the ring.
pub(crate) fn archived_error(py: Python<'_>, e: &ArchivedClientError) -> PyErr {
    let kind = match e.kind {
        ArchivedErrorKind::Request => ErrorKind::Request,
        ArchivedErrorKind::Timeout => ErrorKind::Timeout,
        ArchivedErrorKind::Connection => ErrorKind::Connection,
        ArchivedErrorKind::Closing => ErrorKind::Closing,
        ArchivedErrorKind::ExecAbort => ErrorKind::ExecAbort,
        ArchivedErrorKind::InvalidRequest => ErrorKind::InvalidRequest,
        ArchivedErrorKind::Overloaded => ErrorKind::Overloaded,
    };
    by_kind(py, kind, e.message.as_str())
}

pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Extension: `?` on a `Result<_, ClientError>` inside a Python call.
pub(crate) trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, ClientError> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| client_error(py, &e))
    }
}
