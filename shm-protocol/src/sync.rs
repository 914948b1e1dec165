//! The one place where atomics come from.
//!
//! Production builds use `std`'s atomics, which have the same size and bit
//! validity as the plain integers, so a `repr(C)` struct of them can be laid
//! over a shared mapping. Under `--cfg vshm_loom` the very same protocol code
//! is compiled against loom's atomics, which loom model-checks over ordinary
//! memory (the structs are then heap-allocated, never mapped).
//!
//! Memory-ordering comments throughout the crate name the operation each
//! ordering pairs with.

#[cfg(vshm_loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(vshm_loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Spin-loop hint (a no-op that yields to the loom scheduler under loom).
#[inline]
pub fn spin_hint() {
    #[cfg(vshm_loom)]
    loom::thread::yield_now();
    #[cfg(not(vshm_loom))]
    std::hint::spin_loop();
}
