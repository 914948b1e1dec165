//! Handle memory: every object handed to C starts with a magic word that
//! is set while it is live and cleared when it is freed. Freed handles go
//! to a per-type free list instead of back to the allocator, so a stale
//! pointer still points at readable memory whose magic says "freed": a
//! use after free or a double free is reported as
//! `VSHM_ERR_INVALID_ARGUMENT` instead of crashing. (Once the memory is
//! reused for a new object of the same type, a stale pointer designates
//! the new object: detection is best effort, as documented in the header.)
//!
//! The free lists keep at most the peak number of live handles of each
//! type; they are reachable from statics (valgrind: "still reachable").

use std::sync::Mutex;
use vshm_protocol::sync::{AtomicU64, Ordering};

use crate::error::Error;

/// Implemented by the handle types.
pub(crate) trait Handle: Sized + 'static {
    /// The magic word of a live object of this type.
    const LIVE: u64;
    /// What the header calls the type (for messages).
    const NAME: &'static str;
    fn magic(&self) -> &AtomicU64;
    /// A new, empty (not live) object.
    fn empty() -> Self;
    fn pool() -> &'static Pool;
}

/// Magic of a freed handle.
pub(crate) const FREED: u64 = 0x6465_6164_6465_6164; // "deaddead"

/// A free list of handle addresses.
pub(crate) struct Pool {
    free: Mutex<Vec<usize>>,
}

impl Pool {
    pub const fn new() -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }
}

/// Get memory for a handle (reused or new). Not yet live: fill it, then
/// call [`publish`].
pub(crate) fn alloc<T: Handle>() -> *mut T {
    let reused = T::pool()
        .free
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop();
    match reused {
        Some(p) => p as *mut T,
        None => Box::into_raw(Box::new(T::empty())),
    }
}

/// Mark a filled handle live.
pub(crate) fn publish<T: Handle>(p: *mut T) {
    // SAFETY: p came from `alloc` and is not yet visible to C.
    let h = unsafe { &*p };
    // Release: pairs with the Acquire load in `get` (and the Acquire of
    // the `compare_exchange` in `retire`): the object's contents are
    // visible to whoever sees LIVE.
    h.magic().store(T::LIVE, Ordering::Release);
}

/// Check a pointer from C and borrow the handle.
///
/// # Safety
/// `p` is NULL, or a pointer this library returned for `T` (live or freed).
/// A pointer to other memory is undefined behaviour (caught only when it is
/// misaligned).
pub(crate) unsafe fn get<'a, T: Handle>(p: *const T) -> Result<&'a T, Error> {
    if p.is_null() {
        return Err(Error::arg(format!("{} is NULL", T::NAME)));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::arg(format!(
            "{} pointer is misaligned (not a {0})",
            T::NAME
        )));
    }
    // SAFETY: per the contract, p points at a (live or freed) T from this
    // library's pools; pool memory is never returned to the allocator.
    let h = unsafe { &*p };
    // Acquire: pairs with the Release store in `publish`.
    match h.magic().load(Ordering::Acquire) {
        m if m == T::LIVE => Ok(h),
        FREED => Err(Error::arg(format!("{} was already freed", T::NAME))),
        _ => Err(Error::arg(format!("not a valid {}", T::NAME))),
    }
}

/// Begin freeing: flips the magic from live to freed (exactly one caller
/// wins). Returns the handle to empty; then call [`recycle`].
///
/// # Safety
/// As for [`get`].
pub(crate) unsafe fn retire<'a, T: Handle>(p: *const T) -> Result<&'a T, Error> {
    // SAFETY: forwarded contract.
    let h = unsafe { get(p)? };
    // AcqRel on success: the Acquire half pairs with the Release store in
    // `publish` (the winner empties a fully built object); the Release half
    // pairs with the Acquire load in `get`, so a racing caller that reads
    // FREED also sees this thread's earlier writes. Acquire on failure:
    // pairs with the winning `retire`'s Release, only to report it.
    h.magic()
        .compare_exchange(T::LIVE, FREED, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| Error::arg(format!("{} was already freed", T::NAME)))?;
    Ok(h)
}

/// Return an emptied, retired handle to its pool.
pub(crate) fn recycle<T: Handle>(p: *const T) {
    T::pool()
        .free
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(p as usize);
}
