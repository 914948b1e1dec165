//! Replies: freeing, detaching, the root value.

use super::*;

// ===========================================================================
// Replies

/// The reply's contents, shared: several threads may read one reply.
pub(crate) unsafe fn reply_data<'a>(r: *const vshm_reply) -> Result<&'a (Reply, u64), Error> {
    // SAFETY: a pointer from this library per the contract.
    let h = unsafe { handle::get(r)? };
    // SAFETY: readers only take shared references; the header forbids
    // freeing or detaching a reply concurrently with any other use, so no
    // exclusive reference is alive meanwhile.
    unsafe { (*h.data.get()).as_ref() }.ok_or_else(|| Error::arg("vshm_reply was already freed"))
}

/// The reply's contents, exclusively (detach).
pub(crate) unsafe fn reply_data_mut<'a>(
    r: *const vshm_reply,
) -> Result<&'a mut (Reply, u64), Error> {
    // SAFETY: a pointer from this library per the contract.
    let h = unsafe { handle::get(r)? };
    // SAFETY: the header requires exclusive use of the reply during
    // vshm_reply_detach (no concurrent reads, frees or detaches).
    unsafe { (*h.data.get()).as_mut() }.ok_or_else(|| Error::arg("vshm_reply was already freed"))
}

/// Free a reply, returning its ring space to the core. NULL is accepted.
/// Every `vshm_value` of the reply becomes invalid. Freeing a freed reply
/// is VSHM_ERR_INVALID_ARGUMENT (until the memory is reused by a later
/// reply). Any thread may free a reply; not concurrently with other uses
/// of the same reply.
#[no_mangle]
pub unsafe extern "C" fn vshm_reply_free(r: *mut vshm_reply) -> vshm_status {
    guard(|| {
        if r.is_null() {
            return Ok(());
        }
        // SAFETY: a pointer from this library per the contract.
        let h = unsafe { handle::retire(r)? };
        // SAFETY: we won the retire race: exclusive access to the contents.
        let data = unsafe { (*h.data.get()).take() };
        handle::recycle(r);
        drop(data);
        Ok(())
    })
}

/// The reply's root value (borrowed: valid until the reply is freed or
/// detached). NULL for an invalid reply.
#[no_mangle]
pub unsafe extern "C" fn vshm_reply_value(r: *const vshm_reply) -> *const vshm_value {
    guard_value(std::ptr::null(), || {
        // SAFETY: a pointer from this library per the contract.
        let (reply, _) = unsafe { reply_data(r)? };
        match reply.completion() {
            ArchivedCompletion::Ok(v) | ArchivedCompletion::Push(v) => Ok(value_ptr(v)),
            // A reply read in a child forked while it was held in the
            // ring (`vshm_client::Reply::bytes`).
            ArchivedCompletion::Err(e) => Err(Error::new(
                status_of_archived_kind(&e.kind),
                e.message.as_str(),
            )),
        }
    })
}

/// Copy the reply out of the shared ring into private memory and release
/// its ring space now; the reply stays valid (same handle) but every
/// `vshm_value` obtained from it before is invalid (get them again).
/// A no-op for replies already in private memory.
#[no_mangle]
pub unsafe extern "C" fn vshm_reply_detach(r: *mut vshm_reply) -> vshm_status {
    guard(|| {
        // SAFETY: a pointer from this library per the contract.
        let (reply, _) = unsafe { reply_data_mut(r)? };
        reply.detach();
        Ok(())
    })
}

/// 1 while the reply is read in place from the shared completion ring
/// (pinning ring space), 0 when it is in private memory (detached, or
/// reassembled because it was larger than one ring record), -1 invalid.
#[no_mangle]
pub unsafe extern "C" fn vshm_reply_in_ring(r: *const vshm_reply) -> c_int {
    guard_value(-1, || {
        // SAFETY: a pointer from this library per the contract.
        let (reply, _) = unsafe { reply_data(r)? };
        Ok(c_int::from(reply.in_ring()))
    })
}

/// The id of the request this reply answers (as returned by the submit
/// functions); 0 for an invalid reply.
#[no_mangle]
pub unsafe extern "C" fn vshm_reply_id(r: *const vshm_reply) -> u64 {
    guard_value(0, || {
        // SAFETY: a pointer from this library per the contract.
        let (_, id) = unsafe { reply_data(r)? };
        Ok(*id)
    })
}
