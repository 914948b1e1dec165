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
//! * [`msg`]: the rkyv-archived `Request` and `Completion` messages;
//! * [`segment`]: creating (memfd, sealed) and attaching segments.
//!
//! All atomics go through the [`sync`] shim so that the same source runs under
//! loom (`RUSTFLAGS="--cfg vshm_loom"`) and in production. See
//! `docs/protocol.md` for the full specification.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(vshm_loom))]
pub mod client;
#[cfg(not(vshm_loom))]
pub mod daemon;
#[cfg(not(vshm_loom))]
pub mod endpoint;
pub mod frame;
pub mod layout;
pub mod msg;
#[cfg(not(vshm_loom))]
pub mod register;
pub mod ring;
#[cfg(not(vshm_loom))]
pub mod segment;
pub mod sync;
pub mod wake;

mod error;
pub use error::ProtocolError;
