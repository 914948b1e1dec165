//! # vshm-client
//!
//! The client runtime of vshm, on top of the wire format of
//! `vshm-protocol`:
//!
//! * [`client`]: [`Client`], the client end of one segment (submit, call,
//!   wait, cork a burst of submissions into batches; thread-safe, bounded
//!   waits), with [`ClientOptions`];
//! * [`reply`]: [`Reply`] (a completion read in place from the ring or
//!   from private memory) and [`into_result`];
//! * [`cork`]: [`cork::Cork`], a burst of submissions handed to the core
//!   in batches;
//! * `completion` (private): the completion-ring side: draining,
//!   reassembly, pinned records;
//! * [`endpoint`]: blocking single-direction endpoints and wait strategies;
//! * [`daemon`]: registering with vshmd ([`daemon::DaemonClient`],
//!   [`daemon::Reconnecting`]), fork detection, `vshmd stats`;
//! * [`session`]: what a language binding holds: the current registration
//!   (daemon or in-process), replaced when unusable and after `fork()`;
//!   with [`notify`] (the eventfd an event loop watches, signalled by a
//!   notifier thread on the completion ring) and [`subscriptions`]
//!   (pub/sub subscriptions replayed on a new registration);
//! * [`handle`]: [`handle::Handle`], the session, notifier, subscriptions,
//!   closed flag and default timeout that one C or Python client object
//!   holds, composed once for both bindings;
//! * [`embedded`] and [`uri`] (feature `embedded`, default on): clients of
//!   the in-process core (`vshm-core`) and connection URIs.
//!
//! Without the `embedded` feature the crate does not depend on vshm-core.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod client;
mod completion;
pub mod cork;
pub mod daemon;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod endpoint;
#[cfg(test)]
mod fake_core;
pub mod handle;
pub mod notify;
pub mod reply;
pub mod session;
mod spin;
pub mod subscriptions;
#[cfg(feature = "embedded")]
pub mod uri;

pub use client::{Client, ClientOptions, QUEUED};
pub use reply::{into_result, Reply};
