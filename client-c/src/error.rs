//! Status codes, the thread-local last error, and the panic guard every
//! entry point runs in.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use vshm_protocol::msg::{ArchivedErrorKind, ClientError, ErrorKind};

/// Status code returned by (nearly) every function: `VSHM_OK` (0) or one
/// of the `VSHM_ERR_*` codes. After an error, `vshm_last_error_message()`
/// in the same thread tells the details.
#[allow(non_camel_case_types)]
pub type vshm_status = i32;

/// Success.
pub const VSHM_OK: vshm_status = 0;
/// The server answered with an error reply (WRONGTYPE, NOSCRIPT, ...).
pub const VSHM_ERR_REQUEST: vshm_status = 1;
/// The request did not complete within its timeout (or a wait ended).
pub const VSHM_ERR_TIMEOUT: vshm_status = 2;
/// The connection to the server, or to the vshm daemon, failed.
pub const VSHM_ERR_CONNECTION: vshm_status = 3;
/// The client or the core is shutting down.
pub const VSHM_ERR_CLOSING: vshm_status = 4;
/// A transaction was aborted (EXECABORT, or a WATCHed key changed).
pub const VSHM_ERR_EXEC_ABORT: vshm_status = 5;
/// The core refused the request before sending it (unsupported command
/// such as SUBSCRIBE or MULTI, cross-slot transaction, bad route, ...).
pub const VSHM_ERR_INVALID_REQUEST: vshm_status = 6;
/// A per-client limit was hit (in-flight requests, ring space).
pub const VSHM_ERR_OVERLOADED: vshm_status = 7;
/// A bad argument from the caller: NULL pointer, negative count, freed
/// or foreign handle, bad option value, malformed URI or format string.
pub const VSHM_ERR_INVALID_ARGUMENT: vshm_status = 8;
/// A value accessor was used on a value of another type.
pub const VSHM_ERR_WRONG_TYPE: vshm_status = 9;
/// An internal error (a bug in vshm, or out of memory); the message says
/// more. Never a crash: panics are caught at the API boundary.
pub const VSHM_ERR_INTERNAL: vshm_status = 10;
/// `vshm_take`: the request has not completed yet (not an error).
pub const VSHM_PENDING: vshm_status = 11;

/// An error on its way to the caller.
#[derive(Debug, Clone)]
pub(crate) struct Error {
    pub status: vshm_status,
    pub message: String,
}

impl Error {
    pub fn new(status: vshm_status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn arg(message: impl Into<String>) -> Error {
        Error::new(VSHM_ERR_INVALID_ARGUMENT, message)
    }
}

pub(crate) fn status_of_kind(k: ErrorKind) -> vshm_status {
    match k {
        ErrorKind::Request => VSHM_ERR_REQUEST,
        ErrorKind::Timeout => VSHM_ERR_TIMEOUT,
        ErrorKind::Connection => VSHM_ERR_CONNECTION,
        ErrorKind::Closing => VSHM_ERR_CLOSING,
        ErrorKind::ExecAbort => VSHM_ERR_EXEC_ABORT,
        ErrorKind::InvalidRequest => VSHM_ERR_INVALID_REQUEST,
        ErrorKind::Overloaded => VSHM_ERR_OVERLOADED,
    }
}

pub(crate) fn status_of_archived_kind(k: &ArchivedErrorKind) -> vshm_status {
    match k {
        ArchivedErrorKind::Request => VSHM_ERR_REQUEST,
        ArchivedErrorKind::Timeout => VSHM_ERR_TIMEOUT,
        ArchivedErrorKind::Connection => VSHM_ERR_CONNECTION,
        ArchivedErrorKind::Closing => VSHM_ERR_CLOSING,
        ArchivedErrorKind::ExecAbort => VSHM_ERR_EXEC_ABORT,
        ArchivedErrorKind::InvalidRequest => VSHM_ERR_INVALID_REQUEST,
        ArchivedErrorKind::Overloaded => VSHM_ERR_OVERLOADED,
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        Error::new(status_of_kind(e.kind), e.message)
    }
}

/// The static name of a status.
pub(crate) fn status_str(s: vshm_status) -> &'static std::ffi::CStr {
    match s {
        VSHM_OK => c"VSHM_OK: success",
        VSHM_ERR_REQUEST => c"VSHM_ERR_REQUEST: the server answered with an error",
        VSHM_ERR_TIMEOUT => c"VSHM_ERR_TIMEOUT: timed out",
        VSHM_ERR_CONNECTION => c"VSHM_ERR_CONNECTION: connection failed",
        VSHM_ERR_CLOSING => c"VSHM_ERR_CLOSING: client or core closing",
        VSHM_ERR_EXEC_ABORT => c"VSHM_ERR_EXEC_ABORT: transaction aborted",
        VSHM_ERR_INVALID_REQUEST => c"VSHM_ERR_INVALID_REQUEST: request refused by the core",
        VSHM_ERR_OVERLOADED => c"VSHM_ERR_OVERLOADED: per-client limit reached",
        VSHM_ERR_INVALID_ARGUMENT => c"VSHM_ERR_INVALID_ARGUMENT: invalid argument",
        VSHM_ERR_WRONG_TYPE => c"VSHM_ERR_WRONG_TYPE: value has another type",
        VSHM_ERR_INTERNAL => c"VSHM_ERR_INTERNAL: internal error",
        VSHM_PENDING => c"VSHM_PENDING: not completed yet",
        _ => c"unknown vshm status",
    }
}

struct Last {
    status: vshm_status,
    message: CString,
}

thread_local! {
    static LAST: RefCell<Last> = RefCell::new(Last { status: VSHM_OK, message: CString::default() });
}

/// Record the calling thread's last error.
pub(crate) fn set_last(status: vshm_status, message: &str) {
    let msg = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.status = status;
            l.message = msg;
        }
    });
}

pub(crate) fn last_status() -> vshm_status {
    LAST.try_with(|l| {
        l.try_borrow()
            .map(|l| l.status)
            .unwrap_or(VSHM_ERR_INTERNAL)
    })
    .unwrap_or(VSHM_ERR_INTERNAL)
}

/// Pointer to the thread's last error message, valid until the next
/// failing call in this thread.
pub(crate) fn last_message_ptr() -> *const libc::c_char {
    LAST.try_with(|l| {
        l.try_borrow()
            .map(|l| l.message.as_ptr())
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Run an entry point that returns a status: errors are recorded as the
/// thread's last error; a panic becomes `VSHM_ERR_INTERNAL`.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>) -> vshm_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => VSHM_OK,
        Ok(Err(e)) => {
            set_last(e.status, &e.message);
            e.status
        }
        Err(p) => {
            let m = format!("internal error (panic): {}", panic_message(&*p));
            set_last(VSHM_ERR_INTERNAL, &m);
            VSHM_ERR_INTERNAL
        }
    }
}

/// Run an entry point that returns a plain value; on error or panic the
/// error is recorded and `fail` returned.
pub(crate) fn guard_value<T>(fail: T, f: impl FnOnce() -> Result<T, Error>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last(e.status, &e.message);
            fail
        }
        Err(p) => {
            let m = format!("internal error (panic): {}", panic_message(&*p));
            set_last(VSHM_ERR_INTERNAL, &m);
            fail
        }
    }
}
