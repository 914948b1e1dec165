//! # vshm-protocol
//!
//! The shared-memory boundary between a vshm client and the vshm core:
//!
//! * [`layout`]: the segment's byte layout and the header a reader validates;
//! * [`ring`]: the single-producer / single-consumer byte rings of
//!   variable-length records (submission: client to core; completion: core to
//!   client), with wrap-around padding records;
//! * [`wake`]: the need-wakeup flags and the futex sleep/wake protocol;
//! * [`frame`]: record headers and the fragmentation of large messages;
//! * [`pins`]: records handed out in place and the ring space they hold;
//! * [`msg`]: the rkyv-archived `Request` and `Completion` messages;
//! * [`bound`]: the bound of a request (blocking commands included), one
//!   function for the core's deadline and the client's wait;
//! * [`segment`]: creating (memfd, sealed) and attaching segments;
//! * [`register`]: the wire format of the daemon handshake (client and
//!   vshmd both speak it).
//!
//! The client runtime (the client end of a segment, the daemon
//! registration, the session layer) is the `vshm-client` crate.
//!
//! All atomics go through the [`sync`] shim so that the same source runs under
//! loom (`RUSTFLAGS="--cfg vshm_loom"`) and in production. See
//! `docs/protocol.md` for the full specification.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bound;
pub mod frame;
pub mod layout;
pub mod msg;
pub mod pins;
#[cfg(not(vshm_loom))]
pub mod register;
pub mod ring;
#[cfg(not(vshm_loom))]
pub mod segment;
pub mod sync;
pub mod wake;

mod error;
pub use error::ProtocolError;
