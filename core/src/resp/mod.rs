//! RESP2/RESP3 wire format, pure and I/O-free: the base of vshm's own
//! connection layer on the per-request hot path.
//!
//! * [`encode_command`]: a command as an array of bulk strings.
//! * [`Scanner`]: where one top-level frame ends in a read buffer,
//!   resumable across reads at O(total bytes), no allocation for frames up
//!   to 8 open aggregates deep; [`Scanner::need`] tells the reader how much
//!   to buffer (a whole large bulk).
//! * [`decode`]: a delimited frame -> [`Frame`]: a reply [`Value`], a
//!   top-level error reply (raw bytes, see [`error_to_client`]), an
//!   out-of-band RESP3 push, or [`Frame::TooDeep`].
//! * [`redirect`]: `MOVED`/`ASK` and retryable cluster errors.
//!
//! Why an own parser: the redis crate's parser stops at a fixed nesting
//! depth (100) with a parse error, which drops the shared connection and
//! fails every request multiplexed on it, and it insists on UTF-8 error
//! (and simple string) text, so an error reply echoing binary user input
//! drops the connection too. The redis-protocol crate (4.x/5.x
//! `resp3::decode`) is a recursive nom parser with no depth limit, and it
//! re-parses a frame from its first byte after every incomplete read.
//! Here nesting beyond [`MAX_DEPTH`] fails only its own request (the frame
//! is still consumed), nothing recurses, a frame split over many reads
//! costs O(its bytes), and every string is binary-safe.
//!
//! Supported: every RESP2 and RESP3 type Valkey/Redis send (`+ - : $ * _ ,
//! # ( ! = % ~ | >`; `$-1`/`*-1` nil). An attribute (`|`) precedes the
//! value it annotates and decodes as [`Value::Attribute`] wrapping it.
//! Streamed strings and aggregates (`$?`, `*?`, `;`, `.`) are never sent by
//! Valkey or Redis and are rejected like any unknown type byte. Lines end
//! in CRLF; a bare LF is an error. Negative lengths (other than the two
//! nils), bulks over 512 MiB and aggregates over `i32::MAX` elements are
//! errors. Every [`RespError`] means the stream is not RESP (or out of
//! sync): close the connection.

mod decode;
mod encode;
pub mod redirect;
mod scan;
mod wire;

#[cfg(test)]
mod tests;

use vshm_protocol::msg::{ClientError, Value};

pub use decode::decode;
pub use encode::{encode_command, leading_args};
pub use redirect::{
    parse_redirect, parse_redirect_for, retry_class, Redirect, Redirectable, RetryClass,
};
pub use scan::{bulk_head, Oversized, Scanner, ELEMENT_WEIGHT};
pub use wire::{MAX_BULK, MAX_ELEMENTS};

/// Deepest aggregate nesting decoded into a [`Value`] (the top-level
/// aggregate is depth 1; attributes count as a level). Deeper replies are
/// consumed and validated but become [`Frame::TooDeep`].
pub const MAX_DEPTH: usize = 512;

/// One decoded top-level frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A reply (nested errors are [`Value::Error`]).
    Value(Value),
    /// A top-level error reply (`-` line or `!` blob error): its raw text,
    /// `"CODE message"`, binary-safe. See [`error_to_client`],
    /// [`parse_redirect`], [`retry_class`].
    Error(Vec<u8>),
    /// A top-level RESP3 push (`>`): out of band, not the reply to any
    /// request. Always a [`Value::Push`].
    Push(Value),
    /// A reply nested deeper than [`MAX_DEPTH`]: fully consumed and valid,
    /// it fails only its own request.
    TooDeep,
    /// A reply over the reader's size limit ([`Scanner::set_limit`]): its
    /// `bytes` were read and dropped; it fails only its own request. Made
    /// by the connection's reader, never by [`decode`].
    TooLarge { bytes: usize, limit: usize },
}

/// Why bytes are not RESP. Any of these leaves the stream unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// An unknown (or streamed-RESP3) type byte.
    BadType(u8),
    /// A LF not preceded by CR.
    BareLf,
    /// A bulk payload not followed by CRLF.
    MissingCrlf,
    /// A malformed or overflowing integer (value or length).
    BadInteger,
    BadDouble,
    BadBoolean,
    /// `_` followed by anything but CRLF.
    BadNull,
    BadBigNumber,
    /// A negative length other than `$-1`/`*-1`.
    BadLength,
    /// A length over [`MAX_BULK`] or a count over [`MAX_ELEMENTS`].
    TooLarge,
    /// A verbatim string without its `fmt:` prefix.
    BadVerbatim,
    /// A push whose first element (its kind) is not a string.
    BadPushKind,
    /// [`decode`] got less than one frame.
    Truncated,
    /// [`decode`] got more than one frame.
    TrailingBytes,
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            RespError::BadType(b) => return write!(f, "RESP: unknown type byte 0x{b:02x}"),
            RespError::BareLf => "LF without CR",
            RespError::MissingCrlf => "bulk payload not followed by CRLF",
            RespError::BadInteger => "malformed integer",
            RespError::BadDouble => "malformed double",
            RespError::BadBoolean => "malformed boolean",
            RespError::BadNull => "malformed null",
            RespError::BadBigNumber => "malformed big number",
            RespError::BadLength => "negative length",
            RespError::TooLarge => "length or element count too large",
            RespError::BadVerbatim => "verbatim string without format",
            RespError::BadPushKind => "push kind is not a string",
            RespError::Truncated => "incomplete frame",
            RespError::TrailingBytes => "bytes after the frame",
        };
        write!(f, "RESP: {what}")
    }
}

impl std::error::Error for RespError {}

/// A top-level error reply as a typed error: the message is the lossy
/// UTF-8 of the text; the kind follows [`crate::value::server_error_kind`]
/// on the code (the first word): `EXECABORT` -> `ExecAbort`,
/// `CLUSTERDOWN`/`MASTERDOWN` -> `Connection`, anything else -> `Request`.
pub fn error_to_client(text: &[u8]) -> ClientError {
    let code = match memchr::memchr(b' ', text) {
        Some(i) => &text[..i],
        None => text,
    };
    let kind = crate::value::server_error_kind(std::str::from_utf8(code).unwrap_or(""));
    ClientError::new(kind, String::from_utf8_lossy(text).into_owned())
}
