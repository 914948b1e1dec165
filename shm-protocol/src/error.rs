use thiserror::Error;

/// Everything that can go wrong at the protocol level. Every variant is a
/// clear, typed report about one segment; none of them is ever a panic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("bad segment magic {found:#018x} (expected {expected:#018x})")]
    BadMagic { found: u64, expected: u64 },
    #[error("unsupported layout version {found} (this build speaks {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("segment size mismatch: header says {header} bytes, mapping has {actual}")]
    SizeMismatch { header: u64, actual: u64 },
    #[error("segment layout invalid: {0}")]
    BadLayout(&'static str),
    #[error("ring corrupt: {0}")]
    RingCorrupt(&'static str),
    #[error("record too large: {len} bytes (limit {limit})")]
    TooLarge { len: u64, limit: u64 },
    #[error("message invalid: {0}")]
    BadMessage(String),
    #[error("segment closed")]
    Closed,
    #[error("os error: {0}")]
    Os(String),
}
