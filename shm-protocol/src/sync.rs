//! The one place where atomics come from.
//!
//! Production builds use `std`'s atomics, which have the same size and bit
//! validity as the plain integers, so a `repr(C)` struct of them can be laid
//! over a shared mapping. Under `--cfg vshm_loom` the very same protocol code
//! is compiled against loom's atomics, which loom model-checks over ordinary
//! memory (the structs are then heap-allocated, never mapped).
//!
//! Every crate of the workspace takes its atomics from here (a clippy
//! `disallowed-types` rule in the workspace `clippy.toml` rejects the `std`
//! ones elsewhere), and every non-`Relaxed` ordering carries a comment naming
//! the operation it pairs with.

// Type aliases rather than re-exports: clippy's `disallowed-types` sees
// through a `pub use` to the std type, but not through an alias.
#[cfg(vshm_loom)]
mod imp {
    pub use loom::sync::atomic::{fence, Ordering};
    pub type AtomicBool = loom::sync::atomic::AtomicBool;
    pub type AtomicI32 = loom::sync::atomic::AtomicI32;
    pub type AtomicU8 = loom::sync::atomic::AtomicU8;
    pub type AtomicU32 = loom::sync::atomic::AtomicU32;
    pub type AtomicU64 = loom::sync::atomic::AtomicU64;
    pub type AtomicUsize = loom::sync::atomic::AtomicUsize;
}

#[cfg(not(vshm_loom))]
#[allow(clippy::disallowed_types)]
mod imp {
    pub use std::sync::atomic::{fence, Ordering};
    pub type AtomicBool = std::sync::atomic::AtomicBool;
    pub type AtomicI32 = std::sync::atomic::AtomicI32;
    pub type AtomicU8 = std::sync::atomic::AtomicU8;
    pub type AtomicU32 = std::sync::atomic::AtomicU32;
    pub type AtomicU64 = std::sync::atomic::AtomicU64;
    pub type AtomicUsize = std::sync::atomic::AtomicUsize;
}

pub use imp::*;

/// Spin-loop hint (a no-op that yields to the loom scheduler under loom).
#[inline]
pub fn spin_hint() {
    #[cfg(vshm_loom)]
    loom::thread::yield_now();
    #[cfg(not(vshm_loom))]
    std::hint::spin_loop();
}
