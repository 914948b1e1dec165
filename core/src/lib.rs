//! vshm-core: the engine.
//!
//! * [`config`]: the connection settings of a backend (read from TOML).
//! * [`engine`]: the backend pool and request execution
//!   ([`Engine::connect`], [`Backend::execute`]).
//! * [`commands`]: pure command classification (blocking, refused,
//!   read-only, response policies).
//! * [`keys`]: command keys and hash slots (pure).
//! * [`topology`]: `CLUSTER SLOTS` parsing and the slot map (pure).
//! * [`runtime`]: the core's tokio runtime (one thread by default).
//! * [`net`]: the core's own server connections (the fast path).
//! * [`resp`]: the RESP2/RESP3 wire format (encoder, resumable frame
//!   scanner, iterative decoder, cluster redirections).
//! * [`value`]: conversion of redis crate values and errors to the wire
//!   messages.

pub mod commands;
pub mod config;
pub mod dispatch;
pub mod embedded;
pub mod engine;
pub mod keys;
pub mod net;
pub mod resp;
pub mod runtime;
pub mod topology;
pub mod value;

pub use config::Config;
pub use engine::{Backend, Engine, PoolKey};
